#!/bin/bash
# The podman guests' test (run-podman.sh, run-matrix.sh --podman): .ci/podman/play-test.sh,
# the repository's manifest played under podman and runc with exact counts, run as it runs on
# the host, with the images the host built ($KTM_PODMAN_IMAGES) and the kernel's label in
# its cells; then one check of what makes this guest worth having: a container of the
# manifest's images sees a private cgroup namespace (/proc/self/cgroup is `0::/`, as under a
# kubelet on a cgroup v2 node) while the guest has cgroup2 alone at /sys/fs/cgroup.
# Prints play-test.sh's lines, its checks' matrix rows, this check's row and, last, the sum
# `N passed, N failed`.
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
label="${KTM_KERNEL:-host}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
bash "$repo/.ci/podman/play-test.sh" ${KTM_PODMAN_IMAGES:+--images "$KTM_PODMAN_IMAGES"} --label "$label" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
counts="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)"
read -r p _ f _ <<<"${counts//,/}"
if [ -z "$counts" ]; then
  p=0 f=1
  echo "FAIL play-test.sh printed no \`N passed, N failed\` line (rc=$rc)"
elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
  f=1
  echo "FAIL play-test.sh exited $rc without a failed check"
fi

# shellcheck source=../podman/env.sh
. "$repo/.ci/podman/env.sh"
row="private cgroup namespace (pure cgroup v2 node)"
fs="$(stat -fc %T /sys/fs/cgroup)"
v1="$(awk '$3 == "cgroup" { print $2 }' /proc/self/mounts | head -3 | tr '\n' ' ')"
# The BanyanDB stand-in image has a busybox sh; `read` is a shell builtin (no cat in there).
# shellcheck disable=SC2016 # expanded in the container
seen="$(pm run --rm --network none --entrypoint /bin/sh "localhost/banyand-standin:1x-amd64" \
  -c 'read -r l < /proc/self/cgroup; echo "$l"' 2>&1)"
if [ "$fs" = cgroup2fs ] && [ -z "$v1" ] && [ "$seen" = "0::/" ]; then
  p=$((p + 1))
  echo "ok cgroup namespace: /sys/fs/cgroup is cgroup2 alone; a container reads 0::/"
  printf 'KTM-MATRIX\tpodman: %s\t%s\n' "$row" "$label: 0::/ in the container"
else
  f=$((f + 1))
  echo "FAIL cgroup namespace: /sys/fs/cgroup is $fs, v1 mounts: [${v1% }], the container reads [$seen]"
  printf 'KTM-MATRIX\tpodman: %s\t%s\n' "$row" "$label: FAIL ($seen)"
fi
echo "$p passed, $f failed"
[ "$f" = 0 ]
