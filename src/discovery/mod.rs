//! Target discovery: which process is BanyanDB, and may its cgroup be programmed?
//!
//! The design scopes KTM to one co-located BanyanDB process. Discovery finds it by comm
//! prefix in `/proc`, derives its cgroup v2 (or takes `collector.ebpf.cgroup_path`), and
//! returns a verdict on that cgroup: the in-kernel filter counts every task of the
//! programmed cgroup, so a cgroup that is the root or holds anything but the target is
//! refused, with a reason for the status, and comm matching scopes instead.
//!
//! Every function takes its filesystem roots as a [`Roots`], so the logic is tested on fake
//! trees and the real `/proc` alike.

pub mod cgroup;
mod error;
pub mod mountinfo;
pub mod pidns;
pub mod procfs;
mod roots;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub use cgroup::CgroupVerdict;
pub use error::DiscoveryError;
pub use mountinfo::{find_cgroup2, Cgroup2Mount};
pub use pidns::PidNs;
pub use procfs::Candidate;
pub use roots::Roots;

use crate::config::EbpfConfig;

/// The discovered BanyanDB process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    pub comm: String,
    /// Whether cgroup mode may be used, and with which cgroup.
    pub cgroup: CgroupVerdict,
    /// Every matching pid, ascending (the target among them).
    pub matched: Vec<u32>,
    /// Why this pid was chosen, when several matched.
    pub note: Option<String>,
}

/// Finds the target. `Ok(None)` means no process matches yet; the caller keeps probing
/// each interval. Errors are reserved for what leaves nothing to scope by (an unreadable
/// `/proc`) or a configuration that cannot be honoured (invalid settings, a `cgroup_path`
/// outside the cgroup2 mount); cgroup trouble of any other kind is an
/// [`CgroupVerdict::Unusable`] verdict, since comm matching still works.
///
/// When several processes match, the choice is deterministic: first a process inside the
/// configured `cgroup_path` (if set), then one whose parent is not itself a match (the main
/// process rather than a helper it forked), then the earliest started (pids wrap), then
/// the lowest pid. [`Target::note`] says so.
pub fn discover(cfg: &EbpfConfig, roots: &Roots) -> Result<Option<Target>, DiscoveryError> {
    cfg.validate()?;
    let prefix = cfg.comm_prefix.as_str();
    let mount = find_cgroup2(roots);
    let wanted = match (&cfg.cgroup_path, &mount) {
        (Some(p), Ok(m)) => Some(cgroup::resolve_configured(p, m)?),
        _ => None,
    };
    let candidates = procfs::matching(roots, prefix)?;
    // The sidecar's own cgroup: with a hostPID sidecar, every pod's BanyanDB is visible, and
    // the one in this pod sits in a sibling cgroup of the sidecar's.
    let own = procfs::read_cgroup_v2(roots, roots.self_pid).ok().flatten();
    let Some((chosen, note)) = choose(&candidates, wanted.as_deref(), own.as_deref(), prefix) else {
        return Ok(None);
    };
    let unusable = |reason: String| CgroupVerdict::Unusable { reason };
    let verdict = match (&mount, &chosen.cgroup, &wanted) {
        (Err(e), _, _) => match (&cfg.cgroup_path, &chosen.cgroup) {
            (Some(p), _) => unusable(format!("collector.ebpf.cgroup_path {} cannot be used: {e}", p.display())),
            // No cgroup v2 mount, but /proc names the target's cgroup: the kernel can still
            // tell us its id.
            (None, Ok(own)) => cgroup::judge_by_proc(roots, own, prefix, chosen.pid, &no_cgroup2(e))
                .unwrap_or_else(|| unusable(format!("{}, and {}", no_cgroup2(e), cgroup::NOT_LEARNABLE))),
            (None, Err(_)) => unusable(e.to_string()),
        },
        (Ok(m), _, Some(w)) => {
            let exists = cgroup::directory(m, w).map(|d| d.is_dir()).unwrap_or(false);
            match &chosen.cgroup {
                // The root is refused for being the root, whoever is in it.
                _ if w == Path::new("/") => cgroup::judge(roots, m, w, prefix),
                _ if !exists => unusable(configured_missing(cfg, w, m)),
                Ok(own) if own == w => cgroup::judge(roots, m, w, prefix),
                Ok(own) => unusable(format!(
                    "pid {} ({}) is in cgroup {}, not in the configured cgroup {}: events are charged to a task's own cgroup, so that filter would never count it",
                    chosen.pid,
                    chosen.comm,
                    own.display(),
                    w.display()
                )),
                Err(why) => unusable(why.clone()),
            }
        }
        (Ok(m), Ok(own), None) => match cgroup::directory(m, own) {
            Err(why) if own != Path::new("/") => cgroup::judge_by_proc(roots, own, prefix, chosen.pid, &why)
                .unwrap_or_else(|| unusable(format!("{why}, and {}", cgroup::NOT_LEARNABLE))),
            _ => cgroup::judge(roots, m, own, prefix),
        },
        (Ok(_), Err(why), None) => unusable(why.clone()),
    };
    Ok(Some(Target {
        pid: chosen.pid,
        comm: chosen.comm.clone(),
        cgroup: verdict,
        matched: candidates.iter().map(|c| c.pid).collect(),
        note,
    }))
}

/// What is missing where no cgroup v2 mount is visible: a container runtime on a hybrid
/// host (cgroup v1 controllers, v2 only at `/sys/fs/cgroup/unified`) mounts only the v1
/// hierarchies into the container.
fn no_cgroup2(e: &DiscoveryError) -> String {
    format!(
        "{e} (the sidecar's container has no cgroup2 mount; on a host with cgroup v1 controllers a runtime mounts only the v1 hierarchies), so the target's cgroup directory cannot be reached"
    )
}

fn configured_missing(cfg: &EbpfConfig, wanted: &Path, mount: &Cgroup2Mount) -> String {
    let shown = cfg.cgroup_path.as_deref().unwrap_or(wanted);
    match cgroup::directory(mount, wanted) {
        Ok(dir) => {
            format!("configured cgroup {} does not exist ({} is not a directory)", shown.display(), dir.display())
        }
        Err(why) => format!("configured cgroup {}: {why}", shown.display()),
    }
}

/// Picks the target among `candidates` (see [`discover`] for the order) and explains the
/// choice when there was one to make.
fn choose<'a>(
    candidates: &'a [Candidate],
    wanted: Option<&Path>,
    own: Option<&Path>,
    prefix: &str,
) -> Option<(&'a Candidate, Option<String>)> {
    let pids: HashSet<u32> = candidates.iter().map(|c| c.pid).collect();
    let rank = |c: &Candidate| {
        let outside_wanted = wanted.is_some_and(|w| c.cgroup.as_deref().ok() != Some(w));
        let distance = match (own, c.cgroup.as_deref()) {
            (Some(own), Ok(theirs)) => cgroup::distance(own, theirs),
            _ => usize::MAX,
        };
        let child_of_match = c.ppid.is_some_and(|p| p != c.pid && pids.contains(&p));
        (outside_wanted, distance, child_of_match, c.start_time.unwrap_or(u64::MAX), c.pid)
    };
    let chosen = candidates.iter().min_by_key(|c| rank(c))?;
    if candidates.len() == 1 {
        return Some((chosen, None));
    }
    const LISTED: usize = 10;
    let mut list = candidates.iter().take(LISTED).map(|c| c.pid.to_string()).collect::<Vec<_>>().join(", ");
    if candidates.len() > LISTED {
        list += ", ...";
    }
    let in_cgroup = if wanted.is_some() { "a process in the configured cgroup, then " } else { "" };
    let note = format!(
        "{} processes match comm prefix {prefix:?} (pids {list}); chose pid {}, preferring {in_cgroup}one in the cgroup nearest the sidecar's own (its pod), then one whose parent is not itself a match, then the earliest started, then the lowest pid",
        candidates.len(),
        chosen.pid
    );
    Some((chosen, Some(note)))
}

/// The per-interval health check: true while `path` is still the directory with inode
/// `id`. A removed cgroup fails the stat; a recreated one (a restarted container) has a
/// new inode, because kernfs never reuses ids on 64-bit kernels.
pub fn cgroup_still_matches(path: &Path, id: u64) -> bool {
    std::fs::metadata(path).map(|m| m.is_dir() && m.ino() == id).unwrap_or(false)
}

#[cfg(test)]
mod tests;
