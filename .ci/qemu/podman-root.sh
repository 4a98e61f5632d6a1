#!/usr/bin/env bash
# The podman guests' root file system: a Debian root (debootstrap --variant=minbase, trixie:
# podman 5.4.2, runc 1.1.15; bookworm's podman 4.3.1 cannot run a pod's containers on a pure
# cgroup v2 host with the cgroupfs manager, see README.md) with podman, runc, conmon,
# catatonit (the pods' infra container), iptables and, on bookworm, the CNI plugins (pod
# networks; the tests play their pods with --network none), kmod
# (modprobe from the kernel's modules, which each guest brings on its data disk), procps,
# iproute2 and python3, as an ext4 image. Made once and cached under
# $KTM_QEMU_CACHE/podman-root/SUITE.img; guests boot it with QEMU's snapshot=on (their
# writes go to a temporary overlay, the image never changes). run-podman.sh uses it.
# See README.md beside this file ("Podman guests").
#
# usage: podman-root.sh --ensure      make the image unless it is cached; print its path
#        podman-root.sh --rebuild     make it afresh; print its path
#        podman-root.sh --locked CMD  make it unless cached, then run CMD holding a shared
#                                     lock on it (no rebuild replaces it meanwhile) with
#                                     $KTM_PODMAN_ROOT naming it
# env: KTM_QEMU_CACHE      cache directory (default /var/cache/ktm-qemu)
#      KTM_PODMAN_SUITE    Debian suite of the root (default trixie)
#      KTM_QEMU_ARCHIVE    archive URI (default: this machine's apt sources, as fetch-kernels.sh)
# The root is made in a temporary directory, turned into an image beside the final one and
# renamed when complete; a stamp names the suite and packages, and an image whose stamp
# differs is made again. An exclusive flock on $KTM_QEMU_CACHE/podman-root/.lock guards
# making it, a shared one every use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}"
SUITE="${KTM_PODMAN_SUITE:-trixie}"
KEYRING="${KTM_QEMU_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
PACKAGES=(podman runc conmon catatonit iptables kmod procps iproute2 python3 ca-certificates)
# A pod network: bookworm's podman 4.3 takes the CNI plugins; later ones netavark (a dependency).
[ "$SUITE" != bookworm ] || PACKAGES+=(containernetworking-plugins)
base="$CACHE/podman-root"
image="$base/$SUITE.img"
stamp="$base/$SUITE.stamp"
stamp_want="suite=$SUITE packages=${PACKAGES[*]} format=1"

die() { echo "podman-root: $*" >&2; exit 2; }

in_chroot() { # ROOT COMMAND...: with /dev and /proc, in a private mount namespace
  local r="$1"
  shift
  unshare --mount --propagation private sh -c '
    r="$1"; shift
    mount --bind /dev "$r/dev" && mount -t proc proc "$r/proc" &&
    cp -L /etc/resolv.conf "$r/etc/resolv.conf" &&
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"' \
    sh "$r" "$@"
}

make_image() {
  local uri tmp t0=$SECONDS mib
  uri="${KTM_QEMU_ARCHIVE:-$("$here/fetch-kernels.sh" --archive)}"
  [ -r "$KEYRING" ] || die "keyring $KEYRING missing (apt-get install debian-archive-keyring)"
  rm -rf "$base"/.new.* /var/tmp/ktm-podman-root.* # attempts that were killed (we hold the lock)
  # debootstrap splits its target's path at spaces: it works in /var/tmp.
  tmp="$(mktemp -d /var/tmp/ktm-podman-root.XXXXXX)"
  chmod 755 "$tmp" # the root's /: apt downloads as _apt
  # shellcheck disable=SC2064 # expand now: the directory of this attempt
  trap "rm -rf '$tmp' '$image.new'" EXIT
  echo "podman-root: debootstrap --variant=minbase $SUITE from $uri into $tmp" >&2
  if ! unshare --mount --propagation private debootstrap --variant=minbase --keyring="$KEYRING" \
    "$SUITE" "$tmp" "$uri" >&2; then
    tail -n 20 "$tmp/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die "debootstrap $SUITE failed"
  fi
  echo "podman-root: installing ${PACKAGES[*]}" >&2
  in_chroot "$tmp" sh -c '
    set -e
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "$@"
    apt-get clean
    rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*
    podman --version; runc --version | head -1' sh "${PACKAGES[@]}" >&2 ||
    die "installing podman in the $SUITE root failed"
  : > "$tmp/etc/resolv.conf"
  echo ktm-podman > "$tmp/etc/hostname"
  # The image: the root's size plus room for what the guest writes outside its data disk
  # (podman's storage and temporary files are on the data disk).
  mib=$(( $(du -sm "$tmp" | cut -f1) * 5 / 4 + 256 ))
  rm -f "$image.new"
  truncate -s "${mib}M" "$image.new"
  local base_args=(mkfs.ext4 -q -F -L ktm-root -d "$tmp" -E lazy_itable_init=0,lazy_journal_init=0)
  # Newer e2fsprogs enable features that older kernels cannot mount; older ones do not know them.
  "${base_args[@]}" -O ^orphan_file,^metadata_csum_seed "$image.new" 2>/dev/null ||
    "${base_args[@]}" -O ^metadata_csum_seed "$image.new" 2>/dev/null ||
    "${base_args[@]}" "$image.new" >&2 || die "mkfs.ext4 -d of the root failed"
  rm -f "$stamp"
  mv "$image.new" "$image"
  echo "$stamp_want" > "$stamp"
  rm -rf "$tmp"
  trap - EXIT
  echo "podman-root: $image ready (${mib} MiB) in $((SECONDS - t0))s" >&2
}

ready() { [ -f "$image" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_want" ]; }

mode="${1:-}"
case "$mode" in
  --ensure|--rebuild) ;;
  --locked) shift; [ $# -gt 0 ] || die "--locked wants a command" ;;
  -h|--help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; [ -n "$mode" ]; exit ;;
  *) die "unknown option $mode" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
"$here/ensure-tools.sh" podman
mkdir -p "$base"
exec 7>"$base/.lock"
flock -s 7
if [ "$mode" = --rebuild ] || ! ready; then
  flock 7 # exclusive (upgrade): no guest is using the image while it is made
  if [ "$mode" = --rebuild ] || ! ready; then make_image; fi
  flock -s 7
fi
if [ "$mode" = --locked ]; then
  export KTM_PODMAN_ROOT="$image"
  "$@" 7>&-
  exit $?
fi
echo "$image"
