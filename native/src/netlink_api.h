// Path management and interface watching over netlink, exported to JS (typed in
// electron/core/native/netlink.ts). All of it acts in the calling process's network namespace.
#pragma once
#include <napi.h>

namespace braid {

// mptcp_pm generic netlink (pm.cc)
Napi::Value PmFamily(const Napi::CallbackInfo& info);
Napi::Value PmListEndpoints(const Napi::CallbackInfo& info);
Napi::Value PmAddEndpoint(const Napi::CallbackInfo& info);
Napi::Value PmRemoveEndpoint(const Napi::CallbackInfo& info);
Napi::Value PmSetFlags(const Napi::CallbackInfo& info);
Napi::Value PmFlushEndpoints(const Napi::CallbackInfo& info);
Napi::Value PmGetLimits(const Napi::CallbackInfo& info);
Napi::Value PmSetLimits(const Napi::CallbackInfo& info);
Napi::Value PmEvents(const Napi::CallbackInfo& info);

// userspace path manager, per connection (pm_userspace.cc)
Napi::Value PmSubflowCreate(const Napi::CallbackInfo& info);
Napi::Value PmSubflowDestroy(const Napi::CallbackInfo& info);
Napi::Value PmSubflowPriority(const Napi::CallbackInfo& info);

// rtnetlink (rtnl.cc)
Napi::Value RtLinkWatch(const Napi::CallbackInfo& info);
Napi::Value RtListLinks(const Napi::CallbackInfo& info);
Napi::Value RtListAddresses(const Napi::CallbackInfo& info);
Napi::Value RtListRoutes(const Napi::CallbackInfo& info);
Napi::Value RtRouteGet(const Napi::CallbackInfo& info);

// Registers all of the above on the addon's exports.
void RegisterNetlink(Napi::Env env, Napi::Object exports);

}  // namespace braid
