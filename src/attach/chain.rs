//! Fallback chains: an ordered list of ways to observe one event, tried until one attaches.

use super::attachment::{self, Attachment};
use super::fires::{self, Exercise, Verdict};
use super::point::{AttachPoint, Policy};
use crate::error::Unsupported;
use crate::insn::{MapRef, Program};
use crate::load::{self, LoadedProgram, ProgramSpec};
use crate::Result;
use std::fmt;

/// A program builder for one attach point's context (tracepoint record, raw arguments,
/// pt_regs, or BTF arguments).
pub type Build = Box<dyn Fn() -> Result<Program> + Send + Sync>;

/// One way to observe the event: one or more programs (entry and exit, say) that must all
/// attach for the alternative to count.
pub struct Alternative {
    /// The first part's point names the alternative.
    pub point: AttachPoint,
    pub build: Build,
    /// Further parts, attached after the first.
    pub more: Vec<(AttachPoint, Build)>,
}

impl Alternative {
    /// An alternative of one program.
    pub fn new(point: AttachPoint, build: impl Fn() -> Result<Program> + Send + Sync + 'static) -> Self {
        Alternative { point, build: Box::new(build), more: Vec::new() }
    }

    /// Adds a program that must attach together with the first.
    pub fn and(mut self, point: AttachPoint, build: impl Fn() -> Result<Program> + Send + Sync + 'static) -> Self {
        self.more.push((point, Box::new(build)));
        self
    }

    /// Every part, first part first.
    pub fn parts(&self) -> impl Iterator<Item = (&AttachPoint, &Build)> {
        std::iter::once((&self.point, &self.build)).chain(self.more.iter().map(|(p, b)| (p, b)))
    }
}

impl fmt::Debug for Alternative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alternative({}", self.point)?;
        for (p, _) in &self.more {
            write!(f, " + {p}")?;
        }
        f.write_str(")")
    }
}

/// The alternatives for one probe, preferred first.
#[derive(Debug)]
pub struct Plan {
    /// Names the probe in reports and in the loaded programs' names.
    pub name: String,
    pub alternatives: Vec<Alternative>,
    /// Drives the measured path once, so that each fentry/fexit and kprobe part is trusted
    /// only after a canary on its point saw it run (`fires`). `None`: the plan's builder
    /// vouches that its function probes are on the path.
    pub exercise: Option<Exercise>,
}

/// The programs of one alternative, loaded and attached.
#[derive(Debug)]
#[must_use = "dropping Attached detaches the programs"]
pub struct Attached {
    /// Each part's attachment and program, first part first (a tuple's fields drop in
    /// order, so each attachment goes before its program).
    pub parts: Vec<(Attachment, LoadedProgram)>,
}

/// What happened to each alternative of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanReport {
    pub name: String,
    /// The point that attached, if any.
    pub attached: Option<AttachPoint>,
    /// Each alternative tried before it (or all of them), with why it failed.
    pub failures: Vec<(AttachPoint, String)>,
    /// Each attached part held by a fallback (the perf ioctl, `RAW_TRACEPOINT_OPEN`) rather
    /// than the link kind the kernel lacks, with what was used and why.
    pub fallbacks: Vec<(AttachPoint, String)>,
    /// Each attached function probe whose self-test could not be made, with why.
    pub unchecked: Vec<(AttachPoint, String)>,
    /// Each function probe that loaded and attached but was refused because it never ran on
    /// the measured path (its failure says so too): the status names them.
    pub silent: Vec<AttachPoint>,
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
        for (p, note) in &self.fallbacks {
            write!(f, "; {p} attached by {note}")?;
        }
        for (p, why) in &self.unchecked {
            write!(f, "; {p} not checked to fire: {why}")?;
        }
        Ok(())
    }
}

/// Tries the plan's alternatives in order; the first whose programs all build, load and
/// attach wins.
pub fn attach_plan(
    plan: &Plan,
    policy: &Policy,
    fd_of: &dyn Fn(MapRef) -> Option<i32>,
) -> (Option<Attached>, PlanReport) {
    let mut report = PlanReport {
        name: plan.name.clone(),
        attached: None,
        failures: Vec::new(),
        fallbacks: Vec::new(),
        unchecked: Vec::new(),
        silent: Vec::new(),
    };
    for alt in &plan.alternatives {
        if let Some(why) = alt.parts().find_map(|(p, _)| policy.forbids(p.mechanism())) {
            report.failures.push((alt.point.clone(), why.to_string()));
            continue;
        }
        match try_one(plan, alt, policy, fd_of, &mut report.silent) {
            Ok((attached, unchecked)) => {
                log::debug!("{}: attached {:?}", plan.name, alt);
                report.unchecked = unchecked;
                report.attached = Some(alt.point.clone());
                report.fallbacks = attached
                    .parts
                    .iter()
                    .filter_map(|(a, _)| a.fallback().map(|note| (a.point().clone(), note.to_string())))
                    .collect();
                return (Some(attached), report);
            }
            Err(e) => {
                log::debug!("{}: {:?} failed: {e}", plan.name, alt);
                report.failures.push((alt.point.clone(), e.to_string()));
            }
        }
    }
    (None, report)
}

/// Loads and attaches every part of `alt`, each function probe only after its self-test; also
/// returns the parts whose self-test could not be made.
fn try_one(
    plan: &Plan,
    alt: &Alternative,
    policy: &Policy,
    fd_of: &dyn Fn(MapRef) -> Option<i32>,
    silent: &mut Vec<AttachPoint>,
) -> Result<(Attached, Vec<(AttachPoint, String)>)> {
    let mut parts = Vec::new();
    let mut unchecked = Vec::new();
    for (i, (point, build)) in alt.parts().enumerate() {
        // The target first: where the kernel refuses the mechanism it fails without reading
        // BTF, which a builder may consult (fexit's return value offset).
        let attach = point.load_target()?;
        let spec = ProgramSpec {
            name: if i == 0 { plan.name.clone() } else { format!("{}_{i}", plan.name) },
            prog_type: point.prog_type(),
            program: build()?,
            attach,
        };
        let program = load::program(&spec, fd_of)?;
        // Checked once the program loads (so a kernel that refuses the mechanism pays
        // nothing for the check) and before it attaches (so it never sees the exercise).
        if let Some(exercise) =
            plan.exercise.filter(|_| fires::needs_check(point.mechanism()) && !policy.disable_self_test)
        {
            match fires::check(point, spec.attach, exercise) {
                Verdict::Fired => {}
                Verdict::Silent(why) => {
                    silent.push(point.clone());
                    return Err(Unsupported::new(why).into());
                }
                Verdict::Unchecked(why) => unchecked.push((point.clone(), why)),
            }
        }
        let attachment = attachment::attach_program(&program, point)?;
        parts.push((attachment, program));
    }
    Ok((Attached { parts }, unchecked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_the_fallbacks_it_attached_by() {
        let point = AttachPoint::tracepoint("syscalls", "sys_enter_read");
        let note = "ioctl(PERF_EVENT_IOC_SET_BPF), because PerfEvent link is unavailable: EINVAL".to_string();
        let r = PlanReport {
            name: "reads".into(),
            attached: Some(point.clone()),
            failures: Vec::new(),
            fallbacks: vec![(point, note)],
            unchecked: Vec::new(),
            silent: Vec::new(),
        };
        assert_eq!(
            r.to_string(),
            "reads: tracepoint via tracepoint/syscalls/sys_enter_read; tracepoint/syscalls/sys_enter_read attached \
             by ioctl(PERF_EVENT_IOC_SET_BPF), because PerfEvent link is unavailable: EINVAL"
        );
    }

    /// The chain's ordering and report on a kernel played by the test seam (no `bpf()` needed):
    /// a switched-off mechanism is skipped without a syscall, a missing raw tracepoint and a
    /// verifier refusal (retried with a log, which names the instruction) each fail their
    /// alternative in order, and the next one attaches.
    #[test]
    fn fallback_order_and_report_without_a_kernel() {
        use crate::sys::bpf::{cmd, fake};
        use std::sync::{Arc, Mutex};
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let mut loads = 0;
        let kernel: fake::Kernel = Box::new(move |c, attr, _size| {
            seen.lock().unwrap().push(c);
            match c {
                cmd::PROG_LOAD => {
                    loads += 1;
                    match loads {
                        1 | 4 => Ok(fake::fd()),
                        2 => Err(libc::EACCES),
                        _ => {
                            // linux/bpf.h: log_size at 28, log_buf at 32 (checked in sys::bpf's tests).
                            // SAFETY: attr is the caller's ProgLoadAttr; log_buf points to log_size bytes.
                            unsafe {
                                let size = attr.add(28).cast::<u32>().read_unaligned() as usize;
                                let buf = attr.add(32).cast::<u64>().read_unaligned() as usize as *mut u8;
                                let log = b"0: (b7) r0 = 0\nR0 !read_ok\n\0";
                                assert!(size >= log.len());
                                std::ptr::copy_nonoverlapping(log.as_ptr(), buf, log.len());
                            }
                            Err(libc::EACCES)
                        }
                    }
                }
                cmd::OBJ_GET_INFO_BY_FD => Ok(0),
                cmd::RAW_TRACEPOINT_OPEN if loads == 1 => Err(libc::ENOENT),
                cmd::RAW_TRACEPOINT_OPEN => Ok(fake::fd()),
                other => panic!("unexpected bpf command {other}"),
            }
        });
        let program = || {
            let mut a = crate::insn::Asm::new();
            a.mov64(crate::insn::R0, 0).exit();
            Ok(a.finish()?)
        };
        let plan = Plan {
            name: "ktm_fake".into(),
            alternatives: vec![
                Alternative::new(AttachPoint::fentry("vfs_read", false), program),
                Alternative::new(AttachPoint::raw_tracepoint("ktm_gone"), program),
                Alternative::new(AttachPoint::raw_tracepoint("ktm_refused"), program),
                Alternative::new(AttachPoint::raw_tracepoint("sys_enter"), program),
            ],
            exercise: None,
        };
        let policy = Policy { disable_fentry: true, ..Policy::default() };
        let (attached, report) = fake::with(kernel, || attach_plan(&plan, &policy, &|_| None));
        assert!(attached.is_some(), "{report}");
        assert_eq!(report.attached, Some(AttachPoint::raw_tracepoint("sys_enter")));
        let failed: Vec<String> = report.failures.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(failed, ["fentry/vfs_read", "raw_tracepoint/ktm_gone", "raw_tracepoint/ktm_refused"]);
        assert_eq!(report.failures[0].1, "disabled by KTM_DISABLE_FENTRY");
        assert!(
            report.failures[1].1.starts_with("raw tracepoint ktm_gone does not exist on this kernel: "),
            "{report}"
        );
        let refused = &report.failures[2].1;
        assert!(refused.starts_with("the kernel rejected program `ktm_fake`"), "{refused}");
        assert!(
            refused.contains("R0 !read_ok; at instruction 0: (b7) r0 = 0 (emitted at src/attach/chain.rs:"),
            "{refused}"
        );
        assert!(report.fallbacks.is_empty() && report.unchecked.is_empty() && report.silent.is_empty());
        use cmd::{OBJ_GET_INFO_BY_FD as INFO, PROG_LOAD as LOAD, RAW_TRACEPOINT_OPEN as OPEN};
        assert_eq!(*calls.lock().unwrap(), [LOAD, INFO, OPEN, LOAD, LOAD, LOAD, INFO, OPEN]);
        drop(attached);
    }
}
