#pragma once
#include <napi.h>
#include <string>

namespace braid {

// A JS Error shaped like Node's own system errors: code = errno name, errno (negative), syscall,
// and the address when there is one, so callers can switch on err.code.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail = "");
const char* ErrnoName(int err);

}  // namespace braid
