// Who owns a local TCP socket, by its 4-tuple: one exact sock_diag request (inet_diag, not a dump),
// answered with the socket's inode and uid; and the abort of one (SOCK_DESTROY: a reset to the peer,
// which drops what it had queued on it; the path manager's use, userspace-pm.ts). Braid uses it to find which program opened a
// connection: the client's socket on this host. Reading /proc/net/tcp for the same answer costs a
// parse of every socket of the host per lookup, megabytes under thousands of connections.
#include "tcpstate.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "diag_request.h"
#include "errors.h"

namespace braid {
namespace {

struct Endpoint {
  int family;
  unsigned char addr[16];
  uint16_t port;
};

Endpoint EndpointArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() <= i + 1 || !info[i].IsString() || !info[i + 1].IsNumber())
    throw Napi::TypeError::New(env, std::string(fn) + "(localAddress, localPort, remoteAddress, remotePort): " + what + " needs an address string and a port");
  std::string a = info[i].As<Napi::String>().Utf8Value();
  double p = info[i + 1].As<Napi::Number>().DoubleValue();
  if (!(p >= 0 && p <= 65535) || p != static_cast<double>(static_cast<int>(p)))
    throw Napi::RangeError::New(env, std::string(fn) + ": " + what + " port must be 0-65535");
  Endpoint e{};
  e.port = static_cast<uint16_t>(p);
  if (inet_pton(AF_INET, a.c_str(), e.addr) == 1) e.family = AF_INET;
  else if (inet_pton(AF_INET6, a.c_str(), e.addr) == 1) e.family = AF_INET6;
  else throw Napi::TypeError::New(env, std::string(fn) + ": " + what + " address is not an IP address: " + a);
  return e;
}

struct Exact {
  int error = 0;        // from the kernel's NLMSG_ERROR (ENOENT: no such socket); 0: none, or an ack
  bool found = false;   // a SOCK_DIAG_BY_FAMILY answer came (then msg holds it)
  inet_diag_msg msg{};
};

// One exact request (not a dump) about the TCP socket with this 4-tuple: `type` is
// SOCK_DIAG_BY_FAMILY (what is it) or SOCK_DESTROY (abort it).
Exact ExactRequest(const Napi::CallbackInfo& info, const char* fn, uint16_t type) {
  Napi::Env env = info.Env();
  Endpoint local = EndpointArg(info, 0, fn, "the local end");
  Endpoint remote = EndpointArg(info, 2, fn, "the remote end");
  if (local.family != remote.family) throw Napi::TypeError::New(env, std::string(fn) + ": both ends must be of one address family");
  const char* what = type == SOCK_DESTROY ? "SOCK_DESTROY" : "SOCK_DIAG_BY_FAMILY";

  // A socket bound to a device (a subflow Braid opened on a path) is found only with its ifindex.
  uint32_t ifindex = 0;
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    double i = info[4].IsNumber() ? info[4].As<Napi::Number>().DoubleValue() : -1;
    if (!(i >= 0 && i <= 2147483647) || i != static_cast<double>(static_cast<int64_t>(i)))
      throw Napi::RangeError::New(env, std::string(fn) + ": ifindex must be a non-negative integer");
    ifindex = static_cast<uint32_t>(i);
  }
  // no NLM_F_DUMP: the kernel looks the one socket up; a destroy answers only with an ack
  DiagRequest msg = ExactDiagRequest(type, type == SOCK_DESTROY ? NLM_F_ACK : 0, static_cast<uint8_t>(local.family),
                                     htons(local.port), htons(remote.port), local.addr, remote.addr, ifindex);

  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) throw ErrnoError(env, errno, "socket", "NETLINK_SOCK_DIAG");
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, "sendto", what);
  }
  alignas(nlmsghdr) char buf[8192];
  ssize_t n;
  do n = recv(fd, buf, sizeof(buf), 0);
  while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) throw ErrnoError(env, err, "recv", what);
  Exact out;
  for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      out.error = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
      return out;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
    out.found = true;
    std::memcpy(&out.msg, NLMSG_DATA(h), sizeof(out.msg));
    return out;
  }
  return out;
}

}  // namespace

Napi::Value TcpSocketOwner(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Exact r = ExactRequest(info, "tcpSocketOwner", SOCK_DIAG_BY_FAMILY);
  if (r.error == ENOENT) return env.Null();  // no such socket (closed, or not on this host)
  if (r.error) throw ErrnoError(env, r.error, "sock_diag", "SOCK_DIAG_BY_FAMILY");
  if (!r.found) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("inode", Napi::Number::New(env, r.msg.idiag_inode));
  out.Set("uid", Napi::Number::New(env, r.msg.idiag_uid));
  out.Set("state", Napi::Number::New(env, r.msg.idiag_state));
  return out;
}

Napi::Value TcpSocketAbort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Exact r = ExactRequest(info, "tcpSocketAbort", SOCK_DESTROY);
  if (r.error == ENOENT) return Napi::Boolean::New(env, false);  // already gone
  if (r.error) throw ErrnoError(env, r.error, "sock_diag", "SOCK_DESTROY");
  return Napi::Boolean::New(env, true);
}

}  // namespace braid
