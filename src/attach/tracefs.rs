//! Finding (and if need be mounting) tracefs, where tracepoint ids and kprobe_events live.

use crate::{Error, Result};
use once_cell::sync::OnceCell;
use std::ffi::CString;
use std::path::{Path, PathBuf};

static TRACEFS: OnceCell<PathBuf> = OnceCell::new();

/// The tracefs directory: a mounted tracefs, else `tracing/` under a mounted debugfs, else a
/// tracefs this call mounts at /sys/kernel/tracing.
pub fn root() -> Result<&'static Path> {
    TRACEFS.get_or_try_init(find_or_mount).map(PathBuf::as_path)
}

fn find_or_mount() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| Error::io("read /proc/self/mounts", e))?;
    let mut debugfs = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (_, Some(dir), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let dir = dir.replace("\\040", " ");
        if fstype == "tracefs" && Path::new(&dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
        if fstype == "debugfs" && Path::new(&dir).join("tracing/events").is_dir() {
            debugfs = Some(PathBuf::from(dir).join("tracing"));
        }
    }
    if let Some(d) = debugfs {
        return Ok(d);
    }
    let target = "/sys/kernel/tracing";
    let c = |s: &str| CString::new(s).map_err(|_| Error::Other("NUL in path".into()));
    let (src, dst, fs) = (c("tracefs")?, c(target)?, c("tracefs")?);
    // SAFETY: all strings are NUL-terminated and outlive the call.
    if unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) } != 0 {
        return Err(Error::last_os(format!(
            "tracefs is not mounted and mounting it at {target} failed"
        )));
    }
    log::info!("mounted tracefs at {target}");
    Ok(PathBuf::from(target))
}

/// The perf id of tracepoint `category/name`.
pub fn tracepoint_id(category: &str, name: &str) -> Result<u64> {
    let path = root()?.join("events").join(category).join(name).join("id");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::io(
            format!(
                "tracepoint {category}/{name} does not exist on this kernel ({})",
                path.display()
            ),
            e,
        )
    })?;
    text.trim().parse().map_err(|_| Error::Parse {
        what: path.display().to_string(),
        detail: text.trim().into(),
    })
}
