//! The iomonitor's BPF programs, written with the crate's assembler.
//!
//! Each program reads like the C it replaces: a scope test, a lookup of this CPU's counters,
//! and atomic adds. [`probes`] lists them with their attach plans.

mod emit;
mod exercise;
pub mod folio;
mod follow;
pub mod layout;
mod probes;

pub use probes::{probes, syscall_fn, Probe, JOIN_HOOK, RENAME_HOOK};
