#!/bin/sh
# The demo behind `make run`: a 1-D dataset with jumps and a two-valued stretch, a model
# trained on it (once; delete demo/ to retrain), and its answers on a few inputs.
#   deploy/demo.sh [path/to/ember]
set -eu
EMBER=${1:-build/release/ember}
DIR=${EMBER_DEMO_DIR:-demo}
mkdir -p "$DIR"

# y = 1 + 0.5x left of -0.3; either 3 or -1 (two valid answers) on [-0.3, 0.3);
# 3 - x right of 0.3.  x uniform on [-1, 1].
if [ ! -s "$DIR/data.csv" ]; then
  awk 'BEGIN { srand(2021); print "x,y";
    for (i = 0; i < 3000; i++) {
      x = 2 * rand() - 1;
      if (x < -0.3) y = 1 + 0.5 * x; else if (x < 0.3) y = rand() < 0.5 ? 3 : -1; else y = 3 - x;
      printf "%.6f,%.6f\n", x, y } }' > "$DIR/data.csv"
fi
if [ ! -s "$DIR/model.safetensors" ]; then
  "$EMBER" train --data "$DIR/data.csv" --out "$DIR/model.safetensors" \
    --steps 2000 --batch 128 --negatives 64 --width 128 --depth 2 --seed 1
fi
printf 'x\n-0.9\n-0.35\n-0.25\n0\n0.25\n0.35\n0.9\n' > "$DIR/query.csv"
echo "== ember predict (lowest-energy y for each x)"
"$EMBER" predict --model "$DIR/model.safetensors" --input "$DIR/query.csv" --seed 1 > "$DIR/predict.csv"
paste -d, "$DIR/query.csv" "$DIR/predict.csv"
echo "== ember sample --modes 2 (every low-energy answer, with its probability mass)"
"$EMBER" sample --model "$DIR/model.safetensors" --input "$DIR/query.csv" --modes 2 --seed 1
