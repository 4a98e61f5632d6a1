//! The mechanisms' rows of the feature table, each tried for real: a trivial program loaded and
//! attached the way a plan attaches it. They sit above `attachment` (the rest of the table sits
//! below it, since `attachment` asks the table which link kind to use) and share the table's
//! one cache.

use super::attachment::attach_program;
use super::features::{self, Feature};
use super::point::{AttachPoint, Mechanism};
use crate::error::Unsupported;
use crate::load::{self, ProgramSpec};
use crate::Result;

/// Whether this kernel has `feature`, or why it is taken not to (with the kernel's errno):
/// every row of the table, each probed once per process.
pub fn probe(feature: Feature) -> std::result::Result<(), Unsupported> {
    match feature {
        Feature::Mechanism(m) => mechanism(m),
        Feature::Link(l) => features::link(l),
        Feature::TracingPrograms => features::tracing_programs(),
    }
}

/// [`probe`] of a mechanism.
pub fn mechanism(m: Mechanism) -> std::result::Result<(), Unsupported> {
    features::cached(Feature::Mechanism(m), || probe_mechanism(m))
}

/// Each mechanism's row of the feature table, as `ktm probe` lists them.
#[derive(Clone, Copy, Debug)]
pub struct MechanismTable;

impl MechanismTable {
    /// Whether `m` worked, or why not (probed once per process).
    pub fn get(&self, m: Mechanism) -> std::result::Result<(), Unsupported> {
        mechanism(m)
    }
}

/// The mechanisms' rows of the feature table (each probed on first use, once per process).
pub fn mechanisms() -> &'static MechanismTable {
    &MechanismTable
}

/// The mechanism tried for real: a trivial program loaded for `vfs_read` (or a syscall
/// tracepoint) and attached through [`attach_program`], then released.
fn probe_mechanism(m: Mechanism) -> std::result::Result<(), Unsupported> {
    let point = match m {
        Mechanism::Fentry => AttachPoint::fentry("vfs_read", false),
        Mechanism::Fexit => AttachPoint::fentry("vfs_read", true),
        Mechanism::Kprobe => AttachPoint::kprobe("vfs_read", false),
        Mechanism::Kretprobe => AttachPoint::kprobe("vfs_read", true),
        Mechanism::KprobeMulti => AttachPoint::kprobe_multi("vfs_read", false),
        Mechanism::KretprobeMulti => AttachPoint::kprobe_multi("vfs_read", true),
        Mechanism::RawTracepoint => AttachPoint::raw_tracepoint("sys_enter"),
        Mechanism::Tracepoint => AttachPoint::tracepoint("syscalls", "sys_enter_getppid"),
    };
    let tried = || -> Result<()> {
        let spec = ProgramSpec {
            name: format!("ktm_probe_{}", m.name()),
            prog_type: point.prog_type(),
            program: features::empty_program()?,
            attach: point.load_target()?,
        };
        let prog = load::program(&spec, |_| None)?;
        let _attached = attach_program(&prog, &point)?;
        Ok(())
    };
    tried().map_err(|e| match e {
        crate::Error::Unsupported(u) => u,
        e => Unsupported::from_error(e.to_string(), &e),
    })
}
