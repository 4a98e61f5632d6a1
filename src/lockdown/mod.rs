//! After start, a sidecar that can no longer load anything.
//!
//! KTM needs CAP_BPF and CAP_PERFMON only to load and attach. Once its programs are attached
//! and self-tested, [`lock_down`] drops every capability of every thread (effective,
//! permitted, inheritable, ambient and, where CAP_SETPCAP allows, bounding), sets
//! `no_new_privs`, and installs KTM's own seccomp filter ([`crate::seccomp::steady_state`])
//! on every thread (`SECCOMP_FILTER_FLAG_TSYNC`): from then on `bpf()` answers only map and
//! info commands and `perf_event_open()` answers EPERM. A bug in the HTTP or YAML handling,
//! or in a linked library, then hands an attacker a process that can read and write KTM's
//! own maps, and nothing more.
//!
//! Nothing later needs the privileges: re-targeting writes the scope map, discovery reads
//! `/proc` and cgroupfs, the textfile is written beside and renamed. KTM never reloads or
//! re-attaches a program while it runs; a module that cannot start stays disabled and says
//! why, and the way back is a restart of the sidecar container by the kubelet, which starts
//! a fresh process with the container's capabilities.
//!
//! One kernel fact bends this: before Linux 6.5, `bpf()` began with
//! `if (sysctl_unprivileged_bpf_disabled && !bpf_capable()) return -EPERM` for every
//! command, and Debian sets `kernel.unprivileged_bpf_disabled=2`: there a process without
//! CAP_BPF cannot even read a map it holds. [`lock_down`] finds this out by trying (a forked
//! child drops its capabilities and asks `bpf()` for a lookup on no map: EBADF where the
//! kernel looks at the command, EPERM where it refuses first) and then keeps CAP_BPF alone
//! (CAP_SYS_ADMIN before 5.8), says so in its report, and relies on the filter to refuse
//! loads and attaches.

mod threads;

pub use threads::Bounding;

use crate::metrics::Metric;
use crate::privileges::{Held, Seccomp, CAP_BPF, CAP_SYS_ADMIN};
use crate::seccomp::{steady_state, Action, SockFilter};
use crate::{Error, Result};

// In the application, not beside `Held` in the toolkit's `privileges`: the toolkit names no metric.
impl Held {
    /// `ktm_privileges{capabilities, cap_eff, no_new_privs, seccomp} 1`: what the running
    /// sidecar holds, in every batch, so a dashboard sees a lock-down that did not happen.
    pub fn metric(&self) -> Metric {
        let seccomp = match self.seccomp {
            Some(Seccomp::Disabled) => "0",
            Some(Seccomp::Strict) => "1",
            Some(Seccomp::Filter { .. }) => "2",
            None => "unknown",
        };
        crate::catalogue::PRIVILEGES
            .gauge(1.0)
            .with_label("capabilities", self.capability_names())
            .with_label("cap_eff", format!("{:016x}", self.effective))
            .with_label("no_new_privs", if self.no_new_privs { "1" } else { "0" })
            .with_label("seccomp", seccomp)
    }
}

/// What the seccomp filter does with a call outside the allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Filter {
    /// EPERM (the default).
    #[default]
    Enforce,
    /// Allowed and logged by the kernel (dmesg / audit): for measuring the list on a new
    /// host or after a change; loads stay possible, so never for production.
    Log,
    /// No filter.
    Off,
}

/// What [`lock_down`] does.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LockDown {
    /// Keep every capability (`ktm run --keep-capabilities`): for a host whose security
    /// tooling wants to see the sidecar's capabilities unchanged, or to debug one. The filter
    /// still refuses loads unless `filter` is `Off`.
    pub keep_capabilities: bool,
    pub filter: Filter,
}

impl LockDown {
    /// From `ktm run`'s `--capabilities drop|keep` and `--seccomp enforce|log|off` (None:
    /// the defaults, drop and enforce).
    pub fn from_flags(capabilities: Option<&str>, seccomp: Option<&str>) -> std::result::Result<LockDown, String> {
        let keep_capabilities = match capabilities.unwrap_or("drop") {
            "drop" => false,
            "keep" => true,
            other => return Err(format!("--capabilities: `{other}` is not drop or keep")),
        };
        let filter = match seccomp.unwrap_or("enforce") {
            "enforce" => Filter::Enforce,
            "log" => Filter::Log,
            "off" => Filter::Off,
            other => return Err(format!("--seccomp: `{other}` is not enforce, log or off")),
        };
        Ok(LockDown { keep_capabilities, filter })
    }
}

/// [`lock_down`]s the process once every module is attached and self-tested (the
/// collector's `on_all_started` hook, on its thread), logging the outcome. A lock-down that
/// fails leaves the sidecar running (a sidecar that exits takes its pod out of service) and
/// says so loudly; the `ktm_privileges` series shows what it holds either way. While a
/// module is disabled the hook does not run, so the collector's retries keep the
/// privileges a load needs; once locked down nothing reloads: the kubelet's restart of the
/// container is the way back.
pub fn after_all_started(opts: &LockDown) -> Option<LockDownReport> {
    if !opts.keep_capabilities && opts.filter == Filter::Off {
        log::warn!("KTM lock-down off: the sidecar keeps its capabilities and has no filter of its own");
    }
    match lock_down(opts) {
        Ok(r) => Some(r),
        Err(e) => {
            log::error!("KTM lock-down failed, the sidecar keeps running: {e}");
            None
        }
    }
}

/// What [`lock_down`] did, for the log and the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockDownReport {
    /// Capabilities kept (effective and permitted) and why; 0 when all were dropped.
    pub kept: u64,
    pub kept_why: Option<String>,
    pub bounding: Bounding,
    /// Threads the drop reached.
    pub threads: usize,
    pub filter: Filter,
    /// The filter's length in instructions (0 without one).
    pub filter_len: usize,
    /// What the process holds afterwards, read back from `/proc/self/status`.
    pub held: Held,
}

impl std::fmt::Display for LockDownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "locked down: {}", self.held)?;
        if let Some(why) = &self.kept_why {
            write!(f, "; kept {why}")?;
        }
        if let Bounding::Kept(e) = self.bounding {
            write!(
                f,
                "; bounding set unchanged ({}: no CAP_SETPCAP), moot under no_new_privs",
                std::io::Error::from_raw_os_error(e)
            )?;
        }
        match self.filter {
            Filter::Enforce => write!(
                f,
                "; seccomp filter of {} instructions: bpf() map and info commands only, perf_event_open EPERM",
                self.filter_len
            ),
            Filter::Log => write!(f, "; seccomp filter in LOG mode (calls outside the list are logged, not refused)"),
            Filter::Off => f.write_str("; no seccomp filter of KTM's own (filter off)"),
        }
    }
}

/// Whether this kernel refuses every `bpf()` command, map lookups included, to a process
/// without CAP_BPF (`unprivileged_bpf_disabled` set, kernel before 6.5). Found by trying in
/// a forked child that drops its capabilities first.
pub fn map_reads_need_capability() -> Result<bool> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    // SAFETY: the child makes raw syscalls only (async-signal-safe after fork in a threaded
    // process) and leaves with _exit.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Err(Error::last_os("fork the bpf() probe"));
        }
        if pid == 0 {
            let mut h = [0x2008_0522u32, 0];
            let data = [0u32; 6];
            if libc::syscall(libc::SYS_capset, h.as_mut_ptr(), data.as_ptr()) != 0 {
                libc::_exit(100);
            }
            let mut attr = Attr { map_fd: u32::MAX, _pad: 0, key: 0, value: 0, flags: 0 };
            let r =
                libc::syscall(libc::SYS_bpf, 1 as libc::c_long, &mut attr as *mut Attr, std::mem::size_of::<Attr>());
            let e = if r < 0 { *libc::__errno_location() } else { 0 };
            libc::_exit(if e == libc::EPERM { 1 } else { 0 });
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if *libc::__errno_location() != libc::EINTR {
                return Err(Error::last_os("wait for the bpf() probe"));
            }
        }
        match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(Error::Other(format!("the bpf() probe child failed (wait status {status:#x})"))),
        }
    }
}

/// The capability the map reads need on a kernel where [`map_reads_need_capability`]:
/// CAP_BPF where the process has it, else CAP_SYS_ADMIN (kernels before 5.8).
fn map_read_capability(effective: u64) -> (u64, &'static str) {
    if effective & (1 << CAP_BPF.bit) != 0 {
        (1 << CAP_BPF.bit, CAP_BPF.name)
    } else {
        (1 << CAP_SYS_ADMIN.bit, CAP_SYS_ADMIN.name)
    }
}

/// KTM's filter, assembled.
pub fn filter(mode: Filter) -> Result<Vec<SockFilter>> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err(Error::Other("KTM's seccomp filter is written for x86-64 and arm64 only".into()));
    }
    let default = if mode == Filter::Log { Action::Log } else { Action::Errno(libc::EPERM as u16) };
    steady_state(default).build().map_err(|e| Error::Other(format!("KTM's seccomp filter: {e}")))
}

fn install(prog: &[SockFilter]) -> Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_long = 1;
    let fprog = SockFprog { len: prog.len() as u16, filter: prog.as_ptr() };
    // SAFETY: fprog points at `prog`, alive for the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog as *const SockFprog)
    };
    match r {
        0 => Ok(()),
        r if r > 0 => Err(Error::Other(format!(
            "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): thread {r} cannot take the filter (it has a filter of its own)"
        ))),
        _ => Err(Error::last_os("seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC)")),
    }
}

/// Every live thread's [`Held`], with its id.
pub fn threads_held() -> Result<Vec<(i32, Held)>> {
    let dir = std::fs::read_dir("/proc/self/task").map_err(|e| Error::io("list /proc/self/task", e))?;
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
        // A thread that exited since the listing has no status any more: not a thread.
        if let Ok(text) = std::fs::read_to_string(e.path().join("status")) {
            out.push((tid, Held::parse(&text)?));
        }
    }
    Ok(out)
}

/// Locks this process down: capabilities dropped on every thread (unless kept by option, or
/// the map-read capability on kernels that need it), no_new_privs, KTM's seccomp filter on
/// every thread. Call once everything is attached and self-tested; threads started later
/// inherit all of it. Verified: every thread's status is read back, and an error says which
/// thread still holds what.
pub fn lock_down(opts: &LockDown) -> Result<LockDownReport> {
    let before = Held::current()?;
    let (keep, kept_why) = if opts.keep_capabilities {
        (u64::MAX, Some("every capability (keep_capabilities)".to_string()))
    } else if before.effective != 0 && map_reads_need_capability()? {
        let (mask, name) = map_read_capability(before.effective);
        let why = format!(
            "{name} only: this kernel refuses even map reads without it (kernel.unprivileged_bpf_disabled is set and \
             the kernel predates 6.5); the filter refuses loads and attaches"
        );
        (mask, Some(why))
    } else {
        (0, None)
    };
    if opts.keep_capabilities && opts.filter == Filter::Off {
        return Ok(LockDownReport {
            kept: before.effective,
            kept_why,
            bounding: Bounding::Kept(0),
            threads: 0,
            filter: Filter::Off,
            filter_len: 0,
            held: before,
        });
    }
    let (threads, bounding) = threads::drop_all(keep)?;
    let prog = if opts.filter == Filter::Off { Vec::new() } else { filter(opts.filter)? };
    if !prog.is_empty() {
        install(&prog)?;
    }
    // Read back, thread by thread.
    let mut wrong = Vec::new();
    for (tid, h) in threads_held()? {
        let caps_left = (h.effective | h.permitted) & !keep;
        let filtered = matches!(h.seccomp, Some(Seccomp::Filter { .. }));
        if caps_left != 0 || !h.no_new_privs || (!prog.is_empty() && !filtered) {
            wrong.push(format!("thread {tid}: {h}"));
        }
    }
    if !wrong.is_empty() {
        return Err(Error::Other(format!("lock-down incomplete: {}", wrong.join("; "))));
    }
    let report = LockDownReport {
        kept: keep & before.effective,
        kept_why,
        bounding,
        threads,
        filter: opts.filter,
        filter_len: prog.len(),
        held: Held::current()?,
    };
    log::info!("KTM {report}");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(LockDown::from_flags(None, None), Ok(LockDown::default()));
        assert_eq!(
            LockDown::from_flags(Some("keep"), Some("log")),
            Ok(LockDown { keep_capabilities: true, filter: Filter::Log })
        );
        assert_eq!(LockDown::from_flags(Some("drop"), Some("off")).map(|l| l.filter), Ok(Filter::Off));
        assert!(LockDown::from_flags(Some("none"), None).is_err());
        assert!(LockDown::from_flags(None, Some("kill")).is_err());
    }

    #[test]
    fn the_capability_kept_for_map_reads() {
        assert_eq!(map_read_capability(1 << CAP_BPF.bit | 1 << CAP_SYS_ADMIN.bit), (1 << CAP_BPF.bit, "CAP_BPF"));
        assert_eq!(map_read_capability(1 << CAP_SYS_ADMIN.bit), (1 << CAP_SYS_ADMIN.bit, "CAP_SYS_ADMIN"));
    }

    #[test]
    fn the_filter_assembles_for_every_mode() {
        assert!(filter(Filter::Enforce).unwrap().len() > 100);
        assert_eq!(filter(Filter::Enforce).unwrap().len(), filter(Filter::Log).unwrap().len());
    }

    #[test]
    fn the_privileges_metric() {
        let status = "CapPrm:\t0000008000000000\nCapEff:\t0000008000000000\nCapBnd:\t000000c000000000\n\
                      NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        let m = Held::parse(status).unwrap().metric();
        assert_eq!(m.label("capabilities"), Some("CAP_BPF"));
        assert_eq!(m.label("cap_eff"), Some("0000008000000000"));
        assert_eq!(m.label("no_new_privs"), Some("1"));
        assert_eq!(m.label("seccomp"), Some("2"));
    }
}
