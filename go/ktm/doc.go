// Package ktm is KTM, the Kernel Telemetry Module of BanyanDB's FODC sidecar, for the Go
// agent: the shapes of the agent's own KTM (NewKTM from a config and a logger, Start,
// Stop, GetMetrics, IsDegraded, modules with Name/Start/Stop/Collect, RawMetric and
// Label), backed by the Rust crate through its C ABI (include/ktm.h).
//
// Build: `cargo build --release` in the repository root makes target/release/libktm.a,
// which cgo links statically; nothing else is generated, and no clang or bpf2go is
// involved. The eBPF programs are assembled by the Rust library at Start.
//
// GetMetrics reads the counters when it is called: the agent's own ticker, which pushes
// GetMetrics() to the Flight Recorder every interval, is the collection interval
// (Interval() returns the configured one). Every method is safe for concurrent use.
//
// Privileges: Start needs CAP_BPF and CAP_PERFMON; GetMetrics needs none afterwards, except
// CAP_BPF on kernels before 6.5 with kernel.unprivileged_bpf_disabled set (every bpf()
// command needs it there). Unlike `ktm run`, which drops its capabilities and installs its
// own seccomp filter once attached, this package does neither: it runs inside the agent,
// and a filter (installed on every thread, as a Go program needs: the runtime's threads,
// its preemption signals) would have to allow every call the Go runtime and the agent make,
// which KTM cannot know; refused, they would fail as EPERM inside the agent. The agent
// should, once Start returned nil: drop the capabilities from all its threads (with cgo,
// syscall.AllThreadsSyscall refuses; libcap's cap package with psx works), set
// no_new_privs, and, if it installs a filter of its own, allow bpf() with commands 1-4 and
// 15 (map lookup, update, delete, next key, object info) for KTM.
package ktm
