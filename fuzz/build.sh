#!/bin/sh
# Configures and builds the libFuzzer targets with clang (-DEMBER_FUZZ=ON) into BUILD: make fuzz
# uses build/fuzz, make test's fuzz_build test the fuzz/ tree beside its own build.
#   fuzz/build.sh BUILD [JOBS]
set -eu
[ $# -ge 1 ] || { echo "usage: $0 BUILD [JOBS]" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
command -v clang >/dev/null || { echo "fuzz/build.sh: no clang (deploy/install-deps.sh installs it)" >&2; exit 1; }
cmake -S "$src" -B "$1" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_FUZZ=ON \
  -DEMBER_TESTS=OFF >/dev/null
cmake --build "$1" -j"${2:-1}" --target fuzz_all
