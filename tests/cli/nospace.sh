# Out of space: a checkpoint write that hits the file size limit (RLIMIT_FSIZE, `ulimit -f`, as
# a full disk or a quota would) fails with a message that says so, exit 1, and leaves nothing
# at --out: no partial file, no temporary beside it, and an older model there untouched. With
# SIGXFSZ ignored (as the brief for this test asks) and at its default disposition, which would
# kill the process at the first write past the limit if ember did not ignore it itself.
. "$(dirname "$0")/common.inc"

printf 'x,y:y\n0.1,1\n0.2,2\n0.3,3\n0.4,4\n' > "$T/ok.csv"
# a small model (about 3 KiB) to keep at the destination; a 64-wide one is about 35 KiB
"$EMBER" train --data "$T/ok.csv" --out "$T/old.safetensors" --steps 2 --batch 4 --negatives 4 --width 4 --quiet
cp "$T/old.safetensors" "$T/keep.safetensors"
mkdir "$T/d"

# limited OUT SIGXFSZ-disposition: `ember train --out OUT` of the 64-wide model under a 16-block
# file size limit (8 KiB in dash's 512-byte blocks, 16 KiB in bash's 1024)
limited() {
  (
    ulimit -f 16
    if [ "$2" = ignored ]; then trap '' XFSZ; fi
    exec "$EMBER" train --data "$T/ok.csv" --out "$1" --steps 2 --batch 4 --negatives 4 --width 64 --quiet
  )
}

for disposition in ignored default; do
  expect_exit 1 "new file, SIGXFSZ $disposition" "out of space" limited "$T/d/new.safetensors" $disposition
  grep -qF "new.safetensors: out of space: File too large; nothing was written" "$T/err" || fail "message: $(cat "$T/err")"
  [ ! -e "$T/d/new.safetensors" ] || fail "a partial checkpoint was left at the destination"
  [ -z "$(ls -A "$T/d")" ] || fail "files left behind: $(ls -A "$T/d")"

  cp "$T/keep.safetensors" "$T/d/old.safetensors"
  expect_exit 1 "existing file, SIGXFSZ $disposition" "out of space" limited "$T/d/old.safetensors" $disposition
  cmp -s "$T/d/old.safetensors" "$T/keep.safetensors" || fail "the model at the destination changed"
  [ "$(ls -A "$T/d")" = old.safetensors ] || fail "files left behind: $(ls -A "$T/d")"
  rm "$T/d/old.safetensors"
done

# the same limit lets a small model through
(ulimit -f 16; exec "$EMBER" train --data "$T/ok.csv" --out "$T/d/small.safetensors" --steps 2 --batch 4 --negatives 4 --width 4 --quiet) ||
  fail "a model under the limit was not written"
"$EMBER" info --model "$T/d/small.safetensors" > /dev/null || fail "the small model does not load"
echo "ok - a model under the limit is written"
