//! Discovery against the real kernel: real cgroup directories under the cgroup2 mount,
//! real child processes, and the cgroup id the BPF helper would see.
//!
//! Needs root and a cgroup2 mount. Without them the tests print why and pass, except under
//! `CI=true`, where a privileged test must never silently skip.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ktm::config::EbpfConfig;
use ktm::discovery::{cgroup_still_matches, discover, find_cgroup2, Cgroup2Mount, CgroupVerdict, Roots, Target};

/// The cgroup2 mount, or `None` (after saying why) when the test cannot run here.
fn setup(test: &str) -> Option<Cgroup2Mount> {
    let why = if unsafe { libc::geteuid() } != 0 {
        "not running as root (cgroups cannot be created)".to_string()
    } else {
        match find_cgroup2(&Roots::system()) {
            Ok(m) => return Some(m),
            Err(e) => e.to_string(),
        }
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run under CI=true: {why}");
    }
    eprintln!("SKIP {test}: {why}");
    None
}

/// Child processes that are killed and reaped however the test ends.
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    /// Runs `exe 30` (argv[0] "sleep", for multi-call binaries); its comm is `exe`'s file
    /// name, which is what discovery matches.
    fn spawn(&mut self, exe: &Path) -> u32 {
        // A copy just written may still be open for writing in a child another test thread
        // is forking (ETXTBSY) until that child execs; wait it out.
        for _ in 0..100 {
            match Command::new(exe).arg0("sleep").arg("30").stdin(Stdio::null()).spawn() {
                Ok(c) => {
                    let pid = c.id();
                    self.0.push(c);
                    wait_for_comm(pid, exe);
                    return pid;
                }
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("cannot run {}: {e}", exe.display()),
            }
        }
        panic!("{} stayed busy (ETXTBSY)", exe.display());
    }

    fn kill_all(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.0.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Waits until `pid` shows `exe`'s name as its comm. The kernel wakes a vfork parent
/// (posix_spawn) before it renames the child, so for a moment after `spawn` returns the
/// child still carries the spawning thread's name.
fn wait_for_comm(pid: u32, exe: &Path) {
    let mut want = exe.file_name().unwrap().to_str().unwrap().as_bytes().to_vec();
    want.truncate(15);
    want.push(b'\n');
    for _ in 0..500 {
        if fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c == want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("pid {pid} never took the comm of {}", exe.display());
}

/// A cgroup made for one test, removed on drop (after its processes are moved back to the
/// root cgroup, since a populated cgroup cannot be removed).
struct TestCgroup {
    dir: PathBuf,
    root_procs: PathBuf,
}

impl TestCgroup {
    fn create(mount: &Cgroup2Mount, name: &str) -> TestCgroup {
        let dir = mount.dir.join(name);
        // Left over from a run that was killed before its guards ran.
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", dir.display()));
        TestCgroup { dir, root_procs: mount.dir.join("cgroup.procs") }
    }

    fn name(&self) -> &str {
        self.dir.file_name().unwrap().to_str().unwrap()
    }

    fn add(&self, pid: u32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move pid {pid} into {}: {e}", self.dir.display()));
    }

    fn id(&self) -> u64 {
        fs::metadata(&self.dir).unwrap().ino()
    }

    fn remove(&self) -> io::Result<()> {
        if let Ok(procs) = fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = fs::write(&self.root_procs, pid);
            }
        }
        // The cgroup stays populated for a moment after its last process is reaped.
        let mut last = Ok(());
        for _ in 0..100 {
            match fs::remove_dir(&self.dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => last = Err(e),
                Ok(()) => return Ok(()),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        last
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("cannot remove test cgroup {}: {e}", self.dir.display());
        }
    }
}

fn sleep_bin() -> &'static Path {
    ["/bin/sleep", "/usr/bin/sleep"].into_iter().map(Path::new).find(|p| p.exists()).expect("no sleep binary")
}

/// A copy of `sleep` named `name` (its comm), in a directory removed on drop.
fn named_sleep(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("ktm-discovery").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let exe = dir.path().join(name);
    fs::copy(sleep_bin(), &exe).unwrap();
    (dir, exe)
}

/// A comm prefix unique to this test run and tag, within the kernel's 15 bytes.
fn prefix(tag: &str) -> String {
    let mut p = format!("ktm{tag}{}", std::process::id());
    p.truncate(15);
    p
}

fn cfg(prefix: &str, cgroup_path: Option<PathBuf>) -> EbpfConfig {
    EbpfConfig { cgroup_path, comm_prefix: prefix.to_string() }
}

fn find(cfg: &EbpfConfig, roots: &Roots) -> Target {
    discover(cfg, roots).unwrap().unwrap_or_else(|| panic!("no process with prefix {}", cfg.comm_prefix))
}

#[test]
fn own_cgroup_is_usable_until_shared_or_gone() {
    let Some(mount) = setup("own_cgroup_is_usable_until_shared_or_gone") else { return };
    let roots = Roots::system();
    let comm = prefix("a");
    let (_bin, exe) = named_sleep(&comm);
    let cg = TestCgroup::create(&mount, &format!("ktm-test-{}-a", std::process::id()));
    let mut kids = Children::default();
    let target = kids.spawn(&exe);
    cg.add(target);

    let t = find(&cfg(&comm, None), &roots);
    assert_eq!((t.pid, t.comm.as_str(), t.matched.as_slice()), (target, comm.as_str(), &[target][..]));
    let usable = CgroupVerdict::Usable { path: cg.dir.clone(), id: cg.id() };
    assert_eq!(t.cgroup, usable);
    assert!(cgroup_still_matches(&cg.dir, cg.id()));

    // The same cgroup named in the config, relative to the mount and absolute.
    for p in [PathBuf::from(cg.name()), mount.mount_point.join(cg.name())] {
        assert_eq!(find(&cfg(&comm, Some(p.clone())), &roots).cgroup, usable, "cgroup_path {}", p.display());
    }

    // A neighbour with another comm makes it shared.
    let neighbour = kids.spawn(sleep_bin());
    cg.add(neighbour);
    let t = find(&cfg(&comm, None), &roots);
    match &t.cgroup {
        CgroupVerdict::Unusable { reason } => {
            assert!(reason.contains(&format!("pid {neighbour} (sleep)")), "{reason}");
            assert!(reason.contains(cg.name()), "{reason}");
        }
        v => panic!("shared cgroup judged {v:?}"),
    }

    // Gone, then recreated under the same name: the health check notices both.
    let id = cg.id();
    kids.kill_all();
    cg.remove().unwrap();
    assert!(!cgroup_still_matches(&cg.dir, id));
    fs::create_dir(&cg.dir).unwrap();
    assert!(cg.dir.is_dir());
    assert_ne!(cg.id(), id, "a recreated cgroup has a new id");
    assert!(!cgroup_still_matches(&cg.dir, id));
}

#[test]
fn cgroup_shared_with_the_sidecar_is_unusable() {
    let Some(mount) = setup("cgroup_shared_with_the_sidecar_is_unusable") else { return };
    let comm = prefix("s");
    let (_bin, exe) = named_sleep(&comm);
    let (_bin2, sidecar_exe) = named_sleep(&format!("{comm}x"));
    let cg = TestCgroup::create(&mount, &format!("ktm-test-{}-s", std::process::id()));
    let mut kids = Children::default();
    let target = kids.spawn(&exe);
    cg.add(target);
    // Stands in for the sidecar: a process discovery is told is itself, named like the target.
    let sidecar = kids.spawn(&sidecar_exe);
    cg.add(sidecar);
    let roots = Roots { self_pid: sidecar, ..Roots::system() };
    let t = find(&cfg(&comm, None), &roots);
    assert_eq!(t.pid, target, "the sidecar itself is never the target");
    match &t.cgroup {
        CgroupVerdict::Unusable { reason } => {
            assert!(reason.contains(&format!("pid {sidecar} (the sidecar itself)")), "{reason}")
        }
        v => panic!("cgroup shared with the sidecar judged {v:?}"),
    }
}

#[test]
fn root_cgroup_is_unusable() {
    let Some(mount) = setup("root_cgroup_is_unusable") else { return };
    let comm = prefix("r");
    let (_bin, exe) = named_sleep(&comm);
    let mut kids = Children::default();
    let target = kids.spawn(&exe);
    fs::write(mount.dir.join("cgroup.procs"), target.to_string()).unwrap();
    let t = find(&cfg(&comm, None), &Roots::system());
    assert_eq!(t.pid, target);
    assert_eq!(
        t.cgroup,
        CgroupVerdict::Unusable { reason: "target cgroup / is the root cgroup: it would count every process".into() }
    );
}

#[test]
fn no_process_yet() {
    let Some(_mount) = setup("no_process_yet") else { return };
    assert_eq!(discover(&cfg(&prefix("n"), None), &Roots::system()).unwrap(), None);
}

#[test]
fn this_hosts_mount_and_our_own_cgroup() {
    let Some(mount) = setup("this_hosts_mount_and_our_own_cgroup") else { return };
    assert!(mount.dir.join("cgroup.procs").is_file(), "{mount:?} is not a cgroup2 directory");
    let own = ktm::discovery::procfs::read_cgroup_v2(&Roots::system(), std::process::id()).unwrap();
    assert!(own.is_some_and(|p| p.is_absolute()), "no 0:: line in /proc/self/cgroup");
}
