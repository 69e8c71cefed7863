#!/bin/sh
# Installs the Debian packages ember needs to build, test and benchmark.
# Idempotent: asks dpkg first and only calls apt-get for what is missing.
#   deploy/install-deps.sh              build + test dependencies
#   deploy/install-deps.sh --build-only only what building emberd/ember needs (-DEMBER_TESTS=OFF);
#                                       the Dockerfile's build stage uses it
#   deploy/install-deps.sh --bench      also h2load (nghttp2-client) for bench/serve.py (python3-torch
#                                       and numpy, which the PyTorch benchmarks use, are test packages)
#   deploy/install-deps.sh --runtime    only the shared libraries emberd/ember need at run time
set -eu

# build: the library, CLI and server (libpng: ember plot writes PNGs); test: the unit tests'
# framework and what the integration tests drive the binaries with (openssl: test_auth.py
# makes its certificates), and clang with its runtimes (libclang-rt-dev: libFuzzer and the
# sanitizers) for the fuzz targets, which make test smokes and make fuzz runs; nginx and
# haproxy: the balancers test_cluster.py puts in front of three emberd replicas (run by the
# test as the current user, never as services); docker-compose and yamllint: the offline
# checks of deploy/compose/ and deploy/k8s/ (docs/cluster.md); numpy, pip, setuptools and wheel:
# the Python package python/ember_client and the offline build of its wheel and sdist
# (docs/client-python.md); python3-torch: python/ember_torch, which test_torch.py checks
# against ember (docs/torch.md); valgrind: test_net_simd_valgrind (tests/CMakeLists.txt)
build="build-essential cmake pkg-config libopenblas-dev libzip-dev libjansson-dev libpng-dev
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler libuv1-dev grpc-proto"
test="libcmocka-dev python3 python3-grpcio python3-grpc-tools openssl clang libclang-rt-dev
  nginx haproxy docker-compose yamllint python3-numpy python3-pip python3-setuptools python3-wheel
  python3-torch valgrind"
runtime="libopenblas0-pthread libzip4 libjansson4 libpng16-16 libgrpc29 libprotobuf-c1 libuv1"
bench="nghttp2-client"

# kubectl for the offline check of deploy/k8s: Debian's kubernetes-client, unless a kubectl
# from elsewhere (Kubernetes' own packages) is already installed, which it would conflict with
command -v kubectl > /dev/null 2>&1 || test="$test kubernetes-client"
want="$build $test"
case "${1:-}" in
  --bench) want="$build $test $bench" ;;
  --build-only) want="$build" ;;
  --runtime) want="$runtime" ;;
  "") ;;
  *) echo "usage: $0 [--build-only|--bench|--runtime]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-deps: missing packages:$missing (run as root)" >&2; exit 1
  fi
else SUDO=""; fi
echo "install-deps: installing$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
