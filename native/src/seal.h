#pragma once
#include <napi.h>

namespace braid {

// sealAvailable / sealStart / sealStats / sealStop / sealRecords / sealDerive (seal.cc): the relay
// client's upload direction sealed as TLS 1.3 records by the addon.
void RegisterSeal(Napi::Env env, Napi::Object exports);

}  // namespace braid
