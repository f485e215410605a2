// Readiness of one file descriptor through libuv's uv_poll on the environment's event
// loop: the JS callback runs when the fd is readable. libuv's epoll backend is
// level-triggered, so a callback that leaves frames unread is simply called again on the
// next loop turn; nothing needs re-arming, and nothing here ever blocks the loop.
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
  // Stops watching and releases the handle (freed once libuv has closed it). Must run
  // before the fd itself is closed: libuv must not watch a closed fd.
  void Close();

 private:
  friend struct PollHandle;
  static void OnPoll(uv_poll_t* handle, int status, int events);
  bool Start(Napi::Env env);

  PollHandle* handle_ = nullptr;
  napi_env env_ = nullptr;
  Napi::FunctionReference callback_;
  napi_async_context asyncContext_ = nullptr;
  bool paused_ = false;
  bool active_ = false;
};

}  // namespace tapir
