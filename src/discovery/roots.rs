//! Where discovery looks: the real system, or a fake tree in tests.

use std::path::{Path, PathBuf};

/// Where discovery looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// The procfs mount; `self/mountinfo` under it describes the mounts.
    pub proc: PathBuf,
    /// Prefix for mount points named in mountinfo: `/` on a real system, a fake tree's
    /// directory in tests.
    pub sysroot: PathBuf,
    /// The pid of the process running discovery as `proc` shows it: never a target, and a
    /// cgroup it shares is not the target's alone.
    pub self_pid: u32,
}

impl Roots {
    /// The running system: `/proc`, `/`, and our own pid.
    pub fn system() -> Self {
        Roots { proc: PathBuf::from("/proc"), sysroot: PathBuf::from("/"), self_pid: std::process::id() }
    }

    /// `path` (absolute, as mountinfo names it) inside [`Roots::sysroot`].
    pub fn under_sysroot(&self, path: &Path) -> PathBuf {
        self.sysroot.join(path.strip_prefix("/").unwrap_or(path))
    }
}
