#!/usr/bin/env bash
# The arm64 cross toolchain: a Debian chroot (debootstrap --variant=minbase, trixie) with
# rustc, cargo, libstd-rust-dev:arm64, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross,
# made once and cached under $KTM_QEMU_CACHE/cross-arm64/SUITE; runs one command in it.
# build-tests.sh --arch arm64 builds the test binaries with it. See README.md beside this file.
#
# usage: cross-arm64.sh [--bind DIR]... [--] COMMAND [ARG...]
#        cross-arm64.sh --ensure         make the chroot unless it is cached, then exit
#        cross-arm64.sh --rebuild        make it afresh, then exit
#   COMMAND runs as root in the chroot, in a private mount namespace (every mount made for it
#   goes when it ends, however it ends), in the current directory, with each DIR (default:
#   the repository this script is in) bind-mounted at its own path: paths are the same inside
#   and outside, so cargo's JSON names host paths. /dev, /proc, this machine's resolv.conf
#   and CA certificates (cargo reaches crates.io with them) are provided.
#   Environment inside: PATH, HOME=/root, CARGO_HOME=/root/.cargo (kept in the chroot, so
#   crates are downloaded once), CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER, and, when
#   set here, RUSTFLAGS, CARGO_BUILD_JOBS, CARGO_TERM_COLOR, CI, TERM.
# env: KTM_QEMU_CACHE   cache directory (default /var/cache/ktm-qemu)
#      KTM_CROSS_SUITE  Debian suite of the chroot (default trixie: rustc 1.85)
#      KTM_QEMU_ARCHIVE archive URI (default: this machine's apt sources, as fetch-kernels.sh)
# The chroot is made in a temporary directory and renamed when complete; a stamp names the
# suite and packages, and a chroot whose stamp differs is made again. An exclusive flock on
# $KTM_QEMU_CACHE/cross-arm64/.lock guards making it, a shared one every run in it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
CACHE="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}"
SUITE="${KTM_CROSS_SUITE:-trixie}"
KEYRING="${KTM_QEMU_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
PACKAGES=(rustc cargo libstd-rust-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
base="$CACHE/cross-arm64"
root="$base/$SUITE"
stamp_want="suite=$SUITE packages=${PACKAGES[*]}"
inside_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
  CARGO_HOME=/root/.cargo CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc)
for v in RUSTFLAGS CARGO_BUILD_JOBS CARGO_TERM_COLOR CI TERM; do
  [ -n "${!v:-}" ] && inside_env+=("$v=${!v}")
done

die() { echo "cross-arm64: $*" >&2; exit 2; }

# In the private mount namespace (unshare re-runs this script): mount, then chroot.
# args: ROOT NBINDS BIND... CWD COMMAND...
if [ "${1:-}" = --in-namespace ]; then
  shift
  r="$1" n="$2"
  shift 2
  mount --bind /dev "$r/dev"
  mount -t proc proc "$r/proc"
  for ((i = 0; i < n; i++)); do
    mkdir -p "$r$1"
    mount --bind "$1" "$r$1"
    shift
  done
  cwd="$1"
  shift
  cp -L /etc/resolv.conf "$r/etc/resolv.conf"
  mkdir -p "$r/etc/ssl/certs"
  cp -L /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  exec chroot "$r" /usr/bin/env -i "${inside_env[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@"
fi

in_chroot() { # ROOT CWD COMMAND...: with /dev and /proc, no binds
  local r="$1" cwd="$2"
  shift 2
  unshare --mount --propagation private "$0" --in-namespace "$r" 0 "$cwd" "$@"
}

make_chroot() {
  local uri tmp boot
  uri="${KTM_QEMU_ARCHIVE:-$("$here/fetch-kernels.sh" --archive)}"
  [ -r "$KEYRING" ] || die "keyring $KEYRING missing (apt-get install debian-archive-keyring)"
  rm -rf "$base"/.new.* # an attempt that was killed (we hold the exclusive lock)
  tmp="$(mktemp -d "$base/.new.XXXXXX")"
  # debootstrap splits its target's path at spaces: with a space in the cache's path, it
  # works in /var/tmp and the result is moved into the cache.
  boot="$tmp"
  [[ "$tmp" != *[[:space:]]* ]] || boot="$(mktemp -d /var/tmp/ktm-debootstrap.XXXXXX)"
  chmod 755 "$tmp" "$boot" # the chroot's /: apt downloads as _apt
  # shellcheck disable=SC2064 # expand now: the directories of this attempt
  trap "rm -rf '$tmp' '$boot'" EXIT
  echo "cross-arm64: debootstrap --variant=minbase $SUITE from $uri into $boot" >&2
  local t0=$SECONDS
  # debootstrap mounts /proc and /sys in the target: in a namespace of its own, they go
  # with it even when debootstrap fails half-way.
  if ! unshare --mount --propagation private debootstrap --variant=minbase --keyring="$KEYRING" \
    "$SUITE" "$boot" "$uri" >&2; then
    tail -n 20 "$boot/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die "debootstrap $SUITE failed"
  fi
  if [ "$boot" != "$tmp" ]; then
    rmdir "$tmp"
    mv "$boot" "$tmp"
  fi
  echo "cross-arm64: installing ${PACKAGES[*]}" >&2
  in_chroot "$tmp" / sh -c '
    set -e
    export DEBIAN_FRONTEND=noninteractive
    dpkg --add-architecture arm64
    apt-get update -q
    apt-get install -y -q --no-install-recommends "$@"
    apt-get clean
    rm -rf /var/lib/apt/lists/*' sh "${PACKAGES[@]}" >&2 || die "installing the cross toolchain in the $SUITE chroot failed"
  in_chroot "$tmp" / sh -c 'rustc --version && cargo --version && aarch64-linux-gnu-gcc --version | head -1' >&2
  echo "$stamp_want" > "$tmp/.ktm-cross-stamp"
  rm -rf "$root.old"
  [ -d "$root" ] && mv "$root" "$root.old"
  mv "$tmp" "$root"
  rm -rf "$root.old"
  trap - EXIT
  echo "cross-arm64: chroot $root ready in $((SECONDS - t0))s" >&2
}

ready() { [ -f "$root/.ktm-cross-stamp" ] && [ "$(cat "$root/.ktm-cross-stamp")" = "$stamp_want" ]; }

mode=run binds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bind) binds+=("$(cd "$2" && pwd)"); shift 2 ;;
    --ensure) mode=ensure; shift ;;
    --rebuild) mode=rebuild; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ "$mode" != run ] || [ $# -gt 0 ] || die "no command (usage: cross-arm64.sh [--bind DIR]... -- COMMAND...)"
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mounts)"
"$here/ensure-tools.sh" arm64

mkdir -p "$base"
exec 8>"$base/.lock"
flock -s 8
if [ "$mode" = rebuild ] || ! ready; then
  flock 8 # exclusive (upgrade): no run is using the chroot while it is made
  if [ "$mode" = rebuild ] || ! ready; then make_chroot; fi
  flock -s 8
fi
[ "$mode" = run ] || exit 0

[ ${#binds[@]} -gt 0 ] || binds=("$repo")
for d in "${binds[@]}"; do
  case "$d" in /|/dev|/dev/*|/proc|/proc/*) die "--bind $d: not a directory to build in" ;; esac
done
unshare --mount --propagation private "$0" --in-namespace "$root" "${#binds[@]}" "${binds[@]}" "$(pwd)" "$@"
