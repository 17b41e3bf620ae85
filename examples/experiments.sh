#!/bin/sh
# The experiments of docs/experiments.md: zotune train on the bundled example
# (examples/base.gguf fine-tuned on examples/data), one factor changed at a
# time from the base recipe, two seeds each. Each run is single-threaded and
# JOBS runs go at once (default 2).
#   examples/experiments.sh [ZOTUNE] [OUT]
# ZOTUNE: the zotune binary (build/zotune); OUT: where runs go
# (runs/experiments). Environment: SEEDS ("1 2"), JOBS (2), ONLY (an
# extended regular expression: run only the plan lines whose name matches).
# Writes OUT/results.tsv (name, seed, tuned parameters, held-out loss before,
# at every 50 steps and after, seconds, log bytes) and the charts (PLOTS,
# default docs/experiments/*.svg).
# Runs already finished in OUT are kept (zotune train resumes them).
set -eu
cd "$(dirname "$0")/.."
Z=${1:-build/zotune}
OUT=${2:-runs/experiments}
JOBS=${JOBS:-2}
ONLY=${ONLY:-.}
SEEDS=${SEEDS:-"1 2"}
mkdir -p "$OUT"

NORMS='blk.*norm*,output_norm.weight'
BASE="--tune $NORMS --lr 0.2 --eps 1e-2 --batch 16 --dist gaussian --codec log"

# name|options that replace the base's (later options win in zotune train)
cat > "$OUT/plan.txt" <<PLAN
base|
dist-rademacher|--dist rademacher
codec-linear|--codec linear
codec-none|--codec none
lr-0.05|--lr 0.05
lr-0.1|--lr 0.1
lr-0.4|--lr 0.4
lr-0.8|--lr 0.8
sched-cosine|--schedule cosine --lr 0.4
eps-1e-3|--eps 1e-3
eps-1e-1|--eps 1e-1
batch-4|--batch 4
batch-8|--batch 8
batch-32|--batch 32
workers-2|--workers 2
workers-4|--workers 4
tune-all-lr3e-5|--tune all --lr 3e-5
tune-all-lr1e-4|--tune all --lr 1e-4
tune-all-lr2e-4|--tune all --lr 2e-4
tune-output-lr1e-3|--tune output.weight --lr 1e-3
tune-output-lr3e-3|--tune output.weight --lr 3e-3
tune-layers3-lr3e-4|--tune layers:3-3 --lr 3e-4
tune-lora-lr1e-3|--tune lora:r=8,targets=q,v --lr 1e-3
tune-lora-lr1e-2|--tune lora:r=8,targets=q,v --lr 1e-2
tune-lora-lr3e-2|--tune lora:r=8,targets=q,v --lr 3e-2
PLAN

for s in $SEEDS; do
  while IFS='|' read -r name opts; do
    echo "$name|$s|$opts"
  done < "$OUT/plan.txt" | grep -E "^($ONLY)[|]" || true
done | xargs -P "$JOBS" -I{} sh -c '
  line="$1"; Z="$2"; OUT="$3"; BASE="$4"
  name=${line%%|*}; rest=${line#*|}; seed=${rest%%|*}; opts=${rest#*|}
  dir="$OUT/$name-s$seed"
  [ -f "$dir/summary.json" ] && exit 0
  # shellcheck disable=SC2086
  "$Z" train --model examples/base.gguf --data examples/data/train.jsonl \
    --eval-data examples/data/dev.jsonl --run "$dir" --steps 300 --seed "$seed" \
    --eval-every 50 --threads 1 --json $BASE $opts > "$dir.out" 2>&1 ||
    echo "experiments: $name seed $seed failed (see $dir.out)" >&2
  echo "$name seed $seed: $(grep -o "\"eval_loss_after\":[0-9.]*" "$dir.out")"
' sh {} "$Z" "$OUT" "$BASE"

# The README's main job (scripts/setup.sh example) with other seeds, for the
# spread of its result: MAIN_SEEDS="1 2 3 4 5".
for s in ${MAIN_SEEDS:-}; do echo "$s"; done | xargs -P "$JOBS" -I{} sh -c '
  s="$1"; Z="$2"; OUT="$3"; dir="$OUT/main-s$s"
  [ -f "$dir/summary.json" ] && exit 0
  "$Z" train --model examples/base.gguf --data examples/data/train.jsonl \
    --eval-data examples/data/dev.jsonl --run "$dir" --seed "$s" --steps 900 --tune norms \
    --lr 0.2 --batch 16 --eval-every 150 --threads 1 --json > "$dir.out" 2>&1 ||
    echo "experiments: main job seed $s failed (see $dir.out)" >&2
  echo "main job seed $s: $(grep -o "\"eval_loss_after\":[0-9.]*" "$dir.out")"
' sh {} "$Z" "$OUT"
for s in ${MAIN_SEEDS:-}; do
  f="$OUT/main-s$s/summary.json"
  [ -f "$f" ] || continue
  printf 'main job seed %s: held-out %s -> %s\n' "$s" \
    "$(sed -n 's/.*"eval_loss_before": *\([0-9.]*\).*/\1/p' "$f")" \
    "$(sed -n 's/.*"eval_loss_after": *\([0-9.]*\).*/\1/p' "$f")"
done

# One row per run: the held-out curve from metrics.jsonl, time and bytes from summary.json.
{
  printf 'name\tseed\ttuned\teval_0\teval_50\teval_100\teval_150\teval_200\teval_250\teval_300\tseconds\tlog_bytes\n'
  for s in $SEEDS; do
    while IFS='|' read -r name opts; do
      dir="$OUT/$name-s$s"
      [ -f "$dir/summary.json" ] || continue
      evals=$(grep -o '"eval_loss":[0-9.]*' "$dir/metrics.jsonl" | cut -d: -f2 | tr '\n' '\t')
      tuned=$(sed -n 's/.*"tuned_parameters": *\([0-9]*\).*/\1/p' "$dir/summary.json")
      secs=$(sed -n 's/.*"seconds": *\([0-9.]*\).*/\1/p' "$dir/summary.json")
      bytes=$(sed -n 's/.*"log_bytes": *\([0-9]*\).*/\1/p' "$dir/summary.json")
      printf '%s\t%s\t%s\t%s%s\t%s\n' "$name" "$s" "$tuned" "$evals" "$secs" "$bytes"
    done < "$OUT/plan.txt"
  done
} > "$OUT/results.tsv"
echo "experiments: $OUT/results.tsv"

# The charts of docs/experiments.md: held-out loss of seed 1 of each group.
PLOTS=${PLOTS:-docs/experiments}
mkdir -p "$PLOTS"
plot() {
  title=$1; file=$2; shift 2
  args=""
  for n in "$@"; do
    [ -f "$OUT/$n-s1/metrics.jsonl" ] && args="$args --run $OUT/$n-s1"
  done
  # shellcheck disable=SC2086
  if [ -n "$args" ]; then "$Z" plot $args --title "$title" -o "$PLOTS/$file.svg"; fi
}
plot "directions (held-out loss, seed 1)" directions base dist-rademacher
plot "codecs (held-out loss, seed 1)" codecs base codec-linear codec-none
plot "learning rate (held-out loss, seed 1)" lr lr-0.05 lr-0.1 base lr-0.4 lr-0.8 sched-cosine
plot "eps (held-out loss, seed 1)" eps eps-1e-3 base eps-1e-1
plot "batch (held-out loss, seed 1)" batch batch-4 batch-8 base batch-32
plot "workers (held-out loss, seed 1)" workers base workers-2 workers-4
plot "tuned parameters, best lr of each (held-out loss, seed 1)" tuned base tune-all-lr2e-4 \
  tune-output-lr3e-3 tune-layers3-lr3e-4 tune-lora-lr1e-2
cp "$OUT/results.tsv" "$PLOTS/results.tsv"
echo "experiments: charts and results.tsv in $PLOTS"
