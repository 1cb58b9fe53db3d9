// Interfaces, addresses and routes over rtnetlink: one-shot dumps for a reconciler's initial state
// and a multicast watch for what changes after it. Both produce the same object shapes, so the
// state from a dump can be updated event by event.
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include "errors.h"
#include "netlink.h"
#include "netlink_api.h"
#include "nlwatch.h"

namespace braid {
namespace {

using nl::Attr;
using nl::Failure;

// <linux/if.h> has it but clashes with glibc's <net/if.h>, which lacks it.
constexpr unsigned kIffLowerUp = 1u << 16;

// Interface names for address and route messages, which carry only an index. Link messages keep
// it current, so an address removed together with its interface (the kernel reports the address
// first) still gets the name the interface had.
class NameCache {
 public:
  std::string Get(int ifindex) {
    if (ifindex <= 0) return "";
    auto it = names_.find(ifindex);
    if (it != names_.end()) return it->second;
    char buf[IF_NAMESIZE] = {0};
    if (!if_indextoname(static_cast<unsigned>(ifindex), buf)) return "";
    if (names_.size() < kMax) names_[ifindex] = buf;
    return buf;
  }
  void Set(int ifindex, const std::string& name) {
    if (names_.size() < kMax || names_.count(ifindex)) names_[ifindex] = name;
  }
  void Forget(int ifindex) { names_.erase(ifindex); }

 private:
  static constexpr size_t kMax = 4096;  // bounds memory under interface churn
  std::unordered_map<int, std::string> names_;
};

Napi::Value NameOrNull(Napi::Env env, const std::string& name) {
  return name.empty() ? env.Null() : Napi::String::New(env, name);
}

int FamilyNumber(int af) { return af == AF_INET ? 4 : af == AF_INET6 ? 6 : 0; }

const char* OperState(int s) {
  static const char* const names[] = {"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"};
  return s >= 0 && s < 7 ? names[s] : "unknown";
}

Napi::Value ScopeName(Napi::Env env, int scope) {
  switch (scope) {
    case RT_SCOPE_UNIVERSE: return Napi::String::New(env, "global");
    case RT_SCOPE_SITE: return Napi::String::New(env, "site");
    case RT_SCOPE_LINK: return Napi::String::New(env, "link");
    case RT_SCOPE_HOST: return Napi::String::New(env, "host");
    case RT_SCOPE_NOWHERE: return Napi::String::New(env, "nowhere");
    default: return Napi::Number::New(env, scope);
  }
}

void SetAction(Napi::Object& o, const nlmsghdr* h, uint16_t del_type, bool with_action) {
  if (with_action) o.Set("action", h->nlmsg_type == del_type ? "del" : "new");
}

std::string MacToString(const Attr& a) {
  std::string s;
  char part[4];
  for (size_t i = 0; i < a.len; i++) {
    snprintf(part, sizeof(part), i ? ":%02x" : "%02x", a.data[i]);
    s += part;
  }
  return s;
}

Napi::Value DecodeLink(Napi::Env env, const nlmsghdr* h, NameCache& names, bool with_action) {
  if ((h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return Napi::Value();
  const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
  // Bridges repeat their ports' state as AF_BRIDGE link messages; the AF_UNSPEC one is the link.
  if (ifi->ifi_family != AF_UNSPEC) return Napi::Value();
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", "link");
  SetAction(o, h, RTM_DELLINK, with_action);
  o.Set("ifindex", ifi->ifi_index);
  std::string name;
  Napi::Value mac = env.Null(), link_kind = env.Null(), carrier = env.Null();
  int operstate = 0, mtu = 0;
  nl::ForEachAttr(h, sizeof(ifinfomsg), [&](const Attr& a) {
    switch (a.type) {
      case IFLA_IFNAME: name = a.Str(); break;
      case IFLA_MTU: mtu = static_cast<int>(a.Uint()); break;
      case IFLA_OPERSTATE: operstate = static_cast<int>(a.Uint()); break;
      case IFLA_CARRIER: carrier = Napi::Boolean::New(env, a.Uint() != 0); break;
      case IFLA_ADDRESS: mac = Napi::String::New(env, MacToString(a)); break;
      case IFLA_LINKINFO:
        nl::ForEachAttr(a.data, a.len, [&](const Attr& x) {
          if (x.type == IFLA_INFO_KIND) link_kind = Napi::String::New(env, x.Str());
        });
        break;
    }
  });
  if (!name.empty()) {
    if (h->nlmsg_type == RTM_DELLINK) names.Forget(ifi->ifi_index);
    else names.Set(ifi->ifi_index, name);
  } else {
    name = names.Get(ifi->ifi_index);
  }
  o.Set("ifname", NameOrNull(env, name));
  o.Set("flags", Napi::Number::New(env, ifi->ifi_flags));
  o.Set("up", (ifi->ifi_flags & IFF_UP) != 0);
  o.Set("running", (ifi->ifi_flags & IFF_RUNNING) != 0);
  o.Set("lowerUp", (ifi->ifi_flags & kIffLowerUp) != 0);
  o.Set("loopback", (ifi->ifi_flags & IFF_LOOPBACK) != 0);
  o.Set("carrier", carrier);
  o.Set("operstate", OperState(operstate));
  o.Set("mtu", mtu);
  o.Set("mac", mac);
  o.Set("linkKind", link_kind);
  o.Set("type", ifi->ifi_type);
  return o;
}

Napi::Value DecodeAddr(Napi::Env env, const nlmsghdr* h, NameCache& names, bool with_action) {
  if ((h->nlmsg_type != RTM_NEWADDR && h->nlmsg_type != RTM_DELADDR) || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg))) return Napi::Value();
  const auto* ifa = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
  int family = FamilyNumber(ifa->ifa_family);
  if (!family) return Napi::Value();
  std::string local, address, label;
  uint32_t flags = ifa->ifa_flags;
  nl::ForEachAttr(h, sizeof(ifaddrmsg), [&](const Attr& a) {
    switch (a.type) {
      case IFA_LOCAL: local = nl::AddrToString(a.data, a.len); break;
      case IFA_ADDRESS: address = nl::AddrToString(a.data, a.len); break;
      case IFA_LABEL: label = a.Str(); break;
      case IFA_FLAGS: flags = static_cast<uint32_t>(a.Uint()); break;
    }
  });
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", "addr");
  SetAction(o, h, RTM_DELADDR, with_action);
  o.Set("family", family);
  o.Set("ifindex", static_cast<double>(ifa->ifa_index));
  o.Set("ifname", NameOrNull(env, names.Get(static_cast<int>(ifa->ifa_index))));
  // IFA_LOCAL is this host's address; IFA_ADDRESS differs from it only on point-to-point links,
  // where it is the peer (and IPv6 sends IFA_LOCAL only in that case).
  o.Set("address", local.empty() ? address : local);
  o.Set("peer", !local.empty() && !address.empty() && local != address ? Napi::Value(Napi::String::New(env, address)) : env.Null());
  o.Set("prefixlen", ifa->ifa_prefixlen);
  o.Set("scope", ScopeName(env, ifa->ifa_scope));
  o.Set("flags", Napi::Number::New(env, flags));
  o.Set("tentative", (flags & IFA_F_TENTATIVE) != 0);
  o.Set("deprecated", (flags & IFA_F_DEPRECATED) != 0);
  o.Set("dadFailed", (flags & IFA_F_DADFAILED) != 0);
  o.Set("permanent", (flags & IFA_F_PERMANENT) != 0);
  o.Set("label", NameOrNull(env, label));
  return o;
}

Napi::Value DecodeRouteImpl(Napi::Env env, const nlmsghdr* h, NameCache& names, bool with_action, bool keep_all) {
  if ((h->nlmsg_type != RTM_NEWROUTE && h->nlmsg_type != RTM_DELROUTE) || h->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return Napi::Value();
  const auto* rt = static_cast<const rtmsg*>(NLMSG_DATA(h));
  int family = FamilyNumber(rt->rtm_family);
  if (!family) return Napi::Value();
  uint32_t table = rt->rtm_table;
  std::string dst, gateway, prefsrc;
  int oif = 0;
  int64_t priority = -1;
  Napi::Array nexthops;
  nl::ForEachAttr(h, sizeof(rtmsg), [&](const Attr& a) {
    switch (a.type) {
      case RTA_DST: dst = nl::AddrToString(a.data, a.len); break;
      case RTA_GATEWAY: gateway = nl::AddrToString(a.data, a.len); break;
      case RTA_PREFSRC: prefsrc = nl::AddrToString(a.data, a.len); break;
      case RTA_OIF: oif = static_cast<int>(a.Uint()); break;
      case RTA_PRIORITY: priority = static_cast<int64_t>(a.Uint()); break;
      case RTA_TABLE: table = static_cast<uint32_t>(a.Uint()); break;
      case RTA_MULTIPATH: {
        nexthops = Napi::Array::New(env);
        const uint8_t* p = a.data;
        size_t left = a.len;
        while (left >= sizeof(rtnexthop)) {
          rtnexthop nh;
          std::memcpy(&nh, p, sizeof(nh));
          if (nh.rtnh_len < sizeof(rtnexthop) || nh.rtnh_len > left) break;
          std::string gw;
          nl::ForEachAttr(p + RTNH_ALIGN(sizeof(rtnexthop)), nh.rtnh_len - RTNH_ALIGN(sizeof(rtnexthop)), [&](const Attr& x) {
            if (x.type == RTA_GATEWAY) gw = nl::AddrToString(x.data, x.len);
          });
          Napi::Object n = Napi::Object::New(env);
          n.Set("ifindex", nh.rtnh_ifindex);
          n.Set("ifname", NameOrNull(env, names.Get(nh.rtnh_ifindex)));
          n.Set("gateway", NameOrNull(env, gw));
          n.Set("weight", nh.rtnh_hops + 1);
          nexthops.Set(nexthops.Length(), n);
          size_t step = RTNH_ALIGN(nh.rtnh_len);
          if (step >= left) break;
          p += step;
          left -= step;
        }
        break;
      }
    }
  });
  // The local table mirrors the address list (already reported as addr events) and cloned
  // routes are a cache: neither says anything about where traffic can go.
  if (!keep_all && (table == RT_TABLE_LOCAL || (rt->rtm_flags & RTM_F_CLONED))) return Napi::Value();
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", "route");
  SetAction(o, h, RTM_DELROUTE, with_action);
  o.Set("family", family);
  o.Set("dst", NameOrNull(env, dst));
  o.Set("dstLen", rt->rtm_dst_len);
  o.Set("isDefault", rt->rtm_dst_len == 0);
  o.Set("gateway", NameOrNull(env, gateway));
  o.Set("prefsrc", NameOrNull(env, prefsrc));
  o.Set("ifindex", oif);
  o.Set("ifname", NameOrNull(env, names.Get(oif)));
  o.Set("table", Napi::Number::New(env, table));
  o.Set("protocol", rt->rtm_protocol);
  o.Set("scope", ScopeName(env, rt->rtm_scope));
  o.Set("type", rt->rtm_type);
  o.Set("priority", priority < 0 ? env.Null() : Napi::Value(Napi::Number::New(env, static_cast<double>(priority))));
  if (!nexthops.IsEmpty()) o.Set("nexthops", nexthops);
  return o;
}

Napi::Value DecodeRoute(Napi::Env env, const nlmsghdr* h, NameCache& names, bool with_action) {
  return DecodeRouteImpl(env, h, names, with_action, false);
}

// A route-get answer: a cache entry (RTM_F_CLONED) or, asked with RTM_F_FIB_MATCH, the table's own.
Napi::Value DecodeRouteAny(Napi::Env env, const nlmsghdr* h, NameCache& names) {
  return DecodeRouteImpl(env, h, names, false, true);
}

template <typename Header>
Napi::Value Dump(const Napi::CallbackInfo& info, uint16_t type, const Header& hdr, bool skip_stats,
                 Napi::Value (*decode)(Napi::Env, const nlmsghdr*, NameCache&, bool), const char* what) {
  Napi::Env env = info.Env();
  nl::Socket sock;
  if (Failure f = sock.Open(NETLINK_ROUTE)) throw nl::FailureError(env, f);
  NameCache names;
  Napi::Array out;
  Failure f;
  for (int attempt = 0; attempt < 3; attempt++) {
    out = Napi::Array::New(env);
    nl::Message msg(type, NLM_F_DUMP);
    msg.PutHeader(hdr);
    // Per-link statistics are most of a link message's size and nothing here uses them.
    if (skip_stats) msg.PutU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    f = sock.Request(msg, [&](const nlmsghdr* h) {
      Napi::Value v = decode(env, h, names, false);
      if (!v.IsEmpty()) out.Set(out.Length(), v);
    }, what);
    if (f.err != EAGAIN) break;
  }
  if (f) throw nl::FailureError(env, f);
  return out;
}

}  // namespace

Napi::Value RtListLinks(const Napi::CallbackInfo& info) {
  ifinfomsg hdr{};
  hdr.ifi_family = AF_UNSPEC;
  return Dump(info, RTM_GETLINK, hdr, true, DecodeLink, "rtnl.getlink");
}

Napi::Value RtListAddresses(const Napi::CallbackInfo& info) {
  ifaddrmsg hdr{};
  hdr.ifa_family = AF_UNSPEC;
  return Dump(info, RTM_GETADDR, hdr, false, DecodeAddr, "rtnl.getaddr");
}

Napi::Value RtListRoutes(const Napi::CallbackInfo& info) {
  rtmsg hdr{};
  hdr.rtm_family = AF_UNSPEC;
  return Dump(info, RTM_GETROUTE, hdr, false, DecodeRoute, "rtnl.getroute");
}

// rtRouteGet({dst, src?, oif?, fibMatch?}) -> the route the kernel picks for dst (RTM_GETROUTE,
// what `ip route get` asks). With fibMatch the answer is the routing-table entry that matched, and
// a lookup that matched none fails (EHOSTUNREACH/ENETUNREACH) instead of returning the "treat it
// as on-link" result the kernel falls back to for sockets bound to an interface.
Napi::Value RtRouteGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw nl::ArgError(env, "routeGet(options) needs an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string dst = nl::OptString(o, "dst");
  std::string src = nl::OptString(o, "src");
  int64_t oif = nl::OptInt(o, "oif", 0, 0, 0x7fffffff);
  bool fib_match = false;
  if (nl::Has(o, "fibMatch")) {
    Napi::Value v = o.Get("fibMatch");
    if (!v.IsBoolean()) throw nl::ArgError(env, "option 'fibMatch' must be a boolean");
    fib_match = v.As<Napi::Boolean>().Value();
  }
  uint8_t dbuf[16], sbuf[16];
  int dfam = nl::ParseAddr(dst, dbuf);
  if (!dfam) throw nl::ArgError(env, "option 'dst' must be a numeric IPv4 or IPv6 address, got '" + dst + "'", false);
  int sfam = 0;
  if (!src.empty()) {
    sfam = nl::ParseAddr(src, sbuf);
    if (sfam != dfam) throw nl::ArgError(env, "option 'src' must be a numeric address of the same family as 'dst', got '" + src + "'", false);
  }
  nl::Socket sock;
  if (Failure f = sock.Open(NETLINK_ROUTE)) throw nl::FailureError(env, f);
  rtmsg hdr{};
  hdr.rtm_family = dfam == 4 ? AF_INET : AF_INET6;
  hdr.rtm_dst_len = dfam == 4 ? 32 : 128;
  hdr.rtm_src_len = sfam ? hdr.rtm_dst_len : 0;
  if (fib_match) hdr.rtm_flags |= RTM_F_FIB_MATCH;
  nl::Message msg(RTM_GETROUTE, 0);
  msg.PutHeader(hdr);
  size_t alen = dfam == 4 ? 4 : 16;
  msg.Put(RTA_DST, dbuf, alen);
  if (sfam) msg.Put(RTA_SRC, sbuf, alen);
  if (oif) msg.PutU32(RTA_OIF, static_cast<uint32_t>(oif));
  NameCache names;
  Napi::Value out = env.Null();
  Failure f = sock.Request(msg, [&](const nlmsghdr* h) {
    if (!out.IsNull()) return;
    Napi::Value v = DecodeRouteAny(env, h, names);
    if (!v.IsEmpty()) out = v;
  }, "rtnl.getroute");
  if (f) throw nl::FailureError(env, f);
  return out;
}

// rtLinkWatch(callback, {routes?: boolean = true}) -> watch handle (see nlwatch.h). Reading
// rtnetlink multicast needs no privilege.
Napi::Value RtLinkWatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) throw nl::ArgError(env, "linkWatch(callback[, options]) needs a function");
  bool routes = true;
  if (info.Length() >= 2 && info[1].IsObject()) {
    Napi::Value r = info[1].As<Napi::Object>().Get("routes");
    if (!r.IsUndefined()) {
      if (!r.IsBoolean()) throw nl::ArgError(env, "linkWatch: option 'routes' must be a boolean");
      routes = r.As<Napi::Boolean>().Value();
    }
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) throw ErrnoError(env, errno, "socket", "AF_NETLINK");
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, "bind", "AF_NETLINK");
  }
  std::vector<uint32_t> groups = {RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR};
  if (routes) groups.insert(groups.end(), {RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE});
  for (uint32_t g : groups) {
    if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof(g)) != 0) {
      int err = errno;
      close(fd);
      throw ErrnoError(env, err, "setsockopt", "NETLINK_ADD_MEMBERSHIP rtnetlink group " + std::to_string(g));
    }
  }
  int rcvbuf = 1 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

  auto names = std::make_shared<NameCache>();
  nl::WatchSpec spec;
  spec.fd = fd;
  spec.resource = "braid.linkWatch";
  spec.kind_key = "kind";
  spec.decode = [names](Napi::Env e, const nlmsghdr* h) -> Napi::Value {
    switch (h->nlmsg_type) {
      case RTM_NEWLINK: case RTM_DELLINK: return DecodeLink(e, h, *names, true);
      case RTM_NEWADDR: case RTM_DELADDR: return DecodeAddr(e, h, *names, true);
      case RTM_NEWROUTE: case RTM_DELROUTE: return DecodeRoute(e, h, *names, true);
      default: return Napi::Value();
    }
  };
  return nl::StartWatch(env, std::move(spec), info[0].As<Napi::Function>());
}

}  // namespace braid
