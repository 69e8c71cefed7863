# Validation while training: --val FILE and --val-split F report the held-out loss beside its
# chance level in the progress lines, keep the last one in the model (ember info), and are
# deterministic for the seed; bad combinations are refused before any training.
. "$(dirname "$0")/common.inc"

# y = sin(2x) on x in [-1, 1]: 400 training rows, 100 validation rows from another seed
gen() { awk -v seed="$1" -v n="$2" 'BEGIN { srand(seed); print "x,y:y";
  for (i = 0; i < n; i++) { x = 2 * rand() - 1; printf "%.6f,%.6f\n", x, sin(2 * x) } }'; }
gen 5 400 > "$T/train.csv"
gen 6 100 > "$T/val.csv"
small="--steps 200 --batch 64 --negatives 32 --width 32 --seed 1 --threads 2"

# --val FILE: a validation loss on every progress line, the final one in the last line and the model
"$EMBER" train --data "$T/train.csv" --out "$T/a.safetensors" --val "$T/val.csv" $small 2> "$T/err" ||
  fail "train --val: $(cat "$T/err")"
grep -qF "validating on $T/val.csv (100 rows)" "$T/err" || fail "no validation banner: $(cat "$T/err")"
lines=$(grep -c '^step .* val [0-9.]* (chance 3.4965, 100 rows) lr ' "$T/err")
[ "$lines" -ge 19 ] || fail "only $lines progress lines carry the validation loss: $(cat "$T/err")"
final=$(sed -n 's/.*validation loss \([0-9.]*\) (chance 3.4965, 100 rows); wrote .*/\1/p' "$T/err")
[ -n "$final" ] || fail "the last line lacks the validation loss: $(tail -1 "$T/err")"
awk -v v="$final" 'BEGIN { exit !(v < 0.8 * 3.4965) }' || fail "validation loss $final is not clearly below chance"
"$EMBER" info --model "$T/a.safetensors" > "$T/info"
grep -qE "^validation +loss $final on 100 held-out rows \(chance level 3.4965: log of 33 candidates per row\)$" "$T/info" ||
  fail "ember info: $(grep validation "$T/info")"
echo "ok - --val: progress, last line and ember info ($final against chance 3.4965)"

# --val-split: 80 of the 400 rows held out, the same ones for the same seed
"$EMBER" train --data "$T/train.csv" --out "$T/b.safetensors" --val-split 0.2 $small 2> "$T/err"
grep -qF "validating on 80 of the 400 rows, held out (--val-split 0.2, seed 1)" "$T/err" || fail "split banner: $(cat "$T/err")"
grep -q 'validation loss [0-9.]* (chance 3.4965, 80 rows); wrote' "$T/err" || fail "split last line: $(tail -1 "$T/err")"
"$EMBER" train --data "$T/train.csv" --out "$T/c.safetensors" --val-split 0.2 $small --quiet
cmp -s "$T/b.safetensors" "$T/c.safetensors" || fail "the same seed and split gave another model"
"$EMBER" info --model "$T/b.safetensors" | grep -qE '^validation +loss [0-9.]+ on 80 held-out rows' || fail "split info"
"$EMBER" train --data "$T/train.csv" --out "$T/d.safetensors" --val-split 0.2 $small --seed 2 --quiet
"$EMBER" info --model "$T/b.safetensors" | grep '^validation' > "$T/v1"
"$EMBER" info --model "$T/d.safetensors" | grep '^validation' > "$T/v2"
! cmp -s "$T/v1" "$T/v2" || fail "another seed held out the same rows with the same loss: $(cat "$T/v1")"
echo "ok - --val-split: deterministic for the seed"

# mse: the validation MSE beside answering the training mean; no validation: info says so
"$EMBER" train --data "$T/train.csv" --out "$T/e.safetensors" --method mse --val-split 0.25 $small --quiet
"$EMBER" info --model "$T/e.safetensors" | grep -qE '^validation +MSE [0-9.]+ on 100 held-out rows \(normalised units; answering the training mean: [0-9.]+\)$' ||
  fail "mse info: $("$EMBER" info --model "$T/e.safetensors" | grep validation)"
"$EMBER" train --data "$T/train.csv" --out "$T/f.safetensors" --steps 5 --width 8 --quiet
"$EMBER" info --model "$T/f.safetensors" | grep -qE '^validation +none \(train with --val FILE or --val-split F\)$' || fail "info without validation"
echo "ok - mse validation MSE; none without validation"

printf 'x,y,y:z\n0.1,1,2\n' > "$T/wide.csv"
expect_exit 2 "--val and --val-split" "give --val FILE or --val-split F, not both" "$EMBER" train --data "$T/train.csv" --out "$T/x.safetensors" --val "$T/val.csv" --val-split 0.1
expect_exit 2 "--val-split 1" "the validation share (val split) must be in [0, 1) (0 = none), got 1" "$EMBER" train --data "$T/train.csv" --out "$T/x.safetensors" --val-split 1
expect_exit 1 "--val with other columns" "--val: " "$EMBER" train --data "$T/train.csv" --out "$T/x.safetensors" --val "$T/wide.csv" --steps 1
expect_exit 1 "--val missing" "nope.csv" "$EMBER" train --data "$T/train.csv" --out "$T/x.safetensors" --val "$T/nope.csv" --steps 1
printf 'x,y:y\n0.5,1\n' > "$T/one.csv"
expect_exit 1 "--val-split of one row" "needs at least 2 rows, got 1" "$EMBER" train --data "$T/one.csv" --out "$T/x.safetensors" --val-split 0.5 --steps 1 --quiet
[ ! -e "$T/x.safetensors" ] || fail "a refused train left a checkpoint"
if "$EMBER" --help | grep -q "not in this build"; then
  echo "ok - remote --val (skipped: no remote mode in this build)"
else
  expect_exit 2 "remote --val" "--val FILE is local only; with --server use --val-split F" "$EMBER" --server 127.0.0.1:1 train --model m --data "$T/train.csv" --val "$T/val.csv"
fi
