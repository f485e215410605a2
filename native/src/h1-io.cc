// The Ingress proxy's plain HTTP/1.1 sockets, read, parsed and written in C, driven
// from JavaScript in batches:
//
//   new H1Io()
//   onReadable(fn)                   fn runs (as an I/O callback) when any socket is ready
//   poll(sink)                       reads every ready socket, parses what it read, and
//                                    calls sink(...events) once if there are any
//   flush(sink)                      writes what write()/end() queued since the last
//                                    flush; sink(...events) as poll's
//   listen(address, port, v6only) -> [id, port]
//   connect(ip, port) -> id | -errno
//   write(id, text, body | null, text2 | null) -> false when over kHighWater is queued
//   end(id)                          shut the socket's writing side once its output left
//   destroy(id), reading(id, on), skipBody(id), detach(id) -> [fd, unsent | null], close()
//
// node:net and node:http's parser cost a JavaScript callback per read, three or four
// more per message (the parser's), a Buffer and the Writable machinery per write; here
// every socket that is ready is read in one call, its messages parsed by llhttp (the
// parser inside node:http, whose symbols node exports as it does nghttp2's; see
// binding.gyp), and JavaScript gets one call with the events of all of them. Writes
// queue and leave together at flush(), so a peer is woken once per batch.
//
// Events, flat in sink's arguments (`id` is the socket's; `lines` is a count n, then n
// latin1 strings: [name, value, ...] as received):
//   1, id, listener, address          a client connected (its address as text)
//   2, id, method, url, minor, flags, lines
//                                     a request head (flags: 1 keep-alive, 2 upgrade)
//   3, id, status, reason, keepAlive, lines
//                                     a response head
//   4, id, bytes                      body bytes (a copy; one per message per read): a
//                                     Buffer, or a latin1 string for a response's piece
//                                     of at most kTextBody
//   5, id, lines                      the end of a message (trailer lines of a chunked body)
//   6, id                             a connect() finished
//   7, id                             output fell to nothing after write() said false
//   8, id, code, reason               a parse error (HPE_* as node's parser names them;
//                                     HPE_HEADER_OVERFLOW for a head over 16 KiB);
//                                     reading stops
//   9, id, errno                      the socket is gone (0: the peer closed it), or a
//                                     connect() failed; the id is free again
//  10, id, buffer                     an Upgrade (or CONNECT) request's head was the last
//                                     parsed: the bytes after it; reading stops until
//                                     detach() hands the socket to node
//  11, id                             the end of a read that left a response unfinished
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "common.h"
#include "parts.h"
#include "readiness.h"

// llhttp's C API as node carries it (llhttp 9). Only functions are used, and the
// settings struct's first slots; the parser itself is opaque storage, so its layout
// (which changed between 9.x releases) does not matter here. LlhttpWorks() checks the
// whole arrangement at load time; where it fails, H1Io is not exported and the proxy
// stays on node:net (h1-native.ts).
extern "C" {
typedef int (*tapir_llhttp_data_cb)(void* parser, const char* at, size_t length);
typedef int (*tapir_llhttp_cb)(void* parser);
void llhttp_init(void* parser, int type, const void* settings);
int llhttp_execute(void* parser, const char* data, size_t len);
int llhttp_finish(void* parser);
int llhttp_message_needs_eof(const void* parser);
int llhttp_should_keep_alive(const void* parser);
uint8_t llhttp_get_http_minor(void* parser);
uint8_t llhttp_get_method(void* parser);
int llhttp_get_status_code(void* parser);
uint8_t llhttp_get_upgrade(void* parser);
const char* llhttp_get_error_reason(const void* parser);
const char* llhttp_get_error_pos(const void* parser);
const char* llhttp_errno_name(int err);
}

namespace tapir {

namespace {

// llhttp_settings_t: function pointers, by slot. llhttp 9.3 put on_protocol after
// on_message_begin; 9.0-9.2 have none: `shift` (1 or 0) is found by the load-time check.
struct LlhttpSettings {
  void* slot[40];
};

enum Slot : int {
  kOnMessageBegin = 0,  // never shifted
  kOnUrl = 1,
  kOnStatus = 2,
  kOnHeaderField = 5,
  kOnHeaderValue = 6,
  kOnHeadersComplete = 9,
  kOnBody = 10,
  kOnMessageComplete = 11,
};

LlhttpSettings Settings(int shift, tapir_llhttp_cb begin, tapir_llhttp_data_cb url, tapir_llhttp_data_cb status,
                        tapir_llhttp_data_cb field, tapir_llhttp_data_cb value, tapir_llhttp_cb headers,
                        tapir_llhttp_data_cb body, tapir_llhttp_cb complete) {
  LlhttpSettings s{};
  s.slot[kOnMessageBegin] = reinterpret_cast<void*>(begin);
  s.slot[kOnUrl + shift] = reinterpret_cast<void*>(url);
  s.slot[kOnStatus + shift] = reinterpret_cast<void*>(status);
  s.slot[kOnHeaderField + shift] = reinterpret_cast<void*>(field);
  s.slot[kOnHeaderValue + shift] = reinterpret_cast<void*>(value);
  s.slot[kOnHeadersComplete + shift] = reinterpret_cast<void*>(headers);
  s.slot[kOnBody + shift] = reinterpret_cast<void*>(body);
  s.slot[kOnMessageComplete + shift] = reinterpret_cast<void*>(complete);
  return s;
}

constexpr int kRequest = 1;
constexpr int kResponse = 2;
constexpr int kOk = 0;
constexpr int kPausedUpgrade = 22;
constexpr size_t kParserBytes = 256;  // llhttp_t is ~80 bytes in every 9.x
constexpr size_t kMaxHeadBytes = 16 * 1024;  // node:http's --max-http-header-size
constexpr size_t kHighWater = 64 * 1024;
constexpr size_t kReadBytes = 64 * 1024;
constexpr int kReadsPerWakeup = 4;  // per socket, for fairness; epoll reports the rest again
constexpr size_t kSoftEvents = 4096;  // event values per poll: the arguments of one JS call
constexpr size_t kTextBody = 4096;  // response body pieces up to this go to JS as latin1 strings

enum Event : int32_t {
  kAccepted = 1,
  kRequestHead = 2,
  kResponseHead = 3,
  kBody = 4,
  kEnd = 5,
  kConnected = 6,
  kDrained = 7,
  kParseError = 8,
  kClosed = 9,
  kUpgrade = 10,
  kReadEnd = 11,
};

enum class Kind : uint8_t { kListener, kClient, kUpstream };

struct Conn;

// The parser's storage first, so that a callback's parser pointer leads to its Conn.
struct ParserBox {
  alignas(16) unsigned char raw[kParserBytes];
  void* owner;
};

struct Conn {
  ParserBox parser;
  uint32_t id = 0;
  int fd = -1;
  Kind kind = Kind::kClient;
  uint32_t mask = 0;  // the epoll events asked for
  bool wantRead = true;
  bool connecting = false;
  bool ending = false;  // shut the writing side once `out` is gone
  bool shut = false;
  bool behind = false;  // write() said false: kDrained when `out` empties
  bool dirty = false;
  bool stopped = false;  // a parse error or an upgrade: no more parsing
  bool skipBody = false;  // the request was a HEAD: its response has no body
  bool inMessage = false;
  bool headDone = false;  // in a body (header lines now are trailers)
  bool overflow = false;
  std::string out;
  size_t outOff = 0;
  std::string url;
  std::string reason;
  std::vector<std::string> lines;
  size_t headBytes = 0;
  std::string body;  // parsed in this read, not yet an event
  int status = 0;
};

LlhttpSettings gSettings;

// `text` (an IPv4 or IPv6 address) and `port` as a socket address; its family, or
// AF_UNSPEC when `text` is neither.
int SocketAddress(const std::string& text, uint32_t port, sockaddr_storage* ss, socklen_t* len) {
  *ss = sockaddr_storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return AF_INET;
  }
  if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return AF_INET6;
  }
  return AF_UNSPEC;
}

Conn* Of(void* parser) { return static_cast<Conn*>(reinterpret_cast<ParserBox*>(parser)->owner); }

}  // namespace

class H1Io : public Napi::ObjectWrap<H1Io> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "H1Io",
                       {InstanceMethod<&H1Io::OnReadable>("onReadable"),
                        InstanceMethod<&H1Io::Poll>("poll"),
                        InstanceMethod<&H1Io::Flush>("flush"),
                        InstanceMethod<&H1Io::Listen>("listen"),
                        InstanceMethod<&H1Io::Connect>("connect"),
                        InstanceMethod<&H1Io::Write>("write"),
                        InstanceMethod<&H1Io::End>("end"),
                        InstanceMethod<&H1Io::Destroy>("destroy"),
                        InstanceMethod<&H1Io::Reading>("reading"),
                        InstanceMethod<&H1Io::SkipBody>("skipBody"),
                        InstanceMethod<&H1Io::Detach>("detach"),
                        InstanceMethod<&H1Io::Close>("close")});
  }

  explicit H1Io(const Napi::CallbackInfo& info) : Napi::ObjectWrap<H1Io>(info) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) ThrowErrno(info.Env(), errno, "epoll_create1", "for the HTTP/1.1 sockets");
    readBuf_.resize(kReadBytes);
  }

  ~H1Io() { CloseAll(); }

  // The parser callbacks, on the Conn being parsed; events go to the array being built.
  static int OnMessageBegin(void* p) {
    Conn* c = Of(p);
    c->url.clear();
    c->reason.clear();
    c->lines.clear();
    c->headBytes = 0;
    c->headDone = false;
    c->inMessage = true;
    return 0;
  }

  static int Grow(Conn* c, size_t len) {
    if (c->headDone) return 0;
    c->headBytes += len;
    if (c->headBytes <= kMaxHeadBytes) return 0;
    c->overflow = true;
    return -1;
  }

  static int OnUrl(void* p, const char* at, size_t len) {
    Conn* c = Of(p);
    c->url.append(at, len);
    return Grow(c, len);
  }

  static int OnStatus(void* p, const char* at, size_t len) {
    Conn* c = Of(p);
    c->reason.append(at, len);
    return Grow(c, len);
  }

  static int OnHeaderField(void* p, const char* at, size_t len) {
    Conn* c = Of(p);
    // An even count: a name starts; odd: the name goes on (it came in pieces).
    if (c->lines.size() % 2 == 0) c->lines.emplace_back(at, len);
    else c->lines.back().append(at, len);
    return Grow(c, len);
  }

  static int OnHeaderValue(void* p, const char* at, size_t len) {
    Conn* c = Of(p);
    if (c->lines.size() % 2 == 1) c->lines.emplace_back(at, len);
    else c->lines.back().append(at, len);
    return Grow(c, len);
  }

  static int OnHeadersComplete(void* p) {
    Conn* c = Of(p);
    c->headDone = true;
    H1Io* io = current_;
    if (io == nullptr) return 0;  // the load-time check
    if (c->kind == Kind::kClient) {
      const int flags = (llhttp_should_keep_alive(p) ? 1 : 0) | (llhttp_get_upgrade(p) ? 2 : 0);
      io->Emit({io->Int(kRequestHead), io->Int(c->id), io->Int(llhttp_get_method(p)), io->Latin1(c->url),
                io->Int(llhttp_get_http_minor(p)), io->Int(flags)});
      io->Lines(c->lines);
      c->lines.clear();
      return 0;
    }
    c->status = llhttp_get_status_code(p);
    io->Emit({io->Int(kResponseHead), io->Int(c->id), io->Int(c->status), io->Latin1(c->reason),
              io->Bool(llhttp_should_keep_alive(p) != 0)});
    io->Lines(c->lines);
    c->lines.clear();
    return c->skipBody && c->status >= 200 ? 1 : 0;
  }

  static int OnBody(void* p, const char* at, size_t len) {
    Of(p)->body.append(at, len);
    return 0;
  }

  static int OnMessageComplete(void* p) {
    Conn* c = Of(p);
    H1Io* io = current_;
    if (io == nullptr) return 0;
    io->EmitBody(c);
    io->Emit({io->Int(kEnd), io->Int(c->id)});
    io->Lines(c->lines);
    c->lines.clear();
    c->headDone = false;
    c->inMessage = false;
    if (c->kind == Kind::kUpstream && c->status >= 200) c->skipBody = false;
    return 0;
  }

 private:
  int epfd_ = -1;
  Readiness readiness_;
  std::unordered_map<uint32_t, Conn*> conns_;
  uint32_t nextId_ = 1;
  std::vector<uint32_t> dirty_;
  bool starved_ = false;  // accept() ran out of descriptors: listeners wait for a close
  std::vector<char> readBuf_;
  // While poll() or flush() runs: the events array and its length.
  napi_env env_ = nullptr;
  // While poll() or flush() runs: the events, and the JS function they go to. They are
  // handed over as that function's arguments, in one call: an array built here would
  // cost N-API a generic property store per element.
  std::vector<napi_value> events_;
  napi_value sink_ = nullptr;
  static thread_local H1Io* current_;

  // Event values.
  napi_value Int(int64_t v) {
    napi_value out;
    napi_create_int64(env_, v, &out);
    return out;
  }
  napi_value Bool(bool v) {
    napi_value out;
    napi_get_boolean(env_, v, &out);
    return out;
  }
  napi_value Latin1(const std::string& s) {
    napi_value out;
    napi_create_string_latin1(env_, s.data(), s.size(), &out);
    return out;
  }
  // Header lines as events: their count, then each.
  void Lines(const std::vector<std::string>& lines) {
    events_.push_back(Int(static_cast<int64_t>(lines.size())));
    for (const std::string& line : lines) events_.push_back(Latin1(line));
  }
  napi_value Bytes(const char* data, size_t len) {
    napi_value out;
    void* copy;
    napi_create_buffer_copy(env_, len, data, &copy, &out);
    return out;
  }
  void Emit(std::initializer_list<napi_value> values) {
    events_.insert(events_.end(), values.begin(), values.end());
  }
  void EmitBody(Conn* c) {
    if (c->body.empty()) return;
    // A small piece of a response goes over as a latin1 string: a Buffer would be an
    // ArrayBuffer each, which every young-generation collection has to sweep (half of
    // its pause under a keep-alive load, --trace-gc-nvp's sweep_array_buffers).
    const bool text = c->kind == Kind::kUpstream && c->body.size() <= kTextBody;
    Emit({Int(kBody), Int(c->id), text ? Latin1(c->body) : Bytes(c->body.data(), c->body.size())});
    c->body.clear();
  }

  bool Begin(const Napi::CallbackInfo& info) {
    if (!info[0].IsFunction()) {
      ThrowType(info.Env(), "poll and flush need the function their events go to");
      return false;
    }
    env_ = info.Env();
    sink_ = info[0];
    events_.clear();
    current_ = this;
    return true;
  }
  // Hands the events over: sink(...events).
  Napi::Value Finish() {
    current_ = nullptr;
    if (events_.empty()) return Napi::Value();
    std::vector<napi_value> events;
    events.swap(events_);
    napi_value global, result;
    napi_get_global(env_, &global);
    napi_call_function(env_, global, sink_, events.size(), events.data(), &result);
    return Napi::Value();
  }

  Conn* Find(uint32_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second;
  }

  Conn* Add(int fd, Kind kind) {
    Conn* c = new Conn();
    c->parser.owner = c;
    c->fd = fd;
    c->kind = kind;
    do c->id = nextId_++; while (c->id == 0 || conns_.count(c->id) != 0);
    conns_[c->id] = c;
    if (kind == Kind::kClient) llhttp_init(c->parser.raw, kRequest, &gSettings);
    else if (kind == Kind::kUpstream) llhttp_init(c->parser.raw, kResponse, &gSettings);
    return c;
  }

  void Remove(Conn* c, bool closeFd) {
    conns_.erase(c->id);
    if (closeFd) close(c->fd);  // leaves the epoll set with it
    else epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd, nullptr);
    delete c;
    if (starved_ && closeFd) {
      // A descriptor is free: the listeners accept again.
      starved_ = false;
      for (auto& [id, l] : conns_) {
        if (l->kind != Kind::kListener || l->wantRead) continue;
        l->wantRead = true;
        UpdateMask(l);
      }
    }
  }

  // The socket is gone: its event, then the Conn.
  void Closed(Conn* c, int err) {
    Emit({Int(kClosed), Int(c->id), Int(err)});
    Remove(c, true);
  }

  void UpdateMask(Conn* c) {
    uint32_t mask = 0;
    if (c->wantRead && !c->stopped) mask |= EPOLLIN;
    if (c->connecting || c->outOff < c->out.size()) mask |= EPOLLOUT;
    if (mask == c->mask) return;
    epoll_event ev{};
    ev.events = mask;
    ev.data.u64 = c->id;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd, &ev);
    c->mask = mask;
  }

  bool Watch(Conn* c, uint32_t mask) {
    epoll_event ev{};
    ev.events = mask;
    ev.data.u64 = c->id;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c->fd, &ev) < 0) return false;
    c->mask = mask;
    return true;
  }

  // Writes what is queued; false when the socket broke (the Conn is gone).
  bool WriteOut(Conn* c) {
    while (c->outOff < c->out.size()) {
      ssize_t w = send(c->fd, c->out.data() + c->outOff, c->out.size() - c->outOff, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        c->outOff += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        UpdateMask(c);
        return true;
      }
      Closed(c, w < 0 ? errno : EPIPE);
      return false;
    }
    c->out.clear();
    c->outOff = 0;
    if (c->ending && !c->shut) {
      shutdown(c->fd, SHUT_WR);
      c->shut = true;
    }
    UpdateMask(c);
    if (c->behind) {
      c->behind = false;
      Emit({Int(kDrained), Int(c->id)});
    }
    return true;
  }

  // Parses `len` bytes read from `c`; false when `c` is gone.
  bool Parse(Conn* c, const char* data, size_t len) {
    const int rc = llhttp_execute(c->parser.raw, data, len);
    EmitBody(c);
    if (rc == kOk) {
      // (A response that ended in this read said so already.)
      if (c->kind == Kind::kUpstream && c->inMessage) Emit({Int(kReadEnd), Int(c->id)});
      return true;
    }
    c->stopped = true;
    UpdateMask(c);
    if (rc == kPausedUpgrade && c->kind == Kind::kClient) {
      const char* pos = llhttp_get_error_pos(c->parser.raw);
      const size_t used = pos != nullptr && pos >= data && pos <= data + len ? static_cast<size_t>(pos - data) : len;
      Emit({Int(kUpgrade), Int(c->id), Bytes(data + used, len - used)});
      return true;
    }
    const char* code = c->overflow ? "HPE_HEADER_OVERFLOW" : rc == kPausedUpgrade ? "HPE_UNEXPECTED_UPGRADE" : llhttp_errno_name(rc);
    const char* reason = c->overflow ? "Header overflow" : llhttp_get_error_reason(c->parser.raw);
    napi_value codeValue, reasonValue;
    napi_create_string_utf8(env_, code != nullptr ? code : "HPE_INTERNAL", NAPI_AUTO_LENGTH, &codeValue);
    napi_create_string_utf8(env_, reason != nullptr ? reason : "", NAPI_AUTO_LENGTH, &reasonValue);
    Emit({Int(kParseError), Int(c->id), codeValue, reasonValue});
    return true;
  }

  void ReadIn(Conn* c) {
    char* buf = readBuf_.data();
    for (int round = 0; round < kReadsPerWakeup; round++) {
      if (!c->wantRead || c->stopped) return;
      ssize_t r = recv(c->fd, buf, kReadBytes, MSG_DONTWAIT);
      if (r > 0) {
        // After end(), what a client still sends is not parsed (the answer said close).
        if (c->ending || c->shut) continue;
        if (!Parse(c, buf, static_cast<size_t>(r))) return;
        if (static_cast<size_t>(r) < kReadBytes) return;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (r == 0) {
        // A body delimited by the close ends here.
        if (c->kind == Kind::kUpstream && !c->stopped && llhttp_message_needs_eof(c->parser.raw)) llhttp_finish(c->parser.raw);
        Closed(c, 0);
        return;
      }
      Closed(c, errno);
      return;
    }
  }

  void Accept(Conn* listener) {
    for (int i = 0; i < 64; i++) {
      sockaddr_storage ss;
      socklen_t sl = sizeof ss;
      int fd = accept4(listener->fd, reinterpret_cast<sockaddr*>(&ss), &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: the pending connection stays readable, and epoll would
          // report it on every turn. The listener waits until a socket closes.
          listener->wantRead = false;
          UpdateMask(listener);
          starved_ = true;
        }
        return;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      Conn* c = Add(fd, Kind::kClient);
      if (!Watch(c, EPOLLIN)) {
        Remove(c, true);
        continue;
      }
      char text[INET6_ADDRSTRLEN] = "";
      if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, text, sizeof text);
      else if (ss.ss_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, text, sizeof text);
      napi_value address;
      napi_create_string_latin1(env_, text, NAPI_AUTO_LENGTH, &address);
      Emit({Int(kAccepted), Int(c->id), Int(listener->id), address});
    }
  }

  void CloseAll() {
    readiness_.Close();
    for (auto& [id, c] : conns_) {
      close(c->fd);
      delete c;
    }
    conns_.clear();
    if (epfd_ >= 0) close(epfd_);
    epfd_ = -1;
  }

  bool Open(Napi::Env env) {
    if (epfd_ >= 0) return true;
    ThrowType(env, "the HTTP/1.1 sockets are closed");
    return false;
  }

  Conn* Arg(const Napi::CallbackInfo& info) {
    return info[0].IsNumber() ? Find(info[0].As<Napi::Number>().Uint32Value()) : nullptr;
  }

  Napi::Value OnReadable(const Napi::CallbackInfo& info) {
    if (!Open(info.Env())) return info.Env().Undefined();
    if (!info[0].IsFunction()) {
      ThrowType(info.Env(), "onReadable needs a function");
      return info.Env().Undefined();
    }
    readiness_.SetCallback(info.Env(), epfd_, info[0].As<Napi::Function>());
    return info.Env().Undefined();
  }

  Napi::Value Poll(const Napi::CallbackInfo& info) {
    if (!Begin(info)) return Napi::Value();
    if (epfd_ < 0) return Finish();
    epoll_event evs[128];
    const int n = epoll_wait(epfd_, evs, 128, 0);
    // Past kSoftEvents, the sockets left wait for the next poll (epoll reports them again).
    for (int i = 0; i < n && events_.size() < kSoftEvents; i++) {
      Conn* c = Find(static_cast<uint32_t>(evs[i].data.u64));
      if (c == nullptr) continue;
      const uint32_t e = evs[i].events;
      if (c->kind == Kind::kListener) {
        Accept(c);
        continue;
      }
      if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (e & (EPOLLERR | EPOLLHUP)) != 0) {
          Closed(c, err != 0 ? err : ECONNREFUSED);
          continue;
        }
        if ((e & EPOLLOUT) == 0) continue;
        c->connecting = false;
        Emit({Int(kConnected), Int(c->id)});
        // A request written before the connection was up goes now.
        if (!WriteOut(c)) continue;
      } else if ((e & EPOLLOUT) != 0 && !WriteOut(c)) {
        continue;
      }
      if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) continue;
      if (c->wantRead && !c->stopped) {
        ReadIn(c);
      } else if ((e & (EPOLLHUP | EPOLLERR)) != 0) {
        // Not reading, and the socket is over: nothing will ever be read from it.
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        Closed(c, err);
      }
    }
    return Finish();
  }

  Napi::Value Flush(const Napi::CallbackInfo& info) {
    if (!Begin(info)) return Napi::Value();
    std::vector<uint32_t> ids;
    ids.swap(dirty_);
    for (uint32_t id : ids) {
      Conn* c = Find(id);
      if (c == nullptr) continue;
      c->dirty = false;
      if (!c->connecting) WriteOut(c);
    }
    return Finish();
  }

  void Queue(Conn* c) {
    if (c->dirty) return;
    c->dirty = true;
    dirty_.push_back(c->id);
  }

  // Appends a latin1 string argument to `out`.
  bool AppendText(Napi::Env env, napi_value v, std::string& out) {
    size_t len = 0;
    if (napi_get_value_string_latin1(env, v, nullptr, 0, &len) != napi_ok) {
      ThrowType(env, "write needs strings");
      return false;
    }
    const size_t at = out.size();
    out.resize(at + len + 1);
    napi_get_value_string_latin1(env, v, &out[at], len + 1, &len);
    out.resize(at + len);
    return true;
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Conn* c = Arg(info);
    if (c == nullptr || c->shut || c->ending) return Napi::Boolean::New(env, true);  // gone: as writes to a destroyed socket
    if (info[1].IsString() && !AppendText(env, info[1], c->out)) return env.Undefined();
    if (info[2].IsTypedArray()) {
      Napi::Uint8Array b = info[2].As<Napi::Uint8Array>();
      c->out.append(reinterpret_cast<const char*>(b.Data()), b.ByteLength());
    }
    if (info[3].IsString() && !AppendText(env, info[3], c->out)) return env.Undefined();
    Queue(c);
    if (c->out.size() - c->outOff < kHighWater) return Napi::Boolean::New(env, true);
    c->behind = true;
    return Napi::Boolean::New(env, false);
  }

  Napi::Value End(const Napi::CallbackInfo& info) {
    Conn* c = Arg(info);
    if (c != nullptr && !c->shut) {
      c->ending = true;
      Queue(c);
    }
    return info.Env().Undefined();
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Conn* c = Arg(info);
    if (c != nullptr) Remove(c, true);
    return info.Env().Undefined();
  }

  Napi::Value Reading(const Napi::CallbackInfo& info) {
    Conn* c = Arg(info);
    if (c != nullptr) {
      c->wantRead = info[1].ToBoolean().Value();
      UpdateMask(c);
    }
    return info.Env().Undefined();
  }

  Napi::Value SkipBody(const Napi::CallbackInfo& info) {
    Conn* c = Arg(info);
    if (c != nullptr) c->skipBody = true;
    return info.Env().Undefined();
  }

  // Hands the socket to node (an upgrade): [fd, output not yet written or null].
  Napi::Value Detach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Conn* c = Arg(info);
    if (c == nullptr) return env.Null();
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Number::New(env, c->fd));
    const size_t left = c->out.size() - c->outOff;
    out.Set(1u, left == 0 ? env.Null() : Napi::Buffer<char>::Copy(env, c->out.data() + c->outOff, left).As<Napi::Value>());
    Remove(c, false);
    return out;
  }

  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (!info[0].IsString() || !info[1].IsNumber()) {
      ThrowType(env, "listen(address, port, v6only)");
      return env.Undefined();
    }
    const std::string address = info[0].As<Napi::String>().Utf8Value();
    sockaddr_storage ss;
    socklen_t sl;
    const int family = SocketAddress(address, info[1].As<Napi::Number>().Uint32Value(), &ss, &sl);
    if (family == AF_UNSPEC) {
      ThrowType(env, "listen needs an IPv4 or IPv6 address");
      return env.Undefined();
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ThrowErrno(env, errno, "socket", address.c_str());
      return env.Undefined();
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) {
      int v6only = info[2].ToBoolean().Value() ? 1 : 0;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0 || listen(fd, 511) < 0) {
      const int err = errno;
      close(fd);
      ThrowErrno(env, err, "listen", address.c_str());
      return env.Undefined();
    }
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
    const uint16_t bound = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                                    : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    Conn* c = Add(fd, Kind::kListener);
    if (!Watch(c, EPOLLIN)) {
      const int err = errno;
      Remove(c, true);
      ThrowErrno(env, err, "epoll_ctl", address.c_str());
      return env.Undefined();
    }
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Number::New(env, c->id));
    out.Set(1u, Napi::Number::New(env, bound));
    return out;
  }

  // A connection to an endpoint: its id (kConnected or kClosed follows), or -errno.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (!info[0].IsString() || !info[1].IsNumber()) {
      ThrowType(env, "connect(ip, port)");
      return env.Undefined();
    }
    sockaddr_storage ss;
    socklen_t sl;
    const int family = SocketAddress(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Uint32Value(), &ss, &sl);
    if (family == AF_UNSPEC) return Napi::Number::New(env, -EINVAL);
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Napi::Number::New(env, -errno);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0 && errno != EINPROGRESS) {
      const int err = errno;
      close(fd);
      return Napi::Number::New(env, -err);
    }
    Conn* c = Add(fd, Kind::kUpstream);
    c->connecting = true;
    if (!Watch(c, EPOLLIN | EPOLLOUT)) {
      const int err = errno;
      Remove(c, true);
      return Napi::Number::New(env, -err);
    }
    return Napi::Number::New(env, c->id);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseAll();
    return info.Env().Undefined();
  }
};

thread_local H1Io* H1Io::current_ = nullptr;

namespace {

// Whether node's llhttp is there and laid out as declared above, with slots shifted
// by `shift`: a request and a response parsed through the settings, every callback
// where it should be. A callback in the wrong slot gets no (or garbage) span
// arguments; each checks that its span lies in the input before touching it.
struct Probe {
  ParserBox box;  // box.owner: the Probe
  const char* input = nullptr;
  size_t inputLen = 0;
  bool bad = false;
  std::string url, reason, lines, body;
  int heads = 0, ends = 0;
};

Probe* ProbeOf(void* p) { return static_cast<Probe*>(reinterpret_cast<ParserBox*>(p)->owner); }

std::string* Span(void* p, const char* at, size_t n, std::string Probe::*field) {
  Probe* pr = ProbeOf(p);
  if (at < pr->input || n > pr->inputLen || at + n > pr->input + pr->inputLen) {
    pr->bad = true;
    return nullptr;
  }
  return &(pr->*field);
}

bool ProbeParse(int shift, int type, const char* input, size_t len, Probe& pr) {
  const LlhttpSettings s = Settings(
      shift, [](void*) { return 0; },
      [](void* p, const char* at, size_t n) { if (auto* t = Span(p, at, n, &Probe::url)) t->append(at, n); return 0; },
      [](void* p, const char* at, size_t n) { if (auto* t = Span(p, at, n, &Probe::reason)) t->append(at, n); return 0; },
      [](void* p, const char* at, size_t n) { if (auto* t = Span(p, at, n, &Probe::lines)) t->append(at, n).append(":"); return 0; },
      [](void* p, const char* at, size_t n) { if (auto* t = Span(p, at, n, &Probe::lines)) t->append(at, n).append(";"); return 0; },
      [](void* p) { ProbeOf(p)->heads++; return 0; },
      [](void* p, const char* at, size_t n) { if (auto* t = Span(p, at, n, &Probe::body)) t->append(at, n); return 0; },
      [](void* p) { ProbeOf(p)->ends++; return 0; });
  pr.box.owner = &pr;
  pr.input = input;
  pr.inputLen = len;
  llhttp_init(pr.box.raw, type, &s);
  return llhttp_execute(pr.box.raw, input, len) == kOk && !pr.bad;
}

bool LlhttpWorks(int shift) {
  static const char kReq[] = "POST /probe?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab";
  Probe req;
  if (!ProbeParse(shift, kRequest, kReq, sizeof kReq - 1, req)) return false;
  if (req.url != "/probe?q=1" || req.lines != "Host:h;Content-Length:2;" || req.body != "ab" || req.heads != 1 || req.ends != 1) return false;
  if (llhttp_get_method(req.box.raw) != 3 || llhttp_get_http_minor(req.box.raw) != 1) return false;
  static const char kRes[] = "HTTP/1.1 203 Probe Reason\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT: v\r\n\r\n";
  Probe res;
  if (!ProbeParse(shift, kResponse, kRes, sizeof kRes - 1, res)) return false;
  return res.reason == "Probe Reason" && res.lines == "Transfer-Encoding:chunked;T:v;" && res.body == "x" && res.heads == 1 &&
         res.ends == 1 && llhttp_get_status_code(res.box.raw) == 203;
}

}  // namespace

void DefineH1Io(Napi::Env env, Napi::Object exports) {
  // node exports llhttp's symbols, which the addon binds lazily: a process without
  // them (another host) would fail at the first call, so they are looked up first.
  if (dlsym(RTLD_DEFAULT, "llhttp_execute") == nullptr || dlsym(RTLD_DEFAULT, "llhttp_errno_name") == nullptr) return;
  for (int shift : {1, 0}) {
    if (!LlhttpWorks(shift)) continue;
    gSettings = Settings(shift, H1Io::OnMessageBegin, H1Io::OnUrl, H1Io::OnStatus, H1Io::OnHeaderField,
                         H1Io::OnHeaderValue, H1Io::OnHeadersComplete, H1Io::OnBody, H1Io::OnMessageComplete);
    exports.Set("H1Io", H1Io::Define(env));
    return;
  }
}

}  // namespace tapir
