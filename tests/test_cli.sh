#!/bin/sh
# Integration tests of the zotune command: optimize, replay, hash, resume,
# crash recovery, refusals and exit codes. Prints "ok - NAME" / "not ok - NAME"
# per check and exits 1 if any failed.
set -u
top_builddir=${top_builddir:-.}
Z="$top_builddir/zotune"
T=$(mktemp -d /tmp/zotune-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
no() { fail=$((fail + 1)); echo "not ok - $1"; [ $# -gt 1 ] && echo "#   $2"; }
check() { # NAME CONDITION-COMMAND...
  name=$1
  shift
  if "$@"; then ok "$name"; else no "$name"; fi
}
fsize() { if [ -f "$1" ]; then wc -c <"$1"; else echo 0; fi; }
# json_num FILE KEY: the number after "KEY": in a one-line JSON object.
json_num() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$1"; }

Q="--function quadratic --dim 1000 --steps 8000 --seed 1"

# 1. Acceptance: each codec takes the 1000-d quadratic below 1e-3 of its start.
for c in log linear none; do
  "$Z" optimize $Q --codec $c --run "$T/q_$c" --json >"$T/q_$c.json" 2>"$T/err"
  rc=$?
  fi=$(json_num "$T/q_$c.json" f_initial)
  ff=$(json_num "$T/q_$c.json" f_final)
  if [ $rc -eq 0 ] && awk -v a="$fi" -v b="$ff" 'BEGIN { exit !(b < 1e-3 * a) }'; then
    ok "optimize quadratic converges with codec $c ($fi -> $ff)"
  else
    no "optimize quadratic converges with codec $c" "rc=$rc f $fi -> $ff: $(cat "$T/err")"
  fi
done

# 2. --json carries the documented keys.
for k in f_initial f_final steps records log_bytes sha256; do
  check "optimize --json has $k" grep -q "\"$k\":" "$T/q_log.json"
done
check "records = steps for one worker" \
  test "$(json_num "$T/q_log.json" records)" = "$(json_num "$T/q_log.json" steps)"
logsize=$(wc -c <"$T/q_log/log.zol")
check "log_bytes is the log file's size" test "$(json_num "$T/q_log.json" log_bytes)" = "$logsize"

# 3. replay and hash rebuild the live result.
live=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/q_log.json")
h=$("$Z" hash --run "$T/q_log")
check "hash prints 64 hex digits only" sh -c "echo '$h' | grep -Eqx '[0-9a-f]{64}'"
check "hash after replay equals the live run's" test "$h" = "$live"
"$Z" replay --run "$T/q_log" >"$T/replay.out" 2>&1
check "replay exits 0 and says it matches" grep -q "^matches" "$T/replay.out"
check "hash with the scalar path equals" test "$(ZOTUNE_ISA=scalar "$Z" hash --run "$T/q_log")" = "$live"

# 4. Thread count does not change the result (large enough to split).
B="--function rosenbrock --dim 200000 --steps 30 --seed 5 --n-directions 4 --lr 1e-7 --weight-decay 0.01 --schedule cosine --warmup 3"
"$Z" optimize $B --threads 1 --run "$T/t1" >/dev/null 2>&1
"$Z" optimize $B --threads 2 --run "$T/t2" >/dev/null 2>&1
h1=$("$Z" hash --run "$T/t1" --threads 1)
h2=$("$Z" hash --run "$T/t2" --threads 2)
check "--threads 1 and 2 give the same hash" test -n "$h1" -a "$h1" = "$h2"
check "replay with 2 threads of a 1-thread run matches" test "$("$Z" hash --run "$T/t1" --threads 2)" = "$h1"

# 5. Workers and direction modes replay exactly.
for m in per-worker shared pool:16; do
  d="$T/w_$(echo $m | tr : _)"
  "$Z" optimize --function ackley --dim 64 --steps 300 --seed 9 --workers 3 --n-directions 2 \
    --directions $m --codec linear --run "$d" --json >"$d.json" 2>/dev/null
  check "workers 3, directions $m: 6 records per step" test "$(json_num "$d.json" records)" = 1800
  "$Z" replay --run "$d" >/dev/null 2>&1
  check "workers 3, directions $m: replay matches" test $? -eq 0
done

# 6. Resume after a torn write: cut the log mid-frame, rerun, same final hash.
"$Z" optimize $Q --steps 3000 --run "$T/full" --json >"$T/full.json" 2>/dev/null
full=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/full.json")
"$Z" optimize $Q --steps 3000 --run "$T/torn" >/dev/null 2>&1
size=$(wc -c <"$T/torn/log.zol")
# Keep 1000 whole steps (17 bytes each after the 100-byte header) plus 9 bytes.
truncate -s $((100 + 17 * 1000 + 9)) "$T/torn/log.zol"
"$Z" optimize $Q --steps 3000 --run "$T/torn" --json >"$T/torn.json" 2>"$T/torn.err"
check "resume reports the torn tail" grep -q "torn" "$T/torn.err"
check "resume after a torn write reaches the same hash" \
  test "$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/torn.json")" = "$full"
check "the resumed log is whole again" test "$(wc -c <"$T/torn/log.zol")" = "$size"

# 7. kill -9 mid-run, then resume: same final hash as the uninterrupted run.
K="--function rosenbrock --dim 200000 --steps 2000 --seed 2 --lr 1e-7 --threads 1"
"$Z" optimize $K --run "$T/kfull" --json >"$T/kfull.json" 2>/dev/null
kfull=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/kfull.json")
"$Z" optimize $K --run "$T/kill" >/dev/null 2>&1 &
pid=$!
i=0 # wait until at least 50 steps are in the log, then kill
while [ $i -lt 400 ] && [ "$(fsize "$T/kill/log.zol")" -lt 950 ]; do
  sleep 0.05
  i=$((i + 1))
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
partial=$(( ($(wc -c <"$T/kill/log.zol") - 100) / 17 ))
check "kill -9 landed mid-run (after $partial of 2000 steps)" test $partial -lt 2000
"$Z" optimize $K --run "$T/kill" --json >"$T/kill.json" 2>/dev/null
check "kill -9, resume: same hash as the uninterrupted run" \
  test "$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/kill.json")" = "$kfull"

# 8. Refusals: a different config on an existing run; a log from another run.
"$Z" optimize $Q --lr 0.01 --run "$T/q_log" >/dev/null 2>"$T/err"
rc=$?
check "a different config on an existing run exits 1" test $rc -eq 1
check "... and names the field" grep -q "optimizer.lr" "$T/err"
cp "$T/q_linear/log.zol" "$T/q_log/log.zol.other"
mkdir -p "$T/mix" && cp "$T/q_log/config.json" "$T/mix/" && cp "$T/q_linear/log.zol" "$T/mix/"
"$Z" replay --run "$T/mix" >/dev/null 2>"$T/err"
rc=$?
check "a log from another run exits 1" test $rc -eq 1
check "... and says so" grep -q "another run" "$T/err"

# 9. Corruption in the middle of a log is an error naming the offset.
cp -r "$T/q_none" "$T/bad"
printf '\377' | dd of="$T/bad/log.zol" bs=1 seek=500 conv=notrunc 2>/dev/null
"$Z" replay --run "$T/bad" >/dev/null 2>"$T/err"
rc=$?
check "a bad CRC mid-log exits 1" test $rc -eq 1
check "... naming the offset" grep -q "bad CRC in step frame at offset" "$T/err"
printf 'NOTALOG!' | dd of="$T/bad/log.zol" bs=1 seek=0 conv=notrunc 2>/dev/null
"$Z" hash --run "$T/bad" >/dev/null 2>"$T/err"
check "a file that is not a log exits 1" test $? -eq 1
"$Z" replay --run "$T/nowhere" >/dev/null 2>"$T/err"
check "replay of a missing run exits 1" test $? -eq 1

# 10. Bad options exit 1 naming the option; --help exits 0.
for args in "--dim abc" "--dim 0" "--seed -1" "--lr nan" "--codec gzip" "--directions pool:0" \
  "--workers 0" "--function sphere" "--bogus"; do
  "$Z" optimize --function quadratic --dim 10 --steps 1 --seed 1 --run "$T/o" $args \
    >/dev/null 2>"$T/err"
  rc=$?
  opt=$(echo "$args" | cut -d' ' -f1)
  if [ $rc -eq 1 ] && grep -q -- "${opt#--}" "$T/err"; then ok "optimize $args: exit 1 naming it"
  else no "optimize $args: exit 1 naming it" "rc=$rc: $(cat "$T/err")"; fi
done
"$Z" optimize --function quadratic --dim 10 --seed 1 --run "$T/o" >/dev/null 2>"$T/err"
check "a missing required option exits 1" test $? -eq 1
for cmd in optimize replay hash; do
  "$Z" $cmd --help >"$T/help" 2>&1
  check "$cmd --help exits 0" test $? -eq 0 -a -s "$T/help"
done
"$Z" --help >/dev/null
check "zotune --help exits 0" test $? -eq 0
"$Z" frobnicate >/dev/null 2>&1
check "an unknown command exits 1" test $? -eq 1

# 11. Models: init-model, info, eval, generate.
"$Z" init-model --arch llama --layers 2 --dim 64 --heads 4 --kv-heads 2 --vocab bytes --ctx 64 \
  --seed 3 -o "$T/ll.gguf" >"$T/init.out" 2>&1
check "init-model llama exits 0" test $? -eq 0
"$Z" info "$T/ll.gguf" --tensors >"$T/info.out" 2>&1
check "info names the architecture" grep -q "^architecture: llama" "$T/info.out"
check "info lists tensors with shapes" grep -q "blk.1.attn_k.weight *F32 *\[32, 64\]" "$T/info.out"
check "info shows the tokenizer" grep -q "^tokenizer: 258 tokens, bos 256, eos 257" "$T/info.out"
"$Z" init-model --arch gpt2 --layers 1 --dim 32 --heads 2 --vocab bytes --ctx 64 --seed 3 \
  --dtype f16 -o "$T/g.gguf" >/dev/null 2>&1
check "info of an f16 gpt2 model" sh -c "'$Z' info '$T/g.gguf' --tensors | grep -q 'token_embd.weight *F16'"
printf '{"text": "hello world"}\n{"prompt": "2+2=", "completion": "4"}\n' >"$T/d.jsonl"
printf '{"prompt": "sky: ", "choices": ["blue", "green"], "answer": 0}\n' >>"$T/d.jsonl"
"$Z" eval --model "$T/ll.gguf" --data "$T/d.jsonl" --json >"$T/eval.json" 2>"$T/err"
check "eval --json exits 0" test $? -eq 0
loss=$(json_num "$T/eval.json" loss)
check "eval of a random model: loss near ln(258) = 5.55 ($loss)" \
  awk -v l="$loss" 'BEGIN { exit !(l > 5.3 && l < 5.8) }'
check "eval reports accuracy for choices" grep -q '"accuracy":' "$T/eval.json"
check "eval counts target tokens (11 + 1 + 4)" test "$(json_num "$T/eval.json" tokens)" = 16
printf '{"text": "fine"}\n{"text": broken}\n' >"$T/bad.jsonl"
"$Z" eval --model "$T/ll.gguf" --data "$T/bad.jsonl" >/dev/null 2>"$T/err"
check "eval of a bad JSONL line exits 1" test $? -eq 1
check "... naming file and line" grep -q "bad.jsonl:2: invalid JSON" "$T/err"
printf 'GGUF\003\000\000\000garbage' >"$T/bad.gguf"
"$Z" eval --model "$T/bad.gguf" --data "$T/d.jsonl" >/dev/null 2>"$T/err"
check "eval of a corrupt model exits 1 naming it" sh -c "test $? -eq 1 && grep -q bad.gguf '$T/err'"
"$Z" generate --model "$T/ll.gguf" --prompt "abc" --max-tokens 5 >"$T/gen1" 2>&1
check "generate (greedy) exits 0" test $? -eq 0
"$Z" generate --model "$T/ll.gguf" --prompt "abc" --max-tokens 5 --temperature 1 --seed 4 >"$T/gen2" 2>&1
"$Z" generate --model "$T/ll.gguf" --prompt "abc" --max-tokens 5 --temperature 1 --seed 4 >"$T/gen3" 2>&1
check "generate with a seed is reproducible" cmp -s "$T/gen2" "$T/gen3"
for cmd in init-model info eval generate; do
  "$Z" $cmd --help >"$T/help" 2>&1
  check "$cmd --help exits 0" test $? -eq 0 -a -s "$T/help"
done

# 12. train, resume after kill -9, export.
"$Z" init-model --arch llama --layers 2 --dim 32 --heads 2 --vocab bytes --ctx 64 --seed 5 \
  -o "$T/tiny.gguf" >/dev/null 2>&1
i=0
: >"$T/tr.jsonl"
: >"$T/dv.jsonl"
while [ $i -lt 120 ]; do
  printf '{"text": "the cat sat on the mat %d times"}\n' $((i % 7)) >>"$T/tr.jsonl"
  [ $((i % 6)) -eq 0 ] && printf '{"text": "the cat sat on the mat %d times"}\n' $((i % 5)) >>"$T/dv.jsonl"
  i=$((i + 1))
done
TR="--model $T/tiny.gguf --data $T/tr.jsonl --eval-data $T/dv.jsonl --steps 150 --seed 2 --lr 2e-3 --eps 1e-2 --batch 4"
"$Z" train $TR --run "$T/t_a" --threads 1 --json >"$T/ta.json" 2>"$T/err"
check "train exits 0" test $? -eq 0
tail -1 "$T/ta.json" >"$T/ta.last"
b=$(json_num "$T/ta.last" eval_loss_before)
a=$(json_num "$T/ta.last" eval_loss_after)
check "train lowers the held-out loss ($b -> $a)" awk -v b="$b" -v a="$a" 'BEGIN { exit !(a < b - 0.5) }'
ha=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/ta.last")
check "hash of a model run equals the live run's" test "$("$Z" hash --run "$T/t_a")" = "$ha"
"$Z" train $TR --run "$T/t_b" --threads 2 --json >"$T/tb.json" 2>/dev/null
check "train with 2 threads: same hash" test "$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/tb.json" | tail -1)" = "$ha"
# Paired probes (docs/cli.md "Threads"), where this build's BLAS allows them.
ZOTUNE_PAIR=on "$Z" train $TR --run "$T/t_p" --threads 2 --json >"$T/tp.json" 2>"$T/tp.err"
if grep -q "two threads can call" "$T/tp.err"; then
  echo "# skipped: this build's BLAS cannot run paired probes ($(head -1 "$T/tp.err"))"
else
  check "train with 2 threads, paired probes: same hash" test "$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/tp.json" | tail -1)" = "$ha"
  # Matrices large enough for both threads to build them together (dim 128:
  # 16 k-element slices and up).
  "$Z" init-model --arch gpt2 --layers 1 --dim 128 --heads 4 --vocab bytes --ctx 64 --seed 6 \
    -o "$T/mid.gguf" >/dev/null 2>&1
  MR="--model $T/mid.gguf --data $T/tr.jsonl --steps 20 --seed 3 --lr 1e-4 --batch 4 --threads 2"
  ZOTUNE_PAIR=off "$Z" train $MR --run "$T/t_m1" --profile >/dev/null 2>"$T/m1.err"
  check "train --profile with ZOTUNE_PAIR=off says one after the other" grep -q "probes one after" "$T/m1.err"
  ZOTUNE_PAIR=on "$Z" train $MR --run "$T/t_m2" --profile >/dev/null 2>"$T/m2.err"
  check "train --profile says the probes ran paired" grep -q "probes paired" "$T/m2.err"
  hm1=$("$Z" hash --run "$T/t_m1")
  check "paired probes on a dim-128 model: the unpaired run's hash" test -n "$hm1" -a "$hm1" = "$("$Z" hash --run "$T/t_m2")"
fi
ZOTUNE_PAIR=maybe "$Z" train $TR --run "$T/t_p2" --threads 2 >/dev/null 2>"$T/err"
check "a bad ZOTUNE_PAIR exits 1 naming it" sh -c "test $? -eq 1 && grep -q ZOTUNE_PAIR '$T/err'"
ZOTUNE_PAIR=on "$Z" train $TR --run "$T/t_p3" --threads 1 >/dev/null 2>"$T/err"
check "ZOTUNE_PAIR=on with 1 thread exits 1 saying why" sh -c "test $? -eq 1 && grep -q 'ZOTUNE_PAIR=on: .*2 threads' '$T/err'"
"$Z" train $TR --run "$T/t_a" --lr 1e-3 >/dev/null 2>"$T/err"
check "train with another lr on the run exits 1 naming it" sh -c "test $? -eq 1 && grep -q optimizer.lr '$T/err'"
# --keep-best, and eval/export at a step of the log
"$Z" train $TR --run "$T/t_best" --keep-best --eval-every 25 --threads 1 --json >"$T/tbest.json" 2>"$T/err"
check "train --keep-best exits 0" test $? -eq 0
bstep=$(sed -n 's/.*"step": *\([0-9]*\).*/\1/p' "$T/t_best/best.json")
bloss=$(sed -n 's/.*"eval_loss": *\([-0-9.eE+]*\).*/\1/p' "$T/t_best/best.json")
argmin=$(sed -n 's/.*"step":\([0-9]*\),"eval_loss":\([-0-9.eE+]*\).*/\1 \2/p' "$T/t_best/metrics.jsonl" |
  sort -g -k2,2 | head -1 | cut -d' ' -f1)
check "best.json names the step with the lowest held-out loss (step $bstep, metrics say $argmin)" \
  test -n "$bstep" -a "$bstep" = "$argmin"
check "the best state is kept as a snapshot" test -f "$T/t_best/best/snapshots/step-$(printf %010u "$bstep").zsnap"
"$Z" eval --run "$T/t_best" --step best --data "$T/dv.jsonl" --json >"$T/evb.json" 2>"$T/err"
check "eval --step best reproduces the best held-out loss ($(json_num "$T/evb.json" loss) vs $bloss)" \
  awk -v x="$(json_num "$T/evb.json" loss)" -v y="$bloss" 'BEGIN { exit !(x - y < 1e-6 && y - x < 1e-6) }'
l25=$(sed -n 's/.*"step":25,"eval_loss":\([-0-9.eE+]*\).*/\1/p' "$T/t_best/metrics.jsonl")
"$Z" eval --run "$T/t_best" --step 25 --data "$T/dv.jsonl" --json >"$T/ev25.json" 2>"$T/err"
check "eval --step 25 replays the log to step 25 ($(json_num "$T/ev25.json" loss) vs $l25)" \
  awk -v x="$(json_num "$T/ev25.json" loss)" -v y="$l25" 'BEGIN { exit !(x - y < 1e-6 && y - x < 1e-6) }'
"$Z" export --run "$T/t_best" --step 25 -o "$T/s25.gguf" >/dev/null 2>"$T/err" &&
  "$Z" eval --model "$T/s25.gguf" --data "$T/dv.jsonl" --json >"$T/ev25x.json" 2>"$T/err"
check "export --step 25 writes that state" \
  awk -v x="$(json_num "$T/ev25x.json" loss)" -v y="$l25" 'BEGIN { exit !(x - y < 1e-6 && y - x < 1e-6) }'
"$Z" eval --run "$T/t_best" --step 151 --data "$T/dv.jsonl" >/dev/null 2>"$T/err"
check "eval --step beyond the log exits 1 naming the range" sh -c "test $? -eq 1 && grep -q '0..150' '$T/err'"
"$Z" eval --run "$T/t_a" --step best --data "$T/dv.jsonl" >/dev/null 2>"$T/err"
check "eval --step best of a run without --keep-best exits 1 naming best.json" \
  sh -c "test $? -eq 1 && grep -q 'best.json' '$T/err'"
"$Z" train $TR --run "$T/t_a" --keep-best --json >"$T/tak.json" 2>"$T/err"
check "--keep-best on a finished run without evaluations records no best (nothing to compare)" \
  sh -c "test $? -eq 0 && test ! -e '$T/t_a/best.json' && ! grep -q best_step '$T/tak.json'"
"$Z" train --model "$T/tiny.gguf" --data "$T/tr.jsonl" --steps 2 --seed 1 --run "$T/t_nb" --keep-best \
  >/dev/null 2>"$T/err"
check "train --keep-best without --eval-data exits 1" sh -c "test $? -eq 1 && grep -q 'keep-best' '$T/err'"

NL="--model $T/tiny.gguf --data $T/tr.jsonl --steps 3 --seed 2 --tune norms --run $T/t_auto"
"$Z" train $NL --json >"$T/tauto.json" 2>"$T/err"
d=$(json_num "$T/tauto.json" tuned_parameters | tail -1)
want=$(awk -v d="$d" 'BEGIN { printf "%.2g", 100 / d }')
got=$(sed -n 's/.*"lr": *\([-0-9.eE+]*\).*/\1/p' "$T/t_auto/config.json")
check "train without --lr: lr = 100 / tuned parameters ($got for $d)" \
  awk -v g="$got" -v w="$want" 'BEGIN { exit !(g > 0 && g == w + 0) }'
"$Z" train $NL --steps 3 --json >"$T/tauto2.json" 2>"$T/err"
check "the same command resumes the run (the automatic lr is the frozen one)" \
  sh -c "test $? -eq 0 && grep -q '\"resumed\":true' '$T/tauto2.json'"
"$Z" train $TR --steps 1500 --run "$T/t_full" --threads 1 --json >"$T/tf.json" 2>/dev/null
hf=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/tf.json" | tail -1)
"$Z" train $TR --steps 1500 --run "$T/t_kill" --threads 1 >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 400 ] && [ "$(fsize "$T/t_kill/log.zol")" -lt 2000 ]; do
  sleep 0.05
  i=$((i + 1))
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
done_steps=$(( ($(fsize "$T/t_kill/log.zol") - 100) / 17 ))
check "train killed mid-run (after $done_steps of 1500 steps)" test $done_steps -lt 1500
"$Z" train $TR --steps 1500 --run "$T/t_kill" --threads 1 --json >"$T/tk.json" 2>/dev/null
check "train resumed after kill -9 reaches the same hash" \
  test "$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/tk.json" | tail -1)" = "$hf"
"$Z" train $TR --steps 1500 --snapshot-every 100 --run "$T/t_snap" --threads 1 >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 400 ] && [ "$(ls "$T/t_snap/snapshots" 2>/dev/null | wc -l)" -lt 2 ]; do
  sleep 0.05
  i=$((i + 1))
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
newest=$(ls "$T/t_snap/snapshots" | grep -v 'tmp$' | tail -1)
: >"$T/t_snap/snapshots/step-0000000099.zsnap.tmp" # as a kill during a snapshot write leaves
"$Z" train $TR --steps 1500 --snapshot-every 100 --run "$T/t_snap" --threads 1 --json \
  >"$T/ts.json" 2>"$T/ts.err"
check "resume starts from the newest snapshot ($newest)" grep -q "starting from the snapshot" "$T/ts.err"
check "resumed from a snapshot: same hash as the uninterrupted run" \
  test "$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$T/ts.json" | tail -1)" = "$hf"
check "snapshots kept: 2, and no stale .tmp file" test "$(ls "$T/t_snap/snapshots" | wc -l)" -eq 2
newest=$(ls "$T/t_snap/snapshots" | grep -v 'tmp$' | tail -1)
: >"$T/t_snap/snapshots/step-0000000099.zsnap.tmp" # as a kill during a snapshot write leaves
printf 'X' | dd of="$T/t_snap/snapshots/$newest" bs=1 seek=200 conv=notrunc 2>/dev/null
"$Z" train $TR --steps 1500 --snapshot-every 100 --run "$T/t_snap" --threads 1 >/dev/null 2>"$T/ts.err"
check "a damaged snapshot is ignored with its reason" grep -q "SHA-256 mismatch" "$T/ts.err"
"$Z" export --run "$T/t_a" -o "$T/ft.gguf" >/dev/null 2>"$T/err"
check "export exits 0" test $? -eq 0
"$Z" eval --model "$T/ft.gguf" --data "$T/dv.jsonl" --json >"$T/ev.json" 2>/dev/null
check "the exported model evaluates as the run ended ($(json_num "$T/ev.json" loss) vs $a)" \
  awk -v x="$(json_num "$T/ev.json" loss)" -v y="$a" 'BEGIN { exit !(x - y < 1e-4 && y - x < 1e-4) }'
"$Z" export --run "$T/t_a" -o "$T/ft_hf" --format safetensors >/dev/null 2>"$T/err"
check "export --format safetensors exits 0" test $? -eq 0
"$Z" eval --model "$T/ft_hf" --data "$T/dv.jsonl" --json >"$T/evh.json" 2>"$T/err"
check "the exported HF folder evaluates as the run ended ($(json_num "$T/evh.json" loss) vs $a)" \
  awk -v x="$(json_num "$T/evh.json" loss)" -v y="$a" 'BEGIN { exit !(x - y < 1e-4 && y - x < 1e-4) }'
"$Z" train $TR --tune lora:r=2,targets=q,v --lr 5e-2 --run "$T/t_lora" --json >"$T/tl.json" 2>"$T/err"
check "train with LoRA exits 0" test $? -eq 0
check "LoRA tunes r*(in+out) per projection (2 layers x (2*64 + 2*64))" \
  test "$(json_num "$T/tl.json" tuned_parameters | tail -1)" = 512
"$Z" export --run "$T/t_lora" -o "$T/lora.gguf" >/dev/null 2>&1
"$Z" eval --model "$T/lora.gguf" --data "$T/dv.jsonl" --json >"$T/evl.json" 2>/dev/null
la=$(tail -1 "$T/tl.json" | sed -n 's/.*"eval_loss_after":\([-0-9.eE+]*\).*/\1/p')
check "a LoRA run exports merged ($(json_num "$T/evl.json" loss) vs $la)" \
  awk -v x="$(json_num "$T/evl.json" loss)" -v y="$la" 'BEGIN { exit !(x - y < 1e-4 && y - x < 1e-4) }'
printf '{"text": "changed"}\n' >>"$T/tr.jsonl"
"$Z" train $TR --run "$T/t_a" >/dev/null 2>"$T/err"
check "train refuses data that changed since the run started" \
  sh -c "test $? -eq 1 && grep -q 'objective.data_sha256' '$T/err'"
"$Z" train --model "$T/tiny.gguf" --data "$T/nope.jsonl" --steps 1 --seed 1 --run "$T/t_x" >/dev/null 2>"$T/err"
check "train with a missing data file exits 1 naming it" sh -c "test $? -eq 1 && grep -q nope.jsonl '$T/err'"
"$Z" eval --run "$T/t_a" --data "$T/dv.jsonl" --json >"$T/evr.json" 2>"$T/err"
check "eval --run evaluates the fine-tuned model ($(json_num "$T/evr.json" loss) vs $a)" \
  awk -v x="$(json_num "$T/evr.json" loss)" -v y="$a" 'BEGIN { exit !(x - y < 1e-4 && y - x < 1e-4) }'
"$Z" generate --run "$T/t_a" --prompt "the" --max-tokens 4 >/dev/null 2>&1
check "generate --run exits 0" test $? -eq 0
"$Z" eval --run "$T/t_a" --model "$T/tiny.gguf" --data "$T/dv.jsonl" >/dev/null 2>&1
check "eval with both --run and --model exits 1" test $? -eq 1
"$Z" plot --run "$T/t_a" -o "$T/curves.svg" 2>"$T/err"
check "plot exits 0" test $? -eq 0
check "plot draws both curves" sh -c "test \$(grep -c '<polyline' '$T/curves.svg') -eq 2"
"$Z" plot --run "$T/t_a" --run "$T/t_b" --title 'a <&> b' -o "$T/cmp.svg" 2>"$T/err"
check "plot of two runs draws one labelled curve each" \
  sh -c "test \$(grep -c '<polyline' '$T/cmp.svg') -eq 2 && grep -q '>t_a<' '$T/cmp.svg' &&
         grep -q '>t_b<' '$T/cmp.svg' && grep -q 'a &lt;&amp;&gt; b' '$T/cmp.svg'"
"$Z" plot --run "$T/t_a" --run "$T/nowhere" -o "$T/x.svg" 2>"$T/err"
check "plot with one missing run exits 1 naming it and writes nothing" \
  sh -c "test $? -eq 1 && grep -q nowhere/metrics.jsonl '$T/err' && test ! -e '$T/x.svg'"
for cmd in train export plot; do
  "$Z" $cmd --help >"$T/help" 2>&1
  check "$cmd --help exits 0" test $? -eq 0 -a -s "$T/help"
done

echo "# cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
