//! Fallback chains: an ordered list of ways to observe one event, tried until one attaches.

use super::{attach, AttachPoint, Attachment, Policy};
use crate::insn::{MapRef, Program};
use crate::load::{self, LoadedProgram, ProgramSpec};
use crate::Result;
use std::fmt;

/// One way to observe the event: where to attach and how to build the program for that
/// mechanism's context (tracepoint record, raw arguments, pt_regs, or BTF arguments).
pub struct Alternative {
    pub point: AttachPoint,
    pub build: Box<dyn Fn() -> Result<Program> + Send + Sync>,
}

impl Alternative {
    /// An alternative whose program comes from `build`.
    pub fn new(
        point: AttachPoint,
        build: impl Fn() -> Result<Program> + Send + Sync + 'static,
    ) -> Self {
        Alternative {
            point,
            build: Box::new(build),
        }
    }
}

impl fmt::Debug for Alternative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alternative({})", self.point)
    }
}

/// The alternatives for one probe, preferred first.
#[derive(Debug)]
pub struct Plan {
    /// Names the probe in reports and in the loaded programs' names.
    pub name: String,
    pub alternatives: Vec<Alternative>,
}

/// A program loaded and attached by a plan.
#[derive(Debug)]
#[must_use = "dropping Attached detaches the program"]
pub struct Attached {
    pub attachment: Attachment,
    pub program: LoadedProgram,
}

/// What happened to each alternative of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanReport {
    pub name: String,
    /// The point that attached, if any.
    pub attached: Option<AttachPoint>,
    /// Each alternative tried before it (or all of them), with why it failed.
    pub failures: Vec<(AttachPoint, String)>,
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attached {
            Some(p) => write!(f, "{}: {} via {}", self.name, p.mechanism(), p)?,
            None => write!(f, "{}: not attached", self.name)?,
        }
        for (p, why) in &self.failures {
            write!(f, "; {p} failed: {why}")?;
        }
        Ok(())
    }
}

/// Tries the plan's alternatives in order; the first that builds, loads and attaches wins.
pub fn attach_plan(
    plan: &Plan,
    policy: &Policy,
    fd_of: &dyn Fn(MapRef) -> Option<i32>,
) -> (Option<Attached>, PlanReport) {
    let mut report = PlanReport {
        name: plan.name.clone(),
        attached: None,
        failures: Vec::new(),
    };
    for alt in &plan.alternatives {
        if let Some(why) = policy.forbids(alt.point.mechanism()) {
            report.failures.push((alt.point.clone(), why.to_string()));
            continue;
        }
        match try_one(plan, alt, fd_of) {
            Ok(attached) => {
                log::debug!("{}: attached {}", plan.name, alt.point);
                report.attached = Some(alt.point.clone());
                return (Some(attached), report);
            }
            Err(e) => {
                log::debug!("{}: {} failed: {e}", plan.name, alt.point);
                report.failures.push((alt.point.clone(), e.to_string()));
            }
        }
    }
    (None, report)
}

fn try_one(
    plan: &Plan,
    alt: &Alternative,
    fd_of: &dyn Fn(MapRef) -> Option<i32>,
) -> Result<Attached> {
    let spec = ProgramSpec {
        name: plan.name.clone(),
        prog_type: alt.point.prog_type(),
        program: (alt.build)()?,
        attach: alt.point.load_target()?,
    };
    let program = load::load(&spec, fd_of)?;
    let attachment = attach(&program, &alt.point)?;
    Ok(Attached {
        attachment,
        program,
    })
}
