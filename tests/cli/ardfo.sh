# Method B through the CLI: on an 8-dimensional y whose coordinates depend on x and on each
# other discontinuously, an ardfo model gets more rows entirely right than a dfo model trained
# the same way and queried with the same number of samples; its checkpoint and info say what
# it is; bad options are refused.
. "$(dirname "$0")/common.inc"

# y0 = +-0.5 by the sign of x0 + 0.3 x1; y_j = 0.9 (y_{j-1} - 0.6 if y_{j-1} > 0 else
# y_{j-1} + 0.7) + 0.1 x_{j mod 2}
gen='function ys(x0, x1,   j, p, s) { p = (x0 > 0 ? 0.5 : -0.5) + 0.3 * x1; s = sprintf("%.6f", p);
    for (j = 1; j < 8; j++) { p = 0.9 * (p > 0 ? p - 0.6 : p + 0.7) + 0.1 * (j % 2 ? x1 : x0); s = s sprintf(",%.6f", p) }
    return s }'
awk "$gen"' BEGIN { srand(3); print "x0,x1,y0,y1,y2,y3,y4,y5,y6,y7";
  for (i = 0; i < 4000; i++) { a = 2 * rand() - 1; b = 2 * rand() - 1; printf "%.6f,%.6f,%s\n", a, b, ys(a, b) } }' > "$T/train.csv"
awk "$gen"' BEGIN { srand(8); for (i = 0; i < 200; i++) { a = 2 * rand() - 1; b = 2 * rand() - 1;
  printf "%.6f,%.6f\n", a, b > "'"$T"'/x.csv"; print ys(a, b) > "'"$T"'/truth.csv" } }'

common="--data $T/train.csv --y-dim 8 --steps 800 --batch 128 --negatives 64 --width 64 --seed 2 --threads 2 --quiet"
"$EMBER" train $common --method ardfo --samples 2048 --out "$T/ar.safetensors"  # equal samples: dfo predicts with 2048
"$EMBER" train $common --method dfo --out "$T/dfo.safetensors"
"$EMBER" predict --model "$T/ar.safetensors" --input "$T/x.csv" --seed 1 > "$T/ar.csv"
"$EMBER" predict --model "$T/dfo.safetensors" --input "$T/x.csv" --samples 2048 --seed 1 > "$T/dfo.csv"
# rows whose every coordinate is within 0.1 of the truth, and the mean absolute error
score='NR > 1 { getline t < truth; n = split(t, v, ","); worst = 0;
  for (j = 1; j <= n; j++) { e = $j - v[j]; if (e < 0) e = -e; sum += e; if (e > worst) worst = e }
  rows++; if (worst < 0.1) good++ } END { printf "%d %.4f\n", good, sum / (rows * 8) }'
set -- $(awk -F, -v truth="$T/truth.csv" "$score" "$T/ar.csv"); ar_good=$1 ar_err=$2
set -- $(awk -F, -v truth="$T/truth.csv" "$score" "$T/dfo.csv"); dfo_good=$1 dfo_err=$2
echo "2048 samples per row: ardfo $ar_good of 200 rows right (mean error $ar_err), dfo $dfo_good (mean error $dfo_err)"
[ "$ar_good" -ge $((2 * dfo_good)) ] && [ "$ar_good" -ge 150 ] || fail "ardfo does not beat dfo: $ar_good vs $dfo_good rows"
awk -v a="$ar_err" -v d="$dfo_err" 'BEGIN { exit !(a < d) }' || fail "ardfo mean error $ar_err, dfo $dfo_err"
echo "ok - ardfo beats dfo at equal samples on an 8-D discontinuous task"

"$EMBER" info --model "$T/ar.safetensors" > "$T/info.txt"
grep -q '^method  *ardfo' "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q 'samples 2048, iters 3, sigma 0.33, shrink 0.5, temperature 1' "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q '^prefix nets  *0.5 of the counter-examples near the true prefix, noise 0.3' "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q 'parameters in 8 nets, one per y-prefix' "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q '"nets.7.out.weight"' "$T/ar.safetensors" || fail "checkpoint lacks nets.7.*"
"$EMBER" sample --model "$T/ar.safetensors" --input "$T/x.csv" --modes 2 --seed 1 > "$T/modes.csv"
[ "$(head -1 "$T/modes.csv")" = "row,rank,energy,weight,y0,y1,y2,y3,y4,y5,y6,y7" ] || fail "sample header"
[ "$(awk -F, 'NR > 1 && $2 == 0' "$T/modes.csv" | wc -l)" -eq 200 ] || fail "sample: not one best mode per row"
"$EMBER" predict --model "$T/ar.safetensors" --input "$T/x.csv" --seed 1 --threads 1 > "$T/ar1.csv"
cmp -s "$T/ar.csv" "$T/ar1.csv" || fail "ardfo answers depend on the thread count"
echo "ok - ardfo checkpoint, info, sample, thread-independent answers"

expect_error "ardfo with spectral norm" "spectral normalisation is not available for ardfo" "$EMBER" train $common --method ardfo --steps 1 --spectral-norm --out "$T/x.safetensors"
expect_error "bad prefix share" "share of counter-examples" "$EMBER" train $common --method ardfo --steps 1 --prefix-share 2 --out "$T/x.safetensors"
expect_error "prefix option for dfo" "--prefix-share applies to --method ardfo only" "$EMBER" train $common --method dfo --prefix-share 0.2 --out "$T/x.safetensors"
expect_error "chain option for ardfo" "--chain-steps applies to --method langevin only" "$EMBER" train $common --method ardfo --chain-steps 3 --out "$T/x.safetensors"
