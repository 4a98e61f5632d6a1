//! The feature table: every kernel feature the toolkit chooses by, probed once per process with
//! a trivial program and raw syscalls (as libbpf's `features.c`), one cache, one result type.
//!
//! A feature is known by trying it: kernel versions lie (backports, distro configs, lockdown),
//! a real load and attach does not. Each feature also names the oldest kernel expected to have
//! it ([`Feature::since`]) and what a kernel of that age may still lack it for ([`Needs`]), so
//! that a test can tell a fallback the kernel calls for from a feature that went missing (as
//! cilium's `checkVersion`): tests/toolkit.rs asserts it in every guest of the matrix.
//!
//! The table and its cache are here, with the probes that need only `load` and `sys`: the link
//! kinds, which `attachment` asks to choose its call, and whether tracing programs are
//! allowed. The mechanism rows are tried by really attaching, so they are probed above
//! `attachment`, by `mechanisms` (whose [`probe`](super::probe) answers every row), into the
//! same cache.

use super::point::Mechanism;
use crate::error::Unsupported;
use crate::insn::{Asm, R0};
use crate::load::{self, ProgramSpec};
use crate::sys::bpf::{self, AttachType, ProgType};
use crate::sys::AsFd;
use crate::Result;
use std::path::Path;
use std::sync::OnceLock;

/// `return 0`: what a feature probe loads.
pub(super) fn empty_program() -> Result<crate::insn::Program> {
    let mut a = Asm::new();
    a.mov64(R0, 0).exit();
    Ok(a.finish()?)
}

/// A BPF link kind, so that attaching chooses its way by what the kernel has rather than by
/// whichever call happened to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// `BPF_LINK_CREATE` with `BPF_PERF_EVENT` (5.15+); else `PERF_EVENT_IOC_SET_BPF`.
    PerfEvent,
    /// `BPF_LINK_CREATE` for fentry/fexit (5.11+); else `BPF_RAW_TRACEPOINT_OPEN`.
    Tracing,
    /// `BPF_LINK_CREATE` with `BPF_TRACE_KPROBE_MULTI` (5.18+ with `CONFIG_FPROBE`): a kprobe
    /// program on a function with no perf event. There is no older call for it: a plan goes on
    /// to its next alternative (a classic kprobe, which needs `perf_event_open`).
    KprobeMulti,
}

impl Link {
    /// What is used where this link kind is missing (every supported kernel has it).
    pub fn fallback(self) -> &'static str {
        match self {
            Link::PerfEvent => "ioctl(PERF_EVENT_IOC_SET_BPF)",
            Link::Tracing => "bpf(BPF_RAW_TRACEPOINT_OPEN)",
            Link::KprobeMulti => "the plan's next alternative (a classic kprobe: perf_event_open)",
        }
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Attaching with this mechanism: a trivial program loaded and attached on `vfs_read`
    /// (`sys_enter` for the raw tracepoint, `syscalls/sys_enter_getppid` for the classic one).
    Mechanism(Mechanism),
    /// A link kind.
    Link(Link),
    /// Tracing (fentry/fexit) programs at all, asked without reading BTF: a tracing program
    /// naming no function (BTF id 0) reaches the verifier and is refused there with EINVAL
    /// where tracing programs are allowed; a policy that forbids them (lockdown, an LSM,
    /// missing capabilities) answers EPERM first. One `bpf()` call tells the two apart, where
    /// resolving the traced function first would read and index megabytes of vmlinux BTF
    /// only to be refused.
    TracingPrograms,
}

/// Every mechanism, in the order `ktm probe` lists them.
pub const MECHANISMS: [Mechanism; 8] = [
    Mechanism::Fentry,
    Mechanism::Fexit,
    Mechanism::Kprobe,
    Mechanism::Kretprobe,
    Mechanism::KprobeMulti,
    Mechanism::KretprobeMulti,
    Mechanism::RawTracepoint,
    Mechanism::Tracepoint,
];

/// Every link kind.
pub const LINKS: [Link; 3] = [Link::PerfEvent, Link::Tracing, Link::KprobeMulti];

/// A kernel version, `major.minor`.
pub type Version = (u32, u32);

/// What a kernel new enough for a feature may still lack it for: its build or its policy. Each
/// is seen on the running host by something other than the feature's own probe (or, for
/// `Fprobe`, by the one errno that means it), so a test can be exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// `CONFIG_KPROBES` (with kprobe events): the kprobe PMU or tracefs `kprobe_events`.
    Kprobes,
    /// `CONFIG_FPROBE`: the kprobe_multi link answers EOPNOTSUPP without it.
    Fprobe,
    /// Kernel BTF (`CONFIG_DEBUG_INFO_BTF`): `/sys/kernel/btf/vmlinux`, for fentry targets.
    Btf,
    /// No kernel lockdown: a locked-down kernel (integrity or confidentiality) refuses tracing
    /// programs with EPERM.
    NoLockdown,
}

impl Needs {
    /// Why this host does not meet the need, if it does not.
    pub fn unmet(self) -> Option<String> {
        match self {
            Needs::Kprobes => {
                let pmu = Path::new(super::kprobe::KPROBE_PMU);
                let events = super::tracefs::root().ok().map(|r| r.join("kprobe_events"));
                (!pmu.exists() && !events.as_deref().is_some_and(Path::exists))
                    .then(|| format!("built without kprobes: no {}, no tracefs kprobe_events", pmu.display()))
            }
            Needs::Fprobe => match link(Link::KprobeMulti) {
                Err(u) if u.errno == Some(libc::EOPNOTSUPP) => Some(format!("built without CONFIG_FPROBE ({u})")),
                _ => None,
            },
            Needs::Btf => {
                let vmlinux = Path::new(crate::btf::SYSFS_BTF_DIR).join("vmlinux");
                (!vmlinux.exists()).then(|| format!("no kernel BTF ({} is missing)", vmlinux.display()))
            }
            Needs::NoLockdown => match crate::privileges::lockdown() {
                Ok(mode) if mode != "none" => Some(format!("kernel lockdown is {mode}")),
                _ => None,
            },
        }
    }
}

impl Feature {
    /// Every row, mechanisms first.
    pub fn all() -> impl Iterator<Item = Feature> {
        MECHANISMS
            .into_iter()
            .map(Feature::Mechanism)
            .chain(LINKS.into_iter().map(Feature::Link))
            .chain([Feature::TracingPrograms])
    }

    /// The row's place in the cache.
    fn index(self) -> usize {
        match self {
            Feature::Mechanism(m) => MECHANISMS.iter().position(|&x| x == m).unwrap_or(0),
            Feature::Link(l) => MECHANISMS.len() + LINKS.iter().position(|&x| x == l).unwrap_or(0),
            Feature::TracingPrograms => MECHANISMS.len() + LINKS.len(),
        }
    }

    /// The name `ktm probe` and the tests show.
    pub fn name(self) -> String {
        match self {
            Feature::Mechanism(m) => m.name().to_string(),
            Feature::Link(l) => format!("{l:?} link"),
            Feature::TracingPrograms => "tracing programs".into(),
        }
    }

    /// The oldest kernel expected to have this feature on `arch` (`std::env::consts::ARCH`):
    /// from the kernel's history, each source in a comment below. None: an
    /// architecture KTM does not know.
    pub fn since(self, arch: &str) -> Option<Version> {
        let arm64 = match arch {
            "x86_64" => false,
            "aarch64" => true,
            _ => return None,
        };
        // fentry/fexit: BPF trampolines on x86-64 came in 5.5; arm64 got trampolines in 6.0
        // but could attach them to kernel functions only with ftrace direct calls, 6.4
        // (2aa6ac03516d "arm64: ftrace: Add direct call support"; Debian's arm64 6.1 has none).
        let tracing = if arm64 { (6, 4) } else { (5, 5) };
        Some(match self {
            Feature::Mechanism(Mechanism::Tracepoint) => (4, 7),
            Feature::Mechanism(Mechanism::RawTracepoint) => (4, 17),
            Feature::Mechanism(Mechanism::Kprobe | Mechanism::Kretprobe) => (4, 1),
            Feature::Mechanism(Mechanism::Fentry | Mechanism::Fexit) | Feature::TracingPrograms => tracing,
            // kprobe_multi: fprobe-based links came in 5.18 (x86-64); arm64's fprobe needed
            // DYNAMIC_FTRACE_WITH_REGS, which it lacks, until fprobe moved onto the function
            // graph tracer in 6.14.
            Feature::Mechanism(Mechanism::KprobeMulti | Mechanism::KretprobeMulti)
            | Feature::Link(Link::KprobeMulti) => {
                if arm64 {
                    (6, 14)
                } else {
                    (5, 18)
                }
            }
            Feature::Link(Link::PerfEvent) => (5, 15),
            Feature::Link(Link::Tracing) => tracing.max((5, 11)),
        })
    }

    /// What a kernel at least [`Feature::since`] may still lack this feature for.
    pub fn needs(self) -> &'static [Needs] {
        match self {
            Feature::Mechanism(Mechanism::Kprobe | Mechanism::Kretprobe) => &[Needs::Kprobes],
            Feature::Mechanism(Mechanism::KprobeMulti | Mechanism::KretprobeMulti)
            | Feature::Link(Link::KprobeMulti) => &[Needs::Fprobe],
            Feature::Mechanism(Mechanism::Fentry | Mechanism::Fexit) | Feature::Link(Link::Tracing) => {
                &[Needs::NoLockdown, Needs::Btf]
            }
            Feature::TracingPrograms => &[Needs::NoLockdown],
            Feature::Mechanism(Mechanism::Tracepoint | Mechanism::RawTracepoint) | Feature::Link(Link::PerfEvent) => {
                &[]
            }
        }
    }
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// The one cache: a row probed once per process, on first use.
static TABLE: [OnceLock<std::result::Result<(), Unsupported>>; MECHANISMS.len() + LINKS.len() + 1] =
    [const { OnceLock::new() }; MECHANISMS.len() + LINKS.len() + 1];

/// Row `feature` of the cache, asked of `probe` on its first use in this process.
pub(super) fn cached(
    feature: Feature,
    probe: impl FnOnce() -> std::result::Result<(), Unsupported>,
) -> std::result::Result<(), Unsupported> {
    TABLE[feature.index()].get_or_init(probe).clone()
}

/// Whether this kernel has the link kind, or why it is taken not to (with the kernel's errno).
pub fn link(link: Link) -> std::result::Result<(), Unsupported> {
    cached(Feature::Link(link), || match link {
        Link::PerfEvent => probe_perf_link(),
        Link::Tracing => probe_tracing_link(),
        Link::KprobeMulti => probe_kprobe_multi_link(),
    })
}

/// Whether tracing programs are allowed at all: [`Feature::TracingPrograms`].
pub fn tracing_programs() -> std::result::Result<(), Unsupported> {
    cached(Feature::TracingPrograms, probe_tracing_programs)
}

/// A trivial program of `spec`'s kind, loaded; the error says "cannot probe".
fn load_probe(spec: &ProgramSpec) -> std::result::Result<load::LoadedProgram, Unsupported> {
    load::program(spec, |_| None).map_err(|e| Unsupported::from_error(format!("cannot probe: {e}"), &e))
}

fn program_or_unsupported() -> std::result::Result<crate::insn::Program, Unsupported> {
    empty_program().map_err(|e| Unsupported::from_error(e.to_string(), &e))
}

/// libbpf's `probe_perf_link`: a trivial tracepoint program linked to perf fd -1 is refused
/// with EBADF where the kernel knows `BPF_PERF_EVENT` (it got as far as the fd), EINVAL where not.
fn probe_perf_link() -> std::result::Result<(), Unsupported> {
    let spec = ProgramSpec {
        name: "ktm_probe_plink".into(),
        prog_type: ProgType::Tracepoint,
        program: program_or_unsupported()?,
        attach: None,
    };
    let prog = load_probe(&spec)?;
    match bpf::link_create(prog.as_fd(), -1, AttachType::PerfEvent) {
        Err(e) if e.errno() == Some(libc::EBADF) => Ok(()),
        Ok(_) => Ok(()),
        Err(e) => Err(Unsupported::from_error(e.to_string(), &e)),
    }
}

/// A trivial fentry program on `vfs_read`, linked with `BPF_LINK_CREATE` and at once released.
fn probe_tracing_link() -> std::result::Result<(), Unsupported> {
    tracing_programs().map_err(|u| u.context("cannot probe: tracing programs are refused"))?;
    let func = crate::btf::find_kernel_func("vfs_read")
        .map_err(|e| Unsupported::new(format!("cannot probe: no BTF for function vfs_read: {e}")))?;
    let spec = ProgramSpec {
        name: "ktm_probe_tlink".into(),
        prog_type: ProgType::Tracing,
        program: program_or_unsupported()?,
        attach: Some((AttachType::TraceFentry, func.type_id)),
    };
    let prog = load_probe(&spec)?;
    bpf::link_create(prog.as_fd(), 0, AttachType::TraceFentry)
        .map(drop)
        .map_err(|e| Unsupported::from_error(e.to_string(), &e))
}

/// A trivial kprobe program, loaded for `BPF_TRACE_KPROBE_MULTI`, linked to `vfs_read` and at
/// once released. A kernel before 5.18 loads the program (kprobe programs ignored the expected
/// attach type) and refuses the unknown link with EINVAL; one built without `CONFIG_FPROBE`
/// answers EOPNOTSUPP (Debian's 6.1 kernels, amd64 and arm64, and arm64 6.12, whose ftrace has
/// no `DYNAMIC_FTRACE_WITH_REGS`, which fprobe needs before 6.14).
fn probe_kprobe_multi_link() -> std::result::Result<(), Unsupported> {
    let spec = ProgramSpec {
        name: "ktm_probe_kmulti".into(),
        prog_type: ProgType::Kprobe,
        program: program_or_unsupported()?,
        attach: Some((AttachType::TraceKprobeMulti, 0)),
    };
    let prog = load_probe(&spec)?;
    match bpf::link_create_kprobe_multi(prog.as_fd(), "vfs_read", false) {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => {
            Err(Unsupported::from_error(format!("this kernel is built without CONFIG_FPROBE ({e})"), &e))
        }
        Err(e) if e.errno() == Some(libc::EINVAL) => Err(Unsupported::from_error(
            format!("this kernel has no BPF_TRACE_KPROBE_MULTI link (Linux 5.18+) ({e})"),
            &e,
        )),
        Err(e) => Err(Unsupported::from_error(e.to_string(), &e)),
    }
}

/// See [`Feature::TracingPrograms`]. Only EPERM counts as a refusal: any other answer (the
/// expected EINVAL, or a failure to build the probe) leaves the question to the real load.
fn probe_tracing_programs() -> std::result::Result<(), Unsupported> {
    let Ok(program) = empty_program() else { return Ok(()) };
    let spec = ProgramSpec {
        name: "ktm_probe_tracing".into(),
        prog_type: ProgType::Tracing,
        program,
        attach: Some((AttachType::TraceFentry, 0)),
    };
    match load::program(&spec, |_| None) {
        Err(e) if e.errno() == Some(libc::EPERM) => Err(Unsupported::from_error(e.to_string(), &e)),
        _ => Ok(()),
    }
}

/// The running kernel's `major.minor`, from `uname`.
pub fn kernel_version() -> Option<Version> {
    // SAFETY: uname fills the struct it is given; zeroed is a valid utsname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates release.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned();
    parse_version(&release)
}

/// `6.12.43+deb13-amd64` → `(6, 12)`.
pub fn parse_version(release: &str) -> Option<Version> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_its_own_cell() {
        let mut seen: Vec<usize> = Feature::all().map(Feature::index).collect();
        assert_eq!(seen.len(), TABLE.len());
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), TABLE.len());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("6.12.43+deb13-amd64"), Some((6, 12)));
        assert_eq!(parse_version("5.10.0-32-cloud-amd64"), Some((5, 10)));
        assert_eq!(parse_version("7.2"), Some((7, 2)));
        assert_eq!(parse_version("x"), None);
        assert_eq!(Feature::Mechanism(Mechanism::Fentry).since("aarch64"), Some((6, 4)));
        assert_eq!(Feature::Link(Link::Tracing).since("x86_64"), Some((5, 11)));
        assert_eq!(Feature::Mechanism(Mechanism::Tracepoint).since("riscv64"), None);
        for f in Feature::all() {
            assert!(f.since("x86_64") <= f.since("aarch64"), "{f}");
        }
    }
}
