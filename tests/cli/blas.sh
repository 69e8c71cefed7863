# OpenBLAS's kernels: a CPU newer than the tables of the OpenBLAS in use gets the CPU's own
# kernels (ember runs itself again with OPENBLAS_CORETYPE set, lib/src/base.c), not the generic
# pre-AVX ones; a user's OPENBLAS_CORETYPE stands; the answers do not depend on how ember was
# started.
. "$(dirname "$0")/common.inc"

core() { sed -n 's/.*(OpenBLAS kernels: \([^)]*\)).*/\1/p'; }
mine=$(env -u OPENBLAS_CORETYPE "$EMBER" --version | core)
[ -n "$mine" ] || fail "--version names no kernels: $("$EMBER" --version)"
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { echo " $flags " | grep -q " $1 "; }
if has avx512f && has avx512bw && has avx512dq && has avx512vl; then
  case $mine in SkylakeX | Cooperlake | SapphireRapids | Zen) ;; *) fail "an AVX-512 CPU got the $mine kernels" ;; esac
elif has avx2 && has fma; then
  case $mine in Prescott | Core2 | Penryn | Dunnington | Nehalem | Sandybridge | Atom) fail "an AVX2 CPU got the $mine kernels" ;; esac
fi
simd="no AVX2"; has avx2 && simd=AVX2; has avx512f && simd=AVX-512
echo "ok - this CPU ($simd) runs the $mine kernels"

[ "$(OPENBLAS_CORETYPE=Prescott "$EMBER" --version | core)" = Prescott ] || fail "OPENBLAS_CORETYPE=Prescott was not honoured"
echo "ok - a user's OPENBLAS_CORETYPE stands"

# ... but `ember bench` says when it loads narrower kernels than the CPU's widest (bench CORE,
# or - for none)
bench() {
  if [ "$1" = - ]; then set -- -u OPENBLAS_CORETYPE; else set -- OPENBLAS_CORETYPE="$1"; fi
  env "$@" "$EMBER" bench infer --samples 16 --iters 1 --width 16 --threads 1 --reps 1 --warmup 0 > "$T/bench.out" 2> "$T/bench.err"
}
warned() { grep -q "OPENBLAS_CORETYPE=$1 in the environment loads OpenBLAS's $1 kernels; this CPU takes the $2 family's" "$T/bench.err"; }
bench -
[ ! -s "$T/bench.err" ] || fail "ember bench warned with no OPENBLAS_CORETYPE: $(cat "$T/bench.err")"
bench "$mine"
[ ! -s "$T/bench.err" ] || fail "ember bench warned under the CPU's own $mine kernels: $(cat "$T/bench.err")"
if has avx512f && has avx512bw && has avx512dq && has avx512vl; then
  bench Haswell
  warned Haswell SkylakeX || fail "no warning for the Haswell kernels on an AVX-512 CPU: $(cat "$T/bench.err")"
  grep -q '^infer .*blas=Haswell' "$T/bench.out" || fail "ember bench did not run after its warning: $(cat "$T/bench.out")"
  echo "ok - ember bench warns that OPENBLAS_CORETYPE=Haswell is narrower than this CPU's kernels"
elif has avx2 && has fma; then
  bench Prescott
  warned Prescott Haswell || fail "no warning for the Prescott kernels on an AVX2 CPU: $(cat "$T/bench.err")"
  echo "ok - ember bench warns that OPENBLAS_CORETYPE=Prescott is narrower than this CPU's kernels"
fi

# the same answers whether ember chose the kernels or was told them
printf 'x,y\n' > "$T/d.csv"
awk 'BEGIN { srand(2); for (i = 0; i < 300; i++) { x = 2 * rand() - 1; printf "%.5f,%.5f\n", x, (x > 0 ? 1 : -1) + 0.3 * x } }' >> "$T/d.csv"
env -u OPENBLAS_CORETYPE "$EMBER" train --data "$T/d.csv" --y-dim 1 --steps 30 --batch 32 --negatives 16 --width 32 --seed 3 --threads 2 --quiet --out "$T/b.safetensors"
OPENBLAS_CORETYPE=$mine "$EMBER" train --data "$T/d.csv" --y-dim 1 --steps 30 --batch 32 --negatives 16 --width 32 --seed 3 --threads 2 --quiet --out "$T/c.safetensors"
cmp -s "$T/b.safetensors" "$T/c.safetensors" || fail "training differs between chosen and given $mine kernels"
echo "ok - the chosen kernels are the ones OPENBLAS_CORETYPE=$mine gives"
