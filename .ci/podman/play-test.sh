#!/usr/bin/env bash
# Plays the repository's manifest, deploy/banyandb-with-ktm.yaml, with a real container runtime
# (`podman kube play`, runc) as two pods on this node, and checks from outside, with exact
# counts, what KTM counts through the lifecycle a kubelet puts a pod through. KTM's counts are
# read from its container's log (`ktm run` streams each batch as Prometheus text to stdout).
#
# Interface (self-contained: the QEMU cgroup v2 guest runs it as it is):
#   usage: play-test.sh [--images DIR] [--arch ARCH] [--label LABEL] [--manifest FILE]
#                       [--profile-root DIR]
#   --images DIR        load DIR/*.tar (docker-archive, as `build-images.sh --save DIR` writes
#                       them) into the private storage first; without it the images must be
#                       there already (build-images.sh builds them into it)
#   --arch ARCH         amd64 (default: this machine's) or arm64: the image tags' suffix
#   --label LABEL       names this run in its matrix cells (default: host)
#   --manifest FILE     default: deploy/banyandb-with-ktm.yaml beside this script's repository
#   --profile-root DIR  the directory holding ktm-seccomp.json (default: the manifest's)
#   images: localhost/ktm:ARCH (deploy/Containerfile), localhost/banyand-standin:1x-ARCH and
#           :5x-ARCH (Containerfile.banyand: a `banyand` doing 1000 x S preads and 7 x S
#           fadvise calls at start and on each SIGUSR1)
#   needs:  root, podman (4.3+), runc, coreutils, sed, awk, grep; bpftool if present (else
#           /proc/*/fdinfo is searched for the sidecar's BPF ids)
#   env:    KTM_PODMAN_DIR (private podman directory, see env.sh)
#   output: one `ok CASE: ...` or `FAIL CASE: ...` line per check, matrix rows
#           `KTM-MATRIX<TAB>podman: CASE<TAB>CELL` (.ci/qemu/summarize.py reads them), and
#           last the line `N passed, N failed` (.ci/test's `counts` kind). Exit status 1 iff
#           a check failed or the run could not be set up (then `0 passed, 1 failed`).
# Every pod is removed at the end, however the script ends.
#
# The cases (pod A runs the 1x stand-in, pod B the 5x one, both from the same manifest):
#   first start      the sidecars attach while BanyanDB already runs; a burst in each pod
#                    (at once) counts exactly its own pod's I/O in each sidecar
#   restarted        `podman restart` of A's BanyanDB: new process, same cgroup path, new
#                    cgroup; its burst at start is counted exactly (counters go on)
#   recreated        A's BanyanDB container removed and created again (new id and cgroup
#                    path, as the kubelet does); its burst at start is counted exactly (either
#                    on top of the old counts or from zero: the cell says which)
#   exec             a shell exec'd into A's BanyanDB container signals BanyanDB; the burst is
#                    counted exactly and KTM keeps its target
#   sigkill          A's sidecar SIGKILLed: every BPF program, map and link it held is gone
#   sidecar restart  A's sidecar started again: a burst is counted exactly from zero
#   pod recreated    A's pod played again (`kube play --replace`); a burst after the sidecar
#                    attached is counted exactly (the start burst races the attach: reported)
#   other pod        through all of the above, B's sidecar counts exactly B's bursts
#   runtime default  a third pod with the runtime's default seccomp profile instead of the
#                    shipped one: KTM names the seccomp filter that refuses bpf()
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
images="" label=host manifest="$repo/deploy/banyandb-with-ktm.yaml" profile_root=""
case "$(uname -m)" in aarch64) arch=arm64 ;; *) arch=amd64 ;; esac
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --manifest) manifest="$2"; shift 2 ;;
    --profile-root) profile_root="$2"; shift 2 ;;
    *) echo "play-test.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
profile_root="${profile_root:-$(dirname "$manifest")}"
# shellcheck source=env.sh
. "$here/env.sh"

PREADS=1000 FADVISES=7 # one burst at scale 1 (src/workload.rs, STANDIN_*)
work="$(mktemp -d)"
passed=0 failed=0
cleanup() {
  local pod
  # One at a time: podman 4.3 given several names, one of them missing, removes none.
  for pod in banyandb banyandb-b banyandb-rd; do pm pod rm -f -i "$pod" >/dev/null 2>&1; done
  [ -z "$(pm pod ls -q 2>/dev/null)" ] || echo "play-test.sh: warning: pods left: $(pm pod ls --format '{{.Name}}' | tr '\n' ' ')" >&2
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fatal() {
  echo "FAIL setup: $*"
  echo "KTM-FATAL podman: $*"
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
}
row() { printf 'KTM-MATRIX\tpodman: %s\t%s\n' "$1" "$2"; }
ok() { passed=$((passed + 1)); echo "ok $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

command -v podman >/dev/null || fatal "podman missing (apt-get install podman runc)"
command -v runc >/dev/null || fatal "runc missing"
[ "$(id -u)" = 0 ] || fatal "needs root"
if [ -n "$images" ]; then
  for t in "$images"/*.tar; do pm load -q -i "$t" >/dev/null || fatal "podman load $t"; done
fi
ktm_image="localhost/ktm:$arch"
for i in "$ktm_image" "localhost/banyand-standin:1x-$arch" "localhost/banyand-standin:5x-$arch"; do
  pm image exists "$i" || fatal "image $i missing (.ci/podman/build-images.sh --arch $arch)"
done
echo "podman: $(podman --version), $(runc --version | head -1), kernel $(uname -r), cgroup $(stat -fc %T /sys/fs/cgroup)"

# The manifest with only the image names replaced (and pod B's name); each replacement must
# happen exactly once, or the manifest changed under the test.
manifest_for() { # POD SCALE OUT
  local pod="$1" scale="$2" out="$3"
  sed -e "s|image: apache/skywalking-banyandb:latest|image: localhost/banyand-standin:$scale-$arch|" \
    -e "s|image: fodc-sidecar:latest|image: $ktm_image|" \
    -e "/^kind: Pod/,/^spec:/s|^  name: banyandb\$|  name: $pod|" "$manifest" >"$out"
  [ "$(grep -c "image: localhost/" "$out")" = 2 ] && grep -q "^  name: $pod\$" "$out" ||
    fatal "cannot substitute the images in $manifest"
}
play() { # POD SCALE [--replace]
  manifest_for "$1" "$2" "$work/$1.yaml"
  pm kube play ${3:-} --network none --seccomp-profile-root "$profile_root" "$work/$1.yaml" >"$work/play.log" 2>&1 ||
    fatal "kube play $1: $(cat "$work/play.log")"
}

# The latest batch of POD's sidecar, from its log, into FILE; prints its unix time.
batch() { # POD FILE
  pm logs "$1-fodc-sidecar" 2>/dev/null | awk '
    /^# batch at unix time / { n++; ts[n] = $6; delete b; k = 0; next }
    /^ktm_/ { lines[n] = lines[n] $0 "\n" }
    END { if (n) { printf "%s", lines[n] > "/dev/stderr"; print ts[n] } }' 2>"$2"
}
val() { # FILE NAME: the value of the unlabelled sample NAME (empty if absent)
  awk -v n="$2" '$1 == n { print $2 }' "$1"
}
state() { # FILE LABEL: a label of the iomonitor's ktm_module_state
  grep '^ktm_module_state{module="iomonitor"' "$1" | sed -n "s/.*[{,]$2=\"\([^\"]*\)\".*/\1/p"
}
# Waits for a batch of POD taken after unix time T (at least one second after: batch times
# are whole seconds) into FILE; fails after 60 s (generous for emulated guests).
batch_after() { # POD T FILE
  local i ts
  for ((i = 0; i < 120; i++)); do
    ts="$(batch "$1" "$3")"
    [ -n "$ts" ] && [ "$ts" -gt "$2" ] && return 0
    sleep 0.5
  done
  echo "  no batch of $1 after $2 (last: ${ts:-none})"
  return 1
}
# The unix time after POD's last I/O (set when its burst is seen done, or its sidecar restarts):
# a batch taken after it holds everything before the next action.
declare -A last_io=()
settled() { batch_after "$1" "${last_io[$1]:-0}" "$2"; } # POD FILE
bursts() { pm logs "$1-banyand" 2>/dev/null | grep -c '^banyand stand-in: burst'; }
wait_bursts() { # POD N: waits until POD's BanyanDB log shows N bursts (60 s)
  local i
  for ((i = 0; i < 120; i++)); do
    if [ "$(bursts "$1")" -ge "$2" ]; then
      last_io[$1]="$(date +%s)"
      return 0
    fi
    sleep 0.5
  done
  echo "  $1: BanyanDB logged $(bursts "$1") bursts, not $2"
  return 1
}
trigger() { pm kill -s USR1 "$1-banyand" >/dev/null; }
scale_of() { [ "$1" = banyandb-b ] && echo 5 || echo 1; }

# Compares the counts in AFTER with BEFORE plus one burst of POD (or, with FROM_ZERO, with
# one burst alone); prints a cell fragment, returns 1 on a mismatch.
exact() { # POD BEFORE AFTER [either]
  local pod="$1" s n what got want base rc=0 cell=""
  s="$(scale_of "$pod")"
  for what in ktm_sys_pread_latency_seconds_count ktm_sys_pread_bytes_total ktm_fadvise_calls_total ktm_fadvise_success_total; do
    case "$what" in
      *pread_latency*) n=$((PREADS * s)) ;;
      *pread_bytes*) n=$((PREADS * s * 4096)) ;;
      *) n=$((FADVISES * s)) ;;
    esac
    got="$(val "$3" "$what")" base="$(val "$2" "$what")"
    got="${got:-missing}" base="${base:-0}"
    want=$((base + n))
    if [ "$got" = "$want" ]; then
      :
    elif [ "${4:-}" = either ] && [ "$got" = "$n" ]; then
      cell="counters from zero"
    else
      rc=1
      echo "  $pod: $what = $got, want $want (before: $base, one burst: $n)" >&2
    fi
  done
  if [ $rc = 0 ]; then
    echo "exact: $((PREADS * s)) preads, $((FADVISES * s)) fadvise${cell:+, $cell}"
  else
    got="$(val "$3" ktm_sys_pread_latency_seconds_count)" base="$(val "$2" ktm_sys_pread_latency_seconds_count)"
    echo "preads: ${got:-missing} after ${base:-0} before, one burst $((PREADS * s))"
  fi
  return $rc
}

# A burst in POD triggered by signal, checked exactly (the other pod idle); CASE names it.
burst_case() { # CASE POD [either]
  local c="$1" pod="$2" k t cell
  k="$(bursts "$pod")"
  settled "$pod" "$work/before" || { bad "$c: $pod: no batch"; return 1; }
  trigger "$pod"
  wait_bursts "$pod" $((k + 1)) || { bad "$c: $pod: no burst"; return 1; }
  batch_after "$pod" "$(date +%s)" "$work/after" || { bad "$c: $pod: no batch"; return 1; }
  if cell="$(exact "$pod" "$work/before" "$work/after" "${3:-}")"; then
    ok "$c: $pod: $cell"
  else
    bad "$c: $pod: $cell"
  fi
  last_cell="$cell"
}

sidecar_pid() { pm inspect -f '{{.State.Pid}}' "$1-fodc-sidecar" 2>/dev/null; }
bpf_ids() { # PID: "prog:ID", "map:ID" and "link:ID" lines of every BPF object PID holds
  grep -hE '^(prog_id|map_id|link_id):' /proc/"$1"/fdinfo/* 2>/dev/null |
    sed -E 's/^(prog|map|link)_id:[[:space:]]*/\1:/' | sort -u
}
bpf_alive() { # KIND:ID -> 0 iff the kernel still has it
  local kind="${1%%:*}" id="${1#*:}"
  if command -v bpftool >/dev/null; then
    bpftool "$kind" show id "$id" >/dev/null 2>&1
  else
    grep -qsxE "${kind}_id:[[:space:]]*$id" /proc/[0-9]*/fdinfo/* 2>/dev/null
  fi
}
rss_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; }

# ---- first start: both pods played, the sidecars attach while BanyanDB already runs.
started=$(date +%s)
play banyandb 1x
play banyandb-b 5x
for pod in banyandb banyandb-b; do
  wait_bursts "$pod" 1 || fatal "$pod: the stand-in BanyanDB did not start"
  batch_after "$pod" "$started" "$work/first" || fatal "$pod: no batch from the sidecar ($(pm logs "$pod-fodc-sidecar" 2>&1 | tail -3))"
done
pid0="$(sidecar_pid banyandb)"
cpu0="$(cpu_ticks "$pid0")" t_cpu0=$(date +%s)
grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid0/status" && ok "seccomp: the sidecar runs under a seccomp filter" ||
  bad "seccomp: the sidecar runs without a seccomp filter"
# Granted exactly CAP_BPF + CAP_PERFMON by the manifest, it drops both once attached (README,
# "Lock-down after start"), keeping CAP_BPF alone on kernels that refuse map reads without it
# (5.10), and sets no_new_privs.
capeff="$(awk '/^CapEff:/ { print $2 }' "/proc/$pid0/status")"
nnp="$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$pid0/status")"
case "$capeff/$nnp" in
  0000000000000000/1 | 0000008000000000/1) ok "capabilities: the sidecar locked itself down after attaching (CapEff $capeff, NoNewPrivs 1)" ;;
  *) bad "capabilities: the sidecar has CapEff $capeff, NoNewPrivs $nnp; want 0 (or CAP_BPF alone) and 1 after its lock-down" ;;
esac
# Learning: one burst per pod in turn (its id is learned from its first event), exact.
burst_case "learning" banyandb && l1=1 || l1=0
burst_case "learning" banyandb-b && l2=1 || l2=0
# Both pods at once: each sidecar counts its own pod's burst only.
settled banyandb "$work/a0" && settled banyandb-b "$work/b0"
ka="$(bursts banyandb)" kb="$(bursts banyandb-b)"
trigger banyandb && trigger banyandb-b
wait_bursts banyandb $((ka + 1)) && wait_bursts banyandb-b $((kb + 1))
t="$(date +%s)"
batch_after banyandb "$t" "$work/a1" && batch_after banyandb-b "$t" "$work/b1"
ca="$(exact banyandb "$work/a0" "$work/a1")" && ra=0 || ra=1
cb="$(exact banyandb-b "$work/b0" "$work/b1")" && rb=0 || rb=1
if [ $ra = 0 ] && [ "$rb" = 0 ] && [ $l1 = 1 ] && [ $l2 = 1 ]; then
  ok "first start: A $ca; B $cb"
  row "first start, two pods bursting at once" "$label: exact (A $PREADS preads, B $((5 * PREADS)))"
else
  bad "first start: A $ca; B $cb"
  row "first start, two pods bursting at once" "$label: FAIL (A $ca; B $cb)"
fi
echo "  A: $(state "$work/a1" scope)"

# ---- BanyanDB restarted in its container (podman restart: same path, new cgroup).
settled banyandb "$work/before"
k="$(bursts banyandb)"
pm restart -t 2 banyandb-banyand >/dev/null
wait_bursts banyandb $((k + 1))
batch_after banyandb "$(date +%s)" "$work/after"
if cell="$(exact banyandb "$work/before" "$work/after")"; then
  ok "restarted: $cell"; row "BanyanDB restarted (podman restart), I/O at once" "$label: $cell"
else
  bad "restarted: $cell"; row "BanyanDB restarted (podman restart), I/O at once" "$label: FAIL ($cell)"
fi

# ---- BanyanDB's container recreated: removed, created again in the pod (new id, new path).
settled banyandb "$work/before"
pm rm -f -t 2 banyandb-banyand >/dev/null
pm run -d --pod banyandb --name banyandb-banyand "localhost/banyand-standin:1x-$arch" standalone >/dev/null ||
  bad "recreated: podman run in the pod failed"
wait_bursts banyandb 1
batch_after banyandb "$(date +%s)" "$work/after"
if cell="$(exact banyandb "$work/before" "$work/after" either)"; then
  ok "recreated: $cell"; row "BanyanDB container recreated (new cgroup path), I/O at once" "$label: $cell"
else
  bad "recreated: $cell"; row "BanyanDB container recreated (new cgroup path), I/O at once" "$label: FAIL ($cell)"
fi

# ---- A shell exec'd into BanyanDB's container signals BanyanDB: counted, target kept.
settled banyandb "$work/before"
scope_before="$(state "$work/before" scope)"
target_pid="$(echo "$scope_before" | grep -o 'pid [0-9]*' | tail -1)"
k="$(bursts banyandb)"
# shellcheck disable=SC2016 # expanded by the container's shell
pm exec banyandb-banyand /bin/sh -c 'for p in /proc/[0-9]*; do read c < $p/comm; [ "$c" = banyand ] && kill -USR1 ${p#/proc/}; done; sleep 1' ||
  bad "exec: podman exec failed"
wait_bursts banyandb $((k + 1))
batch_after banyandb "$(date +%s)" "$work/after"
scope_after="$(state "$work/after" scope)"
# Kept: the scope still names BanyanDB's pid (in the pod's pid namespace), not the shell's.
n="${target_pid#pid }"
if cell="$(exact banyandb "$work/before" "$work/after")" && [ -n "$n" ] && [[ "$scope_after" =~ pid\ $n([^0-9]|$) ]]; then
  # Reported, not judged: the shell's own read(2) calls (of /proc/*/comm) are in BanyanDB's
  # cgroup; whether they count depends on KTM noticing the shared cgroup within its life.
  r1="$(val "$work/after" ktm_sys_read_latency_seconds_count)" r0="$(val "$work/before" ktm_sys_read_latency_seconds_count)"
  reads=$((${r1:-0} - ${r0:-0}))
  ok "exec: $cell, scope kept ($scope_after), read(2) calls counted meanwhile: $reads"
  row "shell exec'd into BanyanDB's container" "$label: $cell, target kept; the shell's reads counted: $reads"
else
  bad "exec: $cell; scope before: $scope_before; after: $scope_after"
  row "shell exec'd into BanyanDB's container" "$label: FAIL ($cell)"
fi

# ---- Figures for the manifest's resources: the sidecar's peak RSS and CPU so far.
pid="$(sidecar_pid banyandb)"
if [ "$pid" = "$pid0" ]; then
  cpu1="$(cpu_ticks "$pid")"
  secs=$(($(date +%s) - t_cpu0))
  hz="$(getconf CLK_TCK)"
  echo "KTM-INFO podman: sidecar peak RSS $(rss_kb "$pid") kB; CPU to attach $((cpu0 * 1000 / hz)) ms, then $(((cpu1 - cpu0) * 1000 / hz)) ms in ${secs}s"
  row "sidecar peak RSS, CPU" "$label: $(($(rss_kb "$pid") / 1024)) MiB; $((cpu0 * 1000 / hz)) ms CPU to start and attach, $(((cpu1 - cpu0) * 1000 / hz)) ms in the next ${secs} s"
fi
pm stats --no-stream --format '{{.Name}} {{.MemUsage}} {{.CPUPerc}}' banyandb-fodc-sidecar 2>/dev/null | sed 's/^/KTM-INFO podman stats: /'

# ---- The sidecar SIGKILLed: nothing of it stays in the kernel.
pid="$(sidecar_pid banyandb)"
bpf_ids "$pid" >"$work/ids"
n_ids=$(wc -l <"$work/ids")
# From outside podman, as the OOM killer or a crash would (`podman kill` counts as a stop by
# the user, after which podman's restart policy leaves the container down).
kill -KILL "$pid"
for ((i = 0; i < 40; i++)); do
  [ ! -d "/proc/$pid" ] && break
  sleep 0.25
done
left=""
for ((i = 0; i < 20; i++)); do
  left=""
  while read -r id; do bpf_alive "$id" && left="$left $id"; done <"$work/ids"
  [ -z "$left" ] && break
  sleep 0.5
done
if [ "$n_ids" -gt 0 ] && [ -z "$left" ]; then
  ok "sigkill: all $n_ids BPF objects of the sidecar gone ($(grep -c prog "$work/ids") programs, $(grep -c map "$work/ids") maps, $(grep -c link "$work/ids") links)"
  row "sidecar SIGKILLed: nothing left in the kernel" "$label: pass ($n_ids BPF objects gone)"
else
  bad "sigkill: $n_ids BPF ids held before; still alive:${left:- (none held: cannot tell)}"
  row "sidecar SIGKILLed: nothing left in the kernel" "$label: FAIL"
fi

# ---- The sidecar restarted (by podman's restart policy, or by hand): counts afresh, exact.
for ((i = 0; i < 20; i++)); do
  [ "$(pm inspect -f '{{.State.Running}}' banyandb-fodc-sidecar 2>/dev/null)" = true ] && break
  sleep 0.5
done
restarted_by=policy
if [ "$(pm inspect -f '{{.State.Running}}' banyandb-fodc-sidecar 2>/dev/null)" != true ]; then
  restarted_by=hand
  pm start banyandb-fodc-sidecar >/dev/null
fi
last_io[banyandb]="$(date +%s)" # the old sidecar's batches are in the same log
echo "  sidecar restarted by $restarted_by (restart policy: $(pm inspect -f '{{.HostConfig.RestartPolicy.Name}}' banyandb-fodc-sidecar))"
burst_case "sidecar restarted" banyandb either
row "sidecar restarted" "$label: ${last_cell:-?} (restarted by $restarted_by)"

# ---- The pod recreated: played again; the start burst races the sidecar's attach.
play banyandb 1x --replace
wait_bursts banyandb 1
batch_after banyandb "$(date +%s)" "$work/start"
start_seen="$(val "$work/start" ktm_sys_pread_latency_seconds_count)"
burst_case "pod recreated" banyandb either
row "pod recreated (kube play --replace)" "$label: ${last_cell:-?}; of the start burst ${start_seen:-?}/$PREADS preads seen (no start ordering)"

# ---- The other pod: exactly its own bursts all along (it burst at start, then twice).
settled banyandb-b "$work/b2"
moved=""
for what in ktm_sys_pread_latency_seconds_count ktm_fadvise_calls_total; do
  [ "$(val "$work/b1" "$what")" = "$(val "$work/b2" "$what")" ] ||
    moved="$moved $what $(val "$work/b1" "$what") -> $(val "$work/b2" "$what")"
done
[ -z "$moved" ] && ok "other pod: nothing counted in B through A's lifecycle" ||
  bad "other pod: B counted during A's lifecycle:$moved"
burst_case "other pod, at the end" banyandb-b
[ -z "$moved" ] && row "other pod: counts its own pod only" "$label: ${last_cell:-?}, nothing of pod A" ||
  row "other pod: counts its own pod only" "$label: FAIL (counted during A's cases:$moved)"

# ---- The same pod under the runtime's default profile instead of ktm-seccomp.json (the only
# other change): podman's default refuses bpf() to a container without CAP_SYS_ADMIN, and KTM
# must say so (the reason the manifest ships its own profile).
manifest_for banyandb-rd 1x "$work/rd.yaml"
sed -i -e 's|seccomp.security.alpha.kubernetes.io/fodc-sidecar: localhost/ktm-seccomp.json|seccomp.security.alpha.kubernetes.io/fodc-sidecar: runtime/default|' \
  -e 's|type: Localhost|type: RuntimeDefault|' -e '/localhostProfile:/d' "$work/rd.yaml"
if pm kube play --network none "$work/rd.yaml" >"$work/play.log" 2>&1; then
  said=""
  for ((i = 0; i < 30; i++)); do
    said="$(pm logs banyandb-rd-fodc-sidecar 2>&1 | grep -o 'blocked by a seccomp filter' | head -1)"
    [ -n "$said" ] && break
    sleep 0.5
  done
  sleep 2
  rd_state="$(pm inspect -f '{{.State.Status}}, restarted {{.RestartCount}} times' banyandb-rd-fodc-sidecar 2>/dev/null)"
  if [ -n "$said" ]; then
    ok "runtime default profile: KTM says bpf() is $said (sidecar $rd_state)"
    row "RuntimeDefault (podman's profile) instead of ktm-seccomp.json" "$label: refused, KTM says so; sidecar $rd_state"
  else
    bad "runtime default profile: KTM did not name the seccomp filter (sidecar $rd_state)"
    row "RuntimeDefault (podman's profile) instead of ktm-seccomp.json" "$label: FAIL"
  fi
  pm pod rm -f -i banyandb-rd >/dev/null 2>&1
else
  bad "runtime default profile: kube play failed: $(cat "$work/play.log")"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
