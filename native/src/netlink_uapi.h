// Constants of the kernel's `mptcp_pm` generic-netlink family and the few netlink extras the addon
// uses. They are spelled out here instead of coming from <linux/mptcp.h> because the build
// machine's headers (6.1) lag the running kernel (6.18), and because users build on older headers
// still: the numbers are kernel ABI and never change meaning, so our own copy is safe, and whatever
// a given kernel lacks is discovered at run time (unknown attributes are passed through, unknown
// commands fail with the kernel's own error).
#pragma once

#include <cstdint>

namespace braid {
namespace pm {

constexpr const char* kFamilyName = "mptcp_pm";
constexpr const char* kEventsGroup = "mptcp_pm_events";
constexpr uint8_t kFamilyVersion = 1;

// MPTCP_PM_CMD_*
constexpr uint8_t kCmdAddAddr = 1;
constexpr uint8_t kCmdDelAddr = 2;
constexpr uint8_t kCmdGetAddr = 3;
constexpr uint8_t kCmdFlushAddrs = 4;
constexpr uint8_t kCmdSetLimits = 5;
constexpr uint8_t kCmdGetLimits = 6;
constexpr uint8_t kCmdSetFlags = 7;
constexpr uint8_t kCmdSubflowCreate = 10;   // userspace path manager, per connection token
constexpr uint8_t kCmdSubflowDestroy = 11;

// MPTCP_PM_ATTR_* (top level of a command)
constexpr uint16_t kAttrAddr = 1;  // nested MPTCP_PM_ADDR_ATTR_*
constexpr uint16_t kAttrRcvAddAddrs = 2;
constexpr uint16_t kAttrSubflows = 3;
constexpr uint16_t kAttrToken = 4;        // u32: the connection (userspace path manager commands)
constexpr uint16_t kAttrLocId = 5;        // u8
constexpr uint16_t kAttrAddrRemote = 6;   // nested MPTCP_PM_ADDR_ATTR_*: the peer's address

// MPTCP_PM_ADDR_ATTR_* (inside kAttrAddr)
constexpr uint16_t kAddrFamily = 1;  // u16
constexpr uint16_t kAddrId = 2;      // u8
constexpr uint16_t kAddrAddr4 = 3;   // be32
constexpr uint16_t kAddrAddr6 = 4;   // in6_addr
constexpr uint16_t kAddrPort = 5;    // u16, host order
constexpr uint16_t kAddrFlags = 6;   // u32
constexpr uint16_t kAddrIfIdx = 7;   // s32
constexpr uint32_t kAddrFlagBackup = 1 << 2;

// MPTCP_EVENT_* (genl command of a message on the events group)
constexpr uint8_t kEventCreated = 1;
constexpr uint8_t kEventEstablished = 2;
constexpr uint8_t kEventClosed = 3;
constexpr uint8_t kEventAnnounced = 6;
constexpr uint8_t kEventRemoved = 7;
constexpr uint8_t kEventSubEstablished = 10;
constexpr uint8_t kEventSubClosed = 11;
constexpr uint8_t kEventSubPriority = 13;
constexpr uint8_t kEventListenerCreated = 15;
constexpr uint8_t kEventListenerClosed = 16;

// MPTCP_ATTR_* (attributes of an event)
constexpr uint16_t kEvToken = 1;         // u32
constexpr uint16_t kEvFamily = 2;        // u16
constexpr uint16_t kEvLocId = 3;         // u8
constexpr uint16_t kEvRemId = 4;         // u8
constexpr uint16_t kEvSaddr4 = 5;        // be32
constexpr uint16_t kEvSaddr6 = 6;        // in6_addr
constexpr uint16_t kEvDaddr4 = 7;        // be32
constexpr uint16_t kEvDaddr6 = 8;        // in6_addr
constexpr uint16_t kEvSport = 9;         // be16
constexpr uint16_t kEvDport = 10;        // be16
constexpr uint16_t kEvBackup = 11;       // u8
constexpr uint16_t kEvError = 12;        // u8
constexpr uint16_t kEvFlags = 13;        // u16
constexpr uint16_t kEvTimeout = 14;      // u32
constexpr uint16_t kEvIfIdx = 15;        // s32
constexpr uint16_t kEvResetReason = 16;  // u32
constexpr uint16_t kEvResetFlags = 17;   // u32
constexpr uint16_t kEvServerSide = 18;   // u8

}  // namespace pm

namespace nlx {

// setsockopt(SOL_NETLINK, ...) options newer than some libcs' headers.
constexpr int kNetlinkCapAck = 10;
constexpr int kNetlinkExtAck = 11;
// nlmsg_flags of an NLMSG_ERROR / NLMSG_DONE carrying extended-ack TLVs.
constexpr uint16_t kFlagCapped = 0x100;
constexpr uint16_t kFlagAckTlvs = 0x200;
constexpr uint16_t kErrAttrMsg = 1;  // NLMSGERR_ATTR_MSG

}  // namespace nlx
}  // namespace braid
