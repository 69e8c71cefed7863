# No silent wrong answers (docs/signatures.md): `ember train` never guesses which CSV columns
# are y, a model keeps its columns' names and heads predict's and sample's output with them,
# and the flags that belong to the other mode (or a --server without a port) say so.
. "$(dirname "$0")/common.inc"

small="--steps 2 --batch 4 --negatives 4 --width 4 --samples 64 --threads 1 --quiet"
printf 'px,py,ax,ay\n0.1,0.2,1,2\n0.2,0.3,2,3\n0.3,0.1,3,1\n0.4,0.5,4,5\n' > "$T/plain.csv"
printf 'px,py,y:ax,y:ay\n0.1,0.2,1,2\n0.2,0.3,2,3\n0.3,0.1,3,1\n0.4,0.5,4,5\n' > "$T/marked.csv"
printf '0.1,0.2,1,2\n0.2,0.3,2,3\n' > "$T/bare.csv"
printf 'px,py\n0.2,0.3\n0.3,0.2\n' > "$T/q.csv"

# a header that does not say which columns are y: refused with the header and the choices
# (this file used to train as 3 inputs and 1 output), and no model written
expect_exit 1 "unmarked header" 'which columns are y? The header "px,py,ax,ay" marks none' \
  "$EMBER" train --data "$T/plain.csv" --out "$T/m.safetensors" $small
for choice in "y: prefix (px,py,ax,y:ay)" "--y-cols ay" "--y-dim"; do
  grep -qF -- "$choice" "$T/err" || fail "the refusal does not offer '$choice': $(cat "$T/err")"
done
[ ! -e "$T/m.safetensors" ] || fail "a refused train wrote a model"
expect_exit 1 "headerless without --y-dim" "no header line names the columns" \
  "$EMBER" train --data "$T/bare.csv" --out "$T/m.safetensors" $small
grep -qF -- "--y-dim K" "$T/err" || fail "headerless refusal: $(cat "$T/err")"
expect_exit 1 "--y-cols naming a column the header lacks" "--y-cols names \"az\", which the header \"px,py,ax,ay\" does not have" \
  "$EMBER" train --data "$T/plain.csv" --y-cols ax,az --out "$T/m.safetensors" $small
expect_exit 1 "--y-dim against the marks" "the header marks 2 y columns, but --y-dim is 1" \
  "$EMBER" train --data "$T/marked.csv" --y-dim 1 --out "$T/m.safetensors" $small
echo "ok - which columns are y is never guessed"

# y: marks: 2 inputs, 2 outputs, named; predict and sample head their output with the names
"$EMBER" train --data "$T/marked.csv" --out "$T/marked.safetensors" $small
"$EMBER" info --model "$T/marked.safetensors" > "$T/info"
grep -q "^x_dim  *2$" "$T/info" && grep -q "^y_dim  *2$" "$T/info" || fail "marked dims: $(cat "$T/info")"
grep -q "^x_names  *\[px, py\]$" "$T/info" && grep -q "^y_names  *\[ax, ay\]$" "$T/info" || fail "marked names: $(cat "$T/info")"
"$EMBER" predict --model "$T/marked.safetensors" --input "$T/q.csv" --energy > "$T/p.csv"
[ "$(head -1 "$T/p.csv")" = "ax,ay,energy" ] || fail "predict header: $(head -1 "$T/p.csv")"
[ "$(wc -l < "$T/p.csv")" -eq 3 ] || fail "predict rows: $(cat "$T/p.csv")"
"$EMBER" sample --model "$T/marked.safetensors" --input "$T/q.csv" --modes 2 > "$T/s.csv"
[ "$(head -1 "$T/s.csv")" = "row,rank,energy,weight,ax,ay" ] || fail "sample header: $(head -1 "$T/s.csv")"
# --y-cols: y in the order named, from anywhere in the header; the same model as the marks
# would make with the columns in that order
"$EMBER" train --data "$T/plain.csv" --y-cols ay,px --out "$T/cols.safetensors" $small
"$EMBER" info --model "$T/cols.safetensors" > "$T/info"
grep -q "^x_names  *\[py, ax\]$" "$T/info" && grep -q "^y_names  *\[ay, px\]$" "$T/info" || fail "--y-cols names: $(cat "$T/info")"
printf 'py,ax\n0.2,1\n' > "$T/q2.csv"
"$EMBER" predict --model "$T/cols.safetensors" --input "$T/q2.csv" > "$T/p.csv"
[ "$(head -1 "$T/p.csv")" = "ay,px" ] || fail "--y-cols predict header: $(head -1 "$T/p.csv")"
# --y-dim with a header: the last columns, named by it; headerless: y0..
"$EMBER" train --data "$T/plain.csv" --y-dim 1 --out "$T/last.safetensors" $small
"$EMBER" info --model "$T/last.safetensors" | grep -q "^y_names  *\[ay\]$" || fail "--y-dim names"
"$EMBER" train --data "$T/bare.csv" --y-dim 2 --out "$T/bare.safetensors" $small
printf '0.2,0.3\n' > "$T/q3.csv"
"$EMBER" predict --model "$T/bare.safetensors" --input "$T/q3.csv" > "$T/p.csv"
[ "$(head -1 "$T/p.csv")" = "y0,y1" ] || fail "headerless predict header: $(head -1 "$T/p.csv")"
echo "ok - y: marks, --y-cols and --y-dim train the right dims and names; output headed by them"

# a --server without a port is refused before anything is sent (gRPC would quietly try 443)
expect_exit 2 "--server without a port" "--server localhost has no port: give HOST:PORT (e.g. localhost:50051" \
  "$EMBER" --server localhost predict --model m --input "$T/q.csv"
expect_exit 2 "--server with a bad port" "the port must be a number 1..65535, got 'http'" \
  "$EMBER" --server localhost:http info --model m
expect_exit 2 "--server, bare IPv6" "an IPv6 address goes in brackets" "$EMBER" --server ::1 models
expect_exit 2 "--server [IPv6] without a port" "has no port" "$EMBER" --server '[::1]' models
expect_exit 1 "health: never exit 2" "has no port" "$EMBER" --server localhost health
expect_exit 2 "bench serve's own --server" "--server emberd has no port" "$EMBER" bench serve --server emberd --model m
expect_exit 2 "eval particle's own --server" "--server emberd has no port" \
  "$EMBER" eval particle --dims 1 --model m --server emberd
# options of the other mode are named as such, not "unknown"
expect_exit 2 "remote-only option locally" "--deadline-ms is for remote mode, ember --server HOST:PORT predict" \
  "$EMBER" predict --model "$T/marked.safetensors" --input "$T/q.csv" --deadline-ms 50
expect_exit 2 "remote-only train option locally" "--model is for remote mode" \
  "$EMBER" train --data "$T/marked.csv" --model m
expect_exit 2 "local-only option remotely" "--out is for local mode, without --server" \
  "$EMBER" --server 127.0.0.1:9 train --model m --data "$T/marked.csv" --out "$T/x.safetensors"
expect_exit 2 "an unknown option stays unknown" "unknown option '--deadline'" \
  "$EMBER" predict --model "$T/marked.safetensors" --input "$T/q.csv" --deadline 50
echo "ok - --server needs a port; the other mode's options are named"
