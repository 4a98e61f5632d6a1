//! Why discovery could not run at all.
//!
//! Most trouble is not an error here: a missing cgroup2 mount, an unreadable cgroup file or
//! a shared cgroup only make the cgroup unusable, and comm matching still scopes the
//! monitor. What remains is what leaves nothing to scope by, or a configuration that
//! cannot be honoured; each names the file or setting involved.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;

/// Discovery failed; [`DiscoveryError::path`] names the file involved.
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A file or directory that discovery cannot do without could not be read.
    Io { path: PathBuf, source: io::Error },
    /// No `cgroup2` line in the given mountinfo.
    Cgroup2NotMounted { mountinfo: PathBuf },
    /// `collector.ebpf.cgroup_path` is absolute but not inside the cgroup2 mount.
    OutsideMount { cgroup_path: PathBuf, mount_point: PathBuf },
    /// The scoping settings are invalid (set in code, bypassing the parser's checks).
    Config(ConfigError),
}

impl DiscoveryError {
    /// The file or directory the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DiscoveryError::Io { path, .. } => Some(path),
            DiscoveryError::Cgroup2NotMounted { mountinfo } => Some(mountinfo),
            DiscoveryError::OutsideMount { cgroup_path, .. } => Some(cgroup_path),
            DiscoveryError::Config(_) => None,
        }
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        DiscoveryError::Io { path: path.to_path_buf(), source }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            DiscoveryError::Cgroup2NotMounted { mountinfo } => {
                write!(f, "cgroup v2 is not mounted: no cgroup2 filesystem in {}", mountinfo.display())
            }
            DiscoveryError::OutsideMount { cgroup_path, mount_point } => write!(
                f,
                "collector.ebpf.cgroup_path {} lies outside the cgroup v2 mount {}; give a path under it or one relative to it",
                cgroup_path.display(),
                mount_point.display()
            ),
            DiscoveryError::Config(e) => write!(f, "invalid scoping configuration: {e}"),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiscoveryError::Io { source, .. } => Some(source),
            DiscoveryError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for DiscoveryError {
    fn from(e: ConfigError) -> Self {
        DiscoveryError::Config(e)
    }
}
