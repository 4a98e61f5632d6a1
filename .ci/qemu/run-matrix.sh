#!/usr/bin/env bash
# Runs test binaries on Debian's cloud kernels under QEMU (and on this host), collects the
# KTM-MATRIX lines they print into one table per kernel, and exits non-zero if any binary
# fails anywhere or any guest hangs or panics. See README.md beside this file.
#
# usage: run-matrix.sh [options] [-- BINARY...]
#   BINARY...            static test executables (Rust libtest); a file named `ktm` is the
#                        ktm binary (/bin/ktm in the guest, $KTM_BIN). Without any, the
#                        crate's are built with build-tests.sh: the test targets named in
#                        $KTM_QEMU_TESTS (default: toolkit iomonitor collector reclaim pod).
# options (environment variable in brackets):
#   --kernels L,L        kernel labels, from 5.10,6.1,6.12,sid (sid: Debian's newest, the
#                        development suite's); "none" for host only [KTM_KERNELS]
#   --variant L:ITEMS    extra run of kernel L (or "host"), as another column; ITEMS joined by
#                        + or ',': NAME=VALUE (guest env) or mem=MiB. Repeatable; the first
#                        one replaces the default set [KTM_QEMU_VARIANTS, space separated]
#   --no-variants        no extra runs
#   --env NAME=VALUE     environment for every run, guest and host (repeatable)
#   --filter STR         libtest filter passed to every binary [KTM_FILTER]
#   --mem MiB            guest memory, default 1024 [KTM_QEMU_MEM]
#   --small-mem          guest memory 256 MiB (direct reclaim on modest files) [KTM_QEMU_SMALL_MEM]
#   --smp N              guest CPUs, default 2 [KTM_QEMU_SMP]
#   --disk-mib N         ext4 disk size, default max(2048, 2 x memory) [KTM_QEMU_DISK_MIB]
#   --timeout S          seconds per guest (and for the host run), default 600 [KTM_QEMU_TIMEOUT]
#   --accel A            auto (kvm if a guest is seen to run under it), kvm or tcg [KTM_QEMU_ACCEL]
#   --tcg-thread T       single (default) or multi: multi-threaded TCG hits the emulator's
#                        text-poke fault, see README.md [KTM_QEMU_TCG_THREAD]
#   --append ARGS        extra guest kernel command line [KTM_QEMU_APPEND]
#   --host / --no-host   also run the binaries on this host, default on [KTM_QEMU_HOST=1/0]
#   --out DIR            output directory, default target/qemu [KTM_QEMU_OUT]
#   --cache DIR          kernel cache, default /var/cache/ktm-qemu [KTM_QEMU_CACHE]
#   --refresh            resolve the kernels' metapackages again
#   --ktm-bin PATH       the ktm binary, if not among the binaries
#   --verbose            stream every guest console line to stderr
#   --inject-panic       each guest crashes itself (sysrq c) after its first test binary,
#                        to show that a panicked guest fails the run [KTM_QEMU_INJECT_PANIC=1]
#   --no-retry           do not boot a guest again after the emulator's text-poke fault
#                        [KTM_QEMU_RETRY=0]
#
# A guest whose log shows QEMU's text-poke fault (summarize.py --emulator-fault: `Oops: int3`
# in kernel text, then the panic; see README.md) is run once more; the summary and its kernel
# cell then say "passed on retry: emulator text-poke fault", and a second failure fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
wall_start=$SECONDS

kernels="${KTM_KERNELS:-5.10,6.1,6.12,sid}"
default_variants=(
  6.1:KTM_DISABLE_FENTRY=1
  6.1:KTM_DISABLE_FENTRY=1+KTM_DISABLE_TRACEPOINT=1
  6.12:KTM_DISABLE_FENTRY=1+KTM_DISABLE_TRACEPOINT=1
  6.12:KTM_DISABLE_FENTRY=1+KTM_DISABLE_KPROBE=1
  sid:KTM_DISABLE_FENTRY=1+KTM_DISABLE_TRACEPOINT=1
  sid:KTM_DISABLE_FENTRY=1+KTM_DISABLE_KPROBE=1
)
read -r -a variants <<<"${KTM_QEMU_VARIANTS-${default_variants[*]}}"
variants_given=0
envs=()
filter="${KTM_FILTER:-}"
mem="${KTM_QEMU_MEM:-1024}"
smp="${KTM_QEMU_SMP:-2}"
disk_mib="${KTM_QEMU_DISK_MIB:-}"
timeout_s="${KTM_QEMU_TIMEOUT:-600}"
accel="${KTM_QEMU_ACCEL:-auto}"
[ "${KTM_QEMU_KVM:-}" = 1 ] && accel=kvm
host="${KTM_QEMU_HOST:-1}"
out="${KTM_QEMU_OUT:-$repo/target/qemu}"
export KTM_QEMU_CACHE="${KTM_QEMU_CACHE:-/var/cache/ktm-qemu}"
refresh=()
ktm_bin=""
ktm_arg=()
verbose=()
inject_panic="${KTM_QEMU_INJECT_PANIC:-0}"
tcg_thread="${KTM_QEMU_TCG_THREAD:-single}"
kernel_append="${KTM_QEMU_APPEND:-}"
retry="${KTM_QEMU_RETRY:-1}"

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
    --disk-mib) disk_mib="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --accel) accel="$2"; shift 2 ;;
    --tcg-thread) tcg_thread="$2"; shift 2 ;;
    --append) kernel_append="$2"; shift 2 ;;
    --host) host=1; shift ;;
    --no-host) host=0; shift ;;
    --out) out="$2"; shift 2 ;;
    --cache) KTM_QEMU_CACHE="$2"; shift 2 ;;
    --refresh) refresh=(--refresh); shift ;;
    --ktm-bin) ktm_bin="$2"; shift 2 ;;
    --verbose) verbose=(--verbose); shift ;;
    --inject-panic) inject_panic=1; shift ;;
    --no-retry) retry=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (binaries go after --)" ;;
  esac
done
[ "$kernels" = none ] && kernels=""
for v in "${variants[@]}"; do
  [[ "$v" =~ ^[^:]+:.+$ ]] || die "variant $v: want LABEL:ITEMS"
  for item in $(tr '+,' '  ' <<<"${v#*:}"); do
    [[ "$item" =~ ^(mem=[0-9]+|[A-Za-z_][A-Za-z0-9_]*=.*)$ ]] || die "variant $v: item $item is neither NAME=VALUE nor mem=MiB"
  done
done
case "$accel" in auto|kvm|tcg) ;; *) die "--accel auto|kvm|tcg" ;; esac
case "$tcg_thread" in single|multi) ;; *) die "--tcg-thread single|multi" ;; esac

"$here/ensure-tools.sh"

if [ $# -eq 0 ]; then
  # The privileged test targets of the crate, unless KTM_QEMU_TESTS names others ("" = all).
  export KTM_QEMU_TESTS="${KTM_QEMU_TESTS-toolkit iomonitor collector reclaim pod}"
  echo "run-matrix: no binaries given: building the crate's (${KTM_QEMU_TESTS:-all tests}) with build-tests.sh" >&2
  listing="$("$here/build-tests.sh")" || die "build-tests.sh failed"
  mapfile -t built <<<"$listing"
  [ -n "$listing" ] || die "build-tests.sh produced no test binaries"
  set -- "${built[@]}"
fi

# NAME=PATH per test binary; NAME is the file name without cargo's -<16 hex> suffix.
specs=() names=" "
for path in "$@"; do
  if [ ! -f "$path" ] || [ ! -x "$path" ]; then die "$path: not an executable file"; fi
  name="$(basename "$path")"
  [[ "$name" =~ ^(.+)-[0-9a-f]{16}$ ]] && name="${BASH_REMATCH[1]}"
  if [ "$name" = ktm ]; then
    [ -n "$ktm_bin" ] || ktm_bin="$path"
    continue
  fi
  [[ "$names" == *" $name "* ]] && die "two binaries named $name"
  names+="$name "
  specs+=("$name=$(realpath "$path")")
done
[ ${#specs[@]} -gt 0 ] || die "no test binaries"
[ -z "$ktm_bin" ] || ktm_arg=(--ktm-bin "$(realpath "$ktm_bin")")
binaries_csv="$(for s in "${specs[@]}"; do printf '%s,' "${s%%=*}"; done)"
binaries_csv="${binaries_csv%,}"

# One console log per run, $out/NN-COLUMN.log (+ .meta); the previous run's go first.
mkdir -p "$out"
out="$(cd "$out" && pwd)"
rm -f "$out"/[0-9][0-9]-*.log "$out"/[0-9][0-9]-*.log.meta "$out"/[0-9][0-9]-*.log.disk.img \
  "$out"/[0-9][0-9]-*.fault.txt "$out"/[0-9][0-9]-*.fault.txt.meta
logs=()
run_no=0

# column name of a variant: "6.12 -fentry -kprobe", "6.1 256M", "6.12 FOO=bar"
column_of() { # label items
  local col="$1" item
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
  printf '%s\t\n' "$label"
  for v in "${variants[@]}"; do
    [ "${v%%:*}" = "$label" ] || continue
    printf '%s\t%s\n' "$(column_of "$label" "${v#*:}")" "${v#*:}"
  done
}

common_env=("${envs[@]}")
[ -n "$filter" ] && common_env+=("KTM_FILTER=$filter")
guest_env=()
[ "$inject_panic" = 1 ] && guest_env+=(KTM_INJECT_PANIC=1)

if [ -n "$kernels" ]; then
  read -r -a labels <<<"${kernels//,/ }"
  listing="$("$here/fetch-kernels.sh" "${refresh[@]}" "${labels[@]}")" || die "fetching the kernels failed"
  mapfile -t fetched <<<"$listing"
  [ ${#fetched[@]} = ${#labels[@]} ] || die "fetch-kernels.sh listed ${#fetched[@]} kernels for ${#labels[@]} labels"
  if [ "$accel" = auto ]; then
    IFS=$'\t' read -r _ _ vmlinuz _ <<<"${fetched[0]}"
    accel="$("$here/probe-accel.sh" "$vmlinuz")"
  fi
  echo "run-matrix: accelerator $accel$([ "$accel" = tcg ] && echo ",thread=$tcg_thread"), ${mem} MiB, ${smp} CPUs, timeout ${timeout_s}s per guest" >&2
  for line in "${fetched[@]}"; do
    IFS=$'\t' read -r label release vmlinuz moddir <<<"$line"
    initrd="$out/initrd-$label.cpio.gz"
    python3 "$here/build-initramfs.py" --moddir "$moddir" --init "$here/init" --out "$initrd" \
      "${ktm_arg[@]}" "${specs[@]}"
    while IFS=$'\t' read -r column items; do
      run_mem="$mem"
      run_env=("${common_env[@]}" "${guest_env[@]}")
      for item in ${items//[+,]/ }; do
        case "$item" in
          mem=*) run_mem="${item#mem=}" ;;
          *) run_env+=("$item") ;;
        esac
      done
      run_disk="${disk_mib:-$((run_mem * 2 > 2048 ? run_mem * 2 : 2048))}"
      run_no=$((run_no + 1))
      log="$out/$(printf %02d "$run_no")-${column//[^A-Za-z0-9.]/_}.log"
      env_args=()
      for kv in "${run_env[@]}"; do env_args+=(--env "$kv"); done
      guest=(python3 "$here/run-guest.py" --column "$column" --label "$label" --kernel "$vmlinuz"
        --initrd "$initrd" --log "$log" --mem "$run_mem" --smp "$smp" --accel "$accel"
        --timeout "$timeout_s" --disk-mib "$run_disk" --tcg-thread "$tcg_thread"
        --append "$kernel_append" "${env_args[@]}" "${verbose[@]}")
      "${guest[@]}"
      if [ "$retry" = 1 ] && python3 "$here/summarize.py" --emulator-fault "$log"; then
        # Keep the faulted boot's log beside the retry's, for the record.
        mv "$log" "${log%.log}.fault.txt"
        mv "$log.meta" "${log%.log}.fault.txt.meta"
        echo "run-matrix: $column: emulator text-poke fault (Oops: int3 in kernel text); booting it once more" >&2
        "${guest[@]}"
        echo "retried=emulator text-poke fault" >> "$log.meta"
      fi
      printf 'binaries=%s\nrelease=%s\n' "$binaries_csv" "$release" >> "$log.meta"
      logs+=("$log")
    done < <(runs_of "$label")
  done
fi

if [ "$host" = 1 ]; then
  while IFS=$'\t' read -r column items; do
    run_env=("${common_env[@]}")
    for item in ${items//[+,]/ }; do
      case "$item" in
        mem=*) ;;  # the host has the memory it has
        *=*) run_env+=("$item") ;;
      esac
    done
    run_no=$((run_no + 1))
    log="$out/$(printf %02d "$run_no")-${column//[^A-Za-z0-9.]/_}.log"
    env_args=()
    for kv in "${run_env[@]}"; do env_args+=(--env "$kv"); done
    "$here/run-host.sh" --log "$log" --column "$column" --timeout "$timeout_s" \
      "${ktm_arg[@]}" "${env_args[@]}" -- "${specs[@]}"
    logs+=("$log")
  done < <(runs_of host)
fi

[ ${#logs[@]} -gt 0 ] || die "nothing ran (no kernels and --no-host)"
set +e
python3 "$here/summarize.py" --markdown "$out/matrix.md" "${logs[@]}" | tee "$out/summary.txt"
rc=${PIPESTATUS[0]}
set -e
echo "run-matrix: ${#logs[@]} runs in $((SECONDS - wall_start))s; logs in $out" >&2
exit "$rc"
