//! Attaching loaded programs to kernel events, each attachment a handle that detaches on drop.
//!
//! Five mechanisms, from cheapest per event to most widely available: fentry/fexit (BTF
//! trampolines), raw tracepoints, classic tracepoints (perf events on tracefs ids), and
//! kprobes (the perf kprobe PMU, else tracefs `kprobe_events`). A BPF link is used where the
//! kernel has one for the attach type, else the older perf ioctl.

mod chain;
pub mod features;
mod kprobe;
mod tracefs;

/// The old name of [`program`], kept until `benches/` call `attach::program`.
pub use self::program as attach;
pub use chain::{attach_plan, Alternative, Attached, Plan, PlanReport};
pub use features::Link;
pub use tracefs::{
    field as tracepoint_field, parse_field as parse_tracepoint_format, root as tracefs_root, tracepoint_id,
};

use crate::load::LoadedProgram;
use crate::sys::bpf::{self, AttachType, ProgType};
use crate::sys::{perf, AsFd, AsRawFd, OwnedFd};
use crate::{Error, Result};
use std::fmt;

/// How a program is hooked into the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
    RawTracepoint,
    Tracepoint,
}

impl Mechanism {
    /// The name used in status, metrics and the README matrix.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Fentry => "fentry",
            Mechanism::Fexit => "fexit",
            Mechanism::Kprobe => "kprobe",
            Mechanism::Kretprobe => "kretprobe",
            Mechanism::RawTracepoint => "raw_tracepoint",
            Mechanism::Tracepoint => "tracepoint",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A place to attach a program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttachPoint {
    /// A classic tracepoint `category/name` (tracefs `events/category/name`).
    Tracepoint { category: String, name: String },
    /// A raw tracepoint by name (`sys_enter`, `mm_filemap_add_to_page_cache`).
    RawTracepoint { name: String },
    /// A kernel function's entry or (with `ret`) return, through kprobes.
    Kprobe { func: String, ret: bool },
    /// A kernel function's entry or (with `exit`) return, through a BTF trampoline.
    Fentry { func: String, exit: bool },
}

impl AttachPoint {
    /// `category/name` tracepoint.
    pub fn tracepoint(category: &str, name: &str) -> Self {
        AttachPoint::Tracepoint { category: category.into(), name: name.into() }
    }

    /// Raw tracepoint.
    pub fn raw_tracepoint(name: &str) -> Self {
        AttachPoint::RawTracepoint { name: name.into() }
    }

    /// kprobe (`ret` false) or kretprobe.
    pub fn kprobe(func: &str, ret: bool) -> Self {
        AttachPoint::Kprobe { func: func.into(), ret }
    }

    /// fentry (`exit` false) or fexit.
    pub fn fentry(func: &str, exit: bool) -> Self {
        AttachPoint::Fentry { func: func.into(), exit }
    }

    /// The mechanism this point uses.
    pub fn mechanism(&self) -> Mechanism {
        match self {
            AttachPoint::Tracepoint { .. } => Mechanism::Tracepoint,
            AttachPoint::RawTracepoint { .. } => Mechanism::RawTracepoint,
            AttachPoint::Kprobe { ret: false, .. } => Mechanism::Kprobe,
            AttachPoint::Kprobe { ret: true, .. } => Mechanism::Kretprobe,
            AttachPoint::Fentry { exit: false, .. } => Mechanism::Fentry,
            AttachPoint::Fentry { exit: true, .. } => Mechanism::Fexit,
        }
    }

    /// The program type a program for this point must be loaded as.
    pub fn prog_type(&self) -> ProgType {
        match self {
            AttachPoint::Tracepoint { .. } => ProgType::Tracepoint,
            AttachPoint::RawTracepoint { .. } => ProgType::RawTracepoint,
            AttachPoint::Kprobe { .. } => ProgType::Kprobe,
            AttachPoint::Fentry { .. } => ProgType::Tracing,
        }
    }

    /// For fentry/fexit, the attach type and BTF id of the function, found in kernel BTF.
    pub fn load_target(&self) -> Result<Option<(AttachType, u32)>> {
        match self {
            AttachPoint::Fentry { func, exit } => {
                if let Some(why) = features::tracing_refused() {
                    return Err(Error::Other(format!("tracing programs are refused: {why}")));
                }
                let loc = crate::btf::find_kernel_func(func)
                    .map_err(|e| Error::Other(format!("no BTF for function {func}: {e}")))?;
                if let Some(module) = loc.module {
                    return Err(Error::Other(format!(
                        "function {func} is in module {module}; fentry on module functions is not supported"
                    )));
                }
                Ok(Some((if *exit { AttachType::TraceFexit } else { AttachType::TraceFentry }, loc.type_id)))
            }
            _ => Ok(None),
        }
    }

    /// The ELF section name libbpf would give a program for this point.
    pub fn section(&self) -> String {
        match self {
            AttachPoint::Tracepoint { category, name } => format!("tracepoint/{category}/{name}"),
            AttachPoint::RawTracepoint { name } => format!("raw_tracepoint/{name}"),
            AttachPoint::Kprobe { func, ret: false } => format!("kprobe/{func}"),
            AttachPoint::Kprobe { func, ret: true } => format!("kretprobe/{func}"),
            AttachPoint::Fentry { func, exit: false } => format!("fentry/{func}"),
            AttachPoint::Fentry { func, exit: true } => format!("fexit/{func}"),
        }
    }
}

impl fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.section())
    }
}

/// How the kernel holds the attachment (all detach when closed).
#[derive(Debug)]
enum Hold {
    /// A BPF link fd (fentry link, raw tracepoint, or perf-event link).
    Link { _link: OwnedFd, _perf: Option<OwnedFd> },
    /// A perf event with the program set by ioctl (kernels before 5.15).
    PerfIoctl(#[allow(dead_code)] OwnedFd),
}

/// An attached program. Dropping it detaches the program (and removes a tracefs kprobe it
/// created).
#[derive(Debug)]
#[must_use = "dropping an Attachment detaches the program"]
pub struct Attachment {
    point: AttachPoint,
    // Field order is drop order: the perf event must close before its tracefs kprobe is removed.
    hold: Hold,
    _kprobe_event: Option<kprobe::KprobeEvent>,
    /// Why the preferred link was not used, when it was not.
    fallback: Option<String>,
}

impl Attachment {
    /// Where it is attached.
    pub fn point(&self) -> &AttachPoint {
        &self.point
    }

    /// Whether the kernel holds it through a BPF link (else a perf ioctl).
    pub fn via_link(&self) -> bool {
        matches!(self.hold, Hold::Link { .. })
    }

    /// Why the preferred link kind was not used and what was used instead, if so.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    fn instead_of(mut self, link: Link, why: &str) -> Self {
        let note = format!("{}, because {link:?} link is unavailable: {why}", link.fallback());
        log::debug!("{}: attached by {note}", self.point);
        self.fallback = Some(note);
        self
    }
}

/// Attaches `prog` (loaded for `point.prog_type()`) at `point`.
pub fn program(prog: &LoadedProgram, point: &AttachPoint) -> Result<Attachment> {
    let pfd = prog.as_fd();
    let with = |hold, ev| Ok(Attachment { point: point.clone(), hold, _kprobe_event: ev, fallback: None });
    match point {
        AttachPoint::RawTracepoint { name } => {
            let link = bpf::raw_tracepoint_open(Some(name), pfd).map_err(|e| match e.errno() {
                Some(libc::ENOENT) => e.context(format!("raw tracepoint {name} does not exist on this kernel")),
                _ => e,
            })?;
            with(Hold::Link { _link: link, _perf: None }, None)
        }
        AttachPoint::Fentry { .. } => {
            let t =
                if point.mechanism() == Mechanism::Fexit { AttachType::TraceFexit } else { AttachType::TraceFentry };
            // LINK_CREATE for tracing programs came in 5.11; RAW_TRACEPOINT_OPEN works from 5.5.
            match features::link(Link::Tracing) {
                Ok(()) => with(Hold::Link { _link: bpf::link_create(pfd, 0, t)?, _perf: None }, None),
                Err(why) => {
                    let link = bpf::raw_tracepoint_open(None, pfd)?;
                    with(Hold::Link { _link: link, _perf: None }, None).map(|a| a.instead_of(Link::Tracing, why))
                }
            }
        }
        AttachPoint::Tracepoint { category, name } => {
            let id = tracepoint_id(category, name)?;
            let perf = perf::open_tracepoint(id, &format!("tracepoint {category}/{name}"))?;
            attach_perf(prog, perf, |hold| with(hold, None))
        }
        AttachPoint::Kprobe { func, ret } => {
            let (perf, ev) = kprobe::open_kprobe(func, *ret)?;
            attach_perf(prog, perf, |hold| with(hold, ev))
        }
    }
}

/// Attaches through a perf-event BPF link where the kernel has one (5.15+), else the
/// SET_BPF ioctl; `with` makes the attachment of the hold.
fn attach_perf(
    prog: &LoadedProgram,
    perf: OwnedFd,
    with: impl FnOnce(Hold) -> Result<Attachment>,
) -> Result<Attachment> {
    match features::link(Link::PerfEvent) {
        Ok(()) => {
            let link = bpf::link_create(prog.as_fd(), perf.as_raw_fd(), AttachType::PerfEvent)?;
            with(Hold::Link { _link: link, _perf: Some(perf) })
        }
        Err(why) => {
            perf::set_bpf_and_enable(perf.as_fd(), prog.as_fd())?;
            with(Hold::PerfIoctl(perf)).map(|a| a.instead_of(Link::PerfEvent, why))
        }
    }
}

/// Which mechanisms the operator (or a test) has switched off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub disable_fentry: bool,
    pub disable_kprobe: bool,
    /// Classic and raw tracepoints alike.
    pub disable_tracepoint: bool,
}

impl Policy {
    /// From `KTM_DISABLE_FENTRY=1`, `KTM_DISABLE_KPROBE=1` and `KTM_DISABLE_TRACEPOINT=1`,
    /// which let CI exercise each fallback on kernels where the preferred mechanism works.
    pub fn from_env() -> Policy {
        let on = |k: &str| std::env::var(k).map(|v| v == "1" || v.eq_ignore_ascii_case("true")).unwrap_or(false);
        Policy {
            disable_fentry: on("KTM_DISABLE_FENTRY"),
            disable_kprobe: on("KTM_DISABLE_KPROBE"),
            disable_tracepoint: on("KTM_DISABLE_TRACEPOINT"),
        }
    }

    /// Why `m` may not be used, if it may not.
    pub fn forbids(&self, m: Mechanism) -> Option<&'static str> {
        match m {
            Mechanism::Fentry | Mechanism::Fexit if self.disable_fentry => Some("disabled by KTM_DISABLE_FENTRY"),
            Mechanism::Kprobe | Mechanism::Kretprobe if self.disable_kprobe => Some("disabled by KTM_DISABLE_KPROBE"),
            Mechanism::Tracepoint | Mechanism::RawTracepoint if self.disable_tracepoint => {
                Some("disabled by KTM_DISABLE_TRACEPOINT")
            }
            _ => None,
        }
    }
}
