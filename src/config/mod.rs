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
//! From the ground up: `validate` (checks of single values: durations, comm prefixes, cgroup
//! paths, shared with the CLI and with code that builds a config without YAML), `error`
//! ([`ConfigError`]), `types` (the types and their defaults), `parse` (the YAML walk, and the
//! `Config::from_*` constructors); this file only hands their names on.
//!
//! A mistyped key is an error, never silently ignored: a misspelled `cgroup_path` would
//! otherwise quietly fall back to autodetection. A key whose value is null (`ebpf:` with only
//! comments under it) takes its default, so the design's example with everything commented
//! out is valid.

mod error;
mod parse;
mod types;
pub mod validate;

pub use error::ConfigError;
pub use types::{CollectorConfig, Config, EbpfConfig, DEFAULT_COMM_PREFIX, DEFAULT_INTERVAL, KNOWN_MODULES};
pub(crate) use validate::normalize_lexically;
pub use validate::{check_cgroup_path, check_comm_prefix, parse_duration, COMM_MAX_LEN};
