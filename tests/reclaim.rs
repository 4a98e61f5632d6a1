//! Reclaim metrics, where the kernel lets us cause reclaim: a cgroup v2 memory controller
//! (the QEMU guests; this host's memory controller is on cgroup v1) and a small machine for
//! direct reclaim (the guests).

mod common;

use common::TestCgroup;
use ktm::attach::Policy;
use ktm::catalogue as c;
use ktm::iomonitor::{IoMonitor, Scope};
use ktm::workload::Workload;

fn memory_controller() -> bool {
    common::cgroup2_mount()
        .and_then(|m| std::fs::read_to_string(m.join("cgroup.subtree_control")).ok())
        .is_some_and(|s| s.split_whitespace().any(|c| c == "memory"))
}

/// Runs only in the QEMU guests unless the host has what it needs; in a guest, missing
/// support is a failure.
fn runnable(test: &str, ok: bool, why: &str) -> bool {
    if !common::privileged(test) {
        return false;
    }
    if ok {
        return true;
    }
    assert!(std::env::var_os("KTM_IN_QEMU").is_none(), "{test}: {why} in the QEMU guest");
    eprintln!("SKIP {test}: {why} here; this test runs in the QEMU guests (.ci/qemu)");
    false
}

/// True when the run's policy switched off every mechanism that feeds `metrics` (a CI
/// variant such as `KTM_DISABLE_TRACEPOINT=1`): they must then read zero and say why.
fn switched_off(monitor: &IoMonitor, metrics: &[&str]) -> bool {
    let snap = monitor.snapshot().unwrap();
    let mut off = false;
    for &m in metrics {
        let src = monitor.sources().iter().find(|s| s.metric == m).unwrap();
        if src.mechanism.is_none() {
            assert!(src.detail.contains("disabled by"), "{m} unavailable: {}", src.detail);
            assert_eq!((snap.lru_scanned, snap.lru_reclaimed, snap.direct_reclaim), (0, 0, 0), "{m} counted");
            common::matrix(m, "unavailable");
            off = true;
        }
    }
    off
}

/// No transparent huge pages for this process and every workload it spawns (the flag is
/// inherited across fork and exec): with them, the filler's and the target's anonymous memory
/// came in 2 MiB folios, and on arm64 6.12 the OOM killer took the filler and then the test in
/// 3 of 4 runs. The guests also boot with `transparent_hugepage=never`; this holds wherever
/// the test runs.
fn no_huge_pages() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_THP_DISABLE): {}", std::io::Error::last_os_error());
}

fn meminfo(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap()
}

#[test]
fn memcg_reclaim_counts_the_target_only() {
    if !runnable("memcg_reclaim_counts_the_target_only", memory_controller(), "no cgroup v2 memory controller") {
        return;
    }
    no_huge_pages();
    let monitor = IoMonitor::start(&Policy::from_env()).unwrap();
    if switched_off(&monitor, &[c::MEMORY_LRU_PAGES_SCANNED.name, c::MEMORY_LRU_PAGES_RECLAIMED.name]) {
        return;
    }
    let (tcg, dcg) = (TestCgroup::new("rclt"), TestCgroup::new("rcld"));
    for cg in [&tcg, &dcg] {
        std::fs::write(cg.path.join("memory.max"), (16u64 << 20).to_string()).unwrap();
    }
    let mut target = Workload::spawn(&common::ktm_bin(), "banyand-rcl", Some(&tcg.path)).unwrap();
    let mut decoy = Workload::spawn(&common::ktm_bin(), "decoy", Some(&dcg.path)).unwrap();
    monitor.set_scope(&Scope::Cgroup(tcg.id())).unwrap();
    let dir = common::scratch();
    let (f1, f2) = (dir.path().join("one"), dir.path().join("two"));
    common::cold_file(&f1, 64 << 20);
    common::cold_file(&f2, 64 << 20);

    let before = monitor.snapshot().unwrap();
    decoy.run(&format!("readall {} 65536", f1.display())).unwrap();
    let after_decoy = monitor.snapshot().unwrap();
    assert_eq!(
        (after_decoy.lru_scanned, after_decoy.lru_reclaimed),
        (before.lru_scanned, before.lru_reclaimed),
        "decoy's reclaim counted"
    );
    target.run(&format!("readall {} 65536", f2.display())).unwrap();
    let after = monitor.snapshot().unwrap();
    let (scanned, reclaimed) = (after.lru_scanned - before.lru_scanned, after.lru_reclaimed - before.lru_reclaimed);
    // 64 MiB through a 16 MiB limit: at least 48 MiB must have been reclaimed.
    assert!(reclaimed >= (48 << 20) / 4096, "reclaimed {reclaimed} pages");
    assert!(scanned >= reclaimed, "scanned {scanned} < reclaimed {reclaimed}");
    let src = monitor.sources().iter().find(|s| s.metric == c::MEMORY_LRU_PAGES_SCANNED.name).unwrap();
    let cell = format!("{} pass", src.mechanism.unwrap_or("unavailable"));
    common::matrix(c::MEMORY_LRU_PAGES_SCANNED.name, &cell);
    common::matrix(c::MEMORY_LRU_PAGES_RECLAIMED.name, &cell);
}

#[test]
fn direct_reclaim_of_the_target_is_counted() {
    let small = meminfo("MemTotal:") < 2 << 20;
    if !runnable("direct_reclaim_of_the_target_is_counted", small, "the machine is too large to force direct reclaim") {
        return;
    }
    no_huge_pages();
    let monitor = IoMonitor::start(&Policy::from_env()).unwrap();
    if switched_off(&monitor, &[c::MEMORY_DIRECT_RECLAIM_BEGIN.name]) {
        return;
    }
    let tcg = TestCgroup::new("drc");
    let mut target = Workload::spawn(&common::ktm_bin(), "banyand-drc", Some(&tcg.path)).unwrap();
    monitor.set_scope(&Scope::Cgroup(tcg.id())).unwrap();
    // A filler outside the target's cgroup holds nearly all available memory as anonymous
    // pages, which nothing can reclaim without swap: kswapd has almost nothing to free, so the
    // target's next allocation falls below the min watermark and must reclaim directly. If
    // that frees too little, the OOM killer takes the filler (oom_score_adj 1000), not us.
    let mut filler = Workload::spawn(&common::ktm_bin(), "filler", None).unwrap();
    std::fs::write(format!("/proc/{}/oom_score_adj", filler.pid()), "1000").unwrap();
    std::fs::write(format!("/proc/{}/oom_score_adj", target.pid()), "-1000").unwrap();
    // Nor this test process. The target's allocation can reach the OOM killer a second time
    // just after the killed filler's memory was reaped, before it retries (seen on 6.1 and
    // 7.2 guests): that second kill then took this test, or, with nothing left to kill, the
    // kernel panicked "System is deadlocked on memory". Two idle spares are its victims.
    std::fs::write("/proc/self/oom_score_adj", "-1000").unwrap();
    let _spares: Vec<Workload> = (0..2)
        .map(|i| {
            let spare = Workload::spawn(&common::ktm_bin(), &format!("spare{i}"), None).unwrap();
            std::fs::write(format!("/proc/{}/oom_score_adj", spare.pid()), "1000").unwrap();
            spare
        })
        .collect();
    let hold = (meminfo("MemAvailable:") / 1024).saturating_sub(96);
    filler.run(&format!("hold {hold}")).unwrap();
    let before = monitor.snapshot().unwrap().direct_reclaim;
    assert_eq!(before, 0, "the filler's reclaim is not the target's");
    target.run("alloc 192").unwrap();
    let entered = monitor.snapshot().unwrap().direct_reclaim;
    eprintln!("filler holds {hold} MiB; the target allocated 192 MiB: direct reclaim entries {entered}");
    drop(filler);
    assert!(entered > 0, "the target never entered direct reclaim");
    let src = monitor.sources().iter().find(|s| s.metric == c::MEMORY_DIRECT_RECLAIM_BEGIN.name).unwrap();
    common::matrix(c::MEMORY_DIRECT_RECLAIM_BEGIN.name, &format!("{} pass", src.mechanism.unwrap_or("unavailable")));
}
