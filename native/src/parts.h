#pragma once
#include <napi.h>
namespace tapir {
Napi::Function DefineTunHandle(Napi::Env env);
Napi::Function DefineUdpHandle(Napi::Env env);
void DefineNetlink(Napi::Env env, Napi::Object exports);
}  // namespace tapir
