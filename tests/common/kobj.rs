//! The kernel objects a process holds, by id, from `/proc/PID/fd` and `/proc/PID/fdinfo`,
//! and whether an id is still in the kernel. Lets a test or the soak tell its own KTM's
//! programs, maps and links from those of anything else running on the machine.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

/// What one process holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub progs: BTreeSet<u32>,
    pub maps: BTreeSet<u32>,
    pub links: BTreeSet<u32>,
    pub perf_events: usize,
    pub fds: usize,
}

impl Held {
    /// The objects in `self` that `before` did not hold.
    pub fn since(&self, before: &Held) -> Held {
        Held {
            progs: self.progs.difference(&before.progs).copied().collect(),
            maps: self.maps.difference(&before.maps).copied().collect(),
            links: self.links.difference(&before.links).copied().collect(),
            perf_events: self.perf_events.saturating_sub(before.perf_events),
            fds: self.fds.saturating_sub(before.fds),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.progs.is_empty() && self.maps.is_empty() && self.links.is_empty()
    }
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fds, {} programs {:?}, {} maps {:?}, {} links {:?}, {} perf events",
            self.fds,
            self.progs.len(),
            self.progs,
            self.maps.len(),
            self.maps,
            self.links.len(),
            self.links,
            self.perf_events
        )
    }
}

fn field(info: &str, name: &str) -> Option<u32> {
    info.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok())
}

/// The objects `pid` holds (`"self"` for this process).
pub fn held(pid: &str) -> Held {
    let mut h = Held::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return h };
    for e in dir.flatten() {
        h.fds += 1;
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        let info = || std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy()));
        match target.as_str() {
            "anon_inode:bpf-prog" => h.progs.extend(info().ok().and_then(|i| field(&i, "prog_id:"))),
            "anon_inode:bpf-map" => h.maps.extend(info().ok().and_then(|i| field(&i, "map_id:"))),
            "anon_inode:bpf_link" => h.links.extend(info().ok().and_then(|i| field(&i, "link_id:"))),
            "anon_inode:[perf_event]" => h.perf_events += 1,
            _ => {}
        }
    }
    h
}

/// `BPF_LINK_GET_FD_BY_ID`.
fn link_fd_by_id(id: u32) -> Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::FromRawFd;
    #[repr(C)]
    struct Attr {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut attr = Attr { id, next_id: 0, open_flags: 0 };
    // SAFETY: the attribute holds no pointers.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, 30 as libc::c_long, &mut attr as *mut Attr, std::mem::size_of::<Attr>())
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: the kernel just returned this fd.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(ret as i32) })
}

/// The objects of `h` still in the kernel, waiting up to 2 s for RCU-deferred frees.
pub fn still_in_kernel(h: &Held) -> Held {
    use ktm::sys::bpf;
    let mut left = Held::default();
    for _ in 0..200 {
        left.progs = h.progs.iter().copied().filter(|&id| bpf::prog_fd_by_id(id).is_ok()).collect();
        left.maps = h.maps.iter().copied().filter(|&id| bpf::map_fd_by_id(id).is_ok()).collect();
        left.links = h.links.iter().copied().filter(|&id| link_fd_by_id(id).is_ok()).collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    left
}

/// Asserts that none of `h`'s objects is left in the kernel.
#[track_caller]
pub fn assert_gone(what: &str, h: &Held) {
    assert!(!h.progs.is_empty() && !h.maps.is_empty(), "{what}: the instance held no programs or maps: {h}");
    let left = still_in_kernel(h);
    assert!(left.is_empty(), "{what}: still in the kernel after the stop: {left}");
}
