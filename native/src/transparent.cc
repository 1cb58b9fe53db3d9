// What transparent mode needs from the kernel beyond sockets: the destination a connection had
// before nftables redirected it to Braid (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST, from conntrack),
// and who is at the other end of a local Unix socket (SO_PEERCRED), for the privileged helper.
#include "transparent.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>

#include "errors.h"

// linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h: both are 80, at SOL_IP / SOL_IPV6.
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace braid {
namespace {

int FdArg(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(fn) + "(fd) needs a file descriptor number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647.0) || d != static_cast<int>(d)) throw Napi::RangeError::New(info.Env(), std::string(fn) + "(fd): not a file descriptor");
  return static_cast<int>(d);
}

}  // namespace

Napi::Value OriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, "originalDst");
  sockaddr_storage local{};
  socklen_t llen = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) != 0) throw ErrnoError(env, errno, "getsockname");
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  char text[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  // An IPv4 connection accepted on an IPv6 socket is a mapped address; conntrack knows it as IPv4.
  bool v6 = local.ss_family == AF_INET6 &&
            !IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
  if (v6) {
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len) != 0) throw ErrnoError(env, errno, "getsockopt", "IP6T_SO_ORIGINAL_DST");
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    port = ntohs(a->sin6_port);
  } else {
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) != 0) throw ErrnoError(env, errno, "getsockopt", "SO_ORIGINAL_DST");
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    port = ntohs(a->sin_port);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("address", Napi::String::New(env, text));
  out.Set("port", Napi::Number::New(env, port));
  out.Set("family", Napi::Number::New(env, v6 ? 6 : 4));
  return out;
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, "peerCred");
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) throw ErrnoError(env, errno, "getsockopt", "SO_PEERCRED");
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

}  // namespace braid
