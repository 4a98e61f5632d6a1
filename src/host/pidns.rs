//! The pid namespace a process lives in, as BPF programs name it.
//!
//! `bpf_get_ns_current_pid_tgid(dev, ino)` succeeds only for a task whose own pid namespace is
//! the one named, and then gives its pid as `/proc` in that namespace shows it: a program
//! comparing pids with a process that lives outside the host's namespace needs this pair.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The inode of the initial pid namespace (`PROC_PID_INIT_INO` in the kernel).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// A pid namespace: the device of nsfs in the kernel's internal encoding (what the helper
/// compares; `stat` reports it in the user-space encoding) and the namespace's inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidNs {
    pub dev: u64,
    pub ino: u64,
}

impl PidNs {
    /// The namespace of the process that reads `proc`/self/ns/pid, or `None` when that
    /// cannot be read (no procfs, a fake tree in tests).
    pub fn of_self(proc: &Path) -> Option<PidNs> {
        let meta = std::fs::metadata(proc.join("self/ns/pid")).ok()?;
        let dev = meta.dev();
        // MKDEV(major, minor) = major << 20 | minor, the kernel's dev_t.
        Some(PidNs { dev: (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev)), ino: meta.ino() })
    }

    /// Whether this is the host's pid namespace, where every process of the node is visible
    /// and nothing narrows comm matching.
    pub fn is_initial(&self) -> bool {
        self.ino == INIT_PID_NS_INO
    }
}
