//! Which of the capabilities KTM needs this process has.
//!
//! Checked up front so that a sidecar missing one is told which, and how to grant it, rather
//! than meeting an EPERM from deep inside a load.

use crate::{Error, Result};

/// A capability KTM may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    pub bit: u32,
}

pub const CAP_SYS_ADMIN: Capability = Capability { name: "CAP_SYS_ADMIN", bit: 21 };
pub const CAP_PERFMON: Capability = Capability { name: "CAP_PERFMON", bit: 38 };
pub const CAP_BPF: Capability = Capability { name: "CAP_BPF", bit: 39 };

/// The effective capability set, from /proc/self/status.
pub fn effective() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| Error::io("read /proc/self/status", e))?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| Error::Parse { what: "/proc/self/status".into(), detail: "no CapEff line".into() })?;
    u64::from_str_radix(hex.trim(), 16)
        .map_err(|_| Error::Parse { what: "/proc/self/status CapEff".into(), detail: hex.trim().into() })
}

/// The capabilities missing for loading and attaching: CAP_BPF and CAP_PERFMON, unless
/// CAP_SYS_ADMIN covers both (kernels before 5.8 know only that one).
pub fn missing(eff: u64) -> Vec<Capability> {
    let has = |c: Capability| eff & (1u64 << c.bit) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [CAP_BPF, CAP_PERFMON].into_iter().filter(|&c| !has(c)).collect()
}

/// An error naming the missing capabilities and how a sidecar gets them, if any are missing.
pub fn check() -> Result<()> {
    let missing = missing(effective()?);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|c| c.name).collect();
    Err(Error::Other(format!(
        "missing {}: KTM loads eBPF programs and opens perf events. Grant them to the sidecar \
         container (securityContext.capabilities.add: [\"BPF\", \"PERFMON\"]; on kernels before 5.8 \
         [\"SYS_ADMIN\"]), or run it as root",
        names.join(" and ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_caps() {
        assert_eq!(missing(0), vec![CAP_BPF, CAP_PERFMON]);
        assert_eq!(missing(1 << 21), vec![]);
        assert_eq!(missing(1 << 39), vec![CAP_PERFMON]);
        assert_eq!(missing((1 << 39) | (1 << 38)), vec![]);
    }
}
