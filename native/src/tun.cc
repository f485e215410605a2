// TUN/TAP devices: open through /dev/net/tun (TUNSETIFF), negotiate the virtio-net
// header and offloads once, then move frames in batches between the device and a
// caller-owned slab (docs/ARCHITECTURE.md, "Buffers: the slab").
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"
#include "readiness.h"
#include "parts.h"

// UDP segmentation offload for TUN arrived in Linux 6.2; older headers lack the bits.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif
// UDP tunnel segmentation (a VXLAN super-frame behind a 24-byte
// virtio_net_hdr_v1_hash_tunnel) arrived in Linux 6.17.
#ifndef TUN_F_UDP_TUNNEL_GSO
#define TUN_F_UDP_TUNNEL_GSO 0x080
#endif
#ifndef TUN_F_UDP_TUNNEL_GSO_CSUM
#define TUN_F_UDP_TUNNEL_GSO_CSUM 0x100
#endif

namespace tapir {

namespace {

// Errors after which the fd is of no further use: the device was deleted (EBADFD, a
// detached tun file) or the fd is not ours. Everything else refuses one frame only.
bool FatalForFd(int err) { return err == EBADF || err == EBADFD || err == EFAULT; }

// Brings the calling thread back to its own network namespace when the scope ends. A
// thread that cannot go back would run the rest of the program in a pod's namespace:
// that is not survivable, so it aborts.
struct NetnsReturn {
  int home = -1;
  ~NetnsReturn() {
    if (home < 0) return;
    if (setns(home, CLONE_NEWNET) < 0) {
      perror("tapir_native: setns back to the agent's network namespace");
      abort();
    }
    close(home);
  }
};

}  // namespace

class TunHandle : public Napi::ObjectWrap<TunHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TunHandle",
                       {InstanceMethod<&TunHandle::ReadBatch>("readBatch"),
                        InstanceMethod<&TunHandle::WriteBatch>("writeBatch"),
                        InstanceMethod<&TunHandle::OnReadable>("onReadable"),
                        InstanceMethod<&TunHandle::Pause>("pause"),
                        InstanceMethod<&TunHandle::Resume>("resume"),
                        InstanceMethod<&TunHandle::SetPersist>("setPersist"),
                        InstanceMethod<&TunHandle::Stats>("stats"),
                        InstanceMethod<&TunHandle::Close>("close"),
                        InstanceAccessor<&TunHandle::Name>("name"),
                        InstanceAccessor<&TunHandle::Mac>("mac"),
                        InstanceAccessor<&TunHandle::Fd>("fd"),
                        InstanceAccessor<&TunHandle::Offloads>("offloads"),
                        InstanceAccessor<&TunHandle::VnetHdrSize>("vnetHdrSize")});
  }

  // new TunHandle({ name, tap, vnetHdrSize, multiQueue, persist, offloads, netns })
  // name "" or with "%d" lets the kernel choose; persist: true/false sets, undefined
  // leaves the device's flag as it is (re-attaching to a persistent device).
  // netns: a namespace path (/run/netns/NAME): attach to the existing device `name`
  // there, without moving it (a restarted agent takes back a pod's eth0 in place, so
  // the pod never loses its interface); ENODEV when it has none of that name. The
  // calling thread enters the namespace for the open and comes back before returning.
  explicit TunHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TunHandle>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) { ThrowType(env, "TunHandle options must be an object"); return; }
    Napi::Object opts = info[0].As<Napi::Object>();
    std::string name = opts.Get("name").IsString() ? opts.Get("name").As<Napi::String>().Utf8Value() : "";
    if (name.size() >= IFNAMSIZ) { ThrowRange(env, "device name is longer than 15 bytes (IFNAMSIZ)"); return; }
    bool tap = opts.Get("tap").ToBoolean();
    int vnetHdrSize = opts.Get("vnetHdrSize").IsNumber() ? opts.Get("vnetHdrSize").As<Napi::Number>().Int32Value() : 0;
    if (vnetHdrSize != 0 && vnetHdrSize != 10 && vnetHdrSize != 12 && vnetHdrSize != 24) {
      ThrowRange(env, "vnetHdrSize must be 0, 10 (virtio_net_hdr), 12 (virtio_net_hdr_mrg_rxbuf) or 24 (virtio_net_hdr_v1_hash_tunnel)");
      return;
    }
    bool multiQueue = opts.Get("multiQueue").ToBoolean();
    Napi::Value persist = opts.Get("persist");
    int offloads = opts.Get("offloads").IsNumber() ? opts.Get("offloads").As<Napi::Number>().Int32Value() : 0;
    if (offloads != 0 && vnetHdrSize == 0) {
      // Without the header the kernel could not tell us a frame is a TSO super-packet.
      ThrowType(env, "offloads need the virtio-net header (vnetHdr: true)");
      return;
    }

    std::string netns = opts.Get("netns").IsString() ? opts.Get("netns").As<Napi::String>().Utf8Value() : "";
    NetnsReturn back;
    if (!netns.empty()) {
      back.home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
      if (back.home < 0) { ThrowErrno(env, errno, "open", "/proc/thread-self/ns/net"); return; }
      int target = open(netns.c_str(), O_RDONLY | O_CLOEXEC);
      if (target < 0) { ThrowErrno(env, errno, "open", netns.c_str()); return; }
      int rc = setns(target, CLONE_NEWNET);
      int err = errno;
      close(target);
      if (rc < 0) {
        close(back.home);
        back.home = -1;
        ThrowErrno(env, err, "setns", netns.c_str());
        return;
      }
      // TUNSETIFF would create a new device of that name: attaching in place only.
      if (if_nametoindex(name.c_str()) == 0) { ThrowErrno(env, ENODEV, "attach", (name + " in " + netns).c_str()); return; }
    }

    // The tun file belongs to the namespace it is opened in: open it after setns.
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) { ThrowErrno(env, errno, "open", "/dev/net/tun"); return; }

    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    // IFF_NO_PI: frames start with the IP header (TUN) or Ethernet header (TAP), no
    // 4-byte packet-information prefix.
    ifr.ifr_flags = static_cast<short>((tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI | (vnetHdrSize ? IFF_VNET_HDR : 0) |
                                       (multiQueue ? IFF_MULTI_QUEUE : 0));
    memcpy(ifr.ifr_name, name.data(), name.size());
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { Fail(env, fd, errno, "TUNSETIFF", name.empty() ? (tap ? "tap%d" : "tun%d") : name.c_str()); return; }
    name_.assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));

    if (vnetHdrSize != 0 && ioctl(fd, TUNSETVNETHDRSZ, &vnetHdrSize) < 0) {
      Fail(env, fd, errno, "TUNSETVNETHDRSZ", name_.c_str());
      return;
    }
    if (vnetHdrSize != 0) {
      // Newer bits (UDP tunnel GSO from Linux 6.17, USO4/USO6 from 6.2) make older
      // kernels reject the whole mask with EINVAL: ask again without them, newest
      // first, and report what was accepted.
      unsigned long want = static_cast<unsigned long>(offloads);
      int rc = ioctl(fd, TUNSETOFFLOAD, want);
      const unsigned long optional[] = {TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM, TUN_F_USO4 | TUN_F_USO6};
      for (unsigned long bits : optional) {
        if (rc == 0 || errno != EINVAL || (want & bits) == 0) continue;
        want &= ~bits;
        rc = ioctl(fd, TUNSETOFFLOAD, want);
      }
      if (rc < 0) { Fail(env, fd, errno, "TUNSETOFFLOAD", name_.c_str()); return; }
      offloads_ = static_cast<int>(want);
    }
    if (persist.IsBoolean() && ioctl(fd, TUNSETPERSIST, persist.As<Napi::Boolean>().Value() ? 1 : 0) < 0) {
      Fail(env, fd, errno, "TUNSETPERSIST", name_.c_str());
      return;
    }
    // The MAC address, read in the device's namespace (a restarted agent checks that the
    // device it took back is the TAP it made).
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock >= 0) {
      if (ioctl(sock, SIOCGIFHWADDR, &ifr) == 0) {
        auto* a = reinterpret_cast<const unsigned char*>(ifr.ifr_hwaddr.sa_data);
        char mac[18];
        snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4], a[5]);
        mac_ = mac;
      }
      close(sock);
    }
    fd_ = fd;
    vnetHdrSize_ = vnetHdrSize;
  }

  ~TunHandle() override { CloseFd(); }

 private:
  void Fail(Napi::Env env, int fd, int err, const char* syscall, const char* subject) {
    close(fd);
    ThrowErrno(env, err, syscall, subject);
  }

  bool CheckOpen(Napi::Env env) {
    if (fd_ >= 0) return true;
    ThrowErrno(env, EBADF, "tun", name_.c_str());
    return false;
  }

  void CloseFd() {
    readiness_.Close();  // before close(): libuv must not watch a closed fd
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  // readBatch(slab, slotSize, headroom, lengths, maxFrames): frame i lands at
  // i*slotSize + headroom, with room for slotSize - headroom bytes. A frame that does
  // not fit is dropped and counted. Returns the number of frames read, 0 when none
  // were waiting.
  Napi::Value ReadBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    void* slabPtr;
    void* lengthsPtr;
    size_t slabLen, lengthsLen;
    int64_t slotSize, headroom, maxFrames;
    if (!TypedArg(info, 0, napi_uint8_array, "slab", &slabPtr, &slabLen) ||
        !IntArg(info, 1, 1, INT32_MAX, "slotSize", &slotSize) ||
        !IntArg(info, 2, 0, slotSize - 1, "headroom", &headroom) ||
        !TypedArg(info, 3, napi_int32_array, "lengths", &lengthsPtr, &lengthsLen) ||
        !IntArg(info, 4, 0, static_cast<int64_t>(lengthsLen), "maxFrames", &maxFrames)) {
      return env.Undefined();
    }
    if (static_cast<uint64_t>(maxFrames) * static_cast<uint64_t>(slotSize) > slabLen) {
      ThrowRange(env, "slab is smaller than maxFrames * slotSize");
      return env.Undefined();
    }
    if (!CheckOpen(env)) return env.Undefined();
    auto* slab = static_cast<uint8_t*>(slabPtr);
    auto* lengths = static_cast<int32_t*>(lengthsPtr);
    const size_t capacity = static_cast<size_t>(slotSize - headroom);
    // tun copies what fits and returns the copied length, so a frame filling its slot
    // exactly would look like one cut short: asking for one byte more tells them apart
    // (a read longer than the slot means the frame did not fit). That byte is the first
    // of the next slot, which the caller may have prepared (headroom templates), so it
    // is put back when overwritten. Past the slab's end a readv with a spare byte does
    // the same; it costs ~0.3 us more than read(), so it is kept to the slab's edge.
    uint8_t* const slabEnd = slab + slabLen;
    uint8_t spare;
    struct iovec iov[2] = {{nullptr, capacity}, {&spare, 1}};
    int64_t n = 0;
    while (n < maxFrames) {
      uint8_t* frame = slab + n * slotSize + headroom;
      uint8_t* after = frame + capacity;
      ssize_t r;
      if (after < slabEnd) {
        uint8_t kept = *after;
        r = read(fd_, frame, capacity + 1);
        if (r > static_cast<ssize_t>(capacity)) *after = kept;
      } else {
        iov[0].iov_base = frame;
        r = readv(fd_, iov, 2);
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        if (n > 0) break;  // hand over what we have; the error repeats on the next call
        ThrowErrno(env, errno, "read", name_.c_str());
        return env.Undefined();
      }
      if (static_cast<size_t>(r) > capacity) {
        counters_.rxTruncated++;
        continue;
      }
      lengths[n++] = static_cast<int32_t>(r);
    }
    return Napi::Number::New(env, static_cast<double>(n));
  }

  // writeBatch(slab, offsets, lengths, count): one write() per frame (a tun write is
  // one frame). The kernel queue being full (EAGAIN) drops the rest of the batch and
  // counts it, as a NIC would; a refused frame is counted and skipped. Returns the
  // number of frames the kernel took.
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    void *slabPtr, *offsetsPtr, *lengthsPtr;
    size_t slabLen, offsetsLen, lengthsLen;
    int64_t count;
    if (!TypedArg(info, 0, napi_uint8_array, "slab", &slabPtr, &slabLen) ||
        !TypedArg(info, 1, napi_int32_array, "offsets", &offsetsPtr, &offsetsLen) ||
        !TypedArg(info, 2, napi_int32_array, "lengths", &lengthsPtr, &lengthsLen) ||
        !IntArg(info, 3, 0, static_cast<int64_t>(offsetsLen < lengthsLen ? offsetsLen : lengthsLen), "count", &count)) {
      return env.Undefined();
    }
    auto* slab = static_cast<uint8_t*>(slabPtr);
    auto* offsets = static_cast<int32_t*>(offsetsPtr);
    auto* lengths = static_cast<int32_t*>(lengthsPtr);
    for (int64_t i = 0; i < count; i++) {
      // Checked before any write so a bad frame cannot leave the batch half-sent.
      if (offsets[i] < 0 || lengths[i] < 0 || static_cast<uint64_t>(offsets[i]) + static_cast<uint64_t>(lengths[i]) > slabLen) {
        ThrowRange(env, "a frame's offset + length lies outside the slab");
        return env.Undefined();
      }
    }
    if (!CheckOpen(env)) return env.Undefined();
    int64_t written = 0;
    for (int64_t i = 0; i < count; i++) {
      ssize_t r = write(fd_, slab + offsets[i], static_cast<size_t>(lengths[i]));
      if (r >= 0) {
        written++;
        continue;
      }
      int err = errno;
      if (err == EINTR) {
        i--;
        continue;
      }
      if (err == EAGAIN) {
        counters_.txDroppedFull += static_cast<double>(count - i);
        break;
      }
      if (FatalForFd(err)) {
        ThrowErrno(env, err, "write", name_.c_str());
        return env.Undefined();
      }
      counters_.txErrors++;
      counters_.lastTxErrno = err;
    }
    return Napi::Number::New(env, static_cast<double>(written));
  }

  Napi::Value OnReadable(const Napi::CallbackInfo& info) {
    if (!info[0].IsFunction()) {
      ThrowType(info.Env(), "onReadable needs a function");
      return info.Env().Undefined();
    }
    if (CheckOpen(info.Env())) readiness_.SetCallback(info.Env(), fd_, info[0].As<Napi::Function>());
    return info.Env().Undefined();
  }

  Napi::Value Pause(const Napi::CallbackInfo& info) {
    readiness_.Pause(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Resume(const Napi::CallbackInfo& info) {
    if (CheckOpen(info.Env())) readiness_.Resume(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value SetPersist(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (CheckOpen(env) && ioctl(fd_, TUNSETPERSIST, info[0].ToBoolean().Value() ? 1 : 0) < 0) {
      ThrowErrno(env, errno, "TUNSETPERSIST", name_.c_str());
    }
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) { return CountersToObject(info.Env(), counters_); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseFd();
    return info.Env().Undefined();
  }

  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value Mac(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), mac_); }
  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value Offloads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), offloads_); }
  Napi::Value VnetHdrSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), vnetHdrSize_); }

  int fd_ = -1;
  int vnetHdrSize_ = 0;
  int offloads_ = 0;
  std::string name_;
  std::string mac_;
  Counters counters_;
  Readiness readiness_;
};

Napi::Function DefineTunHandle(Napi::Env env) { return TunHandle::Define(env); }

}  // namespace tapir
