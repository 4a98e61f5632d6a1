//! Privileged end-to-end tests of the collector and the iomonitor module's lifecycle:
//! discovery, scoping, health checks, restarts and failures, through pushed batches.

mod common;

use common::TestCgroup;
use ktm::attach::{Alternative, AttachPoint, Plan, Policy};
use ktm::catalogue as c;
use ktm::collector::Collector;
use ktm::config::EbpfConfig;
use ktm::discovery::Roots;
use ktm::iomonitor::IoMonitorModule;
use ktm::metrics::{Batch, Metric, MetricValue, ModuleState, ModuleStatus};
use ktm::module::Module;
use ktm::programs::Probe;
use ktm::recorder::MemoryRecorder;
use ktm::workload::Workload;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(150);

struct Run {
    recorder: MemoryRecorder,
    collector: Option<Collector>,
    prefix: String,
    dir: tempfile::TempDir,
}

fn start(tag: &str, modules: impl FnOnce(EbpfConfig) -> Vec<Box<dyn Module>>) -> Run {
    // A prefix no other process (or parallel test) has.
    let prefix = format!("ktm{tag}{}", std::process::id() % 100000);
    let cfg = EbpfConfig { comm_prefix: prefix.clone(), ..EbpfConfig::default() };
    let recorder = MemoryRecorder::new(256);
    let collector = Collector::start_with(INTERVAL, modules(cfg), Box::new(recorder.clone()));
    let run = Run { recorder, collector: Some(collector), prefix, dir: common::scratch() };
    run.next_batch();
    run
}

fn iomonitor(cfg: EbpfConfig) -> Vec<Box<dyn Module>> {
    vec![Box::new(IoMonitorModule::with(cfg, Roots::system(), Policy::from_env()))]
}

impl Run {
    /// Waits for a batch collected after now.
    fn next_batch(&self) -> Batch {
        let n = self.recorder.total() + 2; // the one in progress may predate our last action
        assert!(self.recorder.wait_for(n, Duration::from_secs(10)), "no batch within 10 s");
        self.recorder.latest().unwrap()
    }

    fn status(&self, batch: &Batch) -> ModuleStatus {
        batch.status.iter().find(|s| s.module == "iomonitor").cloned().expect("iomonitor status")
    }

    /// Waits until the iomonitor's status satisfies `ok`.
    fn until(&self, what: &str, ok: impl Fn(&ModuleStatus) -> bool) -> ModuleStatus {
        for _ in 0..40 {
            let s = self.status(&self.next_batch());
            if ok(&s) {
                return s;
            }
        }
        panic!("status never became {what}: {:?}", self.status(&self.recorder.latest().unwrap()));
    }

    fn target(&self, cgroup: Option<&TestCgroup>) -> Workload {
        Workload::spawn(&common::ktm_bin(), &self.prefix, cgroup.map(|c| c.path.as_path())).unwrap()
    }

    fn file(&self) -> String {
        let p = self.dir.path().join("data");
        std::fs::write(&p, vec![3u8; 4096]).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn preads(&self) -> u64 {
        let b = self.next_batch();
        hist_count(&b, c::SYS_PREAD_LATENCY.name)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(c) = self.collector.take() {
            c.stop();
        }
    }
}

/// Active, or degraded only because this kernel cannot give some metric.
fn running(s: &ModuleStatus) -> bool {
    s.state == ModuleState::Active
        || (s.state == ModuleState::Degraded
            && s.reason
                .as_deref()
                .is_some_and(|r| r.contains("unavailable on this kernel") && !r.contains("comm filtering")))
}

fn find<'a>(b: &'a Batch, name: &str) -> Option<&'a Metric> {
    b.metrics.iter().find(|m| m.name == name)
}

fn hist_count(b: &Batch, name: &str) -> u64 {
    match find(b, name).map(|m| &m.value) {
        Some(MetricValue::Histogram(h)) => h.count,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn target_started_late_is_found_within_an_interval() {
    if !common::privileged("target_started_late_is_found_within_an_interval") {
        return;
    }
    let run = start("late", iomonitor);
    let s = run.status(&run.recorder.latest().unwrap());
    assert_eq!(s.state, ModuleState::WaitingForTarget, "{s:?}");
    let cg = TestCgroup::new("late");
    let mut target = run.target(Some(&cg));
    // The first batch collected after the target appeared already has it.
    let s = run.status(&run.next_batch());
    assert!(running(&s), "{s:?}");
    assert!(s.scope.contains(&cg.path.display().to_string()), "{}", s.scope);
    let file = run.file();
    target.run(&format!("pread {file} 100 4096")).unwrap();
    assert_eq!(run.preads(), 100);
}

#[test]
fn restart_in_same_cgroup_or_a_new_one_keeps_counting() {
    if !common::privileged("restart_in_same_cgroup_or_a_new_one_keeps_counting") {
        return;
    }
    let run = start("rst", iomonitor);
    let cg1 = TestCgroup::new("rst1");
    let mut target = run.target(Some(&cg1));
    run.until("active", |s| s.scope.contains(&cg1.path.display().to_string()));
    let file = run.file();
    target.run(&format!("pread {file} 50 4096")).unwrap();
    assert_eq!(run.preads(), 50);

    // Killed and restarted in the same cgroup: counting continues.
    drop(target);
    let mut target = run.target(Some(&cg1));
    target.run(&format!("pread {file} 70 4096")).unwrap();
    assert_eq!(run.preads(), 120);

    // Moved to a new cgroup and the old one removed: re-discovered, counters go on (they
    // never reset while the sidecar runs).
    let cg2 = TestCgroup::new("rst2");
    target.move_to(&cg2.path).unwrap();
    drop(cg1);
    run.until("re-targeted", |s| s.scope.contains(&cg2.path.display().to_string()));
    target.run(&format!("pread {file} 30 4096")).unwrap();
    assert_eq!(run.preads(), 150);
}

#[test]
fn root_or_shared_cgroup_falls_back_to_comm_and_says_why() {
    if !common::privileged("root_or_shared_cgroup_falls_back_to_comm_and_says_why") {
        return;
    }
    let run = start("shr", iomonitor);
    let file = run.file();
    // Shared: a decoy with another comm in the target's cgroup.
    let cg = TestCgroup::new("shared");
    let mut decoy = Workload::spawn(&common::ktm_bin(), "decoy", Some(&cg.path)).unwrap();
    let mut target = run.target(Some(&cg));
    let s = run.until("comm mode", |s| s.scope.contains("comm prefix") && s.reason.is_some());
    let why = s.reason.unwrap();
    assert!(why.contains(&decoy.pid().to_string()), "the reason names the other process: {why}");
    let before = run.preads();
    target.run(&format!("pread {file} 25 4096")).unwrap();
    decoy.run(&format!("pread {file} 40 4096")).unwrap();
    assert_eq!(run.preads() - before, 25, "only the target counts");

    // Root: the target in the cgroup v2 root.
    let root = common::cgroup2_mount().unwrap();
    target.move_to(&root).unwrap();
    drop(decoy);
    drop(cg);
    let s = run.until("root reason", |s| s.reason.as_deref().is_some_and(|r| r.contains("root")));
    assert!(s.scope.contains("comm prefix"), "{}", s.scope);
    let mut neighbour = Workload::spawn(&common::ktm_bin(), "neighbour", None).unwrap();
    let before = run.preads();
    target.run(&format!("pread {file} 15 4096")).unwrap();
    neighbour.run(&format!("pread {file} 40 4096")).unwrap();
    assert_eq!(run.preads() - before, 15, "root cgroup: only the comm match counts");
}

/// The read probe replaced by a program the verifier rejects.
fn probes_with_a_bad_one() -> Vec<Probe> {
    let mut probes = ktm::programs::probes();
    probes[0] = Probe {
        plan: Plan {
            name: "ktm_bad".into(),
            alternatives: vec![Alternative::new(AttachPoint::tracepoint("syscalls", "sys_enter_read"), || {
                let mut a = ktm::insn::Asm::new();
                a.mov64(ktm::insn::R1, 0);
                a.ldx_dw(ktm::insn::R0, ktm::insn::R1, 0);
                a.exit();
                Ok(a.finish()?)
            })],
            exercise: None,
        },
        metrics: &[&c::SYS_READ_LATENCY],
    };
    probes
}

/// A module that always works, to show the others keep running.
struct Heartbeat(u64);

impl Module for Heartbeat {
    fn name(&self) -> &str {
        "heartbeat"
    }
    fn start(&mut self) -> ktm::Result<()> {
        Ok(())
    }
    fn collect(&mut self) -> Vec<Metric> {
        self.0 += 1;
        vec![Metric::counter("heartbeat_total", "collections", self.0)]
    }
    fn status(&self) -> ModuleStatus {
        ModuleStatus {
            module: "heartbeat".into(),
            state: ModuleState::Active,
            reason: None,
            sources: vec![],
            scope: String::new(),
        }
    }
    fn stop(&mut self) {}
}

/// A module whose start fails.
struct Broken;

impl Module for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn start(&mut self) -> ktm::Result<()> {
        Err(ktm::Error::Other("cannot start: test".into()))
    }
    fn collect(&mut self) -> Vec<Metric> {
        unreachable!("never collected once start failed")
    }
    fn status(&self) -> ModuleStatus {
        unreachable!()
    }
    fn stop(&mut self) {}
}

#[test]
fn rejected_program_degrades_the_module_and_the_rest_runs_on() {
    if !common::privileged("rejected_program_degrades_the_module_and_the_rest_runs_on") {
        return;
    }
    // The bad program sits on a tracepoint, which a run's switches must not take away.
    let policy = Policy { disable_tracepoint: false, ..Policy::from_env() };
    let run = start("bad", |cfg| {
        vec![
            Box::new(IoMonitorModule::with(cfg, Roots::system(), policy).with_probes(probes_with_a_bad_one)),
            Box::new(Heartbeat(0)),
            Box::new(Broken),
        ]
    });
    let b = run.next_batch();
    let s = run.status(&b);
    assert_eq!(s.state, ModuleState::WaitingForTarget, "no target yet: {s:?}");
    assert!(
        s.reason.as_deref().unwrap().contains(&format!("unavailable on this kernel: {}", c::SYS_READ_LATENCY.name)),
        "{s:?}"
    );
    let src = s.sources.iter().find(|x| x.metric == c::SYS_READ_LATENCY.name).unwrap();
    assert_eq!(src.mechanism, None);
    assert!(src.detail.contains("invalid mem access"), "verifier text in the status: {}", src.detail);
    assert!(find(&b, c::SYS_READ_LATENCY.name).is_none(), "an unavailable metric is not exported");
    // The other probes of the module still count.
    let mut target = run.target(None);
    let file = run.file();
    target.run(&format!("pread {file} 10 4096")).unwrap();
    assert_eq!(run.preads(), 10);
    let broken = b.status.iter().find(|s| s.module == "broken").unwrap();
    assert_eq!(broken.state, ModuleState::Disabled);
    assert!(broken.reason.as_deref().unwrap().contains("cannot start"));
    let hb = |b: &Batch| match find(b, "heartbeat_total").unwrap().value {
        MetricValue::Counter(v) => v,
        _ => unreachable!(),
    };
    let first = hb(&b);
    assert!(hb(&run.next_batch()) > first, "the other module keeps collecting");
}

/// The fadvise probe replaced by one whose function probes sit on close's syscall function
/// while its exercise calls getppid(2): the shape of a ksys_* helper inlined on one build.
fn probes_with_a_silent_one() -> Vec<Probe> {
    fn empty() -> ktm::Result<ktm::insn::Program> {
        let mut a = ktm::insn::Asm::new();
        a.mov64(ktm::insn::R0, 0).exit();
        Ok(a.finish()?)
    }
    let func = ktm::programs::syscall_fn("close");
    let mut probes = ktm::programs::probes();
    probes[2] = Probe {
        plan: Plan {
            name: "ktm_fadvise".into(),
            alternatives: vec![
                Alternative::new(AttachPoint::fentry(&func, false), empty),
                Alternative::new(AttachPoint::kprobe_multi(&func, false), empty),
                Alternative::new(AttachPoint::kprobe(&func, false), empty),
                Alternative::new(AttachPoint::raw_tracepoint("sys_enter"), empty),
            ],
            exercise: Some(ktm::attach::Exercise::new("getppid", common::call_getppid)),
        },
        metrics: &[&c::FADVISE_CALLS],
    };
    probes
}

/// A function probe the self-test refused is named in the module's status, with what is
/// used instead; where no function probe works (this host), nothing is named.
#[test]
fn a_probe_that_never_fired_is_named_in_the_status() {
    if !common::privileged("a_probe_that_never_fired_is_named_in_the_status") {
        return;
    }
    let policy = Policy::from_env();
    let run = start("silent", |cfg| {
        vec![Box::new(IoMonitorModule::with(cfg, Roots::system(), policy).with_probes(probes_with_a_silent_one))]
    });
    let s = run.status(&run.next_batch());
    let reason = s.reason.clone().unwrap_or_default();
    let works = |m| common::mechanism_works(m, &policy);
    let func = ktm::programs::syscall_fn("close");
    let silent: Vec<String> = [
        ("fentry", ktm::attach::Mechanism::Fentry),
        ("kprobe.multi", ktm::attach::Mechanism::KprobeMulti),
        ("kprobe", ktm::attach::Mechanism::Kprobe),
    ]
    .into_iter()
    .filter(|&(_, m)| works(m))
    .map(|(kind, _)| format!("{kind}/{func}"))
    .collect();
    if silent.is_empty() {
        assert!(!reason.contains("never ran"), "{s:?}");
        common::matrix("status names a silent function probe", "none works here");
        return;
    }
    let used = if works(ktm::attach::Mechanism::RawTracepoint) {
        "raw_tracepoint/sys_enter is used".to_string()
    } else {
        "nothing measures it".to_string()
    };
    let expected = format!(
        "ktm_fadvise: {} attached but never ran on the measured path (inlined on this kernel?), so {used}",
        silent.join(", ")
    );
    assert!(reason.contains(&expected), "expected `{expected}` in {s:?}");
    common::matrix("status names a silent function probe", &silent.join(", "));
}
