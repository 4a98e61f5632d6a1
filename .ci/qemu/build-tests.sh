#!/usr/bin/env bash
# Builds the privileged test binaries and the ktm binary statically (no shared libraries in
# the guests) and copies them, under plain names, into one directory, which it prints.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-gnu
out=target/static/ktm-tests
tests=(${KTM_QEMU_TESTS:-toolkit iomonitor collector reclaim})
export RUSTFLAGS="-C target-feature=+crt-static"
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
json=$(cargo test --release --no-run --target "$target" --target-dir target/static "${args[@]}" --message-format=json 2>/dev/null)
cargo build --release --target "$target" --target-dir target/static --bin ktm >&2
rm -rf "$out" && mkdir -p "$out"
echo "$json" | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m.get("target", {}).get("kind", []):
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$out"
cp "target/static/$target/release/ktm" "$out/ktm"
strip --strip-debug "$out"/*
echo "$out"
