#!/bin/bash
# Podman guest, stage 2: PID 1 in the Debian root of podman-root.sh (podman-init switched to
# it). Mounts a pure cgroup v2 hierarchy (cgroup2 at /sys/fs/cgroup, nothing of v1) and what
# KTM and podman need, configures podman for a machine without systemd (cgroupfs manager,
# file events logger, runc, storage on the data disk), then runs each podman test script of
# ktm/tests.order from the repository copy (the data disk's repo/, the working directory)
# with bash, between KTM-BEGIN and KTM-END markers, and powers off. Kernel command line as
# in `init`: ktm.label=, ktm.env=. The scripts find the image archives the host built in
# $KTM_PODMAN_IMAGES, the static ktm binary in $KTM_BIN, the kernel label in $KTM_KERNEL.
# A script reports like a libtest binary: a `test result:` line, or a line
# `N passed, N failed` (then this script prints the `test result:` line for it); each case
# may print matrix cells (KTM-MATRIX<TAB>row<TAB>cell).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
data=/mnt/data
. /run/ktm/markers.sh
off() {
  cd /
  sync
  umount "$data" 2>/dev/null
  /run/ktm/busybox poweroff -f
  sleep 10
}
fatal() {
  ktm_fatal "$*"
  off
}
exec </dev/console >/dev/console 2>&1
echo "podman-guest: stage 2 at $(cut -d' ' -f1 /proc/uptime)s of uptime"

mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /var/run/netns 2>/dev/null || true
# Pure cgroup v2: the unified hierarchy alone, as systemd mounts it with
# unified_cgroup_hierarchy=1; the controllers podman's containers get.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || fatal "cannot mount cgroup2"
for c in cpuset cpu io memory pids; do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || ktm_warn "cgroup controller $c not enabled"
done
mount -t bpf bpf /sys/fs/bpf || ktm_warn "no bpffs"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || ktm_warn "no tracefs"
release="$(uname -r)"
# The kernel's modules, from the data disk: modprobe (netfilter, bridge, veth, overlay for
# podman) and the kernel's own module requests find them.
if [ -d "$data/ktm/modules/$release" ]; then
  mkdir -p "/lib/modules/$release"
  mount --bind "$data/ktm/modules/$release" "/lib/modules/$release"
else
  ktm_warn "no modules for $release on the data disk"
fi
ip link set lo up
hostname ktm-podman

label="" envb64=""
for kv in $(cat /proc/cmdline); do
  case "$kv" in
    ktm.label=*) label="${kv#ktm.label=}" ;;
    ktm.env=*) envb64="${kv#ktm.env=}" ;;
  esac
done
if [ -n "$envb64" ]; then
  echo "$envb64" | base64 -d > /run/ktm/env || fatal "bad ktm.env on the command line"
  while IFS= read -r kv; do
    [ -n "$kv" ] && export "${kv?}" && ktm_env "$kv"
  done < /run/ktm/env
fi
mkdir -p "$data/tmp" "$data/containers/storage"
export CI=true KTM_IN_QEMU=1 KTM_KERNEL="$label" TMPDIR="$data/tmp" HOME=/root RUST_BACKTRACE=1
export KTM_PODMAN_GUEST=1 KTM_PODMAN_IMAGES="$data/ktm/images"
# .ci/podman/env.sh's private podman directory: on the data disk too.
export KTM_PODMAN_DIR="$data/podman"
[ -x "$data/ktm/ktm" ] && export KTM_BIN="$data/ktm/ktm"

# No systemd here: cgroupfs manager, events to a file, runc (crun refuses nothing here, but
# runc is what the host runs too); storage on the data disk.
mkdir -p /etc/containers
cat > /etc/containers/containers.conf <<'EOF'
[containers]
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
cat > /etc/containers/storage.conf <<EOF
[storage]
driver = "overlay"
graphroot = "$data/containers/storage"
runroot = "/run/containers/storage"
EOF
modprobe overlay 2>/dev/null || sed -i 's/"overlay"/"vfs"/' /etc/containers/storage.conf

echo "podman-guest: set up at $(cut -d' ' -f1 /proc/uptime)s of uptime"
ktm_boot "$label"
ktm_mem
# (Not `podman info`: 19 s under TCG.)
podman_v="$(podman --version 2>&1)"
runc_v="$(runc --version 2>&1 | head -1)"
echo "podman-guest: $podman_v; $runc_v; /sys/fs/cgroup: $(stat -fc %T /sys/fs/cgroup)"
printf 'KTM-MATRIX\tpodman guest\tDebian %s: podman %s, %s, %s alone\n' "$(cat /etc/debian_version)" \
  "${podman_v#podman version }" "$(echo "$runc_v" | awk '{print $1 " " $3}')" "$(stat -fc %T /sys/fs/cgroup)"

cd "$data/repo" || fatal "no repository copy on the data disk"
while IFS= read -r spec; do
  [ -n "$spec" ] || continue
  name="${spec%%=*}" script="${spec#*=}"
  ktm_begin "$name"
  out="$data/tmp/$name.out"
  bash "$script" </dev/null 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  if ! grep -q 'test result: ' "$out"; then
    counts="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)"
    if [ -n "$counts" ]; then
      read -r p _ f _ <<<"${counts//,/}"
      printf 'test result: %s. %s passed; %s failed; 0 ignored (%s)\n' \
        "$([ "$f" = 0 ] && echo ok || echo FAILED)" "$p" "$f" "$name"
    fi
  fi
  ktm_end "$name" "$rc"
done < "$data/ktm/tests.order"
ktm_done
off
