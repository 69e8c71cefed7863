# ember bench infer and train (the numbers are the benchmark's business; here: each mode runs,
# prints its key=value line with positive figures, and refuses bad options with a reason).
. "$(dirname "$0")/common.inc"

field() { tr ' ' '\n' < "$T/out" | sed -n "s/^$1=//p"; }
positive() {
  v=$(field "$1")
  awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }' || fail "$2: $1=$v in: $(cat "$T/out")"
}

"$EMBER" bench infer --width 16 --samples 64 --reps 3 --warmup 1 --threads 1 > "$T/out"
positive p50_ms "bench infer"
positive queries_per_s "bench infer"
"$EMBER" bench infer --image 12x12x3 --conv 4:3:2 --head pool --width 16 --samples 64 --reps 3 --warmup 1 --threads 1 > "$T/out"
[ "$(field image)" = 12x12x3 ] && [ "$(field x_dim)" = 4 ] || fail "bench infer --image: $(cat "$T/out")"
positive encode_p50_ms "bench infer --image"
positive p50_ms "bench infer --image"
# open loop: 20 calls due 5 ms apart take at least 95 ms, however fast each one is
"$EMBER" bench infer --width 16 --samples 64 --reps 20 --warmup 1 --threads 1 --rate 200 > "$T/out"
[ "$(field rate)" = 200 ] || fail "bench infer --rate: no rate=200 in: $(cat "$T/out")"
awk -v q="$(field queries_per_s)" 'BEGIN { exit !(q > 0 && q <= 20 / 0.095) }' ||
  fail "bench infer --rate 200: 20 calls were not paced: $(cat "$T/out")"
positive p99_ms "bench infer --rate"
echo "ok - bench infer, vectors and images, back to back and in an open loop"

"$EMBER" bench train --width 16 --batch 8 --negatives 4 --rows 32 --steps 2 --warmup 0 --threads 1 > "$T/out"
positive steps_per_s "bench train"
"$EMBER" bench train --image 12x12x3 --conv 4:3:2 --width 16 --batch 8 --negatives 4 --rows 32 --steps 2 --warmup 0 --threads 1 > "$T/out"
[ "$(field x_dim)" = 8 ] || fail "bench train --image: x_dim is not the 8 soft-argmax features: $(cat "$T/out")"
positive images_per_s "bench train --image"
echo "ok - bench train, vectors and images"

expect_error "bad --image" "--image must be HxWxC" "$EMBER" bench infer --image 12x12 --reps 1
expect_error "kernel too big" "does not fit" "$EMBER" bench train --image 4x4x3 --conv 4:5:1 --steps 1
expect_error "bad head" "--head must be softargmax or pool" "$EMBER" bench infer --image 12x12x3 --head max --reps 1
expect_error "ardfo images" "image models are dfo" "$EMBER" bench infer --image 12x12x3 --method ardfo --reps 1
expect_error "negative rate" "--rate must be" "$EMBER" bench infer --rate -5 --reps 1
