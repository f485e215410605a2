// Entry point of tapir_native.node. Exports:
//   init({ DeviceError })   the error class native failures are created with
//   TunHandle, UdpHandle    classes wrapped by src/device/tun.ts and udp.ts
//   linkIndex, moveLinkToNetns
//   mapSharedFile           memory that outlives the process (flow tables)
//   setBusyPoll             busy polling after readiness callbacks (readiness.h)
//   trimMalloc              the C heap's free pages back to the system
//   H2Session               an HTTP/2 server connection's framing on nghttp2 (the Ingress proxy)
//   H1Io                    the Ingress proxy's plain HTTP/1.1 sockets, parsed by node's llhttp
#include "common.h"
#include "parts.h"

namespace tapir {

namespace {

Napi::Value Init(const Napi::CallbackInfo& info) {
  auto* data = info.Env().GetInstanceData<AddonData>();
  if (info[0].IsObject()) {
    Napi::Value ctor = info[0].As<Napi::Object>().Get("DeviceError");
    if (ctor.IsFunction()) data->deviceError = Napi::Persistent(ctor.As<Napi::Function>());
  }
  return info.Env().Undefined();
}

}  // namespace

Napi::Object Register(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  exports.Set("init", Napi::Function::New<Init>(env, "init"));
  Napi::Function tun = DefineTunHandle(env);
  data->tunHandle = Napi::Persistent(tun);
  exports.Set("TunHandle", tun);
  Napi::Function udp = DefineUdpHandle(env);
  data->udpHandle = Napi::Persistent(udp);
  exports.Set("UdpHandle", udp);
  DefineNetlink(env, exports);
  DefineSharedMemory(env, exports);
  DefineReadiness(env, exports);
  DefineMallocTrim(env, exports);
  exports.Set("H2Session", DefineH2Session(env));
  DefineH1Io(env, exports);
  return exports;
}

}  // namespace tapir

// The macro pastes the function's name into an identifier, so it needs a plain name.
static Napi::Object RegisterTapir(Napi::Env env, Napi::Object exports) { return tapir::Register(env, exports); }

NODE_API_MODULE(tapir_native, RegisterTapir)
