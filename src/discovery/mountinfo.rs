//! Finding the cgroup v2 mount in `/proc/self/mountinfo` (read by [`crate::host::mounts`]).
//!
//! The mount is not always `/sys/fs/cgroup`: hybrid hosts (like the CI host) keep v1
//! controllers there and cgroup2 at `/sys/fs/cgroup/unified`, and containers may mount a
//! subtree. mountinfo rather than `/proc/mounts` because only mountinfo has the root of the
//! mount within the hierarchy, which is needed to map a `/proc/<pid>/cgroup` path to a
//! directory.

use std::path::PathBuf;

pub use crate::host::mounts::{parse_mountinfo, MountEntry};

use super::error::DiscoveryError;
use super::roots::Roots;

/// Where the cgroup v2 hierarchy is reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// The mount point as mountinfo names it (not prefixed with [`Roots::sysroot`]).
    pub mount_point: PathBuf,
    /// The cgroup that appears at the mount point: `/` unless a subtree was mounted.
    pub root: PathBuf,
    /// `mount_point` under [`Roots::sysroot`], where its directories can be read.
    pub dir: PathBuf,
}

/// Picks the cgroup2 mount from parsed mountinfo: the first whose root is `/` (the whole
/// hierarchy is visible through it), else the first at all.
pub fn select_cgroup2(entries: &[MountEntry]) -> Option<&MountEntry> {
    let mut v2 = entries.iter().filter(|e| e.fstype == "cgroup2");
    let first = v2.clone().next();
    v2.find(|e| e.root.as_os_str() == "/").or(first)
}

/// Finds the cgroup v2 mount of the process running discovery.
pub fn find_cgroup2(roots: &Roots) -> Result<Cgroup2Mount, DiscoveryError> {
    let path = roots.proc.join("self/mountinfo");
    let entries = crate::host::mounts::read(&path).map_err(|e| DiscoveryError::io(&path, e))?;
    let e = select_cgroup2(&entries).ok_or(DiscoveryError::Cgroup2NotMounted { mountinfo: path })?;
    Ok(Cgroup2Mount {
        mount_point: e.mount_point.clone(),
        root: e.root.clone(),
        dir: roots.under_sysroot(&e.mount_point),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_has_cgroup2_under_unified() {
        let entries = parse_mountinfo(HYBRID.as_bytes());
        assert_eq!(entries.len(), 5);
        let m = select_cgroup2(&entries).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, PathBuf::from("/"));
    }

    #[test]
    fn pure_v2_with_optional_fields() {
        let text = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 master:2 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let entries = parse_mountinfo(text.as_bytes());
        let m = select_cgroup2(&entries).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(m.fstype, "cgroup2");
    }

    #[test]
    fn none_found() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        assert!(select_cgroup2(&parse_mountinfo(text.as_bytes())).is_none());
        assert!(select_cgroup2(&parse_mountinfo(b"")).is_none());
    }

    #[test]
    fn prefers_a_mount_of_the_whole_hierarchy() {
        let text = "\
60 1 0:40 /kubepods/pod1 /var/lib/x rw - cgroup2 cgroup2 rw
61 1 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        let entries = parse_mountinfo(text.as_bytes());
        assert_eq!(select_cgroup2(&entries).unwrap().mount_point, PathBuf::from("/sys/fs/cgroup"));
        let only_subtree = &entries[..1];
        assert_eq!(select_cgroup2(only_subtree).unwrap().root, PathBuf::from("/kubepods/pod1"));
    }
}
