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
    # Idempotent: a lab of that name that is already up is shown again, not rebuilt.
    name=tapir
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = --name ] && name=${args[$((i + 1))]:-tapir}; done
    if "$tapir" lab status --name "$name" >/dev/null 2>&1; then
      tapir_log "lab '$name' is already up (scripts/lab.sh down removes it)"
      "$tapir" lab status --name "$name"
    else
      "$tapir" lab up "$@"
    fi
    exec "$TAPIR_ROOT/scripts/node" "$TAPIR_ROOT/scripts/lab-demo.ts" --name "$name"
    ;;
  *) exec "$tapir" lab "$@" ;;
esac
