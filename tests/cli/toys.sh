# The paper's 1-D toys end to end: `ember data toy` writes them, `ember eval toy` scores
# models trained on them. The implicit (dfo) model keeps the jump sharp (no prediction in the
# gap, small error away from it) where the explicit (mse) baseline strands some between the
# levels, and its modes cover both halves of the circle.
. "$(dirname "$0")/common.inc"

# value of "key:" in a report
val() { awk -v k="$1:" '$1 == k { print $2 }' "$2"; }

"$EMBER" data toy jump --out "$T/jump.csv" --rows 1000 --seed 1
"$EMBER" data toy circle --out "$T/circle.csv" --rows 1000 --seed 1
[ "$(head -1 "$T/jump.csv")" = "x,y:y" ] || fail "data toy header: $(head -1 "$T/jump.csv")"
[ "$(wc -l < "$T/jump.csv")" -eq 1001 ] || fail "data toy: $(wc -l < "$T/jump.csv") lines for 1000 rows"
# every row on the jump's formula, x over [-1, 1]
awk -F, 'NR > 1 { t = 0.5 * $1 + ($1 < 0.3 ? 1 : 4); d = $2 - t; if (d * d > 1e-10 || $1 < -1 || $1 > 1) bad++ }
  END { exit bad > 0 }' "$T/jump.csv" || fail "data toy jump: rows off the formula"
# both halves of the circle
awk -F, 'NR > 1 { if ($2 > 0) up++; else down++ } END { exit !(up > 400 && down > 400) }' "$T/circle.csv" ||
  fail "data toy circle: one half missing"
"$EMBER" data toy jump --out - --rows 1000 --seed 1 > "$T/again.csv"
cmp -s "$T/jump.csv" "$T/again.csv" || fail "data toy: the same seed gave different rows"
"$EMBER" data toy jump --out - --rows 1000 --seed 2 > "$T/other.csv"
! cmp -s "$T/jump.csv" "$T/other.csv" || fail "data toy: seeds 1 and 2 gave the same rows"
"$EMBER" data toy --help > "$T/help.txt"
for name in jump piecewise noise circle hysteresis disjoint; do
  grep -q "^  $name " "$T/help.txt" || fail "data toy --help does not list $name"
done
echo "ok - data toy: rows, formula, branches, seeds, help"

common="--steps 500 --batch 128 --width 64 --depth 2 --threads 2 --quiet"
"$EMBER" train --data "$T/jump.csv" $common --negatives 64 --seed 1 --out "$T/jump-dfo.safetensors"
"$EMBER" train --data "$T/jump.csv" $common --method mse --seed 1 --out "$T/jump-mse.safetensors"
"$EMBER" train --data "$T/circle.csv" $common --negatives 64 --seed 1 --out "$T/circle-dfo.safetensors"

ev="--points 100 --samples 1024 --threads 2"
"$EMBER" eval toy jump --model "$T/jump-dfo.safetensors" $ev > "$T/jd.txt"
"$EMBER" eval toy jump --model "$T/jump-mse.safetensors" $ev > "$T/jm.txt"
"$EMBER" eval toy circle --model "$T/circle-dfo.safetensors" $ev --modes 2 > "$T/cd.txt"
[ "$(val points "$T/jd.txt")" = 100 ] || fail "eval toy: $(cat "$T/jd.txt")"
jd_stranded=$(val stranded "$T/jd.txt") jd_err=$(val error_max "$T/jd.txt") jd_mean=$(val error_mean "$T/jd.txt")
jm_stranded=$(val stranded "$T/jm.txt") cov=$(val coverage "$T/cd.txt") cd_stranded=$(val modes_stranded "$T/cd.txt")
echo "jump: dfo $jd_stranded stranded, error mean $jd_mean max $jd_err; mse $jm_stranded stranded; circle: dfo coverage $cov"
[ "$jd_stranded" -eq 0 ] || fail "the dfo model strands $jd_stranded predictions in the jump's gap: $(cat "$T/jd.txt")"
awk -v e="$jd_err" 'BEGIN { exit !(e < 0.08) }' || fail "dfo error $jd_err away from the jump"
jm_mean=$(val error_mean "$T/jm.txt")
awk -v d="$jd_mean" -v m="$jm_mean" 'BEGIN { exit !(d < m) }' || fail "dfo error mean $jd_mean is not below mse's $jm_mean"
[ "$jm_stranded" -ge 2 ] || fail "the mse baseline should strand predictions across the jump: $(cat "$T/jm.txt")"
grep -q "^modes: .*mse: its prediction" "$T/jm.txt" || fail "mse report: $(cat "$T/jm.txt")"
awk -v c="$cov" 'BEGIN { exit !(c >= 0.9) }' || fail "circle: dfo mode coverage $cov: $(cat "$T/cd.txt")"
echo "ok - jump kept sharp by dfo, smeared by mse; both halves of the circle covered"

# --csv: a header and one line with the same numbers
"$EMBER" eval toy jump --model "$T/jump-mse.safetensors" $ev --csv > "$T/jm.csv"
[ "$(wc -l < "$T/jm.csv")" -eq 2 ] || fail "--csv: $(cat "$T/jm.csv")"
awk -F, -v s="$jm_stranded" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i }
  NR == 2 { exit !($1 == "jump" && $col["method"] == "mse" && $col["stranded"] == s) }' "$T/jm.csv" ||
  fail "--csv: $(cat "$T/jm.csv")"
echo "ok - eval toy --csv"

expect_error "data toy: unknown toy" "unknown toy 'spiral'" "$EMBER" data toy spiral --out "$T/x.csv"
expect_error "eval toy: unknown toy" "unknown toy 'spiral'" "$EMBER" eval toy spiral --model "$T/jump-dfo.safetensors"
expect_error "data toy: no name" "name a toy first" "$EMBER" data toy --out "$T/x.csv"
expect_error "data toy: no --out" "--out is required" "$EMBER" data toy jump
expect_error "data toy: bad rows" "--rows must be 1.." "$EMBER" data toy jump --out "$T/x.csv" --rows 0
expect_error "data toy: bad noise" "--noise must be >= 0" "$EMBER" data toy jump --out "$T/x.csv" --noise -1
expect_error "eval toy: no --model" "--model is required" "$EMBER" eval toy jump
expect_error "eval toy: bad modes" "--modes must be 1.." "$EMBER" eval toy circle --model "$T/circle-dfo.safetensors" --modes 0
expect_error "eval toy: missing model file" "nonexistent.safetensors" "$EMBER" eval toy jump --model "$T/nonexistent.safetensors"
[ ! -e "$T/x.csv" ] || fail "a refused data toy wrote its --out"
# usage errors exit 2 (a model that cannot be read is 1, like predict's)
for args in "data toy spiral --out $T/x.csv" "data toy jump --out $T/x.csv --rows -5" "eval toy jump" \
  "eval toy jump --model $T/jump-dfo.safetensors --points 0"; do
  rc=0
  "$EMBER" $args > /dev/null 2>&1 || rc=$?
  [ "$rc" -eq 2 ] || fail "ember $args: exit $rc, want 2"
done
echo "ok - refusals exit 2"
