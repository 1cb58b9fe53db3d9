#include "errors.h"

#include <uv.h>
#include <cstring>

namespace braid {

const char* ErrnoName(int err) {
  // libuv error codes are negated errnos on Unix, and uv_err_name knows every name Node uses; the
  // C library names the rest (EBADMSG, ...), where it can.
  const char* name = uv_err_name(-err);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (strncmp(name, "Unknown", 7) == 0) {
    const char* c = strerrorname_np(err);
    if (c) return c;
  }
#endif
  return name;
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
