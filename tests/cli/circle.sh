# A multi-valued function (the unit circle): sample --modes 2 returns both branches.
. "$(dirname "$0")/common.inc"

awk 'BEGIN { srand(5); print "x,y:y";
  for (i = 0; i < 2000; i++) { x = 2 * rand() - 1; s = rand() < 0.5 ? -1 : 1; printf "%.6f,%.6f\n", x, s * sqrt(1 - x * x) } }' > "$T/circle.csv"
awk 'BEGIN { print "x"; for (i = -7; i <= 7; i++) printf "%.2f\n", i / 10 }' > "$T/grid.csv"
"$EMBER" train --data "$T/circle.csv" --out "$T/circle.safetensors" --steps 800 --batch 128 \
  --negatives 64 --width 64 --depth 2 --seed 1 --threads 2 --quiet
"$EMBER" sample --model "$T/circle.safetensors" --input "$T/grid.csv" --modes 2 --samples 2048 \
  --polish 5 > "$T/modes.csv"
[ "$(head -1 "$T/modes.csv")" = "row,rank,energy,weight,y" ] || fail "sample header: $(head -1 "$T/modes.csv")"
# every row: two modes, one on each branch, sorted by energy, with mass
awk -F, 'NR == FNR { if (FNR > 1) xs[FNR - 2] = $1; next }
  FNR > 1 { r = $1; n[r]++; x = xs[r]; t = sqrt(1 - x * x);
    if ($2 != n[r] - 1) { print "row " r ": ranks out of order"; bad = 1 }
    if (n[r] == 2 && $3 < e[r]) { print "row " r ": not sorted by energy"; bad = 1 }
    e[r] = $3; if ($4 <= 0) { print "row " r ": zero mass"; bad = 1 }
    if (($5 - t) ^ 2 < 0.01) up[r] = 1; else if (($5 + t) ^ 2 < 0.01) down[r] = 1;
    else { print "row " r ": mode " $5 " is on neither branch +-" t; bad = 1 } }
  END { for (r = 0; r <= 14; r++) if (n[r] != 2 || !up[r] || !down[r]) { print "row " r ": branches missing"; bad = 1 }
    exit bad }' "$T/grid.csv" "$T/modes.csv" || fail "modes: $(cat "$T/modes.csv")"
echo "ok - both branches of the circle at all 15 x"
# --modes 1 gives one row per input
"$EMBER" sample --model "$T/circle.safetensors" --input "$T/grid.csv" --modes 1 --samples 512 > "$T/one.csv"
[ "$(wc -l < "$T/one.csv")" -eq 16 ] || fail "--modes 1: $(wc -l < "$T/one.csv") lines"
echo "ok - --modes 1"
