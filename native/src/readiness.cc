// uv_poll readiness (see readiness.h).
#include "readiness.h"

#include "common.h"

namespace tapir {

// The uv handle and its teardown hook. libuv finishes closing a handle on a later loop
// turn, by calling a function of this addon; when a worker exits, Node unloads the
// addon after its environment is gone, so a close still pending then would call into
// unmapped code. An async cleanup hook (N-API 8) makes Node wait: the handle is closed
// at teardown and the hook is released only from the close callback.
struct PollHandle {
  uv_poll_t poll;
  Readiness* owner;  // null once the Readiness has let go
  napi_async_cleanup_hook_handle hook = nullptr;

  static void OnClosed(uv_handle_t* handle) {
    auto* self = reinterpret_cast<PollHandle*>(handle);  // poll is the first member
    if (self->hook != nullptr) napi_remove_async_cleanup_hook(self->hook);
    delete self;
  }

  static void OnEnvTeardown(napi_async_cleanup_hook_handle, void* arg) {
    auto* self = static_cast<PollHandle*>(arg);
    if (self->owner != nullptr) {
      self->owner->Close();  // closes this handle; OnClosed completes the hook
    }
    // Otherwise the close is already under way and OnClosed completes the hook.
  }

  void BeginClose() {
    owner = nullptr;
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&poll))) uv_close(reinterpret_cast<uv_handle_t*>(&poll), OnClosed);
  }
};

Readiness::~Readiness() { Close(); }

bool Readiness::SetCallback(Napi::Env env, int fd, Napi::Function callback) {
  if (handle_ == nullptr) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowType(env, "no libuv event loop in this environment");
      return false;
    }
    auto* handle = new PollHandle();
    int rc = uv_poll_init(loop, &handle->poll, fd);
    if (rc < 0) {
      delete handle;
      ThrowErrno(env, -rc, "uv_poll_init", nullptr);
      return false;
    }
    handle->owner = this;
    handle->poll.data = handle;
    napi_add_async_cleanup_hook(env, PollHandle::OnEnvTeardown, handle, &handle->hook);
    handle_ = handle;
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
  int rc = uv_poll_start(&handle_->poll, UV_READABLE, OnPoll);
  if (rc < 0) {
    ThrowErrno(env, -rc, "uv_poll_start", nullptr);
    return false;
  }
  active_ = true;
  return true;
}

bool Readiness::Pause(Napi::Env) {
  paused_ = true;
  if (handle_ != nullptr && active_) uv_poll_stop(&handle_->poll);
  active_ = false;
  return true;
}

bool Readiness::Resume(Napi::Env env) {
  paused_ = false;
  return Start(env);
}

void Readiness::Close() {
  if (handle_ != nullptr) {
    handle_->BeginClose();
    handle_ = nullptr;
  }
  active_ = false;
  if (asyncContext_ != nullptr) {
    napi_async_destroy(env_, asyncContext_);
    asyncContext_ = nullptr;
  }
  if (!callback_.IsEmpty()) callback_.Reset();
}

void Readiness::OnPoll(uv_poll_t* poll, int /*status*/, int /*events*/) {
  // An error status (e.g. the device vanished) also calls back: the next read reports
  // the errno as a DeviceError where the caller can see it.
  Readiness* self = static_cast<PollHandle*>(poll->data)->owner;
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
