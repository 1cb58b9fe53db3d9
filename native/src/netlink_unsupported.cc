// Non-Linux builds: netlink exists only on Linux, so path management reports ENOTSUP and Braid
// runs with whatever paths the operating system picks.
#include "netlink_api.h"

namespace braid {

void RegisterNetlink(Napi::Env env, Napi::Object exports) {
  const char* names[] = {"pmSubflowCreate", "pmSubflowDestroy", "pmSubflowPriority", "pmFamily", "pmListEndpoints", "pmAddEndpoint", "pmRemoveEndpoint", "pmSetFlags",
                         "pmFlushEndpoints", "pmGetLimits", "pmSetLimits", "pmEvents", "rtLinkWatch",
                         "rtListLinks", "rtListAddresses", "rtListRoutes", "rtRouteGet"};
  for (const char* name : names) {
    exports.Set(name, Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
      Napi::Error e = Napi::Error::New(info.Env(), "netlink path management is only available on Linux");
      e.Set("code", Napi::String::New(info.Env(), "ENOTSUP"));
      throw e;
    }, name));
  }
}

}  // namespace braid
