//! Kernel Telemetry Module (KTM) for BanyanDB's FODC sidecar.
//!
//! The eBPF programs are assembled in Rust at run time ([`insn`]), loaded with raw `bpf()`
//! syscalls ([`sys`], [`load`]) and attached through whichever mechanism the running kernel
//! accepts ([`attach`]), so building the crate needs no clang, no bpf-linker and no BTF
//! toolchain.

// The BPF toolkit: building, loading and attaching eBPF programs with raw syscalls. None of
// these modules imports a module of the application below (tests/layering.rs fails if one
// does), so the toolkit could leave the crate as it is.
pub mod attach;
pub mod btf;
pub mod error;
pub mod host;
pub mod insn;
pub mod load;
pub mod maps;
pub mod privileges;
pub mod sys;

// The application: KTM's programs, its iomonitor module, configuration, discovery of the
// target process, the collector and what carries its metrics out (text, HTTP, C ABI).
pub mod capi;
pub mod catalogue;
pub mod collector;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod driver;
// `elf::writer`, the generic eBPF ELF writer, is the toolkit's; `elf::iomonitor` hands it KTM's programs.
pub mod elf;
pub mod http;
pub mod inspect;
pub mod iomonitor;
pub mod json;
pub mod lockdown;
pub mod logger;
pub mod metrics;
pub mod module;
pub mod programs;
pub mod prometheus;
pub mod recorder;
pub mod report;
pub mod seccomp;
pub mod textfile;
pub mod workload;

pub use error::{Error, Result, Unsupported};
