#!/usr/bin/env bash
# Builds the crate's test executables and its `ktm` binary (when the crate has one) as
# static glibc executables for x86_64 (this machine's cargo) or aarch64 (cross-built in the
# cached Debian chroot of cross-arm64.sh, rustc 1.85, `--locked`), copies them under stable
# names into one directory and prints their paths, one per line (build output to stderr).
#
# usage: build-tests.sh [--arch amd64|arm64] [--manifest-path Cargo.toml] [--target-dir DIR]
#                       [-- CARGO_TEST_ARGS...]
#   --arch          amd64 (default) or arm64
#   --target-dir    default target/static (amd64), target/cross-arm64 (arm64)
#   CARGO_TEST_ARGS select targets, e.g. `-- --test toolkit --test reclaim`; without them
#   the tests named in $KTM_QEMU_TESTS (space separated) are built, else every test target.
# Names: integration test NAME -> NAME, library unit tests -> unit-lib, unit tests of
# binary B -> unit-bin-B, the binary -> ktm. Feed the list to run-matrix.sh:
#   mapfile -t bins < <(.ci/qemu/build-tests.sh) && .ci/qemu/run-matrix.sh -- "${bins[@]}"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
manifest="$(cd "$here/../.." && pwd)/Cargo.toml"
target_dir=""
arch=amd64
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --manifest-path) manifest="$2"; shift 2 ;;
    --target-dir) target_dir="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "build-tests.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
crate_dir="$(cd "$(dirname "$manifest")" && pwd)"
manifest="$crate_dir/$(basename "$manifest")"
case "$arch" in
  amd64)
    target_dir="${target_dir:-$crate_dir/target/static}"
    triple=x86_64-unknown-linux-gnu
    cargo=(cargo --quiet)
    ;;
  arm64)
    target_dir="${target_dir:-$crate_dir/target/cross-arm64}"
    triple=aarch64-unknown-linux-gnu
    mkdir -p "$target_dir"
    target_dir="$(cd "$target_dir" && pwd)"
    # cargo runs in the chroot, where the crate and the target directory are at the same
    # paths; --locked: the chroot's cargo must not rewrite Cargo.lock.
    binds=(--bind "$crate_dir")
    [[ "$target_dir/" == "$crate_dir/"* ]] || binds+=(--bind "$target_dir")
    cargo=("$here/cross-arm64.sh" "${binds[@]}" -- cargo --quiet --locked)
    ;;
  *) echo "build-tests.sh: --arch amd64|arm64" >&2; exit 2 ;;
esac
out="$target_dir/ktm-tests"

select=("$@")
if [ ${#select[@]} -eq 0 ] && [ -n "${KTM_QEMU_TESTS:-}" ]; then
  for t in $KTM_QEMU_TESTS; do select+=(--test "$t"); done
fi

export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
json="$(mktemp)"
trap 'rm -f "$json"' EXIT
"${cargo[@]}" test --release --no-run --manifest-path "$manifest" --target "$triple" \
  --target-dir "$target_dir" --message-format=json-render-diagnostics "${select[@]}" >"$json"

has_bin=$(cargo metadata --no-deps --format-version 1 --manifest-path "$manifest" | python3 -c '
import json, sys
pkgs = json.load(sys.stdin)["packages"]
print(any("bin" in t["kind"] and t["name"] == "ktm" for p in pkgs for t in p["targets"]))')

rm -rf "$out" && mkdir -p "$out"
python3 - "$json" "$out" <<'PY'
import json, os, shutil, sys
src, out = sys.argv[1], sys.argv[2]
for line in open(src):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    kind = t["kind"][0]
    if not m["profile"]["test"]:
        # cargo builds the binaries for the integration tests (CARGO_BIN_EXE_*): the ktm
        # binary built here has the same features as the tests' (a separate `cargo build
        # --bin ktm` would not: without dev-dependencies it resolves other features and
        # rebuilds the library on every run).
        if kind == "bin" and t["name"] == "ktm":
            shutil.copy2(m["executable"], os.path.join(out, "ktm"))
        continue
    name = {"lib": "unit-lib", "bin": "unit-bin-" + t["name"]}.get(kind, t["name"])
    if kind in ("rlib", "cdylib", "staticlib", "proc-macro"):
        name = "unit-lib"
    dst = os.path.join(out, name)
    shutil.copy2(m["executable"], dst)
    print(dst)
PY
if [ "$has_bin" = True ]; then
  if [ ! -f "$out/ktm" ]; then # no integration test selected: build the binary alone
    "${cargo[@]}" build --release --manifest-path "$manifest" --target "$triple" \
      --target-dir "$target_dir" --bin ktm >&2
    cp "$target_dir/$triple/release/ktm" "$out/ktm"
  fi
  echo "$out/ktm"
fi
if command -v file >/dev/null; then
  for f in "$out"/*; do
    file "$f" | grep -q 'statically linked\|static-pie linked' || echo "build-tests.sh: warning: $f is not static" >&2
  done
fi
