// The relay client's upload direction, sealed here instead of in Node's TLS: plaintext read from the
// local socket becomes TLS 1.3 application-data records (RFC 8446 5.2) written straight to the
// relay's socket, on the main libuv loop (uv_poll, level triggered, non-blocking). Node's TLS keeps
// the handshake, the certificate check and the whole download direction; it only stops writing.
// What this saves per byte: Node's read buffer per chunk, the copy into OpenSSL's record buffer and
// its memory BIO, the concatenation of queued writes, and a trip through JavaScript per chunk.
//
//   sealAvailable() -> boolean               the runtime's libcrypto has what this needs (found
//                                            with dlsym: Node exports OpenSSL's symbols)
//   sealStart(fdIn, fdOut, { suite, secret, seq, rekeyAfter? }, head, onEnd[, onEof]) -> id
//        suite: 'TLS_AES_128_GCM_SHA256' | 'TLS_AES_256_GCM_SHA384'; secret: the client's
//        application traffic secret (Buffer); seq: records already sent under it; head: plaintext
//        to send first (Buffer, may be empty). onEnd({ reason: 'done'|'error'|'stopped', code?,
//        syscall?, up }) once, on the loop; onEof() once, when fdIn's EOF was read.
//   sealStats(id) -> { up }                  plaintext bytes sealed and written (undefined once ended)
//   sealStop(id)                             ends it now ('stopped'); no-op once ended
//   sealRecords(suite, secret, seq, plaintext) -> Buffer   the records sealStart would write
//   sealDerive(suite, secret) -> { key, iv } HKDF-Expand-Label "key" / "iv" (RFC 8446 7.3)
//
// EOF from fdIn becomes a close_notify alert and shutdown(fdOut, SHUT_WR), exactly what Node's
// TLSSocket.end() sends. After rekeyAfter records under one key (default 2^23, far below the 2^24.5
// that RFC 8446 5.5 allows AES-GCM) a KeyUpdate is sent and the next key derived (RFC 8446 4.6.3).
// Backpressure: at most one read's records (kReadBytes plus overhead) wait for fdOut; reading stops
// meanwhile. The fds stay the caller's, neither duplicated nor closed here.
#include "seal.h"

#ifdef __linux__
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"

namespace braid {
namespace {

constexpr size_t kRecordPlain = 16384;       // TLS 1.3's largest record plaintext
constexpr size_t kReadBytes = 256 * 1024;
constexpr size_t kBurstBytes = 4 << 20;
constexpr double kDefaultRekeyAfter = 8388608;  // 2^23 records
constexpr int kCtrlGetTag = 0x10;               // EVP_CTRL_AEAD_GET_TAG (OpenSSL and BoringSSL)

// The libcrypto functions used, found at run time in the process (Node exports them; a runtime that
// does not leaves sealAvailable() false and the upload in Node's TLS).
struct Crypto {
  void* (*ctx_new)();
  void (*ctx_free)(void*);
  int (*init)(void*, const void*, void*, const unsigned char*, const unsigned char*);
  int (*update)(void*, unsigned char*, int*, const unsigned char*, int);
  int (*final)(void*, unsigned char*, int*);
  int (*ctrl)(void*, int, int, void*);
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
    k.aes128gcm = reinterpret_cast<const void* (*)()>(get("EVP_aes_128_gcm"));
    k.aes256gcm = reinterpret_cast<const void* (*)()>(get("EVP_aes_256_gcm"));
    k.sha256 = reinterpret_cast<const void* (*)()>(get("EVP_sha256"));
    k.sha384 = reinterpret_cast<const void* (*)()>(get("EVP_sha384"));
    k.hmac = reinterpret_cast<unsigned char* (*)(const void*, const void*, int, const unsigned char*, size_t, unsigned char*, unsigned int*)>(get("HMAC"));
    k.ok = k.ctx_new && k.ctx_free && k.init && k.update && k.final && k.ctrl && k.aes128gcm && k.aes256gcm && k.sha256 && k.sha384 && k.hmac;
    return k;
  }();
  return c;
}

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

// One direction's record protection: key, static IV, sequence number (RFC 8446 5.3).
struct Sealer {
  Suite suite{};
  std::vector<unsigned char> secret;
  unsigned char iv[12] = {};
  double seq = 0;
  double rekey_after = kDefaultRekeyAfter;
  void* ctx = nullptr;

  ~Sealer() {
    if (ctx) Lib().ctx_free(ctx);
  }

  bool Keys() {
    const Crypto& c = Lib();
    unsigned char key[32];
    if (!ExpandLabel(suite, secret, "key", suite.key_len, key) || !ExpandLabel(suite, secret, "iv", 12, iv)) return false;
    if (!ctx) ctx = c.ctx_new();
    bool ok = ctx && c.init(ctx, suite.key_len == 16 ? c.aes128gcm() : c.aes256gcm(), nullptr, key, nullptr) == 1;
    memset(key, 0, sizeof key);
    return ok;
  }

  // Appends one record (inner content type `type`) holding data[0, n) to out.
  bool Record(unsigned char type, const unsigned char* data, size_t n, Bytes* out) {
    const Crypto& c = Lib();
    unsigned char nonce[12];
    memcpy(nonce, iv, 12);
    auto sq = static_cast<uint64_t>(seq);
    for (int i = 0; i < 8; i++) nonce[4 + i] ^= static_cast<unsigned char>(sq >> (56 - 8 * i));
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

  // Seals data[0, n) as application data, sending a KeyUpdate first when the key is used up.
  bool Seal(const unsigned char* data, size_t n, Bytes* out) {
    for (size_t off = 0; off < n; off += kRecordPlain) {
      if (seq >= rekey_after && !Update(out)) return false;
      if (!Record(23, data + off, std::min(kRecordPlain, n - off), out)) return false;
    }
    return true;
  }

  // KeyUpdate(update_not_requested) under the current key, then the next secret's keys.
  bool Update(Bytes* out) {
    static const unsigned char msg[] = {24, 0, 0, 1, 0};
    if (!Record(22, msg, sizeof msg, out)) return false;
    std::vector<unsigned char> next(suite.hash_len);
    if (!ExpandLabel(suite, secret, "traffic upd", suite.hash_len, next.data())) return false;
    std::fill(secret.begin(), secret.end(), 0);
    secret.swap(next);
    seq = 0;
    return Keys();
  }

  bool CloseNotify(Bytes* out) {
    static const unsigned char alert[] = {1, 0};  // warning, close_notify
    return Record(21, alert, sizeof alert, out);
  }
};

// One sealed upload. Its fds are the caller's own (no dup: a tunnel costs no descriptor), watched
// through one epoll instance that all pumps share, itself watched by one uv_poll on the loop. Node
// could close an fd under us (its socket destroyed before the pump was stopped) and the number be
// reused: each run first checks that both fds still name the sockets the pump started with.
struct Pump {
  uint32_t id = 0;
  int in = -1, out = -1;
  dev_t in_dev = 0, out_dev = 0;
  ino_t in_ino = 0, out_ino = 0;
  uint32_t in_events = 0, out_events = 0;  // registered in the shared epoll
  Sealer sealer;
  Bytes pending;                       // records the socket did not take yet
  size_t sent = 0;                     // of pending
  double pending_plain = 0;            // plaintext bytes in pending
  double up = 0;
  bool eof = false, eof_told = false, closed = false, shut = false;
  bool want_read = false, want_write = false;
  Napi::FunctionReference on_end, on_eof;
  napi_async_context async_context = nullptr;
  bool ended = false;
};

struct Shared {
  napi_env env = nullptr;
  uv_loop_t* loop = nullptr;
  int ep = -1;
  uv_poll_t poll{};
  std::vector<unsigned char> plain;   // one read's plaintext (the loop runs one pump at a time)
  Bytes sealed;                       // its records, before the socket takes them
  int depth = 0;                      // inside OnEpoll: ended pumps are freed after it
  std::vector<Pump*> dead;
} g;

std::map<uint32_t, Pump*> g_pumps;
uint32_t g_next_id = 1;

bool Same(int fd, dev_t dev, ino_t ino) {
  struct stat st;
  return fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

// Registers what the pump waits for on fd (0: nothing), only when that changed.
bool Watch(Pump* p, int fd, uint32_t* cur, uint32_t want, uint64_t tag) {
  if (*cur == want) return true;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = (static_cast<uint64_t>(p->id) << 1) | tag;
  int op = *cur == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(g.ep, op, fd, &ev) != 0) return false;
  *cur = want;
  return true;
}

void Free(Pump* p) {
  if (p->async_context) napi_async_destroy(g.env, p->async_context);
  delete p;
}

void End(Pump* p, const char* reason, int err, const char* syscall) {
  if (p->ended) return;
  p->ended = true;
  g_pumps.erase(p->id);
  // Only registrations that are still ours: a reused fd number may be another pump's now.
  if (p->in_events && Same(p->in, p->in_dev, p->in_ino)) Watch(p, p->in, &p->in_events, 0, 0);
  if (p->out_events && Same(p->out, p->out_dev, p->out_ino)) Watch(p, p->out, &p->out_events, 0, 1);
  std::fill(p->sealer.secret.begin(), p->sealer.secret.end(), 0);
  Napi::Env env(g.env);
  {
    Napi::HandleScope scope(env);
    Napi::Object result = Napi::Object::New(env);
    result.Set("reason", reason);
    if (err) {
      result.Set("code", ErrnoName(err));
      result.Set("syscall", syscall);
    }
    result.Set("up", p->up);
    napi_value argv[] = {result};
    napi_value ignored;
    napi_make_callback(g.env, p->async_context, Napi::Object::New(env), p->on_end.Value(), 1, argv, &ignored);
  }
  p->on_end.Reset();
  p->on_eof.Reset();
  if (g.depth > 0) g.dead.push_back(p);
  else Free(p);
}

// Sends g.sealed (holding `plain` plaintext bytes); what the socket does not take waits in
// p->pending. Sets *blocked when the socket is full.
bool Offer(Pump* p, double plain, bool* blocked, const char** syscall) {
  size_t off = 0;
  *blocked = false;
  while (off < g.sealed.size) {
    ssize_t n = send(p->out, g.sealed.data() + off, g.sealed.size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      *blocked = true;
      break;
    }
    *syscall = "send";
    return false;
  }
  if (off == g.sealed.size) {
    p->up += plain;
    return true;
  }
  p->pending.Clear();
  memcpy(p->pending.Grow(g.sealed.size - off), g.sealed.data() + off, g.sealed.size - off);
  p->sent = 0;
  p->pending_plain = plain;
  return true;
}

// Moves what it can; false (errno set, *syscall named) on a fatal error.
bool Step(Pump* p, const char** syscall) {
  size_t moved = 0;
  p->want_read = p->want_write = false;
  while (moved < kBurstBytes) {
    if (p->sent < p->pending.size) {
      ssize_t n = send(p->out, p->pending.data() + p->sent, p->pending.size - p->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        p->sent += static_cast<size_t>(n);
        moved += static_cast<size_t>(n);
        if (p->sent == p->pending.size) {
          p->pending.Clear();
          p->sent = 0;
          p->up += p->pending_plain;
          p->pending_plain = 0;
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        p->want_write = true;
        return true;
      }
      *syscall = "send";
      return false;
    }
    bool blocked = false;
    if (p->eof) {
      if (!p->closed) {
        p->closed = true;
        g.sealed.Clear();
        if (!p->sealer.CloseNotify(&g.sealed)) {
          *syscall = "EVP_EncryptUpdate";
          errno = EPROTO;
          return false;
        }
        if (!Offer(p, 0, &blocked, syscall)) return false;
        if (blocked) {
          p->want_write = true;
          return true;
        }
      }
      if (!p->shut) {
        p->shut = true;
        // ENOTCONN: the relay is already gone both ways; Node's reading side will say so.
        if (shutdown(p->out, SHUT_WR) != 0 && errno != ENOTCONN) {
          *syscall = "shutdown";
          return false;
        }
      }
      return true;
    }
    ssize_t n = recv(p->in, g.plain.data(), g.plain.size(), MSG_DONTWAIT);
    if (n > 0) {
      g.sealed.Clear();
      if (!p->sealer.Seal(g.plain.data(), static_cast<size_t>(n), &g.sealed)) {
        *syscall = "EVP_EncryptUpdate";
        errno = EPROTO;
        return false;
      }
      if (!Offer(p, static_cast<double>(n), &blocked, syscall)) return false;
      moved += static_cast<size_t>(n);
      if (blocked) {
        p->want_write = true;
        return true;
      }
      continue;
    }
    if (n == 0) {
      p->eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      p->want_read = true;
      // Idle: a backlog buffer from a burst is not kept for a quiet connection.
      if (p->pending.cap) p->pending.Release();
      return true;
    }
    *syscall = "recv";
    return false;
  }
  // Burst spent: come back on the next loop turn (the shared epoll is level triggered).
  p->want_read = !p->eof && p->sent >= p->pending.size;
  p->want_write = p->sent < p->pending.size;
  return true;
}

void Run(Pump* p) {
  if (!Same(p->in, p->in_dev, p->in_ino) || !Same(p->out, p->out_dev, p->out_ino)) {
    // Node closed a socket before stopping the pump: not ours to touch any more.
    p->in_events = p->out_events = 0;
    End(p, "error", EBADF, "fstat");
    return;
  }
  const char* syscall = "send";
  if (!Step(p, &syscall)) {
    int err = errno;
    End(p, "error", err ? err : EIO, syscall);
    return;
  }
  if (p->eof && !p->eof_told) {
    p->eof_told = true;
    if (!p->on_eof.IsEmpty()) {
      Napi::Env env(g.env);
      napi_value ignored;
      napi_make_callback(g.env, p->async_context, Napi::Object::New(env), p->on_eof.Value(), 0, nullptr, &ignored);
      if (p->ended) return;
    }
  }
  if (p->shut) {
    End(p, "done", 0, nullptr);
    return;
  }
  if (!Watch(p, p->in, &p->in_events, p->want_read ? uint32_t{EPOLLIN} : 0u, 0) || !Watch(p, p->out, &p->out_events, p->want_write ? uint32_t{EPOLLOUT} : 0u, 1)) End(p, "error", errno, "epoll_ctl");
}

void OnEpoll(uv_poll_t* /*handle*/, int status, int /*events*/) {
  if (status < 0) return;
  epoll_event evs[64];
  int n = epoll_wait(g.ep, evs, 64, 0);
  if (n <= 0) return;
  Napi::HandleScope scope(Napi::Env(g.env));
  g.depth++;
  for (int i = 0; i < n; i++) {
    // Looked up each time: a pump run earlier in this batch may have ended (or started) others.
    auto it = g_pumps.find(static_cast<uint32_t>(evs[i].data.u64 >> 1));
    if (it != g_pumps.end() && !it->second->ended) Run(it->second);
  }
  g.depth--;
  for (Pump* p : g.dead) Free(p);
  g.dead.clear();
}

// The shared epoll and its uv_poll, made on first use, on this loop only.
void Setup(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  if (g.ep >= 0) {
    if (loop != g.loop) throw Napi::Error::New(env, "sealStart: only on the thread that first used it");
    return;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) throw ErrnoError(env, errno, "epoll_create1");
  if (uv_poll_init(loop, &g.poll, ep) != 0) {
    close(ep);
    throw ErrnoError(env, EBADF, "uv_poll_init");
  }
  // The sockets keep the loop alive while they are open; this watcher never does.
  uv_unref(reinterpret_cast<uv_handle_t*>(&g.poll));
  uv_poll_start(&g.poll, UV_READABLE, OnEpoll);
  g.ep = ep;
  g.loop = loop;
  g.env = env;
  g.plain.resize(kReadBytes);
}

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(env, std::string("sealStart: ") + what + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647) || d != static_cast<double>(static_cast<int>(d))) throw Napi::RangeError::New(env, std::string("sealStart: ") + what + " must be a non-negative integer");
  return static_cast<int>(d);
}

// Reads { suite, secret, seq, rekeyAfter } (or the positional form of sealRecords) into a ready Sealer.
void MakeSealer(Napi::Env env, const char* fn, const Napi::Value& suite_v, const Napi::Value& secret_v, const Napi::Value& seq_v, const Napi::Value& rekey_v, Sealer* s) {
  std::string where = std::string(fn) + ": ";
  if (!Lib().ok) throw Napi::Error::New(env, where + "the runtime's libcrypto lacks the functions it needs (sealAvailable() is false)");
  if (!suite_v.IsString() || !SuiteByName(suite_v.As<Napi::String>().Utf8Value(), &s->suite)) throw Napi::TypeError::New(env, where + "suite must be 'TLS_AES_128_GCM_SHA256' or 'TLS_AES_256_GCM_SHA384'");
  if (!secret_v.IsBuffer()) throw Napi::TypeError::New(env, where + "secret must be a Buffer");
  auto secret = secret_v.As<Napi::Buffer<unsigned char>>();
  if (secret.Length() != s->suite.hash_len) throw Napi::RangeError::New(env, where + "secret must be " + std::to_string(s->suite.hash_len) + " bytes for this suite");
  s->secret.assign(secret.Data(), secret.Data() + secret.Length());
  if (!seq_v.IsNumber()) throw Napi::TypeError::New(env, where + "seq must be a number");
  double seq = seq_v.As<Napi::Number>().DoubleValue();
  if (!(seq >= 0 && seq < 9007199254740992.0) || seq != static_cast<double>(static_cast<int64_t>(seq))) throw Napi::RangeError::New(env, where + "seq must be a non-negative integer");
  s->seq = seq;
  if (!rekey_v.IsUndefined()) {
    if (!rekey_v.IsNumber()) throw Napi::TypeError::New(env, where + "rekeyAfter must be a number");
    double r = rekey_v.As<Napi::Number>().DoubleValue();
    if (!(r >= 1 && r <= kDefaultRekeyAfter) || r != static_cast<double>(static_cast<int64_t>(r))) throw Napi::RangeError::New(env, where + "rekeyAfter must be an integer from 1 to 2^23");
    s->rekey_after = r;
  }
  if (!s->Keys()) throw Napi::Error::New(env, where + "deriving the record keys failed (HMAC / EVP_EncryptInit_ex)");
}

Napi::Value SealAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Lib().ok);
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

bool IsStreamSocket(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

Napi::Value SealStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int in = FdArg(info, 0, "fdIn");
  int out = FdArg(info, 1, "fdOut");
  if (in == out) throw Napi::RangeError::New(env, "sealStart: fdIn and fdOut must differ");
  if (info.Length() < 3 || !info[2].IsObject()) throw Napi::TypeError::New(env, "sealStart: params must be an object");
  if (info.Length() < 4 || !info[3].IsBuffer()) throw Napi::TypeError::New(env, "sealStart: head must be a Buffer");
  if (info.Length() < 5 || !info[4].IsFunction()) throw Napi::TypeError::New(env, "sealStart: onEnd must be a function");
  if (info.Length() > 5 && !info[5].IsFunction() && !info[5].IsUndefined()) throw Napi::TypeError::New(env, "sealStart: onEof must be a function");
  struct stat sin, sout;
  for (int fd : {in, out}) {
    if (!IsStreamSocket(fd)) {
      int err = errno == 0 ? ENOTSOCK : errno;
      throw ErrnoError(env, err == ENOPROTOOPT ? ENOTSOCK : err, "getsockopt", "SO_TYPE (sealStart needs stream sockets)");
    }
  }
  if (fstat(in, &sin) != 0 || fstat(out, &sout) != 0) throw ErrnoError(env, errno, "fstat");
  Napi::Object params = info[2].As<Napi::Object>();
  auto* p = new Pump();
  try {
    MakeSealer(env, "sealStart", params.Get("suite"), params.Get("secret"), params.Get("seq"), params.Get("rekeyAfter"), &p->sealer);
    Setup(env);
  } catch (...) {
    delete p;
    throw;
  }
  auto head = info[3].As<Napi::Buffer<unsigned char>>();
  if (head.Length() && !p->sealer.Seal(head.Data(), head.Length(), &p->pending)) {
    delete p;
    throw Napi::Error::New(env, "sealStart: EVP_EncryptUpdate failed");
  }
  p->pending_plain = static_cast<double>(head.Length());
  p->in = in;
  p->out = out;
  p->in_dev = sin.st_dev;
  p->in_ino = sin.st_ino;
  p->out_dev = sout.st_dev;
  p->out_ino = sout.st_ino;
  p->on_end = Napi::Persistent(info[4].As<Napi::Function>());
  if (info.Length() > 5 && info[5].IsFunction()) p->on_eof = Napi::Persistent(info[5].As<Napi::Function>());
  napi_async_init(env, nullptr, Napi::String::New(env, "braid.seal"), &p->async_context);
  p->id = g_next_id++;
  if (g_next_id == 0) g_next_id = 1;
  // The first run (from the loop, never from here: it may call back) sends the head and whatever is
  // already readable.
  if (!Watch(p, p->in, &p->in_events, EPOLLIN, 0) || (head.Length() && !Watch(p, p->out, &p->out_events, EPOLLOUT, 1))) {
    int err = errno;
    if (p->in_events) epoll_ctl(g.ep, EPOLL_CTL_DEL, p->in, nullptr);
    Free(p);
    throw ErrnoError(env, err, "epoll_ctl");
  }
  g_pumps[p->id] = p;
  return Napi::Number::New(env, p->id);
}

Pump* Find(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, std::string(fn) + ": id must be a number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) return nullptr;
  auto it = g_pumps.find(static_cast<uint32_t>(d));
  return it == g_pumps.end() ? nullptr : it->second;
}

Napi::Value SealStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pump* p = Find(info, "sealStats");
  if (!p) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("up", p->up);
  return o;
}

Napi::Value SealStop(const Napi::CallbackInfo& info) {
  Pump* p = Find(info, "sealStop");
  if (p) End(p, "stopped", 0, nullptr);
  return info.Env().Undefined();
}

}  // namespace

void RegisterSeal(Napi::Env env, Napi::Object exports) {
  exports.Set("sealAvailable", Napi::Function::New(env, SealAvailable, "sealAvailable"));
  exports.Set("sealStart", Napi::Function::New(env, SealStart, "sealStart"));
  exports.Set("sealStats", Napi::Function::New(env, SealStats, "sealStats"));
  exports.Set("sealStop", Napi::Function::New(env, SealStop, "sealStop"));
  exports.Set("sealRecords", Napi::Function::New(env, SealRecords, "sealRecords"));
  exports.Set("sealDerive", Napi::Function::New(env, SealDerive, "sealDerive"));
}

}  // namespace braid

#else  // not Linux: the upload stays in Node's TLS.

namespace braid {
void RegisterSeal(Napi::Env, Napi::Object) {}
}  // namespace braid

#endif
