#!/usr/bin/env bash
# The Go package's tests: builds the Rust static library (cargo build --release), then runs
# `go vet` and `go test -race` on go/ktm (privileged: root, or CAP_BPF + CAP_PERFMON; with
# CI=true a privileged test that cannot run fails), then builds and runs the README's
# example program, which must print the pread count of its own 100 preads.
# Installs Go (Debian's golang-go), gcc for cgo and util-linux's setpriv when missing.
# Prints `go: N passed, N failed` last and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v go >/dev/null || missing+=(golang-go)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v setpriv >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
go version
cargo build --release

log=$(mktemp)
tmp=$(mktemp -d)
trap 'rm -rf "$log" "$tmp"' EXIT
status=0
(cd go/ktm && go vet ./... && go test -race -count=1 -v ./...) 2>&1 | tee "$log" || status=$?

# The README's program: KTM from Go, a known workload (its own 100 preads), the count.
if (cd go/ktm && go build -o "$tmp/preadcount" ./examples/preadcount) && out=$("$tmp/preadcount") && [ "$out" = 100 ]; then
  echo "--- PASS: examples/preadcount printed 100" | tee -a "$log"
else
  echo "--- FAIL: examples/preadcount printed '${out:-}', want 100" | tee -a "$log"
  status=1
fi

passed=$(grep -cE '^ *--- PASS' "$log" || true)
failed=$(grep -cE '^ *--- FAIL' "$log" || true)
# A build or vet failure runs no test; count it so the total cannot look clean.
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "go: $passed passed, $failed failed"
exit "$status"
