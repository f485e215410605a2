#!/bin/sh
# The DaemonSet's install-cni init container: puts tapir-cni and Tapir's conflist onto
# the host, as Calico's and Cilium's installers do for theirs.
#
# tapir-cni is TypeScript run by Node.js, and a host has no Node.js 24 of its own, so
# the plugin goes to the host whole: this image's node binary, the shared libraries it
# links (its dynamic loader included, so the host's own glibc and libstdc++ do not
# matter), Tapir's src/ and package.json, in CNI_BIN_DIR/tapir-cni.d/ID (ID: a hash of
# all that, so an unchanged image installs nothing). CNI_BIN_DIR/tapir-cni is a
# small sh script that runs it through that loader.
#
# Every file the runtime may read appears whole or not at all: the bundle is built in a
# temporary directory and renamed into place, the entry script and the conflist are
# written to a temporary name in their own directory and renamed over the old ones
# (rename(2) is atomic within one file system). The conflist comes last, so that no
# runtime sees it before the plugin it names is there.
#
# Environment (the DaemonSet sets it; paths are inside this container):
#   CNI_BIN_DIR      the host's CNI plugin directory, mounted (/host/opt/cni/bin)
#   CNI_CONF_DIR     the host's CNI network configuration directory (/host/etc/cni/net.d)
#   CNI_CONF_NAME    the conflist's file name (10-tapir.conflist)
#   CNI_CONF_SOURCE  the conflist to install (/etc/tapir/10-tapir.conflist, from the ConfigMap)
#   CNI_EXCLUSIVE    "true": rename every other network configuration in CNI_CONF_DIR
#                    to NAME.tapir_bak, so that the runtime can only pick Tapir's
#   TAPIR_HOME       Tapir's installation in the image (/opt/tapir)
#   TAPIR_NODE       the node binary to copy (default: node on PATH)
set -eu

CNI_BIN_DIR=${CNI_BIN_DIR:-/host/opt/cni/bin}
CNI_CONF_DIR=${CNI_CONF_DIR:-/host/etc/cni/net.d}
CNI_CONF_NAME=${CNI_CONF_NAME:-10-tapir.conflist}
CNI_CONF_SOURCE=${CNI_CONF_SOURCE:-/etc/tapir/10-tapir.conflist}
CNI_EXCLUSIVE=${CNI_EXCLUSIVE:-false}
TAPIR_HOME=${TAPIR_HOME:-/opt/tapir}
TAPIR_NODE=${TAPIR_NODE:-$(command -v node || true)}

log() { printf 'install-cni: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ -n "$TAPIR_NODE" ] && [ -x "$TAPIR_NODE" ] || die "no node binary to install (TAPIR_NODE=${TAPIR_NODE:-unset}, none on PATH)"
[ -f "$TAPIR_HOME/src/cni/main.ts" ] || die "$TAPIR_HOME/src/cni/main.ts is missing: TAPIR_HOME must be Tapir's installation"
[ -d "$CNI_BIN_DIR" ] || die "CNI_BIN_DIR $CNI_BIN_DIR is not a directory (is the host's CNI bin directory mounted?)"
[ -d "$CNI_CONF_DIR" ] || die "CNI_CONF_DIR $CNI_CONF_DIR is not a directory (is the host's CNI configuration directory mounted?)"
[ -f "$CNI_CONF_SOURCE" ] || die "CNI_CONF_SOURCE $CNI_CONF_SOURCE does not exist (is the ConfigMap mounted?)"
case $CNI_CONF_NAME in
  */* | .* | '') die "CNI_CONF_NAME $CNI_CONF_NAME must be a plain file name" ;;
  *.conflist) ;;
  *) die "CNI_CONF_NAME $CNI_CONF_NAME must end in .conflist (it holds a plugin list)" ;;
esac
case $CNI_EXCLUSIVE in
  true | false) ;;
  *) die "CNI_EXCLUSIVE must be true or false, not $CNI_EXCLUSIVE" ;;
esac
# A conflist the runtime cannot parse would take every new pod on the node down with it.
"$TAPIR_NODE" -e 'const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); if (!Array.isArray(c.plugins) || typeof c.name !== "string") throw new Error("not a conflist: it needs name and plugins")' "$CNI_CONF_SOURCE" \
  || die "$CNI_CONF_SOURCE is not a valid conflist; nothing was installed"

# The bundle's identity: the node binary and every file of the plugin's code.
id=$(cd "$TAPIR_HOME" && {
  sha256sum "$TAPIR_NODE"
  find src -type f | LC_ALL=C sort | xargs sha256sum
  sha256sum package.json
} | sha256sum | cut -c1-16)

bundles="$CNI_BIN_DIR/tapir-cni.d"
bundle="$bundles/$id"
mkdir -p "$bundles"
if [ -d "$bundle" ]; then
  log "bundle $id is installed already"
else
  tmp="$bundles/.tmp-$id-$$"
  rm -rf "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lib" "$tmp/app"
  cp "$TAPIR_NODE" "$tmp/node"
  # The loader and every library `ldd` resolves for node (x86-64: ld-linux-x86-64.so.2;
  # arm64: ld-linux-aarch64.so.1). The loader is named by the line without "=>".
  loader=
  for f in $(ldd "$TAPIR_NODE" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    cp -L "$f" "$tmp/lib/"
    case $f in */ld-linux*) loader=${f##*/} ;; esac
  done
  [ -n "$loader" ] || die "ldd names no dynamic loader for $TAPIR_NODE"
  cp -R "$TAPIR_HOME/src" "$tmp/app/src"
  cp "$TAPIR_HOME/package.json" "$tmp/app/package.json"
  printf '%s\n' "$loader" >"$tmp/loader"
  chmod -R a+rX,go-w "$tmp"
  mv "$tmp" "$bundle"
  trap - EXIT
  log "installed bundle $id"
fi
loader=$(cat "$bundle/loader")

# The entry the runtime executes. It finds the bundle next to itself, so the host may
# mount its CNI directory anywhere.
entry="$CNI_BIN_DIR/tapir-cni"
previous=
[ -f "$entry" ] && previous=$(sed -n 's/^# bundle: //p' "$entry")
tmp_entry="$CNI_BIN_DIR/.tapir-cni.tmp.$$"
cat >"$tmp_entry" <<EOF
#!/bin/sh
# tapir-cni (CNI spec 1.1.0), installed by Tapir's install-cni init container: Node.js
# and the plugin's code from tapir-cni.d/, run through their own dynamic loader.
# bundle: $id
case \$0 in
  */*) dir=\${0%/*} ;;
  *) dir=\$(dirname "\$(command -v "\$0")") ;;
esac
b="\$dir/tapir-cni.d/$id"
exec "\$b/lib/$loader" --library-path "\$b/lib" "\$b/node" "\$b/app/src/cni/main.ts" "\$@"
EOF
chmod 0755 "$tmp_entry"
# The new entry must answer before it replaces the old one.
if ! out=$(CNI_COMMAND=VERSION "$tmp_entry" </dev/null 2>&1) || ! printf '%s' "$out" | grep -q '"supportedVersions"'; then
  rm -f "$tmp_entry"
  die "the installed plugin does not answer VERSION: $out"
fi
mv -f "$tmp_entry" "$entry"
log "installed $entry (bundle $id)"

# Older bundles go, but the one the previous entry named stays: a plugin started a
# moment ago from it may still be loading its files.
for d in "$bundles"/*; do
  [ -d "$d" ] || continue
  name=${d##*/}
  [ "$name" = "$id" ] || [ "$name" = "$previous" ] || { rm -rf "$d"; log "removed old bundle $name"; }
done

if [ "$CNI_EXCLUSIVE" = true ]; then
  for f in "$CNI_CONF_DIR"/*.conf "$CNI_CONF_DIR"/*.conflist "$CNI_CONF_DIR"/*.json; do
    [ -f "$f" ] || continue
    [ "${f##*/}" = "$CNI_CONF_NAME" ] && continue
    mv -f "$f" "$f.tapir_bak"
    log "renamed ${f##*/} to ${f##*/}.tapir_bak (CNI_EXCLUSIVE)"
  done
fi

tmp_conf="$CNI_CONF_DIR/.$CNI_CONF_NAME.tmp.$$"
cp "$CNI_CONF_SOURCE" "$tmp_conf"
chmod 0644 "$tmp_conf"
mv -f "$tmp_conf" "$CNI_CONF_DIR/$CNI_CONF_NAME"
log "installed $CNI_CONF_DIR/$CNI_CONF_NAME"
