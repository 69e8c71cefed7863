#!/bin/sh
# The coordinate-regression comparison of docs/images.md: implicit (dfo) against explicit (mse)
# with the same encoder, soft-argmax against pooling, for 10, 30, 100 and 1000 training images;
# the mean error on held-out images inside the training region and outside it.
#   sh bench/coords/run.sh PATH/TO/ember OUTDIR [STEPS]        (SEEDS="1 2 3": training seeds)
# Writes OUTDIR/results.tsv: n, method, head, seed, error inside, error outside (mean distance
# in target units, targets in [-1, 1]^2), training seconds. The images are the same for every
# training seed (data seed n).
set -eu
EMBER=${1:?usage: run.sh EMBER OUTDIR [STEPS]}
OUT=${2:?usage: run.sh EMBER OUTDIR [STEPS]}
STEPS=${3:-600}
mkdir -p "$OUT"
SIZE=32
# held-out images: 200 inside the training region (another seed), 200 outside it
"$EMBER" data coords --size $SIZE --train 200 --test 200 --seed 99 --out-train "$OUT/in.npz" --out-test "$OUT/out.npz"
SEEDS=${SEEDS:-1}
printf 'n\tmethod\thead\tseed\terror_inside\terror_outside\ttrain_s\n' > "$OUT/results.tsv"
for n in 10 30 100 1000; do
  "$EMBER" data coords --size $SIZE --train $n --seed $n --out-train "$OUT/train$n.npz"
  for head in softargmax pool; do
    for method in dfo mse; do
     for seed in $SEEDS; do
      m="$OUT/$method-$head-$n-s$seed.safetensors"
      t0=$(date +%s)
      # --bound-margin 0.7: the training targets span [-1, 0.2] per coordinate; 0.7 of that range
      # on each side puts the DFO sampling bounds at [-1.84, 1.04], over the whole image
      "$EMBER" train --data "$OUT/train$n.npz" --out "$m" --method $method --conv 8:5:2,16:3:1 --head $head \
        --steps "$STEPS" --batch 32 --negatives 64 --width 64 --lr 0.002 --ema 0 --samples 1024 \
        --bound-margin 0.7 --seed $seed --threads 2 --quiet
      t1=$(date +%s)
      ein=$("$EMBER" eval data --model "$m" --data "$OUT/in.npz" --samples 1024 --csv | tail -1 | cut -d, -f8)
      eout=$("$EMBER" eval data --model "$m" --data "$OUT/out.npz" --samples 1024 --csv | tail -1 | cut -d, -f8)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $n $method $head $seed "$ein" "$eout" $((t1 - t0)) >> "$OUT/results.tsv"
     done
    done
  done
done
cat "$OUT/results.tsv"
