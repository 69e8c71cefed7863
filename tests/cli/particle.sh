# The N-D particle benchmark: demonstrations from the oracle, closed-loop evaluation, and a
# small model trained on them that clearly beats a random policy.
. "$(dirname "$0")/common.inc"

# ---- data: shape, values, determinism
"$EMBER" data particle --dims 2 --episodes 30 --seed 4 --out "$T/a.csv" 2> "$T/err"
grep -q "30 episodes x 50 steps = 1500 rows (x: 8 columns, y: 2)" "$T/err" || fail "data: $(cat "$T/err")"
grep -q "succeeded in 30 of them" "$T/err" || fail "oracle: $(cat "$T/err")"
[ "$(head -1 "$T/a.csv")" = "x0,x1,x2,x3,x4,x5,x6,x7,y:y0,y:y1" ] || fail "header: $(head -1 "$T/a.csv")"
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

# ---- observation history: x = the last H observations, oldest first, the first one repeated
"$EMBER" data particle --dims 2 --episodes 3 --seed 4 --history 2 --out "$T/h.csv" 2> "$T/err"
grep -q "(x: 16 columns, y: 2)" "$T/err" || fail "history data: $(cat "$T/err")"
[ "$(head -1 "$T/h.csv")" = "x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,x10,x11,x12,x13,x14,x15,y:y0,y:y1" ] || fail "history header: $(head -1 "$T/h.csv")"
# the newest observation and the action are the H = 1 row; the older one is the previous
# row's newest (the same row's at an episode's start)
paste -d, "$T/h.csv" "$T/d.csv" | awk -F, 'NR > 1 { r = NR - 2; t = r % 50;
  for (j = 1; j <= 8; j++) if ($(8 + j) != $(18 + j)) { print "newest " NR; exit 1 }
  for (j = 1; j <= 2; j++) if ($(16 + j) != $(26 + j)) { print "action " NR; exit 1 }
  for (j = 1; j <= 8; j++) if ($j != (t == 0 ? $(8 + j) : prev[j])) { print "older " NR; exit 1 }
  for (j = 1; j <= 8; j++) prev[j] = $(8 + j) }' || fail "history rows"
"$EMBER" eval particle --dims 2 --policy oracle --episodes 20 --history 3 --csv > "$T/oh.csv"
[ "$(awk -F, 'NR == 2 { print $8 }' "$T/oh.csv")" -eq 20 ] || fail "oracle with history: $(cat "$T/oh.csv")"
"$EMBER" train --data "$T/h.csv" --y-dim 2 --out "$T/h.safetensors" --steps 5 --batch 16 --negatives 8 \
  --width 16 --quiet
"$EMBER" eval particle --dims 2 --model "$T/h.safetensors" --episodes 3 --samples 64 --csv --quiet > "$T/eh.csv" ||
  fail "a history-2 model is not evaluated with its history"
# --snapshot-every K: OUT-stepK.safetensors every K steps before the last; a snapshot is the model
# a K-step run writes (the weight average included)
"$EMBER" train --data "$T/h.csv" --y-dim 2 --out "$T/s.safetensors" --steps 5 --batch 16 --negatives 8 \
  --width 16 --seed 4 --threads 2 --snapshot-every 2 --quiet
[ -f "$T/s-step2.safetensors" ] && [ -f "$T/s-step4.safetensors" ] && [ ! -e "$T/s-step5.safetensors" ] ||
  fail "snapshots: $(ls "$T" | grep step)"
"$EMBER" train --data "$T/h.csv" --y-dim 2 --out "$T/s2.safetensors" --steps 2 --batch 16 --negatives 8 \
  --width 16 --seed 4 --threads 2 --quiet
cmp -s "$T/s-step2.safetensors" "$T/s2.safetensors" || fail "the step-2 snapshot differs from a 2-step run"
expect_error "history mismatch" "takes 16 x and gives 2 y; the 2-D particle task with --history 3 needs 24 and 2" \
  "$EMBER" eval particle --dims 2 --model "$T/h.safetensors" --history 3
expect_error "bad history" "--history must be 1..16, got 0" "$EMBER" data particle --dims 2 --history 0 --out "$T/x.csv"
expect_error "bad eval history" "--history must be 1..16, got 17" "$EMBER" eval particle --dims 2 --policy oracle --history 17
echo "ok - observation history: rows, oracle, a model's history taken from its x columns, refusals"

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
# --sigma and --shrink reach DFO: the same episodes with another noise schedule end elsewhere
"$EMBER" eval particle --dims 1 --model "$T/m.safetensors" --episodes 5 --samples 64 --threads 2 \
  --trace "$T/trace-default" > /dev/null
"$EMBER" eval particle --dims 1 --model "$T/m.safetensors" --episodes 5 --samples 64 --threads 2 \
  --sigma 0.05 --shrink 1 --trace "$T/trace-noise" > /dev/null
! cmp -s "$T/trace-default" "$T/trace-noise" || fail "--sigma/--shrink changed nothing"
"$EMBER" eval particle --dims 1 --model "$T/m.safetensors" --episodes 5 --samples 64 --threads 2 \
  --sigma 0.05 --shrink 1 --trace "$T/trace-noise2" > /dev/null
cmp -s "$T/trace-noise" "$T/trace-noise2" || fail "--sigma/--shrink: not reproducible"
echo "ok - --sigma and --shrink change the search, reproducibly"
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
expect_error "shrink without a model" "--shrink needs --model" \
  "$EMBER" eval particle --dims 2 --policy oracle --shrink 0.7
expect_error "shrink out of range" "shrink must be in (0, 1], got 1.5" \
  "$EMBER" eval particle --dims 1 --model "$T/m.safetensors" --shrink 1.5
expect_error "sigma out of range" "sigma must be a number in [0, 1000], got -1" \
  "$EMBER" eval particle --dims 1 --model "$T/m.safetensors" --sigma -1
expect_error "bad dims" "--dims must be 1..4096, got 0" "$EMBER" data particle --dims 0 --out "$T/x.csv"
expect_error "no out" "--out FILE is required" "$EMBER" data particle --dims 2
expect_error "unwritable" "cannot write" "$EMBER" data particle --dims 2 --out "$T/nodir/x.csv"
expect_error "unknown task" "unknown task 'cartpole'" "$EMBER" eval cartpole
mkdir "$T/adir"
expect_error "out is a directory" "adir: cannot write" "$EMBER" data particle --dims 2 --episodes 2 --out "$T/adir"
[ ! -e "$T/x.csv" ] || fail "a refused run wrote a file"
[ -z "$(find "$T" -name '*.tmp.*')" ] || fail "temporary files left: $(find "$T" -name '*.tmp.*')"
[ -z "$(ls -A "$T/adir")" ] || fail "a failed write left files in the directory"
