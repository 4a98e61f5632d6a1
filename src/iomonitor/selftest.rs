//! The iomonitor's self-test: each function probe it attached is trusted only once its own
//! programs were seen counting the path they measure.
//!
//! `attach::fires` checks a function probe with a canary program of its own, which a kernel
//! makes expensive: every canary is one more trampoline or kprobe registered and unregistered,
//! each waiting on text patching and grace periods (a fresh sidecar's start on a fentry guest
//! took 3 times as long with them). The iomonitor's programs can be their own canaries: they
//! count whatever task their scope admits, and at start nothing is counting yet. So the
//! preferred alternatives attach unchecked, the scope admits one thread of KTM's own under a
//! name no other task has, that thread drives each plan's exercise once, and a probe whose
//! metrics did not move is detached and its plan goes on to its next alternative (checked
//! there by canary, as any plan is). The counters are zeroed after: the batches count the
//! target from zero.

use super::scope::Scope;
use crate::attach::{self, attach_plan, needs_check, silent_reason, Attached, Exercise, Plan, PlanReport, Policy};
use crate::catalogue::{Lanes, MetricDef};
use crate::insn::MapRef;
use crate::maps::{Array, PerCpu, PerCpuArray};
use crate::programs::layout::{ConfigRecord, Counters, HIST_SLOTS};
use crate::Result;
use std::time::Instant;

/// One probe as attached, before its self-test.
pub(super) struct Probed {
    pub plan: Plan,
    /// Taken out of the plan: the preferred alternative attaches without canaries.
    pub exercise: Option<Exercise>,
    pub attached: Option<Attached>,
    pub report: PlanReport,
    pub metrics: &'static [&'static MetricDef],
}

/// What one probe's exercise showed.
enum Seen {
    Counted,
    Nothing,
    /// The exercise could not be driven, or the counters not read: the probe is trusted.
    Unknown(String),
}

/// Makes the self-test of every probe attached by a function probe, and falls back where one
/// counted nothing. Leaves the scope off and the counters zeroed.
pub(super) fn run(
    probed: &mut [Probed],
    config: &Array<ConfigRecord>,
    counters: &PerCpuArray<Counters>,
    policy: &Policy,
    fd_of: &dyn Fn(MapRef) -> Option<i32>,
) -> Result<()> {
    let todo: Vec<usize> = (0..probed.len()).filter(|&i| function_probe(&probed[i]).is_some()).collect();
    if todo.is_empty() || policy.disable_self_test {
        return Ok(());
    }
    let started = Instant::now();
    let name = thread_name();
    config.set(0, &Scope::Comm(name.clone()).record())?;
    let seen = drive(probed, &todo, counters, &name);
    // Off before the zeroing: nothing counts between.
    config.set(0, &Scope::Off.record())?;
    counters.set(0, &PerCpu(vec![[0u64; crate::programs::layout::lane::LANES]; counters.map().cpus()]))?;
    attach::account_self_tests(todo.len() as u64, started.elapsed());
    log::debug!("self-test of {} probes by their own programs in {:?}", todo.len(), started.elapsed());
    for (i, seen) in seen {
        let p = &mut probed[i];
        let points = function_probe(p).unwrap_or_default();
        match seen {
            Seen::Counted => log::debug!("{}: self-test: counted", p.report.name),
            Seen::Unknown(why) => p.report.unchecked = points.into_iter().map(|pt| (pt, why.clone())).collect(),
            Seen::Nothing => fall_back(p, points, policy, fd_of),
        }
    }
    Ok(())
}

/// The function-probe points of the probe's attached alternative, if it has any and an exercise.
fn function_probe(p: &Probed) -> Option<Vec<attach::AttachPoint>> {
    p.exercise?;
    let points: Vec<_> = p
        .attached
        .as_ref()?
        .parts
        .iter()
        .map(|(a, _)| a.point().clone())
        .filter(|pt| needs_check(pt.mechanism()))
        .collect();
    (!points.is_empty()).then_some(points)
}

/// On a thread named `name` (the only task the scope admits): each exercise once, in the
/// order first named, judging only its own probes.
fn drive(probed: &[Probed], todo: &[usize], counters: &PerCpuArray<Counters>, name: &str) -> Vec<(usize, Seen)> {
    let lanes = |i: usize| -> Result<u64> {
        let all = counters.get(0)?.sum_u64_lanes();
        Ok(probed[i]
            .metrics
            .iter()
            .flat_map(|m| lanes_of(m))
            .filter_map(|l| all.get(l))
            .fold(0u64, |a, &v| a.wrapping_add(v)))
    };
    let work = || {
        if let Err(why) = name_this_thread(name) {
            return todo.iter().map(|&i| (i, Seen::Unknown(why.clone()))).collect();
        }
        let mut out = Vec::new();
        let mut driven: Vec<&str> = Vec::new();
        for &i in todo {
            let Some(exercise) = probed[i].exercise else { continue };
            if driven.contains(&exercise.name) {
                continue;
            }
            driven.push(exercise.name);
            let group: Vec<usize> =
                todo.iter().copied().filter(|&j| probed[j].exercise.is_some_and(|e| e.name == exercise.name)).collect();
            let before: Vec<Result<u64>> = group.iter().map(|&j| lanes(j)).collect();
            let outcome = (exercise.run)();
            for (&j, before) in group.iter().zip(before) {
                let seen = match (&outcome, before, lanes(j)) {
                    (Err(why), _, _) => Seen::Unknown(why.clone()),
                    (Ok(()), Ok(b), Ok(a)) if a != b => Seen::Counted,
                    (Ok(()), Ok(_), Ok(_)) => Seen::Nothing,
                    (Ok(()), Err(e), _) | (Ok(()), _, Err(e)) => Seen::Unknown(format!("counters unreadable: {e}")),
                };
                out.push((j, seen));
            }
        }
        out
    };
    std::thread::scope(|s| match std::thread::Builder::new().name(name.into()).spawn_scoped(s, work) {
        Ok(t) => t.join().unwrap_or_else(|_| {
            todo.iter().map(|&i| (i, Seen::Unknown("the self-test thread panicked".into()))).collect()
        }),
        Err(e) => todo.iter().map(|&i| (i, Seen::Unknown(format!("no thread for the self-test: {e}")))).collect(),
    })
}

/// Every lane a metric is counted in.
fn lanes_of(m: &MetricDef) -> std::ops::Range<usize> {
    let b = m.lanes.base();
    match m.lanes {
        Lanes::None => 0..0,
        Lanes::One(_) => b..b + 1,
        Lanes::PerLabel(_) => b..b + m.labels.first().map_or(0, |l| l.values.len()),
        Lanes::Log2Ns(_) => b..b + 1 + HIST_SLOTS,
    }
}

/// Detaches a probe whose programs counted nothing and attaches its plan's next alternatives
/// (each function probe among them checked by canary), keeping the report whole.
fn fall_back(p: &mut Probed, silent: Vec<attach::AttachPoint>, policy: &Policy, fd_of: &dyn Fn(MapRef) -> Option<i32>) {
    let Some(at) = p.report.attached.take() else { return };
    drop(p.attached.take());
    let why = silent.iter().map(silent_reason).next().unwrap_or_default();
    log::debug!("{}: self-test: {at} counted nothing; falling back", p.report.name);
    let next = p.plan.alternatives.iter().position(|a| a.point == at).map_or(p.plan.alternatives.len(), |i| i + 1);
    let rest = Plan {
        name: p.plan.name.clone(),
        alternatives: p.plan.alternatives.drain(next..).collect(),
        exercise: p.exercise,
    };
    let (attached, r) = attach_plan(&rest, policy, fd_of);
    p.plan.alternatives.extend(rest.alternatives);
    p.attached = attached;
    p.report.failures.push((at, why));
    p.report.failures.extend(r.failures);
    p.report.silent.extend(silent);
    p.report.silent.extend(r.silent);
    p.report.attached = r.attached;
    p.report.fallbacks = r.fallbacks;
    p.report.unchecked = r.unchecked;
    match &p.report.attached {
        Some(pt) => log::info!("{}: attached {pt} (after the self-test)", p.report.name),
        None => log::warn!("{}", p.report),
    }
}

/// A comm no other task has: "ktm-st-" and 8 hex digits of the pid and the clock.
fn thread_name() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("ktm-st-{:08x}", std::process::id().rotate_left(16) ^ t)
}

/// Sets the calling thread's comm (the builder's name is set the same way, but only where the
/// platform's std does it; this makes sure).
fn name_this_thread(name: &str) -> std::result::Result<(), String> {
    let c = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes (longer is cut).
    if unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(format!("name the self-test thread: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
