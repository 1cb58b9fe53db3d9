#pragma once
// TLS 1.3 record protection for one direction, for the addon's sealed relay upload (seal.cc):
// AES-GCM records (RFC 8446 5.2), their nonces (5.3), HKDF-Expand-Label keys (7.1, 7.3) and
// KeyUpdate (4.6.3). libcrypto's functions are found at run time in the process with dlsym (Node
// exports OpenSSL's; a runtime that does not makes TlsCryptoAvailable() false).
//
//   sealRecords(suite, secret, seq, plaintext[, rekeyAfter]) -> Buffer   the records sealStart writes
//   sealDerive(suite, secret) -> { key, iv }                              HKDF-Expand-Label "key"/"iv"
#include <napi.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

namespace braid {

constexpr double kDefaultRekeyAfter = 8388608;  // 2^23 records, far below RFC 8446 5.5's 2^24.5

bool TlsCryptoAvailable();

// A byte buffer that grows without zero-filling what it adds (std::vector's resize would: one more
// pass over every byte sealed).
struct Bytes {
  std::unique_ptr<unsigned char[]> buf;
  size_t size = 0, cap = 0;

  unsigned char* data() const { return buf.get(); }
  // Appends n bytes, left for the caller to write; returns where they start.
  unsigned char* Grow(size_t n) {
    if (size + n > cap) {
      size_t next = std::max(cap * 2, size + n);
      std::unique_ptr<unsigned char[]> grown(new unsigned char[next]);
      if (size) memcpy(grown.get(), buf.get(), size);
      buf.swap(grown);
      cap = next;
    }
    unsigned char* at = buf.get() + size;
    size += n;
    return at;
  }
  void Clear() { size = 0; }
  void Release() {
    buf.reset();
    size = cap = 0;
  }
};

struct Suite {
  size_t key_len, hash_len;
  bool sha384;
};

// One direction's record protection (RFC 8446 5.3): key, static IV, sequence number.
struct Sealer {
  Suite suite{};
  std::vector<unsigned char> secret;
  unsigned char iv[12] = {};
  double seq = 0;
  double rekey_after = kDefaultRekeyAfter;
  void* ctx = nullptr;  // libcrypto's EVP_CIPHER_CTX, keyed

  Sealer() = default;
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;
  ~Sealer();

  // Derives the key and IV from `secret` and keys the cipher.
  bool Keys();
  // Appends one record (inner content type `type`) holding data[0, n).
  bool Record(unsigned char type, const unsigned char* data, size_t n, Bytes* out);
  // Appends data[0, n) as application-data records, a KeyUpdate first when the key is used up.
  bool Seal(const unsigned char* data, size_t n, Bytes* out);
  // Appends KeyUpdate(update_not_requested) under the current key, then moves to the next secret.
  bool Update(Bytes* out);
  // Appends the close_notify alert.
  bool CloseNotify(Bytes* out);
  // Appends an application-data record with nothing in it (RFC 8446 5.4 allows them), a KeyUpdate
  // first when the key is used up.
  bool Empty(Bytes* out);
};

// The other direction: records received, opened (RFC 8446 5.2), KeyUpdates followed (4.6.3).
struct Opener {
  Suite suite{};
  std::vector<unsigned char> secret;
  unsigned char iv[12] = {};
  double seq = 0;
  void* ctx = nullptr;  // libcrypto's EVP_CIPHER_CTX, keyed for decryption

  Opener() = default;
  Opener(const Opener&) = delete;
  Opener& operator=(const Opener&) = delete;
  ~Opener();

  bool Keys();
  // Opens the record rec[0, 5 + len) (its header first) into out (room for len bytes) at the
  // sequence number `at`: false when it does not authenticate. On success *n is the content's
  // length and *type its inner content type (padding removed); an all-zero inner plaintext has
  // type 0, which no record may have.
  bool Open(const unsigned char* rec, size_t len, double at, unsigned char* out, size_t* n, unsigned char* type);
  // After a KeyUpdate: the next secret, its keys, sequence 0.
  bool Update();
};

// Reads { suite, secret, seq } into a keyed opener; throws naming `fn` when one is invalid.
void MakeOpener(Napi::Env env, const char* fn, const Napi::Value& suite, const Napi::Value& secret, const Napi::Value& seq, Opener* o);

// Reads { suite, secret, seq, rekeyAfter } (JavaScript values) into a keyed sealer; throws a
// JavaScript error naming `fn` when one is invalid.
void MakeSealer(Napi::Env env, const char* fn, const Napi::Value& suite, const Napi::Value& secret, const Napi::Value& seq, const Napi::Value& rekey_after, Sealer* s);

void RegisterTlsRecords(Napi::Env env, Napi::Object exports);

}  // namespace braid
