//! Nothing is left after any kind of stop: `Collector::stop`, drop without stop, a panic in
//! the sidecar's recorder, SIGTERM, SIGINT and SIGKILL to `ktm run`, and one of two KTMs
//! running side by side. Each instance's programs, maps and links are found by id (from
//! `/proc/PID/fdinfo`, so other engineers' or tests' KTMs on the machine do not count), and
//! after the stop every one of those ids must be gone from the kernel.
//!
//! Also: `ktm run --output FILE` replaces the file atomically, so a reader polling it
//! throughout a run never sees a partial exposition.

mod common;
#[path = "common/kobj.rs"]
mod kobj;

use common::TestCgroup;
use kobj::{assert_gone, held, still_in_kernel, Held};
use ktm::attach::Policy;
use ktm::catalogue as c;
use ktm::collector::Collector;
use ktm::config::EbpfConfig;
use ktm::discovery::Roots;
use ktm::iomonitor::IoMonitorModule;
use ktm::metrics::{Batch, MetricValue};
use ktm::module::Module;
use ktm::recorder::{FnRecorder, MemoryRecorder};
use ktm::workload::Workload;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The in-process tests tell their instance's objects apart by what this process holds
/// before and after it starts, so the tests of this file run one at a time (even the check
/// for privileges creates a map).
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the file's lock, then checks privileges; None when the test cannot run here.
fn begin(test: &str) -> Option<MutexGuard<'static, ()>> {
    let g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    common::privileged(test).then_some(g)
}

const INTERVAL: Duration = Duration::from_millis(50);

fn prefix(tag: &str) -> String {
    format!("ktl{tag}{}", std::process::id() % 100000)
}

fn module(prefix: &str) -> Vec<Box<dyn Module>> {
    let cfg = EbpfConfig { comm_prefix: prefix.to_string(), ..EbpfConfig::default() };
    vec![Box::new(IoMonitorModule::with(cfg, Roots::system(), Policy::from_env()))]
}

fn pread_count(b: &Batch) -> Option<u64> {
    b.metrics.iter().find(|m| m.name == c::SYS_PREAD_LATENCY.name).and_then(|m| match &m.value {
        MetricValue::Histogram(h) => Some(h.count),
        _ => None,
    })
}

/// Waits until `read` gives `expected` twice in a row; fails on more, or on a timeout.
#[track_caller]
fn settle(what: &str, expected: u64, mut read: impl FnMut() -> Option<u64>) {
    let t = Instant::now();
    let mut seen = None;
    let mut twice = 0;
    while t.elapsed() < Duration::from_secs(10) {
        seen = read();
        match seen {
            Some(v) if v == expected => {
                twice += 1;
                if twice == 2 {
                    return;
                }
            }
            Some(v) if v > expected => panic!("{what}: counted {v}, more than the {expected} the target did"),
            _ => twice = 0,
        }
        std::thread::sleep(INTERVAL * 2);
    }
    panic!("{what}: counted {seen:?}, expected {expected}");
}

/// One in-process KTM, its recorder and the objects it holds.
struct Instance {
    collector: Option<Collector>,
    recorder: MemoryRecorder,
    objects: Held,
}

impl Instance {
    /// Starts a collector and returns once its programs are attached (first batch out).
    fn start(prefix: &str) -> Instance {
        Self::start_with(prefix, |_| {})
    }

    fn start_with(prefix: &str, also: impl FnMut(&Batch) + Send + 'static) -> Instance {
        let before = held("self");
        let recorder = MemoryRecorder::new(16);
        let mem = recorder.clone();
        let mut also = also;
        let sink = FnRecorder::new(move |b: Batch| {
            also(&b);
            let mut m = mem.clone();
            ktm::recorder::FlightRecorder::record(&mut m, b);
        });
        let collector = Collector::start_with(INTERVAL, module(prefix), Box::new(sink));
        assert!(recorder.wait_for(1, Duration::from_secs(20)), "no first batch");
        let objects = held("self").since(&before);
        assert!(!objects.progs.is_empty() && !objects.maps.is_empty(), "nothing attached: {objects}");
        Instance { collector: Some(collector), recorder, objects }
    }

    fn preads(&self) -> Option<u64> {
        let n = self.recorder.total() + 2;
        self.recorder.wait_for(n, Duration::from_secs(5));
        self.recorder.latest().as_ref().and_then(pread_count)
    }
}

/// A target in its own cgroup and a decoy beside it (another comm, root cgroup), both doing
/// preads; returns what the target did.
struct Scene {
    dir: tempfile::TempDir,
    cgroup: TestCgroup,
    target: Workload,
    decoy: Workload,
}

impl Scene {
    fn new(prefix: &str) -> Scene {
        let cgroup = TestCgroup::new(prefix);
        let target = Workload::spawn(&common::ktm_bin(), prefix, Some(&cgroup.path)).unwrap();
        let decoy = Workload::spawn(&common::ktm_bin(), "decoy", None).unwrap();
        Scene { dir: common::scratch(), cgroup, target, decoy }
    }

    fn file(&self) -> String {
        let p = self.dir.path().join("data");
        if !p.exists() {
            std::fs::write(&p, vec![7u8; 4096]).unwrap();
        }
        p.to_str().unwrap().to_string()
    }

    fn pread(&mut self, target: u64, decoy: u64) {
        let f = self.file();
        self.target.run(&format!("pread {f} {target} 4096")).unwrap();
        self.decoy.run(&format!("pread {f} {decoy} 4096")).unwrap();
    }
}

/// Waits for the iomonitor to program the scene's cgroup.
fn wait_scoped(i: &Instance, scene: &Scene) {
    let cg = scene.cgroup.path.display().to_string();
    let t = Instant::now();
    loop {
        let n = i.recorder.total() + 1;
        i.recorder.wait_for(n, Duration::from_secs(5));
        let b = i.recorder.latest().unwrap();
        if b.status.iter().any(|s| s.scope.contains(&cg)) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "never scoped to {cg}: {:?}", b.status);
    }
}

#[test]
fn collector_stop_leaves_nothing() {
    let Some(_g) = begin("collector_stop_leaves_nothing") else { return };
    let p = prefix("stop");
    let mut i = Instance::start(&p);
    let mut scene = Scene::new(&p);
    wait_scoped(&i, &scene);
    scene.pread(40, 25);
    settle("collector_stop", 40, || i.preads());
    i.collector.take().unwrap().stop();
    assert_gone("Collector::stop", &i.objects);
}

#[test]
fn collector_drop_without_stop_leaves_nothing() {
    let Some(_g) = begin("collector_drop_without_stop_leaves_nothing") else { return };
    let p = prefix("drop");
    let mut i = Instance::start(&p);
    let mut scene = Scene::new(&p);
    wait_scoped(&i, &scene);
    scene.pread(15, 30);
    settle("collector_drop", 15, || i.preads());
    drop(i.collector.take());
    assert_gone("drop(Collector)", &i.objects);
}

#[test]
fn panicking_recorder_stops_the_collector_cleanly_and_says_so() {
    let Some(_g) = begin("panicking_recorder_stops_the_collector_cleanly_and_says_so") else { return };
    let p = prefix("pan");
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trigger = armed.clone();
    let mut i = Instance::start_with(&p, move |_| {
        if trigger.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("the sidecar's recorder exploded");
        }
    });
    let mut scene = Scene::new(&p);
    wait_scoped(&i, &scene);
    scene.pread(12, 9);
    settle("before the panic", 12, || i.preads());
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let c = i.collector.take().unwrap();
    let t = Instant::now();
    while c.is_running() {
        assert!(t.elapsed() < Duration::from_secs(10), "the collector is still running after the panic");
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = c.failure().expect("the collector says why it stopped");
    assert!(why.contains("the sidecar's recorder exploded") && why.contains("stopped"), "{why}");
    // Already detached before anyone calls stop.
    let left = still_in_kernel(&i.objects);
    assert!(left.is_empty(), "after the panic, before stop: {left}");
    let total = i.recorder.total();
    std::thread::sleep(INTERVAL * 4);
    assert_eq!(i.recorder.total(), total, "no batch after the panic");
    c.stop(); // Still fine to call.
    assert_gone("panic in the recorder", &i.objects);
}

#[test]
fn two_ktms_count_independently_and_stopping_one_leaves_the_other() {
    let Some(_g) = begin("two_ktms_count_independently_and_stopping_one_leaves_the_other") else { return };
    let (pa, pb) = (prefix("a"), prefix("b"));
    let mut a = Instance::start(&pa);
    let mut b = Instance::start(&pb);
    assert!(a.objects.progs.is_disjoint(&b.objects.progs) && a.objects.maps.is_disjoint(&b.objects.maps));
    let mut sa = Scene::new(&pa);
    let mut sb = Scene::new(&pb);
    wait_scoped(&a, &sa);
    wait_scoped(&b, &sb);
    sa.pread(30, 11);
    sb.pread(70, 13);
    settle("first KTM", 30, || a.preads());
    settle("second KTM", 70, || b.preads());
    a.collector.take().unwrap().stop();
    assert_gone("the first of two KTMs", &a.objects);
    let left = still_in_kernel(&b.objects);
    assert_eq!(left.progs, b.objects.progs, "the second KTM's programs are untouched");
    assert_eq!(left.maps, b.objects.maps, "the second KTM's maps are untouched");
    sb.pread(10, 5);
    settle("second KTM after the first stopped", 80, || b.preads());
    b.collector.take().unwrap().stop();
    assert_gone("the second of two KTMs", &b.objects);
}

/// `ktm run` with a config of this interval and prefix, writing to `out`.
fn ktm_run(dir: &std::path::Path, interval: &str, prefix: &str, out: &std::path::Path) -> Child {
    let cfg = dir.join("ktm.yaml");
    std::fs::write(&cfg, format!("collector:\n  interval: {interval}\n  ebpf:\n    comm_prefix: {prefix}\n")).unwrap();
    Command::new(common::ktm_bin())
        .args(["run", "--config", cfg.to_str().unwrap(), "--output", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn parse_file(out: &std::path::Path) -> Option<Vec<ktm::prometheus::Family>> {
    let text = std::fs::read_to_string(out).ok()?;
    Some(ktm::prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

fn file_preads(out: &std::path::Path) -> Option<u64> {
    let fams = parse_file(out)?;
    let f = fams.iter().find(|f| f.name == c::SYS_PREAD_LATENCY.name)?;
    f.value(&format!("{}_count", c::SYS_PREAD_LATENCY.name), &[]).map(|v| v as u64)
}

/// Runs `ktm run`, checks its counts against a target and a decoy, sends `signal` and checks
/// every program, map and link it held is gone.
fn signal_run(tag: &str, signal: i32, clean_exit: bool) {
    let p = prefix(tag);
    let dir = common::scratch();
    let out = dir.path().join("metrics.prom");
    let mut child = ktm_run(dir.path(), "50ms", &p, &out);
    let t = Instant::now();
    while parse_file(&out).is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "{tag}: no batch written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let objects = held(&child.id().to_string());
    let mut scene = Scene::new(&p);
    scene.pread(21, 17);
    settle(tag, 21, || file_preads(&out));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    if clean_exit {
        assert_eq!(status.code(), Some(0), "{tag}: {err}");
        assert!(err.contains("detaching"), "{tag}: {err}");
    } else {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(signal), "{tag}: {err}");
    }
    assert_gone(tag, &objects);
    // The file holds a whole batch whatever the signal interrupted; no temporary file is left
    // after a clean exit.
    assert_eq!(file_preads(&out), Some(21), "{tag}");
    if clean_exit {
        let names: BTreeSet<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert!(!names.iter().any(|n| n.ends_with(".ktm-tmp")), "{tag}: {names:?}");
    }
}

#[test]
fn sigterm_to_ktm_run_leaves_nothing() {
    if let Some(_g) = begin("sigterm_to_ktm_run_leaves_nothing") {
        signal_run("term", libc::SIGTERM, true);
    }
}

#[test]
fn sigint_to_ktm_run_leaves_nothing() {
    if let Some(_g) = begin("sigint_to_ktm_run_leaves_nothing") {
        signal_run("int", libc::SIGINT, true);
    }
}

#[test]
fn sigkill_to_ktm_run_leaves_nothing() {
    if let Some(_g) = begin("sigkill_to_ktm_run_leaves_nothing") {
        signal_run("kill", libc::SIGKILL, false);
    }
}

#[test]
fn two_ktm_run_processes_count_independently_and_sigterm_to_one_leaves_the_other() {
    let Some(_g) = begin("two_ktm_run_processes_count_independently_and_sigterm_to_one_leaves_the_other") else {
        return;
    };
    let (pa, pb) = (prefix("pa"), prefix("pb"));
    let (da, db) = (common::scratch(), common::scratch());
    let (oa, ob) = (da.path().join("a.prom"), db.path().join("b.prom"));
    let mut a = ktm_run(da.path(), "50ms", &pa, &oa);
    let mut b = ktm_run(db.path(), "50ms", &pb, &ob);
    let t = Instant::now();
    while parse_file(&oa).is_none() || parse_file(&ob).is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "no batches written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ha, hb) = (held(&a.id().to_string()), held(&b.id().to_string()));
    assert!(ha.progs.is_disjoint(&hb.progs) && ha.maps.is_disjoint(&hb.maps), "{ha} / {hb}");
    let (mut sa, mut sb) = (Scene::new(&pa), Scene::new(&pb));
    sa.pread(33, 10);
    sb.pread(66, 10);
    settle("first ktm run", 33, || file_preads(&oa));
    settle("second ktm run", 66, || file_preads(&ob));
    unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
    assert_eq!(a.wait().unwrap().code(), Some(0));
    assert_gone("the first of two ktm runs", &ha);
    let left = still_in_kernel(&hb);
    assert_eq!((left.progs, left.maps), (hb.progs.clone(), hb.maps.clone()), "the second run's objects are untouched");
    sb.pread(4, 3);
    settle("second ktm run after the first stopped", 70, || file_preads(&ob));
    unsafe { libc::kill(b.id() as i32, libc::SIGTERM) };
    assert_eq!(b.wait().unwrap().code(), Some(0));
    assert_gone("the second of two ktm runs", &hb);
}

#[test]
fn output_file_is_replaced_atomically_and_never_read_partial() {
    let Some(_g) = begin("output_file_is_replaced_atomically_and_never_read_partial") else { return };
    let p = prefix("out");
    let dir = common::scratch();
    let out = dir.path().join("ktm.prom");
    let mut child = ktm_run(dir.path(), "1ms", &p, &out);
    let reader = {
        let out = out.clone();
        std::thread::spawn(move || {
            // The reads are timed from the first batch: a loaded host can take seconds to
            // start, verify and self-test before the first one is written.
            let start = Instant::now();
            while !out.exists() && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let t = Instant::now();
            let mut reads = 0u64;
            let mut stamps = BTreeSet::new();
            let mut families: Option<Vec<String>> = None;
            while t.elapsed() < Duration::from_secs(3) {
                let Ok(text) = std::fs::read_to_string(&out) else {
                    assert!(families.is_none(), "the file disappeared after read {reads}");
                    continue;
                };
                reads += 1;
                assert!(text.ends_with('\n'), "read {reads} ends mid-line:\n{text}");
                assert_eq!(text.matches("# batch at").count(), 1, "read {reads} is one batch:\n{text}");
                stamps.insert(text.lines().next().unwrap().to_string());
                let fams = ktm::prometheus::parse(&text).unwrap_or_else(|e| panic!("read {reads}: {e}\n{text}"));
                let names: Vec<String> = fams.iter().map(|f| f.name.clone()).collect();
                match &families {
                    None => families = Some(names),
                    Some(first) => assert_eq!(&names, first, "read {reads} has other families:\n{text}"),
                }
            }
            (reads, stamps.len(), families.unwrap_or_default())
        })
    };
    // Meanwhile the target reads, so the counters move between batches.
    let mut scene = Scene::new(&p);
    while !reader.is_finished() {
        scene.pread(50, 50);
    }
    let (reads, batches, families) = reader.join().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(reads > 100, "only {reads} reads");
    assert!(batches >= 2, "the file was replaced by later batches ({batches} seen)");
    for f in [c::SYS_PREAD_LATENCY.name, c::MODULE_STATE.name, c::METRIC_SOURCE.name] {
        assert!(families.iter().any(|n| n == f), "{f} missing from {families:?}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o644);
}
