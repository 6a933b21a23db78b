#!/usr/bin/env bash
# Installs the Debian 12 packages ctgraph needs (only those missing), then configures
# and builds in ./build (Release). Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: compiler, CMake, fmt, Boost (Hana), nlohmann-json (checkpoint headers), CLI11 (the
# example's flags), Catch2 and Google Benchmark, Open MPI (data-parallel training and its tests,
# which mpirun runs); run: gnuplot draws the example's loss curve,
# Graphviz renders graphs, Doxygen builds the docs. EXTRA_PACKAGES adds more (test.sh adds
# python3-torch, the reference for optimizer and checkpoint tests, and clang + libomp-dev for the
# clang compile-time guard).
packages=(g++ cmake make pkg-config libboost-dev libfmt-dev nlohmann-json3-dev libcli11-dev catch2 libbenchmark-dev
  libopenblas-dev libopenmpi-dev openmpi-bin gnuplot-nox graphviz doxygen ${EXTRA_PACKAGES:-})
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" ${BUILD_TARGETS:+--target $BUILD_TARGETS}
