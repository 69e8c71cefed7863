# The N-D particle benchmark: demonstrations from the oracle, closed-loop evaluation, and a
# small model trained on them that clearly beats a random policy.
. "$(dirname "$0")/common.inc"

# ---- data: shape, values, determinism
"$EMBER" data particle --dims 2 --episodes 30 --seed 4 --out "$T/a.csv" 2> "$T/err"
grep -q "30 episodes x 50 steps = 1500 rows (x: 8 columns, y: 2)" "$T/err" || fail "data: $(cat "$T/err")"
grep -q "succeeded in 30 of them" "$T/err" || fail "oracle: $(cat "$T/err")"
[ "$(head -1 "$T/a.csv")" = "x0,x1,x2,x3,x4,x5,x6,x7,y0,y1" ] || fail "header: $(head -1 "$T/a.csv")"
[ "$(wc -l < "$T/a.csv")" -eq 1501 ] || fail "rows: $(wc -l < "$T/a.csv")"
# every episode starts at rest and the oracle first commands goal 1; the action is always one
# of the two goals; values stay in [0, 1] except velocities
awk -F, 'NR > 1 { r = NR - 2; t = r % 50;
  if (NF != 10) { print "fields " NF; exit 1 }
  if (t == 0 && ($3 != 0 || $4 != 0 || $9 != $5 || $10 != $6)) { print "start " NR; exit 1 }
  if (!(($9 == $5 && $10 == $6) || ($9 == $7 && $10 == $8))) { print "action " NR; exit 1 }
  for (j = 5; j <= 10; j++) if ($j < 0 || $j >= 1) { print "range " NR; exit 1 } }' "$T/a.csv" || fail "demonstrations"
"$EMBER" data particle --dims 2 --episodes 30 --seed 4 --out "$T/b.csv" 2> /dev/null
cmp -s "$T/a.csv" "$T/b.csv" || fail "the same seed gave different data"
"$EMBER" data particle --dims 2 --episodes 30 --seed 5 --out "$T/c.csv" 2> /dev/null
! cmp -s "$T/a.csv" "$T/c.csv" || fail "another seed gave the same data"
# the first episodes do not depend on how many are written
"$EMBER" data particle --dims 2 --episodes 3 --seed 4 --out - 2> /dev/null > "$T/d.csv"
head -151 "$T/a.csv" | cmp -s - "$T/d.csv" || fail "episode streams depend on --episodes"
echo "ok - demonstrations: shape, oracle actions, determinism"

# ---- reference policies
"$EMBER" eval particle --dims 4 --policy oracle --episodes 100 --csv > "$T/o.csv"
oracle=$(awk -F, 'NR == 2 { print $8 }' "$T/o.csv")
[ "$oracle" -ge 99 ] || fail "oracle succeeded $oracle of 100: $(cat "$T/o.csv")"
"$EMBER" eval particle --dims 1 --policy random --episodes 100 --csv > "$T/r.csv"
random=$(awk -F, 'NR == 2 { print $8 }' "$T/r.csv")
[ "$random" -le 10 ] || fail "random policy succeeded $random of 100"
echo "ok - oracle $oracle/100 at N = 4, random policy $random/100 at N = 1"

# ---- a small model at N = 1 clearly beats the random policy
"$EMBER" data particle --dims 1 --episodes 300 --seed 1 --out "$T/train.csv" 2> /dev/null
"$EMBER" train --data "$T/train.csv" --y-dim 1 --out "$T/m.safetensors" --steps 600 --batch 128 \
  --negatives 64 --width 64 --seed 2 --threads 2 --quiet
"$EMBER" eval particle --dims 1 --model "$T/m.safetensors" --episodes 100 --samples 256 --threads 2 > "$T/report"
cat "$T/report"
grep -q "^policy       $T/m.safetensors (dfo), local inference on 2 threads" "$T/report" || fail "report policy line"
grep -q "^speed .* actions/s (5000 actions" "$T/report" || fail "report speed line"
ok=$(sed -n 's/^success .*(\([0-9]*\) of 100).*/\1/p' "$T/report")
[ -n "$ok" ] && [ "$ok" -ge $((random + 40)) ] || fail "trained model succeeded ${ok:-?} of 100, random $random"
# the same seed and threads give the same episodes and answers
"$EMBER" eval particle --dims 1 --model "$T/m.safetensors" --episodes 100 --samples 256 --threads 2 > "$T/report2"
[ "$(grep -v '^speed' "$T/report")" = "$(grep -v '^speed' "$T/report2")" ] || fail "evaluation not reproducible"
echo "ok - trained model $ok/100 vs random $random/100, reproducible"

# ---- errors
expect_error "dims mismatch" "takes 4 x and gives 1 y; the 2-D particle task needs 8 and 2" \
  "$EMBER" eval particle --dims 2 --model "$T/m.safetensors"
expect_error "no dims" "--dims N is required" "$EMBER" eval particle --policy oracle
expect_error "no policy" "give either --model M or --policy oracle|random" "$EMBER" eval particle --dims 2
expect_error "unknown policy" "--policy must be oracle or random, got 'still'" \
  "$EMBER" eval particle --dims 2 --policy still
expect_error "options without a model" "--samples needs --model" \
  "$EMBER" eval particle --dims 2 --policy oracle --samples 5
expect_error "bad dims" "--dims must be 1..4096, got 0" "$EMBER" data particle --dims 0 --out "$T/x.csv"
expect_error "no out" "--out FILE is required" "$EMBER" data particle --dims 2
expect_error "unwritable" "cannot write" "$EMBER" data particle --dims 2 --out "$T/nodir/x.csv"
expect_error "unknown task" "unknown task 'cartpole'" "$EMBER" eval cartpole
mkdir "$T/adir"
expect_error "out is a directory" "adir: cannot write" "$EMBER" data particle --dims 2 --episodes 2 --out "$T/adir"
[ ! -e "$T/x.csv" ] || fail "a refused run wrote a file"
[ -z "$(find "$T" -name '*.tmp.*')" ] || fail "temporary files left: $(find "$T" -name '*.tmp.*')"
[ -z "$(ls -A "$T/adir")" ] || fail "a failed write left files in the directory"
