// The kernel's userspace path manager (net.mptcp.path_manager = userspace): subflows of one MPTCP
// connection, named by its token, created, destroyed or flagged backup. These commands act only
// on connections that were created while the userspace path manager was selected in this network
// namespace (the kernel answers EINVAL "userspace PM not selected" otherwise), and need
// CAP_NET_ADMIN. Subflow creation is asynchronous: the answer says the SYN left; the outcome comes
// as a sub_established or sub_closed event.
#include "netlink_api.h"

#include <net/if.h>

#include <cstring>
#include <string>

#include "errors.h"
#include "netlink.h"
#include "netlink_uapi.h"
#include "pm_session.h"

namespace braid {
namespace {

struct Side {
  int family = 0;
  uint8_t addr[16] = {0};
  std::string text;
  int port = 0;
};

Napi::Object Options(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsObject()) throw nl::ArgError(info.Env(), std::string(fn) + "(options) needs an options object");
  return info[0].As<Napi::Object>();
}

uint32_t Token(const Napi::Object& o, const char* fn) {
  if (!nl::Has(o, "token")) throw nl::ArgError(o.Env(), std::string(fn) + " needs 'token' (the connection's MPTCP token)");
  return static_cast<uint32_t>(nl::OptInt(o, "token", 0, 1, 0xffffffffLL));
}

// `prefix`Address (required) and `prefix`Port (required when port_needed, else optional).
Side ParseSide(const Napi::Object& o, const char* fn, const char* prefix, bool port_needed) {
  Side s;
  const std::string akey = std::string(prefix) + "Address";
  const std::string pkey = std::string(prefix) + "Port";
  s.text = nl::OptString(o, akey.c_str());
  s.family = nl::ParseAddr(s.text, s.addr);
  if (!s.family) throw nl::ArgError(o.Env(), std::string(fn) + ": option '" + akey + "' must be a numeric IPv4 or IPv6 address, got '" + s.text + "'", false);
  if (port_needed && !nl::Has(o, pkey.c_str())) throw nl::ArgError(o.Env(), std::string(fn) + " needs '" + pkey + "'");
  s.port = static_cast<int>(nl::OptInt(o, pkey.c_str(), 0, port_needed ? 1 : 0, 65535));
  return s;
}

std::string Pair(uint32_t token, const Side& l, const Side& r) {
  auto fmt = [](const Side& s) { return (s.family == 6 ? "[" + s.text + "]" : s.text) + (s.port ? ":" + std::to_string(s.port) : ""); };
  return "subflow " + fmt(l) + " -> " + fmt(r) + " of connection " + std::to_string(token);
}

}  // namespace

// pmSubflowCreate({token, localAddress, localId, ifindex?, backup?, remoteAddress, remotePort}):
// a new subflow from localAddress (bound to ifindex when given, flagged backup in its MP_JOIN
// when asked) to the peer. localId (1..255) must be the same for the same address on a connection.
Napi::Value PmSubflowCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "pmSubflowCreate";
  Napi::Object o = Options(info, fn);
  uint32_t token = Token(o, fn);
  Side local = ParseSide(o, fn, "local", false);
  Side remote = ParseSide(o, fn, "remote", true);
  if (!nl::Has(o, "localId")) throw nl::ArgError(env, "pmSubflowCreate needs 'localId' (1..255)");
  int id = static_cast<int>(nl::OptInt(o, "localId", 0, 1, 255));
  int ifindex = static_cast<int>(nl::OptInt(o, "ifindex", 0, 0, INT32_MAX));
  Napi::Value b = o.Get("backup");
  if (!b.IsUndefined() && !b.IsBoolean()) throw nl::ArgError(env, "pmSubflowCreate: option 'backup' must be true or false");
  bool backup = b.IsBoolean() && b.As<Napi::Boolean>().Value();
  if (local.family != remote.family) throw nl::ArgError(env, "pmSubflowCreate: local and remote addresses must be of the same family", false);

  PmSession s;
  OpenPmSession(env, &s);
  nl::Message msg = NewPmMessage(s.fam, pm::kCmdSubflowCreate, 0);
  msg.PutU32(pm::kAttrToken, token);
  PutPmAddress(msg, pm::kAttrAddr, id, local.family, local.addr, 0, backup ? pm::kAddrFlagBackup : 0, ifindex);
  PutPmAddress(msg, pm::kAttrAddrRemote, 0, remote.family, remote.addr, remote.port, -1, 0);
  if (nl::Failure f = s.sock.Request(msg, [](const nlmsghdr*) {}, "mptcp_pm.subflow_create")) throw PmFailure(env, f, "creating " + Pair(token, local, remote));
  return env.Undefined();
}

// pmSubflowDestroy({token, localAddress, localPort, remoteAddress, remotePort}).
Napi::Value PmSubflowDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "pmSubflowDestroy";
  Napi::Object o = Options(info, fn);
  uint32_t token = Token(o, fn);
  Side local = ParseSide(o, fn, "local", true);
  Side remote = ParseSide(o, fn, "remote", true);
  if (local.family != remote.family) throw nl::ArgError(env, "pmSubflowDestroy: local and remote addresses must be of the same family", false);

  PmSession s;
  OpenPmSession(env, &s);
  nl::Message msg = NewPmMessage(s.fam, pm::kCmdSubflowDestroy, 0);
  msg.PutU32(pm::kAttrToken, token);
  PutPmAddress(msg, pm::kAttrAddr, 0, local.family, local.addr, local.port, -1, 0);
  PutPmAddress(msg, pm::kAttrAddrRemote, 0, remote.family, remote.addr, remote.port, -1, 0);
  if (nl::Failure f = s.sock.Request(msg, [](const nlmsghdr*) {}, "mptcp_pm.subflow_destroy")) throw PmFailure(env, f, "destroying " + Pair(token, local, remote));
  return env.Undefined();
}

// pmSubflowPriority({token, localAddress, localPort?, remoteAddress, remotePort?, backup}): sends
// MP_PRIO on the matching subflow of that connection (SET_FLAGS with a token). Ports narrow the
// match when several subflows share the addresses.
Napi::Value PmSubflowPriority(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "pmSubflowPriority";
  Napi::Object o = Options(info, fn);
  uint32_t token = Token(o, fn);
  Side local = ParseSide(o, fn, "local", false);
  Side remote = ParseSide(o, fn, "remote", false);
  Napi::Value b = o.Get("backup");
  if (!b.IsBoolean()) throw nl::ArgError(env, "pmSubflowPriority needs 'backup' (true or false)");
  bool backup = b.As<Napi::Boolean>().Value();
  if (local.family != remote.family) throw nl::ArgError(env, "pmSubflowPriority: local and remote addresses must be of the same family", false);

  PmSession s;
  OpenPmSession(env, &s);
  nl::Message msg = NewPmMessage(s.fam, pm::kCmdSetFlags, 0);
  msg.PutU32(pm::kAttrToken, token);
  PutPmAddress(msg, pm::kAttrAddr, 0, local.family, local.addr, local.port, backup ? pm::kAddrFlagBackup : 0, 0);
  PutPmAddress(msg, pm::kAttrAddrRemote, 0, remote.family, remote.addr, remote.port, -1, 0);
  if (nl::Failure f = s.sock.Request(msg, [](const nlmsghdr*) {}, "mptcp_pm.set_flags")) throw PmFailure(env, f, std::string(backup ? "flagging backup " : "clearing backup of ") + Pair(token, local, remote));
  return env.Undefined();
}

}  // namespace braid
