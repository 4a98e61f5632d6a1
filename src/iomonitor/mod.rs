//! The iomonitor, KTM's one module: page-cache, fadvise, reclaim and read/pread latency of
//! the BanyanDB process, counted by the BPF programs of [`crate::programs`].
//!
//! From the ground up: `kernel` ([`IoMonitor`]: creates the maps, attaches every probe by
//! its plan, programs the [`Scope`], reads the counters as a [`Snapshot`]) and `module`
//! ([`IoMonitorModule`], what the collector drives: discovery of the target, re-targeting,
//! health checks, status, the snapshot as metrics).

mod kernel;
mod module;
pub mod stats;

pub use kernel::{IoMonitor, Latency, Renames, Scope, Snapshot, Source, ADVICE_LABELS};
pub use module::IoMonitorModule;
