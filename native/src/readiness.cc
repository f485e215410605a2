// uv_poll readiness (see readiness.h).
#include "readiness.h"

#include "common.h"

namespace tapir {

Readiness::~Readiness() { Close(); }

bool Readiness::SetCallback(Napi::Env env, int fd, Napi::Function callback) {
  if (handle_ == nullptr) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowType(env, "no libuv event loop in this environment");
      return false;
    }
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, fd);
    if (rc < 0) {
      delete handle_;
      handle_ = nullptr;
      ThrowErrno(env, -rc, "uv_poll_init", nullptr);
      return false;
    }
    handle_->data = this;
    env_ = env;
    // One async context for the handle's life: async_hooks (and AsyncLocalStorage) see
    // every readiness callback as coming from this resource.
    napi_value resourceName = Napi::String::New(env, "TapirReadiness");
    napi_async_init(env, nullptr, resourceName, &asyncContext_);
  }
  callback_ = Napi::Persistent(callback);
  return paused_ ? true : Start(env);
}

bool Readiness::Start(Napi::Env env) {
  if (handle_ == nullptr || active_) return true;
  int rc = uv_poll_start(handle_, UV_READABLE, OnPoll);
  if (rc < 0) {
    ThrowErrno(env, -rc, "uv_poll_start", nullptr);
    return false;
  }
  active_ = true;
  return true;
}

bool Readiness::Pause(Napi::Env) {
  paused_ = true;
  if (handle_ != nullptr && active_) uv_poll_stop(handle_);
  active_ = false;
  return true;
}

bool Readiness::Resume(Napi::Env env) {
  paused_ = false;
  return Start(env);
}

void Readiness::Close() {
  if (handle_ != nullptr) {
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), OnClosed);
    handle_ = nullptr;
  }
  active_ = false;
  if (asyncContext_ != nullptr) {
    napi_async_destroy(env_, asyncContext_);
    asyncContext_ = nullptr;
  }
  if (!callback_.IsEmpty()) callback_.Reset();
}

void Readiness::OnClosed(uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); }

void Readiness::OnPoll(uv_poll_t* handle, int /*status*/, int /*events*/) {
  // An error status (e.g. the device vanished) also calls back: the next read reports
  // the errno as a DeviceError where the caller can see it.
  auto* self = static_cast<Readiness*>(handle->data);
  if (self == nullptr || self->callback_.IsEmpty()) return;
  Napi::Env env(self->env_);
  Napi::HandleScope scope(env);
  napi_value result;
  napi_value global;
  napi_get_global(env, &global);
  // napi_make_callback runs queued microtasks and process.nextTick work afterwards,
  // as any I/O callback in Node does.
  napi_status st = napi_make_callback(env, self->asyncContext_, global, self->callback_.Value(), 0, nullptr, &result);
  if (st == napi_pending_exception || env.IsExceptionPending()) {
    // A throwing handler is an uncaught exception, as in any event emitter callback.
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
}

}  // namespace tapir
