// What the relay client receives over the relay connection, opened here instead of in Node's TLS:
// TLS 1.3 records (RFC 8446 5.2) read straight from the connection's socket and decrypted, their
// plaintext handed to JavaScript one read at a time (up to kReadBytes of records per callback,
// where Node's TLS makes one per 16 KiB record and copies each through its memory BIO). Node keeps
// the handshake, the certificate check and the other direction; it stops reading once the
// handshake is done, before the relay has sent anything under the application keys.
//
//   openStart(fd, { suite, secret, seq }, onRead, onEnd) -> id
//        secret: the peer's application traffic secret (Node's 'keylog', SERVER_TRAFFIC_SECRET_0);
//        seq: records the peer has sent under it that Node read (0 when Node stopped at once).
//        onRead(chunk) for each read's plaintext, returning false to pause until openResume;
//        onRead(null) once at the end of the stream (close_notify, or a FIN between records).
//        onEnd({ reason: 'done'|'error'|'stopped', code?, syscall?, detail?, opened }) once, after.
//   openResume(id)                 reads again after onRead returned false
//   openOutput(id, fdOut, head) -> boolean
//        from here the plaintext is written to fdOut (`head` first), not handed to JavaScript, as
//        the sealer reads it (seal.cc): at most one read's plaintext waits for fdOut, reading
//        stops meanwhile; at the end, shutdown(fdOut, SHUT_WR), then onRead(null). False once ended.
//   openStats(id) -> { opened, written, held }   plaintext bytes opened, written to fdOut, and
//                                  whether some wait for it (undefined once ended)
//   openStop(id)                   ends it now ('stopped'); no-op once ended
//
// What the records may hold besides data, and what is refused, is record_stream.h's; a record that
// does not authenticate is an error (EBADMSG), as it is for Node.
// The fd stays the caller's: neither duplicated nor closed here; stop it before closing the socket.
#include "open.h"
#include "record_stream.h"
#include "tls_records.h"

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "pump_args.h"
#include "pump_loop.h"

namespace braid {
namespace {

PumpLoop g_loop("braid.open");
constexpr size_t kReadBytes = 256 * 1024;
constexpr size_t kBurstBytes = 4 << 20;

struct Pump : LoopPump {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  uint32_t events = 0;
  RecordStream records;
  Bytes partial;              // an incomplete record's bytes, read before the rest arrived
  double opened = 0;
  bool paused = false, eof = false;
  bool resumed = false;       // openResume was called during the last onRead
  // Piped (openOutput): the plaintext goes to `out` from here, not to JavaScript.
  bool piped = false, shut = false, want_write = false;
  int out = -1;
  dev_t out_dev = 0;
  ino_t out_ino = 0;
  uint32_t out_events = 0;
  Bytes pending;              // plaintext `out` did not take yet
  size_t sent = 0;            // of pending
  double written = 0;         // plaintext bytes written to `out`
  Napi::FunctionReference on_read, on_end;

  void Run() override;
};

struct Shared {
  std::vector<unsigned char> in;      // a partial record, then one read
  std::vector<unsigned char> plain;   // their plaintext
} g;

void End(Pump* p, const char* reason, int err, const char* syscall, const char* detail = nullptr) {
  if (p->ended) return;
  p->ended = true;
  if (p->events && SameFile(p->fd, p->dev, p->ino)) g_loop.Watch(p, p->fd, &p->events, 0, 0);
  if (p->out_events && SameFile(p->out, p->out_dev, p->out_ino)) g_loop.Watch(p, p->out, &p->out_events, 0, 1);
  std::fill(p->records.opener.secret.begin(), p->records.opener.secret.end(), 0);
  Napi::Env env(g_loop.env());
  {
    Napi::HandleScope scope(env);
    Napi::Object result = Napi::Object::New(env);
    result.Set("reason", reason);
    if (err) {
      result.Set("code", ErrnoName(err));
      result.Set("syscall", syscall);
    }
    if (detail) result.Set("detail", detail);
    result.Set("opened", p->opened);
    result.Set("written", p->written);
    napi_value argv[] = {result};
    napi_value ignored;
    napi_make_callback(env, p->async_context, Napi::Object::New(env), p->on_end.Value(), 1, argv, &ignored);
  }
  p->on_read.Reset();
  p->on_end.Reset();
  g_loop.Retire(p);
}

// Hands `n` plaintext bytes (n == 0 with `eof`: the end) to JavaScript; false if that paused or
// ended the pump.
bool Deliver(Pump* p, size_t n, bool eof) {
  Napi::Env env(g_loop.env());
  Napi::HandleScope scope(env);
  napi_value argv[1];
  if (eof) argv[0] = env.Null();
  else argv[0] = Napi::Buffer<unsigned char>::Copy(env, g.plain.data(), n);
  napi_value ret = nullptr;
  p->resumed = false;
  napi_status st = napi_make_callback(env, p->async_context, Napi::Object::New(env), p->on_read.Value(), 1, argv, &ret);
  if (p->ended) return false;
  bool more = true;
  if (st == napi_ok && ret) napi_get_value_bool(env, ret, &more);
  // The callback's own nextTicks run before it returns: a read() there may already have resumed.
  if (!more && !p->resumed) p->paused = true;
  return more || p->resumed;
}

// Writes what waits in p->pending, then data[0, n) (whatever `out` does not take joins pending):
// false on a fatal error (the pump ended); sets want_write when `out` is full.
bool Flush(Pump* p, const unsigned char* data, size_t n) {
  size_t before = p->sent;
  Sent st = SendSome(p->out, p->pending.data(), p->pending.size, &p->sent);
  p->written += static_cast<double>(p->sent - before);
  if (st == Sent::kError) return End(p, "error", errno, "send"), false;
  if (p->sent == p->pending.size) {
    p->pending.Clear();
    p->sent = 0;
  }
  size_t off = 0;
  if (st == Sent::kAll) st = SendSome(p->out, data, n, &off);
  p->written += static_cast<double>(off);
  if (st == Sent::kError) return End(p, "error", errno, "send"), false;
  p->want_write = st == Sent::kFull;
  if (off < n) memcpy(p->pending.Grow(n - off), data + off, n - off);
  return true;
}

enum class Step { kData, kAgain, kEof, kEnded };

// One read of records: their plaintext in g.plain[0, *out). kEnded: the pump ended (an error, told).
Step ReadRecords(Pump* p, size_t* out, size_t* moved) {
  *out = 0;
  for (;;) {
    size_t have = p->partial.size;
    if (have) memcpy(g.in.data(), p->partial.data(), have);
    ssize_t r = recv(p->fd, g.in.data() + have, kReadBytes, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) {
      // Idle: a buffer from a burst is not kept for a quiet connection.
      if (!have && p->partial.cap) p->partial.Release();
      return Step::kAgain;
    }
    if (r < 0) return End(p, "error", errno, "recv"), Step::kEnded;
    if (r == 0) {
      if (have) return End(p, "error", ECONNRESET, "recv", "the connection ended inside a record"), Step::kEnded;
      p->eof = true;
      return Step::kEof;
    }
    *moved += static_cast<size_t>(r);
    size_t size = have + static_cast<size_t>(r), used = 0;
    RecordFault f{0, nullptr};
    bool ok = p->records.OpenAll(g.in.data(), size, &used, g.plain.data(), out, &f);
    if (p->records.closed) p->eof = true;
    if (!ok) {
      // What came before the fault is the peer's data: it goes first, as Node's TLS delivers it.
      p->opened += static_cast<double>(*out);
      if (*out && !p->piped && !Deliver(p, *out, false) && p->ended) return Step::kEnded;
      if (*out && p->piped && !Flush(p, g.plain.data(), *out)) return Step::kEnded;
      return End(p, "error", f.err, "recv", f.detail), Step::kEnded;
    }
    p->partial.Clear();
    if (!p->eof && used < size) memcpy(p->partial.Grow(size - used), g.in.data() + used, size - used);
    p->opened += static_cast<double>(*out);
    return p->eof && *out == 0 ? Step::kEof : Step::kData;
  }
}

// Piped: records from `fd` to plaintext on `out`; at most one read's plaintext waits for `out`
// (reading stops meanwhile). EOF: shutdown(out, SHUT_WR) once all is written, then onRead(null).
void RunPiped(Pump* p) {
  if (!SameFile(p->out, p->out_dev, p->out_ino)) {
    p->out_events = 0;
    return End(p, "error", EBADF, "fstat");
  }
  size_t moved = 0;
  bool idle = false;
  if (!Flush(p, nullptr, 0)) return;
  while (!p->want_write && !p->eof && moved < kBurstBytes) {
    size_t n = 0;
    Step st = ReadRecords(p, &n, &moved);
    if (st == Step::kEnded) return;
    if (n && !Flush(p, g.plain.data(), n)) return;
    if (st == Step::kAgain) {
      idle = true;
      break;
    }
  }
  if (p->eof && !p->want_write) {
    if (!p->shut) {
      p->shut = true;
      // ENOTCONN: the application is gone both ways already; its socket's own close will say so.
      if (shutdown(p->out, SHUT_WR) != 0 && errno != ENOTCONN) return End(p, "error", errno, "shutdown");
    }
    p->partial.Release();
    if (!Deliver(p, 0, true) && p->ended) return;
    return End(p, "done", 0, nullptr);
  }
  if (idle && !p->want_write && p->pending.cap) p->pending.Release();
  // Level triggered: a spent burst comes back on the loop's next turn.
  uint32_t in = p->want_write || p->eof ? 0u : uint32_t{EPOLLIN};
  if (!g_loop.Watch(p, p->fd, &p->events, in, 0) || !g_loop.Watch(p, p->out, &p->out_events, p->want_write ? uint32_t{EPOLLOUT} : 0u, 1)) End(p, "error", errno, "epoll_ctl");
}

void Pump::Run() {
  Pump* p = this;
  if (!SameFile(p->fd, p->dev, p->ino)) {
    p->events = 0;
    End(p, "error", EBADF, "fstat");
    return;
  }
  if (p->piped) return RunPiped(p);
  size_t moved = 0;
  while (!p->paused && !p->eof && moved < kBurstBytes) {
    size_t n = 0;
    Step st = ReadRecords(p, &n, &moved);
    if (st == Step::kEnded) return;
    if (n && !Deliver(p, n, false) && p->ended) return;
    // JavaScript may have piped it meanwhile (openOutput from within onRead).
    if (p->piped) return RunPiped(p);
    if (st == Step::kAgain) break;
  }
  if (p->eof) {
    p->partial.Release();
    if (!Deliver(p, 0, true) && p->ended) return;
    return End(p, "done", 0, nullptr);
  }
  if (!g_loop.Watch(p, p->fd, &p->events, p->paused ? 0u : uint32_t{EPOLLIN}, 0)) End(p, "error", errno, "epoll_ctl");
}

Pump* Find(const Napi::CallbackInfo& info, const char* fn) {
  uint32_t id = 0;
  if (!IdArg(info, fn, &id)) return nullptr;
  return static_cast<Pump*>(g_loop.Find(id));
}

Napi::Value OpenStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "openStart", "fd");
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "openStart: params must be an object");
  if (info.Length() < 3 || !info[2].IsFunction()) throw Napi::TypeError::New(env, "openStart: onRead must be a function");
  if (info.Length() < 4 || !info[3].IsFunction()) throw Napi::TypeError::New(env, "openStart: onEnd must be a function");
  RequireStreamSocket(env, fd, "openStart");
  struct stat st;
  if (fstat(fd, &st) != 0) throw ErrnoError(env, errno, "fstat");
  Napi::Object params = info[1].As<Napi::Object>();
  auto* p = new Pump();
  try {
    MakeOpener(env, "openStart", params.Get("suite"), params.Get("secret"), params.Get("seq"), &p->records.opener);
    g_loop.Setup(env);
  } catch (...) {
    delete p;
    throw;
  }
  if (g.in.empty()) {
    g.in.resize(kReadBytes + 5 + kMaxRecordBody);
    g.plain.resize(kReadBytes + 5 + kMaxRecordBody);
  }
  p->fd = fd;
  p->dev = st.st_dev;
  p->ino = st.st_ino;
  p->on_read = Napi::Persistent(info[2].As<Napi::Function>());
  p->on_end = Napi::Persistent(info[3].As<Napi::Function>());
  g_loop.Add(p);
  // The first run comes from the loop, never from here: it may call back.
  if (!g_loop.Watch(p, fd, &p->events, EPOLLIN, 0)) {
    int err = errno;
    p->ended = true;
    g_loop.Retire(p);
    throw ErrnoError(env, err, "epoll_ctl");
  }
  return Napi::Number::New(env, p->id);
}

Napi::Value OpenResume(const Napi::CallbackInfo& info) {
  Pump* p = Find(info, "openResume");
  if (p && !p->ended) p->resumed = true;
  if (p && !p->ended && p->paused) {
    p->paused = false;
    // Not read here (this may be inside onRead): the loop's next turn reads, level triggered.
    if (!g_loop.Watch(p, p->fd, &p->events, EPOLLIN, 0)) throw ErrnoError(info.Env(), errno, "epoll_ctl");
  }
  return info.Env().Undefined();
}

// From here the plaintext goes to fdOut (`head` first: what was pushed to JavaScript and not read),
// never again to onRead, but for its null at the end. False once ended.
Napi::Value OpenOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pump* p = Find(info, "openOutput");
  int out = FdArg(info, 1, "openOutput", "fdOut");
  if (info.Length() < 3 || !info[2].IsBuffer()) throw Napi::TypeError::New(env, "openOutput: head must be a Buffer");
  if (!p || p->ended) return Napi::Boolean::New(env, false);
  if (p->piped) throw Napi::Error::New(env, "openOutput: already piped");
  if (out == p->fd) throw Napi::RangeError::New(env, "openOutput: fdOut must differ from the relay connection's fd");
  RequireStreamSocket(env, out, "openOutput");
  struct stat st;
  if (fstat(out, &st) != 0) throw ErrnoError(env, errno, "fstat");
  auto head = info[2].As<Napi::Buffer<unsigned char>>();
  p->pending.Clear();
  p->sent = 0;
  if (head.Length()) memcpy(p->pending.Grow(head.Length()), head.Data(), head.Length());
  p->out = out;
  p->out_dev = st.st_dev;
  p->out_ino = st.st_ino;
  p->piped = true;
  p->paused = false;
  // The loop's next turn writes the head and reads on (never from here: it may call back).
  if (!g_loop.Watch(p, p->fd, &p->events, p->eof ? 0u : uint32_t{EPOLLIN}, 0) || !g_loop.Watch(p, out, &p->out_events, EPOLLOUT, 1)) {
    int err = errno;
    End(p, "error", err, "epoll_ctl");
    throw ErrnoError(env, err, "epoll_ctl");
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value OpenStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pump* p = Find(info, "openStats");
  if (!p) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("opened", p->opened);
  o.Set("written", p->written);
  // Piped, with plaintext waiting for fdOut: the application is not reading (backpressure).
  o.Set("held", p->piped && p->sent < p->pending.size);
  return o;
}

Napi::Value OpenStop(const Napi::CallbackInfo& info) {
  Pump* p = Find(info, "openStop");
  if (p) End(p, "stopped", 0, nullptr);
  return info.Env().Undefined();
}

}  // namespace

void RegisterOpen(Napi::Env env, Napi::Object exports) {
  exports.Set("openStart", Napi::Function::New(env, OpenStart, "openStart"));
  exports.Set("openResume", Napi::Function::New(env, OpenResume, "openResume"));
  exports.Set("openStats", Napi::Function::New(env, OpenStats, "openStats"));
  exports.Set("openOutput", Napi::Function::New(env, OpenOutput, "openOutput"));
  exports.Set("openStop", Napi::Function::New(env, OpenStop, "openStop"));
  RegisterRecordStream(env, exports);
}

}  // namespace braid

#else  // not Linux: what arrives stays in Node's TLS.

namespace braid {
void RegisterOpen(Napi::Env, Napi::Object) {}
}  // namespace braid

#endif
