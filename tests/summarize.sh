#!/bin/sh
# Sums test results over build directories: every cmocka test ("[       OK ]"
# / "[  FAILED  ] test_...") and every shell check ("ok - " / "not ok - ") in
# tests/*.log, plus any test program that failed without saying which check
# (a crash, a sanitizer report). Prints the failing logs, then a last line
# "N passed, N failed". Exit status 1 if anything failed or nothing ran.
passed=0
failed=0
for dir in "$@"; do
  for log in "$dir"/tests/*.log; do
    [ -f "$log" ] || continue
    p=$(grep -cE '^\[       OK \]|^ok - ' "$log")
    f=$(grep -cE '^\[  FAILED  \] [A-Za-z_]|^not ok - ' "$log")
    trs=${log%.log}.trs
    if [ -f "$trs" ] && grep -qE '^:test-result: (FAIL|ERROR)' "$trs"; then
      [ "$f" -eq 0 ] && f=1
      echo "==== $log (FAILED)"
      cat "$log"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
  done
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
