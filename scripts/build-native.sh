#!/usr/bin/env bash
# Builds native/ (the TUN/TAP and batched-UDP addon) with node-gyp against the headers
# of the Node.js that runs Tapir. Called by scripts/setup.sh; safe to run by hand.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
[ -n "${TAPIR_NODEDIR:-}" ] || tapir_ensure_node
cd "$TAPIR_ROOT/native"
exec node "$TAPIR_ROOT/node_modules/node-gyp/bin/node-gyp.js" rebuild --nodedir="$TAPIR_NODEDIR" -j 2
