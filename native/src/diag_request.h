// One exact-match sock_diag request (inet_diag_req_v2, not a dump) for the TCP socket with a given
// 4-tuple, shared by the socket lookups (sockdiag.cc: owner, abort) and the subflow flag reads
// (info.cc), so the request is built one way.
#pragma once
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>

namespace braid {

struct DiagRequest {
  nlmsghdr nlh;
  inet_diag_req_v2 req;
};

// `family` AF_INET or AF_INET6; ports in network byte order; `src`/`dst` 4 or 16 bytes by family.
// `ifindex`: a socket bound to a device is found only with it (0: unbound). The caller adds
// idiag_ext or nlmsg_seq when it needs them.
inline DiagRequest ExactDiagRequest(uint16_t type, uint16_t flags, uint8_t family, uint16_t sport_be, uint16_t dport_be,
                                    const void* src, const void* dst, uint32_t ifindex = 0) {
  DiagRequest msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = type;
  msg.nlh.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  msg.req.sdiag_family = family;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0U;
  msg.req.id.idiag_sport = sport_be;
  msg.req.id.idiag_dport = dport_be;
  const size_t len = family == AF_INET ? 4 : 16;
  std::memcpy(msg.req.id.idiag_src, src, len);
  std::memcpy(msg.req.id.idiag_dst, dst, len);
  msg.req.id.idiag_if = ifindex;
  msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  return msg;
}

}  // namespace braid
