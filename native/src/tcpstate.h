// sendState(fd): the sending side of a TCP socket (tcpstate.cc).
#pragma once
#include <napi.h>

namespace braid {
Napi::Value SendState(const Napi::CallbackInfo& info);
// tcpSocketOwner(localAddress, localPort, remoteAddress, remotePort): {inode, uid, state} | null (sockdiag.cc).
Napi::Value TcpSocketOwner(const Napi::CallbackInfo& info);
// tcpSocketAbort(localAddress, localPort, remoteAddress, remotePort[, ifindex]): true aborted, false no such socket (sockdiag.cc).
Napi::Value TcpSocketAbort(const Napi::CallbackInfo& info);
}  // namespace braid
