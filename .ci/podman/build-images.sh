#!/usr/bin/env bash
# Builds the KTM sidecar image (deploy/Containerfile) and the two stand-in BanyanDB images of
# the container tests (Containerfile.banyand, scale 1 and 5) with podman, FROM scratch, no
# registry, into the private podman storage of env.sh, and prints the tags, one per line:
#   localhost/ktm:ARCH  localhost/banyand-standin:1x-ARCH  localhost/banyand-standin:5x-ARCH
# With --save DIR each image is also written as DIR/NAME.tar (docker-archive, for
# `podman load` elsewhere, e.g. in a QEMU guest).
#
# usage: build-images.sh [--arch amd64|arm64] [--bin KTM] [--save DIR]
#   --bin  a static ktm binary for ARCH (default: built by ../qemu/build-tests.sh --arch ARCH)
# needs: podman (apt-get install podman), llvm-strip-14 or strip, busybox-static for amd64
# (its /bin/busybox; for arm64 busybox-static:arm64 is not at hand and the image gets none).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
arch=amd64 bin="" save=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --save) save="$2"; shift 2 ;;
    *) echo "build-images.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=env.sh
. "$here/env.sh"
if [ -z "$bin" ]; then
  bin="$("$repo/.ci/qemu/build-tests.sh" --arch "$arch" -- --bin ktm | grep '/ktm$')"
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
if command -v llvm-strip-14 >/dev/null; then
  llvm-strip-14 -o "$ctx/ktm" "$bin"
elif [ "$arch" = amd64 ]; then
  strip -o "$ctx/ktm" "$bin"
else
  cp "$bin" "$ctx/ktm"
fi
if command -v file >/dev/null && ! file "$ctx/ktm" | grep -q 'statically linked\|static-pie linked'; then
  echo "build-images.sh: $bin is not static: a FROM scratch image has no libc" >&2
  exit 1
fi
cp "$repo/deploy/Containerfile" "$ctx/Containerfile"
cp "$here/Containerfile.banyand" "$ctx/Containerfile.banyand"
if [ "$arch" = amd64 ] && [ -x /bin/busybox ]; then
  cp /bin/busybox "$ctx/busybox"
else
  sed -i '/busybox/d' "$ctx/Containerfile.banyand"
fi
build() { # TAG CONTAINERFILE [BUILD ARGS]
  local tag="$1" file="$2"
  shift 2
  # --no-cache: buildah 1.28 reuses a cached ENV layer whatever the build argument
  pm build -q --no-cache --platform "linux/$arch" -f "$ctx/$file" -t "$tag" "$@" "$ctx" >/dev/null
  echo "$tag"
  if [ -n "$save" ]; then
    mkdir -p "$save"
    local name="${tag#localhost/}"
    rm -f "$save/${name//[:\/]/-}.tar"
    pm save -q --format docker-archive -o "$save/${name//[:\/]/-}.tar" "$tag" >&2
  fi
}
build "localhost/ktm:$arch" Containerfile
build "localhost/banyand-standin:1x-$arch" Containerfile.banyand --build-arg SCALE=1
build "localhost/banyand-standin:5x-$arch" Containerfile.banyand --build-arg SCALE=5
pm image prune -f >/dev/null
