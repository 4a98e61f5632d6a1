//! Group `collection` (table 4): one snapshot, one collection of the module as the
//! collector makes it, RSS and the kernel memory of the maps and programs.

use super::harness::{bpf_fds, median, status_kb, R};
use super::json::J;
use super::opts::Opts;
use super::scopes::OTHER_COMM;
use super::table::{dist, f1, Table};
use ktm::attach::Policy;
use ktm::iomonitor::{IoMonitor, Scope, Snapshot};
use std::time::Instant;

/// The comm of the child the collection group's module finds as its target.
const TARGET_COMM: &str = "ktmbenchtarget";

pub struct Collection {
    pub table: String,
    pub json: J,
    pub snapshot_ms: f64,
    pub push_ms: f64,
    pub rss_kb: u64,
}

pub fn collection(opts: &Opts, policy: &Policy, child_rss_kb: Option<u64>) -> R<Collection> {
    let mon = IoMonitor::start(policy)?;
    mon.set_scope(&Scope::Comm(OTHER_COMM.into()))?;
    for _ in 0..100 {
        mon.snapshot()?;
    }
    let mut v = Vec::with_capacity(opts.snapshots);
    for _ in 0..opts.snapshots {
        let s = Instant::now();
        let snap: Snapshot = mon.snapshot()?;
        v.push(s.elapsed().as_nanos() as f64);
        std::hint::black_box(snap);
    }
    let mut sorted = v.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    let rss = status_kb("VmRSS").unwrap_or(0);
    let hwm = status_kb("VmHWM").unwrap_or(0);
    let fds = bpf_fds();
    let mut t = Table::new("4. Collection", &["measure", "value"]);
    t.row(vec!["IoMonitor::snapshot, median (us)".into(), f1(median(&v) / 1e3)]);
    t.row(vec!["IoMonitor::snapshot, p99 (us)".into(), f1(p99 / 1e3)]);
    t.row(vec!["snapshots timed".into(), v.len().to_string()]);
    if let Some(kb) = child_rss_kb {
        t.row(vec!["RSS, re-exec child running only the iomonitor (KiB)".into(), kb.to_string()]);
    }
    t.row(vec!["RSS, this bench process with the iomonitor (KiB)".into(), rss.to_string()]);
    t.row(vec!["VmHWM, this bench process (KiB)".into(), hwm.to_string()]);
    let mut maps_total = 0;
    let mut progs_total = 0;
    let mut mj = Vec::new();
    for f in &fds {
        if f.is_map {
            maps_total += f.memlock;
            // SAFETY: the fd is open for as long as `mon` lives, which outlives this use.
            let info = ktm::sys::bpf::map_info(unsafe { std::os::fd::BorrowedFd::borrow_raw(f.fd) });
            let name = info.map(|i| ktm::sys::bpf::name_str(&i.name)).unwrap_or_default();
            t.row(vec![format!("map {name} (type {}, id {}) memlock (bytes)", f.kind, f.id), f.memlock.to_string()]);
            mj.push(J::obj().with("name", name).with("type", f.kind).with("memlock", f.memlock));
        } else {
            progs_total += f.memlock;
        }
    }
    t.row(vec!["maps' kernel memory, sum of memlock (KiB)".into(), f1(maps_total as f64 / 1024.0)]);
    t.row(vec![
        format!(
            "programs' kernel memory, sum of memlock over {} programs (KiB)",
            fds.iter().filter(|f| !f.is_map).count()
        ),
        f1(progs_total as f64 / 1024.0),
    ]);
    let json = J::obj()
        .with("snapshot_us", dist(&v.iter().map(|x| x / 1e3).collect::<Vec<_>>()))
        .with("snapshot_p99_us", p99 / 1e3)
        .with("rss_kb_bench", rss)
        .with("hwm_kb_bench", hwm)
        .with("rss_kb_child", child_rss_kb)
        .with("maps_memlock_bytes", maps_total)
        .with("programs_memlock_bytes", progs_total)
        .with("maps", J::Arr(mj));
    drop(mon);
    // Target found (a child serving workload commands, as BanyanDB would be): a health check
    // per collection. No target: a discovery scan of /proc per collection.
    let _target = ktm::workload::Workload::spawn(std::path::Path::new(env!("CARGO_BIN_EXE_ktm")), TARGET_COMM, None)?;
    let mut json = json;
    let mut push_ms: f64 = 0.0;
    for (label, prefix) in [("target found", TARGET_COMM), ("no target", OTHER_COMM)] {
        let (push, state) = collect_and_push(opts, policy, prefix)?;
        let mut sorted = push.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
        t.row(vec![
            format!("collect + status + push, {label} ({state}), median / p99 (us)"),
            format!("{} / {}", f1(median(&push) / 1e3), f1(p99 / 1e3)),
        ]);
        json = json.with(
            &format!("collect_push_{}", label.replace(' ', "_")),
            J::obj()
                .with("us", dist(&push.iter().map(|x| x / 1e3).collect::<Vec<_>>()))
                .with("p99_us", p99 / 1e3)
                .with("state", state),
        );
        push_ms = push_ms.max(median(&push) / 1e6);
    }
    Ok(Collection { table: t.render(), json, snapshot_ms: median(&v) / 1e6, push_ms, rss_kb: rss })
}

/// One collection as the collector thread makes it every interval: the module's refresh
/// (health check of the target, or discovery while there is none), the snapshot turned into
/// metrics, the status, and a push to a recorder, with the target found by `prefix`.
/// Returns the times (ns) and the module's state.
fn collect_and_push(opts: &Opts, policy: &Policy, prefix: &str) -> R<(Vec<f64>, String)> {
    use ktm::iomonitor::IoMonitorModule;
    use ktm::module::Module;
    use ktm::recorder::FlightRecorder;
    let cfg = ktm::config::EbpfConfig { cgroup_path: None, comm_prefix: prefix.into() };
    let mut module = IoMonitorModule::with(cfg, ktm::discovery::Roots::system(), *policy);
    module.start()?;
    let mut recorder = ktm::recorder::MemoryRecorder::new(4);
    let mut once = |module: &mut IoMonitorModule| {
        let metrics = module.collect();
        let status = vec![module.status()];
        recorder.record(ktm::metrics::Batch { timestamp: std::time::SystemTime::now(), metrics, status });
    };
    for _ in 0..10 {
        once(&mut module);
    }
    let state = format!("{:?}", module.status().state);
    let mut v = Vec::with_capacity(opts.snapshots / 10);
    for _ in 0..(opts.snapshots / 10).max(100) {
        let s = Instant::now();
        once(&mut module);
        v.push(s.elapsed().as_nanos() as f64);
    }
    module.stop();
    Ok((v, state))
}
