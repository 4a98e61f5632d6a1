//! The configuration's types and their defaults.

use super::error::ConfigError;
use super::validate::{check_cgroup_path, check_comm_prefix};
use std::path::PathBuf;
use std::time::Duration;

/// Modules this crate can run; `collector.modules` may only name these.
pub const KNOWN_MODULES: &[&str] = &["iomonitor"];

/// Push interval when `collector.interval` is not set (the design's 10 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Comm prefix when `collector.ebpf.comm_prefix` is not set.
pub const DEFAULT_COMM_PREFIX: &str = "banyand";

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
