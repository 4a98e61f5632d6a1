//! Walking the YAML document with hand-written serde seeds.
//!
//! Derived `Deserialize` impls were re-checked against serde_yaml 0.9.34: its errors do name
//! the dotted path and line of a value of the wrong type (`collector.ebpf.cgroup_path:
//! invalid type: sequence ... at line 3`), but not what these seeds add: an unknown or
//! repeated key is reported against its parent (`collector: unknown field ...`) and a repeated
//! key at its first line; scalars are coerced (`comm_prefix: 123` and `interval: true` would
//! parse as the strings "123" and "true", `- 5` as a module named "5"); tags are ignored
//! (`collector: !custom {}`). Each seed carries the dotted key of the value it deserializes;
//! when a check fails the first (innermost) failure is recorded in `Ctx` and serde_yaml adds
//! the position.

use super::error::ConfigError;
use super::types::{CollectorConfig, Config, EbpfConfig, KNOWN_MODULES};
use super::validate::{check_cgroup_path, check_comm_prefix, parse_duration};
use serde::de::{self, Deserialize, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

impl Config {
    /// Parses a YAML document; an empty one yields the defaults.
    pub fn from_yaml_str(src: &str) -> Result<Config, ConfigError> {
        Self::from_yaml_str_with_modules(src, KNOWN_MODULES)
    }

    /// Like [`Config::from_yaml_str`], accepting the given module names; lets a host that
    /// registers extra modules reuse the same parser.
    pub fn from_yaml_str_with_modules(src: &str, known_modules: &[&str]) -> Result<Config, ConfigError> {
        document(src, known_modules)
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

/// Parses a YAML document, accepting the given module names; an empty one yields the defaults.
pub(super) fn document(src: &str, known_modules: &[&str]) -> Result<Config, ConfigError> {
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
