#!/usr/bin/env bash
# Runs the overhead bench's `guest-mechanisms` group (fentry/fexit vs kprobe/kretprobe vs
# classic syscall tracepoints, empty programs and the real iomonitor) in the QEMU guests,
# where fentry and kprobes both work, and prints the bench's tables per kernel on stdout.
# Under TCG only the ratios mean anything. See README.md beside this file.
#
# usage: bench-guest.sh [options] [-- BENCH_ARGS...]
#   BENCH_ARGS           more bench arguments, e.g. `-- --calls 10000 --rounds 5` (the bench's
#                        defaults in a guest: 9 rounds of 20000 calls)
# options (environment variable in brackets):
#   --kernels L,L        kernel labels, default 5.10,6.1,6.12 [KTM_KERNELS]
#   --timeout S          seconds per guest, default 600 [KTM_QEMU_TIMEOUT]
#   --out DIR            run-matrix output directory, default target/qemu-bench [KTM_QEMU_OUT]
#   --target-dir DIR     cargo target directory of the static build, default target/static
#   --bin PATH           a static overhead bench already built (skips the build)
#   --verbose            stream the guests' consoles to stderr
# Output: per kernel, the bench's stdout (attach plan, tables 8 to 8e, noise); each guest's
# JSON in DIR/guest-mechanisms-LABEL.json, its console log in DIR/NN-LABEL.log.
# Progress and run-matrix's summary go to stderr. Exit status 1 when a guest failed or a
# kernel printed no tables, 2 for bad usage.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

kernels="${KTM_KERNELS:-5.10,6.1,6.12}"
timeout_s="${KTM_QEMU_TIMEOUT:-600}"
out="${KTM_QEMU_OUT:-$repo/target/qemu-bench}"
target_dir="$repo/target/static"
bin=""
verbose=()
die() { echo "bench-guest: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --kernels) kernels="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --target-dir) target_dir="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --verbose) verbose=(--verbose); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (bench arguments go after --)" ;;
  esac
done
[ -n "$kernels" ] && [ "$kernels" != none ] || die "--kernels: at least one kernel"

if [ -z "$bin" ]; then
  echo "bench-guest: building the overhead bench (static, release) in $target_dir" >&2
  listing="$("$here/build-tests.sh" --target-dir "$target_dir" -- --bench overhead)" || die "build-tests.sh failed"
  while IFS= read -r path; do
    [ "$(basename "$path")" = overhead ] && bin="$path"
  done <<<"$listing"
  [ -n "$bin" ] || die "build-tests.sh listed no overhead executable"
fi
[ -x "$bin" ] || die "$bin: not an executable"

# The guests run every binary as `NAME --test-threads=1 --nocapture`; the bench appends
# KTM_BENCH_ARGS to its arguments.
bench_args="--bench --only guest-mechanisms --json -${*:+ $*}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
rc=0
KTM_QEMU_OUT="$out" "$here/run-matrix.sh" --kernels "$kernels" --no-variants --no-host --no-podman \
  --timeout "$timeout_s" --env "KTM_BENCH_ARGS=$bench_args" "${verbose[@]}" -- "$bin" >&2 || rc=$?

# The bench's stdout from each console log: from its "# KTM overhead" line to the JSON.
shopt -s nullglob
logs=("$out"/[0-9][0-9]-*.log)
[ ${#logs[@]} -gt 0 ] || { echo "bench-guest: no console logs in $out" >&2; exit 1; }
python3 - "$out" "$bench_args" "${logs[@]}" <<'PY' || rc=1
import os, re, sys

out, args, logs = sys.argv[1], sys.argv[2], sys.argv[3:]
printk = re.compile(r"^\[\s*\d+\.\d+\] ")
missing = []
for log in logs:
    meta = {}
    if os.path.exists(log + ".meta"):
        for line in open(log + ".meta"):
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    label = meta.get("label", os.path.basename(log))
    lines = [l.rstrip("\r\n").replace("\r", "") for l in open(log, errors="replace")]
    release = next((l.split()[1] for l in lines if l.startswith("KTM-BOOT ")), "?")
    begin = next((i for i, l in enumerate(lines) if l.startswith("# KTM overhead")), None)
    print(f"===== kernel {label} ({release}), guest wall time {meta.get('wall_s', '?')} s"
          f"{', TIMED OUT' if meta.get('timed_out') == '1' else ''}")
    print(f"      KTM_BENCH_ARGS=\"{args}\"")
    if begin is None:
        missing.append(label)
        print("(no tables: the bench printed no '# KTM overhead'; last 40 console lines follow)")
        print("\n".join(lines[-40:]))
        print()
        continue
    table, js, inside, dropped = [], [], False, 0
    for l in lines[begin:]:
        if l.startswith("KTM-END ") or l.startswith("KTM-DONE"):
            break
        if l == "KTM-BENCH-JSON-BEGIN":
            inside = True
        elif l == "KTM-BENCH-JSON-END":
            inside = False
        elif inside:
            js.append(l)
        elif printk.match(l):
            dropped += 1  # a kernel message on the console, not the bench's
        else:
            table.append(l)
    while table and not table[-1].strip():
        table.pop()
    print("\n".join(table))
    if dropped:
        print(f"({dropped} kernel console lines left out)")
    if js:
        path = os.path.join(out, f"guest-mechanisms-{label}.json")
        with open(path, "w") as f:
            f.write("\n".join(js) + "\n")
        print(f"(JSON: {path})")
    print()
if missing:
    print("bench-guest: no tables from " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
PY
[ "$rc" = 0 ] || echo "bench-guest: failed (exit $rc); see $out/summary.txt and the logs" >&2
exit "$rc"
