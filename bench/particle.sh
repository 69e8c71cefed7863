#!/bin/sh
# bench/particle.sh - the paper's N-D particle benchmark for every method and N, over several
# training seeds; writes the results table bench/RESULTS.md.
#
#   make build && sh bench/particle.sh                   # every recipe in the recipes file
#   DIMS="1 2" METHODS="dfo mse" sh bench/particle.sh    # a part of it
#   SEEDS="1" sh bench/particle.sh                       # one training seed (an anecdote)
#
# The recipes (the exact `ember train` and `ember eval particle` flags for each N and method)
# live in one place, bench/particle/recipes.tsv (tab-separated, with a header: n, method,
# train_flags, eval_flags, data_flags). For each N: 2,000 oracle demonstrations (ember data
# particle, seed 0, plus the recipe's data_flags), then for each method and training seed one
# model (ember train --seed S) and 100 closed-loop evaluation episodes (ember eval particle,
# seed 1000, never seen in training). Finished (N, method, seed) cells are kept in
# bench/particle/results.csv (committed: the table's raw data, hours of compute) and skipped
# when the script runs again, so an interrupted run resumes and a fresh clone adds to the
# table instead of starting over; delete a cell's rows to run it again. Models and data go to
# $WORK (build output). A changed recipe is run again (the cells record
# their flags and training steps, so a method whose default steps changed is run again too).
# The table is rewritten from results.csv at the end of every run, from the rows of the recipes
# as they stand (a changed recipe's old rows stay in the file but are not shown). LOAD_NOTE="..."
# records how busy the machine was in the rows this run writes; the table marks them. Each row
# records its machine (CPU, SIMD level, cores, OpenBLAS version, threads): a table of rows from
# several machines lists them and tags every cell's training time with its machines. Rows that
# differ only in data_flags (e.g. the same method with and without --history 2) are separate
# cells, shown as "method [data flags]".
#
# Learning curves: the first training seed of every cell also saves its model SNAPSHOTS times
# during training (ember train --snapshot-every), and each snapshot is evaluated on the same
# episodes; bench/particle/curves.csv and curves-N.png / curves-N-wall.png (drawn by ember plot
# curves) show success against training steps and wall time for every N in CURVE_DIMS.
set -eu

EMBER=${EMBER:-build/release/ember}
RECIPES=${RECIPES:-bench/particle/recipes.tsv}
WORK=${WORK:-build/particle-bench}
OUT=${OUT:-bench/RESULTS.md}
DIMS=${DIMS:-}                    # empty: every N in the recipes file
METHODS=${METHODS:-}              # empty: every method in the recipes file
SEEDS=${SEEDS:-"1 2 3"}           # training seeds
EPISODES=${EPISODES:-2000}        # demonstrations per N (the paper's 2,000)
EVAL_EPISODES=${EVAL_EPISODES:-100}
THREADS=${THREADS:-$(nproc 2>/dev/null || echo 2)}
LOAD_NOTE=${LOAD_NOTE:-}          # how busy the machine was while these cells trained, if not idle
# (kept in each result row it describes, and said beside those rows in the table)
SNAPSHOTS=${SNAPSHOTS:-4}         # evaluated snapshots per curve (0: no curves)
CURVE_DIMS=${CURVE_DIMS:-"2 8 16"}
CURVES_OUT=${CURVES_OUT:-bench/particle}

die() { echo "bench/particle.sh: $*" >&2; exit 2; }
[ -x "$EMBER" ] || die "$EMBER not found; run make build first (or set EMBER)"
[ -f "$RECIPES" ] || die "$RECIPES not found"
head -1 "$RECIPES" | grep -q "^n	method	train_flags	eval_flags	data_flags$" ||
  die "$RECIPES: the header must be n, method, train_flags, eval_flags, data_flags (tab-separated)"
mkdir -p "$WORK"
RES=${RES:-bench/particle/results.csv}
HEADER="dims,method,seed,steps,train_s,steps_per_s,success,successes,episodes,ci_lo,ci_hi,goal1,goal2,actions_per_s,machine,note,recipe"
[ -f "$RES" ] || echo "$HEADER" > "$RES"
head -1 "$RES" | grep -qx "$HEADER" || die "$RES has another layout (an older version's); move it away"
# the note goes into a CSV field: no commas or line breaks
note=$(printf '%s' "$LOAD_NOTE" | tr ',\n' ';  ')
CRV=${CRV:-bench/particle/snapshots.csv} # every evaluated snapshot, with its recipe key
CHEADER="dims,method,seed,steps,wall_s,success,successes,episodes,ci_lo,ci_hi,recipe"
[ -f "$CRV" ] || echo "$CHEADER" > "$CRV"
first_seed=$(echo $SEEDS | cut -d' ' -f1)
# OpenBLAS's kernel family (ember --version): results depend on it (rounding), so it is part of
# every cell's key, and a run with other kernels does not count as done (on another CPU that can
# run the rows' kernels, OPENBLAS_CORETYPE=SkylakeX, say, reproduces them: docs/particle.md)
core=$("$EMBER" --version | sed -n 's/.*(OpenBLAS kernels: \([^)]*\)).*/\1/p')
[ -n "$core" ] || die "$EMBER --version does not name its OpenBLAS kernels (an older ember?)"
# this machine and run, as each row written here records it (times are only comparable on one
# machine): CPU, SIMD level, cores, OpenBLAS version and threads; no measured value, so that one
# machine is always the same string
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
simd=$(grep -q avx512f /proc/cpuinfo && echo AVX-512 || (grep -q avx2 /proc/cpuinfo && echo "AVX2, no AVX-512" || echo "no AVX2"))
blas=$(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo unknown)
machine=$(printf '%s (%s); %s cores; OpenBLAS %s; %s threads' "${cpu:-unknown CPU}" "$simd" "$(nproc)" "$blas" "$THREADS" | tr ',\n' '; ')
now() { date +%s.%N; }
want() { [ -z "$2" ] || echo " $2 " | grep -q " $1 "; } # want VALUE "LIST": empty LIST = all
# a cell's recipe key: its flags, so that a changed recipe is not taken as done
# FILE without the rows of the cell (n, cell, s) and recipe key k being run, into FILE.tmp (rows of
# another recipe stay: the table leaves them out, and a recipe changed back finds them again)
drop_cell() { awk -F, -v n="$n" -v c="$cell" -v s="$s" -v k="$k" '!($1 == n && $2 == c && $3 == s && $NF == k)' "$1" > "$1.tmp"; }
key() { printf '%s|%s|%s' "$1" "$2" "$3" | cksum | cut -d' ' -f1; }
# the training steps of train flags $1: --steps, else the method's default as ember train --help states it
recipe_steps() {
  st=$(echo " $1 " | sed -n 's/.* --steps \([0-9]*\) .*/\1/p')
  # shellcheck disable=SC2086
  [ -n "$st" ] || st=$("$EMBER" train $1 --help | sed -n 's/^ *--steps N .*(default \([0-9]*\)[;)].*/\1/p')
  [ -n "$st" ] && echo "$st"
}

US=$(printf '\037') # tabs become a non-blank separator, so that empty fields stay fields
tail -n +2 "$RECIPES" | tr '\t' "$US" | while IFS=$US read -r n m tf ef df; do
  [ -n "$n" ] || continue
  want "$n" "$DIMS" && want "$m" "$METHODS" || continue
  dtag=$(echo "$df" | tr -c 'a-z0-9\n' '_')
  data=$WORK/particle-$n$dtag.csv
  # a cell is a method and its data: rows that differ only in data_flags are separate cells
  cell=$m${df:+ [$df]}
  if [ ! -f "$data" ]; then
    # shellcheck disable=SC2086
    "$EMBER" data particle --dims "$n" --episodes "$EPISODES" --seed 0 $df --out "$data"
  fi
  k=$(key "$tf" "$ef" "$df blas=$core")
  steps=$(recipe_steps "$tf") || die "cannot tell the training steps of recipe N=$n $m"
  for s in $SEEDS; do
    # done: the same flags and the same training steps (a method's default may have changed)
    if awk -F, -v n="$n" -v c="$cell" -v s="$s" -v k="$k" -v st="$steps" '$1 == n && $2 == c && $3 == s && $4 == st && $NF == k { f = 1 }
        END { exit !f }' "$RES"; then
      echo "particle N=$n $cell seed $s: done before (in $RES)" >&2
      continue
    fi
    model=$WORK/particle-$n-$m$dtag-s$s.safetensors
    snap=
    if [ "$s" = "$first_seed" ] && [ "$SNAPSHOTS" -gt 0 ] && [ "$steps" -ge "$SNAPSHOTS" ]; then
      snap="--snapshot-every $((steps / SNAPSHOTS))"
    fi
    rm -f "$WORK/particle-$n-$m$dtag-s$s-step"*.safetensors
    echo "particle N=$n $cell seed $s: ember train $tf $snap" >&2
    t0=$(now)
    # shellcheck disable=SC2086
    "$EMBER" train --data "$data" --y-dim "$n" --out "$model" --seed "$s" --threads "$THREADS" --quiet $tf $snap
    t1=$(now)
    # shellcheck disable=SC2086
    line=$("$EMBER" eval particle --dims "$n" --model "$model" --episodes "$EVAL_EPISODES" --seed 1000 \
      --threads "$THREADS" --csv --quiet $ef | tail -1)
    echo "particle N=$n $cell seed $s: $line" >&2
    drop_cell "$RES"
    echo "$line" | ROW_NOTE=$note ROW_MACHINE=$machine awk -F, -v n="$n" -v m="$cell" -v s="$s" -v steps="$steps" -v t0="$t0" -v t1="$t1" -v k="$k" \
      '{ note = ENVIRON["ROW_NOTE"]; printf "%s,%s,%s,%s,%.1f,%.2f,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", n, m, s, steps, t1 - t0,
         (steps + 0) / (t1 - t0), $7, $8, $2, $9, $10, $11, $12, $13, ENVIRON["ROW_MACHINE"], note, k }' >> "$RES.tmp"
    mv "$RES.tmp" "$RES"
    # the learning curve: every snapshot (its file's time is its wall time), then the final model
    if [ -n "$snap" ]; then
      drop_cell "$CRV"
      for f in "$WORK/particle-$n-$m$dtag-s$s-step"*.safetensors; do
        [ -f "$f" ] || continue
        st=${f##*-step}; st=${st%.safetensors}
        wall=$(awk -v t="$(date -r "$f" +%s.%N)" -v t0="$t0" 'BEGIN { printf "%.1f", t - t0 }')
        # shellcheck disable=SC2086
        cl=$("$EMBER" eval particle --dims "$n" --model "$f" --episodes "$EVAL_EPISODES" --seed 1000 \
          --threads "$THREADS" --csv --quiet $ef | tail -1)
        echo "particle N=$n $cell seed $s: step $st: $cl" >&2
        echo "$cl" | awk -F, -v n="$n" -v m="$cell" -v s="$s" -v st="$st" -v w="$wall" -v k="$k" \
          '{ printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", n, m, s, st, w, $7, $8, $2, $9, $10, k }' >> "$CRV.tmp"
      done
      echo "$line" | awk -F, -v n="$n" -v m="$cell" -v s="$s" -v st="$steps" -v t0="$t0" -v t1="$t1" -v k="$k" \
        '{ printf "%s,%s,%s,%s,%.1f,%s,%s,%s,%s,%s,%s\n", n, m, s, st, t1 - t0, $7, $8, $2, $9, $10, k }' >> "$CRV.tmp"
      mv "$CRV.tmp" "$CRV"
    fi
  done
done

# ---- the rows of the recipes as they stand --------------------------------------------------
# Only they count (same flags, steps and kernels): rows and snapshots of an earlier recipe stay
# in the CSVs but are neither averaged with the new ones nor shown.
tail -n +2 "$RECIPES" | tr '\t' "$US" | while IFS=$US read -r n m tf ef df; do
  [ -n "$n" ] || continue
  st=$(recipe_steps "$tf") || die "cannot tell the training steps of recipe N=$n $m"
  echo "$n,$m${df:+ [$df]},$st,$(key "$tf" "$ef" "$df blas=$core")"
done > "$WORK/recipe-keys.csv" || exit 2
awk -F, 'FNR == NR { want[$0] = 1; next }
  FNR > 1 && (($1 "," $2 "," $4 "," $NF) in want)' "$WORK/recipe-keys.csv" "$RES" > "$WORK/current.csv"
stale=$(($(tail -n +2 "$RES" | wc -l) - $(wc -l < "$WORK/current.csv")))
# snapshots of the current rows' models (the same N, cell, seed and key)
awk -F, 'FNR == NR { want[$1 "," $2 "," $3 "," $NF] = 1; next }
  FNR > 1 && (($1 "," $2 "," $3 "," $NF) in want)' "$WORK/current.csv" "$CRV" > "$WORK/current-snapshots.csv"

# ---- learning curves: a CSV for ember plot curves and one chart per N --------------------------
[ -s "$WORK/current-snapshots.csv" ] || rm -f "$CURVES_OUT/curves.csv" # no stale curves
if [ "$SNAPSHOTS" -gt 0 ] && [ -s "$WORK/current-snapshots.csv" ]; then
  mkdir -p "$CURVES_OUT"
  echo "series,dims,method,steps,wall_s,success,ci_lo,ci_hi" > "$CURVES_OUT/curves.csv"
  sort -t, -k1,1n -k2,2 -k4,4n "$WORK/current-snapshots.csv" | awk -F, '{ printf "N=%s %s,%s,%s,%s,%s,%s,%s,%s\n", $1, $2, $1, $2, $4, $5, $6, $9, $10 }' \
    >> "$CURVES_OUT/curves.csv"
  for n in $CURVE_DIMS; do
    grep -q "^N=$n " "$CURVES_OUT/curves.csv" || continue
    { head -1 "$CURVES_OUT/curves.csv"; grep "^N=$n " "$CURVES_OUT/curves.csv"; } > "$WORK/curves-$n.csv"
    "$EMBER" plot curves --data "$WORK/curves-$n.csv" --out "$CURVES_OUT/curves-$n.png" \
      --title "particle N = $n: success against training steps (seed $first_seed)" 2>/dev/null
    "$EMBER" plot curves --data "$WORK/curves-$n.csv" --out "$CURVES_OUT/curves-$n-wall.png" --x wall_s \
      --title "particle N = $n: success against training wall time (seed $first_seed)" 2>/dev/null
  done
fi

# ---- the table ---------------------------------------------------------------------------
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
paper() { # the paper's result (success >= 95% or not) for method $1 (a cell's first word) at N = $2
  case ${1%% *} in
    dfo) [ "$2" -le 4 ] && echo ">= 95%" || echo "fails (past N = 5)" ;;
    ardfo | langevin) echo ">= 95%" ;;
    mse) [ "$2" -le 8 ] && echo ">= 95%" || echo "fails (past N = 8)" ;;
  esac
}
pct() { awk -v s="$1" 'BEGIN { printf "%.0f", 100 * s }'; }
{
  echo "# Particle benchmark results"
  echo
  echo "Generated by \`sh bench/particle.sh\` (commit $rev, $(date -u +%Y-%m-%d)) from"
  echo "bench/particle/recipes.tsv; do not edit by hand."
  # the machines of the rows shown (results.csv's machine column), tagged A, B, ... when several
  sort -t, -k1,1n -k2,2 -k3,3n "$WORK/current.csv" | awk -F, '!($15 in seen) { seen[$15] = 1; print $15 }' > "$WORK/machines.txt"
  nmach=$(wc -l < "$WORK/machines.txt")
  # (no rows yet: this machine; machines.txt is then empty only when current.csv is, so the
  # table's awk below never reads a row as a machine)
  [ "$nmach" -gt 0 ] || echo "$machine" > "$WORK/machines.txt"
  # the thread count, where every machine shown used the same
  th=$(sed -n 's/.*; \([0-9]*\) threads$/\1/p' "$WORK/machines.txt" | sort -u)
  [ "$(echo "$th" | wc -l)" -eq 1 ] && [ -n "$th" ] || th=T
  if [ "$nmach" -le 1 ]; then
    echo "Machine: $(cat "$WORK/machines.txt"); OpenBLAS's $core kernels."
  else
    echo "Machines (results.csv's machine column), OpenBLAS's $core kernels on each; a cell's training"
    echo "time and steps/s are the means of its rows, on the machines tagged beside its time:"
    echo
    awk '{ printf "- [%c] %s\n", 64 + NR, $0 }' "$WORK/machines.txt"
  fi
  if grep -qxF "$machine" "$WORK/machines.txt"; then
    # this machine's rows are shown: its sgemm peak (measured once per $WORK and thread count,
    # after the training, with the machine otherwise idle)
    if [ ! -s "$WORK/peak-$core-t$THREADS.txt" ]; then
      "$EMBER" bench infer --reps 20 --threads "$THREADS" 2>/dev/null |
        sed -n 's/.*sgemm_peak_gflops=\([0-9.]*\).*/\1/p' | tail -1 > "$WORK/peak-$core-t$THREADS.txt"
    fi
    echo
    echo "sgemm peak of the machine that wrote this table (\`ember bench infer\`, $THREADS threads): $(cat "$WORK/peak-$core-t$THREADS.txt") GFLOP/s."
  fi
  echo
  echo "The N-D particle task of the IBC paper (\`ember data particle\` / \`ember eval particle\`; the"
  echo "exact rules are in docs/particle.md). $EPISODES oracle demonstrations per N (seed 0),"
  echo "$EVAL_EPISODES evaluation episodes (seed 1000) per model, one model per training seed."
  echo "Success: the mean over the training seeds, the worst seed, and the pooled 95% Wilson"
  echo "interval over all of their episodes; the seeds' own rates follow."
  echo
  echo "Image models (the coordinate-regression task, dfo against mse): [coords/RESULTS.md](coords/RESULTS.md)."
  echo
  echo "| N | method | seeds | success: mean | worst seed | 95% interval (pooled) | per seed | paper | training steps | training time (mean) | steps/s | actions/s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  sort -t, -k1,1n -k2,2 -k3,3n "$WORK/current.csv" | awk -F, '
    function wilson(k, n,   z, p, den, mid, half) {
      z = 1.959963984540054; p = k / n; den = 1 + z * z / n; mid = (p + z * z / (2 * n)) / den
      half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
      lo = mid - half; hi = mid + half; if (lo < 0) lo = 0; if (hi > 1) hi = 1
    }
    function flush() {
      if (cell == "") return
      wilson(k, e)
      printf "%s|%d|%.1f|%.0f|%.0f-%.0f|%s|%s|%.0f%s%s|%.1f|%.0f\n", cell, ns, 100 * sum / ns, 100 * worst,
        100 * lo, 100 * hi, seeds, steps, tsum / ns, (noted ? " s (*)" : " s"), (nmach > 1 ? " [" tags "]" : ""),
        spsum / ns, apsum / ns
    }
    FNR == NR { tag[$0] = sprintf("%c", 64 + FNR); nmach = FNR; next }
    { c = $1 "|" $2
      if (c != cell) { flush(); cell = c; ns = 0; sum = 0; worst = 2; k = 0; e = 0; seeds = ""; tsum = 0; spsum = 0; apsum = 0; noted = 0; tags = "" }
      ns++; sum += $7; if ($7 < worst) worst = $7; k += $8; e += $9; steps = $4
      seeds = seeds (seeds == "" ? "" : " ") sprintf("%.0f", 100 * $7); tsum += $5; spsum += $6; apsum += $14
      if (index(tags, tag[$15]) == 0) tags = tags (tags == "" ? "" : ", ") tag[$15]
      if ($16 != "") noted = 1 }
    END { flush() }' "$WORK/machines.txt" - | while IFS='|' read -r n m ns mean worst ci seeds steps t sps aps; do
    echo "| $n | $m | $ns | $mean% | $worst% | $ci% | $seeds | $(paper "$m" "$n") | $steps | $t | $sps | $aps |"
  done
  echo
  missing=$(tail -n +2 "$RECIPES" | tr '\t' "$US" | while IFS=$US read -r n m tf ef df; do
    [ -n "$n" ] || continue
    cell=$m${df:+ [$df]}
    awk -F, -v n="$n" -v c="$cell" '$1 == n && $2 == c { f = 1 } END { exit !f }' "$WORK/current.csv" ||
      printf '%s' "N = $n $cell; "
  done)
  if [ -n "$missing" ]; then
    echo "Recipes in the file with no result yet (not run): ${missing%; }."
    echo
  fi
  if [ "$stale" -gt 0 ]; then
    [ "$stale" -eq 1 ] && rows="1 row" || rows="$stale rows"
    echo "Not shown: $rows of $RES from earlier recipes (their flags, steps or OpenBLAS"
    echo "kernels differ from the recipes file's, or their recipe is gone from it)."
    echo
  fi
  echo "Paper: implicit policies (autoregressive DFO, Langevin) keep >= 95% success up to N = 16,"
  echo "plain DFO fails past N = 5, the explicit MSE policy past N = 8; the official repository's"
  echo "sanity check at N = 2 (256x2 nets, 10k steps) gives Langevin 96% and MSE 5%."
  echo
  echo "## Recipes (bench/particle/recipes.tsv)"
  echo
  echo "| N | method | ember train | ember eval particle | ember data particle |"
  echo "|---|---|---|---|---|"
  tail -n +2 "$RECIPES" | tr '\t' "$US" | while IFS=$US read -r n m tf ef df; do
    [ -n "$n" ] || continue
    echo "| $n | $m | \`$tf\` | \`${ef:-(the model's defaults)}\` | \`--dims $n --episodes $EPISODES${df:+ $df}\` |"
  done
  echo
  echo "Every run adds \`--data DATA --y-dim N --out MODEL --seed S --threads $th\` to training and"
  echo "\`--dims N --model MODEL --episodes $EVAL_EPISODES --seed 1000 --threads $th\` to evaluation"
  [ "$th" = T ] && echo "(T: the threads of the row's machine line)." || echo "(the threads of the machine line)."
  # the rows' notes (how busy the machine was), one line per cell and note
  notes=$(sort -t, -k1,1n -k2,2 -k3,3n "$WORK/current.csv" | awk -F, '$16 != "" {
      c = "N = " $1 " " $2 SUBSEP $16
      if (!(c in seeds)) order[++k] = c
      seeds[c] = seeds[c] (seeds[c] == "" ? "" : ", ") $3; count[c]++ }
    END { for (i = 1; i <= k; i++) { split(order[i], p, SUBSEP)
            printf "- (*) %s, training seed%s %s: %s\n", p[1], (count[order[i]] > 1 ? "s" : ""), seeds[order[i]], p[2] } }')
  if [ -n "$notes" ]; then
    echo "Training time and steps/s are wall-clock on the row's machine, with nothing else running except where"
    echo "marked (*):"
    echo
    echo "$notes"
    echo
  else
    echo "Training time and steps/s are wall-clock on the row's machine, with nothing else running;"
  fi
  echo "actions/s is closed-loop inference over all episodes at once (one batched call per"
  echo "control step)."
  echo
  if [ -f "$CURVES_OUT/curves.csv" ]; then
    echo "## Learning curves (training seed $first_seed)"
    echo
    echo "Success of the snapshots each model saved during training, on the same $EVAL_EPISODES episodes"
    echo "(bench/particle/curves.csv; charts: bench/particle/curves-N.png against steps,"
    echo "curves-N-wall.png against wall time)."
    echo
    echo "| N | method | steps | wall time | success (95% interval) |"
    echo "|---|---|---|---|---|"
    tail -n +2 "$CURVES_OUT/curves.csv" | while IFS=, read -r series n m st w sc lo hi; do
      echo "| $n | $m | $st | $w s | $(pct "$sc")% ($(pct "$lo")-$(pct "$hi")%) |"
    done
    echo
  fi
  echo "What these numbers say, and why some fall short of the paper's: docs/particle.md."
} > "$OUT"
echo "bench/particle.sh: wrote $OUT" >&2
