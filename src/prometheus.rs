//! Prometheus text exposition (format 0.0.4) of a batch, and a strict parser of it.
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

use crate::metrics::{Batch, Metric, MetricValue, ModuleStatus};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write};
use std::time::UNIX_EPOCH;

/// Name of the module-state gauge family.
pub const MODULE_STATE: &str = "ktm_module_state";
/// Name of the metric-source gauge family.
pub const METRIC_SOURCE: &str = "ktm_metric_source";

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

/// Formats a sample value or `le` bound so that it parses back to the same `f64`.
///
/// The digits are the shortest that round-trip; plain decimal for magnitudes in
/// `[1e-5, 1e16)` (`0.000131072`, `1`, `68.719476736`), exponent form outside it (`2e-9`,
/// `5.12e-7`), and `+Inf`, `-Inf`, `NaN`. One rule for every value matters for `le`: the
/// bound is part of the series identity, so it must be spelled the same in every scrape.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v != 0.0 && (v.abs() < 1e-5 || v.abs() >= 1e16) {
        format!("{v:e}")
    } else if v == 0.0 {
        "0".into() // not "-0"
    } else {
        format!("{v}")
    }
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
                MetricValue::Gauge(v) => {
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
        let mut m = Metric::gauge(
            MODULE_STATE,
            "State of each KTM module (1 for its current state), with why it is not plainly active.",
            1.0,
        )
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
                Metric::gauge(
                    METRIC_SOURCE,
                    "Mechanism feeding each KTM metric on this kernel (unavailable: none could; detail says why).",
                    1.0,
                )
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

fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
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

/// A family's declared type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl MetricType {
    /// The name used on `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }

    fn from_name(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            _ => return None,
        })
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets tests write `assert_eq!(family.kind, "counter")`.
impl PartialEq<&str> for MetricType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for MetricType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// One parsed sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's own name (`x_bucket`, `x_sum`... for histograms).
    pub name: String,
    /// Labels, `le` included for buckets.
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// Milliseconds since the epoch, when the line has one.
    pub timestamp_ms: Option<i64>,
}

/// A parsed family: its `# TYPE`, `# HELP` and samples in text order.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: MetricType,
    /// Unescaped help text, if the family had a `# HELP` line.
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

impl Family {
    /// The value of the sample named `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

/// A malformed exposition, with the (1-based) line it was found on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses exposition text strictly, returning its families in text order.
///
/// Stricter than the format requires, because it exists to prove that what [`render`]
/// produces is unambiguous for any scraper: every sample needs a `# TYPE` line before it and
/// must belong to the family of the latest `# HELP`/`# TYPE` line (families are not
/// interleaved); no series (name and label set, `le` compared as a number) appears twice;
/// label names are valid and not repeated; label values and help text use only the `\\`,
/// `\"` (labels) and `\n` escapes; values are decimal floats, `+Inf`, `-Inf` or `NaN`, with an
/// optional integer timestamp; counters are not negative; histogram samples are `_bucket`
/// (with a numeric `le`), `_sum` and `_count` (without `le`), and per label set the buckets
/// come in increasing `le` order with non-decreasing counts, end in `le="+Inf"` equal to
/// `_count`, and `_sum` is present. Other `#` lines are comments; blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Family>, ParseError> {
    Parser::default().run(text)
}

/// [`parse`], flattened to the samples in text order.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>, ParseError> {
    Ok(parse(text)?.into_iter().flat_map(|f| f.samples).collect())
}

#[derive(Default)]
struct Parser {
    families: Vec<Family>,
    /// Per family: whether it has a TYPE line, and the line of each sample.
    typed: Vec<bool>,
    lines: Vec<Vec<usize>>,
    index: HashMap<String, usize>,
    /// The family the latest HELP, TYPE or sample line belonged to.
    current: Option<usize>,
    series: HashSet<(String, Vec<(String, String)>)>,
}

fn err<T>(line: usize, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line, reason: reason.into() })
}

impl Parser {
    fn run(mut self, text: &str) -> Result<Vec<Family>, ParseError> {
        // Split on '\n' only: `lines()` would also eat a '\r', which the format does not
        // treat as a line end.
        for (i, line) in text.split('\n').enumerate() {
            let n = i + 1;
            if line.chars().all(|c| c == ' ' || c == '\t') {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                self.comment(comment, n)?;
            } else {
                self.sample(line, n)?;
            }
        }
        for i in 0..self.families.len() {
            if self.families[i].kind == MetricType::Histogram {
                check_histogram(&self.families[i], &self.lines[i])?;
            }
        }
        Ok(self.families)
    }

    /// The family named `name`, created if new; an error if its samples have begun.
    fn declare(&mut self, name: &str, what: &str, n: usize) -> Result<usize, ParseError> {
        if !valid_metric_name(name) {
            return err(n, format!("invalid metric name `{name}` on {what} line"));
        }
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.families.push(Family {
                    name: name.into(),
                    kind: MetricType::Untyped,
                    help: None,
                    samples: Vec::new(),
                });
                self.typed.push(false);
                self.lines.push(Vec::new());
                self.index.insert(name.into(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        if !self.families[i].samples.is_empty() {
            return err(n, format!("{what} line for {name} after its samples"));
        }
        self.current = Some(i);
        Ok(i)
    }

    fn comment(&mut self, rest: &str, n: usize) -> Result<(), ParseError> {
        let rest = rest.trim_start_matches([' ', '\t']);
        let (keyword, rest) = split_token(rest);
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        if !rest.starts_with([' ', '\t']) {
            return err(n, format!("{keyword} line without a metric name"));
        }
        let (name, rest) = split_token(rest.trim_start_matches([' ', '\t']));
        if keyword == "HELP" {
            let i = self.declare(name, "HELP", n)?;
            if self.families[i].help.is_some() {
                return err(n, format!("second HELP line for {name}"));
            }
            if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
                return err(n, "HELP text not separated from the name");
            }
            self.families[i].help = Some(unescape_help(rest.trim_start_matches([' ', '\t']), n)?);
        } else {
            let i = self.declare(name, "TYPE", n)?;
            if self.typed[i] {
                return err(n, format!("second TYPE line for {name}"));
            }
            let kind = rest.trim_matches([' ', '\t']);
            self.families[i].kind = MetricType::from_name(kind)
                .ok_or_else(|| ParseError { line: n, reason: format!("unknown type `{kind}`") })?;
            self.typed[i] = true;
        }
        Ok(())
    }

    /// The family a sample named `name` belongs to: the current family if the name fits it
    /// (so a counter `x_count` declared earlier does not capture histogram `x`'s samples),
    /// else the first that fits.
    fn family_of(&self, name: &str) -> Result<usize, String> {
        let fits = |i: usize| {
            let f = &self.families[i];
            if !self.typed[i] {
                return false;
            }
            match name.strip_prefix(f.name.as_str()) {
                Some("") => f.kind != MetricType::Histogram,
                Some("_sum" | "_count") => matches!(f.kind, MetricType::Histogram | MetricType::Summary),
                Some("_bucket") => f.kind == MetricType::Histogram,
                _ => false,
            }
        };
        if let Some(i) = self.current.filter(|&i| fits(i)) {
            return Ok(i);
        }
        let candidates = [name, name.strip_suffix("_bucket").unwrap_or(""), name.strip_suffix("_sum").unwrap_or("")]
            .into_iter()
            .chain([name.strip_suffix("_count").unwrap_or("")]);
        for base in candidates {
            if let Some(&i) = self.index.get(base) {
                if fits(i) {
                    return Err(format!(
                        "sample {name} is separated from the rest of family {}",
                        self.families[i].name
                    ));
                }
            }
        }
        match self.index.get(name) {
            Some(&i) if self.families[i].kind == MetricType::Histogram => {
                Err(format!("sample {name} of histogram {name} is not a _bucket, _sum or _count"))
            }
            _ => Err(format!("sample {name} has no TYPE line before it")),
        }
    }

    fn sample(&mut self, line: &str, n: usize) -> Result<(), ParseError> {
        let name_len = line
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
            .map_or(line.len(), |(i, _)| i);
        let name = &line[..name_len];
        if name.is_empty() {
            return err(n, "line is neither a comment nor a sample");
        }
        let mut rest = &line[name_len..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.trim_start_matches([' ', '\t']).strip_prefix('{') {
            rest = parse_labels(after, &mut labels, n)?;
        }
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return err(n, format!("sample {name}: expected a blank before the value, found `{}`", preview(rest)));
        }
        let (value_text, rest) = split_token(rest.trim_start_matches([' ', '\t']));
        let value = parse_float(value_text)
            .ok_or_else(|| ParseError { line: n, reason: format!("sample {name}: bad value `{value_text}`") })?;
        let (ts_text, rest) = split_token(rest.trim_start_matches([' ', '\t']));
        let timestamp_ms = if ts_text.is_empty() {
            None
        } else {
            Some(
                ts_text
                    .parse::<i64>()
                    .map_err(|_| ParseError { line: n, reason: format!("sample {name}: bad timestamp `{ts_text}`") })?,
            )
        };
        if !rest.trim_matches([' ', '\t']).is_empty() {
            return err(n, format!("sample {name}: trailing text `{}`", preview(rest)));
        }

        let i = self.family_of(name).map_err(|reason| ParseError { line: n, reason })?;
        let family = &self.families[i];
        let suffix = &name[family.name.len()..];
        match family.kind {
            MetricType::Counter if value < 0.0 => return err(n, format!("counter {name} is negative: {value}")),
            MetricType::Histogram => {
                if (suffix == "_bucket") != labels.contains_key("le") {
                    return err(n, format!("{name}: `le` belongs on _bucket samples and only there"));
                }
                if suffix != "_sum" && !(value >= 0.0 && value.is_finite()) {
                    return err(n, format!("{name}: a count must be a finite non-negative number, not {value}"));
                }
            }
            MetricType::Summary if suffix.is_empty() && !labels.contains_key("quantile") => {
                return err(n, format!("summary sample {name} without a quantile"));
            }
            _ => {}
        }
        let mut key: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in key.iter_mut() {
            if k == "le" {
                let le = parse_float(v)
                    .filter(|le| !le.is_nan())
                    .ok_or_else(|| ParseError { line: n, reason: format!("{name}: `le` is not a number: `{v}`") })?;
                *v = format_value(le);
            }
        }
        if !self.series.insert((name.to_string(), key)) {
            return err(n, format!("duplicate series {name}{labels:?}"));
        }
        self.families[i].samples.push(Sample { name: name.into(), labels, value, timestamp_ms });
        self.lines[i].push(n);
        Ok(())
    }
}

/// Parses `name="value",...}` into `out`; returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, out: &mut BTreeMap<String, String>, n: usize) -> Result<&'a str, ParseError> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let name_len = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        let name = &s[..name_len];
        if !valid_label_name(name) {
            return err(n, format!("bad label name at `{}`", preview(s)));
        }
        s = s[name_len..].trim_start_matches([' ', '\t']);
        s = s.strip_prefix('=').ok_or_else(|| ParseError { line: n, reason: format!("label {name} without `=`") })?;
        s = s.trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| ParseError { line: n, reason: format!("label {name}: value not quoted") })?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, c)) => return err(n, format!("label {name}: bad escape `\\{c}`")),
                    None => return err(n, format!("label {name}: unterminated value")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return err(n, format!("label {name}: unterminated value")),
            }
        };
        if out.insert(name.to_string(), value).is_some() {
            return err(n, format!("label {name} given twice"));
        }
        s = s[end + 1..].trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return err(n, format!("label {name}: expected `,` or `}}` after the value, found `{}`", preview(s)));
        }
    }
}

fn unescape_help(s: &str, n: usize) -> Result<String, ParseError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(c) => return err(n, format!("bad escape `\\{c}` in HELP text")),
                None => return err(n, "HELP text ends in a lone backslash"),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// A decimal float, `+Inf`, `-Inf` or `NaN`; not the other spellings Rust accepts (`inf`,
/// `infinity`...), since other parsers need not.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// The text up to the next blank, and the rest.
fn split_token(s: &str) -> (&str, &str) {
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

fn preview(s: &str) -> String {
    s.chars().take(20).collect()
}

fn check_histogram(f: &Family, lines: &[usize]) -> Result<(), ParseError> {
    struct Series {
        buckets: Vec<(f64, f64, usize)>,
        sum: bool,
        count: Option<f64>,
        last_line: usize,
    }
    let mut series: Vec<(BTreeMap<&str, &str>, Series)> = Vec::new();
    for (s, &line) in f.samples.iter().zip(lines) {
        let key: BTreeMap<&str, &str> =
            s.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let at = match series.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                series.push((key, Series { buckets: Vec::new(), sum: false, count: None, last_line: line }));
                series.len() - 1
            }
        };
        let e = &mut series[at].1;
        e.last_line = line;
        if s.name.ends_with("_bucket") {
            let le = s.labels.get("le").and_then(|v| parse_float(v)).unwrap_or(f64::NAN);
            if let Some(&(ple, pcount, _)) = e.buckets.last() {
                if le <= ple {
                    return err(line, format!("{}: le={le} after le={ple}: bounds must increase", s.name));
                }
                if s.value < pcount {
                    return err(
                        line,
                        format!("{}: le={le} counts {} after {pcount} at le={ple}: not cumulative", s.name, s.value),
                    );
                }
            }
            e.buckets.push((le, s.value, line));
        } else if s.name.ends_with("_sum") {
            e.sum = true;
        } else {
            e.count = Some(s.value);
        }
    }
    for (key, s) in &series {
        let Some(&(le, inf, line)) = s.buckets.last() else {
            return err(s.last_line, format!("histogram {}{key:?} has no buckets", f.name));
        };
        if le != f64::INFINITY {
            return err(line, format!("histogram {}{key:?} has no le=\"+Inf\" bucket", f.name));
        }
        let Some(count) = s.count else {
            return err(s.last_line, format!("histogram {}{key:?} has no _count", f.name));
        };
        if inf != count {
            return err(s.last_line, format!("histogram {}{key:?}: +Inf bucket {inf} != _count {count}", f.name));
        }
        if !s.sum {
            return err(s.last_line, format!("histogram {}{key:?} has no _sum", f.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Histogram, MetricSource, ModuleState};

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
