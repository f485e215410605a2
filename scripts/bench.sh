#!/usr/bin/env bash
# The benchmark report: runs the suite (device, lab, proxy modes, services at scale,
# programming latency, DNS, ingress), every bench bounded in time, and writes a directory
# with the raw JSON, summary.md (medians, spreads, ratios against the kernel and peer
# baselines of the same run) and SVG plots. See bench/report.ts.
#   scripts/bench.sh [--quick] [--out DIR] [--only micro,services,device,lab,proxy-modes,
#                    proxy-modes-scale,programming-latency,dns-pod,ingress]
# --quick: one run of the lab benches with short windows (< 10 min on a 2-core VM);
# without it, at least 3 runs of everything. DIR defaults to /tmp/tapir-bench-<time>.
# scripts/bench.sh --render DIR writes summary.md and the plots again from DIR's JSON.
# scripts/bench.sh --merge --out DIR --only B,... runs B again into an earlier report's
# DIR (B's results replaced, the rest kept; summary.md names the later run and its commit).
# The benches create their own network namespaces and remove them, even on failure.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"
tapir_require_root
# Set-up only when something is missing (a machine that runs the tests has it all).
if [ ! -f "$TAPIR_ROOT/native/build/Release/tapir_native.node" ] || [ ! -d "$TAPIR_ROOT/node_modules" ] ||
  [ "$(tapir_node_major "$TAPIR_ROOT/scripts/node")" -lt 24 ]; then
  tapir_setup
fi
cd "$TAPIR_ROOT"
exec "$TAPIR_ROOT/scripts/node" bench/report.ts "$@"
