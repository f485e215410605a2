#!/usr/bin/env bash
# Installs everything Tapir needs on this machine (root): Debian packages, Node.js 24,
# npm packages and the native addon. Idempotent; the README's commands call it.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
tapir_setup
