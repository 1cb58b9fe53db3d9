// A netlink multicast subscription delivered to a JS callback from the main libuv loop: the socket
// is non-blocking and watched by a uv_poll handle, so there is no thread and no timer, and each
// message is turned into a JS object and passed to the callback inside a callback scope (promise
// continuations run right after it, exactly as for Node's own I/O callbacks).
#pragma once

#include <napi.h>
#include <linux/netlink.h>

#include <functional>
#include <string>

namespace braid {
namespace nl {

struct WatchSpec {
  int fd = -1;                 // bound, subscribed, non-blocking; the watch owns it from now on
  const char* resource = "";   // async resource name (shows up in async_hooks)
  const char* kind_key = "";   // field that names the event kind: 'type' or 'kind'
  // Turns one message into an event; returns an empty value to skip it.
  std::function<Napi::Value(Napi::Env, const nlmsghdr*)> decode;
};

// Starts watching and returns {close(), ref(), unref(), closed} for JS. Until close() the handle
// keeps the loop alive (like a listening server) unless unref() is called; close() is idempotent,
// and no callback runs after it returns. On a receive-queue overflow the callback gets
// {[kind_key]: 'overflow'} (events were lost: re-read the state); on a socket error
// {[kind_key]: 'error', code, message} and the watch closes itself.
Napi::Object StartWatch(Napi::Env env, WatchSpec spec, Napi::Function callback);

}  // namespace nl
}  // namespace braid
