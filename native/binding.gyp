# The native addon: TUN/TAP devices, batched UDP, a little rtnetlink and shared memory
# for the flow tables, and the Ingress proxy's HTTP/2 framing on nghttp2, for Linux only.
# N-API (ABI-stable) through node-addon-api, so one build serves every Node >= 24.
{
  "targets": [
    {
      "target_name": "tapir_native",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/readiness.cc",
        "src/tun.cc",
        "src/udp.cc",
        "src/netlink.cc",
        "src/shared-memory.cc",
        "src/malloc-trim.cc",
        "src/h2-session.cc",
        "src/h1-io.cc"
      ],
      # h2-session.cc compiles against nghttp2's header (libnghttp2-dev) and is not
      # linked to the library: node carries nghttp2 (node:http2 is built on it) and
      # exports its symbols, which the addon binds when it loads, as it binds N-API's.
      # h1-io.cc binds node's llhttp the same way, declaring the few functions it calls.
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "_GNU_SOURCE"
      ],
      # common.gypi asks for -O3 and gnu++20; the brief for this addon is C++17 at -O2.
      "cflags!": ["-O3"],
      "cflags_cc!": ["-O3", "-std=gnu++20", "-std=gnu++17"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra", "-fvisibility=hidden"]
    }
  ]
}
