//! Mapping cgroup v2 paths to directories and deciding whether a cgroup may be programmed.
//!
//! The in-kernel filter compares the current task's cgroup id with one value, so a cgroup
//! is usable only if every process in it is the target (or one of its own children with
//! the same comm prefix); anything else would count a neighbour's I/O as BanyanDB's.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::error::DiscoveryError;
use super::mountinfo::Cgroup2Mount;
use super::pidns::PidNs;
use super::procfs::{read_comm, vanished};
use super::roots::Roots;
use crate::config::normalize_lexically;

/// Whether the target's cgroup may be programmed into the in-kernel filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupVerdict {
    /// The cgroup holds only the target: filter on `id`, the inode of directory `path`
    /// (what `bpf_get_current_cgroup_id()` returns for its tasks).
    Usable { path: PathBuf, id: u64 },
    /// The cgroup holds only the target, but its directory cannot be reached from here
    /// (it lies outside the sidecar's cgroup namespace, the default for a container on
    /// cgroup v2, or no cgroup v2 is mounted): its id is learned in the kernel from the
    /// target's first event. `cgroup` is the path `/proc/<pid>/cgroup` shows; `why` says
    /// what keeps its directory out of reach, for the status.
    Learn { cgroup: PathBuf, why: String },
    /// Comm mode must be used; `reason` is for the status.
    Unusable { reason: String },
}

impl CgroupVerdict {
    pub fn is_usable(&self) -> bool {
        matches!(self, CgroupVerdict::Usable { .. } | CgroupVerdict::Learn { .. })
    }
}

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
    if let Some(reason) = shared(cgroup, &offenders) {
        return unusable(reason);
    }
    CgroupVerdict::Usable { path: dir, id: meta.ino() }
}

/// Why a cgroup that cannot be reached cannot be learned either.
pub const NOT_LEARNABLE: &str =
    "the target's cgroup id cannot be learned in the kernel either (this /proc belongs to another pid namespace)";

/// Judges a cgroup whose directory cannot be reached (`why`), from `/proc` alone: usable when no
/// process but the target and others with its comm prefix shows the same cgroup path. In a
/// pod every container's processes share the pod's pid namespace, so `/proc` lists every
/// process that could be in the target's container. `None` when its id could not be
/// learned: the programs name the target by its pid in the sidecar's pid namespace, which
/// needs `/proc` to be that namespace's.
pub fn judge_by_proc(roots: &Roots, cgroup: &Path, prefix: &str, target: u32, why: &str) -> Option<CgroupVerdict> {
    if !super::pidns::proc_is_own(&roots.proc) || PidNs::of_self(&roots.proc).is_none() {
        return None;
    }
    let shown = cgroup.display();
    if cgroup == Path::new("/") {
        // The root of the reader's cgroup namespace: the host's root cgroup, or the sidecar's
        // own; either holds more than the target.
        return Some(CgroupVerdict::Unusable {
            reason: format!("target cgroup {shown} is the root of the sidecar's cgroup namespace: it would count every process in it"),
        });
    }
    let pids = match super::procfs::pids(roots) {
        Ok(p) => p,
        Err(e) => return Some(CgroupVerdict::Unusable { reason: format!("cgroup {shown}: {e}") }),
    };
    let mut offenders = Vec::new();
    for pid in pids.into_iter().filter(|&p| p != target) {
        match super::procfs::read_cgroup_v2(roots, pid) {
            Ok(Some(theirs)) if theirs == cgroup => {}
            _ => continue,
        }
        if pid == roots.self_pid {
            offenders.push(format!("pid {pid} (the sidecar itself)"));
            continue;
        }
        match read_comm(roots, pid) {
            Ok(comm) if comm.starts_with(prefix.as_bytes()) => {}
            Ok(comm) => offenders.push(format!("pid {pid} ({})", String::from_utf8_lossy(&comm))),
            Err(e) if vanished(&e) => {}
            Err(e) => offenders.push(format!("pid {pid} (comm unreadable: {e})")),
        }
    }
    Some(match shared(cgroup, &offenders) {
        Some(reason) => CgroupVerdict::Unusable { reason },
        None => CgroupVerdict::Learn { cgroup: cgroup.to_path_buf(), why: why.to_string() },
    })
}

/// The "shared with" reason for a list of offenders, if there are any.
fn shared(cgroup: &Path, offenders: &[String]) -> Option<String> {
    if offenders.is_empty() {
        return None;
    }
    let mut named = offenders.iter().take(NAMED_OFFENDERS).cloned().collect::<Vec<_>>().join(", ");
    if offenders.len() > NAMED_OFFENDERS {
        named += &format!(" and {} more", offenders.len() - NAMED_OFFENDERS);
    }
    Some(format!("cgroup {} is shared with {named}: it would count them too", cgroup.display()))
}

/// How many levels up from cgroup `own` the nearest common ancestor with `theirs` lies
/// (0: the same cgroup or below it; 1: a sibling, as two containers of one pod are). A
/// path with leading `..` is relative to the reader's cgroup namespace root, which is
/// where `own` then is.
pub fn distance(own: &Path, theirs: &Path) -> usize {
    let normal = |p: &Path| p.components().filter(|c| matches!(c, Component::Normal(_))).count();
    let ups = theirs.components().filter(|c| *c == Component::ParentDir).count();
    if ups > 0 {
        return ups + normal(own);
    }
    let common = own
        .components()
        .zip(theirs.components())
        .take_while(|(a, b)| a == b)
        .filter(|(a, _)| matches!(a, Component::Normal(_)))
        .count();
    normal(own) - common
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
    fn distances_between_cgroups() {
        let d = |a: &str, b: &str| distance(Path::new(a), Path::new(b));
        // Inside a cgroup namespace: the sidecar is at its root.
        assert_eq!(d("/", "/../banyand-ctr"), 1);
        assert_eq!(d("/", "/../../podY/banyand-ctr"), 2);
        // The host's cgroup namespace.
        assert_eq!(d("/podX/sidecar", "/podX/banyand"), 1);
        assert_eq!(d("/podX/sidecar", "/podY/banyand"), 2);
        assert_eq!(d("/podX/sidecar", "/podX/sidecar/child"), 0);
        assert_eq!(d("/a", "/"), 1);
    }

    #[test]
    fn directories() {
        let m = mount("/sys/fs/cgroup", "/kubepods");
        assert_eq!(directory(&m, Path::new("/kubepods/pod1")).unwrap(), PathBuf::from("/fake/sys/fs/cgroup/pod1"));
        assert!(directory(&m, Path::new("/system.slice")).unwrap_err().contains("not visible"));
        assert!(directory(&m, Path::new("/../../other")).unwrap_err().contains("cgroup namespace"));
    }
}
