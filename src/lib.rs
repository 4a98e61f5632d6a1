//! Kernel Telemetry Module (KTM) for BanyanDB's FODC sidecar.
//!
//! The eBPF programs are assembled in Rust at run time ([`insn`]), loaded with raw `bpf()`
//! syscalls ([`sys`], [`load`]) and attached through whichever mechanism the running kernel
//! accepts ([`attach`]), so building the crate needs no clang, no bpf-linker and no BTF
//! toolchain.

pub mod attach;
pub mod btf;
pub mod capi;
pub mod catalogue;
pub mod collector;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod driver;
pub mod elf;
pub mod error;
pub mod http;
pub mod insn;
pub mod inspect;
pub mod iomonitor;
pub mod json;
pub mod load;
pub mod lockdown;
pub mod logger;
pub mod maps;
pub mod metrics;
pub mod module;
pub mod privileges;
pub mod programs;
pub mod prometheus;
pub mod recorder;
pub mod report;
pub mod seccomp;
pub mod sys;
pub mod textfile;
pub mod workload;

pub use error::{Error, Result};
