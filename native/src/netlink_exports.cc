// The netlink half of the addon's exports; addon.cc calls RegisterNetlink once.
#include "netlink_api.h"

namespace braid {

void RegisterNetlink(Napi::Env env, Napi::Object exports) {
  auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, fn, name));
  };
  add("pmFamily", PmFamily);
  add("pmListEndpoints", PmListEndpoints);
  add("pmAddEndpoint", PmAddEndpoint);
  add("pmRemoveEndpoint", PmRemoveEndpoint);
  add("pmSetFlags", PmSetFlags);
  add("pmFlushEndpoints", PmFlushEndpoints);
  add("pmGetLimits", PmGetLimits);
  add("pmSetLimits", PmSetLimits);
  add("pmEvents", PmEvents);
  add("pmSubflowCreate", PmSubflowCreate);
  add("pmSubflowDestroy", PmSubflowDestroy);
  add("pmSubflowPriority", PmSubflowPriority);
  add("rtLinkWatch", RtLinkWatch);
  add("rtListLinks", RtListLinks);
  add("rtListAddresses", RtListAddresses);
  add("rtListRoutes", RtListRoutes);
  add("rtRouteGet", RtRouteGet);
}

}  // namespace braid
