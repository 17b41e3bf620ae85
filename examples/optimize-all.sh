#!/bin/sh
# Runs each test function with each codec (3 virtual workers, 2 directions each)
# and prints f before and after. Usage: examples/optimize-all.sh [ZOTUNE-BINARY]
set -eu
Z=${1:-build/zotune}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for f in quadratic:1000:0 rosenbrock:100:3e-6 rastrigin:50:2e-4 ackley:64:1e-2; do
  name=${f%%:*}; rest=${f#*:}; dim=${rest%%:*}; lr=${rest#*:}
  for c in log linear none; do
    set -- --function "$name" --dim "$dim" --steps 4000 --seed 1 --workers 3 --n-directions 2 --codec "$c"
    [ "$lr" = 0 ] || set -- "$@" --lr "$lr"
    printf '%-10s %-6s ' "$name" "$c"
    "$Z" optimize "$@" --run "$out/$name-$c" --json |
      sed 's/.*"f_initial":\([^,]*\),"f_final":\([^,]*\),.*"log_bytes":\([0-9]*\).*/f \1 -> \2  (\3 log bytes)/'
  done
done
