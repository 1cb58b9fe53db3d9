// MPTCP sockets for Node: listening fds for net.Server.listen({fd}) and connected fds for
// new net.Socket({fd}). The connect is non-blocking and completed on the main libuv loop with a
// uv_poll watcher, so a slow or black-holed destination never occupies a thread-pool thread.
#include "sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "errors.h"
#include "uapi.h"

namespace braid {
namespace {

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
};

bool ParseAddress(const std::string& host, int port, SockAddr* out) {
  std::memset(&out->ss, 0, sizeof(out->ss));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
  std::string h = host;
  // Accept "fe80::1%eth0" for link-local destinations.
  uint32_t scope = 0;
  auto pct = h.find('%');
  if (pct != std::string::npos) {
    scope = if_nametoindex(h.substr(pct + 1).c_str());
    h = h.substr(0, pct);
  }
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    v6->sin6_scope_id = scope;
    out->len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::string GetString(const Napi::Object& o, const char* key, const std::string& dflt = "") {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

int64_t GetInt(const Napi::Object& o, const char* key, int64_t dflt, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<int64_t>(d)) {
    throw Napi::RangeError::New(o.Env(), std::string("option '") + key + "' must be an integer from " +
                                             std::to_string(lo) + " to " + std::to_string(hi));
  }
  return static_cast<int64_t>(d);
}

bool GetBool(const Napi::Object& o, const char* key, bool dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string Endpoint(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                              : host + ":" + std::to_string(port);
}

// A socket of the wanted kind, with the errno preserved across cleanup.
int OpenSocket(int family, bool mptcp, bool nonblock) {
  int type = SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0);
  return socket(family, type, mptcp ? IPPROTO_MPTCP : IPPROTO_TCP);
}

void CloseKeepErrno(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

// ---- connect ----

struct ConnectOp {
  uv_poll_t poll;
  uv_timer_t timer;
  int fd = -1;
  int open_handles = 0;
  bool settled = false;
  std::string where;
  napi_env env;
  napi_deferred deferred;
  napi_async_context async_context = nullptr;
};

void OnHandleClosed(uv_handle_t* h) {
  auto* op = static_cast<ConnectOp*>(h->data);
  if (--op->open_handles == 0) {
    napi_async_destroy(op->env, op->async_context);
    delete op;
  }
}

// Resolves or rejects inside a callback scope so that promise continuations run right away
// instead of waiting for the next unrelated JS callback.
void Settle(ConnectOp* op, int err, const char* syscall) {
  if (op->settled) return;
  op->settled = true;
  uv_poll_stop(&op->poll);
  uv_timer_stop(&op->timer);
  // Close the watcher before Node adopts the fd: libuv must not have two watchers on one fd.
  uv_close(reinterpret_cast<uv_handle_t*>(&op->poll), OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&op->timer), OnHandleClosed);

  Napi::Env env(op->env);
  Napi::HandleScope hs(env);
  napi_value resource;
  napi_create_object(op->env, &resource);
  napi_callback_scope scope;
  napi_open_callback_scope(op->env, resource, op->async_context, &scope);
  if (err == 0) {
    napi_resolve_deferred(op->env, op->deferred, Napi::Number::New(env, op->fd));
  } else {
    close(op->fd);
    op->fd = -1;
    napi_reject_deferred(op->env, op->deferred, ErrnoError(env, err, syscall, op->where).Value());
  }
  napi_close_callback_scope(op->env, scope);
}

void OnWritable(uv_poll_t* handle, int status, int /*events*/) {
  auto* op = static_cast<ConnectOp*>(handle->data);
  // libuv reports POLLERR as UV_EBADF; the real reason (ECONNREFUSED, EHOSTUNREACH ...) is in SO_ERROR.
  int soerr = 0;
  socklen_t len = sizeof(soerr);
  if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
  if (soerr == 0 && status < 0) soerr = -status;
  Settle(op, soerr, "connect");
}

void OnTimeout(uv_timer_t* handle) {
  Settle(static_cast<ConnectOp*>(handle->data), ETIMEDOUT, "connect");
}

}  // namespace

Napi::Value Supported(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  std::string reason;
  bool ok = false, full = false;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP);
  if (fd < 0) {
    reason = std::string("socket(IPPROTO_MPTCP) failed: ") + ErrnoName(errno) + " (" + strerror(errno) + ")";
    std::ifstream f("/proc/sys/net/mptcp/enabled");
    std::string v;
    if (f && (f >> v) && v == "0") reason += "; net.mptcp.enabled is 0 (sysctl -w net.mptcp.enabled=1)";
  } else {
    ok = true;
    // An unconnected MPTCP socket answers MPTCP_FULL_INFO on kernels that have it; older kernels
    // say EOPNOTSUPP/ENOPROTOOPT for the unknown option.
    FullInfo fi{};
    socklen_t len = sizeof(fi);
    full = getsockopt(fd, SOL_MPTCP, kMptcpFullInfo, &fi, &len) == 0 || (errno != EOPNOTSUPP && errno != ENOPROTOOPT);
    close(fd);
  }
  out.Set("mptcp", Napi::Boolean::New(env, ok));
  out.Set("reason", ok ? env.Null() : Napi::String::New(env, reason));
  out.Set("fullInfo", Napi::Boolean::New(env, full));
  return out;
}

Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "listen(options) needs an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string host = GetString(o, "host", "127.0.0.1");
  int port = static_cast<int>(GetInt(o, "port", 0, 0, 65535));
  int backlog = static_cast<int>(GetInt(o, "backlog", 511, 1, 65535));
  bool dual = GetBool(o, "dualStack", false);
  bool reuse = GetBool(o, "reuseAddr", true);
  bool mptcp = GetBool(o, "mptcp", true);

  SockAddr sa;
  if (!ParseAddress(host, port, &sa)) throw Napi::TypeError::New(env, "option 'host' must be a numeric IPv4 or IPv6 address, got '" + host + "'");
  int fd = OpenSocket(sa.family(), mptcp, false);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  int one = 1, zero = 0;
  if (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    CloseKeepErrno(fd);
    throw ErrnoError(env, errno, "setsockopt", "SO_REUSEADDR");
  }
  if (sa.family() == AF_INET6) {
    int v6only = dual ? 0 : 1;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &v6only, sizeof(int)) != 0) {
      CloseKeepErrno(fd);
      throw ErrnoError(env, errno, "setsockopt", "IPV6_V6ONLY");
    }
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa.ss), sa.len) != 0) {
    CloseKeepErrno(fd);
    throw ErrnoError(env, errno, "bind", Endpoint(host, port));
  }
  if (listen(fd, backlog) != 0) {
    CloseKeepErrno(fd);
    throw ErrnoError(env, errno, "listen", Endpoint(host, port));
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "connect(options) needs an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string address = GetString(o, "address");
  int port = static_cast<int>(GetInt(o, "port", -1, 1, 65535));
  std::string local = GetString(o, "localAddress");
  std::string device = GetString(o, "device");
  int64_t timeout = GetInt(o, "timeoutMs", 10000, 1, 24LL * 3600 * 1000);
  bool mptcp = GetBool(o, "mptcp", true);
  // A firewall mark (SO_MARK, needs CAP_NET_ADMIN): transparent mode's nftables rules let Braid's
  // own connections through by it, so they are never redirected back to Braid.
  int64_t mark = GetInt(o, "mark", 0, 0, 0xffffffffLL);

  SockAddr sa;
  if (!ParseAddress(address, port, &sa)) throw Napi::TypeError::New(env, "option 'address' must be a numeric IPv4 or IPv6 address, got '" + address + "'");
  std::string where = Endpoint(address, port);

  napi_deferred deferred;
  napi_value promise;
  napi_create_promise(env, &deferred, &promise);
  auto reject_now = [&](int err, const char* syscall, const std::string& detail) -> Napi::Value {
    napi_reject_deferred(env, deferred, ErrnoError(env, err, syscall, detail).Value());
    return Napi::Value(env, promise);
  };

  int fd = OpenSocket(sa.family(), mptcp, true);
  if (fd < 0) return reject_now(errno, "socket", where);
  if (mark != 0) {
    uint32_t m = static_cast<uint32_t>(mark);
    if (setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof(m)) != 0) {
      int e = errno;
      close(fd);
      return reject_now(e, "setsockopt", "SO_MARK");
    }
  }
  if (!device.empty() && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device.c_str(), device.size()) != 0) {
    int e = errno;
    close(fd);
    return reject_now(e, "setsockopt", "SO_BINDTODEVICE " + device);
  }
  if (!local.empty()) {
    SockAddr la;
    if (!ParseAddress(local, 0, &la) || la.family() != sa.family()) {
      close(fd);
      return reject_now(EINVAL, "bind", "localAddress '" + local + "' is not a numeric address of the destination's family");
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&la.ss), la.len) != 0) {
      int e = errno;
      close(fd);
      return reject_now(e, "bind", local);
    }
  }

  int rc = connect(fd, reinterpret_cast<sockaddr*>(&sa.ss), sa.len);
  if (rc != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    return reject_now(e, "connect", where);
  }

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  auto* op = new ConnectOp();
  op->fd = fd;
  op->env = env;
  op->where = where;
  op->deferred = deferred;
  napi_value resource_name = Napi::String::New(env, "braid.mptcpConnect");
  napi_async_init(env, nullptr, resource_name, &op->async_context);

  uv_poll_init(loop, &op->poll, fd);
  uv_timer_init(loop, &op->timer);
  op->poll.data = op;
  op->timer.data = op;
  op->open_handles = 2;
  uv_poll_start(&op->poll, UV_WRITABLE, OnWritable);
  uv_update_time(loop);  // the cached loop time may be stale; the timeout counts from now
  uv_timer_start(&op->timer, OnTimeout, static_cast<uint64_t>(timeout), 0);
  return Napi::Value(env, promise);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "close(fd) needs a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (close(fd) != 0) throw ErrnoError(env, errno, "close");
  return env.Undefined();
}

}  // namespace braid
