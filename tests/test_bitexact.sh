#!/bin/sh
# Bit-exactness across builds (BRIEF §2.5, §1.3): the generator digests and
# the result of a whole optimisation must not depend on the compiler, the
# optimisation level, the vector path or the thread count. Builds rng/ (and
# then all of zotune) with every compiler found (gcc, clang, $CC) at -O0 and
# -O3 (and -O3 -march=native where it runs), and compares with the committed
# digests in tests/expected.h and with this build's zotune.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
S=$top_srcdir
T=$(mktemp -d /tmp/zotune-bitexact-XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
no() { fail=$((fail + 1)); echo "not ok - $1"; [ $# -gt 1 ] && echo "#   $2"; }

want_g=$(sed -n 's/.*EXPECT_GAUSSIAN_SHA256 "\([0-9a-f]*\)".*/\1/p' "$S/tests/expected.h")
want_r=$(sed -n 's/.*EXPECT_RADEMACHER_SHA256 "\([0-9a-f]*\)".*/\1/p' "$S/tests/expected.h")
DEPS="$(pkg-config --cflags --libs jansson libcrypto zlib libpcre2-8) -lblis"
BASE="-std=c11 -ffp-contract=off -fopenmp -D_POSIX_C_SOURCE=200809L -I$S -I$top_builddir"

compilers=""
for cc in gcc clang ${CC:-}; do
  cc=${cc%% *}
  command -v "$cc" >/dev/null 2>&1 || continue
  case " $compilers " in *" $cc "*) ;; *) compilers="$compilers $cc" ;; esac
done

# The reference optimisation whose hash every build must reproduce.
run_ref() { # ZOTUNE-BINARY DIR THREADS
  rm -rf "$2"
  "$1" optimize --function rastrigin --dim 8000 --steps 100 --seed 42 --n-directions 3 \
    --workers 2 --codec linear --weight-decay 0.01 --schedule cosine --warmup 10 \
    --lr 1e-5 --threads "$3" --run "$2" >/dev/null 2>&1 && "$1" hash --run "$2"
}
ref=$(run_ref "$top_builddir/zotune" "$T/ref" 2)
if echo "$ref" | grep -Eqx '[0-9a-f]{64}'; then ok "reference run with this build"
else no "reference run with this build" "$ref"; fi

for cc in $compilers; do
  for opt in -O0 -O3 "-O3 -march=native"; do
    name="$cc $opt"
    exe="$T/digest"
    if ! $cc $BASE $opt "$S/tests/rng_digest.c" "$S"/rng/*.c -o "$exe" $DEPS -lm \
      2>"$T/cc.err"; then
      no "$name: compile rng" "$(head -5 "$T/cc.err")"
      continue
    fi
    if ! "$exe" >"$T/out" 2>"$T/run.err"; then
      # -march=native builds need no test where they cannot run; others must.
      case "$opt" in *native*) if grep -q 'Illegal' "$T/run.err"; then continue; fi ;; esac
      no "$name: generator paths agree" "$(cat "$T/run.err")"
      continue
    fi
    paths=$(grep -c '^checked' "$T/run.err")
    g=$(sed -n 's/^gaussian //p' "$T/out")
    r=$(sed -n 's/^rademacher //p' "$T/out")
    if [ "$g" = "$want_g" ]; then ok "$name: gaussian digest ($paths paths)"
    else no "$name: gaussian digest" "got $g want $want_g"; fi
    if [ "$r" = "$want_r" ]; then ok "$name: rademacher digest ($paths paths)"
    else no "$name: rademacher digest" "got $r want $want_r"; fi
  done
  for opt in -O0 "-O3 -march=native"; do
    name="$cc $opt"
    exe="$T/zotune"
    if ! $cc $BASE $opt -DPACKAGE_VERSION='"test"' -include "$top_builddir/config.h" \
      "$S"/rng/*.c "$S"/zo/*.c "$S"/model/*.c "$S"/cli/*.c -o "$exe" $DEPS -lm 2>"$T/cc.err"; then
      no "$name: compile zotune" "$(head -5 "$T/cc.err")"
      continue
    fi
    for th in 1 2; do
      h=$(run_ref "$exe" "$T/run" $th)
      if [ "$h" = "$ref" ]; then ok "$name, --threads $th: optimize hash equals this build's"
      else no "$name, --threads $th: optimize hash equals this build's" "got $h want $ref"; fi
    done
    h=$(ZOTUNE_ISA=scalar run_ref "$exe" "$T/run" 2)
    if [ "$h" = "$ref" ]; then ok "$name, scalar path: optimize hash equals"
    else no "$name, scalar path: optimize hash equals" "got $h want $ref"; fi
  done
done

echo "# bitexact: $pass passed, $fail failed"
[ $fail -eq 0 ]
