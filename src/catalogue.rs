//! Every metric KTM exports, once: its name, help, type, unit, counter lanes and labels.
//!
//! A metric's name used to be a string carried across rooms: the probe list named what each
//! plan feeds, the iomonitor module named what it exports and filtered one by the other, and
//! the tests, the Go package and the workload each kept their own copy. A typo in any of them
//! silently dropped a metric. Here each metric is one typed constant ([`MetricDef`]): the
//! programs' plans refer to it (`Probe.metrics`), the module builds its series from it
//! ([`MetricDef::counter`]...), the counter lanes the programs add to come from it
//! (`programs::layout::lane`), the Prometheus `# HELP` line is its `help`, the C ABI hands the
//! whole table to the Go package (`ktm_catalogue`), and the tests read names from it. A
//! misspelt metric is then a compile error, and [`check_fed`] (run by the tests) fails when
//! a plan feeds a metric this table lacks.
//!
//! A new metric starts with its entry here; the README's Architecture section has the rest
//! of the way (one recipe, kept there).

use crate::metrics::{Histogram, Metric, MetricValue, LOG2_NS_SLOTS};

/// The Prometheus type a metric is exported with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The `# TYPE` word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }

    /// Whether a value of this type may be exported under this kind.
    pub fn admits(self, value: &MetricValue) -> bool {
        matches!(
            (self, value),
            (Kind::Counter, MetricValue::Counter(_) | MetricValue::FloatCounter(_))
                | (Kind::Gauge, MetricValue::Gauge(_))
                | (Kind::Histogram, MetricValue::Histogram(_))
        )
    }
}

/// What one unit of a metric's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Page-cache lookup rounds.
    Lookups,
    Pages,
    Bytes,
    Seconds,
    /// System calls.
    Calls,
    /// Entries into a kernel path (direct reclaim).
    Entries,
    /// Program runs.
    Runs,
    /// Events of the kind the name says (collections, requests, connections, log lines).
    Events,
    /// 0 or 1.
    Boolean,
    /// A status gauge: 1 for each series that exists, the labels carry the information.
    Info,
}

impl Unit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Lookups => "lookups",
            Unit::Pages => "pages",
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            Unit::Calls => "calls",
            Unit::Entries => "entries",
            Unit::Runs => "runs",
            Unit::Events => "events",
            Unit::Boolean => "boolean",
            Unit::Info => "info",
        }
    }
}

/// Where the programs count a metric: lanes (u64 each) of the per-CPU counters value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// Counted in user space (a self-metric or a status gauge), not by the programs.
    None,
    /// One lane.
    One(usize),
    /// One lane per value of the metric's one closed label, from this lane on, in the
    /// label's value order.
    PerLabel(usize),
    /// A log2 latency histogram: the sum of nanoseconds at this lane, then
    /// [`LOG2_NS_SLOTS`] slots (no count lane: the count is the slots' sum).
    Log2Ns(usize),
}

impl Lanes {
    /// The first lane (0 for [`Lanes::None`]).
    pub const fn base(self) -> usize {
        match self {
            Lanes::None => 0,
            Lanes::One(b) | Lanes::PerLabel(b) | Lanes::Log2Ns(b) => b,
        }
    }
}

/// A label of a metric: its name and, for a closed set, its values in lane order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    pub name: &'static str,
    /// Every value the label takes, in lane order; empty when the set is open (a program's
    /// name, an attach point).
    pub values: &'static [&'static str],
}

impl Label {
    /// A label whose values are not known in advance.
    pub const fn open(name: &'static str) -> Label {
        Label { name, values: &[] }
    }
}

/// One metric as KTM exports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricDef {
    /// The constant's name in this module (`SYS_PREAD_LATENCY`): how the Go package's tests
    /// and other hosts find an entry without writing its exported name again.
    pub key: &'static str,
    /// The family name as exported (counters keep their `_total`).
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub lanes: Lanes,
    /// Labels in the order they are shown.
    pub labels: &'static [Label],
}

impl MetricDef {
    /// Lanes this metric takes in the counters value (0 for a user-space metric).
    pub const fn lane_count(&self) -> usize {
        match self.lanes {
            Lanes::None => 0,
            Lanes::One(_) => 1,
            Lanes::PerLabel(_) => match self.labels.first() {
                Some(l) => l.values.len(),
                None => 0,
            },
            Lanes::Log2Ns(_) => 1 + LOG2_NS_SLOTS,
        }
    }

    /// The series of this metric with `value`, without labels.
    pub fn metric(&self, value: MetricValue) -> Metric {
        Metric::new(self.name, self.help, value)
    }

    /// An integer counter series.
    pub fn counter(&self, value: u64) -> Metric {
        self.metric(MetricValue::Counter(value))
    }

    /// A counter series of a non-integer quantity (seconds).
    pub fn float_counter(&self, value: f64) -> Metric {
        self.metric(MetricValue::FloatCounter(value))
    }

    /// A gauge series.
    pub fn gauge(&self, value: f64) -> Metric {
        self.metric(MetricValue::Gauge(value))
    }

    /// A histogram series.
    pub fn histogram(&self, value: Histogram) -> Metric {
        self.metric(MetricValue::Histogram(value))
    }

    /// The values of the label named `name` (empty for an open or unknown label).
    pub fn label_values(&self, name: &str) -> &'static [&'static str] {
        self.labels.iter().find(|l| l.name == name).map_or(&[], |l| l.values)
    }
}

/// Defines each entry as a constant whose `key` is its own name, and [`ALL`] in the order
/// given (the README's tables follow it).
macro_rules! catalogue {
    ($($(#[$doc:meta])* $key:ident = { $($field:ident: $value:expr),* $(,)? };)*) => {
        $($(#[$doc])* pub const $key: MetricDef = MetricDef { key: stringify!($key), $($field: $value),* };)*
        /// Every metric, the iomonitor's first, then the status gauges and self-metrics.
        pub const ALL: &[&MetricDef] = &[$(&$key),*];
    };
}

/// The fadvise advice label values in lane order: the kernel's advice numbers 0..=5
/// (`POSIX_FADV_NORMAL` .. `POSIX_FADV_NOREUSE`), then everything else.
pub const ADVICE_VALUES: [&str; 7] = ["normal", "random", "sequential", "willneed", "dontneed", "noreuse", "other"];

/// The label of [`FADVISE_ADVICE`].
pub const ADVICE: Label = Label { name: "advice", values: &ADVICE_VALUES };

// Lane numbers: the order is the one the counters value always had (the programs' byte
// offsets, and so `ktm dump`, depend on it); `tests` checks they tile the value.
const LANE_READ: usize = 15;
const LANE_PREAD: usize = LANE_READ + 1 + LOG2_NS_SLOTS;
const LANE_PAGE_CACHE_DELETES: usize = LANE_PREAD + 1 + LOG2_NS_SLOTS;

/// Lanes of the counters value: one past the last lane any metric takes.
pub const LANES: usize = LANE_PAGE_CACHE_DELETES + 3;

const PROGRAM: [Label; 3] = [Label::open("module"), Label::open("program"), Label::open("attach")];

catalogue! {
    CACHE_READ_ATTEMPTS = {
        name: "ktm_cache_read_attempts_total",
        help: "Page-cache lookup rounds (filemap_get_pages) of the target's buffered reads.",
        kind: Kind::Counter, unit: Unit::Lookups, lanes: Lanes::One(0), labels: &[],
    };
    CACHE_MISSES = {
        name: "ktm_cache_misses_total",
        help: "Lookup rounds that found no cached page and read synchronously (page_cache_sync_ra).",
        kind: Kind::Counter, unit: Unit::Lookups, lanes: Lanes::One(1), labels: &[],
    };
    PAGE_CACHE_ADDS = {
        name: "ktm_page_cache_adds_total",
        help: "Pages the target inserted into the page cache.",
        kind: Kind::Counter, unit: Unit::Pages, lanes: Lanes::One(2), labels: &[],
    };
    PAGE_CACHE_DELETES = {
        name: "ktm_page_cache_deletes_total",
        help: "Pages removed from the page cache while the target's task ran (its truncations, fadvise DONTNEED, invalidations, own reclaim).",
        kind: Kind::Counter, unit: Unit::Pages, lanes: Lanes::One(LANE_PAGE_CACHE_DELETES), labels: &[],
    };
    SYS_READ_BYTES = {
        name: "ktm_sys_read_bytes_total",
        help: "Bytes returned by the target's read(2) calls.",
        kind: Kind::Counter, unit: Unit::Bytes, lanes: Lanes::One(LANE_PAGE_CACHE_DELETES + 1), labels: &[],
    };
    SYS_PREAD_BYTES = {
        name: "ktm_sys_pread_bytes_total",
        help: "Bytes returned by the target's pread64(2) calls.",
        kind: Kind::Counter, unit: Unit::Bytes, lanes: Lanes::One(LANE_PAGE_CACHE_DELETES + 2), labels: &[],
    };
    FADVISE_CALLS = {
        name: "ktm_fadvise_calls_total",
        help: "fadvise64 calls by the target.",
        kind: Kind::Counter, unit: Unit::Calls, lanes: Lanes::One(3), labels: &[],
    };
    FADVISE_SUCCESS = {
        name: "ktm_fadvise_success_total",
        help: "fadvise64 calls that returned 0.",
        kind: Kind::Counter, unit: Unit::Calls, lanes: Lanes::One(4), labels: &[],
    };
    MEMORY_LRU_PAGES_SCANNED = {
        name: "ktm_memory_lru_pages_scanned_total",
        help: "Inactive-LRU pages scanned by reclaim the target ran.",
        kind: Kind::Counter, unit: Unit::Pages, lanes: Lanes::One(12), labels: &[],
    };
    MEMORY_LRU_PAGES_RECLAIMED = {
        name: "ktm_memory_lru_pages_reclaimed_total",
        help: "Inactive-LRU pages reclaimed by reclaim the target ran.",
        kind: Kind::Counter, unit: Unit::Pages, lanes: Lanes::One(13), labels: &[],
    };
    MEMORY_DIRECT_RECLAIM_BEGIN = {
        name: "ktm_memory_direct_reclaim_begin_total",
        help: "Times a target thread entered direct reclaim.",
        kind: Kind::Counter, unit: Unit::Entries, lanes: Lanes::One(14), labels: &[],
    };
    FADVISE_ADVICE = {
        name: "ktm_fadvise_advice_total",
        help: "fadvise64 calls by the target, by advice.",
        kind: Kind::Counter, unit: Unit::Calls, lanes: Lanes::PerLabel(5), labels: &[ADVICE],
    };
    SYS_READ_LATENCY = {
        name: "ktm_sys_read_latency_seconds",
        help: "Latency of the target's read(2) calls.",
        kind: Kind::Histogram, unit: Unit::Seconds, lanes: Lanes::Log2Ns(LANE_READ), labels: &[],
    };
    SYS_PREAD_LATENCY = {
        name: "ktm_sys_pread_latency_seconds",
        help: "Latency of the target's pread64(2) calls.",
        kind: Kind::Histogram, unit: Unit::Seconds, lanes: Lanes::Log2Ns(LANE_PREAD), labels: &[],
    };
    MODULE_STATE = {
        name: "ktm_module_state",
        help: "State of each KTM module (1 for its current state), with why it is not plainly active.",
        kind: Kind::Gauge, unit: Unit::Info, lanes: Lanes::None,
        labels: &[Label::open("module"), Label::open("state"), Label::open("reason"), Label::open("scope")],
    };
    METRIC_SOURCE = {
        name: "ktm_metric_source",
        help: "Mechanism feeding each KTM metric on this kernel (unavailable: none could; detail says why).",
        kind: Kind::Gauge, unit: Unit::Info, lanes: Lanes::None,
        labels: &[Label::open("module"), Label::open("metric"), Label::open("mechanism"), Label::open("detail")],
    };
    COLLECTIONS = {
        name: "ktm_collections_total",
        help: "Collections the KTM collector has run (one batch each).",
        kind: Kind::Counter, unit: Unit::Events, lanes: Lanes::None, labels: &[],
    };
    COLLECTION_DURATION = {
        name: "ktm_collection_duration_seconds",
        help: "How long the last collection took: reading every module's counters and status, before the batch is recorded.",
        kind: Kind::Gauge, unit: Unit::Seconds, lanes: Lanes::None, labels: &[],
    };
    MODULE_START_FAILURES = {
        name: "ktm_module_start_failures_total",
        help: "Times a KTM module failed to start (load or attach); a disabled module is started again every minute.",
        kind: Kind::Counter, unit: Unit::Events, lanes: Lanes::None, labels: &[],
    };
    BPF_STATS_ENABLED = {
        name: "ktm_bpf_stats_enabled",
        help: "Whether the kernel counts BPF program runs and run time (sysctl kernel.bpf_stats_enabled), so that the ktm_bpf_program_* series exist.",
        kind: Kind::Gauge, unit: Unit::Boolean, lanes: Lanes::None, labels: &[],
    };
    BPF_PROGRAM_RUNS = {
        name: "ktm_bpf_program_runs_total",
        help: "Times the kernel ran this KTM BPF program (run_cnt; counted while kernel.bpf_stats_enabled is 1).",
        kind: Kind::Counter, unit: Unit::Runs, lanes: Lanes::None, labels: &PROGRAM,
    };
    BPF_PROGRAM_RUN_TIME = {
        name: "ktm_bpf_program_run_time_seconds_total",
        help: "Time the kernel spent running this KTM BPF program (run_time_ns; counted while kernel.bpf_stats_enabled is 1).",
        kind: Kind::Counter, unit: Unit::Seconds, lanes: Lanes::None, labels: &PROGRAM,
    };
    SCRAPES = {
        name: "ktm_scrapes_total",
        help: "GET /metrics requests answered, this one included.",
        kind: Kind::Counter, unit: Unit::Events, lanes: Lanes::None, labels: &[],
    };
    HTTP_REQUESTS_REFUSED = {
        name: "ktm_http_requests_refused_total",
        help: "Requests answered with 4xx or 5xx because they were malformed, too large or not GET/HEAD.",
        kind: Kind::Counter, unit: Unit::Events, lanes: Lanes::None, labels: &[],
    };
    HTTP_CONNECTIONS_EVICTED = {
        name: "ktm_http_connections_evicted_total",
        help: "Connections closed to admit a new one past the connection cap.",
        kind: Kind::Counter, unit: Unit::Events, lanes: Lanes::None, labels: &[],
    };
    LOG_LINES_SUPPRESSED = {
        name: "ktm_log_lines_suppressed_total",
        help: "Log lines held back by the logger's rate limit (repeats of one statement).",
        kind: Kind::Counter, unit: Unit::Events, lanes: Lanes::None, labels: &[],
    };
    PRIVILEGES = {
        name: "ktm_privileges",
        help: "What the KTM process holds: effective capabilities, no_new_privs, seccomp mode (2: filtered)",
        kind: Kind::Gauge, unit: Unit::Info, lanes: Lanes::None,
        labels: &[Label::open("capabilities"), Label::open("cap_eff"), Label::open("no_new_privs"), Label::open("seccomp")],
    };
}

/// The metrics the iomonitor's programs count, in the order the module exports them.
pub const IOMONITOR: [&MetricDef; 14] = [
    &CACHE_READ_ATTEMPTS,
    &CACHE_MISSES,
    &PAGE_CACHE_ADDS,
    &PAGE_CACHE_DELETES,
    &SYS_READ_BYTES,
    &SYS_PREAD_BYTES,
    &FADVISE_CALLS,
    &FADVISE_SUCCESS,
    &MEMORY_LRU_PAGES_SCANNED,
    &MEMORY_LRU_PAGES_RECLAIMED,
    &MEMORY_DIRECT_RECLAIM_BEGIN,
    &FADVISE_ADVICE,
    &SYS_READ_LATENCY,
    &SYS_PREAD_LATENCY,
];

/// The entry named `name` (an exported family name), if the catalogue has one.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    ALL.iter().copied().find(|d| d.name == name)
}

/// The entry whose key is `key` (`SYS_PREAD_LATENCY`), if the catalogue has one.
pub fn by_key(key: &str) -> Option<&'static MetricDef> {
    ALL.iter().copied().find(|d| d.key == key)
}

/// Checks that every metric fed by a plan is a catalogue entry as the catalogue has it, the
/// same entry fed by at most one plan: `fed` lists each plan's name with the metrics it
/// names. The probe list is built from typed entries, so a stray name can only come from
/// an entry defined outside this table; the tests run this on every probe list they use.
pub fn check_fed<'a>(fed: impl IntoIterator<Item = (&'a str, &'a [&'a MetricDef])>) -> Result<(), String> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (plan, metrics) in fed {
        for m in metrics {
            match find(m.name) {
                None => return Err(format!("plan {plan} feeds {}, which the metric catalogue lacks", m.name)),
                Some(d) if d != *m => {
                    return Err(format!("plan {plan} feeds {} with a definition other than the catalogue's", m.name))
                }
                Some(d) if d.lanes == Lanes::None => {
                    return Err(format!("plan {plan} feeds {}, which no program counts", m.name))
                }
                Some(_) => {}
            }
            if let Some((other, _)) = seen.iter().find(|(_, n)| *n == m.name) {
                return Err(format!("{} is fed by two plans, {other} and {plan}", m.name));
            }
            seen.push((plan, m.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_unique_and_valid() {
        for (i, d) in ALL.iter().enumerate() {
            assert!(d.name.starts_with("ktm_"), "{}", d.name);
            assert!(d.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", d.name);
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                d.name
            );
            assert!(!d.help.is_empty() && !d.help.contains(['\n', '\t']), "{}", d.name);
            assert!(ALL[..i].iter().all(|o| o.name != d.name && o.key != d.key), "{} twice", d.name);
            assert_eq!(by_key(d.key), Some(*d));
            assert_eq!(find(d.name), Some(*d));
        }
    }

    #[test]
    fn lanes_tile_the_counters_value() {
        let mut owner = vec![None; LANES];
        for d in ALL {
            let n = d.lane_count();
            assert_eq!(n == 0, d.lanes == Lanes::None, "{}", d.name);
            assert!(d.lanes.base() + n <= LANES, "{} runs past the counters value", d.name);
            for (lane, o) in owner.iter_mut().enumerate().skip(d.lanes.base()).take(n) {
                assert_eq!(o.replace(d.name), None, "lane {lane}: {} overlaps", d.name);
            }
        }
        assert!(owner.iter().all(Option::is_some), "unused lanes: {owner:?}");
        assert!(IOMONITOR.iter().all(|d| d.lanes != Lanes::None));
        assert_eq!(ALL.iter().filter(|d| d.lanes != Lanes::None).count(), IOMONITOR.len());
    }

    #[test]
    fn a_name_the_catalogue_lacks_fails_the_check() {
        const TYPO: MetricDef = MetricDef { name: "ktm_cache_mises_total", ..CACHE_MISSES };
        let err = check_fed([("ktm_cache_miss", &[&TYPO][..])]).unwrap_err();
        assert!(err.contains("ktm_cache_mises_total, which the metric catalogue lacks"), "{err}");
        const OTHER_HELP: MetricDef = MetricDef { help: "Other.", ..CACHE_MISSES };
        assert!(check_fed([("p", &[&OTHER_HELP][..])]).unwrap_err().contains("other than the catalogue's"));
        assert!(check_fed([("p", &[&SCRAPES][..])]).unwrap_err().contains("no program counts"));
        let twice = check_fed([("a", &[&CACHE_MISSES][..]), ("b", &[&CACHE_MISSES][..])]).unwrap_err();
        assert!(twice.contains("fed by two plans, a and b"), "{twice}");
        assert_eq!(check_fed([("ktm_cache_miss", &[&CACHE_MISSES][..])]), Ok(()));
    }
}
