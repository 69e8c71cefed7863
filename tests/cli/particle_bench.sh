# bench/particle.sh's table, from fixture results (no training: DIMS names no recipe's N): the
# rows of the recipes as they stand are averaged, rows of an earlier recipe are left out and
# counted, a row's load note marks its cell and is listed, rows from two machines list both and
# tag each cell's time with its machines (and their thread counts, when they differ), a recipe
# without results is named, the snapshots of the current recipes become the learning curves,
# and an older results layout is refused.
. "$(dirname "$0")/common.inc"

SRC=$(cd "$(dirname "$0")/../.." && pwd)
run() { # the script with every file in $T
  EMBER="$EMBER" RECIPES="$T/recipes.tsv" RES="$T/results.csv" CRV="$T/snapshots.csv" WORK="$T/scratch" \
    OUT="$T/RESULTS.md" CURVES_OUT="$T/curves" DIMS=99 THREADS=2 sh "$SRC/bench/particle.sh" "$@"
}
mkdir -p "$T/scratch"
core=$("$EMBER" --version | sed -n 's/.*(OpenBLAS kernels: \([^)]*\)).*/\1/p')
echo 100.0 > "$T/scratch/peak-$core-t2.txt" # no sgemm benchmark in a test
printf 'n\tmethod\ttrain_flags\teval_flags\tdata_flags\n' > "$T/recipes.tsv"
printf '2\tdfo\t--method dfo --steps 300\t\t--history 2\n' >> "$T/recipes.tsv"
printf '2\tmse\t--method mse\t\t\n' >> "$T/recipes.tsv" # steps: the method's default
H="dims,method,seed,steps,train_s,steps_per_s,success,successes,episodes,ci_lo,ci_hi,goal1,goal2,actions_per_s,machine,note,recipe"
echo "$H" > "$T/results.csv"
echo "dims,method,seed,steps,wall_s,success,successes,episodes,ci_lo,ci_hi,recipe" > "$T/snapshots.csv"
run 2> "$T/err" || fail "first run: $(cat "$T/err")"
# no rows yet: the table names this machine, with its sgemm peak (the seeded 100.0)
grep -qF 'sgemm peak of the machine that wrote this table (`ember bench infer`, 2 threads): 100.0 GFLOP/s.' "$T/RESULTS.md" ||
  fail "this machine's peak: $(grep 'sgemm peak' "$T/RESULTS.md")"
grep -q "no result yet (not run): N = 2 dfo \[--history 2\]; N = 2 mse\." "$T/RESULTS.md" ||
  fail "recipes without results: $(grep 'no result' "$T/RESULTS.md")"
# the keys of the recipes as they stand (n, cell, steps, key), as the script wrote them
kd=$(awk -F, '$2 == "dfo [--history 2]" { print $4 }' "$T/scratch/recipe-keys.csv")
km=$(awk -F, '$2 == "mse" && $3 == 8000 { print $4 }' "$T/scratch/recipe-keys.csv") # mse's default steps
[ -n "$kd" ] && [ -n "$km" ] || fail "recipe keys: $(cat "$T/scratch/recipe-keys.csv")"
cat >> "$T/results.csv" <<EOF2
2,dfo [--history 2],1,300,10.0,30.00,0.9000,90,100,0.8,0.95,,,500,Box A (AVX2); 2 cores; OpenBLAS 1; 2 threads,,$kd
2,dfo [--history 2],2,300,30.0,10.00,0.6000,60,100,0.5,0.7,,,500,Box A (AVX2); 2 cores; OpenBLAS 1; 2 threads,shared with a build,$kd
2,dfo [--history 2],3,300,20.0,15.00,0.7500,75,100,0.65,0.83,,,500,Box B (AVX-512); 4 cores; OpenBLAS 1; 2 threads,,$kd
2,dfo [--history 2],3,300,20.0,15.00,0.0000,0,100,0,0.04,,,500,Box C,,12345
2,dfo [--history 2],4,500,20.0,25.00,0.0100,1,100,0,0.05,,,500,Box C,,$kd
2,mse,1,8000,8.0,1000.00,0.9500,95,100,0.89,0.98,,,9000,Box A (AVX2); 2 cores; OpenBLAS 1; 2 threads,,$km
EOF2
cat >> "$T/snapshots.csv" <<EOF2
2,dfo [--history 2],1,150,5.0,0.5000,50,100,0.4,0.6,$kd
2,dfo [--history 2],1,300,10.0,0.9000,90,100,0.8,0.95,$kd
2,dfo [--history 2],1,100,4.0,0.0100,1,100,0,0.05,12345
EOF2
run 2> "$T/err" || fail "second run: $(cat "$T/err")"
# seeds 1-3 of the current recipe: mean 75%, worst 60%, 30 s of training... (20 s mean), marked;
# the row of another key and the one of other steps are not counted
grep -qF "| 2 | dfo [--history 2] | 3 | 75.0% | 60% |" "$T/RESULTS.md" || fail "cell: $(grep '^| 2 | dfo' "$T/RESULTS.md")"
grep -qF "| 90 60 75 |" "$T/RESULTS.md" || fail "per seed: $(grep '^| 2 | dfo' "$T/RESULTS.md")"
grep -qF "| 300 | 20 s (*) [A, B] |" "$T/RESULTS.md" || fail "marked time: $(grep '^| 2 | dfo' "$T/RESULTS.md")"
grep -qF "| 8000 | 8 s [A] |" "$T/RESULTS.md" || fail "mse's machine: $(grep '^| 2 | mse' "$T/RESULTS.md")"
# the machines of the rows shown, in table order (Box C's rows are not shown)
[ "$(grep -c '^- \[[A-Z]\] ' "$T/RESULTS.md")" -eq 2 ] &&
  grep -qxF -- "- [A] Box A (AVX2); 2 cores; OpenBLAS 1; 2 threads" "$T/RESULTS.md" && grep -qxF -- "- [B] Box B (AVX-512); 4 cores; OpenBLAS 1; 2 threads" "$T/RESULTS.md" ||
  fail "machines: $(grep '^- \[' "$T/RESULTS.md")"
grep -qF -- "--seed S --threads 2\` to training" "$T/RESULTS.md" || fail "threads: $(grep 'Every run adds' "$T/RESULTS.md")"
! grep -q "sgemm peak" "$T/RESULTS.md" || fail "a peak for rows of other machines: $(grep 'sgemm peak' "$T/RESULTS.md")"
grep -qF -- "- (*) N = 2 dfo [--history 2], training seed 2: shared with a build" "$T/RESULTS.md" ||
  fail "note: $(grep -F '(*)' "$T/RESULTS.md")"
grep -qF "Not shown: 2 rows of $T/results.csv from earlier recipes" "$T/RESULTS.md" || fail "stale rows: $(grep 'Not shown' "$T/RESULTS.md")"
grep -qF "| 2 | mse | 1 | 95.0% | 95% |" "$T/RESULTS.md" || fail "mse (default steps): $(grep '^| 2 | mse' "$T/RESULTS.md")"
! grep -q "no result yet" "$T/RESULTS.md" || fail "every recipe has results: $(grep 'no result' "$T/RESULTS.md")"
echo "ok - the table counts the current recipes' rows, marks and lists notes and machines, names what is missing"
# the learning curve: the current recipe's snapshots only, in step order
[ "$(grep -c '^N=2 dfo' "$T/curves/curves.csv")" -eq 2 ] || fail "curves: $(cat "$T/curves/curves.csv")"
grep -q '^N=2 dfo \[--history 2\],2,dfo \[--history 2\],150,5.0,0.5000' "$T/curves/curves.csv" || fail "curves: $(cat "$T/curves/curves.csv")"
[ -s "$T/curves/curves-2.png" ] || fail "no curves-2.png"
echo "ok - learning curves from the current recipe's snapshots"
# machines that ran with different thread counts: the table cannot state one, and says so
sed -i 's/Box B (AVX-512); 4 cores; OpenBLAS 1; 2 threads/Box B (AVX-512); 4 cores; OpenBLAS 1; 4 threads/' "$T/results.csv"
run 2> "$T/err" || fail "run with two thread counts: $(cat "$T/err")"
grep -qF -- "--seed S --threads T\` to training" "$T/RESULTS.md" &&
  grep -qxF "(T: the threads of the row's machine line)." "$T/RESULTS.md" ||
  fail "threads T: $(grep -A2 'Every run adds' "$T/RESULTS.md")"
echo "ok - rows of several thread counts: the threads are the machine line's"
# a results file of the layout before the machine column is refused, not misread
sed -i 's/actions_per_s,machine,note,recipe/actions_per_s,note,recipe/' "$T/results.csv"
expect_exit 2 "an older results layout is refused" "has another layout" run
