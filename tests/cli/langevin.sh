# Method C through the CLI: a Langevin-trained model keeps a jump sharp and returns both
# branches of the circle; its checkpoint records the chain settings; training is reproducible.
. "$(dirname "$0")/common.inc"

awk 'BEGIN { srand(5); print "x,y:y";
  for (i = 0; i < 2000; i++) { x = 2 * rand() - 1; s = rand() < 0.5 ? -1 : 1; printf "%.6f,%.6f\n", x, s * sqrt(1 - x * x) } }' > "$T/circle.csv"
awk 'BEGIN { print "x"; for (i = -6; i <= 6; i++) printf "%.2f\n", i / 10 }' > "$T/grid.csv"
args="--method langevin --steps 800 --batch 64 --negatives 16 --width 64 --chain-steps 20 --seed 1 --threads 2 --quiet"
"$EMBER" train --data "$T/circle.csv" --out "$T/circle.safetensors" $args
"$EMBER" sample --model "$T/circle.safetensors" --input "$T/grid.csv" --modes 2 --seed 3 > "$T/modes.csv"
awk -F, 'NR == FNR { if (FNR > 1) xs[FNR - 2] = $1; next }
  FNR > 1 { r = $1; n[r]++; t = sqrt(1 - xs[r] * xs[r]);
    if (($5 - t) ^ 2 < 0.01) up[r] = 1; else if (($5 + t) ^ 2 < 0.01) down[r] = 1;
    else { print "row " r ": mode " $5 " is on neither branch +-" t; bad = 1 }
    if ($4 < 0.2) { print "row " r ": mass " $4; bad = 1 } }
  END { for (r = 0; r <= 12; r++) if (!up[r] || !down[r]) { print "row " r ": branches missing"; bad = 1 }
    exit bad }' "$T/grid.csv" "$T/modes.csv" || fail "langevin modes: $(cat "$T/modes.csv")"
echo "ok - langevin: both branches of the circle at all 13 x, each with real mass"

"$EMBER" info --model "$T/circle.safetensors" > "$T/info.txt"
grep -q '^method  *langevin' "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q '64 chains of 40 steps, ibc schedule' "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
"$EMBER" train --data "$T/circle.csv" --out "$T/again.safetensors" $args --steps 30
"$EMBER" train --data "$T/circle.csv" --out "$T/again2.safetensors" $args --steps 30
cmp -s "$T/again.safetensors" "$T/again2.safetensors" || fail "same seed, different langevin checkpoints"
echo "ok - langevin checkpoint records its chains; training reproducible"

# a jump: values strictly inside the range, so the answers are not just the bounds
awk 'BEGIN { srand(11); print "x,y:y";
  for (i = 0; i < 1500; i++) { x = 2 * rand() - 1; y = (x < 0.3 ? 1 : 4) + 0.5 * x; printf "%.6f,%.6f\n", x, y } }' > "$T/jump.csv"
awk 'BEGIN { print "x"; for (i = 0; i <= 40; i++) printf "%.4f\n", -0.8 + 1.6 * i / 40 }' > "$T/jgrid.csv"
"$EMBER" train --data "$T/jump.csv" --out "$T/jump.safetensors" $args
"$EMBER" predict --model "$T/jump.safetensors" --input "$T/jgrid.csv" --seed 1 > "$T/jump_pred.csv"
awk -v grid="$T/jgrid.csv" 'NR > 1 { getline x < grid; if (x == "x") getline x < grid;
  lo = 1 + 0.5 * x; hi = 4 + 0.5 * x; y = $1;
  if ((y - lo) ^ 2 > 0.25 && (y - hi) ^ 2 > 0.25) stranded++;
  d = x - 0.3; if (d * d > 0.01) { t = (x < 0.3 ? lo : hi); e = y - t; if (e < 0) e = -e; if (e > m) m = e } }
  END { printf "stranded %d, max error away from the jump %.3f\n", stranded, m; exit !(stranded == 0 && m < 0.3) }' \
  "$T/jump_pred.csv" || fail "langevin jump: $(cat "$T/jump_pred.csv")"
echo "ok - langevin keeps the jump sharp"

# a 2-D multi-valued toy: four valid y for every x, (+-0.5 + 0.2x, +-0.5 - 0.2x)
awk 'BEGIN { srand(9); print "x,y0,y1";
  for (i = 0; i < 3000; i++) { x = 2 * rand() - 1; a = rand() < 0.5 ? -0.5 : 0.5; b = rand() < 0.5 ? -0.5 : 0.5;
    printf "%.6f,%.6f,%.6f\n", x, a + 0.2 * x, b - 0.2 * x } }' > "$T/quad.csv"
printf 'x\n-0.5\n0\n0.5\n' > "$T/qgrid.csv"
"$EMBER" train --data "$T/quad.csv" --y-dim 2 --out "$T/quad.safetensors" $args
"$EMBER" sample --model "$T/quad.safetensors" --input "$T/qgrid.csv" --modes 4 --seed 1 > "$T/quad_modes.csv"
awk -F, 'NR == FNR { if (FNR > 1) xs[FNR - 2] = $1; next }
  FNR > 1 { r = $1; x = xs[r]; q = ($5 > 0.2 * x ? 1 : 0) + ($6 > -0.2 * x ? 2 : 0);
    ty0 = (q % 2 ? 0.5 : -0.5) + 0.2 * x; ty1 = (q >= 2 ? 0.5 : -0.5) - 0.2 * x;
    if (($5 - ty0) ^ 2 + ($6 - ty1) ^ 2 > 0.0025) { print "row " r ": mode (" $5 ", " $6 ") is not a valid y"; bad = 1 }
    if ($4 < 0.1) { print "row " r ": mass " $4; bad = 1 }
    seen[r, q] = 1 }
  END { for (r = 0; r < 3; r++) for (q = 0; q < 4; q++) if (!seen[r, q]) { print "row " r ": mode " q " missing"; bad = 1 }
    exit bad }' "$T/qgrid.csv" "$T/quad_modes.csv" || fail "langevin 2-D modes: $(cat "$T/quad_modes.csv")"
echo "ok - langevin: all four modes of a 2-D toy at every x"

# per-call chain options: sample-then-refine and IBC's second chain lower the answers' energy,
# still on the right branch; a different chain changes the answer; bad values
# are refused by name
"$EMBER" predict --model "$T/jump.safetensors" --input "$T/jgrid.csv" --seed 1 --energy > "$T/plain.csv"
"$EMBER" predict --model "$T/jump.safetensors" --input "$T/jgrid.csv" --seed 1 --energy --refine 10 > "$T/refined.csv"
"$EMBER" predict --model "$T/jump.safetensors" --input "$T/jgrid.csv" --seed 1 --energy --again-steps 20 --again-step 1e-4 > "$T/again.csv"
# (refinement only accepts descents; the second chain still has noise, so up to 1e-3 above)
for f in refined again; do
  tol=1e-6; [ "$f" = again ] && tol=1e-3
  paste -d, "$T/plain.csv" "$T/$f.csv" | awk -F, -v grid="$T/jgrid.csv" -v what="$f" -v tol="$tol" 'NR > 1 {
    getline x < grid; if (x == "x") getline x < grid;
    if ($4 > $2 + tol) { print "row " NR - 2 ": energy " $2 " -> " $4; bad = 1 }
    if ($4 < $2) lower++;
    lo = 1 + 0.5 * x; hi = 4 + 0.5 * x; if (($3 - lo) ^ 2 > 0.25 && ($3 - hi) ^ 2 > 0.25) { print "row " NR - 2 ": stranded " $3; bad = 1 } }
    END { printf "%s: %d of 41 answers lower in energy\n", what, lower; exit bad || lower < 1 }' || fail "$f answers: $(cat "$T/$f.csv")"
done
"$EMBER" predict --model "$T/jump.safetensors" --input "$T/jgrid.csv" --seed 1 --chain-steps 5 --schedule poly > "$T/short.csv"
cmp -s "$T/short.csv" "$T/jump_pred.csv" && fail "--chain-steps 5 --schedule poly changed nothing"
check_refused() {
  if "$EMBER" predict --model "$T/jump.safetensors" --input "$T/jgrid.csv" "$@" > "$T/out" 2> "$T/err"; then
    fail "predict $* was accepted"
  fi
}
check_refused --schedule linear; grep -q "schedule must be ibc or poly" "$T/err" || fail "schedule: $(cat "$T/err")"
check_refused --step-init 0; grep -q "initial step (step init) must be positive" "$T/err" || fail "step-init: $(cat "$T/err")"
check_refused --again-steps 5 --again-step -1; grep -q "second-chain step" "$T/err" || fail "again-step: $(cat "$T/err")"
check_refused --refine 5 --refine-lr 0; grep -q "refine step" "$T/err" || fail "refine-lr: $(cat "$T/err")"
echo "ok - langevin: per-call chain, second chain and refinement"
