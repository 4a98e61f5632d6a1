//! Discovery on fake `/proc` and cgroup trees.

use super::*;
use std::fs;
use std::path::PathBuf;

const MOUNTINFO: &str = "\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";

/// Our own pid in the fake trees.
const SELF: u32 = 10;

struct Fake {
    dir: tempfile::TempDir,
    roots: Roots,
}

impl Fake {
    fn new() -> Fake {
        Self::with_mountinfo(MOUNTINFO)
    }

    fn with_mountinfo(mountinfo: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots { proc: dir.path().join("proc"), sysroot: dir.path().to_path_buf(), self_pid: SELF };
        fs::create_dir_all(roots.proc.join("self")).unwrap();
        fs::write(roots.proc.join("self/mountinfo"), mountinfo).unwrap();
        // Entries a real /proc has that are not processes.
        fs::create_dir_all(roots.proc.join("sys")).unwrap();
        fs::write(roots.proc.join("uptime"), "1.0 1.0\n").unwrap();
        fs::create_dir_all(roots.proc.join("12abc")).unwrap();
        let fake = Fake { dir, roots };
        fake.process(SELF, "fodc", 1, 5, "/");
        fake.cgroup("", &[]);
        fake
    }

    /// A process with comm, stat (parent, start time) and a hybrid-style cgroup file.
    fn process(&self, pid: u32, comm: &str, ppid: u32, start: u64, cgroup: &str) {
        let d = self.roots.proc.join(pid.to_string());
        fs::create_dir_all(d.join("task").join(pid.to_string())).unwrap();
        fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        let stat = format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start} 1 1 2\n");
        fs::write(d.join("stat"), stat).unwrap();
        fs::write(d.join("cgroup"), format!("4:memory:/x\n1:name=systemd:{cgroup}\n0::{cgroup}\n")).unwrap();
    }

    /// A cgroup directory under the fake cgroup2 mount holding `procs`.
    fn cgroup(&self, rel: &str, procs: &[u32]) -> PathBuf {
        let d = self.dir.path().join("sys/fs/cgroup/unified").join(rel);
        fs::create_dir_all(&d).unwrap();
        let text: String = procs.iter().map(|p| format!("{p}\n")).collect();
        fs::write(d.join("cgroup.procs"), text).unwrap();
        d
    }

    fn discover(&self, cfg: &EbpfConfig) -> Option<Target> {
        discover(cfg, &self.roots).unwrap()
    }
}

fn cfg(prefix: &str) -> EbpfConfig {
    EbpfConfig { cgroup_path: None, comm_prefix: prefix.to_string() }
}

fn cfg_at(prefix: &str, path: &str) -> EbpfConfig {
    EbpfConfig { cgroup_path: Some(path.into()), comm_prefix: prefix.to_string() }
}

fn ino(p: &Path) -> u64 {
    fs::metadata(p).unwrap().ino()
}

#[track_caller]
fn reason(t: &Target) -> &str {
    match &t.cgroup {
        CgroupVerdict::Unusable { reason } => reason,
        v => panic!("expected unusable, got {v:?}"),
    }
}

#[test]
fn finds_the_target_and_its_own_cgroup() {
    let f = Fake::new();
    let dir = f.cgroup("banyandb.slice/bydb", &[100]);
    f.process(100, "banyand", 1, 50, "/banyandb.slice/bydb");
    f.process(101, "bash", 1, 50, "/");
    let t = f.discover(&cfg("banyand")).unwrap();
    assert_eq!((t.pid, t.comm.as_str(), t.matched.as_slice(), t.note.as_deref()), (100, "banyand", &[100][..], None));
    assert_eq!(t.cgroup, CgroupVerdict::Usable { id: ino(&dir), path: dir.clone() });
    assert!(cgroup_still_matches(&dir, ino(&dir)));
}

#[test]
fn no_match_is_none() {
    let f = Fake::new();
    f.process(100, "postgres", 1, 50, "/");
    assert_eq!(f.discover(&cfg("banyand")), None);
    // Matching is on the prefix, byte for byte and case-sensitively.
    f.process(101, "Banyand", 1, 50, "/");
    f.process(102, "banyan", 1, 50, "/");
    assert_eq!(f.discover(&cfg("banyand")), None);
}

#[test]
fn prefix_matching_and_ourselves() {
    let f = Fake::new();
    f.cgroup("a", &[100]);
    f.process(100, "banyand-data", 1, 50, "/a");
    f.process(SELF, "banyand-fodc", 1, 5, "/");
    let t = f.discover(&cfg("banyand")).unwrap();
    assert_eq!(t.pid, 100);
    assert_eq!(t.matched, vec![100], "the sidecar itself is never a candidate");
}

#[test]
fn vanished_processes_are_skipped() {
    let f = Fake::new();
    // Gone before its comm was read: only the directory is left.
    fs::create_dir_all(f.roots.proc.join("90")).unwrap();
    // Gone after its comm was read: no stat, no cgroup.
    fs::create_dir_all(f.roots.proc.join("91")).unwrap();
    fs::write(f.roots.proc.join("91/comm"), "banyand\n").unwrap();
    f.cgroup("b", &[95]);
    f.process(95, "banyand", 1, 50, "/b");
    let t = f.discover(&cfg("banyand")).unwrap();
    assert_eq!((t.pid, t.matched.clone()), (95, vec![95]));
    assert!(t.cgroup.is_usable());
}

#[test]
fn several_matches_prefer_the_main_process() {
    let f = Fake::new();
    f.cgroup("c", &[150, 200]);
    // A helper forked by the main process got a lower pid (pids wrap).
    f.process(200, "banyand", 1, 100, "/c");
    f.process(150, "banyand", 200, 120, "/c");
    let t = f.discover(&cfg("banyand")).unwrap();
    assert_eq!(t.pid, 200);
    assert_eq!(t.matched, vec![150, 200]);
    let note = t.note.unwrap();
    assert!(note.contains("2 processes match") && note.contains("chose pid 200"), "{note}");
    // Both the same comm prefix in one cgroup: still the target's alone.
    assert!(t.cgroup.is_usable());
}

#[test]
fn several_unrelated_matches_prefer_the_oldest_then_the_lowest_pid() {
    let f = Fake::new();
    f.process(300, "banyand", 1, 900, "/");
    f.process(400, "banyand", 1, 800, "/");
    assert_eq!(f.discover(&cfg("banyand")).unwrap().pid, 400);
    f.process(350, "banyand", 1, 800, "/");
    assert_eq!(f.discover(&cfg("banyand")).unwrap().pid, 350);
    // An unparsable stat sorts last rather than failing.
    fs::write(f.roots.proc.join("350/stat"), "garbage").unwrap();
    assert_eq!(f.discover(&cfg("banyand")).unwrap().pid, 400);
}

#[test]
fn root_cgroup_is_unusable() {
    let f = Fake::new();
    f.process(100, "banyand", 1, 50, "/");
    let t = f.discover(&cfg("banyand")).unwrap();
    assert_eq!(reason(&t), "target cgroup / is the root cgroup: it would count every process");
}

#[test]
fn shared_cgroups_are_unusable() {
    let f = Fake::new();
    f.cgroup("user.slice/session-1.scope", &[100, 123]);
    f.process(100, "banyand", 1, 50, "/user.slice/session-1.scope");
    f.process(123, "bash", 1, 40, "/user.slice/session-1.scope");
    let t = f.discover(&cfg("banyand")).unwrap();
    assert_eq!(reason(&t), "cgroup /user.slice/session-1.scope is shared with pid 123 (bash): it would count them too");

    // Shared with the sidecar itself, whatever its comm.
    f.process(SELF, "banyand-fodc", 1, 5, "/user.slice/session-1.scope");
    f.cgroup("user.slice/session-1.scope", &[SELF, 100]);
    let t = f.discover(&cfg("banyand")).unwrap();
    assert!(reason(&t).contains("pid 10 (the sidecar itself)"), "{}", reason(&t));

    // A process we cannot see (pid 0: outside our pid namespace) could be anything.
    f.cgroup("user.slice/session-1.scope", &[100, 0]);
    let t = f.discover(&cfg("banyand")).unwrap();
    assert!(reason(&t).contains("outside the sidecar's pid namespace"), "{}", reason(&t));

    // Many neighbours are summarized.
    for pid in 500..506 {
        f.process(pid, "sh", 1, 60, "/user.slice/session-1.scope");
    }
    f.cgroup("user.slice/session-1.scope", &[100, 500, 501, 502, 503, 504, 505]);
    let t = f.discover(&cfg("banyand")).unwrap();
    assert!(reason(&t).ends_with("pid 500 (sh), pid 501 (sh), pid 502 (sh) and 3 more: it would count them too"));
}

#[test]
fn processes_leaving_the_cgroup_do_not_count() {
    let f = Fake::new();
    f.cgroup("d", &[100, 777]);
    f.process(100, "banyand", 1, 50, "/d");
    assert!(f.discover(&cfg("banyand")).unwrap().cgroup.is_usable(), "pid 777 has exited");
}

#[test]
fn missing_v2_line_and_missing_directory() {
    let f = Fake::new();
    f.process(100, "banyand", 1, 50, "/");
    fs::write(f.roots.proc.join("100/cgroup"), "4:memory:/x\n1:cpu:/\n").unwrap();
    let t = f.discover(&cfg("banyand")).unwrap();
    assert!(reason(&t).contains("100/cgroup has no cgroup v2 (0::) line"), "{}", reason(&t));

    fs::write(f.roots.proc.join("100/cgroup"), "0::/gone\n").unwrap();
    let t = f.discover(&cfg("banyand")).unwrap();
    assert!(reason(&t).starts_with("cgroup /gone does not exist"), "{}", reason(&t));

    // Outside our cgroup namespace.
    fs::write(f.roots.proc.join("100/cgroup"), "0::/../../pod2/c\n").unwrap();
    let t = f.discover(&cfg("banyand")).unwrap();
    assert!(reason(&t).contains("outside the sidecar's cgroup namespace"), "{}", reason(&t));
}

#[test]
fn malformed_proc_content_never_panics() {
    let f = Fake::new();
    f.cgroup("e", &[100]);
    f.process(100, "banyand", 1, 50, "/e");
    for junk in ["", "\n", "0::", "0::/e\0\n", ")))", "\u{fffd}\u{0}", "0:::::\n0::/e"] {
        fs::write(f.roots.proc.join("100/cgroup"), junk).unwrap();
        fs::write(f.roots.proc.join("100/stat"), junk).unwrap();
        let _ = f.discover(&cfg("banyand")).unwrap();
    }
    fs::write(f.roots.proc.join("100/comm"), b"banyand\xff\xfe").unwrap();
    fs::write(f.roots.proc.join("100/cgroup"), "0::/e\n").unwrap();
    let t = f.discover(&cfg("banyand")).unwrap();
    assert_eq!(t.comm, "banyand\u{fffd}\u{fffd}");
    fs::write(f.dir.path().join("sys/fs/cgroup/unified/e/cgroup.procs"), "100\nnot-a-pid\n").unwrap();
    assert!(reason(&f.discover(&cfg("banyand")).unwrap()).contains("unexpected line \"not-a-pid\""));
}

#[test]
fn without_cgroup2_comm_mode_still_works() {
    let f = Fake::with_mountinfo("32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n");
    f.process(100, "banyand", 1, 50, "/");
    let e = find_cgroup2(&f.roots).unwrap_err();
    assert!(e.to_string().starts_with("cgroup v2 is not mounted"), "{e}");
    assert_eq!(e.path(), Some(f.roots.proc.join("self/mountinfo").as_path()));
    let t = f.discover(&cfg("banyand")).unwrap();
    assert!(reason(&t).starts_with("cgroup v2 is not mounted"), "{}", reason(&t));
    let t = f.discover(&cfg_at("banyand", "bydb")).unwrap();
    assert!(reason(&t).starts_with("collector.ebpf.cgroup_path bydb cannot be used: cgroup v2 is not mounted"));
}

#[test]
fn escaped_mount_point() {
    let f = Fake::with_mountinfo("41 31 0:38 / /sys/fs/cgroup/my\\040v2 rw,relatime - cgroup2 cgroup2 rw\n");
    let d = f.dir.path().join("sys/fs/cgroup/my v2/f");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("cgroup.procs"), "100\n").unwrap();
    f.process(100, "banyand", 1, 50, "/f");
    assert_eq!(f.discover(&cfg("banyand")).unwrap().cgroup, CgroupVerdict::Usable { id: ino(&d), path: d });
}

#[test]
fn configured_cgroup_paths() {
    let f = Fake::new();
    let dir = f.cgroup("kubepods/pod1/bydb", &[100]);
    f.process(100, "banyand", 1, 50, "/kubepods/pod1/bydb");
    let usable = CgroupVerdict::Usable { id: ino(&dir), path: dir.clone() };
    for p in ["kubepods/pod1/bydb", "./kubepods/x/../pod1/bydb/", "/sys/fs/cgroup/unified/kubepods/pod1/bydb"] {
        assert_eq!(f.discover(&cfg_at("banyand", p)).unwrap().cgroup, usable, "{p}");
    }
    // The mount itself is the root cgroup.
    for p in [".", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/"] {
        let t = f.discover(&cfg_at("banyand", p)).unwrap();
        assert!(reason(&t).contains("is the root cgroup"), "{p}: {}", reason(&t));
    }
    // A parent of the target's cgroup never matches in the kernel: tasks carry their own.
    let t = f.discover(&cfg_at("banyand", "kubepods/pod1")).unwrap();
    assert!(reason(&t).contains("is in cgroup /kubepods/pod1/bydb, not in the configured cgroup /kubepods/pod1"));
    let t = f.discover(&cfg_at("banyand", "kubepods/pod2")).unwrap();
    assert!(reason(&t).starts_with("configured cgroup kubepods/pod2 does not exist"), "{}", reason(&t));
}

#[test]
fn configured_paths_that_escape_are_errors() {
    let f = Fake::new();
    f.process(100, "banyand", 1, 50, "/");
    for p in ["/sys/fs/cgroup/memory/bydb", "/sys/fs/cgroup/unified/../cpu", "/etc"] {
        let e = discover(&cfg_at("banyand", p), &f.roots).unwrap_err();
        assert!(matches!(e, DiscoveryError::OutsideMount { .. }), "{p}: {e}");
        assert!(e.to_string().contains("outside the cgroup v2 mount /sys/fs/cgroup/unified"), "{e}");
    }
    let e = discover(&cfg_at("banyand", "../cpu"), &f.roots).unwrap_err();
    assert!(e.to_string().contains("collector.ebpf.cgroup_path"), "{e}");
}

#[test]
fn configured_cgroup_breaks_ties() {
    let f = Fake::new();
    let dir = f.cgroup("pod/bydb", &[300]);
    f.cgroup("other", &[200]);
    f.process(200, "banyand", 1, 10, "/other");
    f.process(300, "banyand", 1, 20, "/pod/bydb");
    let t = f.discover(&cfg_at("banyand", "pod/bydb")).unwrap();
    assert_eq!(t.pid, 300);
    assert_eq!(t.cgroup, CgroupVerdict::Usable { id: ino(&dir), path: dir });
    assert!(t.note.unwrap().contains("preferring a process in the configured cgroup"));
    assert_eq!(f.discover(&cfg("banyand")).unwrap().pid, 200);
}

#[test]
fn invalid_settings_and_unreadable_proc_are_errors() {
    let f = Fake::new();
    let e = discover(&cfg(""), &f.roots).unwrap_err();
    assert!(e.to_string().contains("collector.ebpf.comm_prefix"), "{e}");
    let roots = Roots { proc: f.dir.path().join("no-proc"), ..f.roots.clone() };
    let e = discover(&cfg("banyand"), &roots).unwrap_err();
    assert_eq!(e.path(), Some(roots.proc.as_path()));
    assert!(e.to_string().contains("no-proc"), "{e}");
}

#[test]
fn health_check() {
    let f = Fake::new();
    let dir = f.cgroup("g", &[]);
    let id = ino(&dir);
    assert!(cgroup_still_matches(&dir, id));
    assert!(!cgroup_still_matches(&dir, id + 1));
    assert!(!cgroup_still_matches(&dir.join("cgroup.procs"), ino(&dir.join("cgroup.procs"))));
    fs::remove_dir_all(&dir).unwrap();
    assert!(!cgroup_still_matches(&dir, id));
}
