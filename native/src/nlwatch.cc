#include "nlwatch.h"

#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "errors.h"

namespace braid {
namespace nl {
namespace {

// Messages handled per wakeup before yielding to the rest of the loop; uv_poll is level-triggered,
// so whatever is left is picked up on the next iteration.
constexpr int kBatch = 64;

// Shared by the uv handle (until its close callback) and by each JS method (until it is
// collected): whichever goes last frees it, so a stray close() after collection is still safe.
struct WatchState {
  uv_poll_t poll{};
  int fd = -1;
  napi_env env = nullptr;
  Napi::FunctionReference callback;
  napi_async_context async_context = nullptr;
  bool closing = false;
  std::string kind_key;
  std::function<Napi::Value(Napi::Env, const nlmsghdr*)> decode;
  // One datagram is one notification; link messages with statistics stay far below this.
  std::vector<uint8_t> buf = std::vector<uint8_t>(32 * 1024);
};

void CleanupHook(void* arg);

void OnHandleClosed(uv_handle_t* h) {
  auto* holder = static_cast<std::shared_ptr<WatchState>*>(h->data);
  // libuv has forgotten the fd only now; closing it earlier could hand the number to a new
  // socket while the old watcher still refers to it.
  close((*holder)->fd);
  (*holder)->fd = -1;
  delete holder;
}

// All N-API teardown happens here, while the environment is certainly alive (a user call or the
// environment's cleanup hook); the destructor later frees plain memory only.
void Close(WatchState* st, bool from_cleanup_hook) {
  if (st->closing) return;
  st->closing = true;
  if (!from_cleanup_hook) napi_remove_env_cleanup_hook(st->env, CleanupHook, st);
  uv_poll_stop(&st->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&st->poll), OnHandleClosed);
  st->callback.Reset();
  if (st->async_context) napi_async_destroy(st->env, st->async_context);
  st->async_context = nullptr;
}

void CleanupHook(void* arg) { Close(static_cast<WatchState*>(arg), true); }

Napi::Object Special(Napi::Env env, const WatchState* st, const char* what) {
  Napi::Object o = Napi::Object::New(env);
  o.Set(st->kind_key, Napi::String::New(env, what));
  return o;
}

// Returns false once the watch is closed (by the callback itself, or by a fatal exception handler).
bool Deliver(WatchState* st, napi_value event) {
  if (st->closing) return false;
  napi_env env = st->env;
  napi_value resource, undefined, fn, result;
  napi_create_object(env, &resource);
  napi_get_undefined(env, &undefined);
  fn = st->callback.Value();
  napi_callback_scope scope;
  if (napi_open_callback_scope(env, resource, st->async_context, &scope) != napi_ok) return false;
  napi_status s = napi_call_function(env, undefined, fn, 1, &event, &result);
  napi_value exception = nullptr;
  if (s == napi_pending_exception) napi_get_and_clear_last_exception(env, &exception);
  napi_close_callback_scope(env, scope);
  // A throwing listener behaves like one on any Node event source: 'uncaughtException'.
  if (exception) napi_fatal_exception(env, exception);
  return !st->closing;
}

void OnReadable(uv_poll_t* handle, int status, int /*events*/) {
  auto* st = static_cast<std::shared_ptr<WatchState>*>(handle->data)->get();
  // Keep the state alive through callbacks that close the watch and drop other references.
  std::shared_ptr<WatchState> keep = *static_cast<std::shared_ptr<WatchState>*>(handle->data);
  Napi::Env env(st->env);
  Napi::HandleScope outer(env);
  try {
    if (status < 0) {
      Napi::Object e = Special(env, st, "error");
      e.Set("code", Napi::String::New(env, uv_err_name(status)));
      e.Set("message", Napi::String::New(env, std::string("netlink watch failed: ") + uv_strerror(status)));
      Deliver(st, e);
      Close(st, false);
      return;
    }
    for (int i = 0; i < kBatch && !st->closing; i++) {
      sockaddr_nl from{};
      socklen_t fromlen = sizeof(from);
      ssize_t n = recvfrom(st->fd, st->buf.data(), st->buf.size(), MSG_DONTWAIT | MSG_TRUNC,
                           reinterpret_cast<sockaddr*>(&from), &fromlen);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == ENOBUFS) {  // the kernel dropped messages for us: the listener must resync
          Napi::HandleScope hs(env);
          if (!Deliver(st, Special(env, st, "overflow"))) return;
          continue;
        }
        int err = errno;
        Napi::Object e = Special(env, st, "error");
        e.Set("code", Napi::String::New(env, ErrnoName(err)));
        e.Set("message", Napi::String::New(env, std::string("netlink recv failed: ") + strerror(err)));
        Deliver(st, e);
        Close(st, false);
        return;
      }
      if (from.nl_pid != 0) continue;  // multicast events come from the kernel only
      if (static_cast<size_t>(n) > st->buf.size()) {
        // A message we could not read whole is a lost event all the same.
        Napi::HandleScope hs(env);
        if (!Deliver(st, Special(env, st, "overflow"))) return;
        continue;
      }
      size_t left = static_cast<size_t>(n);
      for (auto* m = reinterpret_cast<const nlmsghdr*>(st->buf.data()); NLMSG_OK(m, left) && !st->closing;
           m = NLMSG_NEXT(m, left)) {
        if (m->nlmsg_type == NLMSG_NOOP || m->nlmsg_type == NLMSG_ERROR || m->nlmsg_type == NLMSG_DONE) continue;
        Napi::HandleScope hs(env);
        Napi::Value ev = st->decode(env, m);
        if (ev.IsEmpty() || ev.IsUndefined()) continue;
        if (!Deliver(st, ev)) return;
      }
    }
  } catch (const Napi::Error& e) {
    // Only N-API failures land here (e.g. the environment is shutting down); no JS frame can
    // catch a C++ exception from a libuv callback, so report it the way Node reports async errors.
    napi_fatal_exception(st->env, e.Value());
  }
}

}  // namespace

Napi::Object StartWatch(Napi::Env env, WatchSpec spec, Napi::Function callback) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    close(spec.fd);
    throw Napi::Error::New(env, "no libuv loop in this environment");
  }
  auto state = std::make_shared<WatchState>();
  WatchState* st = state.get();
  st->fd = spec.fd;
  st->env = env;
  st->kind_key = spec.kind_key;
  st->decode = std::move(spec.decode);
  int rc = uv_poll_init(loop, &st->poll, st->fd);
  if (rc != 0) {
    close(st->fd);
    throw ErrnoError(env, -rc, "uv_poll_init", "netlink socket");
  }
  st->poll.data = new std::shared_ptr<WatchState>(state);
  st->callback = Napi::Persistent(callback);
  napi_async_init(env, nullptr, Napi::String::New(env, spec.resource), &st->async_context);
  napi_add_env_cleanup_hook(env, CleanupHook, st);
  rc = uv_poll_start(&st->poll, UV_READABLE, OnReadable);
  if (rc != 0) {
    Close(st, false);
    throw ErrnoError(env, -rc, "uv_poll_start", "netlink socket");
  }

  Napi::Object handle = Napi::Object::New(env);
  handle.Set("close", Napi::Function::New(env, [state](const Napi::CallbackInfo& info) -> Napi::Value {
    Close(state.get(), false);
    return info.Env().Undefined();
  }, "close"));
  // unref() lets the process exit while only this watch is left, as with timers and sockets.
  handle.Set("unref", Napi::Function::New(env, [state](const Napi::CallbackInfo& info) -> Napi::Value {
    if (!state->closing) uv_unref(reinterpret_cast<uv_handle_t*>(&state->poll));
    return info.This();
  }, "unref"));
  handle.Set("ref", Napi::Function::New(env, [state](const Napi::CallbackInfo& info) -> Napi::Value {
    if (!state->closing) uv_ref(reinterpret_cast<uv_handle_t*>(&state->poll));
    return info.This();
  }, "ref"));
  handle.Set("isClosed", Napi::Function::New(env, [state](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Boolean::New(info.Env(), state->closing);
  }, "isClosed"));
  return handle;
}

}  // namespace nl
}  // namespace braid
