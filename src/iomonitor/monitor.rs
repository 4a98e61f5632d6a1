//! The running monitor ([`IoMonitor`]): creates the maps, attaches every probe by its plan,
//! programs the scope, and reads the counters as a [`Snapshot`].

pub use super::scope::Scope;
use super::selftest::{self, Probed};
use crate::attach::{attach_plan, Attached, PlanReport, Policy};
use crate::catalogue::MetricDef;
use crate::insn::MapRef;
use crate::maps::{Array, HashMap, Map, PerCpuArray, Pod};
use crate::programs::layout::{self, lane, renamed, ConfigRecord, Counters, Renamed, HIST_SLOTS};
use crate::programs::{probes, Probe};
use crate::sys::AsRawFd;
use crate::Result;

/// A latency histogram as counted: per-slot counts (slot i = [2^i, 2^(i+1)) ns), sum, count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    pub sum_ns: u64,
    pub slots: Vec<u64>,
}

/// One reading of every counter, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub cache_read_attempts: u64,
    pub cache_misses: u64,
    pub page_cache_adds: u64,
    /// Pages removed from the page cache while a target task ran.
    pub page_cache_deletes: u64,
    pub fadvise_calls: u64,
    pub fadvise_success: u64,
    /// normal, random, sequential, willneed, dontneed, noreuse, other.
    pub fadvise_advice: [u64; 7],
    pub lru_scanned: u64,
    pub lru_reclaimed: u64,
    pub direct_reclaim: u64,
    pub read: Latency,
    pub pread: Latency,
    /// Bytes returned by the target's read(2) / pread64(2) calls (positive returns only).
    pub read_bytes: u64,
    pub pread_bytes: u64,
}

/// Advice label values in lane order (the catalogue's).
pub const ADVICE_LABELS: [&str; 7] = crate::catalogue::ADVICE_VALUES;

impl Snapshot {
    fn from_lanes(v: &[u64]) -> Snapshot {
        let get = |i: usize| v.get(i).copied().unwrap_or(0);
        let hist = |h: layout::HistLanes| {
            let slots: Vec<u64> = (0..HIST_SLOTS).map(|i| get(h.slot0() + i)).collect();
            Latency { count: slots.iter().fold(0u64, |a, b| a.saturating_add(*b)), sum_ns: get(h.sum()), slots }
        };
        let mut advice = [0u64; 7];
        for (i, a) in advice.iter_mut().enumerate() {
            *a = get(lane::FADVISE_ADVICE + i);
        }
        Snapshot {
            cache_read_attempts: get(lane::CACHE_ATTEMPTS),
            cache_misses: get(lane::CACHE_MISSES),
            page_cache_adds: get(lane::PAGE_CACHE_ADDS),
            page_cache_deletes: get(lane::PAGE_CACHE_DELETES),
            fadvise_calls: get(lane::FADVISE_CALLS),
            fadvise_success: get(lane::FADVISE_SUCCESS),
            fadvise_advice: advice,
            lru_scanned: get(lane::LRU_SCANNED),
            lru_reclaimed: get(lane::LRU_RECLAIMED),
            direct_reclaim: get(lane::DIRECT_RECLAIM),
            read: hist(lane::READ),
            pread: hist(lane::PREAD),
            read_bytes: get(lane::READ_BYTES),
            pread_bytes: get(lane::PREAD_BYTES),
        }
    }
}

/// What feeds one metric on this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub metric: &'static str,
    /// The mechanism name, or None when unavailable.
    pub mechanism: Option<&'static str>,
    /// The attach point, or why nothing could attach.
    pub detail: String,
}

// SAFETY: arrays of u64 are Pod already; these aliases are for readability.
const _: fn() = || {
    fn is_pod<T: Pod>() {}
    is_pod::<Counters>();
    is_pod::<ConfigRecord>();
    is_pod::<Renamed>();
};

/// The running iomonitor. Dropping it detaches every program and frees the maps.
#[derive(Debug)]
#[must_use = "dropping the IoMonitor detaches its programs"]
pub struct IoMonitor {
    // Attachments first: they drop before the maps their programs use.
    attached: Vec<Attached>,
    reports: Vec<(PlanReport, &'static [&'static MetricDef])>,
    sources: Vec<Source>,
    config: Array<ConfigRecord>,
    counters: PerCpuArray<Counters>,
    start_slots: Map,
    _start: HashMap<u64, u64>,
    start_spilled: Array<u64>,
    learned: Array<u64>,
    renamed: Array<Renamed>,
}

/// What the rename hook last saw ([`IoMonitor::renamed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renames {
    /// Moves each time the hook acts (a BanyanDB appeared in the pod, or a stranger exec'd in
    /// the target's cgroup and the hook switched to comm mode).
    pub generation: u64,
    /// The cgroup id and thread-group id (in the pod's pid namespace) of the last task that
    /// took a name with the prefix, if any did.
    pub last: Option<(u64, u32)>,
}

impl IoMonitor {
    /// Creates the maps and attaches every probe; counting starts in [`Scope::Off`].
    ///
    /// A probe that cannot attach leaves its metrics unavailable ([`IoMonitor::sources`]);
    /// only a failure to create the maps fails the whole module.
    pub fn start(policy: &Policy) -> Result<IoMonitor> {
        Self::start_with(probes(), policy)
    }

    /// As [`IoMonitor::start`] with a given probe list (tests force failures with this).
    ///
    /// A probe that feeds a metric the catalogue lacks fails the start: its series would
    /// never be exported.
    pub fn start_with(probes: Vec<Probe>, policy: &Policy) -> Result<IoMonitor> {
        crate::catalogue::check_fed(probes.iter().map(|p| (p.plan.name.as_str(), p.metrics)))
            .map_err(crate::Error::Other)?;
        let [config, counters, start_slots, start, spilled, learned, renamed] = layout::map_defs().map(Map::create);
        let config = Array::<ConfigRecord>::from_map(config?)?;
        let counters = PerCpuArray::<Counters>::from_map(counters?)?;
        let start_slots = start_slots?;
        let start = HashMap::<u64, u64>::from_map(start?)?;
        let start_spilled = Array::<u64>::from_map(spilled?)?;
        let learned = Array::<u64>::from_map(learned?)?;
        let renamed = Array::<Renamed>::from_map(renamed?)?;
        let fds = [
            (layout::CONFIG, config.map().as_raw_fd()),
            (layout::COUNTERS, counters.map().as_raw_fd()),
            (layout::START_SLOT, start_slots.as_raw_fd()),
            (layout::START, start.map().as_raw_fd()),
            (layout::START_SPILLED, start_spilled.map().as_raw_fd()),
            (layout::LEARNED, learned.map().as_raw_fd()),
            (layout::RENAMED, renamed.map().as_raw_fd()),
        ];
        let fd_of = |m: MapRef| fds.iter().find(|(n, _)| *n == m).map(|(_, fd)| *fd);
        let mut probed = Vec::new();
        for mut probe in probes {
            // The preferred alternative's function probes are checked by the programs
            // themselves once all are attached (`selftest`), not by canaries.
            let exercise = probe.plan.exercise.take();
            let (attached, report) = attach_plan(&probe.plan, policy, &fd_of);
            match &report.attached {
                Some(p) => log::info!("{}: attached {}", report.name, p),
                None => log::warn!("{report}"),
            }
            probed.push(Probed { plan: probe.plan, exercise, attached, report, metrics: probe.metrics });
        }
        selftest::run(&mut probed, &config, &counters, policy, &fd_of)?;
        let mut attached = Vec::new();
        let mut reports = Vec::new();
        for p in probed {
            attached.extend(p.attached);
            reports.push((p.report, p.metrics));
        }
        // Attaching was BTF's only use; the sidecar should not keep it resident.
        crate::btf::release_vmlinux();
        let sources = sources_of(&reports);
        Ok(IoMonitor {
            attached,
            reports,
            sources,
            config,
            counters,
            start_slots,
            _start: start,
            start_spilled,
            learned,
            renamed,
        })
    }

    /// Re-targets the programs; takes effect on the next event, no reload. A scope that
    /// learns a cgroup id forgets the one learned before.
    pub fn set_scope(&self, scope: &Scope) -> Result<()> {
        if let Scope::CommInPidNs { learn: Some(_), .. } = scope {
            self.learned.set(0, &0)?;
        }
        self.config.set(0, &scope.record())
    }

    /// The cgroup id that [`Scope::CommInPidNs`] learned from its thread group's first
    /// event, once it has.
    pub fn learned_cgroup(&self) -> Result<Option<u64>> {
        Ok(Some(self.learned.get(0)?).filter(|&id| id != 0))
    }

    /// What the rename hook last saw.
    pub fn renamed(&self) -> Result<Renames> {
        let r = self.renamed.get(0)?;
        let last = (r[renamed::TGID] != 0).then(|| (r[renamed::CGROUP_ID], r[renamed::TGID] as u32));
        Ok(Renames { generation: r[renamed::GENERATION], last })
    }

    /// Reads every counter, summed over CPUs. Never clears anything.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::from_lanes(&self.counters.get(0)?.sum_u64_lanes()))
    }

    /// The start-time slots, for tests that occupy a slot to drive the hash path.
    #[doc(hidden)]
    pub fn start_slot_map(&self) -> &Map {
        &self.start_slots
    }

    /// How many start times wait in the hash (see [`layout::START_SPILLED`]).
    #[doc(hidden)]
    pub fn start_spilled(&self) -> Result<u64> {
        self.start_spilled.get(0)
    }

    /// Each probe's attach report.
    pub fn reports(&self) -> impl Iterator<Item = &PlanReport> {
        self.reports.iter().map(|(r, _)| r)
    }

    /// What feeds each metric, or why nothing does (fixed once the probes are attached).
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Number of programs attached.
    pub fn attached_programs(&self) -> usize {
        self.attached.iter().map(|a| a.parts.len()).sum()
    }

    /// The loaded programs (for statistics and `ktm dump`).
    pub fn programs(&self) -> impl Iterator<Item = &crate::load::LoadedProgram> {
        self.attached_at().map(|(_, p)| p)
    }

    /// Each loaded program with the point it is attached at (benchmarks label their
    /// per-program tables with it).
    pub fn attached_at(&self) -> impl Iterator<Item = (&crate::attach::AttachPoint, &crate::load::LoadedProgram)> {
        self.attached.iter().flat_map(|a| a.parts.iter().map(|(att, p)| (att.point(), p)))
    }
}

/// What feeds each metric, from the plans' reports.
fn sources_of(reports: &[(PlanReport, &'static [&'static MetricDef])]) -> Vec<Source> {
    let mut out = Vec::new();
    for (report, metrics) in reports {
        for metric in metrics.iter().map(|m| m.name) {
            out.push(match &report.attached {
                Some(p) => Source { metric, mechanism: Some(p.mechanism().name()), detail: p.to_string() },
                None => Source {
                    metric,
                    mechanism: None,
                    detail: report.failures.iter().map(|(p, why)| format!("{p}: {why}")).collect::<Vec<_>>().join("; "),
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{self, Lanes, MetricDef};
    use crate::metrics::MetricValue;

    #[test]
    fn every_plan_feeds_catalogue_metrics_and_every_counted_metric_has_a_plan() {
        let probes = probes();
        catalogue::check_fed(probes.iter().map(|p| (p.plan.name.as_str(), p.metrics))).unwrap();
        let fed: Vec<&str> = probes.iter().flat_map(|p| p.metrics.iter().map(|m| m.name)).collect();
        for d in catalogue::IOMONITOR {
            assert!(fed.contains(&d.name), "no plan feeds {}", d.name);
        }
        assert_eq!(fed.len(), catalogue::IOMONITOR.len());
    }

    #[test]
    fn a_probe_feeding_a_metric_the_catalogue_lacks_is_refused_at_start() {
        const STRAY: MetricDef = MetricDef { name: "ktm_cache_mises_total", ..catalogue::CACHE_MISSES };
        let mut list = probes();
        list[0].metrics = &[&STRAY];
        let err = IoMonitor::start_with(list, &Policy::default()).unwrap_err().to_string();
        assert!(err.contains("ktm_cache_mises_total, which the metric catalogue lacks"), "{err}");
    }

    /// Every exported series reads the lanes the catalogue gives it: lane i holds i + 1.
    #[test]
    fn the_exported_series_read_the_catalogues_lanes() {
        let lanes: Vec<u64> = (1..=catalogue::LANES as u64).collect();
        let out = Snapshot::from_lanes(&lanes).metrics();
        for d in catalogue::IOMONITOR {
            let series: Vec<_> = out.iter().filter(|m| m.name == d.name).collect();
            assert!(!series.is_empty(), "{} not exported", d.name);
            for m in &series {
                assert!(d.kind.admits(&m.value), "{}: {:?}", d.name, m.value);
                assert_eq!(m.help, d.help);
            }
            let lane = |i: usize| lanes[d.lanes.base() + i];
            match d.lanes {
                Lanes::One(_) => assert_eq!(series[0].value, MetricValue::Counter(lane(0)), "{}", d.name),
                Lanes::PerLabel(_) => {
                    let label = d.labels[0];
                    assert_eq!(series.len(), label.values.len());
                    for (i, (m, v)) in series.iter().zip(label.values).enumerate() {
                        assert_eq!(m.labels, vec![(label.name.to_string(), v.to_string())]);
                        assert_eq!(m.value, MetricValue::Counter(lane(i)), "{} {v}", d.name);
                    }
                }
                Lanes::Log2Ns(_) => {
                    let MetricValue::Histogram(h) = &series[0].value else { panic!("{}", d.name) };
                    assert_eq!(h.sum, lane(0) as f64 / 1e9, "{}", d.name);
                    assert_eq!(h.count, (1..=HIST_SLOTS).map(lane).sum::<u64>(), "{}", d.name);
                }
                Lanes::None => panic!("{} is counted by no lane", d.name),
            }
        }
        assert!(out.iter().all(|m| catalogue::IOMONITOR.iter().any(|d| d.name == m.name)));
    }
}
