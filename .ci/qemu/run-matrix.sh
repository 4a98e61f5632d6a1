#!/usr/bin/env bash
# Runs the privileged tests on Debian's 5.10, 6.1 and 6.12 cloud kernels under QEMU and on
# this host, and prints the kernel matrix. Exits non-zero if any test fails anywhere or a
# guest hangs.
#
# Options (environment): KTM_KERNELS=5.10,6.1,6.12
#   KTM_QEMU_VARIANTS="6.12:KTM_DISABLE_FENTRY=1 6.12:KTM_DISABLE_FENTRY=1+KTM_DISABLE_KPROBE=1" (extra runs)
#   KTM_QEMU_MEM=1024 (MiB)  KTM_QEMU_TIMEOUT=600 (s per guest)  KTM_QEMU_HOST=1  KTM_FILTER=
#   KTM_QEMU_CACHE=/var/cache/ktm-qemu  KTM_QEMU_OUT=target/qemu
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
out="${KTM_QEMU_OUT:-target/qemu}"
mkdir -p "$out"
rm -f "$out"/*.log

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v busybox >/dev/null || missing+=(busybox-static)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
command -v cpio >/dev/null || missing+=(cpio)
command -v xz >/dev/null || missing+=(xz-utils)
command -v zstd >/dev/null || missing+=(zstd)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

tests_dir=$("$here/build-tests.sh")
mapfile -t kernels < <("$here/fetch-kernels.sh")
disk="$out/disk.img"
rm -f "$disk" && truncate -s 2G "$disk" && mkfs.ext4 -q -F "$disk"

# TCG unless KVM is asked for (KTM_QEMU_KVM=1): no KVM has been shown to work here.
accel=tcg
[ "${KTM_QEMU_KVM:-0}" = 1 ] && accel=kvm

fail=0
columns=()
run_guest() { # label vmlinuz moddir extra-env
  local label="$1" vmlinuz="$2" moddir="$3" env="$4" column="$1"
  if [ -n "$env" ]; then column="$label ${env//KTM_DISABLE_/-}"; fi
  column="${column//=1/}"
  column="${column//+/,}"
  local log="$out/${column// /_}.log" initrd="$out/initrd-$label.cpio.gz"
  [ -f "$initrd" ] || "$here/build-initramfs.sh" "$moddir" "$initrd" "$tests_dir"/*
  local append="console=ttyS0 panic=-1 quiet"
  for kv in ${env//+/ } ${KTM_FILTER:+KTM_FILTER=$KTM_FILTER}; do append+=" ktm.env.$kv"; done
  local start=$SECONDS
  timeout "${KTM_QEMU_TIMEOUT:-600}" qemu-system-x86_64 -accel "$accel" -m "${KTM_QEMU_MEM:-1024}" -smp 2 \
    -kernel "$vmlinuz" -initrd "$initrd" -append "$append" \
    -drive "file=$disk,if=virtio,format=raw" -nographic -no-reboot -monitor none </dev/null >"$log" 2>&1 || true
  local secs=$((SECONDS - start))
  local status=ok
  if ! grep -q "KTM-DONE" "$log"; then status="HUNG or crashed"; fail=1; fi
  if grep -q "KTM-END .* rc=[1-9]" "$log"; then status="tests FAILED"; fail=1; fi
  echo "== $column: $status in ${secs}s ($(grep -a -o -m1 'KTM-KERNEL [^ ]*' "$log" | cut -d' ' -f2 | tr -d '\r'))" >&2
  [ "$status" = ok ] || grep -E "KTM-END|panicked|FAILED|Kernel panic" "$log" | head -20 >&2
  columns+=("$column|$log")
}

rm -f "$out"/initrd-*.cpio.gz
for line in "${kernels[@]}"; do
  IFS=$'\t' read -r label vmlinuz moddir <<<"$line"
  run_guest "$label" "$vmlinuz" "$moddir" ""
  for v in ${KTM_QEMU_VARIANTS:-6.1:KTM_DISABLE_FENTRY=1 6.12:KTM_DISABLE_FENTRY=1 6.12:KTM_DISABLE_FENTRY=1+KTM_DISABLE_KPROBE=1}; do
    [ "${v%%:*}" = "$label" ] && run_guest "$label" "$vmlinuz" "$moddir" "${v#*:}"
  done
done

if [ "${KTM_QEMU_HOST:-1}" = 1 ]; then
  log="$out/host.log"
  : > "$log"
  for t in "$tests_dir"/*; do
    [ "$(basename "$t")" = ktm ] && continue
    echo "KTM-BEGIN $(basename "$t")" >> "$log"
    rc=0
    CI=true KTM_BIN="$tests_dir/ktm" "$t" --test-threads=1 --nocapture ${KTM_FILTER:-} >> "$log" 2>&1 || rc=$?
    echo "KTM-END $(basename "$t") rc=$rc" >> "$log"
    [ "$rc" = 0 ] || { fail=1; echo "== host: $(basename "$t") FAILED" >&2; }
  done
  echo "KTM-DONE" >> "$log"
  columns+=("host $(uname -r | cut -d- -f1)|$log")
fi

python3 "$here/matrix.py" "$out/matrix.md" "${columns[@]}"
exit "$fail"
