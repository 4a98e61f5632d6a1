#!/usr/bin/env bash
# Installs the Debian packages the QEMU matrix needs when a tool is missing (we run as root;
# apt-get update first, once, only when something has to be installed).
set -euo pipefail
missing=()
need() { # command package
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need qemu-system-x86_64 qemu-system-x86
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
# Only a static busybox works in the initramfs (the dynamic `busybox` package conflicts).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-tools: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
