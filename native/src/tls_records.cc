// TLS 1.3 record protection for one direction: see tls_records.h.
#include "tls_records.h"

#ifdef __linux__
#include <dlfcn.h>

#include <string>

namespace braid {
namespace {

constexpr size_t kRecordPlain = 16384;  // TLS 1.3's largest record plaintext
constexpr int kCtrlGetTag = 0x10;       // EVP_CTRL_AEAD_GET_TAG (OpenSSL and BoringSSL)
constexpr int kCtrlSetTag = 0x11;       // EVP_CTRL_AEAD_SET_TAG

// The libcrypto functions used, found at run time in the process (Node exports them; a runtime that
// does not leaves sealAvailable() false and the upload in Node's TLS).
struct Crypto {
  void* (*ctx_new)();
  void (*ctx_free)(void*);
  int (*init)(void*, const void*, void*, const unsigned char*, const unsigned char*);
  int (*update)(void*, unsigned char*, int*, const unsigned char*, int);
  int (*final)(void*, unsigned char*, int*);
  int (*ctrl)(void*, int, int, void*);
  int (*dinit)(void*, const void*, void*, const unsigned char*, const unsigned char*);
  int (*dupdate)(void*, unsigned char*, int*, const unsigned char*, int);
  int (*dfinal)(void*, unsigned char*, int*);
  const void* (*aes128gcm)();
  const void* (*aes256gcm)();
  const void* (*sha256)();
  const void* (*sha384)();
  unsigned char* (*hmac)(const void*, const void*, int, const unsigned char*, size_t, unsigned char*, unsigned int*);
  bool ok = false;
};

const Crypto& Lib() {
  static Crypto c = [] {
    Crypto k{};
    auto get = [](const char* name) { return dlsym(RTLD_DEFAULT, name); };
    k.ctx_new = reinterpret_cast<void* (*)()>(get("EVP_CIPHER_CTX_new"));
    k.ctx_free = reinterpret_cast<void (*)(void*)>(get("EVP_CIPHER_CTX_free"));
    k.init = reinterpret_cast<int (*)(void*, const void*, void*, const unsigned char*, const unsigned char*)>(get("EVP_EncryptInit_ex"));
    k.update = reinterpret_cast<int (*)(void*, unsigned char*, int*, const unsigned char*, int)>(get("EVP_EncryptUpdate"));
    k.final = reinterpret_cast<int (*)(void*, unsigned char*, int*)>(get("EVP_EncryptFinal_ex"));
    k.ctrl = reinterpret_cast<int (*)(void*, int, int, void*)>(get("EVP_CIPHER_CTX_ctrl"));
    k.dinit = reinterpret_cast<int (*)(void*, const void*, void*, const unsigned char*, const unsigned char*)>(get("EVP_DecryptInit_ex"));
    k.dupdate = reinterpret_cast<int (*)(void*, unsigned char*, int*, const unsigned char*, int)>(get("EVP_DecryptUpdate"));
    k.dfinal = reinterpret_cast<int (*)(void*, unsigned char*, int*)>(get("EVP_DecryptFinal_ex"));
    k.aes128gcm = reinterpret_cast<const void* (*)()>(get("EVP_aes_128_gcm"));
    k.aes256gcm = reinterpret_cast<const void* (*)()>(get("EVP_aes_256_gcm"));
    k.sha256 = reinterpret_cast<const void* (*)()>(get("EVP_sha256"));
    k.sha384 = reinterpret_cast<const void* (*)()>(get("EVP_sha384"));
    k.hmac = reinterpret_cast<unsigned char* (*)(const void*, const void*, int, const unsigned char*, size_t, unsigned char*, unsigned int*)>(get("HMAC"));
    k.ok = k.ctx_new && k.ctx_free && k.init && k.update && k.final && k.ctrl && k.dinit && k.dupdate && k.dfinal && k.aes128gcm && k.aes256gcm && k.sha256 && k.sha384 && k.hmac;
    return k;
  }();
  return c;
}

bool SuiteByName(const std::string& name, Suite* s) {
  if (name == "TLS_AES_128_GCM_SHA256") *s = {16, 32, false};
  else if (name == "TLS_AES_256_GCM_SHA384") *s = {32, 48, true};
  else return false;
  return true;
}

// HKDF-Expand-Label(secret, label, "", length) for length <= the hash's: one HMAC block.
bool ExpandLabel(const Suite& s, const std::vector<unsigned char>& secret, const char* label, size_t length, unsigned char* out) {
  const Crypto& c = Lib();
  std::string full = std::string("tls13 ") + label;
  std::vector<unsigned char> info = {static_cast<unsigned char>(length >> 8), static_cast<unsigned char>(length), static_cast<unsigned char>(full.size())};
  info.insert(info.end(), full.begin(), full.end());
  info.push_back(0);  // empty context
  info.push_back(1);  // T(1)'s counter
  unsigned char md[64];
  unsigned int md_len = 0;
  if (!c.hmac(s.sha384 ? c.sha384() : c.sha256(), secret.data(), static_cast<int>(secret.size()), info.data(), info.size(), md, &md_len)) return false;
  if (md_len != s.hash_len || length > md_len) return false;
  memcpy(out, md, length);
  return true;
}

// Derives one direction's key and IV from `secret` (RFC 8446 7.3) and keys *ctx for sealing or,
// with `decrypt`, for opening.
bool KeyAead(const Suite& s, const std::vector<unsigned char>& secret, unsigned char* iv, void** ctx, bool decrypt) {
  const Crypto& c = Lib();
  unsigned char key[32];
  if (!ExpandLabel(s, secret, "key", s.key_len, key) || !ExpandLabel(s, secret, "iv", 12, iv)) return false;
  if (!*ctx) *ctx = c.ctx_new();
  const void* aead = s.key_len == 16 ? c.aes128gcm() : c.aes256gcm();
  bool ok = *ctx && (decrypt ? c.dinit : c.init)(*ctx, aead, nullptr, key, nullptr) == 1;
  memset(key, 0, sizeof key);
  return ok;
}

// RFC 8446 5.3: the static IV XORed with the 64-bit sequence number, left-padded.
void Nonce(const unsigned char* iv, double seq, unsigned char* nonce) {
  memcpy(nonce, iv, 12);
  auto sq = static_cast<uint64_t>(seq);
  for (int i = 0; i < 8; i++) nonce[4 + i] ^= static_cast<unsigned char>(sq >> (56 - 8 * i));
}

// The next application traffic secret (RFC 8446 7.2), in place.
bool NextSecret(const Suite& s, std::vector<unsigned char>* secret) {
  std::vector<unsigned char> next(s.hash_len);
  if (!ExpandLabel(s, *secret, "traffic upd", s.hash_len, next.data())) return false;
  std::fill(secret->begin(), secret->end(), 0);
  secret->swap(next);
  return true;
}

// { suite, secret, seq } as JavaScript gives them, checked.
void ReadKeys(Napi::Env env, const std::string& where, const Napi::Value& suite_v, const Napi::Value& secret_v, const Napi::Value& seq_v, Suite* suite, std::vector<unsigned char>* secret, double* seq) {
  if (!Lib().ok) throw Napi::Error::New(env, where + "the runtime's libcrypto lacks the functions it needs (sealAvailable() is false)");
  if (!suite_v.IsString() || !SuiteByName(suite_v.As<Napi::String>().Utf8Value(), suite)) throw Napi::TypeError::New(env, where + "suite must be 'TLS_AES_128_GCM_SHA256' or 'TLS_AES_256_GCM_SHA384'");
  if (!secret_v.IsBuffer()) throw Napi::TypeError::New(env, where + "secret must be a Buffer");
  auto buf = secret_v.As<Napi::Buffer<unsigned char>>();
  if (buf.Length() != suite->hash_len) throw Napi::RangeError::New(env, where + "secret must be " + std::to_string(suite->hash_len) + " bytes for this suite");
  secret->assign(buf.Data(), buf.Data() + buf.Length());
  if (!seq_v.IsNumber()) throw Napi::TypeError::New(env, where + "seq must be a number");
  double d = seq_v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d < 9007199254740992.0) || d != static_cast<double>(static_cast<int64_t>(d))) throw Napi::RangeError::New(env, where + "seq must be a non-negative integer");
  *seq = d;
}

Napi::Value SealRecords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sealer s;
  MakeSealer(env, "sealRecords", info[0], info[1], info[2], info.Length() > 4 ? info[4] : env.Undefined(), &s);
  if (info.Length() < 4 || !info[3].IsBuffer()) throw Napi::TypeError::New(env, "sealRecords: plaintext must be a Buffer");
  auto plain = info[3].As<Napi::Buffer<unsigned char>>();
  Bytes out;
  if (!s.Seal(plain.Data(), plain.Length(), &out)) throw Napi::Error::New(env, "sealRecords: EVP_EncryptUpdate failed");
  return Napi::Buffer<unsigned char>::Copy(env, out.data(), out.size);
}

Napi::Value SealDerive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sealer s;
  MakeSealer(env, "sealDerive", info[0], info[1], Napi::Number::New(env, 0), env.Undefined(), &s);
  unsigned char key[32];
  if (!ExpandLabel(s.suite, s.secret, "key", s.suite.key_len, key)) throw Napi::Error::New(env, "sealDerive: HMAC failed");
  Napi::Object o = Napi::Object::New(env);
  o.Set("key", Napi::Buffer<unsigned char>::Copy(env, key, s.suite.key_len));
  o.Set("iv", Napi::Buffer<unsigned char>::Copy(env, s.iv, 12));
  return o;
}

}  // namespace

bool TlsCryptoAvailable() {
  return Lib().ok;
}

Sealer::~Sealer() {
  if (ctx) Lib().ctx_free(ctx);
}

bool Sealer::Keys() {
  return KeyAead(suite, secret, iv, &ctx, false);
}

bool Sealer::Record(unsigned char type, const unsigned char* data, size_t n, Bytes* out) {
  const Crypto& c = Lib();
  unsigned char nonce[12];
  Nonce(iv, seq, nonce);
  size_t len = n + 1 + 16;
  unsigned char* p = out->Grow(5 + len);
  p[0] = 23;  // application_data
  p[1] = 3;
  p[2] = 3;
  p[3] = static_cast<unsigned char>(len >> 8);
  p[4] = static_cast<unsigned char>(len);
  int outl = 0;
  if (c.init(ctx, nullptr, nullptr, nullptr, nonce) != 1) return false;
  if (c.update(ctx, nullptr, &outl, p, 5) != 1) return false;  // additional data: the header
  if (n && c.update(ctx, p + 5, &outl, data, static_cast<int>(n)) != 1) return false;
  if (c.update(ctx, p + 5 + n, &outl, &type, 1) != 1) return false;
  if (c.final(ctx, p + 6 + n, &outl) != 1) return false;
  if (c.ctrl(ctx, kCtrlGetTag, 16, p + 6 + n) != 1) return false;
  seq += 1;
  return true;
}

bool Sealer::Seal(const unsigned char* data, size_t n, Bytes* out) {
  for (size_t off = 0; off < n; off += kRecordPlain) {
    if (seq >= rekey_after && !Update(out)) return false;
    if (!Record(23, data + off, std::min(kRecordPlain, n - off), out)) return false;
  }
  return true;
}

bool Sealer::Update(Bytes* out) {
  static const unsigned char msg[] = {24, 0, 0, 1, 0};
  if (!Record(22, msg, sizeof msg, out)) return false;
  if (!NextSecret(suite, &secret)) return false;
  seq = 0;
  return Keys();
}

bool Sealer::Empty(Bytes* out) {
  if (seq >= rekey_after && !Update(out)) return false;
  return Record(23, nullptr, 0, out);
}

bool Sealer::CloseNotify(Bytes* out) {
  static const unsigned char alert[] = {1, 0};  // warning, close_notify
  return Record(21, alert, sizeof alert, out);
}

// Reads { suite, secret, seq, rekeyAfter } (or the positional form of sealRecords) into a ready Sealer.
void MakeSealer(Napi::Env env, const char* fn, const Napi::Value& suite_v, const Napi::Value& secret_v, const Napi::Value& seq_v, const Napi::Value& rekey_v, Sealer* s) {
  std::string where = std::string(fn) + ": ";
  ReadKeys(env, where, suite_v, secret_v, seq_v, &s->suite, &s->secret, &s->seq);
  if (!rekey_v.IsUndefined()) {
    if (!rekey_v.IsNumber()) throw Napi::TypeError::New(env, where + "rekeyAfter must be a number");
    double r = rekey_v.As<Napi::Number>().DoubleValue();
    if (!(r >= 1 && r <= kDefaultRekeyAfter) || r != static_cast<double>(static_cast<int64_t>(r))) throw Napi::RangeError::New(env, where + "rekeyAfter must be an integer from 1 to 2^23");
    s->rekey_after = r;
  }
  if (!s->Keys()) throw Napi::Error::New(env, where + "deriving the record keys failed (HMAC / EVP_EncryptInit_ex)");
}

Opener::~Opener() {
  if (ctx) Lib().ctx_free(ctx);
}

bool Opener::Keys() {
  return KeyAead(suite, secret, iv, &ctx, true);
}

bool Opener::Open(const unsigned char* rec, size_t len, double at, unsigned char* out, size_t* n, unsigned char* type) {
  const Crypto& c = Lib();
  if (len < 17) return false;
  unsigned char nonce[12];
  Nonce(iv, at, nonce);
  size_t body = len - 16;
  int outl = 0;
  if (c.dinit(ctx, nullptr, nullptr, nullptr, nonce) != 1) return false;
  if (c.dupdate(ctx, nullptr, &outl, rec, 5) != 1) return false;  // additional data: the header
  if (c.dupdate(ctx, out, &outl, rec + 5, static_cast<int>(body)) != 1) return false;
  if (c.ctrl(ctx, kCtrlSetTag, 16, const_cast<unsigned char*>(rec + 5 + body)) != 1) return false;
  if (c.dfinal(ctx, out + outl, &outl) != 1) return false;
  size_t end = body;
  while (end > 0 && out[end - 1] == 0) end--;  // RFC 8446 5.4: zero padding after the type
  *type = end ? out[end - 1] : 0;
  *n = end ? end - 1 : 0;
  return true;
}

bool Opener::Update() {
  if (!NextSecret(suite, &secret)) return false;
  seq = 0;
  return Keys();
}

void MakeOpener(Napi::Env env, const char* fn, const Napi::Value& suite_v, const Napi::Value& secret_v, const Napi::Value& seq_v, Opener* o) {
  std::string where = std::string(fn) + ": ";
  ReadKeys(env, where, suite_v, secret_v, seq_v, &o->suite, &o->secret, &o->seq);
  if (!o->Keys()) throw Napi::Error::New(env, where + "deriving the record keys failed (HMAC / EVP_DecryptInit_ex)");
}

void RegisterTlsRecords(Napi::Env env, Napi::Object exports) {
  exports.Set("sealRecords", Napi::Function::New(env, SealRecords, "sealRecords"));
  exports.Set("sealDerive", Napi::Function::New(env, SealDerive, "sealDerive"));
}

}  // namespace braid

#else  // not Linux: the upload stays in Node's TLS.

namespace braid {
bool TlsCryptoAvailable() { return false; }
void RegisterTlsRecords(Napi::Env, Napi::Object) {}
}  // namespace braid

#endif
