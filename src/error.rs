//! The crate's error type.
//!
//! Each failure names what was being attempted (the syscall, the program, the attach point)
//! and why, because the operator reading a degraded status has nothing else to go on.

use crate::insn::Site;
use std::fmt;
use std::io;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in KTM.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed; `what` says which and on what. `hint` is the diagnosis of a
    /// refusal (which of capabilities, seccomp, lockdown or perf_event_paranoid), computed where
    /// the call was made, since only the caller knows which syscall it was.
    Sys { what: String, source: io::Error, hint: Option<String> },
    /// Malformed input from a file the kernel or the user provided.
    Parse { what: String, detail: String },
    /// The kernel's verifier rejected a program.
    Verifier(Box<VerifierError>),
    /// A program could not be assembled (a builder mistake found without a kernel).
    Asm(crate::insn::AsmError),
    /// The kernel lacks a feature, or its build or policy refuses it (see
    /// [`crate::attach::features`]): a fallback's cue, with the kernel's errno kept.
    Unsupported(Unsupported),
    /// Anything else, with a human explanation.
    Other(String),
}

/// What is unsupported here and why, with the kernel's answer (`errno`) when there was one, so
/// that a caller can tell "this kernel has no such link" (EINVAL) from "built without it"
/// (EOPNOTSUPP) or "refused by policy" (EPERM) without reading the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The explanation, as the status and `ktm probe` show it.
    pub why: String,
    pub errno: Option<i32>,
}

impl Unsupported {
    /// Why, with no errno behind it (a file that is missing, a check that found nothing).
    pub fn new(why: impl Into<String>) -> Self {
        Unsupported { why: why.into(), errno: None }
    }

    /// Why, from a failed call's error: its errno is kept.
    pub fn from_error(why: impl Into<String>, cause: &Error) -> Self {
        Unsupported { why: why.into(), errno: cause.errno() }
    }

    /// Prefixes the explanation with what was being done.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        Unsupported { why: format!("{what}: {}", self.why), errno: self.errno }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for Unsupported {}

impl From<Unsupported> for Error {
    fn from(u: Unsupported) -> Self {
        Error::Unsupported(u)
    }
}

impl Error {
    /// Wraps the current `errno` with a description of the failed call.
    pub fn last_os(what: impl Into<String>) -> Self {
        Error::io(what, io::Error::last_os_error())
    }

    /// Wraps an [`io::Error`] with a description of the failed operation.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Sys { what: what.into(), source, hint: None }
    }

    /// Attaches the diagnosis of a refusal to a failed system call (other errors are unchanged).
    pub fn with_hint(self, hint: Option<String>) -> Self {
        match self {
            Error::Sys { what, source, .. } => Error::Sys { what, source, hint },
            other => other,
        }
    }

    /// Prefixes the message with what was being done (keeps OS errors' errno).
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            Error::Sys { what: w, source, hint } => Error::Sys { what: format!("{what}: {w}"), source, hint },
            Error::Other(s) => Error::Other(format!("{what}: {s}")),
            Error::Unsupported(u) => Error::Unsupported(u.context(what)),
            other => Error::Other(format!("{what}: {other}")),
        }
    }

    /// The OS error number behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } => source.raw_os_error(),
            Error::Verifier(v) => Some(v.errno),
            Error::Unsupported(u) => u.errno,
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { what, source, hint } => write!(f, "{what}: {source}{}", hint.as_deref().unwrap_or("")),
            Error::Verifier(v) => v.fmt(f),
            Error::Asm(e) => write!(f, "cannot assemble program: {e}"),
            Error::Parse { what, detail } => write!(f, "cannot parse {what}: {detail}"),
            Error::Unsupported(u) => u.fmt(f),
            Error::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sys { source, .. } => Some(source),
            Error::Asm(e) => Some(e),
            Error::Unsupported(u) => Some(u),
            _ => None,
        }
    }
}

impl From<crate::insn::AsmError> for Error {
    fn from(e: crate::insn::AsmError) -> Self {
        Error::Asm(e)
    }
}

/// The verifier's refusal, with what it said and where in the Rust source the offending
/// instruction came from.
#[derive(Debug, Clone)]
pub struct VerifierError {
    pub program: String,
    pub errno: i32,
    /// The whole verifier log.
    pub log: String,
    /// The instruction the verifier stopped at, when the log names one.
    pub insn_index: Option<usize>,
    /// That instruction, disassembled.
    pub insn_text: Option<String>,
    /// The builder call that emitted it.
    pub site: Option<Site>,
}

impl VerifierError {
    /// Parses a verifier trace line `12: (85) call ...` into its instruction index.
    pub(crate) fn traced_insn(line: &str) -> Option<usize> {
        let (num, rest) = line.split_once(": (")?;
        let rest = rest.get(2..)?;
        if !rest.starts_with(')') {
            return None;
        }
        num.trim().parse().ok()
    }

    /// The verifier's own verdict: the last non-empty lines of its log, without the
    /// instruction-by-instruction trace.
    pub fn message(&self) -> String {
        let lines: Vec<&str> = self.log.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
        // The verdict follows the last traced instruction ("N: (..) ...").
        let start = lines.iter().rposition(|l| Self::traced_insn(l).is_some()).map_or(0, |i| i + 1);
        let tail: Vec<&str> = lines[start..].iter().copied().filter(|l| !l.starts_with("processed ")).collect();
        if tail.is_empty() {
            lines.last().copied().unwrap_or("(the verifier gave no log)").to_string()
        } else {
            tail.join("; ")
        }
    }
}

impl fmt::Display for VerifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let err = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "the kernel rejected program `{}` ({err}): {}", self.program, self.message())?;
        if let (Some(i), Some(text)) = (self.insn_index, &self.insn_text) {
            write!(f, "; at instruction {i}: {text}")?;
        }
        if let Some(site) = self.site {
            write!(f, " (emitted at {}:{})", site.file(), site.line())?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifierError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_are_recognised() {
        assert_eq!(VerifierError::traced_insn("12: (85) call bpf_map_lookup_elem#1"), Some(12));
        assert_eq!(VerifierError::traced_insn("0: (b7) r0 = 0"), Some(0));
        assert_eq!(VerifierError::traced_insn("R1 type=ctx expected=fp"), None);
        assert_eq!(VerifierError::traced_insn("from 3 to 5: R0=..."), None);
    }

    #[test]
    fn message_is_the_verdict_after_the_trace() {
        let v = VerifierError {
            program: "p".into(),
            errno: libc::EACCES,
            log: "0: (bf) r1 = r10\n1: (79) r0 = *(u64 *)(r1 +8)\ninvalid read from stack off 8+0 size 8\nprocessed 2 insns\n".into(),
            insn_index: Some(1),
            insn_text: None,
            site: None,
        };
        assert_eq!(v.message(), "invalid read from stack off 8+0 size 8");
    }
}
