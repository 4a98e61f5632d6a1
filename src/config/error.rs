//! Why a configuration was rejected.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a configuration was rejected, with the dotted key and position when known.
#[derive(Debug)]
pub struct ConfigError {
    pub(super) key: Option<String>,
    pub(super) line: Option<usize>,
    pub(super) column: Option<usize>,
    pub(super) message: String,
    pub(super) file: Option<PathBuf>,
    pub(super) source: Option<io::Error>,
}

impl ConfigError {
    pub(super) fn at_line(line: usize, message: String) -> Self {
        ConfigError { key: None, line: Some(line), column: None, message, file: None, source: None }
    }

    pub(super) fn new(key: Option<&str>, message: String) -> Self {
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

    /// The file being read, for errors from [`Config::from_file`](super::Config::from_file).
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
