// A small netlink toolkit shared by the path-manager (generic netlink `mptcp_pm`) and rtnetlink
// parts of the addon: building requests, walking attributes, and a synchronous request/response
// socket that checks sequence numbers, reads the kernel's extended-ack message, and never blocks
// longer than its receive timeout.
#pragma once

#include <napi.h>
#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace braid {
namespace nl {

// A failed netlink exchange: errno, the step that failed, and the kernel's extack text if any.
struct Failure {
  int err = 0;
  std::string syscall;
  std::string detail;
  explicit operator bool() const { return err != 0; }
};

class Message {
 public:
  Message(uint16_t type, uint16_t flags);
  template <typename T>
  void PutHeader(const T& h) { Append(&h, sizeof(h)); }
  void Put(uint16_t type, const void* data, size_t len);
  void PutU8(uint16_t type, uint8_t v) { Put(type, &v, 1); }
  void PutU16(uint16_t type, uint16_t v) { Put(type, &v, 2); }
  void PutU32(uint16_t type, uint32_t v) { Put(type, &v, 4); }
  void PutS32(uint16_t type, int32_t v) { Put(type, &v, 4); }
  void PutString(uint16_t type, const std::string& s) { Put(type, s.c_str(), s.size() + 1); }
  size_t BeginNest(uint16_t type);
  void EndNest(size_t at);
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  size_t size() const { return buf_.size(); }

 private:
  void Append(const void* p, size_t n);
  std::vector<uint8_t> buf_;
};

struct Attr {
  uint16_t type = 0;  // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
  const uint8_t* data = nullptr;
  size_t len = 0;
  // Integers are read by the width the kernel actually sent, so a field that grows (u8 -> u32)
  // in a later kernel still decodes.
  uint64_t Uint() const;
  uint16_t Be16() const;
  std::string Str() const;
};

// Calls fn for each well-formed attribute in [p, p+len); stops at the first malformed one.
void ForEachAttr(const uint8_t* p, size_t len, const std::function<void(const Attr&)>& fn);
// The attributes after a fixed header of `hdr` bytes in a message's payload.
void ForEachAttr(const nlmsghdr* h, size_t hdr, const std::function<void(const Attr&)>& fn);

// An IPv4 (4 bytes) or IPv6 (16 bytes) address as text, "" for anything else.
std::string AddrToString(const uint8_t* p, size_t len);
// Numeric IPv4/IPv6 text to bytes; returns 4, 6, or 0 when not an address.
int ParseAddr(const std::string& text, uint8_t out[16]);

// A blocking netlink socket for request/response exchanges. Every receive is bounded by
// SO_RCVTIMEO and the whole exchange by a deadline, so a kernel that never answers (or a reply
// that was lost to ENOBUFS) turns into ETIMEDOUT instead of a hung main thread.
class Socket {
 public:
  ~Socket();
  Failure Open(int protocol, int timeout_ms = 3000);
  // Sends msg with a fresh sequence number. For a dump, on_reply sees every part until
  // NLMSG_DONE; otherwise NLM_F_ACK is added and on_reply sees any reply before the ack.
  Failure Request(Message& msg, const std::function<void(const nlmsghdr*)>& on_reply, const char* what);
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  int timeout_ms_ = 3000;
  uint32_t seq_ = 0;
  std::vector<uint8_t> rx_;
};

// Reads the extack message TLV of an NLMSG_ERROR or NLMSG_DONE, "" if there is none.
std::string ExtackMessage(const nlmsghdr* h);

// ---- JS argument helpers (errors carry code ERR_INVALID_ARG_VALUE / _TYPE like Node's own) ----

Napi::Error ArgError(Napi::Env env, const std::string& msg, bool type_error = true);
bool Has(const Napi::Object& o, const char* key);
std::string OptString(const Napi::Object& o, const char* key, const std::string& dflt = "");
int64_t OptInt(const Napi::Object& o, const char* key, int64_t dflt, int64_t lo, int64_t hi);
Napi::Error FailureError(Napi::Env env, const Failure& f);

}  // namespace nl
}  // namespace braid
