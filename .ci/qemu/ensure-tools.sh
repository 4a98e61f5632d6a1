#!/usr/bin/env bash
# Installs the Debian packages the QEMU matrix needs when a tool is missing (we run as root;
# apt-get update first, once, only when something has to be installed).
#
# usage: ensure-tools.sh [ARCH...]     ARCH: amd64 (the default) and/or arm64 (Debian names)
#   amd64:  qemu-system-x86_64 and the host's static busybox for the initramfs
#   arm64:  qemu-system-aarch64, and debootstrap for the cross-build chroot (cross-arm64.sh)
#   podman: debootstrap for the podman guests' Debian root (podman-root.sh), and podman,
#           runc, catatonit on this machine (.ci/podman/build-images.sh builds the guests'
#           images here)
set -euo pipefail
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64)
missing=()
need() { # command package
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
for arch in "${archs[@]}"; do
  case "$arch" in
    amd64)
      need qemu-system-x86_64 qemu-system-x86
      # Only a static busybox works in the initramfs (the dynamic `busybox` package conflicts).
      dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
      ;;
    arm64)
      need qemu-system-aarch64 qemu-system-arm
      # The guests' arm64 busybox-static comes from the archive (fetch-kernels.sh), the
      # cross toolchain from a trixie chroot (cross-arm64.sh).
      need debootstrap debootstrap
      need unshare util-linux
      need aarch64-linux-gnu-strip binutils-aarch64-linux-gnu # strips the binaries for the initramfs
      ;;
    podman)
      need debootstrap debootstrap
      need unshare util-linux
      need podman podman
      need runc runc
      [ -x /usr/libexec/podman/catatonit ] || [ -x /usr/bin/catatonit ] || missing+=(catatonit)
      dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
      ;;
    *) echo "ensure-tools.sh: unknown architecture $arch (amd64, arm64, podman)" >&2; exit 2 ;;
  esac
done
need mkfs.ext4 e2fsprogs
need xz xz-utils
need zstd zstd
need depmod kmod
need strip binutils
need dpkg-deb dpkg
need flock util-linux
need timeout coreutils
need gzip gzip
need python3 python3
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "ensure-tools: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
