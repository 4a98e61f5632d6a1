//! Reading `/proc`: the process list, comms, parents and cgroup v2 membership.
//!
//! Processes come and go while we read, so a process that disappears between two reads
//! (ENOENT, ESRCH) is simply not there; content we cannot parse is treated as missing
//! information, never as a reason to panic or to abandon the whole scan.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::error::DiscoveryError;
use super::roots::Roots;

/// A process whose comm starts with the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub pid: u32,
    /// The comm, lossily decoded for display.
    pub comm: String,
    /// Parent pid (0 when the parent is outside our pid namespace); `None` if unparsable.
    pub ppid: Option<u32>,
    /// Start time in clock ticks since boot; `None` if unparsable.
    pub start_time: Option<u64>,
    /// The cgroup v2 path from `/proc/<pid>/cgroup`, or why it is unknown.
    pub cgroup: Result<PathBuf, String>,
}

/// True for errors meaning "the process is gone", which are not worth reporting.
pub(crate) fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// The pids in `proc`, ascending. Only numeric entries: `/proc` lists processes, never the
/// threads under `/proc/<pid>/task`, which is what we want.
pub fn pids(roots: &Roots) -> Result<Vec<u32>, DiscoveryError> {
    let dir = std::fs::read_dir(&roots.proc).map_err(|e| DiscoveryError::io(&roots.proc, e))?;
    let mut pids: Vec<u32> = dir
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            // `str::parse` would accept "+5".
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            name.parse().ok()
        })
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// `/proc/<pid>/comm` without its trailing newline.
pub fn read_comm(roots: &Roots, pid: u32) -> io::Result<Vec<u8>> {
    let mut comm = std::fs::read(roots.proc.join(pid.to_string()).join("comm"))?;
    if comm.last() == Some(&b'\n') {
        comm.pop();
    }
    Ok(comm)
}

/// Parent pid and start time from `/proc/<pid>/stat`. The comm (field 2) may contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<(u32, u64)> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, starttime field 22.
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

/// Whether a `/proc/<pid>/stat` says the process has exited (state `Z` zombie or `X`
/// dead): a BanyanDB that exited is no target, though its zombie keeps its comm until its
/// parent reaps it (a pod whose pause does not reap, or a slow runtime).
pub fn stat_exited(text: &[u8]) -> bool {
    let Some(close) = text.iter().rposition(|&b| b == b')') else { return false };
    matches!(text.get(close + 1..).and_then(|r| r.iter().find(|b| !b.is_ascii_whitespace())), Some(b'Z' | b'X'))
}

/// Whether `pid` is a process that has not exited.
pub fn running(roots: &Roots, pid: u32) -> bool {
    std::fs::read(roots.proc.join(pid.to_string()).join("stat")).is_ok_and(|s| !stat_exited(&s))
}

/// The path of the `0::<path>` line of `/proc/<pid>/cgroup` (cgroup v2), ignoring v1
/// lines; `None` when there is no such line.
pub fn parse_cgroup_v2(text: &[u8]) -> Option<PathBuf> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let path = line.strip_prefix(b"0::")?;
        (!path.is_empty()).then(|| PathBuf::from(OsString::from_vec(path.to_vec())))
    })
}

/// Reads the cgroup v2 path of `pid`: `Ok(None)` when the file has no v2 line.
pub fn read_cgroup_v2(roots: &Roots, pid: u32) -> io::Result<Option<PathBuf>> {
    Ok(parse_cgroup_v2(&std::fs::read(roots.proc.join(pid.to_string()).join("cgroup"))?))
}

/// Every process but ourselves whose comm starts with `prefix`, ascending by pid.
/// The sidecar itself is excluded because a sidecar named like its target (say
/// `banyand-fodc`) must never monitor itself.
pub fn matching(roots: &Roots, prefix: &str) -> Result<Vec<Candidate>, DiscoveryError> {
    let mut out = Vec::new();
    for pid in pids(roots)? {
        if pid == roots.self_pid {
            continue;
        }
        let comm = match read_comm(roots, pid) {
            Ok(c) => c,
            Err(e) => {
                if !vanished(&e) {
                    log::debug!("skipping pid {pid}: cannot read its comm: {e}");
                }
                continue;
            }
        };
        if !comm.starts_with(prefix.as_bytes()) {
            continue;
        }
        let stat_path = roots.proc.join(pid.to_string()).join("stat");
        let stat = match std::fs::read(&stat_path) {
            Ok(s) if stat_exited(&s) => continue,
            Ok(s) => parse_stat(&s),
            Err(e) if vanished(&e) => continue,
            Err(e) => {
                log::debug!("cannot read {}: {e}", stat_path.display());
                None
            }
        };
        let cgroup_path = roots.proc.join(pid.to_string()).join("cgroup");
        let cgroup = match read_cgroup_v2(roots, pid) {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(format!("{} has no cgroup v2 (0::) line", cgroup_path.display())),
            Err(e) if vanished(&e) => continue,
            Err(e) => Err(format!("cannot read {}: {e}", cgroup_path.display())),
        };
        out.push(Candidate {
            pid,
            comm: String::from_utf8_lossy(&comm).into_owned(),
            ppid: stat.map(|s| s.0),
            start_time: stat.map(|s| s.1),
            cgroup,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let text = b"4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n";
        assert_eq!(parse_stat(text), Some((17, 987654)));
        assert_eq!(parse_stat(b"1 (x) S"), None);
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"1 (x) S notanumber 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 5"), None);
    }

    #[test]
    fn exited_processes() {
        assert!(stat_exited(b"4242 (banyand) Z 1 4242"));
        assert!(stat_exited(b"4242 (a) Z) X 1"));
        assert!(!stat_exited(b"4242 (a) Z) S 1"));
        assert!(!stat_exited(b"4242 (banyand) S 1"));
        assert!(!stat_exited(b""));
    }

    #[test]
    fn cgroup_file_with_v1_and_v2_lines() {
        let text = b"12:pids:/user.slice\n4:memory:/x\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(parse_cgroup_v2(text), Some(PathBuf::from("/user.slice/session-1.scope")));
        assert_eq!(parse_cgroup_v2(b"0::/\n"), Some(PathBuf::from("/")));
        // Colons inside the path belong to the path.
        assert_eq!(parse_cgroup_v2(b"0::/a:b\n"), Some(PathBuf::from("/a:b")));
    }

    #[test]
    fn cgroup_file_without_v2_line() {
        assert_eq!(parse_cgroup_v2(b"4:memory:/x\n1:cpu:/\n"), None);
        assert_eq!(parse_cgroup_v2(b""), None);
        assert_eq!(parse_cgroup_v2(b"0::\n"), None);
        assert_eq!(parse_cgroup_v2(b"10::/not-v2\n"), None);
    }
}
