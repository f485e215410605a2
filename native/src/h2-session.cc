// The server side of an HTTP/2 connection for the Ingress proxy, on nghttp2 (the
// library node:http2 itself is built on), driven from JavaScript in batches:
//
//   new H2Session({ maxConcurrentStreams, maxHeaderListBytes })
//   pump(input | null, send) -> undefined | [output | null, ...events]
//   respond(id, status, lines, endStream) -> 0 | nghttp2 error (< 0) | -1 invalid field
//   write(id, buffer) -> bytes queued on the stream, or -1 when the stream is gone
//   end(id, trailerLines | null) -> 0 | -1
//   reset(id, code), consume(id, bytes), goaway(), close()
//
// node:http2 makes a Duplex stream, header objects and several JavaScript callbacks per
// request; here a request costs one entry in the array `pump` returns, and its response
// two or three calls in (respond, write, end) whose frames leave with everything else
// of the same turn in one buffer. TLS stays node's: JavaScript hands `pump` what the
// TLSSocket read and writes what `pump` returns.
//
// Events, flat in the returned array after the output (`id` is the stream id):
//   1, id, endStream, lines   a request head (lines: [name, value, ...], pseudo-headers
//                             first, as received; latin1 strings as node:http2's), or
//                             null for a head over maxHeaderListBytes (answer 431)
//   2, id, buffer             a piece of the request body (a copy)
//   3, id                     the end of the request body
//   4, id, errorCode          the stream closed (0: both sides ended it normally)
//   5, id                     the response's queued body fell under kLowWater (after a
//                             write reported more than kHighWater queued)
//   6, 0, code                the connection is over: nghttp2 failed (code < 0, its
//                             error), or it wants neither to read nor to write (0: both
//                             sides said GOAWAY, or nghttp2 ended the connection after
//                             a connection error, its GOAWAY in the output); write the
//                             output and close
//
// Flow control of request bodies is the caller's: nghttp2's automatic WINDOW_UPDATE is
// off, and `consume` returns a body's bytes to the windows once they were passed on,
// so a client faster than its endpoint is held back by HTTP/2 itself. Response bodies
// wait in their stream's queue until the peer's window lets them out (the data
// provider below), and trailers follow the last DATA frame when the response has any.
#include <nghttp2/nghttp2.h>
#include <string.h>

#include <string>
#include <unordered_set>
#include <vector>

#include "common.h"
#include "parts.h"

namespace tapir {

namespace {

constexpr size_t kHighWater = 64 * 1024;  // queued response bytes: write() reports the queue, JS waits
constexpr size_t kLowWater = 16 * 1024;   // ... until it drains under this (event 5)

enum Event : int32_t {
  kHead = 1,
  kData = 2,
  kBodyEnd = 3,
  kClosed = 4,
  kDrained = 5,
  kOver = 6,
};

// One stream's state, the stream's nghttp2 user data from its HEADERS to its close.
struct Stream {
  std::vector<std::string> lines;  // the request head as received: name, value, ...
  size_t headBytes = 0;
  bool overflow = false;  // the head passed maxHeadBytes_: its fields are dropped
  std::string out;  // the response body not yet framed; out[outOff..] is pending
  size_t outOff = 0;
  bool ended = false;  // end() came: no more body after `out`
  bool deferred = false;  // the data provider said NGHTTP2_ERR_DEFERRED
  bool wantDrain = false;
  std::vector<std::string> trailers;

  size_t Queued() const { return out.size() - outOff; }
};

// Builds nghttp2 name/value pairs over `lines` (which must outlive the call).
bool ToNv(const std::vector<std::string>& lines, size_t first, std::vector<nghttp2_nv>* nva) {
  for (size_t i = first; i + 1 < lines.size(); i += 2) {
    const std::string& n = lines[i];
    const std::string& v = lines[i + 1];
    auto* name = reinterpret_cast<uint8_t*>(const_cast<char*>(n.data()));
    auto* value = reinterpret_cast<uint8_t*>(const_cast<char*>(v.data()));
    if (nghttp2_check_header_name(name, n.size()) == 0 || nghttp2_check_header_value(value, v.size()) == 0) return false;
    nva->push_back({name, value, n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return true;
}

// Reads a JS array of strings as latin1 bytes (header names and values).
bool LinesArg(Napi::Env env, Napi::Value v, std::vector<std::string>* out) {
  if (!v.IsArray()) return false;
  Napi::Array a = v.As<Napi::Array>();
  uint32_t n = a.Length();
  out->reserve(out->size() + n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e = a.Get(i);
    size_t len = 0;
    if (napi_get_value_string_latin1(env, e, nullptr, 0, &len) != napi_ok) return false;
    std::string s(len, '\0');
    napi_get_value_string_latin1(env, e, s.data(), len + 1, &len);
    out->push_back(std::move(s));
  }
  return true;
}

napi_value Latin1(Napi::Env env, const std::string& s) {
  napi_value v;
  napi_create_string_latin1(env, s.data(), s.size(), &v);
  return v;
}

}  // namespace

class H2Session : public Napi::ObjectWrap<H2Session> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "H2Session",
                       {InstanceMethod<&H2Session::Pump>("pump"),
                        InstanceMethod<&H2Session::Respond>("respond"),
                        InstanceMethod<&H2Session::Write>("write"),
                        InstanceMethod<&H2Session::End>("end"),
                        InstanceMethod<&H2Session::Reset>("reset"),
                        InstanceMethod<&H2Session::Consume>("consume"),
                        InstanceMethod<&H2Session::Goaway>("goaway"),
                        InstanceMethod<&H2Session::Close>("close")});
  }

  explicit H2Session(const Napi::CallbackInfo& info) : Napi::ObjectWrap<H2Session>(info) {
    Napi::Env env = info.Env();
    uint32_t maxStreams = 128;
    if (info[0].IsObject()) {
      Napi::Object o = info[0].As<Napi::Object>();
      Napi::Value ms = o.Get("maxConcurrentStreams");
      if (ms.IsNumber()) maxStreams = ms.As<Napi::Number>().Uint32Value();
      Napi::Value mh = o.Get("maxHeaderListBytes");
      if (mh.IsNumber()) maxHeadBytes_ = mh.As<Napi::Number>().Uint32Value();
    }
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnStreamClose);
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rv = nghttp2_session_server_new2(&session_, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
      session_ = nullptr;
      Napi::Error::New(env, nghttp2_strerror(rv)).ThrowAsJavaScriptException();
      return;
    }
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, maxStreams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, maxHeadBytes_},
    };
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
  }

  ~H2Session() { Free(); }

 private:
  nghttp2_session* session_ = nullptr;
  uint32_t maxHeadBytes_ = 16 * 1024;
  // Set while pump() runs: where the callbacks put their events.
  napi_env env_ = nullptr;
  napi_value events_ = nullptr;
  uint32_t count_ = 0;
  std::unordered_set<Stream*> live_;

  void Free() {
    if (session_ == nullptr) return;
    // nghttp2_session_del calls no close callback: the streams still open are freed here.
    nghttp2_session_del(session_);
    session_ = nullptr;
    for (Stream* s : live_) delete s;
    live_.clear();
  }

  void Push(napi_value v) { napi_set_element(env_, events_, count_++, v); }
  void Push(int32_t n) {
    napi_value v;
    napi_create_int32(env_, n, &v);
    Push(v);
  }

  Stream* Get(int32_t id) { return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, id)); }

  bool Live(const Napi::CallbackInfo& info, int32_t* id) {
    if (session_ == nullptr || !info[0].IsNumber()) return false;
    *id = info[0].As<Napi::Number>().Int32Value();
    return true;
  }

  // nghttp2 callbacks (user_data is the H2Session).

  static int OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      auto* s = new Stream();
      static_cast<H2Session*>(user)->live_.insert(s);
      nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    }
    return 0;
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* self = static_cast<H2Session*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    // Trailers of a request body (HCAT_HEADERS) are not forwarded, as the HTTP/1.1 engine's.
    if (s == nullptr || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    if (s->overflow) return 0;
    // RFC 9113 6.5.2's size: name, value and 32 bytes per field. Over the limit the
    // SETTINGS announced, the request is answered 431, as node:http2 and the HTTP/1.1
    // engine answer it.
    s->headBytes += namelen + valuelen + 32;
    if (s->headBytes > self->maxHeadBytes_) {
      s->overflow = true;
      s->lines.clear();
      return 0;
    }
    s->lines.emplace_back(reinterpret_cast<const char*>(name), namelen);
    s->lines.emplace_back(reinterpret_cast<const char*>(value), valuelen);
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<H2Session*>(user);
    int32_t id = frame->hd.stream_id;
    bool endStream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
      Stream* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
      if (s == nullptr) return 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        napi_env env = self->env_;
        napi_value lines;
        if (s->overflow) {
          napi_get_null(env, &lines);
        } else {
          napi_create_array_with_length(env, s->lines.size(), &lines);
          for (size_t i = 0; i < s->lines.size(); i++) napi_set_element(env, lines, i, Latin1(env, s->lines[i]));
        }
        s->lines.clear();
        s->lines.shrink_to_fit();
        self->Push(kHead);
        self->Push(id);
        self->Push(endStream ? 1 : 0);
        self->Push(lines);
      } else if (endStream) {
        self->Push(kBodyEnd);
        self->Push(id);
      }
    } else if (frame->hd.type == NGHTTP2_DATA && endStream) {
      if (nghttp2_session_get_stream_user_data(session, id) == nullptr) return 0;
      self->Push(kBodyEnd);
      self->Push(id);
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len, void* user) {
    auto* self = static_cast<H2Session*>(user);
    if (nghttp2_session_get_stream_user_data(session, id) == nullptr) {
      // A stream the proxy is done with: its bytes go back to the connection's window.
      nghttp2_session_consume_connection(session, len);
      return 0;
    }
    napi_value buf;
    void* copy;
    napi_create_buffer_copy(self->env_, len, data, &copy, &buf);
    self->Push(kData);
    self->Push(id);
    self->Push(buf);
    return 0;
  }

  static int OnStreamClose(nghttp2_session* session, int32_t id, uint32_t code, void* user) {
    auto* self = static_cast<H2Session*>(user);
    auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
    if (s == nullptr) return 0;
    nghttp2_session_set_stream_user_data(session, id, nullptr);
    self->live_.erase(s);
    delete s;
    self->Push(kClosed);
    self->Push(id);
    self->Push(static_cast<int32_t>(code));
    return 0;
  }

  // The response body's data provider: what is queued, then EOF (and the trailers).
  static ssize_t ReadBody(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void* user) {
    auto* self = static_cast<H2Session*>(user);
    auto* s = static_cast<Stream*>(source->ptr);
    size_t n = s->Queued();
    if (n > length) n = length;
    if (n == 0 && !s->ended) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    memcpy(buf, s->out.data() + s->outOff, n);
    s->outOff += n;
    if (s->outOff == s->out.size()) {
      s->out.clear();
      s->outOff = 0;
    } else if (s->outOff > 64 * 1024) {
      s->out.erase(0, s->outOff);
      s->outOff = 0;
    }
    if (s->wantDrain && s->Queued() < kLowWater && self->env_ != nullptr) {
      s->wantDrain = false;
      self->Push(kDrained);
      self->Push(id);
    }
    if (s->ended && s->Queued() == 0) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!s->trailers.empty()) {
        std::vector<nghttp2_nv> nva;
        if (ToNv(s->trailers, 0, &nva) && nghttp2_submit_trailer(session, id, nva.data(), nva.size()) == 0) {
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
      }
    }
    return static_cast<ssize_t>(n);
  }

  // pump(input: Buffer | null, send: boolean)
  Napi::Value Pump(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (session_ == nullptr) return env.Undefined();
    env_ = env;
    napi_create_array(env, &events_);
    count_ = 1;  // [0] is the output
    int fatal = 0;
    if (info[0].IsBuffer()) {
      Napi::Buffer<uint8_t> in = info[0].As<Napi::Buffer<uint8_t>>();
      ssize_t rv = nghttp2_session_mem_recv(session_, in.Data(), in.Length());
      if (rv < 0) fatal = static_cast<int>(rv);
    }
    std::string out;
    if (info[1].ToBoolean().Value() || fatal != 0) {
      for (;;) {
        const uint8_t* p;
        ssize_t n = nghttp2_session_mem_send(session_, &p);
        if (n < 0) {
          if (fatal == 0) fatal = static_cast<int>(n);
          break;
        }
        if (n == 0) break;
        out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
      }
    }
    if (fatal != 0 || (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0)) {
      Push(kOver);
      Push(0);
      Push(fatal);
    }
    napi_value events = events_;
    uint32_t count = count_;
    env_ = nullptr;
    events_ = nullptr;
    if (count == 1 && out.empty()) return env.Undefined();
    napi_value first;
    if (out.empty()) {
      napi_get_null(env, &first);
    } else {
      void* data;
      napi_create_buffer_copy(env, out.size(), out.data(), &data, &first);
    }
    napi_set_element(env, events, 0, first);
    return Napi::Value(env, events);
  }

  // respond(id, status, lines, endStream)
  Napi::Value Respond(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t id;
    if (!Live(info, &id)) return Napi::Number::New(env, NGHTTP2_ERR_INVALID_STATE);
    Stream* s = Get(id);
    if (s == nullptr) return Napi::Number::New(env, NGHTTP2_ERR_STREAM_CLOSED);
    std::vector<std::string> lines{":status", std::to_string(info[1].As<Napi::Number>().Int32Value())};
    if (!LinesArg(env, info[2], &lines)) {
      ThrowType(env, "respond: lines must be an array of strings");
      return env.Undefined();
    }
    std::vector<nghttp2_nv> nva;
    if (!ToNv(lines, 0, &nva)) return Napi::Number::New(env, -1);
    bool endStream = info[3].ToBoolean().Value();
    nghttp2_data_provider provider;
    provider.source.ptr = s;
    provider.read_callback = ReadBody;
    int rv = nghttp2_submit_response(session_, id, nva.data(), nva.size(), endStream ? nullptr : &provider);
    return Napi::Number::New(env, rv);
  }

  // write(id, buffer)
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t id;
    Stream* s = Live(info, &id) ? Get(id) : nullptr;
    if (s == nullptr || s->ended || !info[1].IsBuffer()) return Napi::Number::New(env, -1);
    Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
    s->out.append(reinterpret_cast<const char*>(b.Data()), b.Length());
    Resume(id, s);
    size_t queued = s->Queued();
    if (queued > kHighWater) s->wantDrain = true;
    return Napi::Number::New(env, static_cast<double>(queued));
  }

  // end(id, trailerLines | null)
  Napi::Value End(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t id;
    Stream* s = Live(info, &id) ? Get(id) : nullptr;
    if (s == nullptr || s->ended) return Napi::Number::New(env, -1);
    if (info[1].IsArray() && !LinesArg(env, info[1], &s->trailers)) {
      ThrowType(env, "end: trailers must be an array of strings");
      return env.Undefined();
    }
    s->ended = true;
    Resume(id, s);
    return Napi::Number::New(env, 0);
  }

  void Resume(int32_t id, Stream* s) {
    if (!s->deferred) return;
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }

  // reset(id, code)
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    int32_t id;
    if (Live(info, &id)) {
      uint32_t code = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR);
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, code);
    }
    return info.Env().Undefined();
  }

  // consume(id, bytes): a body's bytes were passed on; the windows open again.
  Napi::Value Consume(const Napi::CallbackInfo& info) {
    int32_t id;
    if (Live(info, &id) && info[1].IsNumber()) {
      size_t n = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
      if (Get(id) != nullptr) nghttp2_session_consume(session_, id, n);
      else nghttp2_session_consume_connection(session_, n);
    }
    return info.Env().Undefined();
  }

  // goaway(): no new streams; those open finish (the proxy's stop()).
  Napi::Value Goaway(const Napi::CallbackInfo& info) {
    if (session_ != nullptr) {
      nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                            NGHTTP2_NO_ERROR, nullptr, 0);
    }
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Free();
    return info.Env().Undefined();
  }
};

Napi::Function DefineH2Session(Napi::Env env) { return H2Session::Define(env); }

}  // namespace tapir
