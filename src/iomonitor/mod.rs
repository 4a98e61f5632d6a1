//! The iomonitor, KTM's one module: page-cache, fadvise, reclaim and read/pread latency of
//! the BanyanDB process, counted by the BPF programs of [`crate::programs`].
//!
//! From the ground up: `monitor` ([`IoMonitor`]: creates the maps, attaches every probe by
//! its plan, programs the [`Scope`], reads the counters as a [`Snapshot`]), `export` (the
//! snapshot as the catalogue's metrics, [`Snapshot::metrics`]), `stats` (the programs' own
//! runs and run time) and `targeting` ([`IoMonitorModule`], what the collector drives:
//! discovery of the target, re-targeting, health checks, status).

mod export;
mod monitor;
mod scope;
mod selftest;
pub mod stats;
mod targeting;

pub use monitor::{IoMonitor, Latency, Renames, Scope, Snapshot, Source, ADVICE_LABELS};
pub use targeting::IoMonitorModule;
