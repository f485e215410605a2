// Readiness of one file descriptor through libuv's uv_poll on the environment's event
// loop: the JS callback runs when the fd is readable. libuv's epoll backend is
// level-triggered, so a callback that leaves frames unread is simply called again on the
// next loop turn; nothing needs re-arming, and nothing here ever blocks the loop.
//
// Busy polling (setBusyPoll, off by default): after a callback, every fd watched on this
// thread is polled again without sleeping, and the callback of each readable one run,
// until none has had anything for the set number of microseconds (at most 2 ms per
// wakeup). Request/response traffic then finds the process awake for the answer instead
// of paying a wakeup per hop; the JS callbacks run exactly as on a wakeup.
#pragma once

#include <napi.h>
#include <uv.h>

namespace tapir {

struct PollHandle;  // the uv handle; outlives its Readiness until libuv has closed it

class Readiness {
 public:
  Readiness() = default;
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;
  ~Readiness();

  // Sets (or replaces) the callback and starts watching `fd`. The uv handle is created
  // on first use. Returns false with a JS exception pending on failure.
  bool SetCallback(Napi::Env env, int fd, Napi::Function callback);
  bool Pause(Napi::Env env);
  bool Resume(Napi::Env env);
  // Busy polling on this thread, in microseconds; 0 = off.
  static void SetBusyPoll(uint32_t micros);
  // Stops watching and releases the handle (freed once libuv has closed it). Must run
  // before the fd itself is closed: libuv must not watch a closed fd.
  void Close();

 private:
  friend struct PollHandle;
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void Spin();
  bool Start(Napi::Env env);
  void Stop();
  // Runs the JS callback as an I/O callback (microtasks and nextTicks after it).
  void Invoke();

  PollHandle* handle_ = nullptr;
  napi_env env_ = nullptr;
  Napi::FunctionReference callback_;
  napi_async_context asyncContext_ = nullptr;
  int fd_ = -1;
  bool paused_ = false;
  bool active_ = false;
};

}  // namespace tapir
