// Errors and argument helpers (see common.h).
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

namespace tapir {

void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* subject) {
  // strerrorname_np (glibc >= 2.32) gives the symbolic name Node uses for `code`.
  const char* name = strerrorname_np(err);
  char code[32];
  if (name != nullptr) {
    snprintf(code, sizeof code, "%s", name);
  } else {
    snprintf(code, sizeof code, "E%d", err);
  }
  char message[512];
  if (subject != nullptr && subject[0] != '\0') {
    snprintf(message, sizeof message, "%s %s: %s (%s)", syscall, subject, strerror(err), code);
  } else {
    snprintf(message, sizeof message, "%s: %s (%s)", syscall, strerror(err), code);
  }
  auto* data = env.GetInstanceData<AddonData>();
  Napi::Object error;
  if (data != nullptr && !data->deviceError.IsEmpty()) {
    error = data->deviceError.New({Napi::String::New(env, message), Napi::Number::New(env, err),
                                   Napi::String::New(env, code), Napi::String::New(env, syscall)});
    if (env.IsExceptionPending()) return;
  } else {
    error = Napi::Error::New(env, message).Value();
    error.Set("errno", Napi::Number::New(env, err));
    error.Set("code", Napi::String::New(env, code));
    error.Set("syscall", Napi::String::New(env, syscall));
  }
  napi_throw(env, error);
}

void ThrowType(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

void ThrowRange(Napi::Env env, const char* message) {
  Napi::RangeError::New(env, message).ThrowAsJavaScriptException();
}

bool TypedArg(const Napi::CallbackInfo& info, size_t index, napi_typedarray_type type,
              const char* what, void** data, size_t* length) {
  // napi_get_typedarray_info itself refuses anything but a typed array; one call per
  // argument on the hot path.
  napi_typedarray_type actual;
  if (napi_get_typedarray_info(info.Env(), info[index], &actual, length, data, nullptr, nullptr) == napi_ok &&
      actual == type) {
    return true;
  }
  char message[128];
  snprintf(message, sizeof message, "%s must be a %s", what,
           type == napi_uint8_array ? "Uint8Array" : type == napi_int32_array ? "Int32Array"
           : type == napi_uint32_array ? "Uint32Array" : type == napi_uint16_array ? "Uint16Array"
           : "Float64Array");
  ThrowType(info.Env(), message);
  return false;
}

bool IntArg(const Napi::CallbackInfo& info, size_t index, int64_t min, int64_t max,
            const char* what, int64_t* out) {
  napi_value value = info[index];
  double d = 0;
  // The range test also rejects NaN and values a cast to int64_t cannot hold.
  if (napi_get_value_double(info.Env(), value, &d) != napi_ok || !(d >= -9.0e15 && d <= 9.0e15) ||
      d != static_cast<double>(static_cast<int64_t>(d))) {
    char message[128];
    snprintf(message, sizeof message, "%s must be an integer", what);
    ThrowType(info.Env(), message);
    return false;
  }
  int64_t v = static_cast<int64_t>(d);
  if (v < min || v > max) {
    char message[160];
    snprintf(message, sizeof message, "%s is %lld, outside [%lld, %lld]", what, static_cast<long long>(v),
             static_cast<long long>(min), static_cast<long long>(max));
    ThrowRange(info.Env(), message);
    return false;
  }
  *out = v;
  return true;
}

Napi::Value CountersToObject(Napi::Env env, const Counters& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("rxTruncated", c.rxTruncated);
  o.Set("txDroppedFull", c.txDroppedFull);
  o.Set("txErrors", c.txErrors);
  o.Set("lastTxErrno", c.lastTxErrno);
  return o;
}

}  // namespace tapir
