#pragma once
#include <napi.h>

namespace braid {

Napi::Value Supported(const Napi::CallbackInfo& info);
Napi::Value Listen(const Napi::CallbackInfo& info);
Napi::Value Connect(const Napi::CallbackInfo& info);
Napi::Value Close(const Napi::CallbackInfo& info);
Napi::Value Info(const Napi::CallbackInfo& info);
// rlimit.cc: the open-file limit, on every platform but Windows
Napi::Value NofileLimit(const Napi::CallbackInfo& info);

}  // namespace braid
