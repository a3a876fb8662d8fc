#!/usr/bin/env bash
# The main job: install what is missing, build, run the simulator's scenario suite and a seed
# sweep, and print their summaries. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-dependencies.sh

echo "== build (release)"
swift build -c release --product rivellum-sim

echo "== scenario suite"
.build/release/rivellum-sim scenarios scenarios

echo "== regression capsules (seeds that once failed, each replayed twice)"
.build/release/rivellum-sim regressions scenarios/regressions

echo "== exhaustive crash points (every operation x persistence variants, WAL)"
.build/release/rivellum-sim exhaustive --records 200

echo "== exhaustive crash points (engine: blocks, snapshot, restore; every operation x variants)"
.build/release/rivellum-sim exhaustive --workload engine --blocks 8 --lanes 2

echo "== seed sweep"
.build/release/rivellum-sim sweep --seeds "${RIVELLUM_SWEEP_SEEDS:-500}" --first-seed 1 --check-determinism --require-probes
