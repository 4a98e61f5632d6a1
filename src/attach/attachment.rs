//! Attaching a loaded program at a point: the attachment, a handle that detaches on drop, held
//! by a BPF link where the kernel has that kind of link, else by the older call.

use super::features::{self, Link};
use super::kprobe;
use super::kprobe_multi;
use super::point::{AttachPoint, Mechanism};
use super::tracefs::tracepoint_id;
use crate::error::Unsupported;
use crate::load::LoadedProgram;
use crate::sys::bpf::{self, AttachType};
use crate::sys::{perf, AsFd, AsRawFd, OwnedFd};
use crate::Result;

/// How the kernel holds the attachment (all detach when closed).
#[derive(Debug)]
enum Hold {
    /// A BPF link fd (fentry link, raw tracepoint, kprobe_multi link, or perf-event link).
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

    fn instead_of(mut self, link: Link, why: &Unsupported) -> Self {
        let note = format!("{}, because {link:?} link is unavailable: {why}", link.fallback());
        log::debug!("{}: attached by {note}", self.point);
        self.fallback = Some(note);
        self
    }
}

/// Attaches `prog` (loaded for `point.prog_type()`) at `point`.
pub fn attach_program(prog: &LoadedProgram, point: &AttachPoint) -> Result<Attachment> {
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
                    with(Hold::Link { _link: link, _perf: None }, None).map(|a| a.instead_of(Link::Tracing, &why))
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
        AttachPoint::KprobeMulti { func, ret } => {
            with(Hold::Link { _link: kprobe_multi::link(pfd, func, *ret)?, _perf: None }, None)
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
            with(Hold::PerfIoctl(perf)).map(|a| a.instead_of(Link::PerfEvent, &why))
        }
    }
}
