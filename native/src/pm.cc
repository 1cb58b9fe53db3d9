// MPTCP path management through the kernel's `mptcp_pm` generic-netlink family: endpoints
// (GET/ADD/DEL_ADDR, SET_FLAGS, FLUSH), limits, and the `mptcp_pm_events` multicast group.
// Requests are synchronous: the kernel answers from memory in microseconds, and every receive is
// bounded by a timeout (see netlink.h). Like every netlink socket, these act in the network
// namespace of the calling process.
#include "netlink_api.h"

#include <linux/genetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "errors.h"
#include "netlink.h"
#include "netlink_uapi.h"
#include "nlwatch.h"
#include "pm_session.h"

namespace braid {
namespace {

using nl::Attr;
using nl::Failure;

using Family = PmFamilyIds;

// Generic-netlink family ids are global (not per namespace) and MPTCP cannot be a module, so a
// successful lookup stays valid for the life of the process.
std::mutex family_mutex;
bool family_known = false;
Family family_cache;

Failure ResolveFamily(Family* out) {
  std::lock_guard<std::mutex> lock(family_mutex);
  if (family_known) {
    *out = family_cache;
    return {};
  }
  nl::Socket sock;
  if (Failure f = sock.Open(NETLINK_GENERIC)) return f;
  nl::Message msg(GENL_ID_CTRL, 0);
  genlmsghdr g{};
  g.cmd = CTRL_CMD_GETFAMILY;
  g.version = 1;
  msg.PutHeader(g);
  msg.PutString(CTRL_ATTR_FAMILY_NAME, pm::kFamilyName);
  Family fam;
  Failure f = sock.Request(msg, [&](const nlmsghdr* h) {
    nl::ForEachAttr(h, GENL_HDRLEN, [&](const Attr& a) {
      if (a.type == CTRL_ATTR_FAMILY_ID) fam.id = static_cast<uint16_t>(a.Uint());
      if (a.type == CTRL_ATTR_VERSION) fam.version = static_cast<uint32_t>(a.Uint());
      if (a.type == CTRL_ATTR_MCAST_GROUPS) {
        nl::ForEachAttr(a.data, a.len, [&](const Attr& grp) {
          std::string name;
          uint32_t id = 0;
          nl::ForEachAttr(grp.data, grp.len, [&](const Attr& x) {
            if (x.type == CTRL_ATTR_MCAST_GRP_NAME) name = x.Str();
            if (x.type == CTRL_ATTR_MCAST_GRP_ID) id = static_cast<uint32_t>(x.Uint());
          });
          if (name == pm::kEventsGroup) fam.events_group = id;
        });
      }
    });
  }, "genl.getfamily");
  if (f) {
    if (f.err == ENOENT) f.detail = "generic netlink family 'mptcp_pm' not found: this kernel has no MPTCP path manager";
    return f;
  }
  if (fam.id == 0) return {EPROTO, "genl.getfamily", "no family id in the kernel's answer"};
  family_cache = fam;
  family_known = true;
  *out = fam;
  return {};
}

void OpenSession(Napi::Env env, PmSession* s) { OpenPmSession(env, s); }

nl::Message PmMessage(const Family& fam, uint8_t cmd, uint16_t flags) { return NewPmMessage(fam, cmd, flags); }

std::string IfName(int ifindex) {
  char buf[IF_NAMESIZE] = {0};
  if (ifindex <= 0 || !if_indextoname(static_cast<unsigned>(ifindex), buf)) return "";
  return buf;
}

struct Endpoint {
  int id = 0;
  int family = 0;  // 4 or 6
  uint8_t addr[16] = {0};
  int port = 0;
  uint32_t flags = 0;
  int ifindex = 0;
};

bool SameAddress(const Endpoint& e, int family, const uint8_t* addr) {
  return e.family == family && std::memcmp(e.addr, addr, family == 4 ? 4 : 16) == 0;
}

Failure ListEndpoints(PmSession& s, std::vector<Endpoint>* out) {
  Failure f;
  for (int attempt = 0; attempt < 3; attempt++) {
    out->clear();
    nl::Message msg = PmMessage(s.fam, pm::kCmdGetAddr, NLM_F_DUMP);
    f = s.sock.Request(msg, [&](const nlmsghdr* h) {
      nl::ForEachAttr(h, GENL_HDRLEN, [&](const Attr& a) {
        if (a.type != pm::kAttrAddr) return;
        Endpoint e;
        nl::ForEachAttr(a.data, a.len, [&](const Attr& x) {
          switch (x.type) {
            case pm::kAddrFamily: e.family = x.Uint() == AF_INET6 ? 6 : x.Uint() == AF_INET ? 4 : 0; break;
            case pm::kAddrId: e.id = static_cast<int>(x.Uint()); break;
            case pm::kAddrAddr4: if (x.len == 4) std::memcpy(e.addr, x.data, 4); break;
            case pm::kAddrAddr6: if (x.len == 16) std::memcpy(e.addr, x.data, 16); break;
            case pm::kAddrPort: e.port = static_cast<int>(x.Uint()); break;
            case pm::kAddrFlags: e.flags = static_cast<uint32_t>(x.Uint()); break;
            case pm::kAddrIfIdx: e.ifindex = static_cast<int32_t>(x.Uint()); break;
          }
        });
        if (e.family) out->push_back(e);
      });
    }, "mptcp_pm.get_addr");
    if (f.err != EAGAIN) break;
  }
  return f;
}

Napi::Object EndpointToJs(Napi::Env env, const Endpoint& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", e.id);
  o.Set("family", e.family);
  o.Set("address", nl::AddrToString(e.addr, e.family == 4 ? 4 : 16));
  o.Set("port", e.port);
  o.Set("flags", Napi::Number::New(env, e.flags));
  o.Set("ifindex", e.ifindex);
  std::string name = IfName(e.ifindex);
  o.Set("ifname", name.empty() ? env.Null() : Napi::String::New(env, name));
  return o;
}

// The address attribute nest shared by ADD/DEL_ADDR and SET_FLAGS.
void PutAddress(nl::Message& msg, int id, int family, const uint8_t* addr, int port, int64_t flags, int ifindex) {
  PutPmAddress(msg, pm::kAttrAddr, id, family, addr, port, flags, ifindex);
}

Napi::Error PmError(Napi::Env env, Failure f, const std::string& what) { return PmFailure(env, f, what); }

// {id?, address?} -> the endpoint's address (and id when known); address wins for parsing.
struct Selector {
  int id = -1;  // -1 = not given
  int family = 0;
  uint8_t addr[16] = {0};
  std::string text;
};

Selector ParseSelector(const Napi::Object& o, const char* fn) {
  Selector s;
  s.id = static_cast<int>(nl::OptInt(o, "id", -1, 0, 255));
  s.text = nl::OptString(o, "address");
  if (!s.text.empty()) {
    s.family = nl::ParseAddr(s.text, s.addr);
    if (!s.family) throw nl::ArgError(o.Env(), std::string(fn) + ": option 'address' must be a numeric IPv4 or IPv6 address, got '" + s.text + "'", false);
  }
  if (s.id < 0 && !s.family) throw nl::ArgError(o.Env(), std::string(fn) + " needs an 'id' or an 'address'");
  return s;
}

std::string Describe(const Selector& s) {
  if (s.family && s.id >= 0) return "endpoint " + std::to_string(s.id) + " (" + s.text + ")";
  if (s.family) return "endpoint " + s.text;
  return "endpoint " + std::to_string(s.id);
}

Napi::Object OptionsArg(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsObject()) throw nl::ArgError(info.Env(), std::string(fn) + "(options) needs an options object");
  return info[0].As<Napi::Object>();
}

// ---- events ----

const char* EventName(uint8_t cmd) {
  switch (cmd) {
    case pm::kEventCreated: return "created";
    case pm::kEventEstablished: return "established";
    case pm::kEventClosed: return "closed";
    case pm::kEventAnnounced: return "announced";
    case pm::kEventRemoved: return "removed";
    case pm::kEventSubEstablished: return "sub_established";
    case pm::kEventSubClosed: return "sub_closed";
    case pm::kEventSubPriority: return "sub_priority";
    case pm::kEventListenerCreated: return "listener_created";
    case pm::kEventListenerClosed: return "listener_closed";
    default: return "unknown";
  }
}

Napi::Value DecodeEvent(Napi::Env env, uint16_t family_id, const nlmsghdr* h) {
  if (h->nlmsg_type != family_id || h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN)) return Napi::Value();
  const auto* g = static_cast<const genlmsghdr*>(NLMSG_DATA(h));
  Napi::Object ev = Napi::Object::New(env);
  ev.Set("type", EventName(g->cmd));
  ev.Set("typeId", g->cmd);
  Napi::Object extra;
  nl::ForEachAttr(h, GENL_HDRLEN, [&](const Attr& a) {
    switch (a.type) {
      case pm::kEvToken: ev.Set("token", Napi::Number::New(env, static_cast<double>(a.Uint()))); break;
      case pm::kEvFamily: ev.Set("family", a.Uint() == AF_INET6 ? 6 : a.Uint() == AF_INET ? 4 : static_cast<int>(a.Uint())); break;
      case pm::kEvLocId: ev.Set("locId", static_cast<int>(a.Uint())); break;
      case pm::kEvRemId: ev.Set("remId", static_cast<int>(a.Uint())); break;
      case pm::kEvSaddr4: case pm::kEvSaddr6: ev.Set("saddr", nl::AddrToString(a.data, a.len)); break;
      case pm::kEvDaddr4: case pm::kEvDaddr6: ev.Set("daddr", nl::AddrToString(a.data, a.len)); break;
      case pm::kEvSport: ev.Set("sport", a.Be16()); break;
      case pm::kEvDport: ev.Set("dport", a.Be16()); break;
      case pm::kEvBackup: ev.Set("backup", a.Uint() != 0); break;
      case pm::kEvError: ev.Set("error", static_cast<int>(a.Uint())); break;
      case pm::kEvFlags: ev.Set("flags", static_cast<int>(a.Uint())); break;
      case pm::kEvTimeout: ev.Set("timeout", Napi::Number::New(env, static_cast<double>(a.Uint()))); break;
      case pm::kEvIfIdx: {
        int idx = static_cast<int32_t>(a.Uint());
        ev.Set("ifindex", idx);
        std::string name = IfName(idx);
        ev.Set("ifname", name.empty() ? env.Null() : Napi::String::New(env, name));
        break;
      }
      case pm::kEvResetReason: ev.Set("resetReason", Napi::Number::New(env, static_cast<double>(a.Uint()))); break;
      case pm::kEvResetFlags: ev.Set("resetFlags", Napi::Number::New(env, static_cast<double>(a.Uint()))); break;
      case pm::kEvServerSide: ev.Set("serverSide", a.Uint() != 0); break;
      default: {
        // Attributes newer than this code still reach JS, raw, so nothing the kernel says is lost.
        if (extra.IsEmpty()) extra = Napi::Object::New(env);
        extra.Set(std::to_string(a.type), Napi::Buffer<uint8_t>::Copy(env, a.data, a.len));
      }
    }
  });
  if (!extra.IsEmpty()) ev.Set("extra", extra);
  return ev;
}

}  // namespace

void OpenPmSession(Napi::Env env, PmSession* s) {
  if (Failure f = ResolveFamily(&s->fam)) throw nl::FailureError(env, f);
  if (Failure f = s->sock.Open(NETLINK_GENERIC)) throw nl::FailureError(env, f);
}

nl::Message NewPmMessage(const PmFamilyIds& fam, uint8_t cmd, uint16_t flags) {
  nl::Message msg(fam.id, flags);
  genlmsghdr g{};
  g.cmd = cmd;
  g.version = pm::kFamilyVersion;
  msg.PutHeader(g);
  return msg;
}

void PutPmAddress(nl::Message& msg, uint16_t attr, int id, int family, const uint8_t* addr, int port, int64_t flags, int ifindex) {
  size_t nest = msg.BeginNest(attr);
  if (family) {
    msg.PutU16(pm::kAddrFamily, family == 4 ? AF_INET : AF_INET6);
    msg.Put(family == 4 ? pm::kAddrAddr4 : pm::kAddrAddr6, addr, family == 4 ? 4 : 16);
  }
  if (id > 0) msg.PutU8(pm::kAddrId, static_cast<uint8_t>(id));
  if (port > 0) msg.PutU16(pm::kAddrPort, static_cast<uint16_t>(port));
  if (flags >= 0) msg.PutU32(pm::kAddrFlags, static_cast<uint32_t>(flags));
  if (ifindex > 0) msg.PutS32(pm::kAddrIfIdx, ifindex);
  msg.EndNest(nest);
}

// Kernel failures name the command and the endpoint, plus the kernel's own explanation.
Napi::Error PmFailure(Napi::Env env, Failure f, const std::string& what) {
  f.detail = f.detail.empty() ? what : what + ": " + f.detail;
  return nl::FailureError(env, f);
}

// pmFamily() -> {id, version, eventsGroup}: throws ENOENT when the kernel has no MPTCP PM.
Napi::Value PmFamily(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Family fam;
  if (Failure f = ResolveFamily(&fam)) throw nl::FailureError(env, f);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", fam.id);
  o.Set("version", fam.version);
  o.Set("eventsGroup", fam.events_group);
  return o;
}

Napi::Value PmListEndpoints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PmSession s;
  OpenSession(env, &s);
  std::vector<Endpoint> eps;
  if (Failure f = ListEndpoints(s, &eps)) throw PmError(env, f, "listing endpoints");
  Napi::Array out = Napi::Array::New(env, eps.size());
  for (size_t i = 0; i < eps.size(); i++) out.Set(static_cast<uint32_t>(i), EndpointToJs(env, eps[i]));
  return out;
}

// pmAddEndpoint({address, id?, flags, ifindex? | device?, port?}) -> id. ADD_ADDR's ack carries no
// id, so the endpoint is read back by address (the kernel keeps addresses unique).
Napi::Value PmAddEndpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, "pmAddEndpoint");
  std::string text = nl::OptString(o, "address");
  uint8_t addr[16];
  int family = nl::ParseAddr(text, addr);
  if (!family) throw nl::ArgError(env, "pmAddEndpoint: option 'address' must be a numeric IPv4 or IPv6 address, got '" + text + "'", false);
  int id = static_cast<int>(nl::OptInt(o, "id", 0, 0, 255));
  int64_t flags = nl::OptInt(o, "flags", 0, 0, 0xffffffffLL);
  int port = static_cast<int>(nl::OptInt(o, "port", 0, 0, 65535));
  int ifindex = static_cast<int>(nl::OptInt(o, "ifindex", 0, 0, INT32_MAX));
  std::string device = nl::OptString(o, "device");
  if (!device.empty()) {
    unsigned idx = if_nametoindex(device.c_str());
    if (idx == 0) throw ErrnoError(env, errno ? errno : ENODEV, "if_nametoindex", "device '" + device + "'");
    if (ifindex && static_cast<int>(idx) != ifindex) throw nl::ArgError(env, "pmAddEndpoint: 'device' " + device + " is ifindex " + std::to_string(idx) + ", not " + std::to_string(ifindex), false);
    ifindex = static_cast<int>(idx);
  }

  PmSession s;
  OpenSession(env, &s);
  nl::Message msg = PmMessage(s.fam, pm::kCmdAddAddr, 0);
  PutAddress(msg, id, family, addr, port, flags, ifindex);
  if (Failure f = s.sock.Request(msg, [](const nlmsghdr*) {}, "mptcp_pm.add_addr")) throw PmError(env, f, "adding endpoint " + text);

  std::vector<Endpoint> eps;
  if (Failure f = ListEndpoints(s, &eps)) throw PmError(env, f, "reading back endpoint " + text);
  for (const Endpoint& e : eps) {
    if (SameAddress(e, family, addr) && (port == 0 || e.port == port)) return Napi::Number::New(env, e.id);
  }
  throw ErrnoError(env, ENOENT, "mptcp_pm.get_addr", "endpoint " + text + " was added but is not listed (removed concurrently?)");
}

// pmRemoveEndpoint({id?, address?}). Id 0 is the initial subflow's address, which the kernel can
// only remove by address; an address alone is first resolved to its id.
Napi::Value PmRemoveEndpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Selector sel = ParseSelector(OptionsArg(info, "pmRemoveEndpoint"), "pmRemoveEndpoint");
  PmSession s;
  OpenSession(env, &s);
  int id = sel.id;
  if (id < 0) {
    std::vector<Endpoint> eps;
    if (Failure f = ListEndpoints(s, &eps)) throw PmError(env, f, "looking up " + Describe(sel));
    for (const Endpoint& e : eps) if (SameAddress(e, sel.family, sel.addr)) id = e.id;
    if (id < 0) throw ErrnoError(env, ENOENT, "mptcp_pm.del_addr", "no endpoint has address " + sel.text);
  }
  if (id == 0 && !sel.family) throw nl::ArgError(env, "pmRemoveEndpoint: endpoint id 0 can only be removed by 'address'");
  nl::Message msg = PmMessage(s.fam, pm::kCmdDelAddr, 0);
  PutAddress(msg, id, id == 0 ? sel.family : 0, sel.addr, 0, -1, 0);
  if (Failure f = s.sock.Request(msg, [](const nlmsghdr*) {}, "mptcp_pm.del_addr")) throw PmError(env, f, "removing " + Describe(sel));
  return env.Undefined();
}

// pmSetFlags({id?, address?, flags}): flags is the wanted set; the kernel changes only the bits it
// allows to change (backup, fullmesh) and ignores the rest.
Napi::Value PmSetFlags(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, "pmSetFlags");
  Selector sel = ParseSelector(o, "pmSetFlags");
  if (!nl::Has(o, "flags")) throw nl::ArgError(env, "pmSetFlags needs 'flags'");
  int64_t flags = nl::OptInt(o, "flags", 0, 0, 0xffffffffLL);
  PmSession s;
  OpenSession(env, &s);
  nl::Message msg = PmMessage(s.fam, pm::kCmdSetFlags, 0);
  // The kernel looks the endpoint up by id when one is given, else by address.
  PutAddress(msg, sel.id > 0 ? sel.id : 0, sel.id > 0 ? 0 : sel.family, sel.addr, 0, flags, 0);
  if (Failure f = s.sock.Request(msg, [](const nlmsghdr*) {}, "mptcp_pm.set_flags")) throw PmError(env, f, "setting flags of " + Describe(sel));
  return env.Undefined();
}

Napi::Value PmFlushEndpoints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PmSession s;
  OpenSession(env, &s);
  nl::Message msg = PmMessage(s.fam, pm::kCmdFlushAddrs, 0);
  if (Failure f = s.sock.Request(msg, [](const nlmsghdr*) {}, "mptcp_pm.flush_addrs")) throw PmError(env, f, "flushing endpoints");
  return env.Undefined();
}

namespace {
Napi::Object GetLimits(Napi::Env env, PmSession& s) {
  nl::Message msg = PmMessage(s.fam, pm::kCmdGetLimits, 0);
  int64_t subflows = -1, accepted = -1;
  Failure f = s.sock.Request(msg, [&](const nlmsghdr* h) {
    nl::ForEachAttr(h, GENL_HDRLEN, [&](const Attr& a) {
      if (a.type == pm::kAttrSubflows) subflows = static_cast<int64_t>(a.Uint());
      if (a.type == pm::kAttrRcvAddAddrs) accepted = static_cast<int64_t>(a.Uint());
    });
  }, "mptcp_pm.get_limits");
  if (f) throw PmError(env, f, "reading limits");
  if (subflows < 0 || accepted < 0) throw ErrnoError(env, EPROTO, "mptcp_pm.get_limits", "the kernel's answer lacks a limit");
  Napi::Object o = Napi::Object::New(env);
  o.Set("subflows", Napi::Number::New(env, static_cast<double>(subflows)));
  o.Set("addAddrAccepted", Napi::Number::New(env, static_cast<double>(accepted)));
  return o;
}
}  // namespace

Napi::Value PmGetLimits(const Napi::CallbackInfo& info) {
  PmSession s;
  OpenSession(info.Env(), &s);
  return GetLimits(info.Env(), s);
}

// pmSetLimits({subflows?, addAddrAccepted?}) -> the limits now in force. An absent field keeps the
// kernel's current value (the kernel itself only changes the attributes it receives).
Napi::Value PmSetLimits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, "pmSetLimits");
  int64_t subflows = nl::OptInt(o, "subflows", -1, 0, 0xffffffffLL);
  int64_t accepted = nl::OptInt(o, "addAddrAccepted", -1, 0, 0xffffffffLL);
  if (subflows < 0 && accepted < 0) throw nl::ArgError(env, "pmSetLimits needs 'subflows' and/or 'addAddrAccepted'");
  PmSession s;
  OpenSession(env, &s);
  nl::Message msg = PmMessage(s.fam, pm::kCmdSetLimits, 0);
  if (accepted >= 0) msg.PutU32(pm::kAttrRcvAddAddrs, static_cast<uint32_t>(accepted));
  if (subflows >= 0) msg.PutU32(pm::kAttrSubflows, static_cast<uint32_t>(subflows));
  if (Failure f = s.sock.Request(msg, [](const nlmsghdr*) {}, "mptcp_pm.set_limits")) throw PmError(env, f, "setting limits");
  return GetLimits(env, s);
}

// pmEvents(callback) -> watch handle (see nlwatch.h). Joining the group needs CAP_NET_ADMIN.
Napi::Value PmEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) throw nl::ArgError(env, "pmEvents(callback) needs a function");
  Family fam;
  if (Failure f = ResolveFamily(&fam)) throw nl::FailureError(env, f);
  if (fam.events_group == 0) throw ErrnoError(env, ENOTSUP, "genl.getfamily", "the kernel's mptcp_pm family has no 'mptcp_pm_events' group");
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_GENERIC);
  if (fd < 0) throw ErrnoError(env, errno, "socket", "AF_NETLINK");
  auto fail = [&](const char* syscall, const std::string& detail) {
    int err = errno;
    close(fd);
    return ErrnoError(env, err, syscall, detail);
  };
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) throw fail("bind", "AF_NETLINK");
  uint32_t group = fam.events_group;
  if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0) throw fail("setsockopt", "NETLINK_ADD_MEMBERSHIP mptcp_pm_events");
  // A burst of connections produces a burst of events; a deep queue makes overflow unlikely.
  int rcvbuf = 1 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

  nl::WatchSpec spec;
  spec.fd = fd;
  spec.resource = "braid.pmEvents";
  spec.kind_key = "type";
  uint16_t family_id = fam.id;
  spec.decode = [family_id](Napi::Env e, const nlmsghdr* h) { return DecodeEvent(e, family_id, h); };
  return nl::StartWatch(env, std::move(spec), info[0].As<Napi::Function>());
}

}  // namespace braid
