//! The iomonitor as the collector drives it ([`IoMonitorModule`]): finding the target and
//! keeping the programs on it (discovery, re-targeting, health checks), its status, and its
//! metrics from the snapshot ([`super::export`]).

use super::monitor::{IoMonitor, Scope};
use crate::attach::Policy;
use crate::config::EbpfConfig;
use crate::discovery::{self, CgroupVerdict, PidNs, Roots};
use crate::metrics::{Metric, MetricSource, ModuleState, ModuleStatus};
use crate::module::Module;
use crate::Result;
use std::path::PathBuf;

/// The target as last programmed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Programmed {
    /// No target process found yet: comm matching catches it when it appears.
    Waiting,
    /// Cgroup mode on this cgroup, whose directory the sidecar sees.
    Cgroup { path: PathBuf, id: u64, pid: u32 },
    /// Comm mode in the sidecar's pid namespace while the programs learn the id of `cgroup`
    /// from pid `pid`'s first event; `why` says what keeps its directory out of reach.
    Learning { cgroup: PathBuf, why: String, pid: u32 },
    /// Cgroup mode on an id the programs learned.
    Learned { cgroup: PathBuf, id: u64, pid: u32 },
    /// Comm mode, with why the cgroup cannot be used.
    Comm { pid: u32, why: String },
}

/// The iomonitor module.
///
/// Its counters never restart while it runs: a restarted BanyanDB goes on counting into
/// the same series (its restarts are the moments an operator reads them most), whether it
/// comes back in the same cgroup or another. The rename hook ([`crate::programs`]'s
/// `ktm_follow`) switches the kernel's scope at the restart itself; the collections here
/// only put cgroup mode back once the new process is known.
pub struct IoMonitorModule {
    cfg: EbpfConfig,
    roots: Roots,
    policy: Policy,
    /// The sidecar's pid namespace, where `/proc` is its own.
    pidns: Option<PidNs>,
    monitor: Option<IoMonitor>,
    programmed: Programmed,
    /// The rename hook's generation that the programmed scope has taken into account.
    generation: u64,
    warned_missing: bool,
    last_error: Option<String>,
    probes: fn() -> Vec<crate::programs::Probe>,
}

impl IoMonitorModule {
    /// A module for the given scoping config, using the real /proc and cgroup mounts.
    pub fn new(cfg: EbpfConfig) -> Self {
        Self::with(cfg, Roots::system(), Policy::from_env())
    }

    /// A module with explicit filesystem roots and attach policy.
    pub fn with(cfg: EbpfConfig, roots: Roots, policy: Policy) -> Self {
        let pidns = PidNs::of_self(&roots.proc).filter(|_| discovery::pidns::proc_is_own(&roots.proc));
        IoMonitorModule {
            cfg,
            roots,
            policy,
            pidns,
            monitor: None,
            programmed: Programmed::Waiting,
            generation: 0,
            warned_missing: false,
            last_error: None,
            probes: crate::programs::probes,
        }
    }

    /// Replaces the probe list (tests use it to force a program the verifier rejects, or
    /// to leave the rename hook out).
    pub fn with_probes(mut self, probes: fn() -> Vec<crate::programs::Probe>) -> Self {
        self.probes = probes;
        self
    }

    /// The running monitor (for tests and benchmarks).
    pub fn monitor(&self) -> Option<&IoMonitor> {
        self.monitor.as_ref()
    }

    /// Whether comm mode can be narrowed to the sidecar's own pid namespace (a pod's,
    /// not the host's).
    fn narrowed(&self) -> bool {
        self.pidns.is_some_and(|ns| !ns.is_initial())
    }

    /// Comm mode, narrowed to the pod where it can be, learning `learn`'s cgroup id.
    fn comm_scope(&self, learn: Option<u32>) -> Scope {
        match self.pidns {
            Some(pidns) => {
                Scope::CommInPidNs { prefix: self.cfg.comm_prefix.clone(), pidns, narrow: self.narrowed(), learn }
            }
            None => Scope::Comm(self.cfg.comm_prefix.clone()),
        }
    }

    /// Cgroup mode on `id` for target `pid`: guarded by the rename hook where comm mode is
    /// narrowed to the pod (what the hook switches to must count no other pod).
    fn cgroup_scope(&self, id: u64, pid: u32) -> Scope {
        match self.pidns.filter(|_| self.narrowed()) {
            Some(pidns) => Scope::Guarded { id, target: pid, prefix: self.cfg.comm_prefix.clone(), pidns },
            None => Scope::Cgroup(id),
        }
    }

    /// Whether `pid` is still a process with the prefix (the target has not exited).
    fn alive(&self, pid: u32) -> bool {
        discovery::procfs::read_comm(&self.roots, pid).is_ok_and(|c| c.starts_with(self.cfg.comm_prefix.as_bytes()))
            && discovery::procfs::running(&self.roots, pid)
    }

    /// Whether `pid` is still the target, in `cgroup`: the health check of a learned
    /// cgroup, whose directory cannot be stat'ed from here.
    fn still_in(&self, pid: u32, cgroup: &std::path::Path) -> bool {
        self.alive(pid) && discovery::procfs::read_cgroup_v2(&self.roots, pid).ok().flatten().as_deref() == Some(cgroup)
    }

    /// The health check and discovery, run at start and every collection.
    ///
    /// The programmed target is kept while it lives and the rename hook saw nothing; a
    /// target that exited, or a hook that acted (a new BanyanDB, a stranger in its cgroup),
    /// makes it re-discover at once.
    fn refresh(&mut self) {
        let Some(monitor) = &self.monitor else { return };
        let renames = match monitor.renamed() {
            Ok(r) => Some(r),
            Err(e) => {
                self.last_error = Some(format!("cannot read the rename hook's record: {e}"));
                None
            }
        };
        let moved = renames.is_some_and(|r| r.generation != self.generation);
        if !moved {
            match &self.programmed {
                Programmed::Cgroup { path, id, pid }
                    if discovery::cgroup_still_matches(path, *id) && self.alive(*pid) =>
                {
                    return
                }
                Programmed::Learned { cgroup, pid, .. } if self.still_in(*pid, cgroup) => return,
                Programmed::Learning { cgroup, pid, .. } if self.still_in(*pid, cgroup) => {
                    match monitor.learned_cgroup() {
                        Ok(Some(id)) => {
                            let next = Programmed::Learned { cgroup: cgroup.clone(), id, pid: *pid };
                            self.program(&self.cgroup_scope(id, *pid), next);
                            self.unless_renamed_since(self.generation);
                        }
                        Ok(None) => {}
                        Err(e) => self.last_error = Some(format!("cannot read the learned cgroup id: {e}")),
                    }
                    return;
                }
                _ => {}
            }
        }
        let seen = renames.map_or(self.generation, |r| r.generation);
        let next = match discovery::discover(&self.cfg, &self.roots) {
            Ok(Some(t)) => match t.cgroup {
                CgroupVerdict::Usable { path, id } => Programmed::Cgroup { path, id, pid: t.pid },
                // The hook saw this very process take its name: its cgroup id is known now.
                CgroupVerdict::Learn { cgroup, .. }
                    if self.narrowed() && renames.and_then(|r| r.last).is_some_and(|(_, tgid)| tgid == t.pid) =>
                {
                    let id = renames.and_then(|r| r.last).map_or(0, |(id, _)| id);
                    Programmed::Learned { cgroup, id, pid: t.pid }
                }
                CgroupVerdict::Learn { cgroup, why } => Programmed::Learning { cgroup, why, pid: t.pid },
                CgroupVerdict::Unusable { reason } => Programmed::Comm { pid: t.pid, why: reason },
            },
            Ok(None) => {
                if !self.warned_missing {
                    log::warn!(
                        "no process with comm prefix `{}` found: counting by comm prefix and probing every interval",
                        self.cfg.comm_prefix
                    );
                    self.warned_missing = true;
                }
                Programmed::Waiting
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                Programmed::Waiting
            }
        };
        // The hook may have switched the kernel's mode: program again even when the
        // target is the same.
        if next != self.programmed || moved {
            let scope = match &next {
                Programmed::Cgroup { id, pid, .. } | Programmed::Learned { id, pid, .. } => {
                    self.cgroup_scope(*id, *pid)
                }
                Programmed::Learning { pid, .. } => self.comm_scope(Some(*pid)),
                Programmed::Waiting | Programmed::Comm { .. } => self.comm_scope(None),
            };
            self.program(&scope, next);
        }
        self.generation = seen;
        self.unless_renamed_since(seen);
    }

    /// A hook that acted after generation `seen` was read may have had its switch
    /// overwritten by the scope just written: count by comm (narrowed) until the next
    /// collection, which sees the generation moved and decides again.
    fn unless_renamed_since(&mut self, seen: u64) {
        let Some(monitor) = &self.monitor else { return };
        if monitor.renamed().is_ok_and(|r| r.generation != seen) {
            if let Err(e) = monitor.set_scope(&self.comm_scope(None)) {
                self.last_error = Some(format!("cannot program the scope filter: {e}"));
            }
        }
    }

    fn program(&mut self, scope: &Scope, next: Programmed) {
        let Some(monitor) = &self.monitor else { return };
        match monitor.set_scope(scope) {
            Ok(()) => {
                if next != self.programmed {
                    log::info!("iomonitor scope: {}", describe(&next, &self.cfg.comm_prefix));
                }
                self.programmed = next;
            }
            Err(e) => self.last_error = Some(format!("cannot program the scope filter: {e}")),
        }
    }
}

fn describe(p: &Programmed, prefix: &str) -> String {
    match p {
        Programmed::Waiting => format!("comm prefix `{prefix}` (target not found yet)"),
        Programmed::Cgroup { path, id, pid } => format!("cgroup {} (id {id}) of pid {pid}", path.display()),
        Programmed::Learning { cgroup, pid, .. } => {
            format!("comm prefix `{prefix}` while learning the id of cgroup {} from pid {pid}", cgroup.display())
        }
        Programmed::Learned { cgroup, id, pid } => {
            format!("cgroup {} (id {id}, learned from pid {pid}'s events) of pid {pid}", cgroup.display())
        }
        Programmed::Comm { pid, why } => format!("comm prefix `{prefix}` for pid {pid}: {why}"),
    }
}

impl Module for IoMonitorModule {
    fn name(&self) -> &str {
        "iomonitor"
    }

    fn start(&mut self) -> Result<()> {
        let monitor = IoMonitor::start_with((self.probes)(), &self.policy)?;
        monitor.set_scope(&self.comm_scope(None))?;
        self.generation = monitor.renamed()?.generation;
        if monitor.attached_programs() == 0 {
            let why: Vec<String> = monitor.reports().map(|r| r.to_string()).collect();
            return Err(crate::Error::Other(format!("no probe could attach: {}", why.join(" | "))));
        }
        self.monitor = Some(monitor);
        self.refresh();
        Ok(())
    }

    fn collect(&mut self) -> Vec<Metric> {
        self.refresh();
        let Some(monitor) = &self.monitor else { return Vec::new() };
        match monitor.snapshot() {
            Ok(s) => {
                let available: Vec<&str> =
                    monitor.sources().iter().filter(|s| s.mechanism.is_some()).map(|s| s.metric).collect();
                s.metrics().into_iter().filter(|m| available.contains(&m.name.as_str())).collect()
            }
            Err(e) => {
                self.last_error = Some(format!("cannot read the counters: {e}"));
                Vec::new()
            }
        }
    }

    fn status(&self) -> ModuleStatus {
        let Some(monitor) = &self.monitor else {
            return ModuleStatus::disabled(self.name(), self.last_error.as_deref().unwrap_or("not started"));
        };
        let sources: Vec<MetricSource> = monitor
            .sources()
            .iter()
            .map(|s| MetricSource {
                metric: s.metric.to_string(),
                mechanism: s.mechanism.map(str::to_string),
                detail: s.detail.clone(),
            })
            .collect();
        let unavailable: Vec<&str> =
            sources.iter().filter(|s| s.mechanism.is_none()).map(|s| s.metric.as_str()).collect();
        // The most pressing state wins; every reason is kept.
        let mut state = ModuleState::Active;
        let mut reasons = Vec::new();
        let node_wide = (!self.narrowed()).then(|| {
            format!(
                "other processes with comm prefix `{}` anywhere on the node are counted too (the sidecar shares the host's pid namespace, so nothing narrows comm matching)",
                self.cfg.comm_prefix
            )
        });
        match &self.programmed {
            Programmed::Waiting => {
                state = ModuleState::WaitingForTarget;
                reasons.push(if self.narrowed() {
                    format!(
                        "no process with comm prefix `{}` in the sidecar's pid namespace yet (if BanyanDB runs in another container of this pod, the pod needs shareProcessNamespace: true)",
                        self.cfg.comm_prefix
                    )
                } else {
                    format!("no process with comm prefix `{}` yet", self.cfg.comm_prefix)
                });
            }
            Programmed::Comm { why, .. } => {
                reasons.push(format!("comm filtering only: {why}"));
                reasons.extend(node_wide);
            }
            Programmed::Learning { why, pid, .. } => {
                reasons.push(format!(
                    "{why}: its id is learned from pid {pid}'s first event; until then comm filtering{}",
                    if self.narrowed() { " in the sidecar's pid namespace" } else { "" }
                ));
                reasons.extend(node_wide);
            }
            Programmed::Cgroup { .. } | Programmed::Learned { .. } => {}
        }
        if let Some(e) = &self.last_error {
            reasons.push(e.clone());
        }
        let missing = |name: &str| {
            monitor
                .reports()
                .find(|r| r.name == name && r.attached.is_none())
                .map(|r| r.failures.iter().map(|(p, why)| format!("{p}: {why}")).collect::<Vec<_>>().join("; "))
        };
        if let Some(why) = missing(crate::programs::RENAME_HOOK) {
            reasons.push(format!(
                "a restarted BanyanDB is found at the next collection, not in the kernel (its I/O until then is lost): the rename hook could not attach ({why})"
            ));
        }
        if let Some(why) = missing(crate::programs::JOIN_HOOK) {
            reasons.push(format!(
                "a process moved into BanyanDB's cgroup counts as BanyanDB until its exec or the next collection: the join hook could not attach ({why})"
            ));
        }
        for r in monitor.reports().filter(|r| !r.silent.is_empty()) {
            let silent: Vec<String> = r.silent.iter().map(|p| p.to_string()).collect();
            reasons.push(format!(
                "{}: {} attached but never ran on the measured path (inlined on this kernel?), so {}",
                r.name,
                silent.join(", "),
                r.attached.as_ref().map_or("nothing measures it".to_string(), |p| format!("{p} is used"))
            ));
        }
        if !unavailable.is_empty() {
            reasons.push(format!("unavailable on this kernel: {}", unavailable.join(", ")));
        }
        if state == ModuleState::Active && (self.last_error.is_some() || !unavailable.is_empty()) {
            state = ModuleState::Degraded;
        }
        let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        ModuleStatus {
            module: "iomonitor".into(),
            state,
            reason,
            sources,
            scope: describe(&self.programmed, &self.cfg.comm_prefix),
        }
    }

    fn stop(&mut self) {
        self.monitor = None;
    }

    fn self_metrics(&self) -> Vec<Metric> {
        self.monitor.as_ref().map(super::stats::program_metrics).unwrap_or_default()
    }
}
