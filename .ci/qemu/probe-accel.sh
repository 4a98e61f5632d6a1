#!/usr/bin/env bash
# Prints the QEMU accelerator to use: kvm only when a guest has been seen running under it
# (a kernel booted without a root file system reaches its "VFS: Unable to mount root" panic
# within 10 s), else tcg. /dev/kvm being present is not enough: nested KVM here opens fine
# and then never runs a guest instruction. The verdict is cached per host kernel and QEMU.
#
# usage: probe-accel.sh VMLINUZ        env: KTM_QEMU_CACHE
set -euo pipefail
vmlinuz="$1"
CACHE="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}"
key="$(uname -r)-qemu$(qemu-system-x86_64 --version | awk 'NR == 1 {print $4}')"
verdict="$CACHE/accel-$key"
if [ -s "$verdict" ]; then cat "$verdict"; exit 0; fi
accel=tcg
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  log=$(mktemp)
  timeout 10 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -display none -no-reboot \
    -serial "file:$log" -monitor none -kernel "$vmlinuz" -append "console=ttyS0 panic=-1" \
    </dev/null >/dev/null 2>&1 || true
  grep -q "Unable to mount root\|Kernel panic" "$log" && accel=kvm
  rm -f "$log"
fi
mkdir -p "$CACHE" && echo "$accel" > "$verdict"
echo "$accel"
