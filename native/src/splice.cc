// The kernel moves the bytes: a tunnel between two connected stream sockets whose bytes go
// socket → pipe → socket with splice(2), both directions, on the main libuv loop (uv_poll, level
// triggered, non-blocking), so a plain (non-TLS) tunnel costs no copies into JavaScript.
//
//   spliceStart(fdA, fdB, onEnd[, onEof]) -> id
//                                          onEnd({ reason: 'done'|'error'|'stopped', code?, syscall?,
//                                          up, down }) once, on the loop; onEof('up'|'down') when a
//                                          side's EOF was read (A's: 'up'), once per direction
//   spliceStats(id) -> { up, down }        bytes written A→B and B→A so far (undefined once ended)
//   spliceStop(id)                         ends it now ('stopped', onEnd runs before it returns);
//                                          no-op once ended
//
// The fds stay owned by the caller's net.Sockets (paused, nothing queued): the pump works on dup()s
// of them, closed when it ends, so Node's handles and this pump never share an epoll registration.
// Half-close is kept: EOF from one side becomes shutdown(SHUT_WR) on the other once the pipe is
// empty, while the other direction keeps flowing; the tunnel is done when both directions are.
// Backpressure: each direction holds at most one pipe (kPipeBytes) and stops reading while it is
// full; a wakeup moves at most kBurstBytes per direction before yielding to the loop.
// An MPTCP socket is fed up to its writable mark and no further than kFeedBytes past it (feed.h).
#include "splice.h"

#ifdef __linux__
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <map>
#include <string>

#include "errors.h"
#include "feed.h"
#include "pump_args.h"

namespace braid {
namespace {

constexpr int kPipeBytes = 1 << 20;
constexpr size_t kBurstBytes = 4 << 20;

struct Tunnel;

struct Direction {
  int in = -1, out = -1;  // borrowed from Tunnel (the dups)
  int pipe_r = -1, pipe_w = -1;
  size_t in_pipe = 0;
  size_t capacity = 65536;
  bool fed = false;      // `out` is an MPTCP socket: written up to its FeedAllowance per wakeup
  bool eof = false;      // read side returned 0
  bool eof_told = false; // onEof called for it
  bool shut = false;     // EOF passed on (shutdown(out, SHUT_WR) done)
  bool want_read = false, want_write = false;
  double bytes = 0;
};

struct Tunnel {
  uint32_t id = 0;
  int fa = -1, fb = -1;
  uv_poll_t pa{}, pb{};
  Direction up, down;  // up: A → B, down: B → A
  napi_env env = nullptr;
  Napi::FunctionReference on_end;
  Napi::FunctionReference on_eof;  // may be empty
  napi_async_context async_context = nullptr;
  bool ended = false;
  int open_handles = 0;
};

std::map<uint32_t, Tunnel*> g_tunnels;
uint32_t g_next_id = 1;

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

void OnPollClosed(uv_handle_t* h) {
  auto* t = static_cast<Tunnel*>(h->data);
  if (--t->open_handles > 0) return;
  CloseFd(t->fa);
  CloseFd(t->fb);
  if (t->async_context) napi_async_destroy(t->env, t->async_context);
  delete t;
}

// Ends the tunnel once: stops polling, frees the pipes and dups, tells JavaScript.
void End(Tunnel* t, const char* reason, int err, const char* syscall) {
  if (t->ended) return;
  t->ended = true;
  g_tunnels.erase(t->id);
  uv_poll_stop(&t->pa);
  uv_poll_stop(&t->pb);
  for (Direction* d : {&t->up, &t->down}) {
    CloseFd(d->pipe_r);
    CloseFd(d->pipe_w);
  }
  Napi::Env env(t->env);
  {
    Napi::HandleScope scope(env);
    Napi::Object result = Napi::Object::New(env);
    result.Set("reason", reason);
    if (err) {
      result.Set("code", ErrnoName(err));
      result.Set("syscall", syscall);
    }
    result.Set("up", t->up.bytes);
    result.Set("down", t->down.bytes);
    Napi::Function fn = t->on_end.Value();
    napi_value recv = Napi::Object::New(env);
    napi_value argv[] = {result};
    napi_value ignored;
    // Inside a callback scope, so that promise continuations run right away; an exception thrown by
    // onEnd is Node's to report (uncaught), not ours to swallow.
    napi_make_callback(t->env, t->async_context, recv, fn, 1, argv, &ignored);
  }
  t->on_end.Reset();
  t->on_eof.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&t->pa), OnPollClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&t->pb), OnPollClosed);
}

// Moves what it can in one direction; returns false (with errno set) on a fatal error.
bool Step(Direction* d, const char** syscall) {
  size_t moved = 0;
  bool out_full = false;  // for this wakeup: EAGAIN, or a fed socket's allowance spent
  FeedAllowance allowance(d->out, d->fed);
  d->want_read = d->want_write = false;
  while (moved < kBurstBytes) {
    size_t len = d->in_pipe > 0 && !out_full ? allowance.Allow(d->in_pipe) : 0;
    if (d->in_pipe > 0 && len == 0) out_full = true;  // a fed socket past its mark (feed.h)
    if (len > 0) {
      ssize_t n = splice(d->pipe_r, nullptr, d->out, nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d->in_pipe -= static_cast<size_t>(n);
        d->bytes += static_cast<double>(n);
        moved += static_cast<size_t>(n);
        out_full = allowance.Spend(static_cast<size_t>(n));
        continue;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        out_full = true;
      } else {
        *syscall = "splice";
        if (n == 0) errno = EPIPE;
        return false;
      }
    }
    if (out_full) {
      d->want_write = true;
      // The pipe still has room: keep reading meanwhile, up to its capacity.
      if (d->eof || d->in_pipe >= d->capacity) return true;
    }
    if (d->eof) {
      if (d->in_pipe == 0 && !d->shut) {
        d->shut = true;
        // ENOTCONN: the peer is already gone both ways; the other direction will say so.
        if (shutdown(d->out, SHUT_WR) != 0 && errno != ENOTCONN) {
          *syscall = "shutdown";
          return false;
        }
      }
      return true;
    }
    size_t room = d->capacity - d->in_pipe;
    if (room == 0) return true;  // want_write is set: the pipe drains first
    ssize_t n = splice(d->in, nullptr, d->pipe_w, nullptr, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d->in_pipe += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      d->eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      d->want_read = true;
      return true;
    }
    *syscall = "splice";
    return false;
  }
  // Burst spent: come back on the next loop turn (level-triggered poll fires again).
  d->want_read = !d->eof && d->in_pipe < d->capacity;
  d->want_write = d->in_pipe > 0;
  return true;
}

void OnPoll(uv_poll_t* handle, int status, int /*events*/);

void Run(Tunnel* t) {
  const char* syscall = "splice";
  for (Direction* d : {&t->up, &t->down}) {
    if (d->shut) continue;
    if (!Step(d, &syscall)) {
      int err = errno;
      End(t, "error", err ? err : EIO, syscall);
      return;
    }
  }
  // Told after the moves, never from inside them: onEof may stop the tunnel.
  for (Direction* d : {&t->up, &t->down}) {
    if (!d->eof || d->eof_told || t->on_eof.IsEmpty()) continue;
    d->eof_told = true;
    Napi::Env env(t->env);
    napi_value argv[] = {Napi::String::New(env, d == &t->up ? "up" : "down")};
    napi_value ignored;
    napi_make_callback(t->env, t->async_context, Napi::Object::New(env), t->on_eof.Value(), 1, argv, &ignored);
    if (t->ended) return;
  }
  if (t->up.shut && t->down.shut) {
    End(t, "done", 0, nullptr);
    return;
  }
  int ea = (t->up.want_read ? UV_READABLE : 0) | (t->down.want_write ? UV_WRITABLE : 0);
  int eb = (t->down.want_read ? UV_READABLE : 0) | (t->up.want_write ? UV_WRITABLE : 0);
  if (ea) uv_poll_start(&t->pa, ea, OnPoll); else uv_poll_stop(&t->pa);
  if (eb) uv_poll_start(&t->pb, eb, OnPoll); else uv_poll_stop(&t->pb);
}

void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* t = static_cast<Tunnel*>(handle->data);
  if (t->ended) return;
  if (status < 0) {
    // libuv reports POLLERR as an error status; the socket's own error says what happened.
    int fd = handle == &t->pa ? t->fa : t->fb;
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr == 0) soerr = -status;
    End(t, "error", soerr, "poll");
    return;
  }
  Napi::HandleScope scope(Napi::Env(t->env));
  Run(t);
}

bool MakePipe(Direction* d) {
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return false;
  d->pipe_r = p[0];
  d->pipe_w = p[1];
  // Best effort: a bigger pipe means fewer syscalls per byte; the default (64 KiB) still works.
  int got = fcntl(d->pipe_w, F_SETPIPE_SZ, kPipeBytes);
  if (got <= 0) got = fcntl(d->pipe_w, F_GETPIPE_SZ);
  d->capacity = got > 0 ? static_cast<size_t>(got) : 65536;
  return true;
}

Napi::Value SpliceStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int a = FdArg(info, 0, "spliceStart", "fdA");
  int b = FdArg(info, 1, "spliceStart", "fdB");
  if (info.Length() < 3 || !info[2].IsFunction()) throw Napi::TypeError::New(env, "spliceStart: onEnd must be a function");
  if (info.Length() > 3 && !info[3].IsFunction() && !info[3].IsUndefined()) throw Napi::TypeError::New(env, "spliceStart: onEof must be a function");
  if (a == b) throw Napi::RangeError::New(env, "spliceStart: fdA and fdB must differ");
  for (int fd : {a, b}) RequireStreamSocket(env, fd, "spliceStart");
  auto* t = new Tunnel();
  auto fail = [&](int err, const char* syscall) -> Napi::Value {
    CloseFd(t->fa);
    CloseFd(t->fb);
    for (Direction* d : {&t->up, &t->down}) {
      CloseFd(d->pipe_r);
      CloseFd(d->pipe_w);
    }
    delete t;
    throw ErrnoError(env, err, syscall);
  };
  t->fa = fcntl(a, F_DUPFD_CLOEXEC, 0);
  if (t->fa < 0) return fail(errno, "fcntl");
  t->fb = fcntl(b, F_DUPFD_CLOEXEC, 0);
  if (t->fb < 0) return fail(errno, "fcntl");
  if (!MakePipe(&t->up) || !MakePipe(&t->down)) return fail(errno, "pipe2");
  t->up.in = t->fa;
  t->up.out = t->fb;
  t->down.in = t->fb;
  t->down.out = t->fa;
  t->up.fed = FedSocket(t->up.out);
  t->down.fed = FedSocket(t->down.out);

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  if (uv_poll_init(loop, &t->pa, t->fa) != 0 || uv_poll_init(loop, &t->pb, t->fb) != 0) return fail(EBADF, "uv_poll_init");
  t->pa.data = t;
  t->pb.data = t;
  t->open_handles = 2;
  t->env = env;
  t->on_end = Napi::Persistent(info[2].As<Napi::Function>());
  if (info.Length() > 3 && info[3].IsFunction()) t->on_eof = Napi::Persistent(info[3].As<Napi::Function>());
  napi_async_init(env, nullptr, Napi::String::New(env, "braid.splice"), &t->async_context);
  t->id = g_next_id++;
  if (g_next_id == 0) g_next_id = 1;
  g_tunnels[t->id] = t;
  // Both directions start wanting to read; the first poll moves whatever is already queued.
  t->up.want_read = t->down.want_read = true;
  uv_poll_start(&t->pa, UV_READABLE, OnPoll);
  uv_poll_start(&t->pb, UV_READABLE, OnPoll);
  return Napi::Number::New(env, t->id);
}

Tunnel* Find(const Napi::CallbackInfo& info, const char* fn) {
  uint32_t id = 0;
  if (!IdArg(info, fn, &id)) return nullptr;
  auto it = g_tunnels.find(id);
  return it == g_tunnels.end() ? nullptr : it->second;
}

Napi::Value SpliceStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Tunnel* t = Find(info, "spliceStats");
  if (!t) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("up", t->up.bytes);
  o.Set("down", t->down.bytes);
  return o;
}

Napi::Value SpliceStop(const Napi::CallbackInfo& info) {
  Tunnel* t = Find(info, "spliceStop");
  if (t) End(t, "stopped", 0, nullptr);
  return info.Env().Undefined();
}

}  // namespace

void RegisterSplice(Napi::Env env, Napi::Object exports) {
  exports.Set("spliceStart", Napi::Function::New(env, SpliceStart, "spliceStart"));
  exports.Set("spliceStats", Napi::Function::New(env, SpliceStats, "spliceStats"));
  exports.Set("spliceStop", Napi::Function::New(env, SpliceStop, "spliceStop"));
}

}  // namespace braid

#else  // not Linux: no splice(2); the JS pump moves the bytes.

namespace braid {
void RegisterSplice(Napi::Env, Napi::Object) {}
}  // namespace braid

#endif
