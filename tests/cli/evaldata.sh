# ember eval data: action error and mode coverage on the user's own pairs, by sample count, as
# a table and as CSV. On data with two valid y at every x a single prediction is right for
# about half the rows, and the modes cover both branches.
. "$(dirname "$0")/common.inc"

# y = +1 or -1 at random, x uniform in [-1, 1]
gen() { awk -v seed="$1" -v n="$2" 'BEGIN { srand(seed); print "x,y:y";
  for (i = 0; i < n; i++) printf "%.6f,%d\n", 2 * rand() - 1, rand() < 0.5 ? -1 : 1 }'; }
gen 7 400 > "$T/train.csv"
gen 8 150 > "$T/test.csv"
gen 9 12 > "$T/few.csv"
"$EMBER" train --data "$T/train.csv" --out "$T/m.safetensors" --steps 300 --batch 64 --negatives 64 --width 32 \
  --lr 0.003 --seed 3 --threads 2 --quiet
"$EMBER" train --data "$T/train.csv" --out "$T/mse.safetensors" --method mse --steps 50 --width 16 --threads 2 --quiet

"$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --tol 0.2 --samples 256,1024 --threads 2 > "$T/out" 2> "$T/err" ||
  fail "eval data: $(cat "$T/err")"
[ ! -s "$T/err" ] || fail "eval data wrote to stderr: $(cat "$T/err")"
grep -qF "data:      $T/test.csv (150 rows)" "$T/out" || fail "no data line: $(cat "$T/out")"
grep -qF "tol:       0.2 (y units" "$T/out" || fail "no tol line: $(cat "$T/out")"
grep -qE '^ +samples +error_mean +error_median +error_max +within_tol +coverage +modes_per_row +sq_error_mean$' "$T/out" || fail "table header: $(cat "$T/out")"
awk '$1 == 256 || $1 == 1024 { n++; if (!($5 > 0.3 && $5 < 0.7 && $6 > 0.9)) bad = 1 } END { exit bad || n != 2 }' "$T/out" ||
  fail "two-valued data: within_tol should be about half, coverage above 0.9: $(cat "$T/out")"
echo "ok - eval data table: about half the predictions within tolerance, both branches covered"

"$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --tol 0.2 --samples 256,1024 --threads 2 --csv > "$T/csv"
[ "$(head -1 "$T/csv")" = "model,data,method,samples,rows,tol,modes,error_mean,error_median,error_max,within_tol,coverage,modes_per_row,sq_error_mean" ] ||
  fail "csv header: $(head -1 "$T/csv")"
[ "$(wc -l < "$T/csv")" -eq 3 ] || fail "csv lines: $(cat "$T/csv")"
awk -F, 'NR > 1 { if (NF != 14 || $14 <= 0 || $3 != "dfo" || $5 != 150 || $6 != 0.2 || $7 != 2) bad = 1; s = s $4 " " }
  END { exit bad || s != "256 1024 " }' "$T/csv" || fail "csv rows: $(cat "$T/csv")"
# the table and the CSV tell the same numbers (the seed fixes them)
awk -F, 'NR == 3 { printf "%.4f %.4f %.4g\n", $11, $12, $14 }' "$T/csv" > "$T/a"
awk '$1 == 1024 { printf "%.4f %.4f %.4g\n", $5, $6, $8 }' "$T/out" > "$T/b"
cmp -s "$T/a" "$T/b" || fail "csv and table differ: $(cat "$T/a") vs $(cat "$T/b")"
"$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --tol 0.2 --samples 256 --threads 2 --csv --no-header > "$T/nh"
[ "$(wc -l < "$T/nh")" -eq 1 ] && [ "$(cut -d, -f4 "$T/nh")" = 256 ] || fail "--no-header: $(cat "$T/nh")"
echo "ok - eval data --csv"

# the default sample counts: 64 to 16384
"$EMBER" eval data --model "$T/m.safetensors" --data "$T/few.csv" --threads 2 --csv > "$T/csv"
[ "$(cut -d, -f4 "$T/csv" | tr '\n' ' ')" = "samples 64 256 1024 4096 16384 " ] || fail "default samples: $(cat "$T/csv")"
# an explicit model: one line, no sample count
"$EMBER" eval data --model "$T/mse.safetensors" --data "$T/test.csv" --threads 2 > "$T/out"
grep -qE '^ +- +[0-9.e-]+ ' "$T/out" || fail "mse table: $(cat "$T/out")"
grep -qF "explicit model: one answer per row" "$T/out" || fail "mse modes line: $(cat "$T/out")"
echo "ok - eval data default samples, explicit model"

printf 'a,b,y\n1,2,3\n' > "$T/wide.csv"
expect_exit 2 "no arguments" "--model and --data are required" "$EMBER" eval data
expect_exit 2 "zero tolerance" "--tol must be > 0 (in y's units), got 0" "$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --tol 0
expect_exit 2 "zero samples" "--samples: samples must be 1..65536" "$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --samples 64,0
expect_exit 2 "too many samples" "got 70000" "$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --samples 70000
expect_exit 2 "bad samples list" "--samples" "$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --samples 64,x
expect_exit 2 "zero modes" "--modes must be 1..1024, got 0" "$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --modes 0
expect_exit 2 "--no-header alone" "--no-header goes with --csv" "$EMBER" eval data --model "$T/m.safetensors" --data "$T/test.csv" --no-header
expect_exit 1 "other columns" "takes 1 x and answers 1 y columns" "$EMBER" eval data --model "$T/m.safetensors" --data "$T/wide.csv"
expect_exit 1 "missing data" "nope.csv" "$EMBER" eval data --model "$T/m.safetensors" --data "$T/nope.csv"
expect_exit 1 "missing model" "nope.safetensors" "$EMBER" eval data --model "$T/nope.safetensors" --data "$T/test.csv"
expect_exit 2 "unknown task" "unknown task 'foo' (particle, toy or data)" "$EMBER" eval foo
if ! "$EMBER" --help | grep -q "not in this build"; then
  expect_exit 2 "remote eval data" "runs locally only" "$EMBER" --server 127.0.0.1:1 eval data --model m --data "$T/test.csv"
fi
"$EMBER" eval data --help | grep -q -- "--tol" || fail "eval data --help lacks --tol"
echo "ok - help"
