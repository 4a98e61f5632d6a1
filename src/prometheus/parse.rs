//! A strict parser of exposition text, stricter than the format requires: it exists so the
//! tests can prove that what [`render`](super::render) produces is unambiguous for any scraper.

use super::syntax::{format_value, valid_label_name, valid_metric_name};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

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
        sample_value(&self.samples, name, labels)
    }
}

/// The value of the sample named `name` whose labels are exactly `labels`, among `samples`
/// (a family's, or a whole exposition's from [`parse_samples`]).
pub fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
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
/// Stricter than the format requires, because it exists to prove that what [`render`](super::render)
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
pub(super) fn parse_labels<'a>(
    mut s: &'a str,
    out: &mut BTreeMap<String, String>,
    n: usize,
) -> Result<&'a str, ParseError> {
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

pub(super) fn unescape_help(s: &str, n: usize) -> Result<String, ParseError> {
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
pub(super) fn parse_float(s: &str) -> Option<f64> {
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
