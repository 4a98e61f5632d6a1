//! Finding (and if need be mounting) tracefs, where tracepoint ids and kprobe_events live.

use crate::error::Unsupported;
use crate::host::mounts;
use crate::{Error, Result};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

static TRACEFS: OnceLock<PathBuf> = OnceLock::new();
/// Held while one thread looks for (or mounts) tracefs, so that two first callers do not both
/// mount it; a failure is not cached (the next caller tries again).
static FINDING: Mutex<()> = Mutex::new(());

/// The tracefs directory: a mounted tracefs, else `tracing/` under a mounted debugfs, else a
/// tracefs this call mounts at /sys/kernel/tracing.
pub fn root() -> Result<&'static Path> {
    if let Some(found) = TRACEFS.get() {
        return Ok(found);
    }
    let _one = FINDING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = TRACEFS.get() {
        return Ok(found);
    }
    let found = find_or_mount()?;
    Ok(TRACEFS.get_or_init(|| found))
}

fn find_or_mount() -> Result<PathBuf> {
    let table = mounts::own().map_err(|e| Error::io(format!("read {}", mounts::SELF_MOUNTINFO), e))?;
    let found = |fstype: &str, sub: Option<&str>| {
        mounts::of_type(&table, fstype)
            .map(|d| sub.map_or_else(|| d.to_path_buf(), |s| d.join(s)))
            .find(|d| d.join("events").is_dir())
    };
    if let Some(d) = found("tracefs", None).or_else(|| found("debugfs", Some("tracing"))) {
        return Ok(d);
    }
    // A tracefs that is mounted but closed to this process (mode 0700 owned by root, as the
    // kernel mounts it, read by a process without CAP_DAC_OVERRIDE): mounting another one
    // would not help, and "not mounted" would send the operator looking in the wrong place.
    for mount_point in mounts::of_type(&table, "tracefs") {
        if let Err(e) = std::fs::metadata(mount_point.join("events")) {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                use std::os::unix::fs::MetadataExt;
                let how = std::fs::metadata(mount_point)
                    .map(|md| format!("mode {:04o}, owner uid {}", md.mode() & 0o7777, md.uid()))
                    .unwrap_or_else(|_| "its mode".into());
                return Err(Unsupported {
                    why: format!(
                        "tracefs is mounted at {} but this process cannot read it ({how}; this process runs as uid {}): run KTM as root, or grant CAP_DAC_OVERRIDE, or rely on the raw tracepoints",
                        mount_point.display(),
                        // SAFETY: geteuid takes no arguments and cannot fail.
                        unsafe { libc::geteuid() }
                    ),
                    errno: e.raw_os_error(),
                }
                .into());
            }
        }
    }
    let target = "/sys/kernel/tracing";
    let c = |s: &str| CString::new(s).map_err(|_| Error::Other("NUL in path".into()));
    let (src, dst, fs) = (c("tracefs")?, c(target)?, c("tracefs")?);
    // SAFETY: all strings are NUL-terminated and outlive the call.
    if unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) } != 0 {
        let err = std::io::Error::last_os_error();
        let has_sys_admin =
            crate::privileges::effective().is_ok_and(|eff| eff & (1u64 << crate::privileges::CAP_SYS_ADMIN.bit) != 0);
        // Mounting needs CAP_SYS_ADMIN, which BPF does not: a container with CAP_BPF and
        // CAP_PERFMON simply lacks it, and saying "policy refuses" would send its operator
        // looking in the wrong place.
        if err.raw_os_error() == Some(libc::EPERM) && !has_sys_admin {
            return Err(Unsupported {
                why: format!(
                    "tracefs is not mounted, and mounting it at {target} needs CAP_SYS_ADMIN, which this process \
                     does not have (mount tracefs into the container, or rely on the raw tracepoints)"
                ),
                errno: err.raw_os_error(),
            }
            .into());
        }
        let what = format!("tracefs is not mounted and mounting it at {target} failed");
        return Err(crate::sys::os_error(crate::privileges::Syscall::Bpf, what, err));
    }
    log::info!("mounted tracefs at {target}");
    Ok(PathBuf::from(target))
}

/// The perf id of tracepoint `category/name`.
pub fn tracepoint_id(category: &str, name: &str) -> Result<u64> {
    let path = root()?.join("events").join(category).join(name).join("id");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::io(format!("tracepoint {category}/{name} does not exist on this kernel ({})", path.display()), e)
    })?;
    text.trim().parse().map_err(|_| Error::Parse { what: path.display().to_string(), detail: text.trim().into() })
}

/// Offset and size of `field` in tracepoint `category/name`'s record, from its tracefs
/// `format` file; None when the kernel's record has no such field.
///
/// Programs read record fields at these offsets, so they follow the running kernel's layout
/// instead of one compiled in.
pub fn field(category: &str, name: &str, field: &str) -> Result<Option<(i16, u32)>> {
    let path = root()?.join("events").join(category).join(name).join("format");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::io(format!("tracepoint {category}/{name} does not exist on this kernel ({})", path.display()), e)
    })?;
    Ok(parse_field(&text, field))
}

/// Offset and size of `field` in the text of a tracefs `format` file (see [`field`]); None when
/// the file declares no such field or its declaration is malformed.
pub fn parse_field(format: &str, field: &str) -> Option<(i16, u32)> {
    for line in format.lines() {
        let Some(decl) = line.trim().strip_prefix("field:") else { continue };
        let mut parts = decl.split(';').map(str::trim);
        let name = parts.next()?.rsplit([' ', '*']).next()?;
        if name != field {
            continue;
        }
        let mut offset = None;
        let mut size = None;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        return Some((offset?, size?));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse_field;

    #[test]
    fn format_fields() {
        let f = "name: x\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
                 \tfield:struct file * file;\toffset:8;\tsize:8;\tsigned:0;\n\
                 \tfield:unsigned char order;\toffset:36;\tsize:1;\tsigned:0;\n";
        assert_eq!(parse_field(f, "order"), Some((36, 1)));
        assert_eq!(parse_field(f, "file"), Some((8, 8)));
        assert_eq!(parse_field(f, "missing"), None);
    }
}
