#pragma once
#include <napi.h>

namespace braid {

// spliceStart / spliceStats / spliceStop (splice.cc): a plain tunnel moved by the kernel.
void RegisterSplice(Napi::Env env, Napi::Object exports);

}  // namespace braid
