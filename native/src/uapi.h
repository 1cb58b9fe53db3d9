// MPTCP definitions the build machine's 6.1 headers lack (or that we must not take from them, so the
// addon builds on older headers too). Layouts follow include/uapi/linux/mptcp.h of kernel 6.10+;
// every getsockopt below passes its own size and reads only what the kernel says it wrote.
#pragma once

#include <cstdint>
#include <netinet/in.h>
#include <sys/socket.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef SOL_MPTCP
#define SOL_MPTCP 284
#endif

namespace braid {

constexpr int kMptcpInfo = 1;
constexpr int kMptcpTcpInfo = 2;
constexpr int kMptcpSubflowAddrs = 3;
constexpr int kMptcpFullInfo = 4;

constexpr uint32_t kMptcpInfoFlagFallback = 1u << 0;

// struct mptcp_info as of 6.10; older kernels return a prefix of it.
struct MptcpInfo {
  uint8_t subflows;
  uint8_t add_addr_signal;
  uint8_t add_addr_accepted;
  uint8_t subflows_max;
  uint8_t add_addr_signal_max;
  uint8_t add_addr_accepted_max;
  uint32_t flags;
  uint32_t token;
  uint64_t write_seq;
  uint64_t snd_una;
  uint64_t rcv_nxt;
  uint8_t local_addr_used;
  uint8_t local_addr_max;
  uint8_t csum_enabled;
  uint32_t retransmits;
  uint64_t bytes_retrans;
  uint64_t bytes_sent;
  uint64_t bytes_received;
  uint64_t bytes_acked;
  uint8_t subflows_total;
  uint8_t reserved[3];
  uint32_t last_data_sent;
  uint32_t last_data_recv;
  uint32_t last_ack_recv;
};

struct SubflowData {
  uint32_t size_subflow_data;
  uint32_t num_subflows;
  uint32_t size_kernel;
  uint32_t size_user;
} __attribute__((aligned(8)));

struct SubflowAddrs {
  union {
    sa_family_t sa_family;
    sockaddr sa_local;
    sockaddr_in sin_local;
    sockaddr_in6 sin6_local;
    sockaddr_storage ss_local;
  };
  union {
    sockaddr sa_remote;
    sockaddr_in sin_remote;
    sockaddr_in6 sin6_remote;
    sockaddr_storage ss_remote;
  };
};

struct SubflowInfo {
  uint32_t id;
  SubflowAddrs addrs;
};

struct FullInfo {
  uint32_t size_tcpinfo_kernel;
  uint32_t size_tcpinfo_user;
  uint32_t size_sfinfo_kernel;
  uint32_t size_sfinfo_user;
  uint32_t num_subflows;
  uint32_t size_arrays_user;
  uint64_t subflow_info __attribute__((aligned(8)));
  uint64_t tcp_info __attribute__((aligned(8)));
  MptcpInfo mptcp_info;
};

// Subflow flags reported by sock_diag's MPTCP ULP info (MPTCP_SUBFLOW_ATTR_FLAGS).
constexpr uint32_t kSubflowFlagBackupRemote = 1u << 4;
constexpr uint32_t kSubflowFlagBackupLocal = 1u << 5;
constexpr int kSubflowAttrFlags = 8;
constexpr int kInetUlpInfoMptcp = 3;  // INET_ULP_INFO_MPTCP

}  // namespace braid
