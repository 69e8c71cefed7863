# ember plot: the energy landscape of a jump toy as a PNG, decoded here (Python's zlib, no
# imaging library) and checked where it matters: hot on the true function, cold between the
# branches, data dots, prediction marks and mode marks where they belong, the mse model's blank
# background, and the refusals.
. "$(dirname "$0")/common.inc"

PY=/usr/bin/python3
[ -x "$PY" ] || fail "plot.sh needs $PY (standard library only) to decode the PNGs"
HERE=$(cd "$(dirname "$0")" && pwd)

# y = 1 + 0.5x left of 0.3, 4 + 0.5x from 0.3 on, x in [-1, 1]
awk 'BEGIN { srand(7); print "x,y:y";
  for (i = 0; i < 800; i++) { x = 2 * rand() - 1; y = (x < 0.3 ? 1 : 4) + 0.5 * x; printf "%.6f,%.6f\n", x, y } }' > "$T/jump.csv"
common="--data $T/jump.csv --batch 128 --width 32 --depth 2 --seed 3 --threads 2 --quiet"
"$EMBER" train $common --steps 400 --negatives 64 --out "$T/ebm.safetensors"
"$EMBER" train $common --steps 200 --method mse --out "$T/mse.safetensors"

# The checker: decodes an 8-bit RGB PNG once (pngread.py), then answers one query per line of
# stdin about the plot area, given on the command line as "LEFT TOP W H" (as ember plot reports
# it on stderr) and "XLO XHI YLO YHI" (as asked).
cat > "$T/png.py" <<'PYEOF'
import sys
from pngread import read_png  # tests/cli/pngread.py, on PYTHONPATH

w, h, rows = read_png(sys.argv[1])
left, top, pw, ph = map(int, sys.argv[2:6])
xlo, xhi, ylo, yhi = map(float, sys.argv[6:10])
px = lambda c, r: tuple(rows[top + r][3 * (left + c):3 * (left + c) + 3])
lum = lambda c, r: 0.2126 * px(c, r)[0] + 0.7152 * px(c, r)[1] + 0.0722 * px(c, r)[2]
col = lambda x: int((x - xlo) / (xhi - xlo) * pw)
row = lambda y: int((yhi - y) / (yhi - ylo) * ph)
ry = lambda r: yhi - (r + 0.5) * (yhi - ylo) / ph
for q in sys.stdin:
    cmd, *args = q.split()
    if cmd == 'size':   # the image's width and height
        print(w, h)
    elif cmd == 'hot':  # X TRUE_Y FAR_Y -> them, the hottest row's y, luminance at TRUE_Y and FAR_Y
        x, ty, fy = map(float, args)
        best = max(range(ph), key=lambda r: lum(col(x), r))
        print('%g %g %g %.4f %.1f %.1f' % (x, ty, fy, ry(best), lum(col(x), row(ty)), lum(col(x), row(fy))))
    elif cmd == 'count':  # R G B -> pixels of exactly that colour in the plot area
        want = tuple(map(int, args))
        print(sum(1 for r in range(ph) for c in range(pw) if px(c, r) == want))
    elif cmd == 'rgb':  # X Y -> the pixel's colour
        print(*px(col(float(args[0])), row(float(args[1]))))
    elif cmd == 'mark':  # X TRUE_Y R G B -> X, TRUE_Y and the mean y of that colour in X's column
        x, ty = map(float, args[:2])
        want = tuple(map(int, args[2:]))
        ys = [ry(r) for r in range(ph) if px(col(x), r) == want]
        print('%g %g %s' % (x, ty, '%.4f' % (sum(ys) / len(ys)) if ys else 'none'))
PYEOF
area() { sed -n 's/.*plot area *left \([0-9]*\), top \([0-9]*\), \([0-9]*\)x\([0-9]*\) pixels.*/\1 \2 \3 \4/p' "$1"; }
# ask PNG ERRFILE: the queries on stdin about PNG, whose plot area ERRFILE reports, over $R
ask() {
  geom=$(area "$2")
  [ -n "$geom" ] || fail "no plot area on stderr: $(cat "$2")"
  PYTHONPATH="$HERE" "$PY" "$T/png.py" "$1" $geom $R
}
truth='function t(x) { return (x < 0.3 ? 1 : 4) + 0.5 * x }'

# ---- the landscape, both scales: hottest on the true function, cold between the branches ---
R="-1 1 0.5 4.5"
for scale in prob energy; do
  "$EMBER" plot --model "$T/ebm.safetensors" --out "$T/$scale.png" --scale $scale --no-predict \
    --x-range -1:1 --y-range 0.5:4.5 --size 320x240 --threads 2 2> "$T/$scale.err"
  # far: 2 below the upper branch or above the lower one, where no data ever was. The energy
  # scale's coldest is the grid's 95th percentile, so between the branches it is only cooler.
  cold=60
  [ $scale = prob ] || cold=150
  awk "$truth"' BEGIN { print "size"; print "count 0 200 255"; n = split("-0.8 -0.4 0.0 0.6 0.9", xs, " ");
    for (i = 1; i <= n; i++) { x = xs[i]; print "hot", x, t(x), t(x) + (x < 0.3 ? 2 : -2) } }' |
    ask "$T/$scale.png" "$T/$scale.err" > "$T/$scale.ans"
  [ "$(sed -n 1p "$T/$scale.ans")" = "320 240" ] || fail "$scale: size $(sed -n 1p "$T/$scale.ans")"
  [ "$(sed -n 2p "$T/$scale.ans")" -eq 0 ] || fail "$scale: the data's colour without --data"
  sed 1,2d "$T/$scale.ans" | awk -v s=$scale -v cold=$cold '{ d = $4 - $2; if (d < 0) d = -d;
    printf "%s x=%s: hottest at y=%s (true %s), luminance %s on the function, %s at y=%s\n", s, $1, $4, $2, $5, $6, $3;
    if (d > 0.25 || $5 < 180 || $6 > cold || $6 > $5 - 80) bad++ } END { exit bad > 0 }' ||
    fail "$scale: the heat map is not hottest on the function and cold away from it (above)"
done
echo "ok - hot on the function, cold between the branches (prob and energy scales)"

# ---- overlays: data dots, modes and predictions, default size ------------------------------
"$EMBER" plot --model "$T/ebm.safetensors" --out "$T/all.png" --data "$T/jump.csv" --modes 2 \
  --x-range -1:1 --y-range 0.5:4.5 --threads 2 2> "$T/all.err"
grep -q "800 of 800 points inside" "$T/all.err" || fail "data count: $(cat "$T/all.err")"
awk "$truth"' BEGIN { print "size"; print "count 0 200 255"; print "count 40 230 120";
  n = split("-0.7 -0.2 0.5 0.8", xs, " "); for (i = 1; i <= n; i++) print "mark", xs[i], t(xs[i]), 255, 255, 255 }' |
  ask "$T/all.png" "$T/all.err" > "$T/all.ans"
[ "$(sed -n 1p "$T/all.ans")" = "640 480" ] || fail "default size: $(sed -n 1p "$T/all.ans")"
dots=$(sed -n 2p "$T/all.ans") modes=$(sed -n 3p "$T/all.ans")
echo "overlays: $dots data-dot pixels, $modes full-mass mode-mark pixels"
[ "$dots" -ge 300 ] || fail "only $dots data-dot pixels for 800 points"
[ "$modes" -ge 200 ] || fail "only $modes mode-mark pixels"
sed 1,3d "$T/all.ans" | awk '{ printf "prediction mark at x=%s: y=%s (true %s)\n", $1, $3, $2;
  d = $3 - $2; if (d < 0) d = -d; if ($3 == "none" || d > 0.2) bad++ } END { exit bad > 0 }' ||
  fail "prediction marks away from the function (above)"
echo "ok - data dots, mode marks and prediction marks where the data and the model put them"

# ---- the explicit model: a neutral background, its curve, a note ----------------------------
"$EMBER" plot --model "$T/mse.safetensors" --out "$T/mse.png" --data "$T/jump.csv" --size 400x300 \
  --x-range -1:1 --y-range 0.5:4.5 --threads 2 2> "$T/mse.err" || fail "mse plot failed: $(cat "$T/mse.err")"
grep -q "explicit (mse) model, which has no energy" "$T/mse.err" || fail "mse note: $(cat "$T/mse.err")"
printf 'rgb -0.5 3.5\nmark -0.7 0.65 255 255 255\ncount 0 200 255\n' | ask "$T/mse.png" "$T/mse.err" > "$T/mse.ans"
[ "$(sed -n 1p "$T/mse.ans")" = "58 58 66" ] || fail "mse background: $(sed -n 1p "$T/mse.ans")"
set -- $(sed -n 2p "$T/mse.ans")
{ [ "$3" != none ] && awk -v y="$3" 'BEGIN { exit !(y > 0.15 && y < 1.15) }'; } || fail "mse prediction at x=-0.7: $3"
[ "$(sed -n 3p "$T/mse.ans")" -ge 100 ] || fail "mse plot lacks the data"
echo "ok - the mse model: blank background, prediction curve and data, with a note"

# ---- refusals -----------------------------------------------------------------------------
awk 'BEGIN { srand(2); print "a,b,c"; for (i = 0; i < 64; i++) printf "%.4f,%.4f,%.4f\n", rand(), rand(), rand() }' > "$T/three.csv"
small="--steps 2 --batch 16 --negatives 4 --width 8 --threads 1 --quiet"
"$EMBER" train --data "$T/three.csv" --y-dim 1 $small --out "$T/x2.safetensors"
"$EMBER" train --data "$T/three.csv" --y-dim 2 $small --out "$T/y2.safetensors"
P="$EMBER plot --model $T/ebm.safetensors --threads 1"
expect_exit 2 "2-input model refused" "has 2 inputs and 1 output; plot draws models with one input (x) and one output (y)" \
  "$EMBER" plot --model "$T/x2.safetensors" --out "$T/no.png"
expect_exit 2 "2-output model refused" "has 1 input and 2 outputs" "$EMBER" plot --model "$T/y2.safetensors" --out "$T/no.png"
expect_exit 2 "missing --model" "--model and --out are required" "$EMBER" plot --out "$T/no.png"
expect_exit 2 "missing --out" "--model and --out are required" $P
for bad in 640 0x480 64x48 640x480x2 5000x400 x; do
  expect_exit 2 "--size $bad" "--size expects WxH" $P --out "$T/no.png" --size $bad
done
expect_exit 2 "--x-range reversed" "--x-range expects LO:HI" $P --out "$T/no.png" --x-range 1:-1
expect_exit 2 "--y-range not numbers" "--y-range expects LO:HI" $P --out "$T/no.png" --y-range a:b
expect_exit 2 "--scale unknown" "--scale must be prob or energy" $P --out "$T/no.png" --scale log
expect_exit 2 "--modes too many" "--modes must be" $P --out "$T/no.png" --modes 99
expect_exit 1 "missing model file" "$T/none.safetensors" "$EMBER" plot --model "$T/none.safetensors" --out "$T/no.png"
[ ! -e "$T/no.png" ] || fail "a refused plot wrote its --out"
expect_exit 1 "unwritable --out" "cannot write" $P --out "$T/nodir/p.png" --size 120x90 --no-predict
expect_exit 1 "--out is a directory" "cannot write" $P --out "$T" --size 120x90 --no-predict
leftover=$(find "$T" "$(dirname "$T")" -maxdepth 1 -name "$(basename "$T")*.tmp.*" -o -maxdepth 1 -name "*.png.tmp.*" | head -3)
[ -z "$leftover" ] || fail "temporary files left behind: $leftover"
echo "ok - refusals name the problem and exit 2 (usage) or 1 (files)"
