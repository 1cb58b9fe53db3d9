// What a socket really does: MPTCP or fallback, and for every subflow its addresses and TCP
// counters. Uses MPTCP_FULL_INFO (one consistent snapshot, kernel 6.6+) and falls back to
// MPTCP_TCPINFO + MPTCP_SUBFLOW_ADDRS on older kernels. Struct sizes are negotiated with the kernel,
// so a field is read only when the kernel said it wrote it.
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

#include "diag_request.h"
#include "errors.h"
#include "sockets.h"
#include "uapi.h"

namespace braid {
namespace {

#define HAS_FIELD(len, type, field) ((len) >= offsetof(type, field) + sizeof(((type*)nullptr)->field))

struct Endpoint {
  sockaddr_storage ss{};
  bool valid = false;
};

std::string AddrString(const sockaddr_storage& ss, int* port) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    // Report v4-mapped addresses as plain IPv4 so that paths are named the same way everywhere.
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof(buf));
    } else {
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    }
    *port = ntohs(a->sin6_port);
  } else {
    *port = 0;
  }
  return buf;
}

// Backup flags live only in the subflow's MPTCP ULP state, which sock_diag exposes (to
// CAP_NET_ADMIN). One exact-match lookup per subflow; without the privilege the answer is "unknown".
class DiagSocket {
 public:
  ~DiagSocket() {
    if (fd_ >= 0) close(fd_);
  }
  // Returns -1 when unknown.
  int64_t SubflowFlags(const sockaddr_storage& local, const sockaddr_storage& remote) {
    if (local.ss_family != remote.ss_family) return -1;
    if (fd_ < 0) {
      fd_ = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
      if (fd_ < 0) return -1;
      timeval tv{0, 200000};  // never hang the JS thread on a wedged netlink socket
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    const bool v4 = local.ss_family == AF_INET;
    const auto* l4 = reinterpret_cast<const sockaddr_in*>(&local);
    const auto* r4 = reinterpret_cast<const sockaddr_in*>(&remote);
    const auto* l6 = reinterpret_cast<const sockaddr_in6*>(&local);
    const auto* r6 = reinterpret_cast<const sockaddr_in6*>(&remote);
    DiagRequest msg = v4 ? ExactDiagRequest(SOCK_DIAG_BY_FAMILY, 0, AF_INET, l4->sin_port, r4->sin_port, &l4->sin_addr, &r4->sin_addr)
                         : ExactDiagRequest(SOCK_DIAG_BY_FAMILY, 0, AF_INET6, l6->sin6_port, r6->sin6_port, &l6->sin6_addr, &r6->sin6_addr);
    msg.nlh.nlmsg_seq = ++seq_;
    msg.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
    sockaddr_nl nl{};
    nl.nl_family = AF_NETLINK;
    if (sendto(fd_, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&nl), sizeof(nl)) < 0) return -1;
    alignas(nlmsghdr) char buf[8192];
    for (int tries = 0; tries < 4; tries++) {
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return -1;
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_seq != seq_) continue;  // a late answer to an earlier, timed-out query
        if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE) return -1;
        return ParseFlags(h);
      }
    }
    return -1;
  }

 private:
  static int64_t ParseFlags(nlmsghdr* h) {
    auto* d = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
    int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*d)));
    for (auto* a = reinterpret_cast<rtattr*>(d + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      if ((a->rta_type & NLA_TYPE_MASK) != INET_DIAG_ULP_INFO) continue;
      int ulen = RTA_PAYLOAD(a);
      for (auto* u = static_cast<rtattr*>(RTA_DATA(a)); RTA_OK(u, ulen); u = RTA_NEXT(u, ulen)) {
        if ((u->rta_type & NLA_TYPE_MASK) != kInetUlpInfoMptcp) continue;
        int mlen = RTA_PAYLOAD(u);
        for (auto* m = static_cast<rtattr*>(RTA_DATA(u)); RTA_OK(m, mlen); m = RTA_NEXT(m, mlen)) {
          if ((m->rta_type & NLA_TYPE_MASK) == kSubflowAttrFlags && RTA_PAYLOAD(m) >= 4) {
            uint32_t f;
            std::memcpy(&f, RTA_DATA(m), 4);
            return f;
          }
        }
      }
    }
    return -1;
  }
  int fd_ = -1;
  uint32_t seq_ = 0;
};

DiagSocket& Diag() {
  static DiagSocket d;  // the addon runs on one JS thread per isolate; workers get a lookup miss at worst
  return d;
}

Napi::Object SubflowObject(Napi::Env env, uint32_t id, const sockaddr_storage& local, const sockaddr_storage& remote,
                           const tcp_info& ti, size_t ti_len, bool with_flags) {
  Napi::Object s = Napi::Object::New(env);
  int lport = 0, rport = 0;
  s.Set("id", Napi::Number::New(env, id));
  s.Set("localAddress", Napi::String::New(env, AddrString(local, &lport)));
  s.Set("localPort", Napi::Number::New(env, lport));
  s.Set("remoteAddress", Napi::String::New(env, AddrString(remote, &rport)));
  s.Set("remotePort", Napi::Number::New(env, rport));
  bool v4 = local.ss_family == AF_INET ||
            (local.ss_family == AF_INET6 &&
             IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const sockaddr_in6*>(&local)->sin6_addr));
  s.Set("family", Napi::Number::New(env, v4 ? 4 : 6));
  s.Set("interface", env.Null());
  // JS numbers are exact to 2^53 bytes (8 PiB): far beyond any connection's lifetime.
  auto u64 = [&](bool has, uint64_t v) { return Napi::Number::New(env, has ? static_cast<double>(v) : 0); };
  s.Set("bytesSent", u64(HAS_FIELD(ti_len, tcp_info, tcpi_bytes_sent), ti.tcpi_bytes_sent));
  s.Set("bytesAcked", u64(HAS_FIELD(ti_len, tcp_info, tcpi_bytes_acked), ti.tcpi_bytes_acked));
  s.Set("bytesReceived", u64(HAS_FIELD(ti_len, tcp_info, tcpi_bytes_received), ti.tcpi_bytes_received));
  s.Set("rttUs", Napi::Number::New(env, HAS_FIELD(ti_len, tcp_info, tcpi_rtt) ? ti.tcpi_rtt : 0));
  // Path quality (paths/quality.ts): a receiver's RTT comes from its own estimate (tcpi_rtt only
  // moves when this side sends data), and loss shows as the sender's retransmitted bytes.
  s.Set("rttVarUs", Napi::Number::New(env, HAS_FIELD(ti_len, tcp_info, tcpi_rttvar) ? ti.tcpi_rttvar : 0));
  s.Set("rcvRttUs", Napi::Number::New(env, HAS_FIELD(ti_len, tcp_info, tcpi_rcv_rtt) ? ti.tcpi_rcv_rtt : 0));
  s.Set("bytesRetrans", u64(HAS_FIELD(ti_len, tcp_info, tcpi_bytes_retrans), ti.tcpi_bytes_retrans));
  s.Set("state", Napi::Number::New(env, ti_len > 0 ? ti.tcpi_state : 0));
  // The backup lookup is a netlink round trip per subflow: callers sampling many sockets skip it.
  int64_t flags = with_flags ? Diag().SubflowFlags(local, remote) : -1;
  s.Set("backup", Napi::Boolean::New(env, flags >= 0 && (flags & (kSubflowFlagBackupLocal | kSubflowFlagBackupRemote))));
  s.Set("backupKnown", Napi::Boolean::New(env, flags >= 0));
  return s;
}

// A plain TCP socket, or an MPTCP socket that fell back, is one path: describe it the same way.
Napi::Object PlainSubflow(Napi::Env env, int fd, bool with_flags) {
  sockaddr_storage l{}, r{};
  socklen_t ll = sizeof(l), rl = sizeof(r);
  getsockname(fd, reinterpret_cast<sockaddr*>(&l), &ll);
  getpeername(fd, reinterpret_cast<sockaddr*>(&r), &rl);
  tcp_info ti{};
  socklen_t tl = sizeof(ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0) tl = 0;
  return SubflowObject(env, 0, l, r, ti, tl, with_flags);
}

void CopyAddrs(const SubflowAddrs& a, sockaddr_storage* l, sockaddr_storage* r) {
  std::memcpy(l, &a.ss_local, sizeof(*l));
  std::memcpy(r, &a.ss_remote, sizeof(*r));
}

// MPTCP_FULL_INFO: returns false when the kernel does not know the option.
bool FullInfoSubflows(Napi::Env env, int fd, size_t hint, MptcpInfo* mi, size_t* mi_len, Napi::Array* out, bool with_flags) {
  size_t cap = hint + 2;
  for (int attempt = 0; attempt < 3; attempt++) {
    std::vector<SubflowInfo> sf(cap);
    std::vector<tcp_info> ti(cap);
    FullInfo fi{};
    fi.size_tcpinfo_user = sizeof(tcp_info);
    fi.size_sfinfo_user = sizeof(SubflowInfo);
    fi.size_arrays_user = static_cast<uint32_t>(cap);
    fi.subflow_info = reinterpret_cast<uintptr_t>(sf.data());
    fi.tcp_info = reinterpret_cast<uintptr_t>(ti.data());
    socklen_t len = sizeof(fi);
    if (getsockopt(fd, SOL_MPTCP, kMptcpFullInfo, &fi, &len) != 0) {
      if (errno == EOPNOTSUPP || errno == ENOPROTOOPT) return false;
      throw ErrnoError(env, errno, "getsockopt", "MPTCP_FULL_INFO");
    }
    if (fi.num_subflows > cap && attempt < 2) {  // subflows appeared meanwhile: ask again, bigger
      cap = fi.num_subflows + 2;
      continue;
    }
    size_t n = fi.num_subflows < cap ? fi.num_subflows : cap;
    size_t ti_len = fi.size_tcpinfo_kernel < sizeof(tcp_info) ? fi.size_tcpinfo_kernel : sizeof(tcp_info);
    if (len > offsetof(FullInfo, mptcp_info)) {
      *mi_len = len - offsetof(FullInfo, mptcp_info);
      std::memcpy(mi, &fi.mptcp_info, *mi_len < sizeof(*mi) ? *mi_len : sizeof(*mi));
    }
    *out = Napi::Array::New(env, n);
    for (size_t i = 0; i < n; i++) {
      sockaddr_storage l{}, r{};
      CopyAddrs(sf[i].addrs, &l, &r);
      out->Set(static_cast<uint32_t>(i), SubflowObject(env, sf[i].id, l, r, ti[i], ti_len, with_flags));
    }
    return true;
  }
  return true;
}

// Kernels before 6.6: two separate getsockopts; a subflow can come or go between them, so pair
// them only when both report the same count.
void LegacySubflows(Napi::Env env, int fd, size_t hint, Napi::Array* out, bool with_flags) {
  size_t cap = hint + 2;
  std::vector<char> tbuf(sizeof(SubflowData) + cap * sizeof(tcp_info));
  std::vector<char> abuf(sizeof(SubflowData) + cap * sizeof(SubflowAddrs));
  auto* th = reinterpret_cast<SubflowData*>(tbuf.data());
  auto* ah = reinterpret_cast<SubflowData*>(abuf.data());
  th->size_subflow_data = sizeof(SubflowData);
  th->size_user = sizeof(tcp_info);
  ah->size_subflow_data = sizeof(SubflowData);
  ah->size_user = sizeof(SubflowAddrs);
  socklen_t tl = tbuf.size(), al = abuf.size();
  if (getsockopt(fd, SOL_MPTCP, kMptcpTcpInfo, tbuf.data(), &tl) != 0) throw ErrnoError(env, errno, "getsockopt", "MPTCP_TCPINFO");
  if (getsockopt(fd, SOL_MPTCP, kMptcpSubflowAddrs, abuf.data(), &al) != 0) throw ErrnoError(env, errno, "getsockopt", "MPTCP_SUBFLOW_ADDRS");
  size_t n = th->num_subflows < ah->num_subflows ? th->num_subflows : ah->num_subflows;
  if (n > cap) n = cap;
  size_t ti_len = th->size_kernel < sizeof(tcp_info) ? th->size_kernel : sizeof(tcp_info);
  size_t ti_step = th->size_kernel < th->size_user ? th->size_kernel : th->size_user;
  size_t a_step = ah->size_kernel < ah->size_user ? ah->size_kernel : ah->size_user;
  *out = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    tcp_info ti{};
    std::memcpy(&ti, tbuf.data() + sizeof(SubflowData) + i * ti_step, ti_len);
    SubflowAddrs a{};
    std::memcpy(&a, abuf.data() + sizeof(SubflowData) + i * a_step, a_step < sizeof(a) ? a_step : sizeof(a));
    sockaddr_storage l{}, r{};
    CopyAddrs(a, &l, &r);
    out->Set(static_cast<uint32_t>(i), SubflowObject(env, static_cast<uint32_t>(i), l, r, ti, ti_len, with_flags));
  }
}

}  // namespace

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "info(fd) needs a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool with_flags = info.Length() < 2 || !info[1].IsBoolean() || info[1].As<Napi::Boolean>().Value();

  int proto = 0;
  socklen_t plen = sizeof(proto);
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) != 0) throw ErrnoError(env, errno, "getsockopt", "SO_PROTOCOL");

  Napi::Object out = Napi::Object::New(env);
  MptcpInfo mi{};
  size_t mi_len = 0;
  bool fallback = false;
  Napi::Array subflows;

  if (proto == IPPROTO_MPTCP) {
    socklen_t len = sizeof(mi);
    if (getsockopt(fd, SOL_MPTCP, kMptcpInfo, &mi, &len) != 0) {
      // A fallen-back MPTCP socket passes SOL_MPTCP to its lone TCP subflow, which does not know it.
      if (errno != EOPNOTSUPP && errno != ENOPROTOOPT) throw ErrnoError(env, errno, "getsockopt", "MPTCP_INFO");
      fallback = true;
    } else {
      mi_len = len;
      fallback = (mi.flags & kMptcpInfoFlagFallback) != 0;
    }
    if (!fallback) {
      size_t hint = HAS_FIELD(mi_len, MptcpInfo, subflows_total) ? mi.subflows_total : mi.subflows + 1u;
      if (!FullInfoSubflows(env, fd, hint, &mi, &mi_len, &subflows, with_flags)) LegacySubflows(env, fd, hint, &subflows, with_flags);
    }
  }
  if (proto != IPPROTO_MPTCP || fallback) {
    subflows = Napi::Array::New(env, 1);
    subflows.Set(0u, PlainSubflow(env, fd, with_flags));
  }

  auto u64 = [&](bool has, uint64_t v) { return Napi::Number::New(env, has ? static_cast<double>(v) : 0); };
  out.Set("mptcp", Napi::Boolean::New(env, proto == IPPROTO_MPTCP));
  out.Set("fallback", Napi::Boolean::New(env, fallback));
  out.Set("token", Napi::Number::New(env, HAS_FIELD(mi_len, MptcpInfo, token) ? mi.token : 0));
  out.Set("subflowsTotal", Napi::Number::New(env, subflows.Length()));
  out.Set("bytesSent", u64(HAS_FIELD(mi_len, MptcpInfo, bytes_sent), mi.bytes_sent));
  out.Set("bytesReceived", u64(HAS_FIELD(mi_len, MptcpInfo, bytes_received), mi.bytes_received));
  out.Set("bytesAcked", u64(HAS_FIELD(mi_len, MptcpInfo, bytes_acked), mi.bytes_acked));
  out.Set("retransmits", Napi::Number::New(env, HAS_FIELD(mi_len, MptcpInfo, retransmits) ? mi.retransmits : 0));
  out.Set("subflows", subflows);
  return out;
}

}  // namespace braid
