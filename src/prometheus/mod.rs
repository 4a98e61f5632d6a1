//! Prometheus text exposition (format 0.0.4) of a batch. The strict parser that proves the
//! rendering unambiguous, used by the tests and by nothing else, is [`parse`](mod@parse).
//!
//! KTM itself serves nothing; this is for the sidecar's exporters and for the `ktm` command.
//! Counters go out typed `counter` so that `rate()` handles their resets (the existing
//! implementation exposed them as gauges). Module status goes out as two gauge families, so
//! a dashboard can show next to each number whether it is being counted and by which
//! mechanism:
//!
//! - `ktm_module_state{module, state, reason?, scope?} 1`, one series per module;
//! - `ktm_metric_source{module, metric, mechanism, detail} 1`, one per module and metric,
//!   `mechanism="unavailable"` when none could attach and `detail` saying why.
//!
//! One bad series must not cost the whole scrape (Prometheus rejects an exposition with one
//! malformed line), so [`render`] leaves out, with a `log` warning, any series it could only
//! render invalidly: a bad metric or label name, a repeated label name, a histogram that
//! fails [`Histogram::check`](crate::metrics::Histogram::check) or has an `le` label, a
//! series whose type differs from its family's first series, or a family whose sample names
//! would collide with an earlier family's (a gauge `x_count` next to a histogram `x`).

pub mod parse;
mod syntax;

pub use parse::{parse, parse_samples, sample_value, Family, MetricType, ParseError, Sample};
pub use syntax::format_value;
use syntax::{valid_label_name, valid_metric_name};

use crate::catalogue;
use crate::metrics::{Batch, Metric, MetricValue, ModuleStatus};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::time::UNIX_EPOCH;

/// Name of the module-state gauge family ([`catalogue::MODULE_STATE`]).
pub const MODULE_STATE: &str = catalogue::MODULE_STATE.name;
/// Name of the metric-source gauge family ([`catalogue::METRIC_SOURCE`]).
pub const METRIC_SOURCE: &str = catalogue::METRIC_SOURCE.name;

/// The batch as exposition text, without sample timestamps.
///
/// Without timestamps the scraper stamps samples with its scrape time, which is what a pull
/// exporter of current counters wants; see [`render_with_timestamps`] for replaying history.
///
/// Families come in first-appearance order with one `# HELP` (the first non-empty help of
/// the family; omitted if there is none) and one `# TYPE` line each, even if `batch.metrics`
/// interleaves them. A series repeated with the same name and label set (in any order) is
/// emitted once, at its first position, with the *last* value: a later push of the same
/// series within a batch is taken as a correction. The status families follow the metrics.
pub fn render(batch: &Batch) -> String {
    render_inner(batch, None)
}

/// As [`render`], with every sample stamped with the batch's timestamp in milliseconds, so
/// that batches replayed from a recorder's history keep their collection time.
///
/// A timestamp before the Unix epoch cannot be expressed and is left out.
pub fn render_with_timestamps(batch: &Batch) -> String {
    let ms = batch.timestamp.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis());
    render_inner(batch, ms)
}

fn render_inner(batch: &Batch, timestamp_ms: Option<u128>) -> String {
    let status = status_metrics(&batch.status);
    let families = group(batch.metrics.iter().chain(status.iter()));
    let ts = timestamp_ms.map(|ms| format!(" {ms}")).unwrap_or_default();
    let mut out = String::new();
    for f in &families {
        let name = f.name;
        if let Some(help) = f.help {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        }
        let _ = writeln!(out, "# TYPE {name} {}", f.kind);
        for m in &f.series {
            let labels = &m.labels;
            match &m.value {
                MetricValue::Counter(v) => {
                    let _ = writeln!(out, "{name}{} {v}{ts}", label_set(labels, None));
                }
                MetricValue::Gauge(v) | MetricValue::FloatCounter(v) => {
                    let _ = writeln!(out, "{name}{} {}{ts}", label_set(labels, None), format_value(*v));
                }
                MetricValue::Histogram(h) => {
                    for b in &h.buckets {
                        let le = format_value(b.upper_bound);
                        let _ =
                            writeln!(out, "{name}_bucket{} {}{ts}", label_set(labels, Some(&le)), b.cumulative_count);
                    }
                    let _ = writeln!(out, "{name}_bucket{} {}{ts}", label_set(labels, Some("+Inf")), h.count);
                    let _ = writeln!(out, "{name}_sum{} {}{ts}", label_set(labels, None), format_value(h.sum));
                    let _ = writeln!(out, "{name}_count{} {}{ts}", label_set(labels, None), h.count);
                }
            }
        }
    }
    out
}

/// The status as gauge series: one state series per module and one source series per
/// module and metric, later entries replacing earlier ones with the same key.
fn status_metrics(status: &[ModuleStatus]) -> Vec<Metric> {
    let mut modules: Vec<&ModuleStatus> = Vec::new();
    for s in status {
        match modules.iter_mut().find(|m| m.module == s.module) {
            Some(m) => *m = s,
            None => modules.push(s),
        }
    }
    let mut out = Vec::new();
    for s in &modules {
        let mut m = catalogue::MODULE_STATE
            .gauge(1.0)
            .with_label("module", s.module.as_str())
            .with_label("state", s.state.as_str());
        if let Some(reason) = &s.reason {
            m = m.with_label("reason", reason.as_str());
        }
        if !s.scope.is_empty() {
            m = m.with_label("scope", s.scope.as_str());
        }
        out.push(m);
    }
    for s in &modules {
        let mut sources: Vec<&crate::metrics::MetricSource> = Vec::new();
        for src in &s.sources {
            match sources.iter_mut().find(|x| x.metric == src.metric) {
                Some(x) => *x = src,
                None => sources.push(src),
            }
        }
        for src in sources {
            out.push(
                catalogue::METRIC_SOURCE
                    .gauge(1.0)
                    .with_label("module", s.module.as_str())
                    .with_label("metric", src.metric.as_str())
                    .with_label("mechanism", src.mechanism.as_deref().unwrap_or("unavailable"))
                    .with_label("detail", src.detail.as_str()),
            );
        }
    }
    out
}

/// A family ready to render.
struct RenderFamily<'a> {
    name: &'a str,
    kind: &'static str,
    help: Option<&'a str>,
    series: Vec<&'a Metric>,
    /// Sorted label sets of `series`, for dedupe.
    keys: Vec<Vec<(&'a str, &'a str)>>,
}

fn group<'a>(metrics: impl Iterator<Item = &'a Metric>) -> Vec<RenderFamily<'a>> {
    let mut families: Vec<RenderFamily<'a>> = Vec::new();
    let mut index: HashMap<&'a str, usize> = HashMap::new();
    for m in metrics {
        if let Some(why) = series_problem(m) {
            log::warn!("prometheus: leaving out {}{:?}: {why}", m.name, m.labels);
            continue;
        }
        let i = *index.entry(m.name.as_str()).or_insert_with(|| {
            families.push(RenderFamily {
                name: &m.name,
                kind: m.value.type_name(),
                help: None,
                series: Vec::new(),
                keys: Vec::new(),
            });
            families.len() - 1
        });
        let f = &mut families[i];
        if f.kind != m.value.type_name() {
            log::warn!(
                "prometheus: leaving out {}{:?}: a {} in a {} family",
                m.name,
                m.labels,
                m.value.type_name(),
                f.kind
            );
            continue;
        }
        if f.help.is_none() && !m.help.is_empty() {
            f.help = Some(&m.help);
        }
        let mut key: Vec<(&str, &str)> = m.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        key.sort_unstable();
        match f.keys.iter().position(|k| *k == key) {
            Some(at) => f.series[at] = m,
            None => {
                f.keys.push(key);
                f.series.push(m);
            }
        }
    }
    let mut taken: HashSet<String> = HashSet::new();
    families.retain(|f| {
        let names: Vec<String> = match f.kind {
            "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{}{s}", f.name)).collect(),
            _ => vec![f.name.to_string()],
        };
        if let Some(clash) = names.iter().find(|n| taken.contains(*n)) {
            log::warn!("prometheus: leaving out family {}: its series {clash} collides with an earlier family", f.name);
            return false;
        }
        taken.extend(names);
        true
    });
    families
}

/// Why `m` cannot be rendered validly, if it cannot.
fn series_problem(m: &Metric) -> Option<String> {
    if !valid_metric_name(&m.name) {
        return Some("invalid metric name".into());
    }
    let mut seen = HashSet::new();
    for (k, _) in &m.labels {
        if !valid_label_name(k) || k.starts_with("__") {
            return Some(format!("invalid label name `{k}`"));
        }
        if !seen.insert(k.as_str()) {
            return Some(format!("label `{k}` given twice"));
        }
    }
    if let MetricValue::FloatCounter(v) = m.value {
        if !(v >= 0.0 && v.is_finite()) {
            return Some(format!("counter value {v} is negative or not finite"));
        }
    }
    if let MetricValue::Histogram(h) = &m.value {
        if seen.contains("le") {
            return Some("a histogram cannot have an `le` label of its own".into());
        }
        if let Err(why) = h.check() {
            return Some(why);
        }
    }
    None
}

fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn label_set(pairs: &[(String, String)], le: Option<&str>) -> String {
    if pairs.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let all = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(le.map(|le| ("le", le)));
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::parse::{parse_float, parse_labels, unescape_help};
    use super::*;
    use crate::metrics::{Histogram, MetricSource, ModuleState};
    use std::collections::BTreeMap;

    /// A deterministic stream of arbitrary bits.
    fn bits(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed ^ (*seed >> 29)
    }

    #[test]
    fn values_round_trip_through_their_text() {
        let mut seed = 1;
        let mut values: Vec<f64> = (0..20_000).map(|_| f64::from_bits(bits(&mut seed))).collect();
        values.extend((0..64).map(|i| (1u64 << i) as f64 / 1e9));
        values.extend([0.0, -0.0, 1.0, 1e-5, 9.999999999999999e-6, 1e16, 9999999999999998.0, f64::MIN_POSITIVE]);
        values.extend([f64::MAX, f64::MIN, 5e-324, f64::INFINITY, f64::NEG_INFINITY]);
        for v in values {
            let text = format_value(v);
            let back = parse_float(&text).unwrap_or_else(|| panic!("{v:?} as `{text}` does not parse"));
            assert!(back == v || (v.is_nan() && back.is_nan()), "{v:?} as `{text}` came back as {back:?}");
        }
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(1e-5), "0.00001");
        assert_eq!(format_value(9e-6), "9e-6");
        assert_eq!(format_value(1e16), "1e16");
        assert_eq!(format_value(123.25), "123.25");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_label_value("a\"b\\c\nd\te"), "a\\\"b\\\\c\\nd\te");
        assert_eq!(escape_help("a\"b\\c\nd"), "a\"b\\\\c\\nd");
        assert_eq!(unescape_help("a\"b\\\\c\\nd", 1).unwrap(), "a\"b\\c\nd");
        let mut labels = BTreeMap::new();
        let rest = parse_labels("x=\"a\\\"b\\\\c\\nd\u{1F600}\"} 1", &mut labels, 1).unwrap();
        assert_eq!((labels["x"].as_str(), rest), ("a\"b\\c\nd\u{1F600}", " 1"));
    }

    #[test]
    fn status_is_one_series_per_module_and_metric() {
        let batch = Batch::new(
            vec![],
            vec![
                ModuleStatus::new("iomonitor", ModuleState::WaitingForTarget)
                    .with_source(MetricSource::attached("m_total", "kprobe", "a")),
                ModuleStatus::new("iomonitor", ModuleState::Active)
                    .with_source(MetricSource::attached("m_total", "fentry", "b"))
                    .with_source(MetricSource::attached("m_total", "fentry", "c")),
            ],
        );
        let fams = parse(&render(&batch)).unwrap();
        assert_eq!(fams[0].samples.len(), 1);
        assert_eq!(fams[0].samples[0].labels["state"], "active");
        assert!(!fams[0].samples[0].labels.contains_key("reason"), "no reason label without a reason");
        assert!(!fams[0].samples[0].labels.contains_key("scope"), "no scope label without a scope");
        assert_eq!(fams[1].samples.len(), 1);
        assert_eq!(fams[1].samples[0].labels["detail"], "c");
    }

    #[test]
    fn help_is_the_first_non_empty_and_left_out_when_none() {
        let batch = Batch::new(
            vec![
                Metric::gauge("a", "", 1.0).with_label("i", "1"),
                Metric::gauge("a", "A.", 1.0).with_label("i", "2"),
                Metric::gauge("a", "Not this.", 1.0).with_label("i", "3"),
                Metric::gauge("b", "", 1.0),
            ],
            vec![],
        );
        let text = render(&batch);
        assert!(text.starts_with("# HELP a A.\n# TYPE a gauge\n"), "{text}");
        assert!(!text.contains("# HELP b"), "{text}");
        let fams = parse(&text).unwrap();
        assert_eq!(fams[1].help, None);
    }

    #[test]
    fn timestamps_before_the_epoch_are_left_out() {
        let mut batch = Batch::new(vec![Metric::counter("c_total", "c", 1)], vec![]);
        batch.timestamp = UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert!(render_with_timestamps(&batch).ends_with("c_total 1\n"));
    }

    #[test]
    fn parser_does_not_panic_on_mangled_text() {
        let batch = Batch::new(
            vec![
                Metric::histogram("h", "h\\\n", Histogram::from_log2_ns(&[1, 2, 3, 4], 10)).with_label("x", "\"\\\n"),
                Metric::counter("c_total", "c", 1).with_label("a", "\u{e9}"),
            ],
            vec![ModuleStatus::new("m", ModuleState::Disabled).with_reason("why \"not\"")],
        );
        let text = render(&batch);
        assert!(parse(&text).is_ok(), "{text}");
        let specials = ['"', '\\', '{', '}', ',', '=', ' ', '\n', '#', 'e', '+', '-', '.', '\u{e9}', '\r'];
        let mut seed = 7;
        for _ in 0..5_000 {
            let mut chars: Vec<char> = text.chars().collect();
            for _ in 0..1 + bits(&mut seed) % 3 {
                let at = (bits(&mut seed) % chars.len() as u64) as usize;
                match bits(&mut seed) % 3 {
                    0 => {
                        chars.remove(at);
                    }
                    1 => chars.insert(at, specials[(bits(&mut seed) % specials.len() as u64) as usize]),
                    _ => chars.truncate(at),
                }
                if chars.is_empty() {
                    break;
                }
            }
            let mangled: String = chars.into_iter().collect();
            if let Err(e) = parse(&mangled) {
                assert!(e.line >= 1 && e.line <= mangled.split('\n').count(), "{e} in:\n{mangled}");
            }
        }
    }
}
