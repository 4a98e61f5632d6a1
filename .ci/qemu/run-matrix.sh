#!/usr/bin/env bash
# Runs test binaries on Debian's cloud kernels under QEMU (and on this host), collects the
# KTM-MATRIX lines they print into one table per kernel, and exits non-zero if any binary
# fails anywhere or any guest hangs or panics. See README.md beside this file.
#
# usage: run-matrix.sh [options] [-- BINARY...]
#   BINARY...            static test executables (Rust libtest); a file named `ktm` is the
#                        ktm binary (/bin/ktm in the guest, $KTM_BIN). x86-64 ones run in the
#                        amd64 guests and on this host, aarch64 ones in the arm64 guests.
#                        Without any, the crate's are built with build-tests.sh (arm64: cross-
#                        built in a cached chroot, cross-arm64.sh), for each architecture a
#                        run needs: the test targets named in $KTM_QEMU_TESTS (default:
#                        toolkit iomonitor collector reclaim pod lockdown). When a build fails, the
#                        runs of its architecture count every one of those binaries failed.
# options (environment variable in brackets):
#   --kernels L,L        kernel labels, from 5.10,6.1,6.12,sid (sid: Debian's newest, the
#                        development suite's) and arm64-6.1,arm64-6.12 (Debian's arm64 cloud
#                        kernels of bookworm and trixie); "none" for host only [KTM_KERNELS]
#   --variant L:ITEMS    extra run of kernel L (or "host"), as another column; ITEMS joined by
#                        + or ',': NAME=VALUE (guest env) or mem=MiB. Repeatable; the first
#                        one replaces the default set [KTM_QEMU_VARIANTS, space separated]
#   --no-variants        no extra runs
#   --env NAME=VALUE     environment for every run, guest and host (repeatable)
#   --filter STR         libtest filter passed to every binary [KTM_FILTER]
#   --mem MiB            guest memory, default 1024 [KTM_QEMU_MEM]
#   --small-mem          guest memory 256 MiB (direct reclaim on modest files) [KTM_QEMU_SMALL_MEM]
#   --smp N              guest CPUs, default 2 [KTM_QEMU_SMP]
#   --jobs N             guests run at once, default the host's core count plus one: a
#                        single-threaded TCG guest keeps at most one core busy, and its tests
#                        wait for collections part of the time [KTM_QEMU_JOBS]
#   --disk-mib N         ext4 disk size, default max(2048, 2 x memory) [KTM_QEMU_DISK_MIB]
#   --timeout S          seconds per guest (and for the host run), default 600 [KTM_QEMU_TIMEOUT]
#   --accel A            auto (kvm if a guest is seen to run under it), kvm or tcg [KTM_QEMU_ACCEL]
#   --tcg-thread T       single (default) or multi: multi-threaded TCG hits the emulator's
#                        text-poke fault, see README.md [KTM_QEMU_TCG_THREAD]
#   --append ARGS        extra guest kernel command line [KTM_QEMU_APPEND]; every guest
#                        already has transparent_hugepage=never (README.md)
#   --host / --no-host   also run the binaries on this host, default on [KTM_QEMU_HOST=1/0]
#   --podman L,L         amd64 kernel labels that also get a podman column "L podman": the
#                        kernel booted on a cached Debian root with podman and runc, pure
#                        cgroup v2, running the podman test scripts (run-podman.sh); default
#                        6.12, "none" for none [KTM_QEMU_PODMAN]. These guests run while
#                        the others do (one more QEMU process), their columns come last
#   --podman-timeout S   seconds per podman guest, default 1200 [KTM_QEMU_PODMAN_TIMEOUT]
#   --no-podman          no podman columns
#   --podman-test N=S    a podman test script (path in the repository) for those columns,
#                        repeatable; the first one replaces the default list
#                        [KTM_PODMAN_TESTS, space separated]
#   --out DIR            output directory, default target/qemu [KTM_QEMU_OUT]
#   --cache DIR          kernel cache, default /var/cache/ktm-qemu [KTM_QEMU_CACHE]
#   --refresh            resolve the kernels' metapackages again
#   --ktm-bin PATH       the ktm binary, if not among the binaries
#   --verbose            stream every guest console line to stderr
#   --inject-panic       each guest crashes itself (sysrq c) after its first test binary,
#                        to show that a panicked guest fails the run [KTM_QEMU_INJECT_PANIC=1]
#   --no-retry           do not boot a guest again after the emulator's text-poke fault
#                        [KTM_QEMU_RETRY=0]
#   --prepare            only fetch and make what the runs need in the cache (tools, kernels,
#                        the arm64 cross chroot, the podman guests' root), then exit: on a
#                        fresh machine minutes of downloads, which .ci/test starts beside its
#                        first steps (each piece takes its own lock: a run waits for it)
#
# A guest whose log shows QEMU's text-poke fault (`Oops: int3` in kernel text, then the panic;
# see README.md) or that never began its first test binary without a KTM-FATAL saying why
# (summarize.py --retry-reason) is run once more, its first log kept as NN-*.fault.txt; the
# summary and its kernel cell then say "passed on retry: REASON", and a second failure fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
wall_start=$SECONDS

kernels="${KTM_KERNELS:-5.10,6.1,6.12,sid,arm64-6.1,arm64-6.12}"
podman_kernels="${KTM_QEMU_PODMAN-6.12}"
# The podman guests' test scripts, NAME=PATH (PATH in this repository).
read -r -a podman_tests <<<"${KTM_PODMAN_TESTS-podman=.ci/qemu/podman-play.sh}"
podman_tests_given=0
podman_timeout_s="${KTM_QEMU_PODMAN_TIMEOUT:-1200}"
default_variants=(
  6.1:KTM_DISABLE_FENTRY=1
  6.1:KTM_DISABLE_FENTRY=1+KTM_DISABLE_TRACEPOINT=1
  6.12:KTM_DISABLE_FENTRY=1+KTM_DISABLE_TRACEPOINT=1
  6.12:KTM_DISABLE_FENTRY=1+KTM_DISABLE_KPROBE=1
  sid:KTM_DISABLE_FENTRY=1+KTM_DISABLE_TRACEPOINT=1+KTM_DISABLE_KPROBE_MULTI=1
  sid:KTM_DISABLE_FENTRY=1+KTM_DISABLE_KPROBE=1
  arm64-6.1:KTM_DISABLE_FENTRY=1+KTM_DISABLE_TRACEPOINT=1
  arm64-6.12:KTM_DISABLE_FENTRY=1+KTM_DISABLE_TRACEPOINT=1
  arm64-6.12:KTM_DISABLE_FENTRY=1+KTM_DISABLE_KPROBE=1
)
read -r -a variants <<<"${KTM_QEMU_VARIANTS-${default_variants[*]}}"
variants_given=0
envs=()
filter="${KTM_FILTER:-}"
mem="${KTM_QEMU_MEM:-1024}"
smp="${KTM_QEMU_SMP:-2}"
# Guests at once: each is one emulator thread (single-threaded TCG), and the tests in it
# spend part of their time waiting for collections (two at once kept 1.3 of 2 cores busy on
# average), so one more than the cores.
parallel="${KTM_QEMU_JOBS:-$(($(nproc) + 1))}"
disk_mib="${KTM_QEMU_DISK_MIB:-}"
timeout_s="${KTM_QEMU_TIMEOUT:-600}"
accel="${KTM_QEMU_ACCEL:-auto}"
[ "${KTM_QEMU_KVM:-}" = 1 ] && accel=kvm
host="${KTM_QEMU_HOST:-1}"
out="${KTM_QEMU_OUT:-$repo/target/qemu}"
export KTM_QEMU_CACHE="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}"
refresh=()
ktm_bin=""
verbose=()
inject_panic="${KTM_QEMU_INJECT_PANIC:-0}"
tcg_thread="${KTM_QEMU_TCG_THREAD:-single}"
kernel_append="${KTM_QEMU_APPEND:-}"
# Every guest's kernel command line: no transparent huge pages (README.md: with THP the
# reclaim test's memory margins depend on huge-page faults and raised watermarks).
guest_append="transparent_hugepage=never"
retry="${KTM_QEMU_RETRY:-1}"
prepare=0

die() { echo "run-matrix: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --kernels) kernels="$2"; shift 2 ;;
    --variant)
      [ "$variants_given" = 1 ] || variants=()
      variants_given=1; variants+=("$2"); shift 2 ;;
    --no-variants) variants=(); variants_given=1; shift ;;
    --env) [[ "$2" == *=* ]] || die "--env wants NAME=VALUE"; envs+=("$2"); shift 2 ;;
    --filter) filter="$2"; shift 2 ;;
    --mem) mem="$2"; shift 2 ;;
    --small-mem) mem="${KTM_QEMU_SMALL_MEM:-256}"; shift ;;
    --smp) smp="$2"; shift 2 ;;
    --jobs) parallel="$2"; shift 2 ;;
    --disk-mib) disk_mib="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --accel) accel="$2"; shift 2 ;;
    --tcg-thread) tcg_thread="$2"; shift 2 ;;
    --append) kernel_append="$2"; shift 2 ;;
    --host) host=1; shift ;;
    --podman) podman_kernels="$2"; shift 2 ;;
    --no-podman) podman_kernels=""; shift ;;
    --podman-timeout) podman_timeout_s="$2"; shift 2 ;;
    --podman-test)
      [ "$podman_tests_given" = 1 ] || podman_tests=()
      podman_tests_given=1; podman_tests+=("$2"); shift 2 ;;
    --no-host) host=0; shift ;;
    --out) out="$2"; shift 2 ;;
    --cache) KTM_QEMU_CACHE="$2"; shift 2 ;;
    --refresh) refresh=(--refresh); shift ;;
    --ktm-bin) ktm_bin="$2"; shift 2 ;;
    --verbose) verbose=(--verbose); shift ;;
    --inject-panic) inject_panic=1; shift ;;
    --no-retry) retry=0; shift ;;
    --prepare) prepare=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (binaries go after --)" ;;
  esac
done
[ "$kernels" = none ] && kernels=""
[ "$podman_kernels" = none ] && podman_kernels=""
[ -n "$podman_kernels" ] && read -r -a podman_labels <<<"${podman_kernels//,/ }" || podman_labels=()
for l in "${podman_labels[@]}"; do
  case "$l" in arm64-*) die "--podman $l: the podman guests are amd64 only" ;; esac
done
[ ${#podman_labels[@]} = 0 ] || [ ${#podman_tests[@]} -gt 0 ] || die "podman columns without test scripts"
for t in "${podman_tests[@]}"; do
  [[ "$t" =~ ^[A-Za-z0-9_.-]+=.+$ ]] || die "--podman-test $t: want NAME=PATH"
  [ -f "$repo/${t#*=}" ] || die "--podman-test $t: no such file in $repo"
done
for v in "${variants[@]}"; do
  [[ "$v" =~ ^[^:]+:.+$ ]] || die "variant $v: want LABEL:ITEMS"
  for item in $(tr '+,' '  ' <<<"${v#*:}"); do
    [[ "$item" =~ ^(mem=[0-9]+|[A-Za-z_][A-Za-z0-9_]*=.*)$ ]] || die "variant $v: item $item is neither NAME=VALUE nor mem=MiB"
  done
done
case "$accel" in auto|kvm|tcg) ;; *) die "--accel auto|kvm|tcg" ;; esac
case "$tcg_thread" in single|multi) ;; *) die "--tcg-thread single|multi" ;; esac
[[ "$parallel" =~ ^[1-9][0-9]*$ ]] || die "--jobs wants a positive number"

[ -n "$kernels" ] && read -r -a labels <<<"${kernels//,/ }" || labels=()
arch_of() { case "$1" in arm64-*) echo arm64 ;; *) echo amd64 ;; esac; }
# Architectures with a run: amd64 for its guests and the host run, arm64 for its guests.
archs=()
for label in "${labels[@]}" "${podman_labels[@]}" $([ "$host" = 1 ] && echo host); do
  a="$(arch_of "$label")"
  [[ " ${archs[*]} " == *" $a "* ]] || archs+=("$a")
done
[ ${#archs[@]} -gt 0 ] || die "nothing to run (no kernels and --no-host)"
"$here/ensure-tools.sh" "${archs[@]}" $([ ${#podman_labels[@]} = 0 ] || echo podman)
if [ "$prepare" = 1 ]; then
  start=$SECONDS
  prep_labels=("${labels[@]}")
  for l in "${podman_labels[@]}"; do
    [[ " ${prep_labels[*]} " == *" $l "* ]] || prep_labels+=("$l")
  done
  # The kernels first and alone: the guests wait for all of them, while the two Debian roots
  # are needed only later (the arm64 build, the podman guest), so they do not share the
  # network with the kernels.
  rc=0
  if [ ${#prep_labels[@]} -gt 0 ]; then
    "$here/fetch-kernels.sh" "${refresh[@]}" "${prep_labels[@]}" >/dev/null || rc=1
    echo "run-matrix: kernels fetched in $((SECONDS - start))s" >&2
  fi
  pids=()
  if [[ " ${archs[*]} " == *" arm64 "* ]]; then "$here/cross-arm64.sh" --ensure & pids+=($!); fi
  if [ ${#podman_labels[@]} -gt 0 ]; then "$here/podman-root.sh" --ensure >/dev/null & pids+=($!); fi
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  echo "run-matrix: prepared (kernels ${prep_labels[*]}; $([[ " ${archs[*]} " == *" arm64 "* ]] && echo "arm64 chroot; ")$([ ${#podman_labels[@]} -gt 0 ] && echo "podman root; ")rc=$rc) in $((SECONDS - start))s" >&2
  exit "$rc"
fi
if [ ${#podman_labels[@]} -gt 0 ]; then
  # The podman guests' Debian root (debootstrap, minutes when not cached) is made while the
  # test binaries build; run-podman.sh waits for it (podman-root.sh's lock).
  mkdir -p "$out"
  "$here/podman-root.sh" --ensure > "$out/podman-root.log" 2>&1 &
fi

elf_arch() { # PATH -> amd64, arm64 or ? (the ELF header's e_machine)
  case "$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')" in 62) echo amd64 ;; 183) echo arm64 ;; *) echo "?" ;; esac
}

# Per architecture: the test binaries as NAME=PATH (NAME is the file name without cargo's
# -<16 hex> suffix), the ktm binary, and whether its build failed.
declare -A specs_of=() names_of=() ktm_of=() build_failed=()
if [ -n "$ktm_bin" ]; then
  [ -f "$ktm_bin" ] || die "--ktm-bin $ktm_bin: no such file"
  ktm_of[$(elf_arch "$ktm_bin")]="$(realpath "$ktm_bin")"
fi
add_binary() { # arch path
  local arch="$1" path="$2" name
  if [ ! -f "$path" ] || [ ! -x "$path" ]; then die "$path: not an executable file"; fi
  name="$(basename "$path")"
  [[ "$name" =~ ^(.+)-[0-9a-f]{16}$ ]] && name="${BASH_REMATCH[1]}"
  if [ "$name" = ktm ]; then
    [ -n "${ktm_of[$arch]:-}" ] || ktm_of[$arch]="$(realpath "$path")"
    return
  fi
  [[ "${names_of[$arch]:-} " == *" $name "* ]] && die "two $arch binaries named $name"
  names_of[$arch]+=" $name"
  specs_of[$arch]+="${specs_of[$arch]:+$'\n'}$name=$(realpath "$path")"
}
built() { # arch rc listing seconds: records a build's binaries, or its failure
  if [ "$2" = 0 ] && [ -n "$3" ]; then
    while IFS= read -r path; do add_binary "$1" "$path"; done <<<"$3"
    echo "run-matrix: $1 binaries built in $4s" >&2
  else
    # Its runs still happen, each failing with every expected binary counted failed.
    echo "run-matrix: building the $1 test binaries FAILED (build-tests.sh --arch $1)" >&2
    build_failed[$1]=1
    for t in ${KTM_QEMU_TESTS:-build}; do names_of[$1]+=" $t"; done
  fi
}
# The arm64 binaries (cross-built in the chroot: minutes) are built while the amd64 guests
# run, which come first and leave part of the cores idle while their tests wait for
# collections; finish_build waits for them before the first arm64 guest.
pending_build="" pending_start=0
finish_build() { # arch
  [ -n "$pending_build" ] && [ "$1" = arm64 ] || return 0
  # Its status from the file: the guest loop's `wait -n` may have reaped it already.
  wait "$pending_build" 2>/dev/null || true
  pending_build=""
  cat "$out/build-arm64.log" >&2
  built arm64 "$(cat "$out/build-arm64.rc" 2>/dev/null || echo 1)" "$(cat "$out/build-arm64.list")" "$((SECONDS - pending_start))"
}
if [ $# -eq 0 ]; then
  # The privileged test targets of the crate, unless KTM_QEMU_TESTS names others ("" = all).
  export KTM_QEMU_TESTS="${KTM_QEMU_TESTS-toolkit iomonitor collector reclaim pod lockdown}"
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"
  for arch in "${archs[@]}"; do
    echo "run-matrix: no binaries given: building the crate's (${KTM_QEMU_TESTS:-all tests}) for $arch with build-tests.sh" >&2
    if [ "$arch" = arm64 ] && [[ " ${archs[*]} " == *" amd64 "* ]]; then
      echo "run-matrix: (arm64 in the background, while the amd64 guests run; its output when they are done)" >&2
      pending_start=$SECONDS
      rm -f "$out/build-arm64.rc"
      { brc=0; "$here/build-tests.sh" --arch arm64 > "$out/build-arm64.list" 2> "$out/build-arm64.log" || brc=$?
        echo "$brc" > "$out/build-arm64.rc"; } &
      pending_build=$!
      continue
    fi
    start=$SECONDS rc=0
    listing="$("$here/build-tests.sh" --arch "$arch")" || rc=$?
    built "$arch" "$rc" "$listing" "$((SECONDS - start))"
  done
else
  for path in "$@"; do
    [ -e "$path" ] || die "$path: no such file"
    arch="$(elf_arch "$path")"
    [ "$arch" != "?" ] || die "$path: neither an x86-64 nor an aarch64 executable"
    add_binary "$arch" "$path"
  done
fi
for arch in "${archs[@]}"; do
  [ -n "${names_of[$arch]:-}" ] && continue
  [ "$arch" = arm64 ] && [ -n "$pending_build" ] && continue
  runs="$(for label in "${labels[@]}" $([ "$host" = 1 ] && echo host); do
    if [ "$(arch_of "$label")" = "$arch" ]; then printf '%s ' "$label"; fi; done)"
  [ -n "$runs" ] || continue # only podman columns: they need the ktm binary alone
  die "no $arch test binaries among those given, for ${runs% }: add them (build-tests.sh --arch $arch) or leave those runs out (--kernels, --no-host)"
done
specs_for() { # arch -> fills the array SPECS
  SPECS=()
  [ -n "${build_failed[$1]:-}" ] || [ -z "${specs_of[$1]:-}" ] || mapfile -t SPECS <<<"${specs_of[$1]}"
}
ktm_arg_for() { # arch -> fills the array KTM_ARG
  KTM_ARG=()
  [ -z "${ktm_of[$1]:-}" ] || KTM_ARG=(--ktm-bin "${ktm_of[$1]}")
}
binaries_csv_for() { local n; n="${names_of[$1]# }"; echo "${n// /,}"; }

# shellcheck source=markers.sh
. "$here/markers.sh"
# A run whose binaries could not be built: a log that says so; summarize.py counts every
# expected binary failed (no KTM-END for it).
unbuilt_run() { # log column label kind arch release
  ktm_fatal "the $5 test binaries could not be built (build-tests.sh --arch $5); not run" > "$1"
  printf 'column=%s\nkind=%s\nlabel=%s\nwall_s=0\ntimed_out=0\narch=%s\nbinaries=%s\nrelease=%s\n' \
    "$2" "$4" "$3" "$5" "$(binaries_csv_for "$5")" "$6" > "$1.meta"
  echo "run-matrix: $2: not run: the $5 test binaries could not be built" >&2
}

# One console log per run, $out/NN-COLUMN.log (+ .meta); the previous run's go first.
mkdir -p "$out"
out="$(cd "$out" && pwd)"
rm -f "$out"/[0-9][0-9]-*.log "$out"/[0-9][0-9]-*.log.meta "$out"/[0-9][0-9]-*.log.disk.img \
  "$out"/[0-9][0-9]-*.fault.txt "$out"/[0-9][0-9]-*.fault.txt.meta
logs=()
podman_logs=() podman_pids=()
run_no=0
guest_pids=()

# column name of a variant: "6.12 -fentry -kprobe", "6.1 256M", "6.12 FOO=bar",
# "arm64 6.12 -fentry -tracepoint" (label arm64-6.12)
column_of() { # label items
  local col="${1/#arm64-/arm64 }" item
  for item in ${2//[+,]/ }; do
    case "$item" in
      KTM_DISABLE_*=1) item="${item%=1}"; item="${item#KTM_DISABLE_}"; col+=" -${item,,}" ;;
      mem=*) col+=" ${item#mem=}M" ;;
      *) col+=" $item" ;;
    esac
  done
  echo "$col"
}

# Runs of one label: the plain one, then each variant for it. Prints "COLUMN<TAB>ITEMS".
runs_of() {
  local label="$1" v
  printf '%s\t\n' "$(column_of "$label" "")"
  for v in "${variants[@]}"; do
    [ "${v%%:*}" = "$label" ] || continue
    printf '%s\t%s\n' "$(column_of "$label" "${v#*:}")" "${v#*:}"
  done
}

common_env=("${envs[@]}")
[ -n "$filter" ] && common_env+=("KTM_FILTER=$filter")
guest_env=()
[ "$inject_panic" = 1 ] && guest_env+=(KTM_INJECT_PANIC=1)

# One guest run (the array `guest` as set by the caller, in this subshell's copy), booted
# once more after the emulator's text-poke fault; its meta gets the binaries and release.
guest_run() { # log column arch release
  local log="$1" column="$2"
  local reason
  "${guest[@]}"
  if [ "$retry" = 1 ] && reason="$(python3 "$here/summarize.py" --retry-reason "$log")"; then
    # Keep the first boot's log beside the retry's, for the record.
    mv "$log" "${log%.log}.fault.txt"
    mv "$log.meta" "${log%.log}.fault.txt.meta"
    echo "run-matrix: $column: $reason; booting it once more (first boot's log: ${log%.log}.fault.txt)" >&2
    tail -n 30 "${log%.log}.fault.txt" | sed "s/^/[$column first boot] /" >&2
    "${guest[@]}"
    echo "retried=$reason" >> "$log.meta"
  fi
  printf 'binaries=%s\nrelease=%s\n' "$(binaries_csv_for "$3")" "$4" >> "$log.meta"
}

# The kernels to fetch: the matrix's, then those only a podman column uses.
fetch_labels=("${labels[@]}")
for l in "${podman_labels[@]}"; do
  [[ " ${fetch_labels[*]} " == *" $l "* ]] || fetch_labels+=("$l")
done
if [ ${#fetch_labels[@]} -gt 0 ]; then
  listing="$("$here/fetch-kernels.sh" "${refresh[@]}" "${fetch_labels[@]}")" || die "fetching the kernels failed"
  mapfile -t fetched <<<"$listing"
  [ ${#fetched[@]} = ${#fetch_labels[@]} ] || die "fetch-kernels.sh listed ${#fetched[@]} kernels for ${#fetch_labels[@]} labels"
  # KVM only for amd64 guests, and only when one is seen to run (probe-accel.sh); the arm64
  # guests are emulated (TCG) on this x86-64 machine.
  amd64_accel="$accel"
  if [ "$accel" = auto ]; then
    amd64_accel=tcg
    for line in "${fetched[@]}"; do
      IFS=$'\t' read -r _ _ vmlinuz _ arch _ <<<"$line"
      if [ "$arch" = amd64 ]; then amd64_accel="$("$here/probe-accel.sh" "$vmlinuz")"; break; fi
    done
  fi
  # The podman columns (run-podman.sh), in the background: a podman guest takes minutes
  # (podman under TCG, the manifest's 10 s interval), about as long as all the other guests
  # one after another, on the host's other core. Logs 91-..., judged after the others.
  podman_logs=() podman_pids=()
  podman_names="$(for t in "${podman_tests[@]}"; do printf '%s,' "${t%%=*}"; done)"
  for line in "${fetched[@]}"; do
    IFS=$'\t' read -r label release vmlinuz moddir arch _ <<<"$line"
    [[ " ${podman_labels[*]} " == *" $label "* ]] || continue
    column="$(column_of "$label" "") podman"
    log="$out/$((91 + ${#podman_logs[@]}))-${column//[^A-Za-z0-9.]/_}.log"
    podman_logs+=("$log")
    if [ -n "${build_failed[amd64]:-}" ] || [ -z "${ktm_of[amd64]:-}" ]; then
      ktm_fatal "no static ktm binary (its build failed, or none was given): not run" > "$log"
      printf 'column=%s\nkind=guest\nlabel=%s\nwall_s=0\ntimed_out=0\narch=amd64\nbinaries=%s\nrelease=%s\n' \
        "$column" "$label" "${podman_names%,}" "$release" > "$log.meta"
      echo "run-matrix: $column: not run: no static ktm binary" >&2
      continue
    fi
    env_args=()
    for kv in "${common_env[@]}"; do env_args+=(--env "$kv"); done
    (
      "$here/run-podman.sh" --label "$label" --column "$column" --kernel "$vmlinuz" --moddir "$moddir" \
        --log "$log" --ktm-bin "${ktm_of[amd64]}" --mem "$mem" --smp "$smp" --accel "$amd64_accel" \
        --tcg-thread "$tcg_thread" --timeout "$podman_timeout_s" \
        --append "$guest_append${kernel_append:+ $kernel_append}" "${env_args[@]}" "${verbose[@]}" \
        -- "${podman_tests[@]}" || echo "run-matrix: $column: run-podman.sh failed" >&2
      [ -f "$log" ] || ktm_fatal "run-podman.sh failed before the guest started" > "$log"
      [ -f "$log.meta" ] || printf 'column=%s\nkind=guest\nlabel=%s\nwall_s=0\ntimed_out=0\narch=amd64\nbinaries=%s\n' \
        "$column" "$label" "${podman_names%,}" > "$log.meta"
      printf 'release=%s\n' "$release" >> "$log.meta"
    ) &
    podman_pids+=($!)
  done
  echo "run-matrix: accelerator $amd64_accel$([ "$amd64_accel" = tcg ] && echo ",thread=$tcg_thread") (amd64), tcg,thread=$tcg_thread (arm64); ${mem} MiB, ${smp} CPUs, timeout ${timeout_s}s per guest" >&2
  for line in "${fetched[@]}"; do
    IFS=$'\t' read -r label release vmlinuz moddir arch busybox <<<"$line"
    run_accel="$amd64_accel"
    [ "$arch" = amd64 ] || run_accel=tcg
    initrd="$out/initrd-$label.cpio.gz"
    finish_build "$arch"
    specs_for "$arch"
    ktm_arg_for "$arch"
    if [[ " ${labels[*]} " != *" $label "* ]]; then
      : # a podman column only
    elif [ -z "${build_failed[$arch]:-}" ]; then
      python3 "$here/build-initramfs.py" --moddir "$moddir" --init "$here/init" --out "$initrd" \
        --busybox "$busybox" "${KTM_ARG[@]}" "${SPECS[@]}"
    fi
    while IFS=$'\t' read -r column items; do
      run_no=$((run_no + 1))
      log="$out/$(printf %02d "$run_no")-${column//[^A-Za-z0-9.]/_}.log"
      logs+=("$log")
      if [ -n "${build_failed[$arch]:-}" ]; then
        unbuilt_run "$log" "$column" "$label" guest "$arch" "$release"
        continue
      fi
      run_mem="$mem"
      run_env=("${common_env[@]}" "${guest_env[@]}")
      for item in ${items//[+,]/ }; do
        case "$item" in
          mem=*) run_mem="${item#mem=}" ;;
          *) run_env+=("$item") ;;
        esac
      done
      run_disk="${disk_mib:-$((run_mem * 2 > 2048 ? run_mem * 2 : 2048))}"
      env_args=()
      for kv in "${run_env[@]}"; do env_args+=(--env "$kv"); done
      guest=(python3 "$here/run-guest.py" --arch "$arch" --column "$column" --label "$label" --kernel "$vmlinuz"
        --initrd "$initrd" --log "$log" --mem "$run_mem" --smp "$smp" --accel "$run_accel"
        --timeout "$timeout_s" --disk-mib "$run_disk" --tcg-thread "$tcg_thread"
        --append "$guest_append${kernel_append:+ $kernel_append}" "${env_args[@]}" "${verbose[@]}")
      # Each guest is one single-threaded TCG process: up to $parallel of them at once.
      while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
      guest_run "$log" "$column" "$arch" "$release" &
      guest_pids+=($!)
    done < <([[ " ${labels[*]} " != *" $label "* ]] || runs_of "$label")
  done
  for pid in "${guest_pids[@]}"; do wait "$pid" || die "a guest run could not be made (see its log above)"; done
fi

if [ "$host" = 1 ]; then
  specs_for amd64
  ktm_arg_for amd64
  while IFS=$'\t' read -r column items; do
    run_no=$((run_no + 1))
    log="$out/$(printf %02d "$run_no")-${column//[^A-Za-z0-9.]/_}.log"
    logs+=("$log")
    if [ -n "${build_failed[amd64]:-}" ]; then
      unbuilt_run "$log" "$column" host host amd64 "$(uname -r)"
      continue
    fi
    run_env=("${common_env[@]}")
    for item in ${items//[+,]/ }; do
      case "$item" in
        mem=*) ;;  # the host has the memory it has
        *=*) run_env+=("$item") ;;
      esac
    done
    env_args=()
    for kv in "${run_env[@]}"; do env_args+=(--env "$kv"); done
    "$here/run-host.sh" --log "$log" --column "$column" --timeout "$timeout_s" \
      "${KTM_ARG[@]}" "${env_args[@]}" -- "${SPECS[@]}"
  done < <(runs_of host)
fi

if [ ${#podman_pids[@]} -gt 0 ]; then
  echo "run-matrix: waiting for the podman guests (${#podman_pids[@]})" >&2
  wait "${podman_pids[@]}" || true
fi
logs+=("${podman_logs[@]}")
[ ${#logs[@]} -gt 0 ] || die "nothing ran (no kernels and --no-host)"
set +e
python3 "$here/summarize.py" --markdown "$out/matrix.md" "${logs[@]}" | tee "$out/summary.txt"
rc=${PIPESTATUS[0]}
set -e
echo "run-matrix: ${#logs[@]} runs in $((SECONDS - wall_start))s; logs in $out" >&2
exit "$rc"
