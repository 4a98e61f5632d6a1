//! Mapping cgroup v2 paths to directories and deciding whether a cgroup may be programmed.
//!
//! The in-kernel filter compares the current task's cgroup id with one value, so a cgroup
//! is usable only if every process in it is the target (or one of its own children with
//! the same comm prefix); anything else would count a neighbour's I/O as BanyanDB's.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::procfs::{read_comm, vanished};
use super::{Cgroup2Mount, CgroupVerdict, DiscoveryError, Roots};
use crate::config::normalize_lexically;

/// How many offending processes a "shared" reason names before summarizing.
const NAMED_OFFENDERS: usize = 3;

/// Turns `collector.ebpf.cgroup_path` into a cgroup v2 path (as `/proc/<pid>/cgroup`
/// writes them, relative to the hierarchy root). Absolute paths must lie inside the mount;
/// relative ones are taken relative to it.
pub fn resolve_configured(configured: &Path, mount: &Cgroup2Mount) -> Result<PathBuf, DiscoveryError> {
    let outside = || DiscoveryError::OutsideMount {
        cgroup_path: configured.to_path_buf(),
        mount_point: mount.mount_point.clone(),
    };
    let normal = normalize_lexically(configured).ok_or_else(outside)?;
    let rel = if normal.is_absolute() {
        normal.strip_prefix(&mount.mount_point).map_err(|_| outside())?.to_path_buf()
    } else {
        normal
    };
    Ok(as_cgroup_path(&mount.root.join(rel)))
}

/// Normalizes a cgroup path to the `/a/b` form used in `/proc/<pid>/cgroup`.
fn as_cgroup_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    out.extend(p.components().filter(|c| matches!(c, Component::Normal(_))));
    out
}

/// The directory of cgroup `cgroup` under the mount, or why it cannot be reached. A path
/// with `..` is how the kernel shows a cgroup outside our cgroup namespace.
pub fn directory(mount: &Cgroup2Mount, cgroup: &Path) -> Result<PathBuf, String> {
    if cgroup.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "cgroup {} lies outside the sidecar's cgroup namespace, so its directory cannot be reached",
            cgroup.display()
        ));
    }
    let rel = cgroup.strip_prefix(&mount.root).map_err(|_| {
        format!(
            "cgroup {} is not visible under the cgroup v2 mount {} (which shows only {})",
            cgroup.display(),
            mount.mount_point.display(),
            mount.root.display()
        )
    })?;
    Ok(mount.dir.join(rel))
}

/// Decides whether `cgroup` may be programmed for a target whose comm starts with `prefix`.
pub fn judge(roots: &Roots, mount: &Cgroup2Mount, cgroup: &Path, prefix: &str) -> CgroupVerdict {
    let unusable = |reason: String| CgroupVerdict::Unusable { reason };
    let shown = cgroup.display();
    if as_cgroup_path(cgroup) == Path::new("/") && !cgroup.components().any(|c| c == Component::ParentDir) {
        return unusable(format!("target cgroup {shown} is the root cgroup: it would count every process"));
    }
    let dir = match directory(mount, cgroup) {
        Ok(d) => d,
        Err(why) => return unusable(why),
    };
    let meta = match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return unusable(format!("cgroup {shown}: {} is not a directory", dir.display())),
        Err(e) if vanished(&e) => return unusable(format!("cgroup {shown} does not exist ({})", dir.display())),
        Err(e) => return unusable(format!("cgroup {shown}: cannot stat {}: {e}", dir.display())),
    };
    let procs_path = dir.join("cgroup.procs");
    let procs = match std::fs::read_to_string(&procs_path) {
        Ok(t) => t,
        Err(e) if vanished(&e) => return unusable(format!("cgroup {shown} does not exist ({})", dir.display())),
        Err(e) => return unusable(format!("cannot read {}: {e}", procs_path.display())),
    };
    let mut offenders = Vec::new();
    for line in procs.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Ok(pid) = line.parse::<u32>() else {
            return unusable(format!("cannot parse {}: unexpected line {line:?}", procs_path.display()));
        };
        if pid == roots.self_pid {
            offenders.push(format!("pid {pid} (the sidecar itself)"));
        } else if pid == 0 {
            offenders.push("a process outside the sidecar's pid namespace".to_string());
        } else {
            match read_comm(roots, pid) {
                Ok(comm) if comm.starts_with(prefix.as_bytes()) => {}
                Ok(comm) => offenders.push(format!("pid {pid} ({})", String::from_utf8_lossy(&comm))),
                Err(e) if vanished(&e) => {}
                Err(e) => offenders.push(format!("pid {pid} (comm unreadable: {e})")),
            }
        }
    }
    if !offenders.is_empty() {
        let mut named = offenders.iter().take(NAMED_OFFENDERS).cloned().collect::<Vec<_>>().join(", ");
        if offenders.len() > NAMED_OFFENDERS {
            named += &format!(" and {} more", offenders.len() - NAMED_OFFENDERS);
        }
        return unusable(format!("cgroup {shown} is shared with {named}: it would count them too"));
    }
    CgroupVerdict::Usable { path: dir, id: meta.ino() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(mount_point: &str, root: &str) -> Cgroup2Mount {
        Cgroup2Mount { mount_point: mount_point.into(), root: root.into(), dir: format!("/fake{mount_point}").into() }
    }

    #[test]
    fn configured_paths() {
        let m = mount("/sys/fs/cgroup/unified", "/");
        let r = |p: &str| resolve_configured(Path::new(p), &m);
        assert_eq!(r("/sys/fs/cgroup/unified/kubepods/pod1").unwrap(), PathBuf::from("/kubepods/pod1"));
        assert_eq!(r("kubepods/./pod1/").unwrap(), PathBuf::from("/kubepods/pod1"));
        assert_eq!(r("/sys/fs/cgroup/unified").unwrap(), PathBuf::from("/"));
        assert_eq!(r("/sys/fs/cgroup/unified/a/../b").unwrap(), PathBuf::from("/b"));
        for outside in ["/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/unified/../memory/x", "/etc", "../x", "a/../../x"] {
            let e = r(outside).unwrap_err();
            assert!(matches!(e, DiscoveryError::OutsideMount { .. }), "{outside}: {e}");
            assert!(e.to_string().contains("/sys/fs/cgroup/unified"), "{e}");
        }
        // A subtree mount: relative paths are relative to what is mounted.
        let sub = mount("/sys/fs/cgroup", "/kubepods/pod1");
        assert_eq!(resolve_configured(Path::new("c1"), &sub).unwrap(), PathBuf::from("/kubepods/pod1/c1"));
    }

    #[test]
    fn directories() {
        let m = mount("/sys/fs/cgroup", "/kubepods");
        assert_eq!(directory(&m, Path::new("/kubepods/pod1")).unwrap(), PathBuf::from("/fake/sys/fs/cgroup/pod1"));
        assert!(directory(&m, Path::new("/system.slice")).unwrap_err().contains("not visible"));
        assert!(directory(&m, Path::new("/../../other")).unwrap_err().contains("cgroup namespace"));
    }
}
