# Same seed and threads -> identical model bytes and answers; stdin input equals file input.
. "$(dirname "$0")/common.inc"

awk 'BEGIN { srand(7); print "a,b,y:y0";
  for (i = 0; i < 300; i++) { a = rand(); b = rand(); printf "%.5f,%.5f,%.5f\n", a, b, (a > b ? a : -b) } }' > "$T/d.csv"
printf 'a,b\n0.1,0.2\n0.7,0.3\n0.5,0.5\n' > "$T/in.csv"
args="--data $T/d.csv --steps 40 --batch 32 --negatives 16 --width 16 --seed 9 --threads 2 --quiet"
"$EMBER" train $args --out "$T/a.safetensors"
"$EMBER" train $args --out "$T/b.safetensors"
cmp -s "$T/a.safetensors" "$T/b.safetensors" || fail "same seed gave different checkpoints"
"$EMBER" train --data "$T/d.csv" --steps 40 --batch 32 --negatives 16 --width 16 --seed 10 --threads 2 --quiet --out "$T/c.safetensors"
if cmp -s "$T/a.safetensors" "$T/c.safetensors"; then fail "different seeds gave the same checkpoint"; fi
echo "ok - training reproducible"

"$EMBER" predict --model "$T/a.safetensors" --input "$T/in.csv" --samples 512 --seed 4 --energy > "$T/p1.csv"
"$EMBER" predict --model "$T/a.safetensors" --input - --samples 512 --seed 4 --energy < "$T/in.csv" > "$T/p2.csv"
cmp -s "$T/p1.csv" "$T/p2.csv" || fail "stdin and file input differ"
"$EMBER" predict --model "$T/a.safetensors" --input "$T/in.csv" --samples 512 --seed 4 --energy --threads 1 > "$T/p3.csv"
cmp -s "$T/p1.csv" "$T/p3.csv" || fail "1 and 2 threads differ"
[ "$(head -1 "$T/p1.csv")" = "y0,energy" ] || fail "header $(head -1 "$T/p1.csv")"
[ "$(wc -l < "$T/p1.csv")" -eq 4 ] || fail "row count"
echo "ok - predictions reproducible, stdin = file, threads do not change answers"

"$EMBER" info --model "$T/a.safetensors" > "$T/info.txt"
grep -q '^method  *dfo' "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q '40 steps, batch 32, negatives 16' "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
echo "ok - info"
