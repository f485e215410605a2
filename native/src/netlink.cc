// The one place Tapir speaks rtnetlink itself: moving a link into another network
// namespace (a pod's TAP into the pod, as its eth0) and looking up an interface index.
// Everything else about links is left to the CNI plugin's caller and iproute2.
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "common.h"
#include "parts.h"

namespace tapir {

namespace {

// Closes an fd when the scope ends, whichever way it ends.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) close(fd);
  }
};

void AddAttr(nlmsghdr* n, unsigned short type, const void* data, size_t len) {
  auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(n) + NLMSG_ALIGN(n->nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
  memcpy(RTA_DATA(rta), data, len);
  n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

// The kernel's own explanation (extended ACK, NLMSGERR_ATTR_MSG) when it sent one,
// e.g. "Invalid network namespace"; empty otherwise.
std::string ExtAckMessage(const nlmsghdr* h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
  size_t offset = NLMSG_HDRLEN + sizeof(nlmsgerr);
  // Unless capped, the error echoes our whole request before the attributes.
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - NLMSG_HDRLEN;
  const char* base = reinterpret_cast<const char*>(h);
  while (offset + sizeof(nlattr) <= h->nlmsg_len) {
    const auto* a = reinterpret_cast<const nlattr*>(base + offset);
    if (a->nla_len < sizeof(nlattr) || offset + a->nla_len > h->nlmsg_len) break;
    if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char* text = base + offset + NLA_HDRLEN;
      return std::string(text, strnlen(text, a->nla_len - NLA_HDRLEN));
    }
    offset += NLA_ALIGN(a->nla_len);
  }
  return "";
}

// Sends one request on `fd` and waits for its ACK. Returns 0 or an errno; `detail`
// gets the extended-ACK text when the kernel gave one.
int Transact(int fd, nlmsghdr* request, std::string* detail) {
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);  // best effort
  sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, request, request->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) return errno;
  alignas(nlmsghdr) char buffer[8192];
  for (;;) {
    ssize_t r = recv(fd, buffer, sizeof buffer, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(h, static_cast<unsigned>(r)); h = NLMSG_NEXT(h, r)) {
      if (h->nlmsg_seq != request->nlmsg_seq || h->nlmsg_type != NLMSG_ERROR) continue;
      const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (err->error != 0) *detail = ExtAckMessage(h);
      return -err->error;
    }
  }
}

int OpenRtnetlink() { return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE); }

// RTM_NEWLINK moving a link (by index, or by name when index is 0) into the namespace
// open as `nsfd`, renamed to `newName` when given.
void BuildMove(char* buffer, size_t size, unsigned index, const std::string& byName, int nsfd, const std::string& newName) {
  memset(buffer, 0, size);
  auto* n = reinterpret_cast<nlmsghdr*>(buffer);
  n->nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  n->nlmsg_type = RTM_NEWLINK;
  n->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  n->nlmsg_seq = 1;
  auto* ifi = static_cast<ifinfomsg*>(NLMSG_DATA(n));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = static_cast<int>(index);
  if (index == 0) AddAttr(n, IFLA_IFNAME, byName.c_str(), byName.size() + 1);
  uint32_t fdAttr = static_cast<uint32_t>(nsfd);
  AddAttr(n, IFLA_NET_NS_FD, &fdAttr, sizeof fdAttr);
  if (!newName.empty()) AddAttr(n, IFLA_IFNAME, newName.c_str(), newName.size() + 1);
}

// After a move whose rename failed, the link sits in the target namespace under its
// old name. A netlink socket belongs to the namespace it was created in, so this
// thread steps into the target just long enough to create one, then asks from there
// for the link to come back. Returns 0 or an errno.
int MoveBack(int targetNs, const std::string& ifname) {
  int homeNs = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (homeNs < 0) return errno;
  FdGuard home{homeNs};
  if (setns(targetNs, CLONE_NEWNET) < 0) return errno;
  int fd = OpenRtnetlink();
  int socketErr = errno;
  // Staying in the pod's namespace would silently misdirect every later socket and
  // device this process opens; there is no safe way to continue.
  if (setns(homeNs, CLONE_NEWNET) < 0) abort();
  if (fd < 0) return socketErr;
  FdGuard guard{fd};
  alignas(nlmsghdr) char buffer[256];
  BuildMove(buffer, sizeof buffer, 0, ifname, homeNs, "");
  std::string detail;
  return Transact(fd, reinterpret_cast<nlmsghdr*>(buffer), &detail);
}

bool NameArg(const Napi::CallbackInfo& info, size_t index, const char* what, bool optional, std::string* out) {
  if (optional && (info[index].IsUndefined() || info[index].IsNull())) return true;
  if (!info[index].IsString()) {
    ThrowType(info.Env(), (std::string(what) + " must be a string").c_str());
    return false;
  }
  *out = info[index].As<Napi::String>().Utf8Value();
  if (out->empty() || out->size() >= IFNAMSIZ) {
    ThrowRange(info.Env(), (std::string(what) + " must be 1 to 15 bytes long (IFNAMSIZ)").c_str());
    return false;
  }
  return true;
}

// linkIndex(name): the interface index in the calling thread's namespace.
Napi::Value LinkIndex(const Napi::CallbackInfo& info) {
  std::string name;
  if (!NameArg(info, 0, "name", false, &name)) return info.Env().Undefined();
  unsigned index = if_nametoindex(name.c_str());
  if (index == 0) {
    ThrowErrno(info.Env(), errno, "if_nametoindex", name.c_str());
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), index);
}

// moveLinkToNetns(ifname, netnsPath, newName?): one RTM_NEWLINK carrying
// IFLA_NET_NS_FD (the opened namespace file: /proc/<pid>/ns/net, /var/run/netns/<x>)
// and, when renaming, IFLA_IFNAME. Either all of it happens or, on error, the link is
// where it was (see the move-back below).
Napi::Value MoveLinkToNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string ifname, newName;
  if (!NameArg(info, 0, "ifname", false, &ifname)) return env.Undefined();
  if (!info[1].IsString()) {
    ThrowType(env, "netnsPath must be a string");
    return env.Undefined();
  }
  std::string path = info[1].As<Napi::String>().Utf8Value();
  if (!NameArg(info, 2, "newName", true, &newName)) return env.Undefined();

  unsigned index = if_nametoindex(ifname.c_str());
  if (index == 0) {
    ThrowErrno(env, errno, "if_nametoindex", ifname.c_str());
    return env.Undefined();
  }
  int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    ThrowErrno(env, errno, "open", path.c_str());
    return env.Undefined();
  }
  FdGuard guard{nsfd};

  int fd = OpenRtnetlink();
  if (fd < 0) {
    ThrowErrno(env, errno, "socket", "AF_NETLINK NETLINK_ROUTE");
    return env.Undefined();
  }
  FdGuard socketGuard{fd};
  alignas(nlmsghdr) char buffer[256];
  BuildMove(buffer, sizeof buffer, index, "", nsfd, newName);
  std::string detail;
  int err = Transact(fd, reinterpret_cast<nlmsghdr*>(buffer), &detail);
  if (err != 0) {
    std::string subject = ifname + " -> " + path + (newName.empty() ? "" : " as " + newName);
    if (!detail.empty()) subject += " [" + detail + "]";
    // The kernel moves first and renames afterwards (the new name is only used up
    // front when the old one clashes there), so a failed rename can leave the link
    // moved. Put it back so a failure means "nothing happened".
    if (!newName.empty() && if_nametoindex(ifname.c_str()) == 0) {
      int back = MoveBack(nsfd, ifname);
      subject += back == 0 ? "; moved back" : std::string("; left in the target as ") + ifname + " (moving back: " + strerror(back) + ")";
    }
    ThrowErrno(env, err, "RTM_NEWLINK", subject.c_str());
  }
  return env.Undefined();
}

}  // namespace

void DefineNetlink(Napi::Env env, Napi::Object exports) {
  exports.Set("linkIndex", Napi::Function::New<LinkIndex>(env, "linkIndex"));
  exports.Set("moveLinkToNetns", Napi::Function::New<MoveLinkToNetns>(env, "moveLinkToNetns"));
}

}  // namespace tapir
