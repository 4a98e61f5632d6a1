//! KTM's configuration: the `collector` section of the FODC sidecar's YAML.
//!
//! ```yaml
//! collector:
//!   interval: 10s
//!   modules:
//!     - iomonitor
//!   ebpf:
//!     # cgroup_path: /sys/fs/cgroup/<banyandb-cgroup>
//!     # comm_prefix: banyand
//! ```
//!
//! The document is walked with hand-written serde seeds rather than derived `Deserialize`
//! impls because every error must name the full dotted key (`collector.ebpf.comm_prefix`)
//! and its line: serde_yaml only attaches the position of the innermost value being
//! deserialized, so each check runs inside the visitor of the value it is about, and the
//! key travels down with the seed. A mistyped key is an error, never silently ignored:
//! a misspelled `cgroup_path` would otherwise quietly fall back to autodetection.
//!
//! A key whose value is null (`ebpf:` with only comments under it) takes its default, so
//! the design's example with everything commented out is valid.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserialize, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, Visitor};

/// Modules this crate can run; `collector.modules` may only name these.
pub const KNOWN_MODULES: &[&str] = &["iomonitor"];

/// Push interval when `collector.interval` is not set (the design's 10 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Comm prefix when `collector.ebpf.comm_prefix` is not set.
pub const DEFAULT_COMM_PREFIX: &str = "banyand";

/// Longest comm the kernel keeps: `TASK_COMM_LEN` is 16 bytes including the NUL, so a
/// longer prefix could never match anything.
pub const COMM_MAX_LEN: usize = 15;

/// The whole KTM configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub collector: CollectorConfig,
}

/// `collector.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// How often counters are read and pushed to the Flight Recorder.
    pub interval: Duration,
    /// Enabled modules, in the order given; each appears once.
    pub modules: Vec<String>,
    pub ebpf: EbpfConfig,
}

/// `collector.ebpf.*`: how the target process is scoped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbpfConfig {
    /// Target cgroup v2, absolute or relative to the cgroup2 mount, kept as written;
    /// `None` means derive it from the discovered process.
    pub cgroup_path: Option<PathBuf>,
    /// Prefix of the target's comm, used for discovery and for the comm-mode filter.
    pub comm_prefix: String,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            interval: DEFAULT_INTERVAL,
            modules: vec!["iomonitor".to_string()],
            ebpf: EbpfConfig::default(),
        }
    }
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig { cgroup_path: None, comm_prefix: DEFAULT_COMM_PREFIX.to_string() }
    }
}

impl EbpfConfig {
    /// Re-checks values that may have been set in code rather than parsed, because an
    /// empty prefix would make the comm filter count every process on the host.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_comm_prefix(&self.comm_prefix).map_err(|m| ConfigError::new(Some("collector.ebpf.comm_prefix"), m))?;
        if let Some(p) = &self.cgroup_path {
            check_cgroup_path(p).map_err(|m| ConfigError::new(Some("collector.ebpf.cgroup_path"), m))?;
        }
        Ok(())
    }
}

impl Config {
    /// Parses a YAML document; an empty one yields the defaults.
    pub fn from_yaml_str(src: &str) -> Result<Config, ConfigError> {
        Self::from_yaml_str_with_modules(src, KNOWN_MODULES)
    }

    /// Like [`Config::from_yaml_str`], accepting the given module names; lets a host that
    /// registers extra modules reuse the same parser.
    pub fn from_yaml_str_with_modules(src: &str, known_modules: &[&str]) -> Result<Config, ConfigError> {
        if src.len() > MAX_CONFIG_BYTES {
            let at = src.char_indices().map(|(i, _)| i).take_while(|&i| i <= MAX_CONFIG_BYTES).last().unwrap_or(0);
            let line = src[..at].matches('\n').count() + 1;
            return Err(ConfigError::at_line(
                line,
                format!("the config is {} bytes, past the {MAX_CONFIG_BYTES} read at most from this line on; a KTM config is a few lines", src.len()),
            ));
        }
        check_flow_nesting(src)?;
        let ctx = Ctx { failure: RefCell::new(None), known_modules, src };
        // serde_yaml hands the visitors whatever parsed before a syntax error and reports the
        // error only afterwards; a first pass that ignores the content makes a syntax error
        // win over whatever a visitor would say about a half-parsed value.
        if let Err(err) = serde::de::IgnoredAny::deserialize(serde_yaml::Deserializer::from_str(src)) {
            return ctx.into_error(err);
        }
        let seed = NodeSeed { ctx: &ctx, key: String::new(), handler: RootHandler };
        match seed.deserialize(serde_yaml::Deserializer::from_str(src)) {
            Ok(Some(cfg)) => Ok(cfg),
            Ok(None) => Ok(Config::default()),
            Err(err) => ctx.into_error(err),
        }
    }

    /// Reads and parses a YAML file; errors carry the file name.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: None,
            line: None,
            column: None,
            message: format!("cannot read config file: {e}"),
            file: Some(path.to_path_buf()),
            source: Some(e),
        })?;
        Self::from_yaml_str(&text).map_err(|mut e| {
            e.file = Some(path.to_path_buf());
            e
        })
    }
}

/// Why a configuration was rejected, with the dotted key and position when known.
#[derive(Debug)]
pub struct ConfigError {
    key: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
    file: Option<PathBuf>,
    source: Option<io::Error>,
}

impl ConfigError {
    fn at_line(line: usize, message: String) -> Self {
        ConfigError { key: None, line: Some(line), column: None, message, file: None, source: None }
    }

    fn new(key: Option<&str>, message: String) -> Self {
        ConfigError { key: key.map(str::to_string), line: None, column: None, message, file: None, source: None }
    }

    /// Full dotted path of the offending key, e.g. `collector.ebpf.comm_prefix`;
    /// list elements are written `collector.modules[1]`.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// 1-based line of the offending key or value.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// 1-based column of the offending key or value.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// The explanation without key or position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The file being read, for errors from [`Config::from_file`].
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " (line {l}, column {c})"),
            (Some(l), None) => write!(f, " (line {l})"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Parses a Go `time.ParseDuration` string ("10s", "1m30s", "1.5h", "250us"), as the
/// sidecar's other settings are written that way. An error reads as a predicate of the
/// input (`"10x" is not a duration: ...`). Unlike Go, a unitless number (even "0")
/// and non-positive values are refused: an interval of 0 or "10" (seconds? ms?) is a
/// mistake, not a request.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "units are required: ns, us (or µs), ms, s, m, h, e.g. \"10s\", \"500ms\" or \"1m30s\"";
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return Err(format!("is not a duration: it is empty; {HINT}"));
    }
    if body.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("is not a duration: a bare number has no unit; {HINT}"));
    }
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let num = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(format!("is not a duration: expected a number before {unit:?}; {HINT}"));
        }
        if unit.is_empty() {
            return Err(format!("is not a duration: missing unit after {num:?}; {HINT}"));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("is not a duration: unknown unit {unit:?}; {HINT}")),
        };
        let too_long = || format!("is not a duration: out of range (at most {} ns)", i64::MAX);
        let mut value: u128 = 0;
        for d in int_part.bytes() {
            value = value.checked_mul(10).and_then(|v| v.checked_add(u128::from(d - b'0'))).ok_or_else(too_long)?;
            if value > i64::MAX as u128 {
                return Err(too_long());
            }
        }
        let mut nanos = value * scale;
        // Fraction digits beyond the nanosecond are dropped, as Go does.
        let mut div: u128 = 1;
        let mut frac: u128 = 0;
        for d in frac_part.bytes().take(18) {
            frac = frac * 10 + u128::from(d - b'0');
            div *= 10;
        }
        nanos += frac * scale / div;
        total = total.checked_add(nanos).ok_or_else(too_long)?;
        if total > i64::MAX as u128 {
            return Err(too_long());
        }
    }
    if neg && total > 0 {
        return Err("is negative; a duration here must be greater than zero".to_string());
    }
    if total == 0 {
        return Err("is zero; a duration here must be greater than zero".to_string());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Checks a comm prefix: it must be able to match something and must not match everything.
pub fn check_comm_prefix(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("must not be empty: an empty prefix would match every process".to_string());
    }
    if p.len() > COMM_MAX_LEN {
        return Err(format!(
            "{p:?} is {} bytes, longer than {COMM_MAX_LEN}: the kernel's comm is 16 bytes including the terminating NUL, so this prefix could never match",
            p.len()
        ));
    }
    if p.contains('\0') || p.contains('\n') {
        return Err(format!("{p:?} contains a NUL or newline, which a comm never does"));
    }
    Ok(())
}

/// Checks a `cgroup_path` lexically and returns it normalized (`.` dropped, `..` applied):
/// a relative path must stay inside the cgroup mount it is relative to. Whether an
/// absolute path lies inside the cgroup2 mount is only known at discovery time.
pub fn check_cgroup_path(p: &Path) -> Result<PathBuf, String> {
    if p.as_os_str().is_empty() {
        return Err("must not be empty; omit the key to autodetect the cgroup".to_string());
    }
    normalize_lexically(p).ok_or_else(|| {
        format!(
            "{:?} escapes the cgroup mount with \"..\"; give a path inside the cgroup v2 mount",
            p.display().to_string()
        )
    })
}

/// Applies `.` and `..` without touching the filesystem. `None` when a relative path
/// climbs above its base; for an absolute path `..` at `/` stays at `/`, as the kernel does.
pub(crate) fn normalize_lexically(p: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    let absolute = p.is_absolute();
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if out.pop().is_none() && !absolute {
                    return None;
                }
            }
            Component::Normal(s) => out.push(s),
        }
    }
    let mut path = if absolute { PathBuf::from("/") } else { PathBuf::new() };
    path.extend(out);
    Some(path)
}

// ---------------------------------------------------------------------------------------
// The seeds. Each carries the dotted key of the value it deserializes; when a check fails
// the first (innermost) failure is recorded in `Ctx` and serde_yaml adds the position.

struct Ctx<'a> {
    failure: RefCell<Option<(Option<String>, String)>>,
    known_modules: &'a [&'a str],
    /// The document, to locate what serde_yaml reports without a position.
    src: &'a str,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&self, key: &str, msg: String) -> E {
        let mut slot = self.failure.borrow_mut();
        if slot.is_none() {
            let key = if key.is_empty() { None } else { Some(key.to_string()) };
            *slot = Some((key, msg.clone()));
        }
        E::custom(msg)
    }

    fn into_error(self, err: serde_yaml::Error) -> Result<Config, ConfigError> {
        let loc = err.location();
        let (line, column) = (loc.as_ref().map(|l| l.line()), loc.as_ref().map(|l| l.column()));
        let (key, message) = match self.failure.into_inner() {
            Some(recorded) => recorded,
            None => {
                let text = err.to_string();
                if text.starts_with("EOF while parsing") {
                    // A document of only comments; same as an empty one.
                    return Ok(Config::default());
                }
                // serde_yaml appends the position itself; we report it separately.
                let text = match &loc {
                    Some(l) => {
                        let suffix = format!(" at line {} column {}", l.line(), l.column());
                        text.replacen(&suffix, "", 1)
                    }
                    None => text,
                };
                if text.contains("more than one document") {
                    if let Some(second) = second_document_line(self.src) {
                        return Err(ConfigError::at_line(
                            second,
                            "malformed YAML: more than one document: a second one starts here; a config is one document"
                                .to_string(),
                        ));
                    }
                }
                (None, format!("malformed YAML: {text}"))
            }
        };
        Err(ConfigError { key, line, column, message, file: None, source: None })
    }
}

/// Largest config read: a real one is a few hundred bytes; the YAML parser's time grows
/// faster than the size for some shapes.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Deepest `[`/`{` nesting a config may have (a real one has at most 3 levels).
const MAX_FLOW_NESTING: usize = 32;

/// Refuses flow collections nested deeper than [`MAX_FLOW_NESTING`] before the YAML parser
/// sees them: its time grows with the square of the depth (10,000 levels, 50 KB, take
/// seconds). A lexical scan: brackets inside quotes and comments are skipped.
fn check_flow_nesting(src: &str) -> Result<(), ConfigError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut prev = '\n';
    let mut escaped = false;
    let (mut line, mut column) = (1usize, 0usize);
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        if c == '\n' {
            (line, column) = (line + 1, 0);
        }
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => {
                if q == '\'' && chars.peek() == Some(&'\'') {
                    chars.next();
                    column += 1;
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None => match c {
                '#' if prev.is_whitespace() => {
                    while chars.peek().is_some_and(|&n| n != '\n') {
                        chars.next();
                    }
                }
                '"' | '\'' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_NESTING {
                        return Err(ConfigError {
                            key: None,
                            line: Some(line),
                            column: Some(column),
                            message: format!(
                                "malformed YAML: brackets nested more than {MAX_FLOW_NESTING} deep; a KTM config has at most 3 levels"
                            ),
                            file: None,
                            source: None,
                        });
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = c;
    }
    Ok(())
}

/// The 1-based line where the parser starts a second YAML document: asked of the parser
/// itself, by rejecting that document's first node (serde_yaml locates the rejection).
fn second_document_line(src: &str) -> Option<usize> {
    struct First;
    struct RejectAll;
    impl<'de> Visitor<'de> for RejectAll {
        type Value = First;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("nothing")
        }
    }
    impl<'de> Deserialize<'de> for First {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<First, D::Error> {
            d.deserialize_any(RejectAll)
        }
    }
    let second = serde_yaml::Deserializer::from_str(src).nth(1)?;
    let err = First::deserialize(second).err()?;
    err.location().map(|l| l.line())
}

fn join_key(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// Describes an unwanted value for "found ..." messages.
fn describe_leaf(l: &Leaf) -> String {
    match l {
        Leaf::Bool(b) => format!("a boolean ({b})"),
        Leaf::Int(i) => format!("a number ({i})"),
        Leaf::Float(f) => format!("a number ({f})"),
        Leaf::Str(s) => format!("a string ({s:?})"),
    }
}

/// A scalar as YAML resolved it.
enum Leaf {
    Bool(bool),
    Int(String),
    Float(f64),
    Str(String),
}

/// Generates the `visit_*` methods for value shapes a visitor does not accept, routing
/// them through `self.reject(what)` so the message names the key.
macro_rules! reject_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(self.reject(describe_leaf(&Leaf::Bool(v))))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(self.reject(describe_leaf(&Leaf::Int(v.to_string()))))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(self.reject(describe_leaf(&Leaf::Int(v.to_string()))))
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
            Err(self.reject(describe_leaf(&Leaf::Int(v.to_string()))))
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            Err(self.reject(describe_leaf(&Leaf::Int(v.to_string()))))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(self.reject(describe_leaf(&Leaf::Float(v))))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Err(self.reject(describe_leaf(&Leaf::Str(v.to_string()))))
        }
    };
}

macro_rules! reject_enum {
    () => {
        fn visit_enum<A: EnumAccess<'de>>(self, _data: A) -> Result<Self::Value, A::Error> {
            Err(self.reject("a tagged value".to_string()))
        }
    };
}

/// What to do with the mapping at one level of the document.
trait MapHandler: Sized {
    type Out;
    /// Keys accepted at this level.
    const KEYS: &'static [&'static str];
    /// Noun for "expected {WHAT}" messages.
    const WHAT: &'static str;
    fn default_out(self) -> Self::Out;
    fn on_map<'de, A: MapAccess<'de>>(self, ctx: &Ctx, key: &str, map: A) -> Result<Self::Out, A::Error>;
}

/// Deserializes a mapping (or null, meaning defaults) with handler `H`.
struct NodeSeed<'c, 'k, H> {
    ctx: &'c Ctx<'k>,
    key: String,
    handler: H,
}

impl<'de, H: MapHandler> DeserializeSeed<'de> for NodeSeed<'_, '_, H> {
    type Value = H::Out;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<H::Out, D::Error> {
        d.deserialize_any(self)
    }
}

impl<H: MapHandler> NodeSeed<'_, '_, H> {
    fn reject<E: de::Error>(&self, found: String) -> E {
        self.ctx.fail(&self.key, format!("expected {}, found {found}", H::WHAT))
    }
}

impl<'de, H: MapHandler> Visitor<'de> for NodeSeed<'_, '_, H> {
    type Value = H::Out;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(H::WHAT)
    }
    fn visit_unit<E: de::Error>(self) -> Result<H::Out, E> {
        Ok(self.handler.default_out())
    }
    fn visit_none<E: de::Error>(self) -> Result<H::Out, E> {
        Ok(self.handler.default_out())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<H::Out, A::Error> {
        self.handler.on_map(self.ctx, &self.key, map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<H::Out, A::Error> {
        Err(self.reject("a list".to_string()))
    }
    reject_scalars!();
    reject_enum!();
}

/// Reads the next key of a mapping, refusing unknown and repeated ones at the key's line.
struct KeySeed<'c, 'k, 's> {
    ctx: &'c Ctx<'k>,
    parent: &'s str,
    known: &'static [&'static str],
    seen: &'s RefCell<Vec<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_, '_> {
    type Value = &'static str;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeySeed<'_, '_, '_> {
    fn reject<E: de::Error>(&self, found: String) -> E {
        self.ctx.fail(&join_key(self.parent, "?"), format!("keys must be strings, found {found}"))
    }

    fn check<E: de::Error>(&self, name: &str) -> Result<&'static str, E> {
        let key = join_key(self.parent, name);
        let Some(&known) = self.known.iter().find(|k| **k == name) else {
            return Err(self.ctx.fail(&key, format!("unknown key (expected one of: {})", self.known.join(", "))));
        };
        let mut seen = self.seen.borrow_mut();
        if seen.contains(&known) {
            return Err(self.ctx.fail(&key, "key given twice".to_string()));
        }
        seen.push(known);
        Ok(known)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_, '_> {
    type Value = &'static str;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static str, E> {
        self.check(v)
    }
    // Numbers and booleans as keys are most likely typos of a real key; name them as such.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<&'static str, E> {
        self.check(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<&'static str, E> {
        self.check(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<&'static str, E> {
        self.check(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<&'static str, E> {
        self.check(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<&'static str, E> {
        Err(self.reject("null".to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<&'static str, A::Error> {
        Err(self.reject("a list".to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<&'static str, A::Error> {
        Err(self.reject("a mapping".to_string()))
    }
    reject_enum!();
}

/// Walks a mapping's entries, checking keys and calling `on_value` with each known key.
fn walk_map<'de, A, F>(
    ctx: &Ctx,
    parent: &str,
    known: &'static [&'static str],
    mut map: A,
    mut on_value: F,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(&'static str, &mut A) -> Result<(), A::Error>,
{
    let seen = RefCell::new(Vec::new());
    while let Some(k) = map.next_key_seed(KeySeed { ctx, parent, known, seen: &seen })? {
        on_value(k, &mut map)?;
    }
    Ok(())
}

/// Deserializes one scalar and converts it with `convert`; `Ok(None)` for null (the
/// default) where `null_ok`.
struct LeafSeed<'c, 'k, 'f, T> {
    ctx: &'c Ctx<'k>,
    key: String,
    what: &'static str,
    null_ok: bool,
    convert: &'f dyn Fn(Leaf) -> Result<T, String>,
}

impl<'de, T> DeserializeSeed<'de> for LeafSeed<'_, '_, '_, T> {
    type Value = Option<T>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<T> LeafSeed<'_, '_, '_, T> {
    fn reject<E: de::Error>(&self, found: String) -> E {
        self.ctx.fail(&self.key, format!("expected {}, found {found}", self.what))
    }
    fn finish<E: de::Error>(self, leaf: Leaf) -> Result<Option<T>, E> {
        match (self.convert)(leaf) {
            Ok(v) => Ok(Some(v)),
            Err(msg) => Err(self.ctx.fail(&self.key, msg)),
        }
    }
}

impl<'de, T> Visitor<'de> for LeafSeed<'_, '_, '_, T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.what)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        if self.null_ok {
            Ok(None)
        } else {
            Err(self.reject("null".to_string()))
        }
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        self.visit_unit()
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<T>, E> {
        self.finish(Leaf::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<T>, E> {
        self.finish(Leaf::Int(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<T>, E> {
        self.finish(Leaf::Int(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Option<T>, E> {
        self.finish(Leaf::Int(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Option<T>, E> {
        self.finish(Leaf::Int(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<T>, E> {
        self.finish(Leaf::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<T>, E> {
        self.finish(Leaf::Str(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Option<T>, A::Error> {
        Err(self.reject("a list".to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Option<T>, A::Error> {
        Err(self.reject("a mapping".to_string()))
    }
    reject_enum!();
}

/// Accepts only a string; other scalars are a wrong type, with a hint to quote them.
fn expect_str(leaf: Leaf, what: &str) -> Result<String, String> {
    match leaf {
        Leaf::Str(s) => Ok(s),
        other => Err(format!("expected {what}, found {} (quote it if it is meant as a string)", describe_leaf(&other))),
    }
}

struct RootHandler;

impl MapHandler for RootHandler {
    type Out = Option<Config>;
    const KEYS: &'static [&'static str] = &["collector"];
    const WHAT: &'static str = "a mapping with a `collector` section at the top level";
    fn default_out(self) -> Option<Config> {
        None
    }
    fn on_map<'de, A: MapAccess<'de>>(self, ctx: &Ctx, key: &str, map: A) -> Result<Option<Config>, A::Error> {
        let mut cfg = Config::default();
        walk_map(ctx, key, Self::KEYS, map, |k, map| {
            let child = NodeSeed { ctx, key: join_key(key, k), handler: CollectorHandler };
            cfg.collector = map.next_value_seed(child)?;
            Ok(())
        })?;
        Ok(Some(cfg))
    }
}

struct CollectorHandler;

impl MapHandler for CollectorHandler {
    type Out = CollectorConfig;
    const KEYS: &'static [&'static str] = &["interval", "modules", "ebpf"];
    const WHAT: &'static str = "a mapping of collector settings";
    fn default_out(self) -> CollectorConfig {
        CollectorConfig::default()
    }
    fn on_map<'de, A: MapAccess<'de>>(self, ctx: &Ctx, key: &str, map: A) -> Result<CollectorConfig, A::Error> {
        let mut out = CollectorConfig::default();
        walk_map(ctx, key, Self::KEYS, map, |k, map| {
            let child = join_key(key, k);
            match k {
                "interval" => {
                    let convert = |leaf: Leaf| match leaf {
                        Leaf::Str(s) => parse_duration(&s).map_err(|why| format!("{s:?} {why}")),
                        Leaf::Int(n) => Err(format!("{n} has no unit; units are required, e.g. \"{n}s\" or \"{n}ms\"")),
                        Leaf::Float(n) => Err(format!("{n} has no unit; units are required, e.g. \"{n}s\"")),
                        other => Err(format!("expected a duration such as \"10s\", found {}", describe_leaf(&other))),
                    };
                    let seed = LeafSeed {
                        ctx,
                        key: child,
                        what: "a duration such as \"10s\"",
                        null_ok: true,
                        convert: &convert,
                    };
                    if let Some(d) = map.next_value_seed(seed)? {
                        out.interval = d;
                    }
                }
                "modules" => {
                    if let Some(m) = map.next_value_seed(ModulesSeed { ctx, key: child })? {
                        out.modules = m;
                    }
                }
                _ => {
                    out.ebpf = map.next_value_seed(NodeSeed { ctx, key: child, handler: EbpfHandler })?;
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

struct EbpfHandler;

impl MapHandler for EbpfHandler {
    type Out = EbpfConfig;
    const KEYS: &'static [&'static str] = &["cgroup_path", "comm_prefix"];
    const WHAT: &'static str = "a mapping of ebpf settings";
    fn default_out(self) -> EbpfConfig {
        EbpfConfig::default()
    }
    fn on_map<'de, A: MapAccess<'de>>(self, ctx: &Ctx, key: &str, map: A) -> Result<EbpfConfig, A::Error> {
        let mut out = EbpfConfig::default();
        walk_map(ctx, key, Self::KEYS, map, |k, map| {
            let child = join_key(key, k);
            if k == "cgroup_path" {
                let what = "a cgroup v2 path";
                let convert = |leaf: Leaf| {
                    let s = expect_str(leaf, what)?;
                    check_cgroup_path(Path::new(&s))?;
                    Ok(PathBuf::from(s))
                };
                out.cgroup_path =
                    map.next_value_seed(LeafSeed { ctx, key: child, what, null_ok: true, convert: &convert })?;
            } else {
                let what = "a comm prefix string";
                let convert = |leaf: Leaf| {
                    let s = expect_str(leaf, what)?;
                    check_comm_prefix(&s)?;
                    Ok(s)
                };
                if let Some(p) =
                    map.next_value_seed(LeafSeed { ctx, key: child, what, null_ok: true, convert: &convert })?
                {
                    out.comm_prefix = p;
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// `collector.modules`: a list of known, distinct module names; null means the default.
struct ModulesSeed<'c, 'k> {
    ctx: &'c Ctx<'k>,
    key: String,
}

impl<'de> DeserializeSeed<'de> for ModulesSeed<'_, '_> {
    type Value = Option<Vec<String>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ModulesSeed<'_, '_> {
    fn reject<E: de::Error>(&self, found: String) -> E {
        self.ctx.fail(
            &self.key,
            format!("expected a list of module names (known: {}), found {found}", self.ctx.known_modules.join(", ")),
        )
    }
}

impl<'de> Visitor<'de> for ModulesSeed<'_, '_> {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of module names")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let seen = RefCell::new(Vec::<String>::new());
        let mut index = 0usize;
        loop {
            let what = "a module name";
            let convert = |leaf: Leaf| {
                let name = expect_str(leaf, what)?;
                if !ctx.known_modules.contains(&name.as_str()) {
                    return Err(format!("unknown module {name:?} (known: {})", ctx.known_modules.join(", ")));
                }
                if seen.borrow().contains(&name) {
                    return Err(format!("module {name:?} is listed twice"));
                }
                seen.borrow_mut().push(name.clone());
                Ok(name)
            };
            let key = format!("{}[{index}]", self.key);
            let seed = LeafSeed { ctx, key, what, null_ok: false, convert: &convert };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(Some(seen.into_inner()))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
        Err(self.reject("a mapping".to_string()))
    }
    reject_scalars!();
    reject_enum!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize() {
        let n = |p: &str| normalize_lexically(Path::new(p));
        assert_eq!(n("a/./b/../c/"), Some(PathBuf::from("a/c")));
        assert_eq!(n("a/.."), Some(PathBuf::new()));
        assert_eq!(n(".."), None);
        assert_eq!(n("a/../../b"), None);
        assert_eq!(n("/../x"), Some(PathBuf::from("/x")));
        assert_eq!(n("/sys/fs/cgroup/../cgroup/y"), Some(PathBuf::from("/sys/fs/cgroup/y")));
    }

    #[test]
    fn duration_edges() {
        assert_eq!(parse_duration("1.0000000001s"), Ok(Duration::new(1, 0)));
        assert_eq!(parse_duration("9223372036854775807ns"), Ok(Duration::from_nanos(i64::MAX as u64)));
        assert!(parse_duration("9223372036854775808ns").unwrap_err().contains("out of range"));
        assert!(parse_duration("-0s").unwrap_err().contains("zero"));
        assert!(parse_duration("1m-1s").is_err());
        assert!(parse_duration("1 s").is_err());
        assert!(parse_duration("-").is_err());
        assert!(parse_duration(".s").is_err());
    }

    #[test]
    fn comm_prefix_checks() {
        assert!(check_comm_prefix("banyand").is_ok());
        assert!(check_comm_prefix("a\0").is_err());
        // Bytes, not characters, are what the kernel limits.
        assert!(check_comm_prefix("ééééééé").is_ok());
        assert!(check_comm_prefix("éééééééé").is_err());
    }
}
