//! Support shared by the privileged integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// True when the test may use bpf(); otherwise prints why and returns false, or, under
/// `CI=true`, fails: CI must never silently skip a privileged test.
pub fn privileged(test: &str) -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else {
        match ktm::maps::Array::<u32>::create("ktm_priv_probe", 1) {
            Ok(_) => None,
            Err(e) => Some(format!("bpf() unavailable: {e}")),
        }
    };
    match why {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: privileged test cannot run under CI=true: {why}")
        }
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            false
        }
    }
}

/// The `ktm` binary that serves as the workload child.
pub fn ktm_bin() -> PathBuf {
    ktm::workload::ktm_bin(env!("CARGO_BIN_EXE_ktm"))
}

/// A line for the kernel-matrix runner: one row, one cell for this kernel.
pub fn matrix(row: &str, cell: &str) {
    println!("KTM-MATRIX\t{row}\t{cell}");
}

/// A scratch directory on a real filesystem (TMPDIR; the QEMU guests point it at ext4).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("ktm-test").tempdir().expect("create scratch dir")
}

/// Whether the kernel frees the object with this id (frees are RCU-deferred, so wait a bit).
pub fn gone(lookup: impl Fn() -> ktm::Result<std::os::fd::OwnedFd>) -> bool {
    for _ in 0..200 {
        match lookup() {
            Err(e) if e.errno() == Some(libc::ENOENT) => return true,
            _ => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    false
}

/// The cgroup v2 mount (hybrid hosts have it at /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> Option<PathBuf> {
    ktm::discovery::find_cgroup2(&ktm::discovery::Roots::system()).ok().map(|m| m.dir)
}

/// A cgroup v2 directory made for one test, removed on drop (its processes moved to root).
pub struct TestCgroup {
    pub path: PathBuf,
    root: PathBuf,
}

impl TestCgroup {
    pub fn new(name: &str) -> TestCgroup {
        let root = cgroup2_mount().expect("cgroup v2 is mounted");
        let path = root.join(format!("ktm-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup { path, root }
    }

    /// The cgroup id the BPF helper reports: the directory's inode.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).unwrap().ino()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Pages of `path` resident in the page cache, by mincore(2), including up to 16 pages
/// past the end of the file: some kernels (5.10) leave the page at the EOF index cached
/// after a read that hits EOF, and it is a real page-cache page.
pub fn resident_pages(path: &std::path::Path) -> usize {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let len = (f.metadata().unwrap().len() as usize).div_ceil(page) * page + 16 * page;
    unsafe {
        // Mapping past EOF is allowed; only touching it would fault.
        let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
        assert_ne!(addr, libc::MAP_FAILED);
        let mut vec = vec![0u8; len / page];
        assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
        libc::munmap(addr, len);
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }
}

/// Writes a file, flushes it to disk and evicts it from the page cache.
pub fn cold_file(path: &std::path::Path, bytes: usize) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&vec![0x42u8; bytes]).unwrap();
    f.sync_all().unwrap();
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(f);
    assert_eq!(resident_pages(path), 0, "{} still cached after DONTNEED", path.display());
}

/// The block device holding `path`'s filesystem (e.g. /dev/vda), from its st_dev.
pub fn block_device_of(path: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    Some(PathBuf::from("/dev").join(name))
}

/// Pages of a block device resident in its own page cache (filesystem metadata read
/// through the buffer cache lives there); 0, with a note, where the device cannot be opened
/// (a sandbox's device cgroup).
pub fn device_resident_pages(dev: &std::path::Path) -> usize {
    use std::os::fd::AsRawFd;
    let f = match std::fs::File::open(dev) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("note: cannot open {} ({e}): metadata pages are not accounted", dev.display());
            return 0;
        }
    };
    let len = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) } as usize;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    unsafe {
        let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
        assert_ne!(addr, libc::MAP_FAILED, "mmap {}", dev.display());
        let mut vec = vec![0u8; len.div_ceil(page)];
        assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
        libc::munmap(addr, len);
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }
}
