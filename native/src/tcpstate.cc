// How a TCP socket's sending side is doing, from the kernel: bytes still queued (sent but not yet
// acknowledged, plus not yet sent), and how long the sender was held back by the peer's receive
// window. Braid reads it on the socket toward a local client: a client that reads slower than the
// network delivers shows as a full queue and a closed window long before Node's own buffer fills,
// because the kernel grows that socket's send buffer to megabytes.
#include "tcpstate.h"

#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>

#include "errors.h"

namespace braid {

Napi::Value SendState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "sendState(fd) needs a file descriptor");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647) || d != static_cast<double>(static_cast<int>(d))) throw Napi::RangeError::New(env, "sendState(fd): fd must be a non-negative integer");
  int fd = static_cast<int>(d);
  int queued = 0;
  if (ioctl(fd, SIOCOUTQ, &queued) != 0) throw ErrnoError(env, errno, "ioctl", "SIOCOUTQ");
  tcp_info ti{};
  socklen_t tl = sizeof(ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0) throw ErrnoError(env, errno, "getsockopt", "TCP_INFO");
  auto has = [&](size_t end) { return static_cast<size_t>(tl) >= end; };
  Napi::Object o = Napi::Object::New(env);
  o.Set("queued", Napi::Number::New(env, queued));
  bool rw = has(offsetof(tcp_info, tcpi_rwnd_limited) + sizeof(ti.tcpi_rwnd_limited));
  bool busy = has(offsetof(tcp_info, tcpi_busy_time) + sizeof(ti.tcpi_busy_time));
  // null where the kernel is too old to say (before 4.10)
  o.Set("rwndLimitedUs", rw ? Napi::Number::New(env, static_cast<double>(ti.tcpi_rwnd_limited)) : env.Null());
  o.Set("busyUs", busy ? Napi::Number::New(env, static_cast<double>(ti.tcpi_busy_time)) : env.Null());
  return o;
}

}  // namespace braid
