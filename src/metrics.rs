//! What one push to the Flight Recorder carries: typed metrics and module status.

use serde::Serialize;
use std::time::SystemTime;

/// A metric's value, typed so counters stay counters downstream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum MetricValue {
    Counter(u64),
    Gauge(f64),
    Histogram(Histogram),
}

/// A cumulative histogram; the `+Inf` bucket is `count`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Histogram {
    pub buckets: Vec<Bucket>,
    pub sum: f64,
    pub count: u64,
}

/// One cumulative bucket: observations at or below `upper_bound`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub upper_bound: f64,
    pub cumulative_count: u64,
}

/// One series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    pub name: String,
    pub help: String,
    pub labels: Vec<(String, String)>,
    pub value: MetricValue,
}

impl Metric {
    /// A counter without labels.
    pub fn counter(name: &str, help: &str, v: u64) -> Metric {
        Metric { name: name.into(), help: help.into(), labels: Vec::new(), value: MetricValue::Counter(v) }
    }

    /// Adds a label.
    pub fn with_label(mut self, k: &str, v: &str) -> Metric {
        self.labels.push((k.into(), v.into()));
        self
    }
}

/// A module's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ModuleState {
    Active,
    Degraded,
    Disabled,
    WaitingForTarget,
}

/// Which mechanism feeds a metric, or why none does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetricSource {
    pub metric: String,
    /// None: unavailable on this kernel.
    pub mechanism: Option<String>,
    pub detail: String,
}

/// A module's status, pushed with every batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleStatus {
    pub module: String,
    pub state: ModuleState,
    pub reason: Option<String>,
    pub sources: Vec<MetricSource>,
    /// What the filter currently selects, in words.
    pub scope: String,
}

/// One push.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Batch {
    pub timestamp: SystemTime,
    pub metrics: Vec<Metric>,
    pub status: Vec<ModuleStatus>,
}
