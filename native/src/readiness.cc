// uv_poll readiness (see readiness.h).
#include "readiness.h"

#include <poll.h>
#include <time.h>

#include <algorithm>
#include <vector>

#include "common.h"

namespace tapir {

namespace {

// The watched fds of this thread (one Node environment), for busy polling.
struct BusyPoll {
  uint64_t idleNs = 0;  // 0: off
  bool spinning = false;
  uint64_t version = 0;  // changes whenever `members` does
  std::vector<Readiness*> members;
  // The poll set built from `members` at `builtVersion`.
  std::vector<pollfd> fds;
  std::vector<Readiness*> owners;
  uint64_t builtVersion = ~0ull;
  // Busy polls entered, and callbacks run from them (busyPollStats).
  double spins = 0;
  double callbacks = 0;
};
// Never destroyed: a handle may be closed during process exit, after thread-local
// destructors would have run.
BusyPoll& Busy() {
  thread_local BusyPoll* b = new BusyPoll();
  return *b;
}

// One busy poll holds the event loop (timers, other sockets) at most this long.
constexpr uint64_t kSpinMaxNs = 2'000'000;

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

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
    fd_ = fd;
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
  BusyPoll& busy = Busy();
  busy.members.push_back(this);
  busy.version++;
  return true;
}

void Readiness::Stop() {
  if (!active_) return;
  if (handle_ != nullptr) uv_poll_stop(&handle_->poll);
  active_ = false;
  BusyPoll& busy = Busy();
  busy.members.erase(std::remove(busy.members.begin(), busy.members.end(), this), busy.members.end());
  busy.version++;
}

bool Readiness::Pause(Napi::Env) {
  paused_ = true;
  Stop();
  return true;
}

bool Readiness::Resume(Napi::Env env) {
  paused_ = false;
  return Start(env);
}

void Readiness::Close() {
  Stop();
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

void Readiness::SetBusyPoll(uint32_t micros) { Busy().idleNs = static_cast<uint64_t>(micros) * 1000; }

void Readiness::OnPoll(uv_poll_t* poll, int /*status*/, int /*events*/) {
  // An error status (e.g. the device vanished) also calls back: the next read reports
  // the errno as a DeviceError where the caller can see it.
  Readiness* self = static_cast<PollHandle*>(poll->data)->owner;
  if (self == nullptr || self->callback_.IsEmpty()) return;
  self->Invoke();
  const BusyPoll& busy = Busy();
  if (busy.idleNs != 0 && !busy.spinning) Spin();
}

// Polls every watched fd with a zero timeout and runs the callbacks of the readable
// ones, until nothing has been readable for busy.idleNs or kSpinMaxNs have passed. A
// callback may pause or close any handle (a failed port): the member list's version
// says so, and the round stops there.
void Readiness::Spin() {
  BusyPoll& busy = Busy();
  busy.spinning = true;
  busy.spins++;
  const uint64_t start = NowNs();
  uint64_t lastData = start;
  for (;;) {
    if (busy.builtVersion != busy.version) {
      busy.fds.clear();
      busy.owners.clear();
      for (Readiness* r : busy.members) {
        busy.fds.push_back(pollfd{r->fd_, POLLIN, 0});
        busy.owners.push_back(r);
      }
      busy.builtVersion = busy.version;
    }
    if (busy.fds.empty()) break;
    const int ready = ::poll(busy.fds.data(), busy.fds.size(), 0);
    if (ready > 0) {
      const uint64_t version = busy.version;
      for (size_t i = 0; i < busy.fds.size() && busy.version == version; i++) {
        const short ev = busy.fds[i].revents;
        if (ev == 0 || (ev & POLLNVAL) != 0) continue;
        Readiness* r = busy.owners[i];
        if (r->callback_.IsEmpty()) continue;
        busy.callbacks++;
        r->Invoke();
      }
    }
    const uint64_t now = NowNs();
    if (ready > 0) lastData = now;
    else if (ready < 0 || now - lastData >= busy.idleNs) break;
    if (now - start >= kSpinMaxNs) break;
  }
  busy.spinning = false;
}

void Readiness::Invoke() {
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  napi_value result;
  napi_value global;
  napi_get_global(env, &global);
  // napi_make_callback runs queued microtasks and process.nextTick work afterwards,
  // as any I/O callback in Node does.
  napi_status st = napi_make_callback(env, asyncContext_, global, callback_.Value(), 0, nullptr, &result);
  if (st == napi_pending_exception || env.IsExceptionPending()) {
    // A throwing handler is an uncaught exception, as in any event emitter callback.
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
}

namespace {

Napi::Value SetBusyPoll(const Napi::CallbackInfo& info) {
  int64_t micros = 0;
  if (!IntArg(info, 0, 0, 1'000'000, "busy-poll microseconds", &micros)) return info.Env().Undefined();
  Readiness::SetBusyPoll(static_cast<uint32_t>(micros));
  return info.Env().Undefined();
}

Napi::Value BusyPollStats(const Napi::CallbackInfo& info) {
  const BusyPoll& busy = Busy();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("spins", busy.spins);
  out.Set("callbacks", busy.callbacks);
  return out;
}

}  // namespace

void DefineReadiness(Napi::Env env, Napi::Object exports) {
  exports.Set("setBusyPoll", Napi::Function::New<SetBusyPoll>(env, "setBusyPoll"));
  exports.Set("busyPollStats", Napi::Function::New<BusyPollStats>(env, "busyPollStats"));
}

}  // namespace tapir
