// Argument checks shared by the addon's pumps: see pump_args.h.
#include "pump_args.h"

#ifdef __linux__
#include <sys/socket.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace braid {

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(env, std::string(fn) + ": " + what + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647) || d != static_cast<double>(static_cast<int>(d))) throw Napi::RangeError::New(env, std::string(fn) + ": " + what + " must be a non-negative integer");
  return static_cast<int>(d);
}

void RequireStreamSocket(Napi::Env env, int fd, const char* fn) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM) return;
  int err = errno == 0 ? ENOTSOCK : errno;
  throw ErrnoError(env, err == ENOPROTOOPT ? ENOTSOCK : err, "getsockopt", std::string("SO_TYPE (") + fn + " needs stream sockets)");
}

bool IdArg(const Napi::CallbackInfo& info, const char* fn, uint32_t* id) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, std::string(fn) + ": id must be a number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) return false;
  *id = static_cast<uint32_t>(d);
  return true;
}

}  // namespace braid

#endif
