//! What one push to the Flight Recorder carries: typed metrics and the modules' status.
//!
//! Values stay typed all the way to the recorder because the existing implementation sent
//! everything untyped, so downstream systems exposed its counters as gauges and `rate()`
//! lost its reset handling. Counters here are raw monotonic sums; rates are derived
//! downstream, never here.
//!
//! Everything derives [`Serialize`] so that a sidecar can forward a [`Batch`] as JSON without
//! a mapping layer of its own.

use serde::Serialize;
use std::fmt;
use std::time::SystemTime;

/// Number of log2 latency slots the crate's latency histograms are laid out with.
///
/// Slot `i` holds latencies in `[2^i, 2^(i+1))` ns (slot 0 also holds 0 ns) and the last slot
/// holds everything from `2^(LOG2_NS_SLOTS - 1)` ns up. With 37 slots the largest finite
/// bucket bound is `2^36` ns ≈ 68.7 s, comfortably above the 16 s the design requires, and
/// 36 finite buckets are few enough for a scrape. It is one constant so that the eBPF side
/// and the exporter cannot disagree about where the catch-all slot is.
pub const LOG2_NS_SLOTS: usize = 37;

/// A metric's value, typed so counters stay counters downstream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum MetricValue {
    /// A monotonic count since the counter's lifecycle began (the sidecar's start: re-targeting never resets it).
    Counter(u64),
    /// A monotonic sum that is not a whole number: seconds of BPF program run time. Exported
    /// as a Prometheus counter; the C ABI gives it as `counter` (whole part) and `gauge`
    /// (exact).
    FloatCounter(f64),
    /// A value that may go up and down.
    Gauge(f64),
    /// A cumulative histogram.
    Histogram(Histogram),
}

impl MetricValue {
    /// The Prometheus type name, which is also what a JSON consumer should switch on.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetricValue::Counter(_) | MetricValue::FloatCounter(_) => "counter",
            MetricValue::Gauge(_) => "gauge",
            MetricValue::Histogram(_) => "histogram",
        }
    }
}

/// A cumulative histogram in Prometheus' classic layout.
///
/// The `+Inf` bucket is not stored: it always equals `count`, and storing it would only allow
/// the two to disagree. `buckets` hold the finite upper bounds in increasing order with
/// non-decreasing cumulative counts, none above `count` ([`Histogram::check`] says whether
/// they do; the Prometheus renderer skips a histogram that does not).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Histogram {
    /// Finite buckets, increasing `upper_bound`.
    pub buckets: Vec<Bucket>,
    /// Sum of all observations, in the unit of the bounds (seconds for latency).
    pub sum: f64,
    /// Number of observations; the implied `+Inf` bucket.
    pub count: u64,
}

/// One cumulative bucket: the observations at or below `upper_bound`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bucket {
    /// Inclusive upper bound (`le`), in seconds for latency histograms.
    pub upper_bound: f64,
    /// Observations with a value at or below `upper_bound`.
    pub cumulative_count: u64,
}

impl Histogram {
    /// A latency histogram from log2 nanosecond slots as the eBPF programs count them.
    ///
    /// `per_bucket_counts[i]` holds latencies in `[2^i, 2^(i+1))` ns (slot 0 also 0 ns), so the
    /// bucket made from it gets `le` = its *true* upper bound `2^(i+1)` ns, in seconds. (The
    /// existing implementation used the lower bound, understating every quantile by up to 2x.)
    /// The last element is the catch-all slot the programs clamp larger latencies into; it
    /// has no finite upper bound, so it only appears in `count` (the `+Inf` bucket). Pass
    /// [`LOG2_NS_SLOTS`] elements: the layout then never changes, and series neither appear
    /// nor disappear between pushes, even when all buckets are empty.
    ///
    /// `count` is the sum of the slots rather than a separately read counter, because per-CPU
    /// counters read at slightly different moments could otherwise leave `+Inf` below the
    /// last finite bucket. Sums saturate instead of wrapping.
    pub fn from_log2_ns(per_bucket_counts: &[u64], sum_ns: u64) -> Histogram {
        let finite = per_bucket_counts.len().saturating_sub(1);
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(finite);
        for (i, &n) in per_bucket_counts[..finite].iter().enumerate() {
            cumulative = cumulative.saturating_add(n);
            buckets.push(Bucket { upper_bound: log2_bound_seconds(i + 1), cumulative_count: cumulative });
        }
        let count = cumulative.saturating_add(per_bucket_counts.last().copied().unwrap_or(0));
        // Division by the exact 1e9 rounds correctly, so the bound's shortest decimal is the
        // exact one ("5.12e-7"), not an artefact of multiplying by the inexact 1e-9.
        Histogram { buckets, sum: sum_ns as f64 / 1e9, count }
    }

    /// Why this histogram cannot be exported as is, or `Ok` when it can.
    ///
    /// Exporting a malformed histogram would make Prometheus reject the whole scrape, so the
    /// renderer checks first.
    pub fn check(&self) -> Result<(), String> {
        let mut prev: Option<&Bucket> = None;
        for b in &self.buckets {
            if !b.upper_bound.is_finite() {
                return Err(format!("bucket bound {} is not finite (+Inf is implied by count)", b.upper_bound));
            }
            if let Some(p) = prev {
                if b.upper_bound <= p.upper_bound {
                    return Err(format!("bucket bounds not increasing: {} after {}", b.upper_bound, p.upper_bound));
                }
                if b.cumulative_count < p.cumulative_count {
                    return Err(format!(
                        "bucket counts not cumulative: {} at le={} after {} at le={}",
                        b.cumulative_count, b.upper_bound, p.cumulative_count, p.upper_bound
                    ));
                }
            }
            prev = Some(b);
        }
        if let Some(last) = prev {
            if last.cumulative_count > self.count {
                return Err(format!(
                    "count {} below the last bucket's {} at le={}",
                    self.count, last.cumulative_count, last.upper_bound
                ));
            }
        }
        Ok(())
    }
}

/// `2^exp` ns in seconds, correctly rounded.
fn log2_bound_seconds(exp: usize) -> f64 {
    // 2^exp is exact in an f64 for every exponent a u64 slot index can reach here.
    2f64.powi(exp.min(1023) as i32) / 1e9
}

/// One series: a name, its labels and its value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    /// Family name; counters keep their `_total` suffix as given.
    pub name: String,
    /// The family's help text.
    pub help: String,
    /// Label pairs in the order they should be shown.
    pub labels: Vec<(String, String)>,
    /// The typed value.
    pub value: MetricValue,
}

impl Metric {
    /// A counter without labels.
    pub fn counter(name: impl Into<String>, help: impl Into<String>, value: u64) -> Metric {
        Metric::new(name, help, MetricValue::Counter(value))
    }

    /// A gauge without labels.
    pub fn gauge(name: impl Into<String>, help: impl Into<String>, value: f64) -> Metric {
        Metric::new(name, help, MetricValue::Gauge(value))
    }

    /// A histogram without labels.
    pub fn histogram(name: impl Into<String>, help: impl Into<String>, value: Histogram) -> Metric {
        Metric::new(name, help, MetricValue::Histogram(value))
    }

    /// A metric of any type without labels.
    pub fn new(name: impl Into<String>, help: impl Into<String>, value: MetricValue) -> Metric {
        Metric { name: name.into(), help: help.into(), labels: Vec::new(), value }
    }

    /// Adds a label.
    ///
    /// Takes `AsRef<str>` rather than `Into<String>` so that `&&str` items of an iterator
    /// over a `[&str]` table (the fadvise advice names) work without a deref.
    pub fn with_label(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Metric {
        self.labels.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A module's state, as the sidecar should show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    /// Counting every metric it exports.
    Active,
    /// Running, but some metrics are unavailable or the scope is narrower than intended; the
    /// reason says which.
    Degraded,
    /// Not running: failed to load or attach, or turned off. The reason says why.
    Disabled,
    /// Loaded, but the target process has not been found yet; it keeps probing.
    WaitingForTarget,
}

impl ModuleState {
    /// The snake_case name used as a label value and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleState::Active => "active",
            ModuleState::Degraded => "degraded",
            ModuleState::Disabled => "disabled",
            ModuleState::WaitingForTarget => "waiting_for_target",
        }
    }
}

impl fmt::Display for ModuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which mechanism feeds a metric on the running kernel, or why none does.
///
/// Exported because the same metric can come from fentry on one kernel and a tracepoint on
/// another, with different costs and edge cases; a dashboard must be able to tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetricSource {
    /// The metric family name, e.g. `ktm_cache_misses_total`.
    pub metric: String,
    /// `fentry`, `kprobe`, `raw_tracepoint`, `tracepoint`...; `None` when the metric is
    /// unavailable on this kernel (it is then not exported rather than counted from
    /// something else).
    pub mechanism: Option<String>,
    /// The attach point, or why the metric is unavailable.
    pub detail: String,
}

impl MetricSource {
    /// A metric fed by `mechanism` attached at `attach_point`.
    pub fn attached(
        metric: impl Into<String>,
        mechanism: impl Into<String>,
        attach_point: impl Into<String>,
    ) -> MetricSource {
        MetricSource { metric: metric.into(), mechanism: Some(mechanism.into()), detail: attach_point.into() }
    }

    /// A metric this kernel cannot give its meaning, and why.
    pub fn unavailable(metric: impl Into<String>, why: impl Into<String>) -> MetricSource {
        MetricSource { metric: metric.into(), mechanism: None, detail: why.into() }
    }
}

/// A module's status, pushed with every batch so the recorder keeps it next to the numbers
/// it explains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleStatus {
    /// Module name, e.g. `iomonitor`.
    pub module: String,
    /// Current state.
    pub state: ModuleState,
    /// Why the state is not plainly active (or a note when it is, e.g. comm-only filtering).
    pub reason: Option<String>,
    /// Where each metric comes from.
    pub sources: Vec<MetricSource>,
    /// What the filter currently selects, in words, e.g. `cgroup /x (id 123)` or
    /// `comm prefix banyand: <why>`; empty when not applicable.
    pub scope: String,
}

impl ModuleStatus {
    /// A status without reason, sources or scope.
    pub fn new(module: impl Into<String>, state: ModuleState) -> ModuleStatus {
        ModuleStatus { module: module.into(), state, reason: None, sources: Vec::new(), scope: String::new() }
    }

    /// A module that is not running, and why (`not started`, `stopped`, or the error its
    /// start gave): the one way every driver of a module reports it idle.
    pub fn disabled(module: impl Into<String>, reason: impl Into<String>) -> ModuleStatus {
        ModuleStatus::new(module, ModuleState::Disabled).with_reason(reason)
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> ModuleStatus {
        self.reason = Some(reason.into());
        self
    }

    /// Adds a metric source.
    pub fn with_source(mut self, source: MetricSource) -> ModuleStatus {
        self.sources.push(source);
        self
    }

    /// Sets the scope description.
    pub fn with_scope(mut self, scope: impl Into<String>) -> ModuleStatus {
        self.scope = scope.into();
        self
    }
}

/// One push: every module's metrics and status, read at `timestamp`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Batch {
    /// When the counters were read.
    pub timestamp: SystemTime,
    /// All series, possibly from several modules.
    pub metrics: Vec<Metric>,
    /// One entry per module.
    pub status: Vec<ModuleStatus>,
}

impl Batch {
    /// A batch stamped now.
    pub fn new(metrics: Vec<Metric>, status: Vec<ModuleStatus>) -> Batch {
        Batch { timestamp: SystemTime::now(), metrics, status }
    }

    /// The series named `name` whose labels are exactly `labels` (in any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Metric> {
        self.metrics.iter().rev().find(|m| {
            m.name == name && m.labels.len() == labels.len() && labels.iter().all(|(k, v)| m.label(k) == Some(*v))
        })
    }

    /// The status of `module`.
    pub fn module(&self, module: &str) -> Option<&ModuleStatus> {
        self.status.iter().rev().find(|s| s.module == module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_buckets_use_true_upper_bounds() {
        let mut slots = vec![0u64; LOG2_NS_SLOTS];
        slots[0] = 1; // 0 or 1 ns
        slots[9] = 2; // [512, 1024) ns
        slots[LOG2_NS_SLOTS - 1] = 3; // >= 2^36 ns
        let h = Histogram::from_log2_ns(&slots, 5_000_000_000);
        assert_eq!(h.buckets.len(), LOG2_NS_SLOTS - 1);
        for (i, b) in h.buckets.iter().enumerate() {
            assert_eq!(b.upper_bound, (1u64 << (i + 1)) as f64 / 1e9, "slot {i}");
        }
        assert_eq!(h.buckets[0].upper_bound, 2e-9);
        assert_eq!(h.buckets[9].upper_bound, 1.024e-6);
        assert_eq!(h.buckets.last().map(|b| b.upper_bound), Some(68.719476736));
        assert_eq!(h.buckets[8].cumulative_count, 1);
        assert_eq!(h.buckets[9].cumulative_count, 3);
        assert_eq!(h.buckets.last().map(|b| b.cumulative_count), Some(3));
        assert_eq!(h.count, 6);
        assert_eq!(h.sum, 5.0);
        assert_eq!(h.check(), Ok(()));
    }

    #[test]
    fn log2_layout_is_stable_when_empty() {
        let h = Histogram::from_log2_ns(&[0; LOG2_NS_SLOTS], 0);
        assert_eq!(h.buckets.len(), LOG2_NS_SLOTS - 1);
        assert!(h.buckets.iter().all(|b| b.cumulative_count == 0));
        assert_eq!((h.count, h.sum), (0, 0.0));
    }

    #[test]
    fn log2_degenerate_inputs_do_not_panic() {
        assert_eq!(Histogram::from_log2_ns(&[], 7), Histogram { buckets: vec![], sum: 7e-9, count: 0 });
        let h = Histogram::from_log2_ns(&[4], 0);
        assert!(h.buckets.is_empty());
        assert_eq!(h.count, 4);
        let h = Histogram::from_log2_ns(&[u64::MAX, u64::MAX, 1], u64::MAX);
        assert_eq!(h.buckets[1].cumulative_count, u64::MAX);
        assert_eq!(h.count, u64::MAX);
        assert_eq!(h.check(), Ok(()));
        let huge = vec![1u64; 2000];
        let h = Histogram::from_log2_ns(&huge, 0);
        assert!(h.buckets.iter().all(|b| !b.upper_bound.is_nan()));
    }

    #[test]
    fn check_names_the_problem() {
        let b = |upper_bound, cumulative_count| Bucket { upper_bound, cumulative_count };
        let h = |buckets, count| Histogram { buckets, sum: 0.0, count };
        assert!(h(vec![b(1.0, 2), b(1.0, 2)], 2).check().unwrap_err().contains("not increasing"));
        assert!(h(vec![b(1.0, 2), b(2.0, 1)], 2).check().unwrap_err().contains("not cumulative"));
        assert!(h(vec![b(1.0, 2), b(2.0, 3)], 2).check().unwrap_err().contains("count 2 below"));
        assert!(h(vec![b(f64::INFINITY, 2)], 2).check().unwrap_err().contains("implied"));
        assert!(h(vec![b(f64::NAN, 2)], 2).check().is_err());
        assert_eq!(h(vec![], 0).check(), Ok(()));
    }

    #[test]
    fn constructors_and_lookup() {
        let b = Batch::new(
            vec![
                Metric::counter("a_total", "A.", 1),
                Metric::counter("adv_total", "Advice.", 2).with_label("advice", "random"),
                Metric::gauge("g", "G.", 0.5),
            ],
            vec![ModuleStatus::new("iomonitor", ModuleState::Degraded)
                .with_reason("kprobes missing")
                .with_source(MetricSource::unavailable("x_total", "no kprobes"))
                .with_source(MetricSource::attached("a_total", "tracepoint", "syscalls:sys_enter_read"))
                .with_scope("comm prefix banyand")],
        );
        assert_eq!(b.get("a_total", &[]).map(|m| &m.value), Some(&MetricValue::Counter(1)));
        assert_eq!(b.get("adv_total", &[("advice", "random")]).map(|m| &m.value), Some(&MetricValue::Counter(2)));
        assert!(b.get("adv_total", &[]).is_none());
        assert_eq!(b.get("g", &[]).map(|m| m.value.type_name()), Some("gauge"));
        let s = b.module("iomonitor").unwrap();
        assert_eq!(s.state.to_string(), "degraded");
        assert_eq!(s.sources[0].mechanism, None);
        assert_eq!(s.sources[1].mechanism.as_deref(), Some("tracepoint"));
    }
}
