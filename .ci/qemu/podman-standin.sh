#!/bin/bash
# A small podman test for the podman guests (run-podman.sh), proving the guest itself: an
# image built FROM scratch with the static `ktm` binary and a static busybox, played as a pod
# of two containers with `podman kube play` (runc, cgroupfs manager), then checked from
# inside and outside: each container's cgroup namespace is private (/proc/self/cgroup reads
# `0::/`), the two containers have cgroups of their own on the node, `ktm probe` runs in the
# sidecar with CAP_BPF and CAP_PERFMON only, and all of it again after `podman pod restart`.
# Prints a KTM-MATRIX cell per case and `N passed, N failed` at the end (exit 1 on a failure).
# Needs: root, podman, $KTM_BIN (static ktm), a static busybox ($KTM_BUSYBOX or /run/ktm/busybox).
set -uo pipefail
ktm="${KTM_BIN:?KTM_BIN: the static ktm binary}"
busybox="${KTM_BUSYBOX:-/run/ktm/busybox}"
[ -x "$busybox" ] || busybox="$(command -v busybox)"
work="$(mktemp -d)"
pass=0 fail=0
cell() { printf 'KTM-MATRIX\t%s\t%s\n' "$1" "$2"; }
check() { # ROW WANT GOT: one case
  if [ "$2" = "$3" ]; then
    pass=$((pass + 1)); cell "$1" "ok: $3"; echo "ok: $1: $3"
  else
    fail=$((fail + 1)); cell "$1" "FAIL: $3"; echo "FAIL: $1: want [$2], got [$3]"
  fi
}
timed() { # LABEL COMMAND...: runs it, printing its wall time
  local t0=$SECONDS rc
  "$@"; rc=$?
  echo "podman-standin: $1 ${2:-}: $((SECONDS - t0))s (rc=$rc)"
  return $rc
}

mkdir -p "$work/ctx"
cp "$ktm" "$work/ctx/ktm"
cp "$busybox" "$work/ctx/busybox"
cat > "$work/ctx/Containerfile" <<'EOF'
FROM scratch
COPY ktm /ktm
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
EOF
timed podman build -q -t localhost/ktm-standin:latest "$work/ctx" >/dev/null
check "podman: image FROM scratch" "built" "$(podman image exists localhost/ktm-standin:latest && echo built || echo missing)"

cat > "$work/pod.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: standin
  annotations:
    container.seccomp.security.alpha.kubernetes.io/sidecar: unconfined
spec:
  shareProcessNamespace: true
  containers:
    - name: banyand
      image: localhost/ktm-standin:latest
      args: ["sleep", "3600"]
    - name: sidecar
      image: localhost/ktm-standin:latest
      args: ["sleep", "3600"]
      securityContext:
        capabilities:
          drop: ["ALL"]
          add: ["BPF", "PERFMON"]
EOF
timed podman kube play --network none "$work/pod.yaml"

cases() { # WHEN
  local c pid own cg
  for c in banyand sidecar; do
    check "podman: cgroup namespace ($c, $1)" "0::/" "$(podman exec "standin-$c" cat /proc/self/cgroup 2>&1)"
  done
  cg=""
  for c in banyand sidecar; do
    pid="$(podman inspect -f '{{.State.Pid}}' "standin-$c")"
    own="$(cut -d: -f3 "/proc/$pid/cgroup" 2>/dev/null)"
    cg+="${own##*/} "
  done
  read -r a b <<<"$cg"
  check "podman: a cgroup per container ($1)" "distinct" "$([ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ] && echo distinct || echo "same or none: $cg")"
  check "podman: ktm probe in the sidecar ($1)" "rc=0" "rc=$(podman exec standin-sidecar /ktm probe >"$work/probe.txt" 2>&1; echo $?)"
  head -n 20 "$work/probe.txt"
}
cases "first start"
timed podman pod restart standin >/dev/null
cases "pod restarted"
timed podman kube play --down "$work/pod.yaml" >/dev/null
rm -rf "$work"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
