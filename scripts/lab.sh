#!/usr/bin/env bash
# The main job: set up this machine (idempotent), bring up the default multi-node lab
# wired by Tapir agents, and show pods talking across nodes.
#   scripts/lab.sh          set up + lab up + a short traffic demo
#   scripts/lab.sh down     remove the lab
#   scripts/lab.sh ARGS...  any other `tapir lab` subcommand
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
tapir_setup
tapir="$TAPIR_ROOT/bin/tapir"
case "${1:-up}" in
  up)
    shift || true
    "$tapir" lab up "$@"
    exec "$TAPIR_ROOT/scripts/node" "$TAPIR_ROOT/scripts/lab-demo.ts" "$@"
    ;;
  *) exec "$tapir" lab "$@" ;;
esac
