//! Capabilities are per thread: `capset()` and `PR_CAPBSET_DROP` change the calling thread
//! only. So every thread of the process is asked, by a signal whose handler makes the same
//! raw calls, to drop its own (as glibc does for `setuid` and libcap's psx for `cap_set_proc`).
//!
//! Only raw system calls run in the handler, and only on values stored before the signal is
//! sent: async-signal-safe.

use crate::{Error, Result};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_V3: u32 = 0x2008_0522;
/// Capability numbers probed for the bounding set (`CAP_LAST_CAP` is 40 on 6.x; the kernel
/// answers EINVAL beyond its own last).
const CAP_MAX: u32 = 63;

static KEEP: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicUsize = AtomicUsize::new(0);
/// The first errno a thread's capset or no_new_privs failed with (0: none).
static FAILED: AtomicI32 = AtomicI32::new(0);
/// Whether the bounding set could be cut (needs CAP_SETPCAP; 0 = yes, else the errno).
static BOUNDING: AtomicI32 = AtomicI32::new(0);
/// One broadcast at a time.
static ONE: Mutex<()> = Mutex::new(());

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops the calling thread's capabilities to `keep` (effective and permitted; inheritable
/// and ambient emptied), cuts the bounding set to `keep` where allowed, sets no_new_privs.
/// Returns 0 or the errno of the first failed step that matters.
fn drop_this_thread(keep: u64) -> i32 {
    // SAFETY: raw syscalls on integers and on stack structs of the kernel's layout.
    unsafe {
        let errno = || *libc::__errno_location();
        for cap in 0..=CAP_MAX {
            if keep & (1 << cap) == 0
                && libc::syscall(libc::SYS_prctl, libc::PR_CAPBSET_READ, cap, 0, 0, 0) == 1
                && libc::syscall(libc::SYS_prctl, libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
            {
                // No CAP_SETPCAP (a container granted CAP_BPF and CAP_PERFMON only): the
                // bounding set stays; no_new_privs makes it moot, execve cannot raise
                // the permitted set above today's (empty) one.
                let _ = BOUNDING.compare_exchange(0, errno(), Ordering::SeqCst, Ordering::SeqCst);
                break;
            }
        }
        // Ambient capabilities (4.3+); EINVAL on older kernels is no failure.
        libc::syscall(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        let mut header = CapHeader { version: CAP_V3, pid: 0 };
        let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
        if libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) != 0 {
            return errno();
        }
        for (i, d) in data.iter_mut().enumerate() {
            let k = (keep >> (32 * i)) as u32;
            d.effective &= k;
            d.permitted &= k;
            d.inheritable = 0;
        }
        header = CapHeader { version: CAP_V3, pid: 0 };
        if libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) != 0 {
            return errno();
        }
        if libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return errno();
        }
        0
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    let saved = unsafe { *libc::__errno_location() };
    let r = drop_this_thread(KEEP.load(Ordering::SeqCst));
    if r != 0 {
        let _ = FAILED.compare_exchange(0, r, Ordering::SeqCst, Ordering::SeqCst);
    }
    DONE.fetch_add(1, Ordering::SeqCst);
    unsafe { *libc::__errno_location() = saved };
}

/// The signal used to reach every thread: a real-time one the C library leaves free.
fn signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

fn tids() -> Result<Vec<i32>> {
    let dir = std::fs::read_dir("/proc/self/task").map_err(|e| Error::io("list /proc/self/task", e))?;
    Ok(dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
}

/// What became of the bounding set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bounding {
    Cut,
    /// Left as it was: cutting needs CAP_SETPCAP (this errno).
    Kept(i32),
}

/// Drops every thread's capabilities to `keep` and sets no_new_privs on each; returns how
/// many threads there were and what became of the bounding set.
pub fn drop_all(keep: u64) -> Result<(usize, Bounding)> {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    KEEP.store(keep, Ordering::SeqCst);
    FAILED.store(0, Ordering::SeqCst);
    BOUNDING.store(0, Ordering::SeqCst);
    DONE.store(0, Ordering::SeqCst);
    let sig = signal();
    // SAFETY: a handler that makes raw syscalls only; the old action is put back below.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigfillset(&mut act.sa_mask);
        if libc::sigaction(sig, &act, &mut old) != 0 {
            return Err(Error::last_os("sigaction for the capability drop"));
        }
    }
    let result = (|| {
        let me = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        let pid = std::process::id() as i32;
        let r = drop_this_thread(keep);
        if r != 0 {
            return Err(Error::io("drop this thread's capabilities", std::io::Error::from_raw_os_error(r)));
        }
        // Threads started while this runs inherit from their creator, dropped or not: go
        // round until a pass finds none left to ask.
        let mut asked = std::collections::HashSet::from([me]);
        for _ in 0..8 {
            let fresh: Vec<i32> = tids()?.into_iter().filter(|t| !asked.contains(t)).collect();
            if fresh.is_empty() {
                break;
            }
            let mut sent = 0;
            for t in fresh {
                asked.insert(t);
                // SAFETY: a signal to a thread of this process; ESRCH if it just exited.
                if unsafe { libc::syscall(libc::SYS_tgkill, pid, t, sig) } == 0 {
                    sent += 1;
                }
            }
            // A thread that exits before handling the signal never counts: wait a bounded
            // time; the caller then checks every live thread's status.
            let deadline = Instant::now() + Duration::from_secs(2);
            let target = DONE.load(Ordering::SeqCst) + sent;
            while DONE.load(Ordering::SeqCst) < target && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        match FAILED.load(Ordering::SeqCst) {
            0 => {}
            e => return Err(Error::io("a thread's capability drop", std::io::Error::from_raw_os_error(e))),
        }
        let bounding = match BOUNDING.load(Ordering::SeqCst) {
            0 => Bounding::Cut,
            e => Bounding::Kept(e),
        };
        Ok((asked.len(), bounding))
    })();
    // SAFETY: restores the disposition saved above.
    unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
    result
}
