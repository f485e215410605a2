// Memory that outlives the process: a file mapped MAP_SHARED, seen from JavaScript as an
// external ArrayBuffer. The agent keeps its flow tables (conntrack, session affinity)
// there, so a restarted agent (kill -9 included) finds every flow where the last one left
// it, as Cilium finds its BPF maps pinned under /sys/fs/bpf. Put the file on a tmpfs
// (/run): the page cache is the memory, nothing is written back to a disk.
//
//   mapSharedFile(path, bytes) -> { buffer: ArrayBuffer, fresh: boolean }
//
// The file is created (0600) or resized to `bytes`; `fresh` says its contents are new
// (zeros): it did not exist or had another size. What the bytes mean is the caller's
// business (a header with a layout version says whether they can be trusted). The
// mapping is unmapped when the ArrayBuffer is collected; writes are visible to the next
// process that maps the file at once, and survive this one dying at any instruction.
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common.h"
#include "parts.h"

namespace tapir {

namespace {

struct Mapping {
  void* addr;
  size_t length;
};

void Unmap(napi_env /*env*/, void* /*data*/, void* hint) {
  auto* m = static_cast<Mapping*>(hint);
  munmap(m->addr, m->length);
  delete m;
}

Napi::Value MapSharedFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    ThrowType(env, "path must be a string");
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int64_t bytes;
  // 1 TiB is far past any table; the bound only catches a nonsense argument.
  if (!IntArg(info, 1, 1, int64_t{1} << 40, "bytes", &bytes)) return env.Undefined();

  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    ThrowErrno(env, errno, "open", path.c_str());
    return env.Undefined();
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "fstat", path.c_str());
    return env.Undefined();
  }
  bool fresh = st.st_size != bytes;
  // Another size means another layout: start from zeros rather than reinterpret.
  if (fresh && (ftruncate(fd, 0) < 0 || ftruncate(fd, bytes) < 0)) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "ftruncate", path.c_str());
    return env.Undefined();
  }
  void* addr = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);  // the mapping holds the file
  if (addr == MAP_FAILED) {
    ThrowErrno(env, err, "mmap", path.c_str());
    return env.Undefined();
  }
  auto* m = new Mapping{addr, static_cast<size_t>(bytes)};
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(env, addr, m->length, Unmap, m, &buffer);
  if (status != napi_ok) {
    munmap(addr, m->length);
    delete m;
    ThrowType(env, "this Node.js does not allow external ArrayBuffers (V8 sandbox); shared flow tables are unavailable");
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("buffer", Napi::Value(env, buffer));
  out.Set("fresh", Napi::Boolean::New(env, fresh));
  return out;
}

}  // namespace

void DefineSharedMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("mapSharedFile", Napi::Function::New<MapSharedFile>(env, "mapSharedFile"));
}

}  // namespace tapir
