// A batched UDP socket for the VXLAN underlay, IPv4 or IPv6 (the family of the local
// address it is given): recvmmsg/sendmmsg straight into and out of a caller-owned slab,
// with UDP GRO on receive (one coalesced datagram plus its segment size) and UDP GSO on
// send (one large buffer the kernel cuts into segments); both work on AF_INET6 sockets
// as on AF_INET ones (udp6_gro_receive, udp6_ufo_fragment).
//
// Addresses cross the boundary as host-order uint32 words: one per datagram on an IPv4
// socket, four (the IPv6 address's big-endian words, first to last) on an IPv6 one, so
// both families share the typed arrays and neither allocates per datagram.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "parts.h"
#include "readiness.h"

namespace tapir {

namespace {

// Messages per recvmmsg/sendmmsg call; larger batches loop. 64 matches the UDP GSO
// segment limit (UDP_MAX_SEGMENTS) and keeps the stack arrays below 8 KiB.
constexpr int kChunk = 64;
constexpr int kDefaultBuffer = 4 << 20;  // bytes; absorbs a burst of 64 KiB GRO datagrams

// One datagram's peer, either family (sized for sockaddr_in6; msg_namelen says which).
union SocketAddress {
  sockaddr any;
  sockaddr_in v4;
  sockaddr_in6 v6;
};

bool FatalForFd(int err) { return err == EBADF || err == ENOTSOCK || err == EFAULT; }

// Large buffers need CAP_NET_ADMIN (the FORCE options ignore net.core.[rw]mem_max);
// without it fall back to the capped option instead of failing.
void SetBuffer(int fd, int forceOpt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, forceOpt, &bytes, sizeof bytes) < 0) {
    setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
}

}  // namespace

class UdpHandle : public Napi::ObjectWrap<UdpHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpHandle",
                       {InstanceMethod<&UdpHandle::RecvBatch>("recvBatch"),
                        InstanceMethod<&UdpHandle::SendBatch>("sendBatch"),
                        InstanceMethod<&UdpHandle::OnReadable>("onReadable"),
                        InstanceMethod<&UdpHandle::Pause>("pause"),
                        InstanceMethod<&UdpHandle::Resume>("resume"),
                        InstanceMethod<&UdpHandle::Stats>("stats"),
                        InstanceMethod<&UdpHandle::Close>("close"),
                        InstanceAccessor<&UdpHandle::Fd>("fd"),
                        InstanceAccessor<&UdpHandle::LocalPort>("localPort"),
                        InstanceAccessor<&UdpHandle::Family>("family"),
                        InstanceAccessor<&UdpHandle::GsoSupported>("gsoSupported"),
                        InstanceAccessor<&UdpHandle::GroEnabled>("groEnabled")});
  }

  // new UdpHandle({ address, port, reusePort, gso, gro, bufferBytes })
  explicit UdpHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpHandle>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      ThrowType(env, "UdpHandle options must be an object");
      return;
    }
    Napi::Object opts = info[0].As<Napi::Object>();
    std::string address = opts.Get("address").IsString() ? opts.Get("address").As<Napi::String>().Utf8Value() : "";
    // An IPv6 socket is IPv6 only (IPV6_V6ONLY): the cluster's underlay is one family,
    // and a v4-mapped peer would otherwise arrive in an address of the other form.
    SocketAddress local;
    memset(&local, 0, sizeof local);
    if (address.find(':') != std::string::npos) {
      family_ = AF_INET6;
      local.v6.sin6_family = AF_INET6;
      if (inet_pton(AF_INET6, address.c_str(), &local.v6.sin6_addr) != 1) {
        ThrowType(env, "address must be an IPv4 address in dotted-quad form or an IPv6 address");
        return;
      }
    } else {
      local.v4.sin_family = AF_INET;
      if (inet_pton(AF_INET, address.c_str(), &local.v4.sin_addr) != 1) {
        ThrowType(env, "address must be an IPv4 address in dotted-quad form or an IPv6 address");
        return;
      }
    }
    double port = opts.Get("port").IsNumber() ? opts.Get("port").As<Napi::Number>().DoubleValue() : -1;
    if (!(port >= 0 && port <= 65535) || port != static_cast<int>(port)) {
      ThrowRange(env, "port must be an integer in [0, 65535]");
      return;
    }
    if (family_ == AF_INET6) local.v6.sin6_port = htons(static_cast<uint16_t>(port));
    else local.v4.sin_port = htons(static_cast<uint16_t>(port));
    int bufferBytes = opts.Get("bufferBytes").IsNumber() ? opts.Get("bufferBytes").As<Napi::Number>().Int32Value() : kDefaultBuffer;

    int fd = socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ThrowErrno(env, errno, "socket", family_ == AF_INET6 ? "AF_INET6 SOCK_DGRAM" : "AF_INET SOCK_DGRAM");
      return;
    }
    int one = 1;
    if (family_ == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) {
      Fail(env, fd, "setsockopt IPV6_V6ONLY", address);
      return;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
      Fail(env, fd, "setsockopt SO_REUSEADDR", address);
      return;
    }
    if (opts.Get("reusePort").ToBoolean() && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
      Fail(env, fd, "setsockopt SO_REUSEPORT", address);
      return;
    }
    SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bufferBytes);
    SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bufferBytes);
    socklen_t len = family_ == AF_INET6 ? sizeof local.v6 : sizeof local.v4;
    if (bind(fd, &local.any, len) < 0) {
      Fail(env, fd, "bind", (family_ == AF_INET6 ? "[" + address + "]" : address) + ":" + std::to_string(static_cast<int>(port)));
      return;
    }
    getsockname(fd, &local.any, &len);
    localPort_ = ntohs(family_ == AF_INET6 ? local.v6.sin6_port : local.v4.sin_port);

    // GSO is per message (a UDP_SEGMENT cmsg), so turning it "on" only asks whether the
    // kernel knows the option (Linux >= 4.18). GRO changes what recv returns, so it is
    // enabled only when asked for.
    if (!opts.Get("gso").IsBoolean() || opts.Get("gso").As<Napi::Boolean>().Value()) {
      int segment = 0;
      socklen_t segmentLen = sizeof segment;
      gsoSupported_ = getsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &segment, &segmentLen) == 0;
    }
    if (opts.Get("gro").ToBoolean()) {
      groEnabled_ = setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one) == 0;
    }
    fd_ = fd;
  }

  ~UdpHandle() override { CloseFd(); }

 private:
  void Fail(Napi::Env env, int fd, const char* syscall, const std::string& subject) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, syscall, subject.c_str());
  }

  bool CheckOpen(Napi::Env env) {
    if (fd_ >= 0) return true;
    ThrowErrno(env, EBADF, "udp", "closed socket");
    return false;
  }

  void CloseFd() {
    readiness_.Close();
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  // recvBatch(slab, slotSize, headroom, lengths, srcAddrs, srcPorts, groSegSizes,
  // maxFrames): datagram i at i*slotSize + headroom; source address as a host-order
  // uint32 (IPv4) or at srcAddrs[4i..4i+3] (IPv6, srcAddrs four times as long), port in
  // host order; groSegSizes[i] is the segment size when the kernel
  // coalesced several datagrams into this one (UDP_GRO), else 0. A datagram larger
  // than its slot is dropped and counted. Returns how many were received.
  Napi::Value RecvBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    void *slabPtr, *lengthsPtr, *addrsPtr, *portsPtr, *segPtr;
    size_t slabLen, lengthsLen, addrsLen, portsLen, segLen;
    int64_t slotSize, headroom, maxFrames;
    if (!TypedArg(info, 0, napi_uint8_array, "slab", &slabPtr, &slabLen) ||
        !IntArg(info, 1, 1, INT32_MAX, "slotSize", &slotSize) ||
        !IntArg(info, 2, 0, slotSize - 1, "headroom", &headroom) ||
        !TypedArg(info, 3, napi_int32_array, "lengths", &lengthsPtr, &lengthsLen) ||
        !TypedArg(info, 4, napi_uint32_array, "srcAddrs", &addrsPtr, &addrsLen) ||
        !TypedArg(info, 5, napi_uint16_array, "srcPorts", &portsPtr, &portsLen) ||
        !TypedArg(info, 6, napi_int32_array, "groSegSizes", &segPtr, &segLen)) {
      return env.Undefined();
    }
    const size_t stride = family_ == AF_INET6 ? 4 : 1;
    size_t limit = lengthsLen;
    if (addrsLen / stride < limit) limit = addrsLen / stride;
    if (portsLen < limit) limit = portsLen;
    if (segLen < limit) limit = segLen;
    if (!IntArg(info, 7, 0, static_cast<int64_t>(limit), "maxFrames", &maxFrames)) return env.Undefined();
    if (static_cast<uint64_t>(maxFrames) * static_cast<uint64_t>(slotSize) > slabLen) {
      ThrowRange(env, "slab is smaller than maxFrames * slotSize");
      return env.Undefined();
    }
    if (!CheckOpen(env)) return env.Undefined();
    auto* slab = static_cast<uint8_t*>(slabPtr);
    auto* lengths = static_cast<int32_t*>(lengthsPtr);
    auto* srcAddrs = static_cast<uint32_t*>(addrsPtr);
    auto* srcPorts = static_cast<uint16_t*>(portsPtr);
    auto* groSegSizes = static_cast<int32_t*>(segPtr);
    const size_t capacity = static_cast<size_t>(slotSize - headroom);

    struct mmsghdr msgs[kChunk];
    struct iovec iovs[kChunk];
    SocketAddress addrs[kChunk];
    alignas(struct cmsghdr) char control[kChunk][CMSG_SPACE(sizeof(int))];
    int64_t n = 0;  // frames delivered; also the slot the next datagram goes to
    while (n < maxFrames) {
      int want = static_cast<int>(maxFrames - n < kChunk ? maxFrames - n : kChunk);
      for (int j = 0; j < want; j++) {
        iovs[j].iov_base = slab + (n + j) * slotSize + headroom;
        iovs[j].iov_len = capacity;
        memset(&msgs[j].msg_hdr, 0, sizeof msgs[j].msg_hdr);
        msgs[j].msg_hdr.msg_name = &addrs[j];
        msgs[j].msg_hdr.msg_namelen = sizeof addrs[j];
        msgs[j].msg_hdr.msg_iov = &iovs[j];
        msgs[j].msg_hdr.msg_iovlen = 1;
        if (groEnabled_) {
          msgs[j].msg_hdr.msg_control = control[j];
          msgs[j].msg_hdr.msg_controllen = sizeof control[j];
        }
      }
      int got = recvmmsg(fd_, msgs, static_cast<unsigned>(want), MSG_DONTWAIT, nullptr);
      if (got < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        if (n > 0) break;
        ThrowErrno(env, errno, "recvmmsg", nullptr);
        return env.Undefined();
      }
      int64_t base = n;
      for (int j = 0; j < got; j++) {
        const msghdr& h = msgs[j].msg_hdr;
        if (h.msg_flags & MSG_TRUNC) {
          counters_.rxTruncated++;
          continue;
        }
        // After a dropped datagram the later ones move down a slot so the batch stays
        // dense; rare, so the copy costs nothing in the common case.
        uint8_t* at = slab + n * slotSize + headroom;
        if (n != base + j) memmove(at, iovs[j].iov_base, msgs[j].msg_len);
        lengths[n] = static_cast<int32_t>(msgs[j].msg_len);
        if (stride == 1) {
          srcAddrs[n] = ntohl(addrs[j].v4.sin_addr.s_addr);
          srcPorts[n] = ntohs(addrs[j].v4.sin_port);
        } else {
          uint32_t words[4];
          memcpy(words, &addrs[j].v6.sin6_addr, sizeof words);
          for (int w = 0; w < 4; w++) srcAddrs[4 * n + w] = ntohl(words[w]);
          srcPorts[n] = ntohs(addrs[j].v6.sin6_port);
        }
        int segment = 0;
        if (groEnabled_) {
          for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
            if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) memcpy(&segment, CMSG_DATA(c), sizeof segment);
          }
        }
        groSegSizes[n] = segment;
        n++;
      }
      if (got < want) break;  // the queue is drained
    }
    return Napi::Number::New(env, static_cast<double>(n));
  }

  // sendBatch(slab, offsets, lengths, dstAddrs, dstPorts, gsoSizes, count): frame i to
  // dstAddrs[i] (IPv4) or dstAddrs[4i..4i+3] (IPv6) as recvBatch gives them; gsoSizes[i]
  // > 0 asks the kernel to cut frame i into datagrams of that size (UDP_SEGMENT). A
  // full send queue (EAGAIN) drops the rest of the batch and counts it; a refused
  // datagram (EMSGSIZE, ENETUNREACH, ...) is counted and skipped. Returns the number
  // of frames sent.
  Napi::Value SendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    void *slabPtr, *offsetsPtr, *lengthsPtr, *addrsPtr, *portsPtr, *gsoPtr;
    size_t slabLen, offsetsLen, lengthsLen, addrsLen, portsLen, gsoLen;
    if (!TypedArg(info, 0, napi_uint8_array, "slab", &slabPtr, &slabLen) ||
        !TypedArg(info, 1, napi_int32_array, "offsets", &offsetsPtr, &offsetsLen) ||
        !TypedArg(info, 2, napi_int32_array, "lengths", &lengthsPtr, &lengthsLen) ||
        !TypedArg(info, 3, napi_uint32_array, "dstAddrs", &addrsPtr, &addrsLen) ||
        !TypedArg(info, 4, napi_uint16_array, "dstPorts", &portsPtr, &portsLen) ||
        !TypedArg(info, 5, napi_int32_array, "gsoSizes", &gsoPtr, &gsoLen)) {
      return env.Undefined();
    }
    const size_t stride = family_ == AF_INET6 ? 4 : 1;
    size_t limit = offsetsLen;
    for (size_t l : {lengthsLen, addrsLen / stride, portsLen, gsoLen}) limit = l < limit ? l : limit;
    int64_t count;
    if (!IntArg(info, 6, 0, static_cast<int64_t>(limit), "count", &count)) return env.Undefined();
    auto* slab = static_cast<uint8_t*>(slabPtr);
    auto* offsets = static_cast<int32_t*>(offsetsPtr);
    auto* lengths = static_cast<int32_t*>(lengthsPtr);
    auto* dstAddrs = static_cast<uint32_t*>(addrsPtr);
    auto* dstPorts = static_cast<uint16_t*>(portsPtr);
    auto* gsoSizes = static_cast<int32_t*>(gsoPtr);
    for (int64_t i = 0; i < count; i++) {
      if (offsets[i] < 0 || lengths[i] < 0 || static_cast<uint64_t>(offsets[i]) + static_cast<uint64_t>(lengths[i]) > slabLen) {
        ThrowRange(env, "a frame's offset + length lies outside the slab");
        return env.Undefined();
      }
      if (gsoSizes[i] < 0 || gsoSizes[i] > 65535 || (gsoSizes[i] > 0 && !gsoSupported_)) {
        ThrowRange(env, "gsoSizes[i] must be 0, or 1..65535 on a socket with gsoSupported");
        return env.Undefined();
      }
    }
    if (!CheckOpen(env)) return env.Undefined();

    struct mmsghdr msgs[kChunk];
    struct iovec iovs[kChunk];
    SocketAddress addrs[kChunk];
    alignas(struct cmsghdr) char control[kChunk][CMSG_SPACE(sizeof(uint16_t))];
    int64_t sent = 0;
    int64_t i = 0;
    while (i < count) {
      int want = static_cast<int>(count - i < kChunk ? count - i : kChunk);
      for (int j = 0; j < want; j++) {
        int64_t k = i + j;
        iovs[j].iov_base = slab + offsets[k];
        iovs[j].iov_len = static_cast<size_t>(lengths[k]);
        socklen_t nameLen;
        if (stride == 1) {
          memset(&addrs[j].v4, 0, sizeof addrs[j].v4);
          addrs[j].v4.sin_family = AF_INET;
          addrs[j].v4.sin_addr.s_addr = htonl(dstAddrs[k]);
          addrs[j].v4.sin_port = htons(dstPorts[k]);
          nameLen = sizeof addrs[j].v4;
        } else {
          memset(&addrs[j].v6, 0, sizeof addrs[j].v6);
          addrs[j].v6.sin6_family = AF_INET6;
          uint32_t words[4];
          for (int w = 0; w < 4; w++) words[w] = htonl(dstAddrs[4 * k + w]);
          memcpy(&addrs[j].v6.sin6_addr, words, sizeof words);
          addrs[j].v6.sin6_port = htons(dstPorts[k]);
          nameLen = sizeof addrs[j].v6;
        }
        msghdr& h = msgs[j].msg_hdr;
        memset(&h, 0, sizeof h);
        h.msg_name = &addrs[j];
        h.msg_namelen = nameLen;
        h.msg_iov = &iovs[j];
        h.msg_iovlen = 1;
        // A segment size at or above the length would make one datagram anyway; the
        // cmsg is left off so the kernel takes its plain path.
        if (gsoSizes[k] > 0 && lengths[k] > gsoSizes[k]) {
          h.msg_control = control[j];
          h.msg_controllen = sizeof control[j];
          cmsghdr* c = CMSG_FIRSTHDR(&h);
          c->cmsg_level = IPPROTO_UDP;
          c->cmsg_type = UDP_SEGMENT;
          c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
          uint16_t segment = static_cast<uint16_t>(gsoSizes[k]);
          memcpy(CMSG_DATA(c), &segment, sizeof segment);
        }
      }
      int done = sendmmsg(fd_, msgs, static_cast<unsigned>(want), MSG_DONTWAIT);
      if (done > 0) {
        sent += done;
        i += done;
        continue;  // a short count means message i failed; the next call reports why
      }
      int err = errno;
      if (done < 0 && err == EINTR) continue;
      if (done < 0 && err == EAGAIN) {
        counters_.txDroppedFull += static_cast<double>(count - i);
        break;
      }
      if (done < 0 && FatalForFd(err)) {
        ThrowErrno(env, err, "sendmmsg", nullptr);
        return env.Undefined();
      }
      counters_.txErrors++;
      counters_.lastTxErrno = done < 0 ? err : 0;
      i++;
    }
    return Napi::Number::New(env, static_cast<double>(sent));
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

  Napi::Value Stats(const Napi::CallbackInfo& info) { return CountersToObject(info.Env(), counters_); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseFd();
    return info.Env().Undefined();
  }

  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value LocalPort(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), localPort_); }
  Napi::Value Family(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), family_ == AF_INET6 ? 6 : 4); }
  Napi::Value GsoSupported(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), gsoSupported_); }
  Napi::Value GroEnabled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), groEnabled_); }

  int fd_ = -1;
  int family_ = AF_INET;
  int localPort_ = 0;
  bool gsoSupported_ = false;
  bool groEnabled_ = false;
  Counters counters_;
  Readiness readiness_;
};

Napi::Function DefineUdpHandle(Napi::Env env) { return UdpHandle::Define(env); }

}  // namespace tapir
