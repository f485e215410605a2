// What each part of the addon registers on the module's exports (see addon.cc).
#pragma once
#include <napi.h>
namespace tapir {
Napi::Function DefineTunHandle(Napi::Env env);   // tun.cc
Napi::Function DefineUdpHandle(Napi::Env env);   // udp.cc
void DefineNetlink(Napi::Env env, Napi::Object exports);  // netlink.cc: linkIndex, moveLinkToNetns
void DefineSharedMemory(Napi::Env env, Napi::Object exports);  // shared-memory.cc: mapSharedFile
void DefineReadiness(Napi::Env env, Napi::Object exports);  // readiness.cc: setBusyPoll
void DefineMallocTrim(Napi::Env env, Napi::Object exports);  // malloc-trim.cc: trimMalloc
Napi::Function DefineH2Session(Napi::Env env);  // h2-session.cc: the Ingress proxy's HTTP/2 framing
void DefineH1Io(Napi::Env env, Napi::Object exports);  // h1-io.cc: H1Io, the Ingress proxy's HTTP/1.1 sockets
}  // namespace tapir
