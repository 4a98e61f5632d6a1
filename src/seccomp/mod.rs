//! Seccomp filters in classic BPF, built the way [`crate::insn`] builds eBPF: typed
//! instructions (`cbpf`), an assembler that resolves labels (`asm`), bpf_dbg-style text
//! (`disasm`), an interpreter the tests run filters on (`interp`), a rule table turned into
//! a filter (`policy`) and KTM's own steady-state allow-list (`ktm`).
//!
//! The filter is what keeps a sidecar that was once allowed to load kernel programs from
//! ever loading another: after [`crate::lockdown`] installs it, `bpf()` answers only the map
//! and info commands and `perf_event_open()` answers EPERM.

mod asm;
mod cbpf;
mod disasm;
mod interp;
mod ktm;
mod policy;

pub use asm::{Asm, AsmError, Label};
pub use cbpf::{Action, Cond, Field, Insn, SockFilter, AUDIT_ARCH, X32_SYSCALL_BIT};
pub use disasm::disassemble;
pub use interp::{run, SeccompData};
pub use ktm::{steady_state, BPF_ALLOWED, STEADY_STATE_SYSCALLS};
pub use policy::{ArgCheck, Policy, Rule};
