# predict and sample take PNG files for an image model (client/png_read.c): an RGB PNG gives the
# answers of the same pixels in an .npz, bit for bit; libpng converts other PNG kinds (RGBA,
# grey, 16-bit, palette) to the model's channels; what cannot work is refused with a reason.
# The PNGs are written here with Python's zlib (a few lines of the format), not with libpng.
. "$(dirname "$0")/common.inc"
PY=/usr/bin/python3

"$EMBER" data coords --size 12 --train 40 --test 6 --seed 3 --out-train "$T/train.npz" --out-test "$T/test.npz"
"$EMBER" train --data "$T/train.npz" --out "$T/m.safetensors" --conv 4:3:1 --steps 20 --batch 16 \
  --negatives 16 --width 16 --samples 256 --seed 1 --quiet

"$PY" - "$T" <<'PYEOF'
import struct, sys, zlib
import numpy as np
t = sys.argv[1]

def png(path, a, color, depth=8, palette=None):
    """a: (h, w) or (h, w, c) integers; color: PNG colour type; filter 0 on every row."""
    h, w = a.shape[:2]
    a = a.reshape(h, w, -1)
    if depth == 16:
        raw = b"".join(b"\0" + a[r].astype(">u2").tobytes() for r in range(h))
    else:
        raw = b"".join(b"\0" + a[r].astype(np.uint8).tobytes() for r in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    if palette is not None:
        body += chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    body += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + body)

x = np.load(t + "/test.npz")["x"]
for i, img in enumerate(x):
    png("%s/t%d.png" % (t, i), img, 2)                                   # RGB, 8 bits
rgba = np.concatenate([x[0], np.full(x[0].shape[:2] + (1,), 255, np.uint8)], axis=2)
png(t + "/rgba.png", rgba, 6)                                            # opaque RGBA
png(t + "/rgb16.png", x[0].astype(np.uint16) * 257, 2, depth=16)        # 16 bits, same values
grey = np.full((12, 12), 77, np.uint8)
png(t + "/grey.png", grey, 0)
np.savez(t + "/grey.npz", x=np.repeat(grey[None, :, :, None], 3, axis=3))
pal = np.array([[10, 20, 30], [200, 100, 50]])
idx = (np.arange(144).reshape(12, 12) % 2).astype(np.uint8)
png(t + "/pal.png", idx, 3, palette=pal)
np.savez(t + "/pal.npz", x=pal[idx][None].astype(np.uint8))
png(t + "/small.png", x[0][:10, :10], 2)
with open(t + "/junk.png", "wb") as f:
    f.write(b"not a png at all")
PYEOF

list="$T/t0.png,$T/t1.png,$T/t2.png,$T/t3.png,$T/t4.png,$T/t5.png"
"$EMBER" predict --model "$T/m.safetensors" --input "$T/test.npz" --seed 4 --energy > "$T/npz.csv"
"$EMBER" predict --model "$T/m.safetensors" --input "$list" --seed 4 --energy > "$T/png.csv"
cmp -s "$T/npz.csv" "$T/png.csv" || fail "predict: 6 PNGs answer otherwise than the .npz: $(diff "$T/npz.csv" "$T/png.csv" | head -4)"
[ "$(wc -l < "$T/png.csv")" -eq 7 ] || fail "predict: $(wc -l < "$T/png.csv") lines for 6 PNGs"
"$EMBER" sample --model "$T/m.safetensors" --input "$T/test.npz" --modes 3 --seed 4 > "$T/npz.modes"
"$EMBER" sample --model "$T/m.safetensors" --input "$list" --modes 3 --seed 4 > "$T/png.modes"
cmp -s "$T/npz.modes" "$T/png.modes" || fail "sample: PNGs answer otherwise than the .npz"
echo "ok - predict and sample on RGB PNGs equal the same images in an .npz"

one() { "$EMBER" predict --model "$T/m.safetensors" --input "$1" --seed 4 --energy; }
head -2 "$T/npz.csv" > "$T/first.csv"
for kind in rgba rgb16; do
  one "$T/$kind.png" > "$T/$kind.csv"
  cmp -s "$T/first.csv" "$T/$kind.csv" || fail "$kind PNG of image 0 answers otherwise: $(cat "$T/$kind.csv")"
done
echo "ok - an opaque RGBA PNG and a 16-bit PNG of the same pixels answer the same"
for kind in grey pal; do
  one "$T/$kind.png" > "$T/$kind.a"
  one "$T/$kind.npz" > "$T/$kind.b"
  cmp -s "$T/$kind.a" "$T/$kind.b" || fail "$kind PNG is not its pixels expanded to RGB"
done
echo "ok - grey and palette PNGs become the model's RGB"

expect_error "PNG, wrong size" "takes 12x12x3 images; the data's are 10x10x3" one "$T/small.png"
expect_error "PNGs of two sizes" "where the first image has 12x12" one "$T/t0.png,$T/small.png"
expect_error "not a PNG" "junk.png: not a PNG ember can read" one "$T/junk.png"
expect_error "missing PNG" "nope.png: not a PNG ember can read" one "$T/nope.png"
expect_error "list with a CSV" "a list of inputs is PNG files only" one "$T/t0.png,$T/x.csv,$T/t1.png"
expect_error "empty name" "an empty name in the list" one "$T/t0.png,,$T/t1.png"
printf 'x,y:y\n0.1,1\n0.2,2\n0.3,3\n' > "$T/vec.csv"
"$EMBER" train --data "$T/vec.csv" --out "$T/vec.safetensors" --steps 2 --batch 2 --negatives 2 --width 4 --quiet
expect_error "PNG to a vector model" "PNG input is for image models" "$EMBER" predict --model "$T/vec.safetensors" --input "$T/t0.png"
"$PY" -c "import numpy as np; d = np.load('$T/train.npz'); np.savez('$T/trx.npz', x=d['x'], x_extra=np.ones((len(d['y']), 1), np.float32), y=d['y'])"
"$EMBER" train --data "$T/trx.npz" --out "$T/extra.safetensors" --conv 4:3:1 --steps 2 --batch 4 --negatives 4 --width 4 --quiet
expect_error "PNG to a model with extras" "1 extra observations beside each image" "$EMBER" predict --model "$T/extra.safetensors" --input "$T/t0.png"

# ember plot images: the answers drawn on the images are predict's (a red plus centred on each
# answer's pixel), the truth a green ring in every tile; a model trained long enough that its
# answers spread over the image (checked), so that a mark in the wrong place is seen
"$EMBER" train --data "$T/train.npz" --out "$T/good.safetensors" --conv 6:3:1 --steps 200 --batch 32 \
  --negatives 32 --width 32 --lr 0.003 --samples 256 --seed 2 --quiet
"$EMBER" predict --model "$T/good.safetensors" --input "$T/test.npz" --seed 4 > "$T/good.csv"
"$EMBER" plot images --model "$T/good.safetensors" --data "$T/test.npz" --out "$T/pic.png" --count 6 --cols 3 \
  --zoom 4 --seed 4 2> "$T/plot.err" || fail "plot images: $(cat "$T/plot.err")"
PYTHONPATH="$(dirname "$0")" "$PY" - "$T" <<'PYEOF' || fail "plot images: the picture is not the answers"
import math, sys
from pngread import read_png
t = sys.argv[1]
w, h, rows = read_png(t + "/pic.png")
gap, zoom, tile, top = 6, 4, 12 * 4, 6 + 12 + 6     # plot_images.c: IMG_GAP, --zoom, text line
assert (w, h) == (gap + 3 * (tile + gap), top + 2 * (tile + gap)), (w, h)
px = lambda x, y: tuple(rows[y][3 * x:3 * x + 3])
answers = [[float(v) for v in line.split(",")[:2]] for line in open(t + "/good.csv").read().split()[1:]]
assert max(a[0] for a in answers) - min(a[0] for a in answers) > 0.3, answers
assert max(a[1] for a in answers) - min(a[1] for a in answers) > 0.3, answers
for i, (u, v) in enumerate(answers):
    tx, ty = gap + (i % 3) * (tile + gap), top + (i // 3) * (tile + gap)
    cx = lambda f: math.floor(min(max((f + 1) / 2 * 11, 0), 11) * zoom + (zoom - 1) / 2 + 0.5)
    assert px(tx + cx(u), ty + cx(v)) == (255, 60, 60), (i, u, v, px(tx + cx(u), ty + cx(v)))
    green = sum(px(x, y) == (40, 230, 90) for y in range(ty, ty + tile) for x in range(tx, tx + tile))
    assert green > 10, (i, green)
PYEOF
echo "ok - plot images marks predict's answers and the truth on each image"
expect_error "plot images, vector model" "needs an image model" "$EMBER" plot images --model "$T/vec.safetensors" --data "$T/test.npz" --out "$T/x.png"
expect_error "plot images, no images" "holds no images" "$EMBER" plot images --model "$T/m.safetensors" --data "$T/vec.csv" --out "$T/x.png"
