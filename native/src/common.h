// Shared by every part of the addon: per-environment data, errno errors shaped like
// Node's own (errno, code, syscall), and argument helpers that fetch a typed array's
// pointer once per call so the hot loops in C never go back to JS.
#pragma once

#include <napi.h>
#include <stddef.h>
#include <stdint.h>

namespace tapir {

// One per Node environment (main thread or worker), set with napi_set_instance_data.
struct AddonData {
  Napi::FunctionReference deviceError;  // src/device/errors.ts DeviceError, set by init()
  Napi::FunctionReference tunHandle;
  Napi::FunctionReference udpHandle;
};

// Throws a DeviceError (or a plain Error before init()) with errno, code ('ENOENT'),
// syscall, and a message naming what was being done to which object. Callers return
// right after it: C++ exceptions are off, the exception is pending in the engine.
void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* subject);

// A TypeError for a programmer mistake (wrong argument type, offsets outside the slab).
void ThrowType(Napi::Env env, const char* message);
void ThrowRange(Napi::Env env, const char* message);

// Reads typed-array argument `index`: its data pointer (already adjusted by the view's
// byteOffset) and element count. False (with a TypeError pending) when it is missing
// or of another element type.
bool TypedArg(const Napi::CallbackInfo& info, size_t index, napi_typedarray_type type,
              const char* what, void** data, size_t* length);

// Reads an integer argument that must lie in [min, max].
bool IntArg(const Napi::CallbackInfo& info, size_t index, int64_t min, int64_t max,
            const char* what, int64_t* out);

// Event counters kept per device; layout shared with src/device/types.ts (DeviceStats).
struct Counters {
  double rxTruncated = 0;  // frames longer than the slot (capacity = slotSize - headroom)
  double txDroppedFull = 0;  // frames dropped because the kernel queue was full (EAGAIN)
  double txErrors = 0;  // frames the kernel refused (EINVAL, EMSGSIZE, ENETUNREACH, ...)
  double lastTxErrno = 0;  // errno of the most recent refused frame
};
Napi::Value CountersToObject(Napi::Env env, const Counters& c);

}  // namespace tapir
