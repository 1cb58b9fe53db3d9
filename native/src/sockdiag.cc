// Who owns a local TCP socket, by its 4-tuple: one exact sock_diag request (inet_diag, not a dump),
// answered with the socket's inode and uid. Braid uses it to find which program opened a
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

#include "errors.h"

namespace braid {
namespace {

struct Endpoint {
  int family;
  unsigned char addr[16];
  uint16_t port;
};

Endpoint EndpointArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() <= i + 1 || !info[i].IsString() || !info[i + 1].IsNumber())
    throw Napi::TypeError::New(env, std::string("tcpSocketOwner(localAddress, localPort, remoteAddress, remotePort): ") + what + " needs an address string and a port");
  std::string a = info[i].As<Napi::String>().Utf8Value();
  double p = info[i + 1].As<Napi::Number>().DoubleValue();
  if (!(p >= 0 && p <= 65535) || p != static_cast<double>(static_cast<int>(p)))
    throw Napi::RangeError::New(env, std::string("tcpSocketOwner: ") + what + " port must be 0-65535");
  Endpoint e{};
  e.port = static_cast<uint16_t>(p);
  if (inet_pton(AF_INET, a.c_str(), e.addr) == 1) e.family = AF_INET;
  else if (inet_pton(AF_INET6, a.c_str(), e.addr) == 1) e.family = AF_INET6;
  else throw Napi::TypeError::New(env, std::string("tcpSocketOwner: ") + what + " address is not an IP address: " + a);
  return e;
}

}  // namespace

Napi::Value TcpSocketOwner(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Endpoint local = EndpointArg(info, 0, "the local end");
  Endpoint remote = EndpointArg(info, 2, "the remote end");
  if (local.family != remote.family) throw Napi::TypeError::New(env, "tcpSocketOwner: both ends must be of one address family");

  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;  // no NLM_F_DUMP: the kernel looks the one socket up
  msg.req.sdiag_family = static_cast<uint8_t>(local.family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0U;
  msg.req.id.idiag_sport = htons(local.port);
  msg.req.id.idiag_dport = htons(remote.port);
  std::memcpy(msg.req.id.idiag_src, local.addr, local.family == AF_INET ? 4 : 16);
  std::memcpy(msg.req.id.idiag_dst, remote.addr, remote.family == AF_INET ? 4 : 16);
  msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) throw ErrnoError(env, errno, "socket", "NETLINK_SOCK_DIAG");
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, "sendto", "SOCK_DIAG_BY_FAMILY");
  }
  alignas(nlmsghdr) char buf[8192];
  ssize_t n;
  do n = recv(fd, buf, sizeof(buf), 0);
  while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) throw ErrnoError(env, err, "recv", "SOCK_DIAG_BY_FAMILY");
  for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      int e = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
      if (e == ENOENT) return env.Null();  // no such socket (closed, or not on this host)
      throw ErrnoError(env, e, "sock_diag", "SOCK_DIAG_BY_FAMILY");
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
    auto* m = reinterpret_cast<inet_diag_msg*>(NLMSG_DATA(h));
    Napi::Object out = Napi::Object::New(env);
    out.Set("inode", Napi::Number::New(env, m->idiag_inode));
    out.Set("uid", Napi::Number::New(env, m->idiag_uid));
    out.Set("state", Napi::Number::New(env, m->idiag_state));
    return out;
  }
  return env.Null();
}

}  // namespace braid
