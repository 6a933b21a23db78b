#!/usr/bin/env bash
# One command: install what is missing, build, train the flagship example (examples/translate:
# dates into ISO 8601, an LSTM encoder-decoder with Bahdanau attention). Flags go to it (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_TARGETS=translate CMAKE_ARGS="-DCTGRAPH_BENCH=OFF ${CMAKE_ARGS:-}" ./scripts/setup.sh
./build/examples/translate "$@"
