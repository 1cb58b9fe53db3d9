#include "netlink.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "errors.h"
#include "netlink_uapi.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace braid {
namespace nl {

namespace {
constexpr size_t Align(size_t n) { return (n + 3) & ~size_t(3); }
}  // namespace

// ---- Message ----

Message::Message(uint16_t type, uint16_t flags) {
  buf_.resize(NLMSG_HDRLEN);
  nlmsghdr* h = header();
  h->nlmsg_len = NLMSG_HDRLEN;
  h->nlmsg_type = type;
  h->nlmsg_flags = flags;
}

void Message::Append(const void* p, size_t n) {
  size_t at = buf_.size();
  buf_.resize(at + Align(n), 0);
  if (n) std::memcpy(buf_.data() + at, p, n);
  header()->nlmsg_len = static_cast<uint32_t>(buf_.size());
}

void Message::Put(uint16_t type, const void* data, size_t len) {
  nlattr a{};
  a.nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
  a.nla_type = type;
  Append(&a, sizeof(a));
  Append(data, len);
}

size_t Message::BeginNest(uint16_t type) {
  size_t at = buf_.size();
  nlattr a{};
  a.nla_type = type | NLA_F_NESTED;
  Append(&a, sizeof(a));
  return at;
}

void Message::EndNest(size_t at) {
  reinterpret_cast<nlattr*>(buf_.data() + at)->nla_len = static_cast<uint16_t>(buf_.size() - at);
}

// ---- attributes ----

uint64_t Attr::Uint() const {
  switch (len) {
    case 1: return data[0];
    case 2: { uint16_t v; std::memcpy(&v, data, 2); return v; }
    case 4: { uint32_t v; std::memcpy(&v, data, 4); return v; }
    case 8: { uint64_t v; std::memcpy(&v, data, 8); return v; }
    default: return 0;
  }
}

uint16_t Attr::Be16() const {
  if (len < 2) return 0;
  uint16_t v;
  std::memcpy(&v, data, 2);
  return ntohs(v);
}

std::string Attr::Str() const {
  size_t n = strnlen(reinterpret_cast<const char*>(data), len);
  return std::string(reinterpret_cast<const char*>(data), n);
}

void ForEachAttr(const uint8_t* p, size_t len, const std::function<void(const Attr&)>& fn) {
  while (len >= NLA_HDRLEN) {
    nlattr a;
    std::memcpy(&a, p, sizeof(a));
    if (a.nla_len < NLA_HDRLEN || a.nla_len > len) return;
    Attr at;
    at.type = a.nla_type & NLA_TYPE_MASK;
    at.data = p + NLA_HDRLEN;
    at.len = a.nla_len - NLA_HDRLEN;
    fn(at);
    size_t step = Align(a.nla_len);
    if (step >= len) return;
    p += step;
    len -= step;
  }
}

void ForEachAttr(const nlmsghdr* h, size_t hdr, const std::function<void(const Attr&)>& fn) {
  size_t start = NLMSG_HDRLEN + Align(hdr);
  if (h->nlmsg_len < start) return;
  ForEachAttr(reinterpret_cast<const uint8_t*>(h) + start, h->nlmsg_len - start, fn);
}

std::string AddrToString(const uint8_t* p, size_t len) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (len == 4) return inet_ntop(AF_INET, p, buf, sizeof(buf)) ? buf : "";
  if (len == 16) return inet_ntop(AF_INET6, p, buf, sizeof(buf)) ? buf : "";
  return "";
}

int ParseAddr(const std::string& text, uint8_t out[16]) {
  if (inet_pton(AF_INET, text.c_str(), out) == 1) return 4;
  if (inet_pton(AF_INET6, text.c_str(), out) == 1) return 6;
  return 0;
}

std::string ExtackMessage(const nlmsghdr* h) {
  if (!(h->nlmsg_flags & nlx::kFlagAckTlvs)) return "";
  const uint8_t* base = reinterpret_cast<const uint8_t*>(h);
  size_t off = NLMSG_HDRLEN;
  if (h->nlmsg_type == NLMSG_ERROR) {
    if (h->nlmsg_len < off + sizeof(nlmsgerr)) return "";
    nlmsgerr e;
    std::memcpy(&e, base + off, sizeof(e));
    off += sizeof(nlmsgerr);
    // Without NETLINK_CAP_ACK the whole request is echoed before the TLVs.
    if (!(h->nlmsg_flags & nlx::kFlagCapped) && e.msg.nlmsg_len > NLMSG_HDRLEN) off += Align(e.msg.nlmsg_len - NLMSG_HDRLEN);
  } else {
    off += sizeof(int);
  }
  if (h->nlmsg_len <= off) return "";
  std::string msg;
  ForEachAttr(base + off, h->nlmsg_len - off, [&](const Attr& a) {
    if (a.type == nlx::kErrAttrMsg) msg = a.Str();
  });
  return msg;
}

// ---- Socket ----

Socket::~Socket() {
  if (fd_ >= 0) close(fd_);
}

Failure Socket::Open(int protocol, int timeout_ms) {
  timeout_ms_ = timeout_ms;
  fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd_ < 0) return {errno, "socket", "AF_NETLINK"};
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) return {errno, "bind", "AF_NETLINK"};
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) return {errno, "setsockopt", "SO_RCVTIMEO"};
  // Best effort: older kernels lack them, and then errors just come without the kernel's text.
  int one = 1;
  setsockopt(fd_, SOL_NETLINK, nlx::kNetlinkExtAck, &one, sizeof(one));
  setsockopt(fd_, SOL_NETLINK, nlx::kNetlinkCapAck, &one, sizeof(one));
  // Sequence numbers only have to be unique per socket; starting from the clock makes a reply
  // meant for an earlier socket that reused this port id (it cannot, but cheaply) unmistakable.
  seq_ = static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  rx_.resize(64 * 1024);
  return {};
}

Failure Socket::Request(Message& msg, const std::function<void(const nlmsghdr*)>& on_reply, const char* what) {
  nlmsghdr* h = msg.header();
  bool dump = (h->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
  h->nlmsg_flags |= NLM_F_REQUEST | (dump ? 0 : NLM_F_ACK);
  h->nlmsg_seq = ++seq_;
  h->nlmsg_pid = 0;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd_, h, msg.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return {errno, "sendto", what};

  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  bool interrupted = false;
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline) return {ETIMEDOUT, "recv", what};
    sockaddr_nl from{};
    socklen_t fromlen = sizeof(from);
    // Peek first so that a reply larger than the buffer grows it instead of being truncated.
    ssize_t n = recvfrom(fd_, rx_.data(), rx_.size(), MSG_PEEK | MSG_TRUNC, reinterpret_cast<sockaddr*>(&from), &fromlen);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {ETIMEDOUT, "recv", std::string(what) + ": no answer from the kernel"};
      return {errno, "recv", what};
    }
    if (static_cast<size_t>(n) > rx_.size()) rx_.resize(static_cast<size_t>(n));
    n = recvfrom(fd_, rx_.data(), rx_.size(), 0, reinterpret_cast<sockaddr*>(&from), &fromlen);
    if (n < 0) {
      if (errno == EINTR) continue;
      return {errno, "recv", what};
    }
    if (from.nl_pid != 0) continue;  // only the kernel answers requests

    size_t left = static_cast<size_t>(n);
    for (auto* m = reinterpret_cast<nlmsghdr*>(rx_.data()); NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
      if (m->nlmsg_seq != h->nlmsg_seq) continue;  // a late answer to an earlier request
      if (m->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
      if (m->nlmsg_type == NLMSG_NOOP) continue;
      if (m->nlmsg_type == NLMSG_ERROR) {
        if (m->nlmsg_len < NLMSG_LENGTH(sizeof(int))) return {EPROTO, "recv", std::string(what) + ": short NLMSG_ERROR"};
        int code;
        std::memcpy(&code, NLMSG_DATA(m), sizeof(code));
        if (code == 0) return {};  // the ack
        return {-code, what, ExtackMessage(m)};
      }
      if (m->nlmsg_type == NLMSG_DONE) {
        int code = 0;
        if (m->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) std::memcpy(&code, NLMSG_DATA(m), sizeof(code));
        if (code < 0) return {-code, what, ExtackMessage(m)};
        // A table that changed while being dumped was read inconsistently; callers retry.
        if (interrupted) return {EAGAIN, what, "dump interrupted by a concurrent change"};
        return {};
      }
      on_reply(m);
    }
  }
}

// ---- JS helpers ----

Napi::Error ArgError(Napi::Env env, const std::string& msg, bool type_error) {
  Napi::Error e = type_error ? Napi::Error(Napi::TypeError::New(env, msg)) : Napi::Error(Napi::RangeError::New(env, msg));
  e.Set("code", Napi::String::New(env, type_error ? "ERR_INVALID_ARG_TYPE" : "ERR_INVALID_ARG_VALUE"));
  return e;
}

bool Has(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

std::string OptString(const Napi::Object& o, const char* key, const std::string& dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsString()) throw ArgError(o.Env(), std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

int64_t OptInt(const Napi::Object& o, const char* key, int64_t dflt, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw ArgError(o.Env(), std::string("option '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw ArgError(o.Env(), std::string("option '") + key + "' must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi), false);
  }
  return static_cast<int64_t>(d);
}

Napi::Error FailureError(Napi::Env env, const Failure& f) {
  return ErrnoError(env, f.err, f.syscall.c_str(), f.detail);
}

}  // namespace nl
}  // namespace braid
