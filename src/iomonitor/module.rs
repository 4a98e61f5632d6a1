//! The iomonitor as a collector module: discovery, scoping, health checks and metrics.

use super::kernel::{IoMonitor, Latency, Scope, Snapshot, ADVICE_LABELS};
use crate::attach::Policy;
use crate::config::EbpfConfig;
use crate::discovery::{self, CgroupVerdict, PidNs, Roots};
use crate::metrics::{Histogram, Metric, MetricSource, MetricValue, ModuleState, ModuleStatus};
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
    /// (a path outside the sidecar's cgroup namespace) from pid `pid`'s first event.
    /// `previous` is the id this cgroup path had before the target restarted.
    Learning { cgroup: PathBuf, pid: u32, previous: Option<u64> },
    /// Cgroup mode on an id the programs learned.
    Learned { cgroup: PathBuf, id: u64, pid: u32 },
    /// Comm mode, with why the cgroup cannot be used.
    Comm { pid: u32, why: String },
}

/// The iomonitor module.
pub struct IoMonitorModule {
    cfg: EbpfConfig,
    roots: Roots,
    policy: Policy,
    /// The sidecar's pid namespace, where `/proc` is its own.
    pidns: Option<PidNs>,
    monitor: Option<IoMonitor>,
    programmed: Programmed,
    /// The last cgroup learned and its id: a target that comes back in the same cgroup path
    /// keeps its counters (unless the id turns out new), one in another path starts over.
    learned_before: Option<(PathBuf, u64)>,
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
            learned_before: None,
            warned_missing: false,
            last_error: None,
            probes: crate::programs::probes,
        }
    }

    /// Replaces the probe list (tests use it to force a program the verifier rejects).
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

    /// Whether `pid` is still the target, in `cgroup`: the health check of a learned
    /// cgroup, whose directory cannot be stat'ed from here.
    fn still_in(&self, pid: u32, cgroup: &std::path::Path) -> bool {
        let comm_ok = discovery::procfs::read_comm(&self.roots, pid)
            .is_ok_and(|c| c.starts_with(self.cfg.comm_prefix.as_bytes()));
        comm_ok && discovery::procfs::read_cgroup_v2(&self.roots, pid).ok().flatten().as_deref() == Some(cgroup)
    }

    /// The health check and discovery, run at start and every collection.
    fn refresh(&mut self) {
        let Some(monitor) = &self.monitor else { return };
        match &self.programmed {
            Programmed::Cgroup { path, id, .. } => {
                if discovery::cgroup_still_matches(path, *id) {
                    return; // The target may have restarted; its cgroup is the same: keep counting.
                }
                log::warn!(
                    "target cgroup {} is gone or was recreated: re-discovering, counters restart from zero",
                    path.display()
                );
                if let Err(e) = monitor.reset() {
                    log::error!("cannot reset the counters: {e}");
                }
                self.programmed = Programmed::Waiting;
            }
            Programmed::Learned { cgroup, pid, .. } if self.still_in(*pid, cgroup) => return,
            Programmed::Learning { cgroup, pid, previous } if self.still_in(*pid, cgroup) => {
                match monitor.learned_cgroup() {
                    Ok(Some(id)) => {
                        if previous.is_some_and(|p| p != id) {
                            log::warn!(
                                "cgroup {} was recreated (id {} -> {id}): counters restart from zero",
                                cgroup.display(),
                                previous.unwrap_or(0)
                            );
                            if let Err(e) = monitor.reset() {
                                log::error!("cannot reset the counters: {e}");
                            }
                        }
                        let next = Programmed::Learned { cgroup: cgroup.clone(), id, pid: *pid };
                        self.learned_before = Some((cgroup.clone(), id));
                        self.program(&Scope::Cgroup(id), next);
                    }
                    Ok(None) => {}
                    Err(e) => self.last_error = Some(format!("cannot read the learned cgroup id: {e}")),
                }
                return;
            }
            _ => {}
        }
        let next = match discovery::discover(&self.cfg, &self.roots) {
            Ok(Some(t)) => match t.cgroup {
                CgroupVerdict::Usable { path, id } => Programmed::Cgroup { path, id, pid: t.pid },
                CgroupVerdict::Learn { cgroup } => self.learning(cgroup, t.pid),
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
        if next != self.programmed {
            let scope = match &next {
                Programmed::Cgroup { id, .. } | Programmed::Learned { id, .. } => Scope::Cgroup(*id),
                Programmed::Learning { pid, .. } => self.comm_scope(Some(*pid)),
                Programmed::Waiting | Programmed::Comm { .. } => self.comm_scope(None),
            };
            self.program(&scope, next);
        }
    }

    /// The next state for a target whose cgroup `cgroup` must be learned. The same cgroup
    /// path as before (BanyanDB restarted in its container) keeps the counters unless the
    /// learned id turns out new; another path is another container: counters restart now,
    /// before its first event is counted.
    fn learning(&mut self, cgroup: PathBuf, pid: u32) -> Programmed {
        let previous = match self.learned_before.take() {
            Some((old, id)) if old == cgroup => {
                self.learned_before = Some((old, id));
                Some(id)
            }
            Some((old, _)) => {
                log::warn!(
                    "target moved from cgroup {} to {}: counters restart from zero",
                    old.display(),
                    cgroup.display()
                );
                if let Some(Err(e)) = self.monitor.as_ref().map(IoMonitor::reset) {
                    log::error!("cannot reset the counters: {e}");
                }
                None
            }
            None => None,
        };
        Programmed::Learning { cgroup, pid, previous }
    }

    fn program(&mut self, scope: &Scope, next: Programmed) {
        let Some(monitor) = &self.monitor else { return };
        match monitor.set_scope(scope) {
            Ok(()) => {
                log::info!("iomonitor scope: {}", describe(&next, &self.cfg.comm_prefix));
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
                metrics(&s).into_iter().filter(|m| available.contains(&m.name.as_str())).collect()
            }
            Err(e) => {
                self.last_error = Some(format!("cannot read the counters: {e}"));
                Vec::new()
            }
        }
    }

    fn status(&self) -> ModuleStatus {
        let Some(monitor) = &self.monitor else {
            return ModuleStatus {
                module: "iomonitor".into(),
                state: ModuleState::Disabled,
                reason: self.last_error.clone().or(Some("not started".into())),
                sources: Vec::new(),
                scope: String::new(),
            };
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
            Programmed::Learning { cgroup, pid, .. } => {
                reasons.push(format!(
                    "cgroup {} lies outside the sidecar's cgroup namespace: its id is learned from pid {pid}'s first event; until then comm filtering{}",
                    cgroup.display(),
                    if self.narrowed() { " in the sidecar's pid namespace" } else { "" }
                ));
                reasons.extend(node_wide);
            }
            Programmed::Cgroup { .. } | Programmed::Learned { .. } => {}
        }
        if let Some(e) = &self.last_error {
            reasons.push(e.clone());
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

/// The snapshot as the design's metrics.
pub fn metrics(s: &Snapshot) -> Vec<Metric> {
    let c = |name: &str, help: &str, v: u64| Metric::counter(name, help, v);
    let mut out = vec![
        c(
            "ktm_cache_read_attempts_total",
            "Page-cache lookup rounds (filemap_get_pages) of the target's buffered reads.",
            s.cache_read_attempts,
        ),
        c(
            "ktm_cache_misses_total",
            "Lookup rounds that found no cached page and read synchronously (page_cache_sync_ra).",
            s.cache_misses,
        ),
        c("ktm_page_cache_adds_total", "Pages the target inserted into the page cache.", s.page_cache_adds),
        c(
            "ktm_page_cache_deletes_total",
            "Pages removed from the page cache while the target's task ran (its truncations, fadvise DONTNEED, invalidations, own reclaim).",
            s.page_cache_deletes,
        ),
        c("ktm_sys_read_bytes_total", "Bytes returned by the target's read(2) calls.", s.read_bytes),
        c("ktm_sys_pread_bytes_total", "Bytes returned by the target's pread64(2) calls.", s.pread_bytes),
        c("ktm_fadvise_calls_total", "fadvise64 calls by the target.", s.fadvise_calls),
        c("ktm_fadvise_success_total", "fadvise64 calls that returned 0.", s.fadvise_success),
        c("ktm_memory_lru_pages_scanned_total", "Inactive-LRU pages scanned by reclaim the target ran.", s.lru_scanned),
        c(
            "ktm_memory_lru_pages_reclaimed_total",
            "Inactive-LRU pages reclaimed by reclaim the target ran.",
            s.lru_reclaimed,
        ),
        c("ktm_memory_direct_reclaim_begin_total", "Times a target thread entered direct reclaim.", s.direct_reclaim),
    ];
    for (label, v) in ADVICE_LABELS.iter().zip(s.fadvise_advice) {
        out.push(
            c("ktm_fadvise_advice_total", "fadvise64 calls by the target, by advice.", v).with_label("advice", label),
        );
    }
    out.push(Metric {
        name: "ktm_sys_read_latency_seconds".into(),
        help: "Latency of the target's read(2) calls.".into(),
        labels: Vec::new(),
        value: MetricValue::Histogram(histogram(&s.read)),
    });
    out.push(Metric {
        name: "ktm_sys_pread_latency_seconds".into(),
        help: "Latency of the target's pread64(2) calls.".into(),
        labels: Vec::new(),
        value: MetricValue::Histogram(histogram(&s.pread)),
    });
    out
}

/// Log2 slots as a Prometheus histogram (true upper bounds; the last slot only in `+Inf`).
fn histogram(l: &Latency) -> Histogram {
    Histogram::from_log2_ns(&l.slots, l.sum_ns)
}
