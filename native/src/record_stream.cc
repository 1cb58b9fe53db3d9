// A peer's records after the handshake, opened in order: see record_stream.h.
#include "record_stream.h"

#include <string>

#ifdef __linux__
#include <cerrno>
#include <vector>

namespace braid {
namespace {

constexpr int kSeqSearch = 4;

// Handshake messages after the handshake (RFC 8446 4.6): tickets are skipped, a KeyUpdate is
// followed once its record is done (*update).
bool Handshake(const unsigned char* m, size_t n, bool* update, RecordFault* f) {
  size_t off = 0;
  while (off < n) {
    if (n - off < 4) return *f = {EPROTO, "a handshake message split across records"}, false;
    size_t len = (size_t{m[off + 1]} << 16) | (size_t{m[off + 2]} << 8) | m[off + 3];
    if (n - off - 4 < len) return *f = {EPROTO, "a handshake message split across records"}, false;
    unsigned char type = m[off];
    if (type == 24) {
      if (len != 1 || m[off + 4] > 1) return *f = {EPROTO, "a malformed KeyUpdate"}, false;
      if (m[off + 4] == 1) return *f = {EPROTO, "the peer asked for a KeyUpdate in return"}, false;
      *update = true;
    } else if (type != 4) {
      return *f = {EPROTO, "an unexpected handshake message after the handshake"}, false;
    }
    off += 4 + len;
  }
  return true;
}

}  // namespace

bool RecordStream::OpenAll(const unsigned char* buf, size_t size, size_t* used, unsigned char* out, size_t* n, RecordFault* f) {
  size_t off = 0;
  while (!closed && size - off >= 5) {
    const unsigned char* rec = buf + off;
    size_t len = (size_t{rec[3]} << 8) | rec[4];
    if (rec[0] != 23 || rec[1] != 3 || rec[2] != 3) return *f = {EPROTO, "not an application-data record"}, false;
    if (len > kMaxRecordBody || len < 17) return *f = {EMSGSIZE, "a record of impossible length"}, false;
    if (size - off - 5 < len) break;
    unsigned char* dst = out + *n;
    size_t got = 0;
    unsigned char type = 0;
    bool ok = opener.Open(rec, len, opener.seq, dst, &got, &type);
    for (int k = 1; !ok && first && k < kSeqSearch; k++) {
      if ((ok = opener.Open(rec, len, opener.seq + k, dst, &got, &type))) opener.seq += k;
    }
    if (!ok) return *f = {EBADMSG, "a record that does not authenticate"}, false;
    first = false;
    opener.seq += 1;
    off += 5 + len;
    if (type == 23) {
      *n += got;
    } else if (type == 22) {
      bool update = false;
      if (!Handshake(dst, got, &update, f)) return false;
      if (update && !opener.Update()) return *f = {EPROTO, "deriving the next keys failed"}, false;
    } else if (type == 21) {
      if (got != 2) return *f = {EPROTO, "a malformed alert"}, false;
      if (dst[1] != 0) return *f = {ECONNRESET, "the peer sent a TLS alert"}, false;
      closed = true;
    } else {
      return *f = {EPROTO, "a record of unknown content type"}, false;
    }
  }
  *used = off;
  return true;
}

namespace {

// openRecords(suite, secret, seq, records) -> Buffer: the data of whole records, opened as open.cc
// opens them (for the addon's self-check and tests); throws on a record it refuses.
Napi::Value OpenRecordsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RecordStream rs;
  MakeOpener(env, "openRecords", info[0], info[1], info[2], &rs.opener);
  if (info.Length() < 4 || !info[3].IsBuffer()) throw Napi::TypeError::New(env, "openRecords: records must be a Buffer");
  auto in = info[3].As<Napi::Buffer<unsigned char>>();
  std::vector<unsigned char> out(in.Length());
  size_t used = 0, n = 0;
  RecordFault f{0, nullptr};
  if (!rs.OpenAll(in.Data(), in.Length(), &used, out.data(), &n, &f)) throw Napi::Error::New(env, std::string("openRecords: ") + f.detail);
  if (used != in.Length() && !rs.closed) throw Napi::RangeError::New(env, "openRecords: a record is cut short");
  return Napi::Buffer<unsigned char>::Copy(env, out.data(), n);
}

}  // namespace

void RegisterRecordStream(Napi::Env env, Napi::Object exports) {
  exports.Set("openRecords", Napi::Function::New(env, OpenRecordsJs, "openRecords"));
}

}  // namespace braid

#else

namespace braid {
void RegisterRecordStream(Napi::Env, Napi::Object) {}
}  // namespace braid

#endif
