#!/usr/bin/env bash
# .ci/test's podman step: installs podman, runc and catatonit (podman's pause image) when
# missing, builds the images (build-images.sh: amd64, and arm64 when the matrix step left a
# static arm64 ktm in target/cross-arm64), then plays the repository's manifest on this host
# (play-test.sh). Prints the image sizes, play-test.sh's checks and matrix rows, and its
# closing `N passed, N failed` line plus the seccomp profile's check (a failure to set up
# counts one failed).
# The static binaries are the ones the matrix step built (target/static/ktm-tests/ktm) when
# present, else built here.
#
# usage: test.sh [--install-only] [--arch A --bin KTM]...
#   --install-only  install what is missing and exit (.ci/test does this before starting the
#                   step in the background, so that no two apt-get runs meet)
#   --arch A --bin KTM  build the images of A from KTM only (repeatable; default: amd64 and
#                   arm64 from the matrix's static binaries, as above)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
fail() { echo "podman step: $*"; echo "KTM-FATAL podman: $*"; echo "0 passed, 1 failed"; exit 1; }
install_only=0
declare -A given=()
while [ $# -gt 0 ]; do
  case "$1" in
    --install-only) install_only=1; shift ;;
    --arch) [ "${3:-}" = --bin ] || fail "usage: --arch A --bin KTM"; given[$2]="$4"; shift 4 ;;
    *) fail "unknown option $1" ;;
  esac
done
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/libexec/podman/catatonit ] || [ -x /usr/bin/catatonit ] || need+=(catatonit)
[ -f /usr/share/containers/seccomp.json ] || need+=(golang-github-containers-common)
command -v busybox >/dev/null || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; } >&2 ||
    fail "cannot install ${need[*]}"
fi
[ "$install_only" = 0 ] || exit 0
# The shipped profile must still be this podman's default plus exactly the two permissions
# (one more counted check).
if python3 "$repo/deploy/seccomp-profile.py" --check "$repo/deploy/ktm-seccomp.json"; then
  profile_ok=1
else
  profile_ok=0
  echo "FAIL seccomp profile: deploy/ktm-seccomp.json is not this podman's default plus bpf/CAP_BPF and perf_event_open/CAP_PERFMON (remake it: deploy/seccomp-profile.py > deploy/ktm-seccomp.json)"
fi
archs=(amd64 arm64)
[ ${#given[@]} = 0 ] || archs=("${!given[@]}")
for arch in "${archs[@]}"; do
  case "$arch" in
    amd64) bin="${given[$arch]:-$repo/target/static/ktm-tests/ktm}" ;;
    arm64) bin="${given[$arch]:-$repo/target/cross-arm64/ktm-tests/ktm}" ;;
    *) fail "--arch $arch: amd64 or arm64" ;;
  esac
  args=(--arch "$arch")
  if [ -x "$bin" ]; then
    args+=(--bin "$bin")
  elif [ "$arch" = arm64 ]; then
    echo "podman step: no static arm64 ktm ($bin): arm64 images not built"
    continue
  fi
  "$here/build-images.sh" "${args[@]}" >/dev/null || fail "build-images.sh --arch $arch failed"
  # shellcheck source=env.sh
  . "$here/env.sh"
  echo "image localhost/ktm:$arch: $(pm image inspect -f '{{.Size}}' "localhost/ktm:$arch") bytes"
done
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$here/play-test.sh" | tee "$log"
rc=${PIPESTATUS[0]}
read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -1)
p=${p:-0} f=${f:-1}
echo "$((p + profile_ok)) passed, $((f + 1 - profile_ok)) failed"
[ "$rc" = 0 ] && [ "$profile_ok" = 1 ]
