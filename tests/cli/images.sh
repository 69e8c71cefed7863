# Image models through the CLI: ember data coords writes the coordinate task's .npz files,
# ember train builds an encoder for them (dfo and mse), predict / sample / eval data take the
# images, a fixed seed and thread count give the same checkpoint byte for byte, and mismatched
# inputs are refused with messages that say what was expected.
. "$(dirname "$0")/common.inc"

"$EMBER" data coords --size 12 --train 60 --test 20 --seed 1 --out-train "$T/train.npz" --out-test "$T/test.npz"
"$EMBER" data coords --size 12 --train 60 --test 20 --seed 1 --out-train "$T/again.npz"
cmp -s "$T/train.npz" "$T/again.npz" || fail "data coords: the same seed gave another file"

SMALL="--conv 6:3:1 --steps 200 --batch 32 --negatives 32 --width 32 --lr 0.003 --seed 2 --quiet"
"$EMBER" train --data "$T/train.npz" --out "$T/dfo.safetensors" $SMALL --samples 512 --threads 2
"$EMBER" train --data "$T/train.npz" --out "$T/dfo2.safetensors" $SMALL --samples 512 --threads 2
cmp -s "$T/dfo.safetensors" "$T/dfo2.safetensors" || fail "train: the same seed and threads gave another model"
"$EMBER" train --data "$T/train.npz" --out "$T/mse.safetensors" $SMALL --method mse
"$EMBER" train --data "$T/train.npz" --out "$T/pool.safetensors" $SMALL --head pool --steps 20
echo "ok - trained dfo and mse (softargmax head), and dfo with the pool head, on images"
# image data's recipe (ember_train_opts_for_images) for every option not given, the method's
# otherwise; the help says both defaults
"$EMBER" train --data "$T/train.npz" --out "$T/recipe.safetensors" --conv 6:3:1 --steps 3 --quiet
"$EMBER" info --model "$T/recipe.safetensors" > "$T/info"
grep -q "resnet 64x2" "$T/info" || fail "image recipe: $(grep network "$T/info")"
grep -q "3 steps, batch 32, negatives 64, lr 0.002," "$T/info" || fail "image recipe: $(grep '^training' "$T/info")"
"$EMBER" train --data "$T/train.npz" --out "$T/recipe.safetensors" --conv 6:3:1 --steps 3 --width 16 --batch 8 --quiet
"$EMBER" info --model "$T/recipe.safetensors" > "$T/info"
grep -q "resnet 16x2" "$T/info" && grep -q "3 steps, batch 8, negatives 64, lr 0.002," "$T/info" ||
  fail "flags given: $(grep 'network\|^training' "$T/info")"
"$EMBER" train --data "$T/train.npz" --out "$T/recipe.safetensors" --method langevin --conv 6:3:1 --steps 3 --quiet
"$EMBER" info --model "$T/recipe.safetensors" > "$T/info"
grep -q "resnet 128x2" "$T/info" && grep -q "3 steps, batch 128, negatives 8, lr 0.001," "$T/info" ||
  fail "langevin keeps its recipe: $(grep 'network\|^training' "$T/info")"
"$EMBER" train --help > "$T/help"
grep -q -- "--steps N .*(default 8000; image data 600)" "$T/help" && grep -q -- "--width N .*(default 128; image data 64)" "$T/help" &&
  grep -q -- "--ema X .*(default 0.999; image data 0)" "$T/help" || fail "help: $(grep -e '--steps\|--width\|--ema' "$T/help")"
"$EMBER" train --method langevin --help | grep -q -- "--steps N .*(default 24000)$" || fail "langevin help: $("$EMBER" train --method langevin --help | grep -e --steps)"
echo "ok - image data train with their recipe where no flag is given; the help says so"

"$EMBER" info --model "$T/dfo.safetensors" > "$T/info"
grep -q "^encoder .*12x12x3 images, conv 6:3:1, head softargmax: 12 features + 0 extra" "$T/info" ||
  fail "info lacks the encoder: $(cat "$T/info")"
"$EMBER" info --model "$T/pool.safetensors" | grep -q "head pool: 6 features" || fail "info: the pool head"

"$EMBER" predict --model "$T/dfo.safetensors" --input "$T/test.npz" > "$T/pred"
[ "$(head -1 "$T/pred")" = "y0,y1" ] || fail "predict: header $(head -1 "$T/pred")"
[ "$(wc -l < "$T/pred")" -eq 21 ] || fail "predict: $(wc -l < "$T/pred") lines for 20 images"
"$EMBER" sample --model "$T/dfo.safetensors" --input "$T/test.npz" --modes 2 > "$T/modes"
[ "$(cut -d, -f1 "$T/modes" | sort -u | grep -c '^[0-9]')" -eq 20 ] || fail "sample: not every image answered"
echo "ok - predict and sample take .npz images"

# both models find the dot on their training images (targets span 1.2 per coordinate)
for m in dfo mse; do
  "$EMBER" eval data --model "$T/$m.safetensors" --data "$T/train.npz" --samples 512 --csv > "$T/eval"
  err=$(tail -1 "$T/eval" | cut -d, -f8)
  awk -v e="$err" 'BEGIN { exit !(e < 0.15) }' || fail "$m: mean error $err on its training images"
  echo "ok - $m: mean error $err on the training images"
done

printf 'x,y:y\n0.1,1\n0.2,2\n0.3,3\n' > "$T/vec.csv"
"$EMBER" train --data "$T/vec.csv" --out "$T/vec.safetensors" --steps 2 --batch 2 --negatives 2 --width 4 --quiet
expect_error "vector model, images" "uint8 images of 12x12x3; expected 1 float columns" "$EMBER" predict --model "$T/vec.safetensors" --input "$T/test.npz"
expect_error "image model, vectors" "takes 12x12x3 images" "$EMBER" predict --model "$T/dfo.safetensors" --input "$T/vec.csv"
"$EMBER" data coords --size 10 --train 3 --out-train "$T/small.npz"
expect_error "image model, other size" "takes 12x12x3 images; the data's are 10x10x3" "$EMBER" predict --model "$T/dfo.safetensors" --input "$T/small.npz"
expect_error "bad conv" "channels:kernel:stride" "$EMBER" train --data "$T/train.npz" --out "$T/x.safetensors" --conv 6:3
expect_error "conv too big" "does not fit" "$EMBER" train --data "$T/train.npz" --out "$T/x.safetensors" --conv 6:9:1,6:9:1
expect_error "padding too big" "convolution 0: padding must be 0..kernel - 1 (2), got 3" "$EMBER" train --data "$T/train.npz" --out "$T/x.safetensors" --conv 6:3:1:3
expect_error "bad head" "--head must be softargmax or pool" "$EMBER" train --data "$T/train.npz" --out "$T/x.safetensors" --head max
expect_error "conv on vectors" "--conv and --head apply to image data" "$EMBER" train --data "$T/vec.csv" --out "$T/x.safetensors" --conv 4:3:1
expect_error "ardfo on images" "ardfo is not supported" "$EMBER" train --data "$T/train.npz" --out "$T/x.safetensors" --method ardfo --quiet
expect_error "validation on images" "validation of image models" "$EMBER" train --data "$T/train.npz" --out "$T/x.safetensors" --val-split 0.2 --quiet
[ ! -e "$T/x.safetensors" ] || fail "a refused train left a checkpoint"
