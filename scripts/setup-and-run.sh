#!/usr/bin/env bash
# The main job: install what is missing, build, run the simulator's seed sweep (and, once they
# exist, the scenario suite) and print the summary. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-dependencies.sh

echo "== build (release)"
swift build -c release --product rivellum-sim

echo "== seed sweep"
.build/release/rivellum-sim sweep --seeds "${RIVELLUM_SWEEP_SEEDS:-500}" --first-seed 1 --check-determinism
