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
package ktm
