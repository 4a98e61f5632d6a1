#!/usr/bin/env bash
# Builds a guest initramfs: busybox, the virtio disk modules of one kernel (with their
# dependencies, decompressed for busybox insmod), the test binaries and the guest init.
# usage: build-initramfs.sh MODULES_DIR OUT.cpio.gz BINARY...
set -euo pipefail
moddir="$1"; out="$2"; shift 2
here="$(cd "$(dirname "$0")" && pwd)"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,mnt/data,lib/ktm-modules,tests,etc}
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# Module closure, dependencies first.
declare -A done_mods=()
order=()
unpack() { # module file -> plain .ko path in the initramfs
  local f="$1" name; name="$(basename "$f")"; name="${name%%.ko*}"
  local dst="$root/lib/ktm-modules/$name.ko"
  case "$f" in
    *.ko.xz) xz -dc "$f" > "$dst" ;;
    *.ko.zst) zstd -qdc "$f" > "$dst" ;;
    *) cp "$f" "$dst" ;;
  esac
  echo "$dst"
}
add_module() {
  local name="$1" f plain deps
  [ -n "${done_mods[$name]:-}" ] && return 0
  done_mods[$name]=1
  grep -q "/${name//_/[_-]}\.ko" "$moddir/modules.builtin" 2>/dev/null && return 0
  f=$(find "$moddir" -name "$name.ko*" -print -quit)
  if [ -z "$f" ]; then f=$(find "$moddir" -name "${name//_/-}.ko*" -print -quit); fi
  [ -n "$f" ] || { echo "module $name: not found in $moddir (assumed built in)" >&2; return 0; }
  plain=$(unpack "$f")
  deps=$(grep -a -o 'depends=[^[:cntrl:]]*' "$plain" | head -n1 | cut -d= -f2 | tr ',' ' ')
  for d in $deps; do add_module "$d"; done
  order+=("$(basename "$plain")")
}
for m in virtio_pci virtio_blk ext4; do add_module "$m"; done
printf '%s\n' "${order[@]}" > "$root/lib/ktm-modules/order"

for b in "$@"; do cp "$b" "$root/tests/"; done
cp "$here/init" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
