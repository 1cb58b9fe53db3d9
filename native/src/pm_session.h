// What pm.cc (endpoints, limits, events) and pm_userspace.cc (per-connection subflows) share: the
// resolved `mptcp_pm` family, a request socket, and the address nest both kinds of command carry.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "netlink.h"

namespace braid {

struct PmFamilyIds {
  uint16_t id = 0;
  uint32_t version = 0;
  uint32_t events_group = 0;  // 0 = the kernel has no such group
};

// An open generic-netlink socket plus the resolved family.
struct PmSession {
  nl::Socket sock;
  PmFamilyIds fam;
};

// Opens a session or throws the JS error saying why (no MPTCP path manager in this kernel, ...).
void OpenPmSession(Napi::Env env, PmSession* s);
nl::Message NewPmMessage(const PmFamilyIds& fam, uint8_t cmd, uint16_t flags);
// An MPTCP_PM_ATTR_ADDR-style nest (`attr` picks ADDR or ADDR_REMOTE); id <= 0, port <= 0,
// flags < 0 and ifindex <= 0 are left out.
void PutPmAddress(nl::Message& msg, uint16_t attr, int id, int family, const uint8_t* addr, int port, int64_t flags, int ifindex);
// A kernel failure naming what was attempted, with the kernel's own explanation.
Napi::Error PmFailure(Napi::Env env, nl::Failure f, const std::string& what);

}  // namespace braid
