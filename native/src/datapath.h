#pragma once
#include <napi.h>

namespace braid {

// The byte path's kernel knobs (datapath.cc): receive-buffer sizing and the splice pump.
void RegisterDatapath(Napi::Env env, Napi::Object exports);

}  // namespace braid
