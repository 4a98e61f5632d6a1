//! Checks of single values, each returning why the value is refused as a predicate of it;
//! the caller adds the key and position.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Longest comm the kernel keeps: `TASK_COMM_LEN` is 16 bytes including the NUL, so a
/// longer prefix could never match anything.
pub const COMM_MAX_LEN: usize = 15;

/// Parses a Go `time.ParseDuration` string ("10s", "1m30s", "1.5h", "250us"), as the
/// sidecar's other settings are written that way. An error reads as a predicate of the
/// input (`"10x" is not a duration: ...`). Unlike Go, a unitless number (even "0")
/// and non-positive values are refused: an interval of 0 or "10" (seconds? ms?) is a
/// mistake, not a request.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "units are required: ns, us (or µs), ms, s, m, h, e.g. \"10s\", \"500ms\" or \"1m30s\"";
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return Err(format!("is not a duration: it is empty; {HINT}"));
    }
    if body.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("is not a duration: a bare number has no unit; {HINT}"));
    }
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let num = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(format!("is not a duration: expected a number before {unit:?}; {HINT}"));
        }
        if unit.is_empty() {
            return Err(format!("is not a duration: missing unit after {num:?}; {HINT}"));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("is not a duration: unknown unit {unit:?}; {HINT}")),
        };
        let too_long = || format!("is not a duration: out of range (at most {} ns)", i64::MAX);
        let mut value: u128 = 0;
        for d in int_part.bytes() {
            value = value.checked_mul(10).and_then(|v| v.checked_add(u128::from(d - b'0'))).ok_or_else(too_long)?;
            if value > i64::MAX as u128 {
                return Err(too_long());
            }
        }
        let mut nanos = value * scale;
        // Fraction digits beyond the nanosecond are dropped, as Go does.
        let mut div: u128 = 1;
        let mut frac: u128 = 0;
        for d in frac_part.bytes().take(18) {
            frac = frac * 10 + u128::from(d - b'0');
            div *= 10;
        }
        nanos += frac * scale / div;
        total = total.checked_add(nanos).ok_or_else(too_long)?;
        if total > i64::MAX as u128 {
            return Err(too_long());
        }
    }
    if neg && total > 0 {
        return Err("is negative; a duration here must be greater than zero".to_string());
    }
    if total == 0 {
        return Err("is zero; a duration here must be greater than zero".to_string());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Checks a comm prefix: it must be able to match something and must not match everything.
pub fn check_comm_prefix(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("must not be empty: an empty prefix would match every process".to_string());
    }
    if p.len() > COMM_MAX_LEN {
        return Err(format!(
            "{p:?} is {} bytes, longer than {COMM_MAX_LEN}: the kernel's comm is 16 bytes including the terminating NUL, so this prefix could never match",
            p.len()
        ));
    }
    if p.contains('\0') || p.contains('\n') {
        return Err(format!("{p:?} contains a NUL or newline, which a comm never does"));
    }
    Ok(())
}

/// Checks a `cgroup_path` lexically and returns it normalized (`.` dropped, `..` applied):
/// a relative path must stay inside the cgroup mount it is relative to. Whether an
/// absolute path lies inside the cgroup2 mount is only known at discovery time.
pub fn check_cgroup_path(p: &Path) -> Result<PathBuf, String> {
    if p.as_os_str().is_empty() {
        return Err("must not be empty; omit the key to autodetect the cgroup".to_string());
    }
    normalize_lexically(p).ok_or_else(|| {
        format!(
            "{:?} escapes the cgroup mount with \"..\"; give a path inside the cgroup v2 mount",
            p.display().to_string()
        )
    })
}

/// Applies `.` and `..` without touching the filesystem. `None` when a relative path
/// climbs above its base; for an absolute path `..` at `/` stays at `/`, as the kernel does.
pub(crate) fn normalize_lexically(p: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    let absolute = p.is_absolute();
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if out.pop().is_none() && !absolute {
                    return None;
                }
            }
            Component::Normal(s) => out.push(s),
        }
    }
    let mut path = if absolute { PathBuf::from("/") } else { PathBuf::new() };
    path.extend(out);
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize() {
        let n = |p: &str| normalize_lexically(Path::new(p));
        assert_eq!(n("a/./b/../c/"), Some(PathBuf::from("a/c")));
        assert_eq!(n("a/.."), Some(PathBuf::new()));
        assert_eq!(n(".."), None);
        assert_eq!(n("a/../../b"), None);
        assert_eq!(n("/../x"), Some(PathBuf::from("/x")));
        assert_eq!(n("/sys/fs/cgroup/../cgroup/y"), Some(PathBuf::from("/sys/fs/cgroup/y")));
    }

    #[test]
    fn duration_edges() {
        assert_eq!(parse_duration("1.0000000001s"), Ok(Duration::new(1, 0)));
        assert_eq!(parse_duration("9223372036854775807ns"), Ok(Duration::from_nanos(i64::MAX as u64)));
        assert!(parse_duration("9223372036854775808ns").unwrap_err().contains("out of range"));
        assert!(parse_duration("-0s").unwrap_err().contains("zero"));
        assert!(parse_duration("1m-1s").is_err());
        assert!(parse_duration("1 s").is_err());
        assert!(parse_duration("-").is_err());
        assert!(parse_duration(".s").is_err());
    }

    #[test]
    fn comm_prefix_checks() {
        assert!(check_comm_prefix("banyand").is_ok());
        assert!(check_comm_prefix("a\0").is_err());
        // Bytes, not characters, are what the kernel limits.
        assert!(check_comm_prefix("ééééééé").is_ok());
        assert!(check_comm_prefix("éééééééé").is_err());
    }
}
