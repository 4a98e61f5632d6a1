//! The crate's error type.
//!
//! Each failure names what was being attempted (the syscall, the program, the attach point)
//! and why, because the operator reading a degraded status has nothing else to go on.

use crate::privileges;
use std::fmt;
use std::io;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in KTM.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed; `what` says which and on what.
    Sys { what: String, source: io::Error },
    /// Malformed input from a file the kernel or the user provided.
    Parse { what: String, detail: String },
    /// The kernel's verifier rejected a program.
    Verifier(Box<crate::load::VerifierError>),
    /// A program could not be assembled (a builder mistake found without a kernel).
    Asm(crate::insn::AsmError),
    /// Anything else, with a human explanation.
    Other(String),
}

impl Error {
    /// Wraps the current `errno` with a description of the failed call.
    pub fn last_os(what: impl Into<String>) -> Self {
        Error::Sys { what: what.into(), source: io::Error::last_os_error() }
    }

    /// Wraps an [`io::Error`] with a description of the failed operation.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Sys { what: what.into(), source }
    }

    /// Prefixes the message with what was being done (keeps OS errors' errno).
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            Error::Sys { what: w, source } => Error::Sys { what: format!("{what}: {w}"), source },
            Error::Other(s) => Error::Other(format!("{what}: {s}")),
            other => Error::Other(format!("{what}: {other}")),
        }
    }

    /// The OS error number behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } => source.raw_os_error(),
            Error::Verifier(v) => Some(v.errno),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { what, source } => {
                write!(f, "{what}: {source}")?;
                // Which of capabilities, seccomp, lockdown or perf_event_paranoid refused it.
                let perf = what.contains("perf_event_open");
                match source.raw_os_error() {
                    Some(libc::EPERM) if !perf => f.write_str(&privileges::denial_hint(privileges::Syscall::Bpf))?,
                    Some(libc::EPERM | libc::EACCES) if perf => {
                        f.write_str(&privileges::denial_hint(privileges::Syscall::PerfEventOpen))?
                    }
                    _ => {}
                }
                Ok(())
            }
            Error::Verifier(v) => v.fmt(f),
            Error::Asm(e) => write!(f, "cannot assemble program: {e}"),
            Error::Parse { what, detail } => write!(f, "cannot parse {what}: {detail}"),
            Error::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sys { source, .. } => Some(source),
            Error::Asm(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::insn::AsmError> for Error {
    fn from(e: crate::insn::AsmError) -> Self {
        Error::Asm(e)
    }
}
