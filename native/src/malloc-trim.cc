// Giving the C heap's free memory back to the system:
//
//   trimMalloc() -> boolean   malloc_trim(0): true when memory was released
//
// After a large sync the agent's JavaScript heap is given back by a memory-reducing
// collection (src/control/heap-trim.ts), but what Node and V8 took from malloc while it
// ran (parsed API responses, strings in flight, compile scratch) stays with glibc's
// arenas: 27 MB of an agent's 316 MB RSS at 25,000 Services. glibc hands memory back by
// itself only from the top of the main arena; malloc_trim also releases the free pages
// inside every arena (madvise DONTNEED). Elsewhere than glibc it does nothing.
#include <features.h>  // defines __GLIBC__ under glibc
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "common.h"
#include "parts.h"

namespace tapir {

namespace {

Napi::Value TrimMalloc(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

}  // namespace

void DefineMallocTrim(Napi::Env env, Napi::Object exports) {
  exports.Set("trimMalloc", Napi::Function::New<TrimMalloc>(env, "trimMalloc"));
}

}  // namespace tapir
