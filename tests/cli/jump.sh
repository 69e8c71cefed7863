# A 1-D function with a jump: the implicit (dfo) model keeps it sharp, the explicit (mse)
# baseline strands predictions between the two levels.
. "$(dirname "$0")/common.inc"

# y = 1 for x < 0.3, y = 4 for x >= 0.3, slopes of 0.5 on both sides, on x in [-1, 1]
awk 'BEGIN { srand(11); print "x,y:y";
  for (i = 0; i < 1500; i++) { x = 2 * rand() - 1; y = (x < 0.3 ? 1 : 4) + 0.5 * x; printf "%.6f,%.6f\n", x, y } }' > "$T/jump.csv"
# a fine grid across the jump and a coarse one away from it
awk 'BEGIN { print "x"; for (i = 0; i <= 100; i++) printf "%.4f\n", 0.2 + 0.2 * i / 100;
  for (i = 0; i <= 20; i++) printf "%.4f\n", -0.9 + 0.05 * i }' > "$T/grid.csv"

common="--data $T/jump.csv --steps 800 --batch 128 --width 64 --depth 2 --seed 3 --threads 2 --quiet"
"$EMBER" train $common --negatives 64 --out "$T/ebm.safetensors"
"$EMBER" train $common --method mse --out "$T/mse.safetensors"
"$EMBER" predict --model "$T/ebm.safetensors" --input "$T/grid.csv" --samples 2048 --seed 1 > "$T/ebm.csv"
"$EMBER" predict --model "$T/mse.safetensors" --input "$T/grid.csv" > "$T/mse.csv"
[ "$(head -1 "$T/ebm.csv")" = "y" ] || fail "predict header: $(head -1 "$T/ebm.csv")"
[ "$(wc -l < "$T/ebm.csv")" -eq 123 ] || fail "expected 122 predictions"

# stranded: more than 0.5 away from both levels at that x; error: distance to the true y
# away from the jump (|x - 0.3| > 0.05)
check='NR > 1 { getline x < grid; if (x == "x") getline x < grid;
  lo = 1 + 0.5 * x; hi = 4 + 0.5 * x; y = $1;
  if ((y - lo) ^ 2 > 0.25 && (y - hi) ^ 2 > 0.25) stranded++;
  d = x - 0.3; if (d * d > 0.0025) { t = (x < 0.3 ? lo : hi); e = y - t; if (e < 0) e = -e; if (e > maxerr) maxerr = e } }
  END { printf "%d %.4f\n", stranded, maxerr }'
set -- $(awk -v grid="$T/grid.csv" "$check" "$T/ebm.csv")
ebm_stranded=$1 ebm_err=$2
set -- $(awk -v grid="$T/grid.csv" "$check" "$T/mse.csv")
mse_stranded=$1
echo "dfo: $ebm_stranded stranded, max error away from the jump $ebm_err; mse: $mse_stranded stranded"
[ "$ebm_stranded" -eq 0 ] || fail "the implicit model strands $ebm_stranded predictions in the gap"
awk -v e="$ebm_err" 'BEGIN { exit !(e < 0.15) }' || fail "implicit model error $ebm_err away from the jump"
[ "$mse_stranded" -ge 2 ] || fail "the mse baseline should interpolate across the jump (stranded $mse_stranded)"
echo "ok - jump kept sharp by dfo, smeared by mse"
# an explicit model has no energy: sample and predict --energy refuse it
if "$EMBER" sample --model "$T/mse.safetensors" --input "$T/grid.csv" --modes 3 > "$T/out" 2> "$T/err"; then
  fail "sample accepted an mse model"
fi
grep -q "explicit (mse) model" "$T/err" || fail "sample on mse: $(cat "$T/err")"
echo "ok - sample refuses the mse model"
# sample-then-refine works for DFO models too; Langevin-only options are refused for them
"$EMBER" predict --model "$T/ebm.safetensors" --input "$T/grid.csv" --samples 2048 --seed 1 --energy > "$T/plain.csv"
"$EMBER" predict --model "$T/ebm.safetensors" --input "$T/grid.csv" --samples 2048 --seed 1 --energy --refine 10 > "$T/refined.csv"
paste -d, "$T/plain.csv" "$T/refined.csv" | awk -F, 'NR > 1 { if ($4 > $2 + 1e-6) bad = 1; if ($4 < $2) lower++ }
  END { printf "refine: %d of 122 answers lower in energy\n", lower; exit bad || lower < 10 }' || fail "refined: $(paste -d, "$T/plain.csv" "$T/refined.csv")"
if "$EMBER" predict --model "$T/ebm.safetensors" --input "$T/grid.csv" --chain-steps 5 > "$T/out" 2> "$T/err"; then
  fail "--chain-steps accepted for a dfo model"
fi
grep -q "applies to Langevin models only" "$T/err" || fail "chain-steps on dfo: $(cat "$T/err")"
echo "ok - refine lowers dfo answers' energy; Langevin options refused for dfo"
