#include "errors.h"

#include <uv.h>
#include <cstring>

namespace braid {

const char* ErrnoName(int err) {
  // libuv error codes are negated errnos on Unix, and uv_err_name knows every name Node uses.
  return uv_err_name(-err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  std::string msg = std::string(syscall) + " " + ErrnoName(err);
  if (!detail.empty()) msg += " " + detail;
  msg += std::string(" (") + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

}  // namespace braid
