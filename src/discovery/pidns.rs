//! The pid namespace the sidecar lives in, as BPF programs name it.
//!
//! In a pod with `shareProcessNamespace: true` the pod's containers share one pid namespace
//! that is not the host's, and a BanyanDB of another pod on the node has the same comm. The
//! programs tell them apart with `bpf_get_ns_current_pid_tgid(dev, ino)`, which succeeds only
//! for a task whose own pid namespace is the one named, and then gives its pid as
//! `/proc` in that namespace shows it.

use std::path::Path;

pub use crate::host::pidns::PidNs;

/// Whether `proc` numbers processes in the reader's own pid namespace: a `/proc` mounted
/// for another namespace (not remounted after entering a new one) shows other pids than
/// the helper reports, so it cannot name the target to the kernel.
pub fn proc_is_own(proc: &Path) -> bool {
    std::fs::read_link(proc.join("self"))
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<u32>().ok()))
        .is_some_and(|pid| pid == std::process::id())
}
