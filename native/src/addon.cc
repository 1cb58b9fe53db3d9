#include <napi.h>

#include "datapath.h"
#include "netlink_api.h"
#include "sockets.h"
#include "open.h"
#include "seal.h"
#include "splice.h"
#include "tcpstate.h"
#include "transparent.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("supported", Napi::Function::New(env, braid::Supported, "supported"));
  exports.Set("listen", Napi::Function::New(env, braid::Listen, "listen"));
  exports.Set("connect", Napi::Function::New(env, braid::Connect, "connect"));
  exports.Set("info", Napi::Function::New(env, braid::Info, "info"));
  exports.Set("close", Napi::Function::New(env, braid::Close, "close"));
  exports.Set("originalDst", Napi::Function::New(env, braid::OriginalDst, "originalDst"));
  exports.Set("peerCred", Napi::Function::New(env, braid::PeerCred, "peerCred"));
  exports.Set("sendState", Napi::Function::New(env, braid::SendState, "sendState"));
  exports.Set("tcpSocketOwner", Napi::Function::New(env, braid::TcpSocketOwner, "tcpSocketOwner"));
  exports.Set("tcpSocketAbort", Napi::Function::New(env, braid::TcpSocketAbort, "tcpSocketAbort"));
  exports.Set("nofileLimit", Napi::Function::New(env, braid::NofileLimit, "nofileLimit"));
  braid::RegisterNetlink(env, exports);
  braid::RegisterDatapath(env, exports);
  braid::RegisterSplice(env, exports);
  braid::RegisterSeal(env, exports);
  braid::RegisterOpen(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(braid_native, Init)
