#!/usr/bin/env bash
# Runs the test binaries directly on this machine, the way the guest's /init runs them
# (same markers, --test-threads=1 --nocapture, CI=true, KTM_KERNEL=host), into LOG, and
# writes LOG.meta for summarize.py.
#
# usage: run-host.sh --log LOG --column COLUMN [--timeout S] [--ktm-bin PATH]
#                    [--env NAME=VALUE]... -- NAME=PATH...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=markers.sh
. "$here/markers.sh" # the KTM-* markers, spelled as the guest's /init spells them
log="" column=host timeout_s=600 ktm_bin="" envs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --log) log="$2"; shift 2 ;;
    --column) column="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --ktm-bin) ktm_bin="$2"; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "run-host.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$log" ] || { echo "run-host.sh: --log is required" >&2; exit 2; }

filter=""
env_args=(CI=true KTM_KERNEL=host RUST_BACKTRACE=1)
[ -n "$ktm_bin" ] && env_args+=("KTM_BIN=$(realpath "$ktm_bin")")
for kv in "${envs[@]}"; do
  case "$kv" in KTM_FILTER=*) filter="${kv#KTM_FILTER=}" ;; esac
  env_args+=("$kv")
done

all=""
for spec in "$@"; do all+="${all:+,}${spec%%=*}"; done
start=$SECONDS
deadline=$((SECONDS + ${timeout_s%.*}))
timed_out=0
{
  for kv in "${envs[@]}"; do ktm_env "$kv"; done
  ktm_boot host
  ktm_mem
} > "$log"
for spec in "$@"; do
  name="${spec%%=*}" path="${spec#*=}"
  left=$((deadline - SECONDS))
  if [ "$left" -le 0 ]; then timed_out=1; break; fi
  ktm_begin "$name" | tee -a "$log" | sed "s/^/[$column] /" >&2
  args=(--test-threads=1 --nocapture)
  [ -n "$filter" ] && args+=("$filter")
  rc=0
  before=$(wc -l < "$log")
  env -u KTM_IN_QEMU "${env_args[@]}" timeout -k 10 "$left" "$path" "${args[@]}" </dev/null >>"$log" 2>&1 || rc=$?
  if [ "$rc" = 124 ] && [ $((deadline - SECONDS)) -le 0 ]; then timed_out=1; ktm_timeout "$name" >> "$log"; break; fi
  ktm_end "$name" "$rc" >> "$log"
  { tail -n +$((before + 1)) "$log" | grep -a 'test result:' || true; ktm_end "$name" "$rc"; } | sed "s/^/[$column] /" >&2
done
[ "$timed_out" = 1 ] || ktm_done >> "$log"
cat > "$log.meta" <<META
column=$column
kind=host
label=host
release=$(uname -r)
wall_s=$((SECONDS - start))
timed_out=$timed_out
binaries=$all
META
