//! The paths each probe measures, driven once from KTM's own thread, so that a function probe
//! is trusted only after the kernel was seen calling it there (`attach::Exercise`).
//!
//! Each exercise uses what every container has: a pipe, a memfd. The page-cache ones need a
//! file on a filesystem with a page cache that can be dropped (not tmpfs); a sidecar whose
//! every writable directory is tmpfs gets "unchecked" with the reason, never a refusal.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

type Outcome = std::result::Result<(), String>;

const PAGE: usize = 4096;

/// read(2) of one byte from a pipe.
pub fn read() -> Outcome {
    let (mut r, mut w) = pipe()?;
    w.write_all(b"k").map_err(|e| format!("write to a pipe: {e}"))?;
    let mut b = [0u8; 1];
    r.read_exact(&mut b).map_err(|e| format!("read from a pipe: {e}"))
}

/// pread64(2) of one byte of a memfd.
pub fn pread() -> Outcome {
    let f = memfd()?;
    f.write_all_at(b"k", 0).map_err(|e| format!("write to a memfd: {e}"))?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 0).map_err(|e| format!("pread from a memfd: {e}"))
}

/// fadvise64(2) on a memfd (`POSIX_FADV_NORMAL`, which changes nothing).
pub fn fadvise() -> Outcome {
    let f = memfd()?;
    // SAFETY: fadvise on an open fd; no memory is passed.
    match unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_NORMAL) } {
        0 => Ok(()),
        e => Err(format!("fadvise on a memfd: {}", std::io::Error::from_raw_os_error(e))),
    }
}

/// A buffered read(2) of a page that is in the page cache: the page-cache lookup.
pub fn cached_read() -> Outcome {
    let (f, _at) = scratch()?;
    f.write_all_at(&[1u8; PAGE], 0).map_err(|e| format!("write scratch file: {e}"))?;
    let mut b = [0u8; PAGE];
    (&f).read_exact(&mut b).map_err(|e| format!("read scratch file: {e}"))
}

/// A buffered read(2) of a page that is not in the page cache: a miss, which starts
/// synchronous readahead.
pub fn cold_read() -> Outcome {
    let (f, at) = scratch()?;
    f.write_all_at(&[1u8; 4 * PAGE], 0).map_err(|e| format!("write scratch file: {e}"))?;
    f.sync_data().map_err(|e| format!("fdatasync scratch file in {}: {e}", at.display()))?;
    // SAFETY: fadvise on an open fd; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(format!("drop scratch file's pages: {}", std::io::Error::from_raw_os_error(rc)));
    }
    let mut b = [0u8; PAGE];
    (&f).read_exact(&mut b).map_err(|e| format!("read scratch file: {e}"))
}

fn pipe() -> std::result::Result<(File, File), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

fn memfd() -> std::result::Result<File, String> {
    let name = CString::new("ktm-selftest").map_err(|e| e.to_string())?;
    // SAFETY: memfd_create with a valid C string; the fd is owned by the File.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just created and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// An unlinked scratch file in the first writable directory whose filesystem has a
/// droppable page cache: `$TMPDIR` (or /tmp), /var/tmp, then the working directory.
fn scratch() -> std::result::Result<(File, PathBuf), String> {
    let mut tried = Vec::new();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    for dir in [std::env::temp_dir(), PathBuf::from("/var/tmp"), cwd] {
        match open_scratch(&dir) {
            Ok(f) => return Ok((f, dir)),
            Err(why) => tried.push(format!("{}: {why}", dir.display())),
        }
    }
    Err(format!("no writable directory with a droppable page cache ({})", tried.join("; ")))
}

fn open_scratch(dir: &std::path::Path) -> std::result::Result<File, String> {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statfs fills the struct it is given from a valid C path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    let magic = st.f_type as i64;
    if magic == TMPFS_MAGIC || magic == RAMFS_MAGIC {
        return Err("tmpfs or ramfs, whose pages cannot be dropped".into());
    }
    let path = dir.join(format!("ktm-selftest-{}-{}", std::process::id(), unique()));
    let f =
        std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
