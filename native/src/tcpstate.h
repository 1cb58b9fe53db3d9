// sendState(fd): the sending side of a TCP socket (tcpstate.cc).
#pragma once
#include <napi.h>

namespace braid {
Napi::Value SendState(const Napi::CallbackInfo& info);
}  // namespace braid
