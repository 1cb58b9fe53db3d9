// What one end of the relay connection sends, sealed here instead of in Node's TLS (the upload at
// the relay client, the download at the relay): plaintext read from a plain socket becomes TLS 1.3
// application-data records (RFC 8446 5.2) written straight to the relay connection's socket, on the
// main libuv loop (one shared epoll, level triggered, watched by a uv_poll; non-blocking sockets).
// The records themselves are tls_records.cc's. Node's TLS keeps the handshake, the certificate check
// and the other direction; it only stops writing.
// What this saves per byte: Node's read buffer per chunk, the copy into OpenSSL's record buffer and
// its memory BIO, the concatenation of queued writes, and a trip through JavaScript per chunk.
//
//   sealAvailable() -> boolean               the runtime's libcrypto has what this needs (found
//                                            with dlsym: Node exports OpenSSL's symbols)
//   sealStart(fdIn, fdOut, { suite, secret, seq, rekeyAfter? }, head, onEnd[, onEof]) -> id
//        suite: 'TLS_AES_128_GCM_SHA256' | 'TLS_AES_256_GCM_SHA384'; secret: the sending end's
//        application traffic secret (Buffer); seq: records already sent under it; head: plaintext
//        to send first (Buffer, may be empty). onEnd({ reason: 'done'|'error'|'stopped', code?,
//        syscall?, sealed }) once, on the loop; onEof() once, when fdIn's EOF was read.
//   sealStats(id) -> { sealed }                plaintext bytes sealed and written (undefined once ended)
//   sealStop(id)                             ends it now ('stopped'); no-op once ended
//   sealNudge(id) -> boolean                 queues one record with no data, sent on the loop's
//                                            next turn: an empty application-data record, or after
//                                            kEmptyInRow of them a KeyUpdate. False (nothing
//                                            queued) once ended, after EOF, while records still wait
//                                            for the socket, or when the limits below are reached.
//                                            Any segment the kernel sends carries its current MPTCP
//                                            DATA_ACK; proxy/ack-nudge.ts says why that matters.
//   sealRecords / sealDerive                 the record layer alone (tls_records.h), for tests
//
// EOF from fdIn becomes a close_notify alert and shutdown(fdOut, SHUT_WR), exactly what Node's
// TLSSocket.end() sends. After rekeyAfter records under one key (default 2^23, far below the 2^24.5
// that RFC 8446 5.5 allows AES-GCM) a KeyUpdate is sent and the next key derived (RFC 8446 4.6.3).
// Backpressure: at most one read's records (kReadBytes plus overhead) wait for fdOut; reading stops
// meanwhile. The fds stay the caller's, neither duplicated nor closed here.
#include "seal.h"
#include "tls_records.h"

#ifdef __linux__
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
#include "feed.h"
#include "pump_args.h"
#include "pump_loop.h"

namespace braid {
namespace {

constexpr size_t kReadBytes = 256 * 1024;
constexpr size_t kBurstBytes = 4 << 20;
// Records with no data that a TLS stack accepts in a row: OpenSSL and BoringSSL refuse more than 32
// consecutive empty records, and BoringSSL more than 32 KeyUpdates with no application data
// between them; any other record resets the first count. Half of each, then sealNudge refuses until
// data has been sealed again.
constexpr int kEmptyInRow = 16;
constexpr int kUpdatesInRow = 16;

PumpLoop g_loop("braid.seal");

// One sealed stream. Its fds are the caller's own (no dup: a tunnel costs no descriptor), watched
// through the pumps' shared epoll (pump_loop.h). Node could close an fd under us (its socket
// destroyed before the pump was stopped) and the number be reused: each run first checks that both
// fds still name the sockets the pump started with.
struct Pump : LoopPump {
  int in = -1, out = -1;
  dev_t in_dev = 0, out_dev = 0;
  ino_t in_ino = 0, out_ino = 0;
  uint32_t in_events = 0, out_events = 0;  // registered in the shared epoll
  Sealer sealer;
  Bytes pending;                       // records the socket did not take yet
  size_t sent = 0;                     // of pending
  double pending_plain = 0;            // plaintext bytes in pending
  double sealed = 0;
  bool eof = false, eof_told = false, closed = false, shut = false;
  int empties = 0, updates = 0;        // records with no data sent since the last data (sealNudge)
  bool want_read = false, want_write = false;
  bool fed = false;                    // `out` is an MPTCP socket: written up to its FeedAllowance per wakeup
  Napi::FunctionReference on_end, on_eof;

  void Run() override;
};

// Buffers for one read at a time (the loop runs one pump at a time).
struct Shared {
  std::vector<unsigned char> plain;   // one read's plaintext
  Bytes sealed;                       // its records, before the socket takes them
} g;

bool Watch(Pump* p, int fd, uint32_t* cur, uint32_t want, uint64_t tag) {
  return g_loop.Watch(p, fd, cur, want, tag);
}

void End(Pump* p, const char* reason, int err, const char* syscall) {
  if (p->ended) return;
  p->ended = true;
  // Only registrations that are still ours: a reused fd number may be another pump's now.
  if (p->in_events && SameFile(p->in, p->in_dev, p->in_ino)) Watch(p, p->in, &p->in_events, 0, 0);
  if (p->out_events && SameFile(p->out, p->out_dev, p->out_ino)) Watch(p, p->out, &p->out_events, 0, 1);
  std::fill(p->sealer.secret.begin(), p->sealer.secret.end(), 0);
  Napi::Env env(g_loop.env());
  {
    Napi::HandleScope scope(env);
    Napi::Object result = Napi::Object::New(env);
    result.Set("reason", reason);
    if (err) {
      result.Set("code", ErrnoName(err));
      result.Set("syscall", syscall);
    }
    result.Set("sealed", p->sealed);
    napi_value argv[] = {result};
    napi_value ignored;
    napi_make_callback(env, p->async_context, Napi::Object::New(env), p->on_end.Value(), 1, argv, &ignored);
  }
  p->on_end.Reset();
  p->on_eof.Reset();
  g_loop.Retire(p);
}

// Sends g.sealed (holding `plain` plaintext bytes); what the socket does not take waits in
// p->pending. Sets *blocked when the socket is full.
bool Offer(Pump* p, double plain, bool* blocked, const char** syscall) {
  size_t off = 0;
  Sent st = SendSome(p->out, g.sealed.data(), g.sealed.size, &off);
  *blocked = st == Sent::kFull;
  if (st == Sent::kError) {
    *syscall = "send";
    return false;
  }
  if (off == g.sealed.size) {
    p->sealed += plain;
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
  // Counted in plaintext: records add 22 bytes in 16 KiB.
  FeedAllowance allowance(p->out, p->fed);
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
          p->sealed += p->pending_plain;
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
    size_t want = allowance.Allow(g.plain.size());
    if (want == 0) {
      // Past the socket's writable mark (feed.h): the next read waits for it to take more.
      p->want_write = true;
      return true;
    }
    ssize_t n = recv(p->in, g.plain.data(), want, MSG_DONTWAIT);
    if (n > 0) {
      g.sealed.Clear();
      p->empties = p->updates = 0;
      if (!p->sealer.Seal(g.plain.data(), static_cast<size_t>(n), &g.sealed)) {
        *syscall = "EVP_EncryptUpdate";
        errno = EPROTO;
        return false;
      }
      if (!Offer(p, static_cast<double>(n), &blocked, syscall)) return false;
      moved += static_cast<size_t>(n);
      allowance.Spend(static_cast<size_t>(n));
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

void Pump::Run() {
  Pump* p = this;
  if (!SameFile(p->in, p->in_dev, p->in_ino) || !SameFile(p->out, p->out_dev, p->out_ino)) {
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
      Napi::Env env(g_loop.env());
      napi_value ignored;
      napi_make_callback(env, p->async_context, Napi::Object::New(env), p->on_eof.Value(), 0, nullptr, &ignored);
      if (p->ended) return;
    }
  }
  if (p->shut) {
    End(p, "done", 0, nullptr);
    return;
  }
  if (!Watch(p, p->in, &p->in_events, p->want_read ? uint32_t{EPOLLIN} : 0u, 0) || !Watch(p, p->out, &p->out_events, p->want_write ? uint32_t{EPOLLOUT} : 0u, 1)) End(p, "error", errno, "epoll_ctl");
}

void Setup(Napi::Env env) {
  g_loop.Setup(env);
  if (g.plain.empty()) g.plain.resize(kReadBytes);
}

Napi::Value SealAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), TlsCryptoAvailable());
}

Napi::Value SealStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int in = FdArg(info, 0, "sealStart", "fdIn");
  int out = FdArg(info, 1, "sealStart", "fdOut");
  if (in == out) throw Napi::RangeError::New(env, "sealStart: fdIn and fdOut must differ");
  if (info.Length() < 3 || !info[2].IsObject()) throw Napi::TypeError::New(env, "sealStart: params must be an object");
  if (info.Length() < 4 || !info[3].IsBuffer()) throw Napi::TypeError::New(env, "sealStart: head must be a Buffer");
  if (info.Length() < 5 || !info[4].IsFunction()) throw Napi::TypeError::New(env, "sealStart: onEnd must be a function");
  if (info.Length() > 5 && !info[5].IsFunction() && !info[5].IsUndefined()) throw Napi::TypeError::New(env, "sealStart: onEof must be a function");
  struct stat sin, sout;
  for (int fd : {in, out}) RequireStreamSocket(env, fd, "sealStart");
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
  p->fed = FedSocket(out);
  p->in_dev = sin.st_dev;
  p->in_ino = sin.st_ino;
  p->out_dev = sout.st_dev;
  p->out_ino = sout.st_ino;
  p->on_end = Napi::Persistent(info[4].As<Napi::Function>());
  if (info.Length() > 5 && info[5].IsFunction()) p->on_eof = Napi::Persistent(info[5].As<Napi::Function>());
  g_loop.Add(p);
  // The first run (from the loop, never from here: it may call back) sends the head and whatever is
  // already readable.
  if (!Watch(p, p->in, &p->in_events, EPOLLIN, 0) || (head.Length() && !Watch(p, p->out, &p->out_events, EPOLLOUT, 1))) {
    int err = errno;
    if (p->in_events) Watch(p, p->in, &p->in_events, 0, 0);
    p->ended = true;
    g_loop.Retire(p);
    throw ErrnoError(env, err, "epoll_ctl");
  }
  return Napi::Number::New(env, p->id);
}

Pump* Find(const Napi::CallbackInfo& info, const char* fn) {
  uint32_t id = 0;
  if (!IdArg(info, fn, &id)) return nullptr;
  return static_cast<Pump*>(g_loop.Find(id));
}

Napi::Value SealStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pump* p = Find(info, "sealStats");
  if (!p) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("sealed", p->sealed);
  return o;
}

// Queued rather than sent here, so that a failing socket ends the pump from the loop (Step), as any
// other send does, and never inside this call.
Napi::Value SealNudge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pump* p = Find(info, "sealNudge");
  if (!p || p->ended || p->eof || p->closed || p->sent < p->pending.size) return Napi::Boolean::New(env, false);
  // Node may have closed the socket before stopping the pump (Run() ends it then): not ours to touch.
  if (!SameFile(p->out, p->out_dev, p->out_ino)) return Napi::Boolean::New(env, false);
  bool update = p->empties >= kEmptyInRow;
  if (update && p->updates >= kUpdatesInRow) return Napi::Boolean::New(env, false);
  p->pending.Clear();
  p->sent = 0;
  p->pending_plain = 0;
  if (!(update ? p->sealer.Update(&p->pending) : p->sealer.Empty(&p->pending))) throw Napi::Error::New(env, "sealNudge: EVP_EncryptUpdate failed");
  if (update) {
    p->updates++;
    p->empties = 0;
  } else {
    p->empties++;
  }
  if (!Watch(p, p->out, &p->out_events, p->out_events | EPOLLOUT, 1)) throw ErrnoError(env, errno, "epoll_ctl");
  return Napi::Boolean::New(env, true);
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
  exports.Set("sealNudge", Napi::Function::New(env, SealNudge, "sealNudge"));
  RegisterTlsRecords(env, exports);
}

}  // namespace braid

#else  // not Linux: the upload stays in Node's TLS.

namespace braid {
void RegisterSeal(Napi::Env, Napi::Object) {}
}  // namespace braid

#endif
