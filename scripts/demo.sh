#!/usr/bin/env bash
# One command: install what is missing, build, train the flagship example.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_TARGETS=spiral CMAKE_ARGS="-DCTGRAPH_BENCH=OFF ${CMAKE_ARGS:-}" ./scripts/setup.sh
./build/examples/spiral "$@"
