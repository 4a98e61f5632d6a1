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
//! Here: the types and their defaults, and [`ConfigError`]. [`validate`] holds the checks of
//! single values (durations, comm prefixes, cgroup paths), shared with the CLI and with code
//! that builds a config without YAML; the private `parse` walks the document.
//!
//! A mistyped key is an error, never silently ignored: a misspelled `cgroup_path` would
//! otherwise quietly fall back to autodetection. A key whose value is null (`ebpf:` with only
//! comments under it) takes its default, so the design's example with everything commented
//! out is valid.

mod parse;
pub mod validate;

pub(crate) use validate::normalize_lexically;
pub use validate::{check_cgroup_path, check_comm_prefix, parse_duration};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        parse::document(src, known_modules)
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
