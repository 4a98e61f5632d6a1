//! The iomonitor's BPF programs, written with the crate's assembler.
//!
//! Each program reads like the C it replaces: a scope test, a lookup of this CPU's counters,
//! and atomic adds. [`probes`] lists them with their attach plans.
//!
//! From the ground up: `layout` (maps, lanes, the config record shared with user space),
//! `current` (a cgroup's id layout from BTF; the current task's cgroup id through BTF-typed
//! loads), `emit` (the snippets every program shares, its stack frame named), `arch`
//! (per-architecture tables), `folio` (a folio's layout from BTF), `exercise` (the paths the self-tests drive),
//! `plan` (what the families' plans share), one file per probe family: `latency` (read,
//! pread), `fadvise`, `page_cache`, `reclaim`, `follow` (the rename and join hooks), and
//! `probes` (the list: each plan with the catalogue metrics it feeds).

mod arch;
mod current;
mod emit;
mod exercise;
mod fadvise;
pub mod folio;
mod follow;
mod latency;
pub mod layout;
mod page_cache;
mod plan;
mod probes;
mod reclaim;

pub use arch::syscall_fn;

/// How this kernel's fentry and fexit programs read the current task's cgroup id for the
/// scope test: `"BTF-typed loads"` (`current`'s path, 5.11+ with BTF) or
/// `"bpf_get_current_cgroup_id()"`.
pub fn fentry_cgroup_read() -> &'static str {
    match TaskCgroup::from_kernel() {
        Ok(_) => "BTF-typed loads",
        Err(_) => "bpf_get_current_cgroup_id()",
    }
}
pub use current::TaskCgroup;
pub use follow::{JOIN_HOOK, RENAME_HOOK};
pub use probes::{probes, Probe};
