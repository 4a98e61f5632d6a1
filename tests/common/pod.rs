//! Kubernetes pods built from namespaces, so KTM is tested where the design puts it.
//!
//! A pod here is what a container runtime makes of one: a cgroup v2 directory with one
//! directory per container, and a pid namespace whose init is a "pause" process. A
//! container's process joins its container's cgroup and (with `shareProcessNamespace`) the
//! pod's pid namespace. The sidecar can also get what a container gets by default: its own
//! cgroup namespace (so `/proc/<banyand>/cgroup` reads `0::/../banyand-ctr`), its own mount
//! namespace with `/proc` and cgroup2 mounted afresh and no tracefs, and only `CAP_BPF` and
//! `CAP_PERFMON`.
//!
//! Everything is done with raw syscalls between fork and exec (no util-linux needed, so the
//! QEMU guests run the same tests). Entering a new pid namespace takes one more fork: the
//! first child stays outside, waits for the second and exits with its status, and the
//! second dies with it (PR_SET_PDEATHSIG), so killing the `Child` kills the container.
#![allow(dead_code)]

use ktm::catalogue as c;
use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ktm::prometheus::Sample;
use ktm::workload::Workload;

/// How a process enters its pod.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// The container's cgroup directory.
    pub cgroup: Option<PathBuf>,
    /// Join the pod's pid namespace (`shareProcessNamespace: true`).
    pub share_pid: bool,
    /// A pid namespace of its own (`shareProcessNamespace: false`, or the pod's pause).
    pub own_pid: bool,
    /// A cgroup namespace of its own, rooted at its container's cgroup.
    pub own_cgroupns: bool,
    /// A mount namespace of its own: `/proc` for its pid namespace, cgroup2 mounted afresh,
    /// tracefs and debugfs absent.
    pub own_mounts: bool,
    /// With `own_mounts`: cgroup2 unmounted and not mounted again, as a runtime on a host
    /// with cgroup v1 controllers leaves a container (only the v1 hierarchies mounted).
    pub no_cgroup2: bool,
    /// Only CAP_BPF and CAP_PERFMON (and RLIMIT_MEMLOCK raised first, as a runtime
    /// configured for eBPF does: kernels before 5.11 charge maps to it).
    pub least_privilege: bool,
}

/// A pod: its cgroup and its pause process, holder of the pod's pid namespace.
pub struct Pod {
    pub name: String,
    pub cgroup: PathBuf,
    pause: Option<Workload>,
    pause_pid: u32,
}

impl Pod {
    pub fn new(name: &str) -> Pod {
        let root = crate::common::cgroup2_mount().expect("cgroup v2 is mounted");
        let cgroup = root.join(format!("ktm-pod-{}-{name}", std::process::id()));
        std::fs::create_dir(&cgroup).unwrap_or_else(|e| panic!("mkdir {}: {e}", cgroup.display()));
        let mut pod = Pod { name: name.into(), cgroup, pause: None, pause_pid: 0 };
        let entry = Entry { cgroup: Some(pod.container("pause")), own_pid: true, ..Entry::default() };
        let pause = pod.spawn_workload_with(&entry, "pause");
        pod.pause_pid = pause.pid();
        pod.pause = Some(pause);
        pod
    }

    /// A container's cgroup directory (made on first use).
    pub fn container(&self, name: &str) -> PathBuf {
        let dir = self.cgroup.join(name);
        if !dir.is_dir() {
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        dir
    }

    /// The pod's pid namespace, as its pause's first child entered it.
    fn pidns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/pid_for_children", self.pause_pid))
    }

    /// A workload child (`ktm workload --comm COMM`) in container `container` of this pod,
    /// sharing the pod's pid namespace.
    pub fn workload(&self, container: &str, comm: &str) -> Workload {
        let entry = Entry { cgroup: Some(self.container(container)), share_pid: true, ..Entry::default() };
        self.spawn_workload_with(&entry, comm)
    }

    pub fn spawn_workload_with(&self, entry: &Entry, comm: &str) -> Workload {
        let mut cmd = Command::new(crate::common::ktm_bin());
        cmd.args(["workload", "--comm", comm]);
        self.enter(&mut cmd, entry);
        Workload::spawn_prepared(cmd).unwrap_or_else(|e| panic!("workload {comm} in pod {}: {e}", self.name))
    }

    /// `ktm ARGS` as a container of this pod, its stdout piped.
    pub fn command(&self, entry: &Entry, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::common::ktm_bin());
        cmd.args(args).stdout(Stdio::piped());
        self.enter(&mut cmd, entry);
        cmd
    }

    /// Arranges for `cmd`'s process to enter the pod as `entry` says.
    pub fn enter(&self, cmd: &mut Command, entry: &Entry) {
        let procs = entry.cgroup.as_ref().map(|c| {
            let p = c.join("cgroup.procs");
            File::options().write(true).open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        });
        // Where the process that stays outside the pod's pid namespace goes once it has forked
        // the real one: not the container's cgroup, which must hold the container alone.
        let shim = {
            let p = self.container("shim").join("cgroup.procs");
            File::options().write(true).open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let pidns = entry.share_pid.then(|| {
            File::open(self.pidns_path()).unwrap_or_else(|e| panic!("open {}: {e}", self.pidns_path().display()))
        });
        let cgroup2 = crate::common::cgroup2_mount().map(|p| CString::new(p.to_str().unwrap()).unwrap());
        let c = |s: &str| CString::new(s).unwrap();
        let (proc_, root, tracing, debug, none) =
            (c("/proc"), c("/"), c("/sys/kernel/tracing"), c("/sys/kernel/debug"), c("none"));
        let (proc_fs, cgroup2_fs) = (c("proc"), c("cgroup2"));
        let e = entry.clone();
        // SAFETY: between fork and exec only async-signal-safe calls are made: raw syscalls
        // on fds and strings prepared above; no allocation, no locks.
        unsafe {
            cmd.pre_exec(move || {
                // Only an errno crosses back to spawn(): step * 1000 + errno says which
                // step failed ("Unknown error 6022" is step 6, EINVAL).
                let fail = |step: i32| -> std::io::Result<()> {
                    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                    Err(std::io::Error::from_raw_os_error(step * 1000 + errno))
                };
                if let Some(f) = &procs {
                    if libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                        return fail(1);
                    }
                }
                if let Some(f) = &pidns {
                    if libc::setns(f.as_raw_fd(), libc::CLONE_NEWPID) != 0 {
                        return fail(2);
                    }
                }
                let mut flags = 0;
                if e.own_pid {
                    flags |= libc::CLONE_NEWPID;
                }
                if e.own_cgroupns {
                    flags |= libc::CLONE_NEWCGROUP;
                }
                if e.own_mounts {
                    flags |= libc::CLONE_NEWNS;
                }
                if flags != 0 && libc::unshare(flags) != 0 {
                    return fail(3);
                }
                if e.share_pid || e.own_pid {
                    // Only children enter a new pid namespace: fork once more.
                    let child = libc::fork();
                    if child < 0 {
                        return fail(4);
                    }
                    if child > 0 {
                        libc::write(shim.as_raw_fd(), b"0".as_ptr().cast(), 1);
                        // Stay outside; let go of every fd but stdio (std's exec-error pipe
                        // among them, or spawn() would wait for us), reap, and pass the status on.
                        for fd in 3..1024 {
                            libc::close(fd);
                        }
                        let mut status = 0;
                        loop {
                            let r = libc::waitpid(child, &mut status, 0);
                            if r == child || (r < 0 && *libc::__errno_location() != libc::EINTR) {
                                break;
                            }
                        }
                        let code = if libc::WIFEXITED(status) {
                            libc::WEXITSTATUS(status)
                        } else {
                            128 + libc::WTERMSIG(status)
                        };
                        libc::_exit(code);
                    }
                    // The parent is outside the new namespace, where getppid() reads 0;
                    // it waits for us, so it cannot die before this line.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                }
                if e.own_mounts {
                    let null = std::ptr::null();
                    if libc::mount(none.as_ptr(), root.as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, null.cast())
                        != 0
                    {
                        return fail(5);
                    }
                    if libc::mount(proc_fs.as_ptr(), proc_.as_ptr(), proc_fs.as_ptr(), 0, null.cast()) != 0 {
                        return fail(6);
                    }
                    libc::umount2(tracing.as_ptr(), libc::MNT_DETACH);
                    libc::umount2(debug.as_ptr(), libc::MNT_DETACH);
                    if let Some(at) = &cgroup2 {
                        // Mounted afresh, it shows the cgroup namespace's root.
                        libc::umount2(at.as_ptr(), libc::MNT_DETACH);
                        if !e.no_cgroup2
                            && libc::mount(cgroup2_fs.as_ptr(), at.as_ptr(), cgroup2_fs.as_ptr(), 0, null.cast()) != 0
                        {
                            return fail(7);
                        }
                    }
                }
                if e.least_privilege {
                    // As high as this process may raise it (a sandbox without
                    // CAP_SYS_RESOURCE keeps its hard limit).
                    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                    libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim);
                    let inf = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
                    if libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) != 0 {
                        lim.rlim_cur = lim.rlim_max;
                        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                            return fail(8);
                        }
                    }
                    // Root's capabilities after exec are its bounding set: keep BPF (39) and
                    // PERFMON (38) only.
                    for cap in 0..64 {
                        if cap != 38 && cap != 39 {
                            libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                        }
                    }
                    libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
                }
                Ok(())
            });
        }
    }

    /// `ktm run` with `config` as the pod's sidecar.
    pub fn sidecar(&self, entry: &Entry, config: &str, dir: &Path) -> Sidecar {
        let path = dir.join(format!("ktm-{}.yaml", self.name));
        std::fs::write(&path, config).unwrap();
        let mut cmd = self.command(entry, &["run", "--config", path.to_str().unwrap()]);
        cmd.stderr(Stdio::inherit());
        Sidecar::start(cmd)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.pause.take();
        remove_tree(&self.cgroup);
    }
}

/// Removes a cgroup directory and its children, waiting for their processes to go.
pub fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                remove_tree(&e.path());
            }
        }
    }
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("note: cannot remove {}", dir.display());
}

/// A received batch: when it arrived and its samples.
#[derive(Clone, Debug)]
pub struct Batch {
    /// When the batch was collected, by `ktm run`'s clock (its header's milliseconds): a
    /// batch received late (the reading thread was not scheduled) is still placed right.
    pub at: SystemTime,
    pub samples: Vec<Sample>,
}

/// The collection time in a `# batch at unix time S (MS ms)` header.
fn collected_at(header: &str) -> Option<SystemTime> {
    let ms = header.split('(').nth(1)?.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

impl Batch {
    /// The value of sample `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        ktm::prometheus::sample_value(&self.samples, name, labels)
    }

    /// A label of the iomonitor's `ktm_module_state` sample.
    pub fn state_label(&self, label: &str) -> String {
        self.samples
            .iter()
            .find(|s| s.name == c::MODULE_STATE.name && s.labels.get("module").map(String::as_str) == Some("iomonitor"))
            .and_then(|s| s.labels.get(label).cloned())
            .unwrap_or_default()
    }

    /// The mechanism feeding `metric` (`unavailable` included).
    pub fn source(&self, metric: &str) -> String {
        self.samples
            .iter()
            .find(|s| s.name == c::METRIC_SOURCE.name && s.labels.get("metric").map(String::as_str) == Some(metric))
            .and_then(|s| s.labels.get("mechanism").cloned())
            .unwrap_or_else(|| "missing".into())
    }
}

/// A running `ktm run`, its batches read by a thread as they come.
pub struct Sidecar {
    child: Child,
    batches: Arc<(Mutex<Vec<Batch>>, Condvar)>,
}

impl Sidecar {
    fn start(mut cmd: Command) -> Sidecar {
        let mut child = cmd.spawn().expect("spawn ktm run");
        let out = BufReader::new(child.stdout.take().unwrap());
        let batches = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let shared = Arc::clone(&batches);
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut at = UNIX_EPOCH;
            for line in out.lines() {
                let Ok(line) = line else { break };
                if line.starts_with("# batch at") {
                    at = collected_at(&line).expect("ktm run's batch header carries its milliseconds");
                    text.clear();
                } else if line.is_empty() {
                    if !text.is_empty() {
                        let samples =
                            ktm::prometheus::parse_samples(&text).expect("ktm run printed valid exposition text");
                        let (lock, cv) = &*shared;
                        lock.lock().unwrap().push(Batch { at, samples });
                        cv.notify_all();
                    }
                    text.clear();
                } else {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            shared.1.notify_all();
        });
        Sidecar { child, batches }
    }

    /// The `n`th batch collected after `after` (1 = the first), by `ktm run`'s own stamp, so
    /// a batch this process reads late is never taken for a newer one: with `n` = 3 at least
    /// one whole interval lies between `after` and its collection.
    pub fn batch_after(&mut self, after: Instant, n: usize) -> Batch {
        self.batch_collected_after(SystemTime::now() - after.elapsed(), n)
    }

    /// The `n`th batch collected after `after` (by the header's milliseconds).
    fn batch_collected_after(&mut self, after: SystemTime, n: usize) -> Batch {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (lock, cv) = &*self.batches;
        let mut got = lock.lock().unwrap();
        loop {
            if let Some(b) = got.iter().filter(|b| b.at > after).nth(n - 1) {
                return b.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ktm run exited with {status} before its batch came");
            }
            assert!(Instant::now() < deadline, "no batch from ktm run within 30 s");
            got = cv.wait_timeout(got, Duration::from_millis(200)).unwrap().0;
        }
    }

    /// The first batch collected after now for which `ok` holds, within 20 s; panics with the last
    /// state otherwise.
    pub fn wait_for(&mut self, what: &str, ok: impl Fn(&Batch) -> bool) -> Batch {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut from = SystemTime::now();
        loop {
            let b = self.batch_collected_after(from, 1);
            if ok(&b) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within 20 s; pread count {:?}; last state {:?}, reason {:?}, scope {:?}",
                b.value(&format!("{}_count", c::SYS_PREAD_LATENCY.name), &[]),
                b.state_label("state"),
                b.state_label("reason"),
                b.state_label("scope")
            );
            from = b.at;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Marks the lines of a [`ManualSidecar`]'s answers among the test harness's output.
const MANUAL_BEGIN: &str = "KTM-MANUAL-BEGIN";
const MANUAL_END: &str = "KTM-MANUAL-END";
/// The environment that makes this test binary's helper test a [`ManualSidecar`]: the comm
/// prefix; and `0` in [`MANUAL_HOOK`] to leave the rename and join hooks out.
pub const MANUAL_PREFIX: &str = "KTM_MANUAL_SIDECAR";
pub const MANUAL_HOOK: &str = "KTM_MANUAL_HOOK";

/// The iomonitor module in a pod's sidecar container, whose collections the test drives
/// (one per `collect()`), so that what happens between two collections is known exactly.
/// It is this test binary run again inside the pod, its helper test ([`manual_sidecar_main`])
/// reading commands on stdin.
pub struct ManualSidecar {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl ManualSidecar {
    /// Starts the helper test `helper` of this binary as the sidecar `entry` in `pod`.
    pub fn start(pod: &Pod, entry: &Entry, helper: &str, prefix: &str, hook: bool) -> ManualSidecar {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
        cmd.args([helper, "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env(MANUAL_PREFIX, prefix)
            .env(MANUAL_HOOK, if hook { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        pod.enter(&mut cmd, entry);
        let mut child = cmd.spawn().expect("spawn the manual sidecar");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        ManualSidecar { child, stdin, lines }
    }

    /// One collection: refresh, counters and status, as a batch.
    pub fn collect(&mut self) -> Batch {
        use std::io::Write;
        writeln!(self.stdin, "collect").expect("send to the manual sidecar");
        let mut text = String::new();
        let mut inside = false;
        loop {
            let line = self.lines.next().expect("the manual sidecar died").expect("read the manual sidecar");
            match line.as_str() {
                MANUAL_BEGIN => inside = true,
                MANUAL_END => break,
                _ if inside => {
                    text.push_str(&line);
                    text.push('\n');
                }
                _ => {}
            }
        }
        let samples = ktm::prometheus::parse_samples(&text).expect("valid exposition text");
        Batch { at: SystemTime::now(), samples }
    }
}

impl Drop for ManualSidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The helper test's body: the iomonitor module, started at once, collecting on command.
/// Returns without doing anything unless [`MANUAL_PREFIX`] is set.
pub fn manual_sidecar_main() {
    use ktm::module::Module;
    let Some(prefix) = std::env::var_os(MANUAL_PREFIX) else { return };
    let cfg = ktm::config::EbpfConfig { comm_prefix: prefix.into_string().unwrap(), ..Default::default() };
    let mut module = ktm::iomonitor::IoMonitorModule::new(cfg);
    if std::env::var(MANUAL_HOOK).as_deref() == Ok("0") {
        module = module.with_probes(|| {
            let hooks = [ktm::programs::RENAME_HOOK, ktm::programs::JOIN_HOOK];
            ktm::programs::probes().into_iter().filter(|p| !hooks.contains(&p.plan.name.as_str())).collect()
        });
    }
    // As the collector reports a module that could not start.
    let failed = module.start().err().map(|e| ktm::metrics::ModuleStatus {
        module: "iomonitor".into(),
        state: ktm::metrics::ModuleState::Disabled,
        reason: Some(e.to_string()),
        sources: Vec::new(),
        scope: String::new(),
    });
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        if line.trim() != "collect" {
            break;
        }
        let batch = match &failed {
            Some(status) => ktm::metrics::Batch::new(Vec::new(), vec![status.clone()]),
            None => ktm::metrics::Batch::new(module.collect(), vec![module.status()]),
        };
        let text = ktm::prometheus::render(&batch);
        println!("{MANUAL_BEGIN}\n{text}{MANUAL_END}");
    }
}
