// The byte path's kernel knobs.
//
// setReceiveBuffer: a fixed receive buffer for an MPTCP connection. The kernel's receive-buffer
// autotuning for MPTCP (mptcp_rcv_space_adjust in net/mptcp/protocol.c) grows the buffer only when
// the reader copied more than the last measured space within one receive RTT. On a link whose RTT
// seen by the receiver is a few ms, a connection that starts at tcp_rmem[1] (128 KiB) and is
// window-limited by it never copies more than that per RTT, so it never grows: measured here, the
// relay's receiving MPTCP socket stayed at 131072 bytes for a whole upload at 30 of 40 Mbit/s while
// fresh sockets grew to megabytes. Setting SO_RCVBUF (which locks autotuning, SOCK_RCVBUF_LOCK)
// gives the window up front; the kernel copies the value to every subflow (net/mptcp/sockopt.c).
#include "datapath.h"

#include <sys/socket.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace braid {
namespace {

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(env, std::string(fn) + ": fd must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647) || d != static_cast<double>(static_cast<int>(d))) throw Napi::RangeError::New(env, std::string(fn) + ": fd must be a non-negative integer");
  return static_cast<int>(d);
}

// setReceiveBuffer(fd, bytes) -> the buffer the kernel now uses (it doubles the request for its
// bookkeeping). SO_RCVBUFFORCE first (CAP_NET_ADMIN: not capped by net.core.rmem_max), else SO_RCVBUF.
Napi::Value SetReceiveBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "setReceiveBuffer");
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "setReceiveBuffer: bytes must be a number");
  double b = info[1].As<Napi::Number>().DoubleValue();
  if (!(b >= 4096 && b <= 256.0 * 1024 * 1024) || b != static_cast<double>(static_cast<int>(b))) {
    throw Napi::RangeError::New(env, "setReceiveBuffer: bytes must be an integer from 4096 to 268435456");
  }
  int bytes = static_cast<int>(b);
#ifdef SO_RCVBUFFORCE
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0) {
    if (errno != EPERM || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) != 0) throw ErrnoError(env, errno, "setsockopt", "SO_RCVBUF");
  }
#else
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) != 0) throw ErrnoError(env, errno, "setsockopt", "SO_RCVBUF");
#endif
  int now = 0;
  socklen_t len = sizeof(now);
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &now, &len) != 0) throw ErrnoError(env, errno, "getsockopt", "SO_RCVBUF");
  return Napi::Number::New(env, now);
}

// receiveBuffer(fd) -> SO_RCVBUF as the kernel has it now (autotuned or fixed).
Napi::Value ReceiveBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "receiveBuffer");
  int now = 0;
  socklen_t len = sizeof(now);
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &now, &len) != 0) throw ErrnoError(env, errno, "getsockopt", "SO_RCVBUF");
  return Napi::Number::New(env, now);
}

}  // namespace

void RegisterDatapath(Napi::Env env, Napi::Object exports) {
  exports.Set("setReceiveBuffer", Napi::Function::New(env, SetReceiveBuffer, "setReceiveBuffer"));
  exports.Set("receiveBuffer", Napi::Function::New(env, ReceiveBuffer, "receiveBuffer"));
}

}  // namespace braid
