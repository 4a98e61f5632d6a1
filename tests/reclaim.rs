//! Reclaim metrics, where the kernel lets us cause reclaim: a cgroup v2 memory controller
//! (the QEMU guests; this host's memory controller is on cgroup v1) and a small machine for
//! direct reclaim (the guests).

mod common;

use common::TestCgroup;
use ktm::attach::Policy;
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

fn meminfo(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap()
}

#[test]
fn memcg_reclaim_counts_the_target_only() {
    if !runnable("memcg_reclaim_counts_the_target_only", memory_controller(), "no cgroup v2 memory controller") {
        return;
    }
    let monitor = IoMonitor::start(&Policy::from_env()).unwrap();
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
    let src = monitor.sources().iter().find(|s| s.metric == "ktm_memory_lru_pages_scanned_total").unwrap();
    let cell = format!("{} pass", src.mechanism.unwrap_or("unavailable"));
    common::matrix("ktm_memory_lru_pages_scanned_total", &cell);
    common::matrix("ktm_memory_lru_pages_reclaimed_total", &cell);
}

#[test]
fn direct_reclaim_of_the_target_is_counted() {
    let small = meminfo("MemTotal:") < 2 << 20;
    if !runnable("direct_reclaim_of_the_target_is_counted", small, "the machine is too large to force direct reclaim") {
        return;
    }
    let monitor = IoMonitor::start(&Policy::from_env()).unwrap();
    let tcg = TestCgroup::new("drc");
    let mut target = Workload::spawn(&common::ktm_bin(), "banyand-drc", Some(&tcg.path)).unwrap();
    monitor.set_scope(&Scope::Cgroup(tcg.id())).unwrap();
    let dir = common::scratch();
    let file = dir.path().join("big");
    // Fill the page cache, then make the target allocate more than is free: the kernel must
    // reclaim page cache, and the allocating target reclaims directly when kswapd lags.
    common::cold_file(&file, (meminfo("MemAvailable:") as usize * 1024) * 3 / 4);
    // The smallest gap between the low and min watermarks: an allocation burst reaches the
    // min watermark (where the allocator reclaims directly) before kswapd catches up.
    let tunables = [("/proc/sys/vm/watermark_scale_factor", "1".to_string())];
    let saved: Vec<(&str, Option<String>)> =
        tunables.iter().map(|(p, _)| (*p, std::fs::read_to_string(p).ok())).collect();
    for (p, v) in &tunables {
        std::fs::write(p, v).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    let mut entered = 0;
    for round in 0..8 {
        target.run(&format!("readall {} 1048576", file.display())).unwrap();
        // Each round asks for more of what is available (85 % .. 97 %): only page cache is
        // reclaimable here (no swap), so even 97 % fits, and a larger burst outruns kswapd.
        let mib = meminfo("MemAvailable:") / 1024 * (85 + 2 * round.min(6)) / 100;
        target.run(&format!("alloc {mib}")).unwrap();
        entered = monitor.snapshot().unwrap().direct_reclaim;
        eprintln!("round {round}: allocated {mib} MiB, direct reclaim entries {entered}");
        if entered > 0 {
            break;
        }
    }
    for (p, v) in saved.iter().rev() {
        if let Some(v) = v {
            let _ = std::fs::write(p, v.trim());
        }
    }
    assert!(entered > 0, "the target never entered direct reclaim");
    let src = monitor.sources().iter().find(|s| s.metric == "ktm_memory_direct_reclaim_processes").unwrap();
    common::matrix("ktm_memory_direct_reclaim_processes", &format!("{} pass", src.mechanism.unwrap_or("unavailable")));
}
