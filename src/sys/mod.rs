//! Raw system calls: `bpf()` and `perf_event_open()`.
//!
//! The attribute structs mirror `linux/bpf.h` and `linux/perf_event.h` field for field, each
//! cut after the last field KTM uses: the kernel zero-fills a shorter attribute and rejects a
//! longer one whose unknown tail is not zero (E2BIG), so passing only what we know keeps one
//! binary working from 5.10 to today. Every returned descriptor is an [`OwnedFd`], closed on
//! drop, which is how programs, maps and links leave the kernel.

pub mod bpf;
pub mod perf;

pub use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::privileges::{self, Syscall};
use crate::{Error, Result};
use std::os::fd::FromRawFd;

/// The error of `call` having failed with `source`: a refusal carries its diagnosis.
pub(crate) fn os_error(call: Syscall, what: impl Into<String>, source: std::io::Error) -> Error {
    let hint = privileges::refusal_hint(call, source.raw_os_error());
    Error::io(what, source).with_hint(hint)
}

/// [`os_error`] for the current `errno`.
pub(crate) fn last_os_error(call: Syscall, what: impl Into<String>) -> Error {
    os_error(call, what, std::io::Error::last_os_error())
}

/// Turns a syscall's return value into an owned fd, or the errno into an [`Error`].
pub(crate) fn fd_result(call: Syscall, ret: libc::c_long, what: impl FnOnce() -> String) -> Result<OwnedFd> {
    if ret < 0 {
        return Err(last_os_error(call, what()));
    }
    let fd = RawFd::try_from(ret).map_err(|_| Error::Other(format!("{}: fd {ret} out of range", what())))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The number of possible CPUs, which sizes per-CPU map values.
///
/// Per-CPU lookups return one value per *possible* CPU (not online), so a short buffer would
/// be overrun by the kernel.
pub fn possible_cpus() -> Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .map_err(|e| Error::io("read /sys/devices/system/cpu/possible", e))?;
    parse_cpu_list(&text)
        .map(|cpus| cpus.last().map_or(0, |&c| c + 1))
        .ok_or_else(|| Error::Parse { what: "/sys/devices/system/cpu/possible".into(), detail: text.trim().into() })
}

/// The CPUs currently online.
pub fn online_cpus() -> Result<Vec<usize>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map_err(|e| Error::io("read /sys/devices/system/cpu/online", e))?;
    parse_cpu_list(&text)
        .ok_or_else(|| Error::Parse { what: "/sys/devices/system/cpu/online".into(), detail: text.trim().into() })
}

/// Parses the kernel's CPU list format (`0-3,5,7-8`).
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>().ok()?, b.trim().parse::<usize>().ok()?),
            None => {
                let v = part.trim().parse::<usize>().ok()?;
                (v, v)
            }
        };
        if hi < lo || hi > 1 << 16 {
            return None;
        }
        out.extend(lo..=hi);
    }
    if out.is_empty() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-3,7"), Some(vec![0, 2, 3, 7]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
