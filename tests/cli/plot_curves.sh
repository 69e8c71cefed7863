# ember plot curves: learning curves from a CSV as a PNG, decoded here (pngread.py: Python's
# zlib, no imaging library) and checked where it matters: each series in its own colour, a
# point at 100% near the top of the plot area and one at 0% near the bottom, later steps further
# right, lines joined in x order whatever the file's order, error bars, the legend in the file's
# order, --x wall_s and --title; then the help and every refusal.
. "$(dirname "$0")/common.inc"

PY=/usr/bin/python3
[ -x "$PY" ] || fail "plot_curves.sh needs $PY (standard library only) to decode the PNGs"
HERE=$(cd "$(dirname "$0")" && pwd)

# Two series, rows shuffled. dfo climbs from 0% at step 100 to 100% at 550 and falls back to 0%
# at 1000 (listed first), so a line drawn in file order would run along the bottom through step
# 550; mse is flat at 75% with error bars on its first two points. wall_s orders dfo differently.
cat > "$T/curves.csv" <<'EOF'
series,steps,wall_s,success,ci_lo,ci_hi,note
N=2 dfo,1000,50,0.0,,,last
N=2 dfo,100,90,0.0,,,first
N=2 mse,100,20,0.75,0.65,0.85,
"N=2 dfo",550,10,1.0,0.9,1.0,"peak, with a comma"
N=2 mse,550,40,0.75,0.6,0.9,
N=2 mse,1000,60,0.75,,,
EOF

# The checker: decodes the PNG once, reads the plot area, the ranges and the series' colours
# from ember's stderr, then answers one query per line of stdin:
#   size                  the image's width and height
#   colour K              series K's colour, "R G B" (as stderr reports it)
#   near K X S            1 if a pixel of series K's colour lies within 2 pixels of (x X, success S)
#   extent K              topmost, bottommost, leftmost and rightmost pixel of series K's colour in
#                         the plot area, as fractions of its height and width (0 top or left)
#   legend K              the first row right of the plot area with series K's colour, or -1
#   ink TOP BOTTOM        pixels of the text colour in image rows TOP .. BOTTOM - 1
cat > "$T/curves.py" <<'PYEOF'
import re, sys
from pngread import read_png  # tests/cli/pngread.py, on PYTHONPATH

w, h, rows = read_png(sys.argv[1])
err = open(sys.argv[2]).read()
left, top, pw, ph = map(int, re.search(r'plot area +left (\d+), top (\d+), (\d+)x(\d+) pixels', err).groups())
xlo, xhi = map(float, re.search(r'\n  x +(\S+) \.\. (\S+) across', err).groups())
ylo, yhi = map(float, re.search(r'\n  y +(\S+) \.\. (\S+) up', err).groups())
colours = [tuple(int(c[i:i + 2], 16) for i in (0, 2, 4)) for c in re.findall(r'series +\d+ +#([0-9a-f]{6}) ', err)]
px = lambda x, y: tuple(rows[y][3 * x:3 * x + 3])
area = [(x, y) for y in range(top, top + ph) for x in range(left, left + pw)]
for q in sys.stdin:
    cmd, *a = q.split()
    if cmd == 'size':
        print(w, h)
    elif cmd == 'colour':
        print(*colours[int(a[0]) - 1])
    elif cmd == 'near':
        c = colours[int(a[0]) - 1]
        cx = int(left + (float(a[1]) - xlo) / (xhi - xlo) * pw)
        cy = int(top + (yhi - 100 * float(a[2])) / (yhi - ylo) * ph)
        print(int(any(px(x, y) == c for y in range(cy - 2, cy + 3) for x in range(cx - 2, cx + 3))))
    elif cmd == 'extent':
        c = colours[int(a[0]) - 1]
        pts = [(x, y) for x, y in area if px(x, y) == c]
        if not pts: print('none'); continue
        print('%.4f %.4f %.4f %.4f' % (min((y - top) / ph for x, y in pts), max((y - top) / ph for x, y in pts),
                                       min((x - left) / pw for x, y in pts), max((x - left) / pw for x, y in pts)))
    elif cmd == 'legend':
        c = colours[int(a[0]) - 1]
        print(next((y for y in range(h) for x in range(left + pw + 2, w) if px(x, y) == c), -1))
    elif cmd == 'ink':
        print(sum(1 for y in range(int(a[0]), int(a[1])) for x in range(w) if px(x, y) == (40, 40, 48)))
PYEOF
# ask PNG ERRFILE: the queries on stdin about PNG, drawn as ERRFILE reports
ask() { PYTHONPATH="$HERE" "$PY" "$T/curves.py" "$1" "$2"; }

# ---- the chart: colours, positions, order, error bars, legend -------------------------------
"$EMBER" plot curves --data "$T/curves.csv" --out "$T/steps.png" 2> "$T/steps.err" ||
  fail "plot curves failed: $(cat "$T/steps.err")"
cat "$T/steps.err"
grep -q "training steps, data 0 .. 1000" "$T/steps.err" || fail "x axis: $(cat "$T/steps.err")"
grep -q "N=2 dfo: 3 points, with error bars" "$T/steps.err" || fail "series 1: $(cat "$T/steps.err")"
grep -q "N=2 mse: 3 points, with error bars" "$T/steps.err" || fail "series 2: $(cat "$T/steps.err")"
ask "$T/steps.png" "$T/steps.err" > "$T/steps.ans" <<'EOF'
size
colour 1
colour 2
extent 1
extent 2
near 1 100 0
near 1 550 1
near 1 1000 0
near 2 100 0.75
near 2 550 0.75
near 2 1000 0.75
near 1 325 0.5
near 1 775 0.5
near 1 550 0
near 2 550 0.62
near 2 100 0.83
near 2 1000 0.65
legend 1
legend 2
EOF
ans() { sed -n "$1p" "$T/steps.ans"; }
[ "$(ans 1)" = "640 480" ] || fail "default size: $(ans 1)"
[ "$(ans 2)" != "$(ans 3)" ] || fail "both series drawn in $(ans 2)"
echo "colours: dfo $(ans 2), mse $(ans 3)"
set -- $(ans 4)
echo "dfo spans rows $1 .. $2 and columns $3 .. $4 of the plot area"
awk -v t="$1" -v b="$2" -v l="$3" -v r="$4" 'BEGIN { exit !(t < 0.06 && b > 0.94 && l < 0.15 && r > 0.93) }' ||
  fail "dfo (0% .. 100%, steps 100 .. 1000) does not reach the top, bottom, left and right of the plot area"
set -- $(ans 5)
echo "mse spans rows $1 .. $2 of the plot area"
awk -v t="$1" -v b="$2" 'BEGIN { exit !(t > 0.12 && t < 0.22 && b > 0.3 && b < 0.45) }' ||
  fail "mse (75%, error bars 60% .. 90%) is not a quarter down the plot area"
[ "$(sed -n 6,11p "$T/steps.ans" | tr -d '\n')" = 111111 ] || fail "markers missing at their points: $(sed -n 6,11p "$T/steps.ans" | tr '\n' ' ')"
[ "$(sed -n 12,13p "$T/steps.ans" | tr -d '\n')" = 11 ] || fail "dfo's line does not join its points in step order"
[ "$(ans 14)" = 0 ] || fail "dfo drawn through step 550 at 0%: joined in file order"
[ "$(ans 15)$(ans 16)" = 11 ] || fail "mse's error bars missing"
[ "$(ans 17)" = 0 ] || fail "an error bar drawn on a point without ci_lo, ci_hi"
legend1=$(ans 18) legend2=$(ans 19)
[ "$legend1" -ge 0 ] && [ "$legend2" -ge 0 ] || fail "legend swatches missing: rows $legend1, $legend2"
[ "$legend1" -lt "$legend2" ] || fail "legend not in the file's order: dfo at row $legend1, mse at $legend2"
echo "ok - colours, 100% at the top and 0% at the bottom, steps left to right, x order, error bars, legend"

# ---- --x wall_s: dfo's peak is now its earliest point ----------------------------------------
"$EMBER" plot curves --data "$T/curves.csv" --out "$T/wall.png" --x wall_s --size 320x240 2> "$T/wall.err" ||
  fail "--x wall_s failed: $(cat "$T/wall.err")"
grep -q "training wall time (s), data 0 .. 90" "$T/wall.err" || fail "wall x axis: $(cat "$T/wall.err")"
printf 'size\nnear 1 10 1\nnear 1 50 0\nnear 1 90 0\nnear 2 20 0.75\nnear 2 60 0.75\nnear 1 30 0.5\n' |
  ask "$T/wall.png" "$T/wall.err" > "$T/wall.ans"
[ "$(sed -n 1p "$T/wall.ans")" = "320 240" ] || fail "--size 320x240: $(sed -n 1p "$T/wall.ans")"
[ "$(sed 1d "$T/wall.ans" | tr -d '\n')" = 111111 ] || fail "--x wall_s: points or lines not at their wall times"
echo "ok - --x wall_s puts the points at their wall times"

# ---- --title: a line of text above the chart ------------------------------------------------
"$EMBER" plot curves --data "$T/curves.csv" --out "$T/title.png" --title "Particle N=2: success %" 2> "$T/title.err"
top0=$(sed -n 's/.*plot area *left [0-9]*, top \([0-9]*\),.*/\1/p' "$T/steps.err")
top1=$(sed -n 's/.*plot area *left [0-9]*, top \([0-9]*\),.*/\1/p' "$T/title.err")
[ "$top1" -gt "$top0" ] || fail "--title: the plot area starts at row $top1, without a title $top0"
ink0=$(echo "ink 0 $top0" | ask "$T/steps.png" "$T/steps.err")
ink1=$(echo "ink 0 $top1" | ask "$T/title.png" "$T/title.err")
[ "$ink1" -gt $((ink0 + 100)) ] || fail "--title: $ink1 text pixels above the plot area, $ink0 without"
echo "ok - --title draws a line above the chart"

# ---- help -----------------------------------------------------------------------------------
"$EMBER" plot --help > "$T/help1" || fail "ember plot --help failed"
"$EMBER" plot curves --help > "$T/help2" || fail "ember plot curves --help failed"
for needle in "ember plot --model" "ember plot curves --data CURVES.csv" "--x steps|wall_s" "--scale"; do
  grep -qF -- "$needle" "$T/help1" || fail "ember plot --help lacks '$needle'"
done
for needle in "ember plot curves --data CURVES.csv" "ember plot --model" "--x steps|wall_s" "--title TEXT" "ci_lo" "--size WxH"; do
  grep -qF -- "$needle" "$T/help2" || fail "ember plot curves --help lacks '$needle'"
done
echo "ok - ember plot --help and ember plot curves --help describe both forms"

# ---- ten series: ten colours; eleven refused ------------------------------------------------
awk 'BEGIN { print "series,steps,wall_s,success"; for (i = 1; i <= 11; i++) for (k = 1; k <= 3; k++)
  printf "run %d,%d,%d,%.2f\n", i, 100 * k, 5 * k, (i + k) / 15 }' > "$T/eleven.csv"
grep -v '^run 11,' "$T/eleven.csv" > "$T/ten.csv"
"$EMBER" plot curves --data "$T/ten.csv" --out "$T/ten.png" 2> "$T/ten.err" || fail "ten series: $(cat "$T/ten.err")"
distinct=$(grep -o 'series .*#[0-9a-f]\{6\}' "$T/ten.err" | awk '{ print $3 }' | sort -u | wc -l)
[ "$distinct" -eq 10 ] || fail "ten series in $distinct distinct colours"
echo "ok - ten series in ten colours"

# ---- refusals -------------------------------------------------------------------------------
C="$EMBER plot curves"
# bad CSV NAME CONTENT: writes $T/NAME.csv
bad() { printf "$2" > "$T/$1.csv"; }
expect_exit 2 "missing --data" "--data and --out are required" $C --out "$T/no.png"
expect_exit 2 "missing --out" "--data and --out are required" $C --data "$T/curves.csv"
expect_exit 2 "unknown --x" "--x must be steps or wall_s, got 'epochs'" $C --data "$T/curves.csv" --out "$T/no.png" --x epochs
expect_exit 2 "bad --size" "--size expects WxH" $C --data "$T/curves.csv" --out "$T/no.png" --size 50x50
bad nowall 'series,steps,success\na,1,0.5\n'
expect_exit 2 "missing column" "has no column 'wall_s'; its header is: series,steps,success" $C --data "$T/nowall.csv" --out "$T/no.png"
bad twomissing 'name,steps,wall_s\n'
expect_exit 2 "two missing columns" "has no column 'series', 'success'" $C --data "$T/twomissing.csv" --out "$T/no.png"
bad nonnum 'series,steps,wall_s,success\na,1,2,0.5\na,2,x3,0.5\n'
expect_exit 2 "non-numeric value" "line 3, column 'wall_s': 'x3' is not a number" $C --data "$T/nonnum.csv" --out "$T/no.png"
bad emptycell 'series,steps,wall_s,success\na,,2,0.5\n'
expect_exit 2 "empty value" "line 2, column 'steps': empty" $C --data "$T/emptycell.csv" --out "$T/no.png"
bad percent 'series,steps,wall_s,success\na,1,2,80\n'
expect_exit 2 "success as a percentage" "column 'success': 80 is outside [0, 1] (a fraction is expected" $C --data "$T/percent.csv" --out "$T/no.png"
bad negative 'series,steps,wall_s,success\na,1,2,-0.1\n'
expect_exit 2 "success below 0" "column 'success': -0.1 is outside [0, 1]" $C --data "$T/negative.csv" --out "$T/no.png"
bad ci 'series,steps,wall_s,success,ci_lo,ci_hi\na,1,2,0.5,0.6,0.9\n'
expect_exit 2 "interval without its point" "the interval ci_lo 0.6 .. ci_hi 0.9 does not hold success 0.5" $C --data "$T/ci.csv" --out "$T/no.png"
bad halfci 'series,steps,wall_s,success,ci_hi\na,1,2,0.5,0.6\n'
expect_exit 2 "ci_hi without ci_lo" "has column 'ci_hi' but not 'ci_lo'" $C --data "$T/halfci.csv" --out "$T/no.png"
bad header 'series,steps,wall_s,success\n'
expect_exit 2 "no rows" "has a header but no data rows" $C --data "$T/header.csv" --out "$T/no.png"
bad empty ''
expect_exit 2 "empty file" "is empty" $C --data "$T/empty.csv" --out "$T/no.png"
bad short 'series,steps,wall_s,success\na,1,2\n'
expect_exit 2 "short row" "line 2 has 3 fields, the header 4" $C --data "$T/short.csv" --out "$T/no.png"
bad quote 'series,steps,wall_s,success\n"a,1,2,0.5\n'
expect_exit 2 "open quote" "line 2: a quoted field is not closed" $C --data "$T/quote.csv" --out "$T/no.png"
expect_exit 2 "more series than colours" "has 11 series; at most 10 are allowed" $C --data "$T/eleven.csv" --out "$T/no.png"
expect_exit 1 "missing data file" "cannot read $T/none.csv" $C --data "$T/none.csv" --out "$T/no.png"
[ ! -e "$T/no.png" ] || fail "a refused chart wrote its --out"
expect_exit 1 "unwritable --out" "cannot write" $C --data "$T/curves.csv" --out "$T/nodir/c.png"
expect_exit 1 "--out is a directory" "cannot write" $C --data "$T/curves.csv" --out "$T"
leftover=$(find "$T" -name "*.tmp.*" | head -3)
[ -z "$leftover" ] || fail "temporary files left behind: $leftover"
echo "ok - refusals name the problem and exit 2 (usage, CSV) or 1 (files)"
