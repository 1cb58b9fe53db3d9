#pragma once
// Argument checks shared by the addon's pumps (splice.cc, seal.cc); each error names the function.
#include <napi.h>

#include <cstdint>

namespace braid {

// info[i] as a file descriptor: a non-negative int, else "fn: what must be ..." (TypeError/RangeError).
int FdArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what);

// Throws an errno-named error (getsockopt, "SO_TYPE (fn needs stream sockets)") unless fd is a
// stream socket.
void RequireStreamSocket(Napi::Env env, int fd, const char* fn);

// info[0] as a pump id: a TypeError when it is not a number; false when it cannot name a pump.
bool IdArg(const Napi::CallbackInfo& info, const char* fn, uint32_t* id);

}  // namespace braid
