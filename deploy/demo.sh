#!/bin/sh
# The demo behind `make run`: a 1-D dataset with jumps and a two-valued stretch, a model
# trained on it once (delete demo/ to retrain), then emberd serving it on 127.0.0.1:50051.
#   deploy/demo.sh [BUILD_DIR]          (default build/release)
#   EMBER_DEMO_LISTEN=127.0.0.1:50052 deploy/demo.sh     another address
set -eu
BUILD=${1:-build/release}
DIR=${EMBER_DEMO_DIR:-demo}
LISTEN=${EMBER_DEMO_LISTEN:-127.0.0.1:50051}
mkdir -p "$DIR/models/demo"

# y = 1 + 0.5x left of -0.3; either 3 or -1 (two valid answers) on [-0.3, 0.3);
# 3 - x right of 0.3.  x uniform on [-1, 1].
if [ ! -s "$DIR/data.csv" ]; then
  awk 'BEGIN { srand(2021); print "x,y";
    for (i = 0; i < 3000; i++) {
      x = 2 * rand() - 1;
      if (x < -0.3) y = 1 + 0.5 * x; else if (x < 0.3) y = rand() < 0.5 ? 3 : -1; else y = 3 - x;
      printf "%.6f,%.6f\n", x, y } }' > "$DIR/data.csv"
fi
if [ ! -s "$DIR/models/demo/1.safetensors" ]; then
  "$BUILD/ember" train --data "$DIR/data.csv" --y-dim 1 --out "$DIR/models/demo/1.safetensors" \
    --steps 2000 --batch 128 --negatives 64 --width 128 --depth 2 --seed 1
fi
printf 'x\n-0.9\n-0.31\n-0.29\n0\n0.29\n0.31\n0.9\n' > "$DIR/query.csv"
cat <<MSG
emberd will serve model 'demo' on $LISTEN (Ctrl-C stops it). From another terminal:
  $BUILD/ember --server $LISTEN predict --model demo --input $DIR/query.csv
  $BUILD/ember --server $LISTEN sample --model demo --input $DIR/query.csv --modes 2
  $BUILD/ember --server $LISTEN models
  grpcurl -plaintext $LISTEN list
  grpcurl -plaintext -d '{"model": "demo", "x": [0]}' $LISTEN ember.v1.Ember/Predict
Drop a new checkpoint into $DIR/models/demo/2.safetensors and it is served at once.
MSG
exec "$BUILD/emberd" --models "$DIR/models" --listen "$LISTEN"
