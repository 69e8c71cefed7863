# Bad input: a non-zero exit, a message saying what is wrong, nothing on stdout.
. "$(dirname "$0")/common.inc"

printf 'x,y:y\n0.1,1\n0.2,2\n0.3,3\n0.4,4\n' > "$T/ok.csv"
printf 'x,y:y\n0.1,1\n0.2\n' > "$T/ragged.csv"
printf 'x,y:y\n0.1,1\n0.2,nan\n' > "$T/nan.csv"
: > "$T/empty.csv"
"$EMBER" train --data "$T/ok.csv" --out "$T/m.safetensors" --steps 2 --batch 4 --negatives 4 --width 4 --quiet

expect_error "no arguments" "--data and --out are required" "$EMBER" train
expect_error "unknown option" "unknown option '--stepz'" "$EMBER" train --stepz 3
expect_error "bad number" "--steps expects an integer, got 'ten'" "$EMBER" train --steps ten
expect_error "missing value" "--out needs a value" "$EMBER" train --data "$T/ok.csv" --out
expect_error "missing file" "nope.csv" "$EMBER" train --data "$T/nope.csv" --out "$T/x.safetensors"
expect_error "ragged row" ":3:" "$EMBER" train --data "$T/ragged.csv" --out "$T/x.safetensors"
expect_error "NaN" ":3:" "$EMBER" train --data "$T/nan.csv" --out "$T/x.safetensors"
expect_error "empty file" "empty.csv" "$EMBER" train --data "$T/empty.csv" --out "$T/x.safetensors"
expect_error "unknown method" "--method must be dfo, ardfo, langevin or mse" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --method foo
expect_error "ema of 1" "weight average decay (ema) must be in [0, 1)" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --ema 1
expect_error "negative snapshot interval" "--snapshot-every must be >= 0" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --snapshot-every -1
expect_error "odd resnet depth" "even" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --depth 3
expect_error "zero steps" "steps must be 1.." "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --steps 0
expect_error "chain option for dfo" "--chain-steps applies to --method langevin only" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --chain-steps 3
expect_error "negative change clip" "change clip (delta max) must be >= 0" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --method langevin --delta-max -1
expect_error "y-dim too large" "column" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --y-dim 2
# absurd sizes are refused before the data is read, as usage errors (exit 2)
expect_error "absurd network" "has 68723736577 parameters, more than the 268435456 a model may have" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --width 16384 --depth 256
rc=0; "$EMBER" train --data "$T/nope.csv" --out "$T/x.safetensors" --width 16384 --depth 256 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "absurd network: exit status $rc, not 2"
expect_error "defaults beyond a request's limits" "65537 samples per query" "$EMBER" train --data "$T/ok.csv" --out "$T/x.safetensors" --samples 65537 --steps 1 --width 4 --quiet
expect_error "unwritable output" "cannot" "$EMBER" train --data "$T/ok.csv" --out "$T/no/dir/m.safetensors" --steps 1 --batch 2 --negatives 2 --width 4 --quiet
[ ! -e "$T/x.safetensors" ] || fail "a failed train left a checkpoint"

printf 'a,b\n1,2\n' > "$T/wide.csv"
expect_error "wrong x width" "expected 1 column" "$EMBER" predict --model "$T/m.safetensors" --input "$T/wide.csv"
expect_error "zero samples" "samples must be" "$EMBER" predict --model "$T/m.safetensors" --input "$T/ok.csv" --samples 0
expect_error "bad shrink" "shrink" "$EMBER" predict --model "$T/m.safetensors" --input "$T/ok.csv" --shrink 2
expect_error "zero modes" "modes must be" "$EMBER" sample --model "$T/m.safetensors" --input "$T/ok.csv" --modes 0
expect_error "unknown optimizer" "--optimizer must be default, dfo, langevin or ardfo, got 'sgd'" "$EMBER" predict --model "$T/m.safetensors" --input "$T/ok.csv" --optimizer sgd
expect_error "ardfo optimizer on a dfo model" "optimizer ardfo needs the y-prefix nets of an ardfo model" "$EMBER" predict --model "$T/m.safetensors" --input "$T/ok.csv" --optimizer ardfo
expect_error "chain option without chains" "--chain-steps applies to Langevin models only (or to --optimizer langevin" "$EMBER" predict --model "$T/m.safetensors" --input "$T/ok.csv" --chain-steps 3
printf 'x\n0.1\n0.2\n0.3\n0.4\n' > "$T/xonly.csv"
"$EMBER" predict --model "$T/m.safetensors" --input "$T/xonly.csv" --optimizer langevin --samples 8 --chain-steps 3 > "$T/chains.csv" || fail "--optimizer langevin with chain options on a dfo model failed"
[ "$(wc -l < "$T/chains.csv")" -eq 5 ] || fail "--optimizer langevin: expected a header and 4 rows"
head -c 100 "$T/m.safetensors" > "$T/cut.safetensors"
expect_error "truncated model" "cut.safetensors" "$EMBER" predict --model "$T/cut.safetensors" --input "$T/ok.csv"
printf 'not a model' > "$T/junk.safetensors"
expect_error "junk model" "junk.safetensors" "$EMBER" predict --model "$T/junk.safetensors" --input "$T/ok.csv"
expect_error "unknown verb" "unknown verb" "$EMBER" frobnicate
expect_error "remote mode" "--server" "$EMBER" --server localhost:50051 predict
"$EMBER" train --help | grep -q -- "--negatives" || fail "train --help lacks --negatives"
"$EMBER" sample --help | grep -q -- "--modes" || fail "sample --help lacks --modes"
echo "ok - help"
# x far outside the training data: answered, with a note on stderr
printf 'x\n0.2\n100\n' > "$T/far.csv"
"$EMBER" predict --model "$T/m.safetensors" --input "$T/far.csv" --samples 64 > "$T/out" 2> "$T/err" || fail "far x: predict failed"
[ "$(wc -l < "$T/out")" -eq 3 ] || fail "far x: $(cat "$T/out")"
grep -q 'note: row 1 of x is .* standard deviations from the training data' "$T/err" || fail "far x note: $(cat "$T/err")"
printf 'x\n0.25\n' > "$T/near.csv"
"$EMBER" predict --model "$T/m.safetensors" --input "$T/near.csv" --samples 64 > "$T/out" 2> "$T/err"
[ ! -s "$T/err" ] || fail "x inside the data got a note: $(cat "$T/err")"
echo "ok - far x answered with a note"
