//! Which of the capabilities KTM needs this process has, and what else may refuse it.
//!
//! Checked up front so that a sidecar missing one is told which, and how to grant it, rather
//! than meeting an EPERM from deep inside a load. A process can hold every capability and
//! still be refused: a seccomp filter (the default profile of container runtimes denies
//! `bpf()` and `perf_event_open()`), kernel lockdown, or `perf_event_paranoid`. Each is
//! named here, so that the error says which one it is instead of blaming capabilities.

use crate::{Error, Result};

/// A capability KTM may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    pub bit: u32,
}

pub const CAP_SYS_ADMIN: Capability = Capability { name: "CAP_SYS_ADMIN", bit: 21 };
pub const CAP_PERFMON: Capability = Capability { name: "CAP_PERFMON", bit: 38 };
pub const CAP_BPF: Capability = Capability { name: "CAP_BPF", bit: 39 };

/// The effective capability set, from /proc/self/status.
pub fn effective() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| Error::io("read /proc/self/status", e))?;
    parse_effective(&status)
}

/// The `CapEff:` mask of `/proc/PID/status` text.
pub fn parse_effective(status: &str) -> Result<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| Error::Parse { what: "/proc/self/status".into(), detail: "no CapEff line".into() })?;
    u64::from_str_radix(hex.trim(), 16)
        .map_err(|_| Error::Parse { what: "/proc/self/status CapEff".into(), detail: hex.trim().into() })
}

/// The capabilities missing for loading and attaching: CAP_BPF and CAP_PERFMON, unless
/// CAP_SYS_ADMIN covers both (kernels before 5.8 know only that one).
pub fn missing(eff: u64) -> Vec<Capability> {
    let has = |c: Capability| eff & (1u64 << c.bit) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [CAP_BPF, CAP_PERFMON].into_iter().filter(|&c| !has(c)).collect()
}

/// An error naming the missing capabilities and how a sidecar gets them, if any are missing;
/// else an error naming the seccomp filter or other policy that blocks `bpf()` or
/// `perf_event_open()` outright, if one does.
pub fn check() -> Result<()> {
    let missing = missing(effective()?);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|c| c.name).collect();
        return Err(Error::Other(format!(
            "missing {}: KTM loads eBPF programs and opens perf events. Grant them to the sidecar \
             container (securityContext.capabilities.add: [\"BPF\", \"PERFMON\"]; on kernels before 5.8 \
             [\"SYS_ADMIN\"]), or run it as root{}",
            names.join(" and "),
            paranoid_note(&missing)
        )));
    }
    let blocked: Vec<&str> = [("bpf", Syscall::Bpf), ("perf_event_open", Syscall::PerfEventOpen)]
        .into_iter()
        .filter(|(_, s)| blocked(*s))
        .map(|(n, _)| n)
        .collect();
    if blocked.is_empty() {
        return Ok(());
    }
    Err(Error::Other(format!("{} {}", blocked.join("() and ") + "()", blocked_reason(&blocked))))
}

fn blocked_reason(calls: &[&str]) -> String {
    let verb = if calls.len() > 1 { "are" } else { "is" };
    match seccomp() {
        Some(Seccomp::Filter { filters }) => format!(
            "{verb} blocked by a seccomp filter ({}), not by a missing capability: the process has \
             CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN). Container runtimes' default seccomp profile \
             denies these calls; run the sidecar with a profile that allows bpf and perf_event_open \
             (securityContext.seccompProfile: a Localhost profile that allows them, or Unconfined)",
            filters.map_or_else(
                || "/proc/self/status: Seccomp: 2".to_string(),
                |n| format!("/proc/self/status: Seccomp: 2, Seccomp_filters: {n}")
            )
        ),
        Some(Seccomp::Strict) => format!("{verb} blocked by strict seccomp mode (/proc/self/status: Seccomp: 1)"),
        _ => format!(
            "{verb} refused before the kernel looked at the arguments, although the process has the \
             capabilities and no seccomp filter: a security module (LSM) policy denies it{}",
            policy_suffix()
        ),
    }
}

/// The seccomp mode of this process, from `/proc/self/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seccomp {
    Disabled,
    Strict,
    /// Mode 2; `filters` is `Seccomp_filters` (5.9+) when shown.
    Filter {
        filters: Option<u32>,
    },
}

impl std::fmt::Display for Seccomp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seccomp::Disabled => f.write_str("disabled (Seccomp: 0)"),
            Seccomp::Strict => f.write_str("strict (Seccomp: 1)"),
            Seccomp::Filter { filters: Some(n) } => write!(f, "filter (Seccomp: 2, {n} filter(s))"),
            Seccomp::Filter { filters: None } => f.write_str("filter (Seccomp: 2)"),
        }
    }
}

/// The seccomp mode from `/proc/self/status` text; None when it has no `Seccomp:` line.
pub fn parse_seccomp(status: &str) -> Option<Seccomp> {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    match field("Seccomp:")? {
        "0" => Some(Seccomp::Disabled),
        "1" => Some(Seccomp::Strict),
        "2" => Some(Seccomp::Filter { filters: field("Seccomp_filters:").and_then(|n| n.parse().ok()) }),
        _ => None,
    }
}

/// This process's seccomp mode; None when the kernel does not say.
pub fn seccomp() -> Option<Seccomp> {
    parse_seccomp(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// What a process holds, from its `/proc/PID/status`: the capability sets, no_new_privs and
/// the seccomp mode. `ktm probe` and the status show it; after the application's lock-down a
/// sidecar reads `CapEff: 0000000000000000`, `NoNewPrivs: 1`, `Seccomp: 2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub effective: u64,
    pub permitted: u64,
    pub bounding: u64,
    pub no_new_privs: bool,
    pub seccomp: Option<Seccomp>,
}

impl Held {
    /// Parses `/proc/PID/status` (or `/proc/PID/task/TID/status`) text.
    pub fn parse(status: &str) -> Result<Held> {
        let mask = |name: &str| -> Result<u64> {
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .ok_or_else(|| Error::Parse { what: "/proc status".into(), detail: format!("no {name} line") })?;
            u64::from_str_radix(hex.trim(), 16)
                .map_err(|_| Error::Parse { what: format!("/proc status {name}"), detail: hex.trim().into() })
        };
        Ok(Held {
            effective: mask("CapEff:")?,
            permitted: mask("CapPrm:")?,
            bounding: mask("CapBnd:")?,
            no_new_privs: status.lines().find_map(|l| l.strip_prefix("NoNewPrivs:")).map(str::trim) == Some("1"),
            seccomp: parse_seccomp(status),
        })
    }

    /// This process's (its main thread's).
    pub fn current() -> Result<Held> {
        let text = std::fs::read_to_string("/proc/self/status").map_err(|e| Error::io("read /proc/self/status", e))?;
        Held::parse(&text)
    }

    /// The effective capabilities KTM cares about, by name, or `none`; any other bit is
    /// shown as `+N more`.
    pub fn capability_names(&self) -> String {
        if self.effective == 0 {
            return "none".into();
        }
        let named: Vec<&str> = [CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN]
            .iter()
            .filter(|c| self.effective & (1 << c.bit) != 0)
            .map(|c| c.name)
            .collect();
        let others =
            (self.effective & !((1 << CAP_BPF.bit) | (1 << CAP_PERFMON.bit) | (1 << CAP_SYS_ADMIN.bit))).count_ones();
        let mut s = named.join("+");
        if others > 0 {
            s += &format!("{}{others} more", if s.is_empty() { "" } else { "+" });
        }
        s
    }
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "capabilities {} (CapEff {:016x}), no_new_privs {}, seccomp {}",
            self.capability_names(),
            self.effective,
            u8::from(self.no_new_privs),
            self.seccomp.map_or_else(|| "unknown".to_string(), |s| s.to_string())
        )
    }
}

/// A system call KTM needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Bpf,
    PerfEventOpen,
}

/// Whether `call` is refused before the kernel looks at its arguments: called with arguments
/// the kernel itself rejects (EINVAL, EFAULT), it answers EPERM or EACCES instead. That is
/// what a seccomp filter or an LSM hook denying the call does; a missing capability is
/// checked later, per command.
pub fn blocked(call: Syscall) -> bool {
    // SAFETY: both calls are given arguments the kernel rejects without touching memory:
    // bpf() an unknown command with a zero-sized attribute, perf_event_open() a NULL attribute.
    let ret = unsafe {
        match call {
            Syscall::Bpf => libc::syscall(libc::SYS_bpf, 0x7fff_ffff as libc::c_long, 0usize, 0usize),
            Syscall::PerfEventOpen => libc::syscall(libc::SYS_perf_event_open, 0usize, -1, 0, -1, 0usize),
        }
    };
    if ret >= 0 {
        // SAFETY: an fd we were not meant to get; close it.
        unsafe { libc::close(ret as libc::c_int) };
        return false;
    }
    matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// The kernel lockdown mode: `none`, `integrity` or `confidentiality`.
///
/// Read from securityfs; where securityfs is not mounted (many containers and some hosts),
/// a process with CAP_SYS_ADMIN reads it through a private mount of securityfs made in a
/// throw-away mount namespace of a short-lived thread, which nothing else sees.
///
/// Read once per process and cached (it can only be raised, and only by an administrator).
pub fn lockdown() -> std::result::Result<String, String> {
    static MODE: std::sync::OnceLock<std::result::Result<String, String>> = std::sync::OnceLock::new();
    MODE.get_or_init(read_lockdown).clone()
}

fn read_lockdown() -> std::result::Result<String, String> {
    let mounts = crate::host::mounts::own().unwrap_or_default();
    let mounted = crate::host::mounts::of_type(&mounts, "securityfs").map(|d| d.join("lockdown")).find(|p| p.exists());
    let text = match mounted {
        Some(p) => std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        None => private_securityfs_read().ok_or_else(|| {
            "unknown: securityfs is not mounted (mount -t securityfs securityfs /sys/kernel/security to see it)"
                .to_string()
        })?,
    };
    parse_lockdown(&text).ok_or_else(|| format!("unknown: cannot parse lockdown {:?}", text.trim()))
}

/// The bracketed (active) mode of a securityfs `lockdown` file: `none [integrity] confidentiality`.
pub fn parse_lockdown(text: &str) -> Option<String> {
    let open = text.find('[')?;
    let close = open + text.get(open..)?.find(']')?;
    let mode = text.get(open + 1..close)?.trim();
    (!mode.is_empty()).then(|| mode.to_string())
}

fn private_securityfs_read() -> Option<String> {
    std::thread::Builder::new()
        .name("ktm-lockdown".into())
        .spawn(|| {
            // SAFETY: unshare and mount act on this thread's own new mount namespace: / is made
            // private first, so nothing mounted here propagates anywhere, and the namespace
            // disappears when the thread exits.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return None;
                }
                let none = std::ptr::null();
                if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                    return None;
                }
                let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
                let dir = c"/sys/kernel/security";
                if libc::mount(c"securityfs".as_ptr(), dir.as_ptr(), c"securityfs".as_ptr(), flags, std::ptr::null())
                    != 0
                {
                    return None;
                }
            }
            std::fs::read_to_string("/sys/kernel/security/lockdown").ok()
        })
        .ok()?
        .join()
        .ok()
        .flatten()
}

/// `/proc/sys/kernel/perf_event_paranoid`, and what it means for a process without
/// CAP_PERFMON (with it, the level does not matter).
pub fn perf_event_paranoid() -> std::result::Result<(i32, &'static str), String> {
    let path = "/proc/sys/kernel/perf_event_paranoid";
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let level: i32 = text.trim().parse().map_err(|_| format!("cannot parse {path}: {:?}", text.trim()))?;
    // KTM opens tracepoint events system-wide, which every level from 0 up reserves to
    // CAP_PERFMON (or CAP_SYS_ADMIN).
    let meaning = match level {
        i32::MIN..=-1 => "no restriction: tracepoint events open without CAP_PERFMON",
        0 => "tracepoint events need CAP_PERFMON",
        1 => "tracepoint and CPU-wide events need CAP_PERFMON",
        2 => "tracepoint events and kernel profiling need CAP_PERFMON",
        _ => "every perf_event_open needs CAP_PERFMON (Debian's level 3 and up)",
    };
    Ok((level, meaning))
}

/// Without CAP_PERFMON, `perf_event_paranoid` decides whether tracepoint events open: named.
fn paranoid_note(missing: &[Capability]) -> String {
    if !missing.contains(&CAP_PERFMON) {
        return String::new();
    }
    match perf_event_paranoid() {
        Ok((level, meaning)) => format!(" (perf_event_paranoid is {level}: {meaning})"),
        Err(_) => String::new(),
    }
}

/// Lockdown and perf_event_paranoid, as a suffix for an error the kernel's policy caused.
pub fn policy_suffix() -> String {
    let lockdown = lockdown().unwrap_or_else(|why| why.split(':').next().unwrap_or("unknown").to_string());
    let paranoid = perf_event_paranoid().map_or_else(|_| "unknown".to_string(), |(l, _)| l.to_string());
    format!(" (kernel lockdown: {lockdown}; perf_event_paranoid: {paranoid})")
}

/// The diagnosis of `call` failing with `errno`, when that is a refusal: EPERM (or, for
/// perf_event_open, EACCES too). Computed by the caller of the syscall, once, as the error is made.
pub fn refusal_hint(call: Syscall, errno: Option<i32>) -> Option<String> {
    let refused = match call {
        Syscall::Bpf => errno == Some(libc::EPERM),
        Syscall::PerfEventOpen => matches!(errno, Some(libc::EPERM | libc::EACCES)),
    };
    refused.then(|| denial_hint(call))
}

/// What to add to an EPERM (or, for perf_event_open, EACCES) error: which of capabilities,
/// seccomp, lockdown or perf_event_paranoid is the likely cause.
pub fn denial_hint(call: Syscall) -> String {
    match effective().map(missing) {
        Ok(m) if m.is_empty() => {}
        Ok(m) => {
            return format!(
                " (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN on kernels before 5.8{})",
                paranoid_note(&m).replace(" (", "; ").replace(')', "")
            )
        }
        Err(_) => return " (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN on kernels before 5.8)".to_string(),
    }
    if blocked(call) {
        let name = match call {
            Syscall::Bpf => "bpf()",
            Syscall::PerfEventOpen => "perf_event_open()",
        };
        return format!(" ({name} {})", blocked_reason(&[name]));
    }
    let has_sys_admin = effective().is_ok_and(|eff| eff & (1u64 << CAP_SYS_ADMIN.bit) != 0);
    if call == Syscall::PerfEventOpen && !has_sys_admin && perf_event_paranoid().is_ok_and(|(level, _)| level >= 3) {
        // Debian's and Ubuntu's kernels add level 3, which reserves every perf_event_open to
        // CAP_SYS_ADMIN (CAP_PERFMON does not count there): a container granted BPF and
        // PERFMON loses classic tracepoints and kprobes, not raw tracepoints or fentry.
        return " (perf_event_paranoid is 3: this kernel allows perf_event_open only with CAP_SYS_ADMIN, \
                which this process does not have; raw tracepoints and fentry/fexit need no perf event)"
            .to_string();
    }
    format!(
        " (the process has the capabilities BPF needs: this kernel's policy refuses the operation{})",
        policy_suffix()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_caps() {
        assert_eq!(missing(0), vec![CAP_BPF, CAP_PERFMON]);
        assert_eq!(missing(1 << 21), vec![]);
        assert_eq!(missing(1 << 39), vec![CAP_PERFMON]);
        assert_eq!(missing((1 << 39) | (1 << 38)), vec![]);
    }

    #[test]
    fn held_parses_a_locked_down_status() {
        let status = "Name:\tktm\nCapInh:\t0000000000000000\nCapPrm:\t0000008000000000\n\
                      CapEff:\t0000008000000000\nCapBnd:\t000000c000000000\nCapAmb:\t0000000000000000\n\
                      NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        let h = Held::parse(status).unwrap();
        assert_eq!(h.effective, 1 << 39);
        assert_eq!(h.permitted, 1 << 39);
        assert_eq!(h.bounding, 3 << 38);
        assert!(h.no_new_privs);
        assert_eq!(h.seccomp, Some(Seccomp::Filter { filters: Some(1) }));
        assert_eq!(h.capability_names(), "CAP_BPF");
        let none = Held { effective: 0, ..h.clone() };
        assert_eq!(none.capability_names(), "none");
        let many = Held { effective: 0x1ff_feff_ffff, ..h };
        assert_eq!(many.capability_names(), "CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN+37 more");
        assert!(Held::parse("Name:\tx\n").is_err());
    }

    #[test]
    fn seccomp_and_lockdown_parse() {
        assert_eq!(parse_seccomp("Name:\tx\nSeccomp:\t0\n"), Some(Seccomp::Disabled));
        assert_eq!(parse_seccomp("Seccomp:\t2\nSeccomp_filters:\t3\n"), Some(Seccomp::Filter { filters: Some(3) }));
        assert_eq!(parse_seccomp("Seccomp:\t2\n"), Some(Seccomp::Filter { filters: None }));
        assert_eq!(parse_seccomp("Seccomp:\tx\n"), None);
        assert_eq!(parse_seccomp(""), None);
        assert_eq!(parse_lockdown("none [integrity] confidentiality\n").as_deref(), Some("integrity"));
        assert_eq!(parse_lockdown("[none] integrity confidentiality\n").as_deref(), Some("none"));
        assert_eq!(parse_lockdown("none"), None);
        assert_eq!(parse_lockdown("]["), None);
        assert_eq!(parse_lockdown("[]"), None);
    }
}
