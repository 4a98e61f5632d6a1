//! Support shared by the privileged integration tests.
#![allow(dead_code)]

pub mod run;

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

/// Whether mechanism `m` attaches on this kernel and this run's switches allow it.
pub fn mechanism_works(m: ktm::attach::Mechanism, policy: &ktm::attach::Policy) -> bool {
    ktm::attach::mechanisms().get(m).is_ok() && policy.forbids(m).is_none()
}

/// A self-test exercise that calls getppid(2), which never calls close's (or any other
/// syscall's) function: a probe there under this exercise must be refused as silent.
pub fn call_getppid() -> Result<(), String> {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() };
    Ok(())
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
/// through the buffer cache lives there), or the error that kept it from being opened.
pub fn device_resident_pages(dev: &std::path::Path) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dev)?;
    let len = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) } as usize;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    unsafe {
        let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
        assert_ne!(addr, libc::MAP_FAILED, "mmap {}", dev.display());
        let mut vec = vec![0u8; len.div_ceil(page)];
        assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
        libc::munmap(addr, len);
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count())
    }
}

/// A scratch directory on a filesystem whose block device this process can read, so that a
/// test can count the metadata pages the filesystem adds to the device's own page cache.
/// TMPDIR's filesystem when its device opens (the QEMU guests' /dev/vda); otherwise (a
/// sandbox whose device cgroup refuses the disk, as on the CI host) an ext4 image made by
/// the test in TMPDIR, without a journal (no jbd2 thread touches the device's page cache
/// behind the test's back), loop-mounted with nodelalloc (blocks are allocated by the
/// writer, not later by a flusher thread). Never a device whose cache cannot be read.
pub struct DeviceScratch {
    pub dev: PathBuf,
    dir: tempfile::TempDir,
    mounted: Option<LoopMount>,
}

struct LoopMount {
    mountpoint: PathBuf,
    _loop_dev: std::fs::File,
}

impl DeviceScratch {
    pub fn new() -> DeviceScratch {
        let dir = scratch();
        let dev = block_device_of(dir.path()).expect("block device of the scratch dir");
        match device_resident_pages(&dev) {
            Ok(_) => DeviceScratch { dev, dir, mounted: None },
            Err(e) => {
                eprintln!("note: cannot open {} ({e}): using a loop-mounted ext4 image", dev.display());
                let (dev, mounted) = loop_mount(dir.path());
                DeviceScratch { dev, dir, mounted: Some(mounted) }
            }
        }
    }

    /// Where the test's files go.
    pub fn path(&self) -> PathBuf {
        match &self.mounted {
            Some(m) => m.mountpoint.clone(),
            None => self.dir.path().to_path_buf(),
        }
    }

    /// Pages resident in the device's page cache.
    pub fn device_pages(&self) -> u64 {
        device_resident_pages(&self.dev).unwrap_or_else(|e| panic!("{}: {e}", self.dev.display())) as u64
    }
}

impl Drop for DeviceScratch {
    fn drop(&mut self) {
        if let Some(m) = &self.mounted {
            let c = std::ffi::CString::new(m.mountpoint.as_os_str().as_encoded_bytes()).unwrap();
            if unsafe { libc::umount(c.as_ptr()) } != 0 {
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        // The loop device (autoclear) is released when its file closes, after the unmount.
        self.mounted = None;
    }
}

/// Makes `dir/image` (64 MiB ext4), attaches it to a free loop device (autoclear) and mounts
/// it on `dir/mnt`. Panics with the reason when any step fails.
fn loop_mount(dir: &std::path::Path) -> (PathBuf, LoopMount) {
    use std::os::fd::AsRawFd;
    const LOOP_SET_FD: libc::c_ulong = 0x4C00;
    const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    const LO_FLAGS_AUTOCLEAR: u32 = 4;
    let image = dir.join("image");
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-O", "^has_journal", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(&image)
        .output()
        .unwrap_or_else(|e| panic!("mkfs.ext4 (e2fsprogs) for a loop-mounted scratch filesystem: {e}"));
    assert!(out.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr));
    let backing = std::fs::OpenOptions::new().read(true).write(true).open(&image).unwrap();
    let ctl = std::fs::File::open("/dev/loop-control").unwrap_or_else(|e| panic!("/dev/loop-control: {e}"));
    // Another process may take the free device between the two calls: try again then.
    let (dev, loop_dev) = (0..20)
        .find_map(|_| {
            let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
            assert!(n >= 0, "LOOP_CTL_GET_FREE: {}", std::io::Error::last_os_error());
            let dev = PathBuf::from(format!("/dev/loop{n}"));
            let f = std::fs::OpenOptions::new().read(true).write(true).open(&dev).ok()?;
            if unsafe { libc::ioctl(f.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) } != 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
                return None;
            }
            Some((dev, f))
        })
        .expect("no free loop device");
    // struct loop_info64: lo_flags at offset 52, 232 bytes in all.
    let mut info = [0u8; 232];
    info[52..56].copy_from_slice(&LO_FLAGS_AUTOCLEAR.to_ne_bytes());
    assert_eq!(
        unsafe { libc::ioctl(loop_dev.as_raw_fd(), LOOP_SET_STATUS64, info.as_ptr()) },
        0,
        "LOOP_SET_STATUS64 {}: {}",
        dev.display(),
        std::io::Error::last_os_error()
    );
    let mountpoint = dir.join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let cstr = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let (src, target) = (cstr(&dev), cstr(&mountpoint));
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), c"ext4".as_ptr(), 0, c"nodelalloc".as_ptr().cast()) };
    assert_eq!(rc, 0, "mount {} on {}: {}", dev.display(), mountpoint.display(), std::io::Error::last_os_error());
    std::fs::set_permissions(&mountpoint, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    (dev, LoopMount { mountpoint, _loop_dev: loop_dev })
}
