#!/bin/sh
# zotune setup on Debian 12: installs the Debian packages zotune needs
# (apt-get; through sudo when not root), builds, and then
#   scripts/setup.sh example   runs the main job on the bundled example
#   scripts/setup.sh check     runs the test suite (make check)
#   scripts/setup.sh deps      only installs the packages
#   scripts/setup.sh build     installs and builds (./zotune in build/)
# BUILD_DIR (default: build) is honoured, and CC / CFLAGS when it is first configured.
set -eu
cd "$(dirname "$0")/.."
mode=${1:-example}

PACKAGES="build-essential autoconf automake libtool pkg-config clang \
  librandom123-dev libblis-dev libcurl4-openssl-dev libmicrohttpd-dev libcmocka-dev \
  libjansson-dev libssl-dev zlib1g-dev libpcre2-dev libopenblas-dev"

deps() {
  missing=""
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  echo "setup: installing$missing"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}

build() {
  bdir=${BUILD_DIR:-build}
  [ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] ||
    autoreconf -fi
  mkdir -p "$bdir"
  if [ ! -f "$bdir/Makefile" ]; then
    top=$(pwd)
    (cd "$bdir" && "$top/configure")
  fi
  make -C "$bdir" -j"$(nproc)"
}

case "$mode" in
deps) deps ;;
build) deps && build ;;
check)
  deps && build
  make -C "${BUILD_DIR:-build}" -j"$(nproc)" check
  ;;
example)
  deps && build
  # The main job (README, examples/README.md): fine-tune the bundled Austen-pretrained
  # model on fortune cookies with forward passes only, held-out loss before and after.
  Z="${BUILD_DIR:-build}/zotune"
  rm -rf runs/example
  mkdir -p runs
  "$Z" train --model examples/base.gguf --data examples/data/train.jsonl \
    --eval-data examples/data/dev.jsonl --run runs/example --seed 1 --steps 900 \
    --tune norms --lr 0.2 --batch 16 --eval-every 150
  "$Z" replay --run runs/example
  ;;
*)
  echo "usage: scripts/setup.sh [example|check|deps|build]" >&2
  exit 1
  ;;
esac
