// Non-Linux builds: MPTCP sockets do not exist, so every entry point says so and the JS layer
// dials plain TCP (see electron/core/native/mptcp.ts).
#include <napi.h>

#include "sockets.h"
#include "tcpstate.h"
#include "transparent.h"

namespace braid {

static Napi::Value NotSupported(const Napi::CallbackInfo& info) {
  Napi::Error e = Napi::Error::New(info.Env(), "MPTCP is only available on Linux");
  e.Set("code", Napi::String::New(info.Env(), "ENOTSUP"));
  throw e;
}

Napi::Value Supported(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("mptcp", false);
  out.Set("reason", "MPTCP is only available on Linux");
  out.Set("fullInfo", false);
  return out;
}
Napi::Value Listen(const Napi::CallbackInfo& info) { return NotSupported(info); }
Napi::Value Connect(const Napi::CallbackInfo& info) { return NotSupported(info); }
Napi::Value Close(const Napi::CallbackInfo& info) { return NotSupported(info); }
Napi::Value Info(const Napi::CallbackInfo& info) { return NotSupported(info); }
Napi::Value OriginalDst(const Napi::CallbackInfo& info) { return NotSupported(info); }
Napi::Value PeerCred(const Napi::CallbackInfo& info) { return NotSupported(info); }
Napi::Value SendState(const Napi::CallbackInfo& info) { return NotSupported(info); }
Napi::Value TcpSocketOwner(const Napi::CallbackInfo& info) { return NotSupported(info); }
Napi::Value TcpSocketAbort(const Napi::CallbackInfo& info) { return NotSupported(info); }

}  // namespace braid
