#pragma once
#include <napi.h>

namespace braid {

// openStart / openResume / openStats / openStop (open.cc): what the relay client receives over the
// relay connection, opened from TLS 1.3 records by the addon.
void RegisterOpen(Napi::Env env, Napi::Object exports);

}  // namespace braid
