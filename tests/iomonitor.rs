//! Privileged tests of the iomonitor: a real target in its own cgroup, a decoy doing the
//! same I/O in another cgroup under another comm, and exact counts.

mod common;

use common::TestCgroup;
use ktm::attach::Policy;
use ktm::catalogue as c;
use ktm::iomonitor::{IoMonitor, Scope, Snapshot};
use ktm::workload::{Workload, ADVICE};
use std::time::Instant;

struct Setup {
    monitor: IoMonitor,
    target: Workload,
    decoy: Workload,
    _cgroups: (TestCgroup, TestCgroup),
    dir: tempfile::TempDir,
}

/// The comm prefix of this binary's targets: unique to the process, so that comm mode counts
/// no other process of the host (a stand-in BanyanDB of the podman step is named `banyand`).
fn target_prefix() -> String {
    format!("bd{}-", std::process::id())
}

fn target_comm() -> String {
    format!("{}test", target_prefix())
}

fn setup(name: &str) -> Option<Setup> {
    setup_with(name, ktm::programs::probes())
}

fn setup_with(name: &str, probes: Vec<ktm::programs::Probe>) -> Option<Setup> {
    if !common::privileged(name) {
        return None;
    }
    let monitor = IoMonitor::start_with(probes, &Policy::from_env()).unwrap();
    // Once per binary, what each plan attached and why the ones before it failed: the
    // guest's log then explains each matrix cell.
    static REPORTED: std::sync::Once = std::sync::Once::new();
    REPORTED.call_once(|| monitor.reports().for_each(|r| println!("plan {r}")));
    let (tcg, dcg) = (TestCgroup::new(&format!("{name}-t")), TestCgroup::new(&format!("{name}-d")));
    let target = Workload::spawn(&common::ktm_bin(), &target_comm(), Some(&tcg.path)).unwrap();
    let decoy = Workload::spawn(&common::ktm_bin(), "decoy", Some(&dcg.path)).unwrap();
    monitor.set_scope(&Scope::Cgroup(tcg.id())).unwrap();
    Some(Setup { monitor, target, decoy, _cgroups: (tcg, dcg), dir: common::scratch() })
}

impl Setup {
    fn snap(&self) -> Snapshot {
        self.monitor.snapshot().unwrap()
    }

    fn file(&self, name: &str, bytes: usize) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, vec![1u8; bytes]).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Runs `cmd` in both; returns the target's wall time for it.
    fn both(&mut self, cmd: &str) -> u64 {
        self.decoy.run(cmd).unwrap();
        let t = Instant::now();
        self.target.run(cmd).unwrap();
        let wall = t.elapsed().as_nanos() as u64;
        self.decoy.run(cmd).unwrap();
        wall
    }

    fn available(&self, metric: &str) -> bool {
        self.monitor.sources().iter().any(|s| s.metric == metric && s.mechanism.is_some())
    }

    fn source(&self, metric: &str) -> String {
        let s = self.monitor.sources().iter().find(|s| s.metric == metric).unwrap();
        s.mechanism.map_or_else(|| format!("unavailable: {}", s.detail), str::to_string)
    }
}

fn check_hist(h: &ktm::iomonitor::Latency, n: u64, wall_ns: u64, what: &str) {
    // The count is the sum of the log2 slots: exactly one slot per call.
    assert_eq!(h.count, n, "{what}: count");
    assert!(h.sum_ns > 0 && h.sum_ns <= wall_ns, "{what}: sum {} ns vs wall {wall_ns} ns", h.sum_ns);
}

#[test]
fn read_and_pread_latency_count_exactly() {
    let Some(mut s) = setup("latency") else { return };
    let file = s.file("data", 16 * 4096);
    s.both(&format!("pread {file} 1 4096")); // warm the cache
    let before = s.snap();
    const N: u64 = 300;
    const M: u64 = 200;
    let pread_wall = s.both(&format!("pread {file} {N} 4096"));
    let read_wall = s.both(&format!("read {file} {M} 4096"));
    let after = s.snap();
    let delta = |a: &ktm::iomonitor::Latency, b: &ktm::iomonitor::Latency| ktm::iomonitor::Latency {
        count: a.count - b.count,
        sum_ns: a.sum_ns - b.sum_ns,
        slots: a.slots.iter().zip(&b.slots).map(|(x, y)| x - y).collect(),
    };
    check_hist(&delta(&after.pread, &before.pread), N, pread_wall, "pread");
    check_hist(&delta(&after.read, &before.read), M, read_wall, "read");
    common::matrix(c::SYS_PREAD_LATENCY.name, &format!("{} pass", s.source(c::SYS_PREAD_LATENCY.name)));
    common::matrix(c::SYS_READ_LATENCY.name, &format!("{} pass", s.source(c::SYS_READ_LATENCY.name)));
}

/// The start time of a read normally sits in the thread's array slot; when another thread
/// of the target holds that slot, it goes to the hash. Occupying the target's slot from
/// here drives every call down the hash path, which must count just as exactly and leave
/// the other thread's slot alone; freed again, the slot is claimed and released per call.
#[test]
fn latency_start_times_fall_back_to_the_hash_when_the_slot_is_taken() {
    use ktm::programs::layout::{START_SLOTS, START_SLOT_SIZE};
    let Some(mut s) = setup("latency-slots") else { return };
    let file = s.file("data", 4096);
    s.both(&format!("pread {file} 1 4096"));
    // The workload serves commands on its main thread: its thread id is its pid.
    let key = (s.target.pid() & (START_SLOTS - 1)).to_ne_bytes();
    let slot = |tid: u64, ts: u64| {
        let mut v = vec![0u8; START_SLOT_SIZE];
        v[..8].copy_from_slice(&tid.to_ne_bytes());
        v[8..16].copy_from_slice(&ts.to_ne_bytes());
        v
    };
    let slots = s.monitor.start_slot_map();
    // Thread id 1 (init) is never in scope, so nothing will free the slot but us.
    slots.update_raw(&key, &slot(1, 12345)).unwrap();
    const N: u64 = 100;
    let before = s.snap();
    s.target.run(&format!("pread {file} {N} 4096")).unwrap();
    let mid = s.snap();
    assert_eq!(mid.pread.count - before.pread.count, N, "pread count with the slot taken");
    assert_eq!(slots.lookup_raw(&key).unwrap().unwrap(), slot(1, 12345), "another thread's slot was overwritten");
    assert_eq!(s.monitor.start_spilled().unwrap(), 0, "every start time taken out of the hash is uncounted");

    slots.update_raw(&key, &slot(0, 0)).unwrap();
    s.target.run(&format!("pread {file} {N} 4096")).unwrap();
    let after = s.snap();
    assert_eq!(after.pread.count - mid.pread.count, N, "pread count through the slot");
    let v = slots.lookup_raw(&key).unwrap().unwrap();
    assert_eq!(&v[..8], &0u64.to_ne_bytes(), "the slot is released at exit");
    assert_ne!(&v[8..16], &0u64.to_ne_bytes(), "the slot held a start time");
}

#[test]
fn fadvise_counts_each_advice_calls_and_successes() {
    let Some(mut s) = setup("fadvise") else { return };
    let file = s.file("data", 4096);
    let before = s.snap();
    for (i, (name, _)) in ADVICE.iter().enumerate() {
        s.both(&format!("fadvise {file} {name} {}", i + 1));
    }
    s.both("fadvise - normal 3"); // EBADF: calls, not successes
    s.both("fadvise - 99 2"); // unknown advice on a bad fd: "other"
    let after = s.snap();
    for (i, (name, _)) in ADVICE.iter().enumerate() {
        let extra = if *name == "normal" { 3 } else { 0 };
        assert_eq!(after.fadvise_advice[i] - before.fadvise_advice[i], i as u64 + 1 + extra, "advice {name}");
    }
    assert_eq!(after.fadvise_advice[6] - before.fadvise_advice[6], 2, "advice other");
    assert_eq!(after.fadvise_calls - before.fadvise_calls, 21 + 3 + 2, "calls");
    assert_eq!(after.fadvise_success - before.fadvise_success, 21, "successes");
    let src = s.source(c::FADVISE_CALLS.name);
    for m in [c::FADVISE_CALLS.name, c::FADVISE_ADVICE.name, c::FADVISE_SUCCESS.name] {
        common::matrix(m, &format!("{src} pass"));
    }
}

#[test]
fn page_cache_misses_and_adds_match_mincore() {
    let Some(mut s) = setup("pagecache") else { return };
    // Metadata the filesystem reads for the target goes through the block device's own
    // page cache: those are the target's adds too, so they are counted as resident growth,
    // on a filesystem whose device the test can read (see DeviceScratch).
    let fs = common::DeviceScratch::new();
    let cold = fs.path().join("cold");
    common::cold_file(&cold, 1 << 20);
    let cold_s = cold.to_str().unwrap().to_string();
    let dev_before = fs.device_pages();
    let before = s.snap();
    s.target.run(&format!("readall {cold_s} 65536")).unwrap();
    let after = s.snap();
    let dev_grown = fs.device_pages() - dev_before;
    eprintln!("read: metadata pages of {} grew by {dev_grown}", fs.dev.display());
    let grown = common::resident_pages(&cold) as u64 + dev_grown;
    // A metric is asserted where it is available; where the kernel (or the switches that
    // disable fentry, kprobes or tracepoints) leaves it no attach point, it must read zero
    // and say why.
    let available = |m: &str, value: u64| {
        let ok = s.available(m);
        if !ok {
            assert_eq!(value, 0, "{m} is unavailable yet counted");
            let why = s.source(m);
            assert!(why.contains("does not exist") || why.contains("disabled by"), "{m}: {why}");
        }
        ok
    };
    let misses = available(c::CACHE_MISSES.name, after.cache_misses);
    let attempts = available(c::CACHE_READ_ATTEMPTS.name, after.cache_read_attempts);
    let adds = available(c::PAGE_CACHE_ADDS.name, after.page_cache_adds);
    // Where adds are switched off, the growth checks below compare zero with zero.
    let grown = if adds { grown } else { 0 };
    assert!(!misses || after.cache_misses - before.cache_misses >= 1, "a cold read misses");
    assert!(!attempts || after.cache_read_attempts - before.cache_read_attempts >= 1, "a read looks the cache up");
    assert_eq!(after.page_cache_adds - before.page_cache_adds, grown, "adds == pages that became resident");

    // The decoy reading the same (now cached) file, and the target reading it again: no
    // misses, no adds; the target's lookups count.
    let before = s.snap();
    s.both(&format!("readall {cold_s} 65536"));
    let after = s.snap();
    assert_eq!(after.cache_misses, before.cache_misses, "a fully cached file misses nothing");
    assert_eq!(after.page_cache_adds, before.page_cache_adds);
    assert!(!attempts || after.cache_read_attempts > before.cache_read_attempts);

    // Buffered writes add pages and miss nothing.
    let written = fs.path().join("written");
    let dev_before = fs.device_pages();
    let before = s.snap();
    s.target.run(&format!("write {} {}", written.display(), 256 * 1024)).unwrap();
    let after = s.snap();
    let file_pages = common::resident_pages(&written) as u64;
    assert_eq!(file_pages, 64);
    let dev_grown = fs.device_pages() - dev_before;
    eprintln!("write: metadata pages of {} grew by {dev_grown}", fs.dev.display());
    let grown = if adds { file_pages + dev_grown } else { 0 };
    assert_eq!(after.page_cache_adds - before.page_cache_adds, grown, "write adds == pages that became resident");
    assert_eq!(after.cache_misses, before.cache_misses, "writes do not miss");
    for m in [c::CACHE_READ_ATTEMPTS.name, c::CACHE_MISSES.name, c::PAGE_CACHE_ADDS.name] {
        let cell = if s.available(m) { format!("{} pass", s.source(m)) } else { "unavailable".to_string() };
        common::matrix(m, &cell);
    }
}

#[test]
fn comm_mode_counts_by_prefix_only() {
    let Some(mut s) = setup("comm") else { return };
    s.monitor.set_scope(&Scope::Comm(target_prefix())).unwrap();
    let file = s.file("data", 4096);
    // A decoy in the target's own cgroup, with another comm: comm mode must not count it.
    let mut intruder = Workload::spawn(&common::ktm_bin(), "bash", Some(&s._cgroups.0.path)).unwrap();
    let before = s.snap();
    s.both(&format!("pread {file} 40 4096"));
    intruder.run(&format!("pread {file} 40 4096")).unwrap();
    let after = s.snap();
    assert_eq!(after.pread.count - before.pread.count, 40);
    // Off: nothing counts.
    s.monitor.set_scope(&Scope::Off).unwrap();
    s.both(&format!("pread {file} 40 4096"));
    assert_eq!(s.snap().pread.count, after.pread.count);
}

/// Bytes are the sum of positive return values: full reads, short reads at end of file, a
/// read at end of file (0) and failed calls (negative) included in the calls, in the bytes
/// only as far as they returned data. The decoy does the same and must count nothing.
#[test]
fn read_and_pread_bytes_count_exactly_short_reads_included() {
    let Some(mut s) = setup("bytes") else { return };
    bytes(&mut s, "");
}

/// The probes with only their raw tracepoint alternatives: raw `sys_exit` (return value in
/// `args[1]`) for bytes, the raw delete tracepoint (folio order read at BTF offsets) for
/// deletes. No policy switch reaches them where classic tracepoints work.
fn raw_only() -> Vec<ktm::programs::Probe> {
    let mut probes = ktm::programs::probes();
    for p in &mut probes {
        p.plan.alternatives.retain(|a| a.point.mechanism() == ktm::attach::Mechanism::RawTracepoint);
    }
    probes
}

#[test]
fn raw_tracepoints_count_bytes_and_deletes_exactly() {
    let Some(mut s) = setup_with("raw", raw_only()) else { return };
    bytes(&mut s, "raw: ");
    deletes(&mut s, "raw: ");
}

/// Known bytes (see the test above); matrix rows prefixed by `row`.
fn bytes(s: &mut Setup, row: &str) {
    let file = s.file("data", 10_000);
    s.both(&format!("pread {file} 1 4096")); // warm the cache
    let before = s.snap();
    // read in 4096 chunks: 4096 + 4096 + 1808 + 0 (end of file, then a rewind), twice.
    s.both(&format!("read {file} 8 4096"));
    // pread at 8192: 1808 each; at 20000 (past the end): 0 each; on a bad fd: -EBADF.
    s.both(&format!("pread {file} 5 4096 8192"));
    s.both(&format!("pread {file} 3 4096 20000"));
    s.both("pread - 2 4096");
    let after = s.snap();
    for (m, hist) in [(c::SYS_READ_BYTES.name, "read"), (c::SYS_PREAD_BYTES.name, "pread")] {
        assert_eq!(s.available(m), s.available(&format!("ktm_sys_{hist}_latency_seconds")), "{m}: one probe");
    }
    if s.available(c::SYS_READ_BYTES.name) {
        assert_eq!(after.read.count - before.read.count, 8, "read calls");
        assert_eq!(after.read_bytes - before.read_bytes, 2 * (4096 + 4096 + 1808), "read bytes");
    }
    if s.available(c::SYS_PREAD_BYTES.name) {
        assert_eq!(after.pread.count - before.pread.count, 5 + 3 + 2, "pread calls");
        assert_eq!(after.pread_bytes - before.pread_bytes, 5 * 1808, "pread bytes");
    }
    for m in [c::SYS_READ_BYTES.name, c::SYS_PREAD_BYTES.name] {
        let cell = if s.available(m) { format!("{} pass", s.source(m)) } else { "unavailable".to_string() };
        common::matrix(&format!("{row}{m}"), &cell);
    }
}

/// Pages the target drops with fadvise(DONTNEED) (a range, then the whole file) and with
/// ftruncate are its deletes, exactly the pages mincore no longer shows; the decoy dropping
/// its own file at the same time counts nothing. Files on a real block filesystem
/// (DONTNEED does nothing on tmpfs), written and flushed before, so every page is clean.
#[test]
fn page_cache_deletes_match_mincore() {
    let Some(mut s) = setup("deletes") else { return };
    deletes(&mut s, "");
}

/// Known deletes (see the test above); matrix rows prefixed by `row`.
fn deletes(s: &mut Setup, row: &str) {
    let fs = common::DeviceScratch::new();
    const PAGES: usize = 32;
    let (t, d) = (fs.path().join("target"), fs.path().join("decoy"));
    for p in [&t, &d] {
        common::cold_file(p, PAGES * 4096);
    }
    let (ts, ds) = (t.to_str().unwrap().to_string(), d.to_str().unwrap().to_string());
    let resident = |p: &std::path::Path| common::resident_pages(p) as u64;
    let available = s.available(c::PAGE_CACHE_DELETES.name);
    let cache_both = |s: &mut Setup| {
        s.target.run(&format!("readall {ts} 65536")).unwrap();
        s.decoy.run(&format!("readall {ds} 65536")).unwrap();
        assert!(resident(&t) >= PAGES as u64, "the target's file is cached");
        assert!(resident(&d) >= PAGES as u64, "the decoy's file is cached");
    };
    // The decoy drops its file between the target's steps; then the target drops `how`.
    let step = |s: &mut Setup, target_cmd: String, decoy_cmd: String, what: &str| {
        let (r0, before) = (resident(&t), s.snap());
        s.decoy.run(&decoy_cmd).unwrap();
        s.target.run(&target_cmd).unwrap();
        s.decoy.run(&decoy_cmd).unwrap();
        let (r1, after) = (resident(&t), s.snap());
        let dropped = r0 - r1;
        eprintln!("{what}: resident {r0} -> {r1}, deletes {}", after.page_cache_deletes - before.page_cache_deletes);
        let expected = if available { dropped } else { 0 };
        assert_eq!(after.page_cache_deletes - before.page_cache_deletes, expected, "{what}: deletes == pages dropped");
        dropped
    };

    cache_both(s);
    // Pages 8..24 (a large folio only partly inside the range may stay: mincore says).
    step(s, format!("fadvise {ts} dontneed 1 32768 65536"), format!("fadvise {ds} dontneed 1"), "DONTNEED range");
    let dropped = step(s, format!("fadvise {ts} dontneed 1"), format!("fadvise {ds} dontneed 1"), "DONTNEED all");
    assert_eq!(resident(&t), 0, "DONTNEED of the whole clean file leaves nothing");
    assert!(dropped > 0);

    cache_both(s);
    let dropped = step(s, format!("truncate {ts} {}", 4 * 4096), format!("truncate {ds} 0"), "ftruncate to 4 pages");
    assert!(dropped >= (PAGES - 4) as u64, "ftruncate drops every page past the new end: {dropped}");
    let cell = if available { format!("{} pass", s.source(c::PAGE_CACHE_DELETES.name)) } else { "unavailable".into() };
    common::matrix(&format!("{row}{}", c::PAGE_CACHE_DELETES.name), &cell);
}

/// `ksys_fadvise64_64` alone: arm64 6.12 inlines it into `__arm64_sys_fadvise64_64` (the
/// out-of-line copy serves only the 32-bit compat path), so a fexit there attached, reported
/// `fexit` and counted nothing before the self-test. Now it is refused there as silent, and
/// wherever it is trusted it counts every call exactly.
#[test]
fn fadvise_helper_is_trusted_only_where_it_fires() {
    let ksys = ktm::attach::AttachPoint::fentry("ksys_fadvise64_64", true);
    let mut probes = ktm::programs::probes();
    for p in probes.iter_mut().filter(|p| p.plan.name == "ktm_fadvise") {
        p.plan.alternatives.retain(|a| a.point == ksys);
        assert_eq!(p.plan.alternatives.len(), 1, "the fadvise plan has a fexit on {ksys}");
    }
    let Some(mut s) = setup_with("fadvise_ksys", probes) else { return };
    let report = s.monitor.reports().find(|r| r.name == "ktm_fadvise").unwrap().clone();
    println!("{report}");
    let file = s.file("data", 4096);
    let before = s.snap();
    s.both(&format!("fadvise {file} normal 5"));
    let calls = s.snap().fadvise_calls - before.fadvise_calls;
    let cell = if report.attached.is_some() {
        assert_eq!(calls, 5, "trusted, so it must count: {report}");
        "fexit fires, 5 of 5 counted".to_string()
    } else if !report.silent.is_empty() {
        assert_eq!(calls, 0);
        "refused: attached but never ran (inlined)".to_string()
    } else {
        "unavailable".to_string()
    };
    // Measured when arm64 was first tried: this build inlines it.
    if std::env::var("KTM_KERNEL").as_deref() == Ok("arm64-6.12")
        && Policy::from_env().forbids(ksys.mechanism()).is_none()
    {
        assert_eq!(report.silent, vec![ksys.clone()], "arm64 6.12 inlines ksys_fadvise64_64: {report}");
    }
    common::matrix("fexit ksys_fadvise64_64 alone (self-test)", &cell);
}

/// The self-test drives each function probe's path through the monitor's own programs (a
/// thread of this process, admitted by its comm for the moment): every probe attached by a
/// function probe is checked, and not one of the exercise's events is left in the counters.
#[test]
fn the_self_test_checks_every_function_probe_and_leaves_nothing_counted() {
    if !common::privileged("the_self_test_checks_every_function_probe_and_leaves_nothing_counted") {
        return;
    }
    let (n0, _) = ktm::attach::self_test_time();
    let monitor = IoMonitor::start(&Policy::from_env()).unwrap();
    let checked = ktm::attach::self_test_time().0 - n0;
    // Only a plan with an exercise can be checked: the follow probes' paths (fork, exit) are
    // not driven (on kprobe columns they attach by kprobe and stay unchecked by design).
    let exercised: Vec<String> =
        ktm::programs::probes().into_iter().filter(|p| p.plan.exercise.is_some()).map(|p| p.plan.name).collect();
    let by_function: Vec<String> = monitor
        .reports()
        .filter(|r| exercised.contains(&r.name))
        .filter(|r| r.attached.as_ref().is_some_and(|p| ktm::attach::needs_check(p.mechanism())))
        .inspect(|r| assert!(r.unchecked.is_empty(), "{r}"))
        .map(|r| r.name.clone())
        .collect();
    // At least one check per such probe (more where a plan fell back past a silent one and its
    // canaries checked the next, or where another test of this binary started a monitor
    // meanwhile: the count is the process's).
    assert!(checked >= by_function.len() as u64, "{checked} checks for {by_function:?}");
    for m in monitor.snapshot().unwrap().metrics() {
        match &m.value {
            ktm::metrics::MetricValue::Counter(v) => assert_eq!(*v, 0, "{} {:?}", m.name, m.labels),
            ktm::metrics::MetricValue::Histogram(h) => assert_eq!((h.count, h.sum), (0, 0.0), "{}", m.name),
            other => panic!("{}: {other:?}", m.name),
        }
    }
    common::matrix(
        "self-test by the programs themselves",
        &if by_function.is_empty() {
            "no function probe attached here".to_string()
        } else {
            format!("{} probes checked, counters 0 after", by_function.len())
        },
    );
}

/// Where the kernel has vmlinux BTF and is 5.11 or newer (`bpf_get_current_task_btf`), fentry
/// and fexit programs read the cgroup id for their scope test through BTF-typed loads; the
/// exact counts of every other test here are taken with it wherever fentry attaches.
#[test]
fn fentry_programs_read_the_cgroup_id_through_btf_where_the_kernel_allows() {
    let how = ktm::programs::fentry_cgroup_read();
    let version = ktm::attach::features::kernel_version().expect("uname release");
    if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() && version >= (5, 11) {
        assert_eq!(how, "BTF-typed loads", "Linux {version:?}");
    } else {
        assert_eq!(how, "bpf_get_current_cgroup_id()", "Linux {version:?}");
    }
    common::matrix("fentry/fexit scope test reads the cgroup id by", how);
}
