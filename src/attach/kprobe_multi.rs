//! kprobe_multi links: a kprobe program on a kernel function's entry or return, attached by
//! `bpf(BPF_LINK_CREATE)` alone through fprobe (ftrace), 5.18+ with `CONFIG_FPROBE`.
//!
//! Unlike a classic kprobe it needs no `perf_event_open` (which `perf_event_paranoid` 3, as
//! Debian sets it, reserves to `CAP_SYS_ADMIN`), no kprobe PMU and no tracefs, so a sidecar
//! with `CAP_BPF` + `CAP_PERFMON` can use it. The program is the classic kprobe's: its context
//! is the same `struct pt_regs`.

use crate::sys::bpf;
use crate::sys::{BorrowedFd, OwnedFd};
use crate::Result;

/// Links `prog` (loaded for `BPF_TRACE_KPROBE_MULTI`) to `func`'s entry or (with `ret`) return.
pub(super) fn link(prog: BorrowedFd<'_>, func: &str, ret: bool) -> Result<OwnedFd> {
    bpf::link_create_kprobe_multi(prog, func, ret).map_err(|e| match e.errno() {
        // ftrace_lookup_symbols: not among the functions ftrace can trace.
        Some(libc::ESRCH) | Some(libc::ENOENT) => e.context(format!(
            "{} {func}: no such function in this kernel, or not traceable by ftrace (absent, renamed, inlined or notrace)",
            if ret { "kretprobe_multi" } else { "kprobe_multi" }
        )),
        _ => e,
    })
}
