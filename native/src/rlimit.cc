// The process's open-file limit (RLIMIT_NOFILE). Node has no API for getrlimit/setrlimit, and a
// proxy holds two descriptors per connection: Braid raises its soft limit to the hard one at start
// (as Go's runtime does) and sizes its connection limit from the result (electron/core/fd-limit.ts).
//
//   nofileLimit()      -> { soft, hard }         (Infinity for RLIM_INFINITY)
//   nofileLimit(soft)  -> { soft, hard } after setting the soft limit (0 <= soft <= hard)
#include <napi.h>

#include <cerrno>
#include <cmath>

#include "errors.h"

#ifndef _WIN32
#include <sys/resource.h>
#endif

namespace braid {

#ifndef _WIN32
namespace {

Napi::Number LimitValue(Napi::Env env, rlim_t v) {
  return Napi::Number::New(env, v == RLIM_INFINITY ? INFINITY : static_cast<double>(v));
}

Napi::Object LimitObject(Napi::Env env, const rlimit& rl) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("soft", LimitValue(env, rl.rlim_cur));
  out.Set("hard", LimitValue(env, rl.rlim_max));
  return out;
}

}  // namespace

Napi::Value NofileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) throw ErrnoError(env, errno, "getrlimit", "RLIMIT_NOFILE");
  if (info.Length() < 1 || info[0].IsUndefined()) return LimitObject(env, rl);

  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "nofileLimit(soft): soft must be a number");
  double want = info[0].As<Napi::Number>().DoubleValue();
  if (std::isnan(want) || want < 0 || (std::isfinite(want) && want != std::floor(want))) {
    throw Napi::RangeError::New(env, "nofileLimit(soft): soft must be a non-negative integer or Infinity");
  }
  rlim_t soft = std::isinf(want) ? RLIM_INFINITY : static_cast<rlim_t>(want);
  // Checked here rather than left to the kernel's EINVAL, so that the message says which bound.
  if (rl.rlim_max != RLIM_INFINITY && (soft == RLIM_INFINITY || soft > rl.rlim_max)) {
    throw Napi::RangeError::New(env, "nofileLimit(soft): soft must not exceed the hard limit " + std::to_string(rl.rlim_max));
  }
  rl.rlim_cur = soft;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) throw ErrnoError(env, errno, "setrlimit", "RLIMIT_NOFILE");
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) throw ErrnoError(env, errno, "getrlimit", "RLIMIT_NOFILE");
  return LimitObject(env, rl);
}
#else
Napi::Value NofileLimit(const Napi::CallbackInfo& info) {
  Napi::Error e = Napi::Error::New(info.Env(), "getrlimit/setrlimit do not exist on Windows");
  e.Set("code", Napi::String::New(info.Env(), "ENOTSUP"));
  throw e;
}
#endif

}  // namespace braid
