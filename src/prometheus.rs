//! Prometheus text exposition (format 0.0.4) of a batch, and a strict parser of it.
//!
//! Counters go out as `counter` so that downstream `rate()` treats them as counters; the
//! status goes out as gauges, so a dashboard can show which mechanism feeds each metric.

use crate::metrics::{Batch, Metric, MetricValue, ModuleState};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn labels(pairs: &[(String, String)], extra: Option<(&str, &str)>) -> String {
    let mut all: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    if let Some((k, v)) = extra {
        all.push(format!("{k}=\"{}\"", escape_label(v)));
    }
    if all.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", all.join(","))
    }
}

/// Formats a float so that it parses back to the same value.
fn num(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    format!("{v:?}")
}

fn state_name(s: ModuleState) -> &'static str {
    match s {
        ModuleState::Active => "active",
        ModuleState::Degraded => "degraded",
        ModuleState::Disabled => "disabled",
        ModuleState::WaitingForTarget => "waiting_for_target",
    }
}

/// The batch as exposition text: one `# HELP` and `# TYPE` per family, families in first
/// appearance order, a repeated series (same name and labels) emitted once (the first).
pub fn render(batch: &Batch) -> String {
    let mut status_metrics = Vec::new();
    for s in &batch.status {
        let mut l =
            vec![("module".to_string(), s.module.clone()), ("state".to_string(), state_name(s.state).to_string())];
        if let Some(r) = &s.reason {
            l.push(("reason".into(), r.clone()));
        }
        status_metrics.push(Metric {
            name: "ktm_module_state".into(),
            help: "KTM module state (1 for the current state), with the reason when not plainly active.".into(),
            labels: l,
            value: MetricValue::Gauge(1.0),
        });
        for src in &s.sources {
            status_metrics.push(Metric {
                name: "ktm_metric_source".into(),
                help: "The mechanism feeding each metric on this kernel (unavailable: none could attach).".into(),
                labels: vec![
                    ("module".into(), s.module.clone()),
                    ("metric".into(), src.metric.clone()),
                    ("mechanism".into(), src.mechanism.clone().unwrap_or_else(|| "unavailable".into())),
                    ("detail".into(), src.detail.clone()),
                ],
                value: MetricValue::Gauge(1.0),
            });
        }
    }
    let mut families: Vec<(&str, Vec<&Metric>)> = Vec::new();
    for m in batch.metrics.iter().chain(status_metrics.iter()) {
        match families.iter_mut().find(|(n, _)| *n == m.name) {
            Some((_, v)) => v.push(m),
            None => families.push((&m.name, vec![m])),
        }
    }
    let mut out = String::new();
    for (name, metrics) in families {
        let kind = match metrics[0].value {
            MetricValue::Counter(_) => "counter",
            MetricValue::Gauge(_) => "gauge",
            MetricValue::Histogram(_) => "histogram",
        };
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&metrics[0].help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let mut seen = HashSet::new();
        for m in metrics {
            let mut key = m.labels.clone();
            key.sort();
            if !seen.insert(key) {
                continue;
            }
            match &m.value {
                MetricValue::Counter(v) => {
                    let _ = writeln!(out, "{name}{} {v}", labels(&m.labels, None));
                }
                MetricValue::Gauge(v) => {
                    let _ = writeln!(out, "{name}{} {}", labels(&m.labels, None), num(*v));
                }
                MetricValue::Histogram(h) => {
                    for b in &h.buckets {
                        let le = num(b.upper_bound);
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            labels(&m.labels, Some(("le", &le))),
                            b.cumulative_count
                        );
                    }
                    let _ = writeln!(out, "{name}_bucket{} {}", labels(&m.labels, Some(("le", "+Inf"))), h.count);
                    let _ = writeln!(out, "{name}_sum{} {}", labels(&m.labels, None), num(h.sum));
                    let _ = writeln!(out, "{name}_count{} {}", labels(&m.labels, None), h.count);
                }
            }
        }
    }
    out
}

/// One parsed sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed family: its type and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// A malformed exposition, with the line it was found on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn parse_labels(s: &str, line: usize) -> Result<(BTreeMap<String, String>, &str), ParseError> {
    let err = |r: &str| ParseError { line, reason: r.into() };
    let mut out = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let eq = rest.find('=').ok_or_else(|| err("label without `=`"))?;
        let key = rest[..eq].trim().to_string();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err("bad label name"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or_else(|| err("label value not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err(err("bad escape in label value")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(err("unterminated label value")),
            }
        };
        rest = &rest[end + 1..];
        if out.insert(key, value).is_some() {
            return Err(err("repeated label"));
        }
        if !rest.starts_with(',') && !rest.starts_with('}') {
            return Err(err("expected `,` or `}` after a label"));
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses exposition text strictly: every sample's family has a TYPE, no series repeats,
/// histogram buckets are cumulative and end in `+Inf` equal to `_count`.
pub fn parse(text: &str) -> Result<Vec<Family>, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |r: String| ParseError { line, reason: r };
        if raw.trim().is_empty() || raw.starts_with("# HELP ") {
            continue;
        }
        if let Some(t) = raw.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').ok_or_else(|| err("TYPE without a type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err(format!("unknown type {kind}")));
            }
            if families.iter().any(|f| f.name == name) {
                return Err(err(format!("second TYPE for {name}")));
            }
            families.push(Family { name: name.into(), kind: kind.into(), samples: Vec::new() });
            continue;
        }
        if raw.starts_with('#') {
            continue;
        }
        let name_end = raw.find(['{', ' ']).ok_or_else(|| err("sample without a value".into()))?;
        let name = &raw[..name_end];
        let (labels, rest) = if raw[name_end..].starts_with('{') {
            parse_labels(&raw[name_end + 1..], line)?
        } else {
            (BTreeMap::new(), &raw[name_end..])
        };
        let value_text = rest.trim();
        let value = parse_value(value_text).ok_or_else(|| err(format!("bad value `{value_text}`")))?;
        let family = families
            .iter_mut()
            .rev()
            .find(|f| {
                f.name == name
                    || (f.kind == "histogram"
                        && [format!("{}_bucket", f.name), format!("{}_sum", f.name), format!("{}_count", f.name)]
                            .contains(&name.to_string()))
            })
            .ok_or_else(|| err(format!("sample {name} has no TYPE line before it")))?;
        if !seen.insert((name.to_string(), labels.clone())) {
            return Err(err(format!("duplicate series {name}{labels:?}")));
        }
        family.samples.push(Sample { name: name.into(), labels, value });
    }
    for f in families.iter().filter(|f| f.kind == "histogram") {
        check_histogram(f)?;
    }
    Ok(families)
}

/// Per label set (without `le`): the buckets as (le, cumulative count), and `_count`.
type HistogramSeries = BTreeMap<Vec<(String, String)>, (Vec<(f64, f64)>, Option<f64>)>;

fn check_histogram(f: &Family) -> Result<(), ParseError> {
    let err = |r: String| ParseError { line: 0, reason: format!("histogram {}: {r}", f.name) };
    let mut series: HistogramSeries = BTreeMap::new();
    for s in &f.samples {
        let mut key: Vec<(String, String)> =
            s.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect();
        key.sort();
        let e = series.entry(key).or_default();
        if s.name.ends_with("_bucket") {
            let le = s.labels.get("le").and_then(|v| parse_value(v)).ok_or_else(|| err("bucket without le".into()))?;
            e.0.push((le, s.value));
        } else if s.name.ends_with("_count") {
            e.1 = Some(s.value);
        }
    }
    for (key, (buckets, count)) in series {
        let count = count.ok_or_else(|| err(format!("{key:?}: no _count")))?;
        let inf =
            buckets.iter().find(|(le, _)| le.is_infinite()).ok_or_else(|| err(format!("{key:?}: no +Inf bucket")))?;
        if inf.1 != count {
            return Err(err(format!("{key:?}: +Inf {} != _count {count}", inf.1)));
        }
        for w in buckets.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(err(format!("{key:?}: buckets not increasing and cumulative at le={}", w[1].0)));
            }
        }
    }
    Ok(())
}
