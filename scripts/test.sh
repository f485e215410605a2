#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), type-check, then every test under test/.
# Tests create their own network namespaces (prefix "tpt") and remove them, even on failure.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
tapir_setup
cd "$TAPIR_ROOT"
tapir_log "type-checking (tsc --noEmit)"
tsc --noEmit -p .
tapir_log "running tests"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(test/*.test.ts)
exec node --test --test-concurrency=2 --test-timeout=300000 "${files[@]}"
