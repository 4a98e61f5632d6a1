//! The soak (issue 12): the collector at a short interval for at least 10,000 collections
//! while its target churns: started, stopped, restarted in its cgroup, moved to a new cgroup,
//! killed with SIGKILL in the middle of its reads, with bursts of thousands of short-lived
//! threads (more alive at once than there are start-time slots, so slots collide and the
//! overflow hash `ktm_io_start` is used). A decoy beside it reads too and must never count.
//!
//! ```text
//! cargo bench --bench soak                                   # 10,000 collections at 2 ms
//! cargo bench --bench soak -- --collections 50000 --interval 1ms --threads 5000
//! ```
//!
//! Prints, after a warm-up cycle and at the end: open fds, RSS, the BPF programs, maps and
//! links the process holds (by id), perf events, the overflow hash's in-flight count
//! (`ktm_io_spilled`), its entries, the start-time slots still held, and whether the
//! counters agreed with what the target did in each last life. Every figure must come back
//! flat; after the collector stops, none of its ids may remain in the kernel. Needs root.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/kobj.rs"]
mod kobj;

use common::TestCgroup;
use ktm::collector::Collector;
use ktm::config::EbpfConfig;
use ktm::iomonitor::IoMonitorModule;
use ktm::metrics::{Batch, MetricValue};
use ktm::module::Module;
use ktm::programs::layout::{START_SLOTS, START_SLOT_SIZE};
use ktm::recorder::FnRecorder;
use ktm::sys::bpf;
use ktm::workload::Workload;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const COMM: &str = "banyand-soak";
const DECOY: &str = "soak-decoy";

type R<T> = Result<T, String>;

struct Opts {
    collections: u64,
    interval: Duration,
    threads: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs bench binaries without --bench: nothing to do there.
    if !args.iter().any(|a| a == "--bench") {
        println!("soak: a benchmark; run it with `cargo bench --bench soak`");
        return;
    }
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let opts = Opts {
        collections: get("--collections").map_or(10_000, |v| v.parse().expect("--collections N")),
        interval: get("--interval").map_or(Duration::from_millis(2), |v| {
            ktm::config::parse_duration(&v).unwrap_or_else(|e| panic!("--interval {v:?} {e}"))
        }),
        threads: get("--threads").map_or(4500, |v| v.parse().expect("--threads N")),
    };
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("soak: needs root (bpf, perf tracepoints, cgroup v2)");
        std::process::exit(1);
    }
    if let Err(e) = run(&opts) {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}

/// What the recorder saw last.
#[derive(Default, Clone, Debug)]
struct Latest {
    batches: u64,
    preads: u64,
    reads: u64,
    scope: String,
}

#[derive(Clone, Default)]
struct Shared(Arc<(Mutex<Latest>, Condvar)>);

impl Shared {
    fn record(&self, b: &Batch) {
        let hist = |name: &str| {
            b.metrics
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| match &m.value {
                    MetricValue::Histogram(h) => Some(h.count),
                    _ => None,
                })
                .unwrap_or(0)
        };
        let (lock, cv) = &*self.0;
        let mut l = lock.lock().unwrap();
        l.batches += 1;
        l.preads = hist(ktm::catalogue::SYS_PREAD_LATENCY.name);
        l.reads = hist(ktm::catalogue::SYS_READ_LATENCY.name);
        l.scope = b.status.iter().map(|s| s.scope.clone()).collect::<Vec<_>>().join("; ");
        cv.notify_all();
    }

    fn now(&self) -> Latest {
        self.0 .0.lock().unwrap().clone()
    }

    /// The state after `n` more batches: collected after anything done before the call.
    fn after(&self, n: u64) -> R<Latest> {
        let (lock, cv) = &*self.0;
        let mut l = lock.lock().unwrap();
        let want = l.batches + n;
        let deadline = Instant::now() + Duration::from_secs(20);
        while l.batches < want {
            let left = deadline.checked_duration_since(Instant::now()).ok_or("no batch within 20 s")?;
            l = cv.wait_timeout(l, left).unwrap().0;
        }
        Ok(l.clone())
    }

    /// Waits until the module's scope names `cgroup`.
    fn scoped(&self, cgroup: &std::path::Path) -> R<()> {
        let want = cgroup.display().to_string();
        let t = Instant::now();
        while !self.after(1)?.scope.contains(&want) {
            if t.elapsed() > Duration::from_secs(20) {
                return Err(format!("never scoped to {want}: {}", self.now().scope));
            }
        }
        Ok(())
    }
}

/// The iomonitor's maps the soak reads, opened by id.
struct Maps {
    spilled: OwnedFd,
    start: OwnedFd,
    slots: OwnedFd,
}

impl Maps {
    fn find(ids: &std::collections::BTreeSet<u32>) -> R<Maps> {
        let mut found = std::collections::HashMap::new();
        for &id in ids {
            let fd = bpf::map_fd_by_id(id).map_err(|e| e.to_string())?;
            let name = bpf::name_str(&bpf::map_info(fd.as_fd()).map_err(|e| e.to_string())?.name);
            found.insert(name, fd);
        }
        let mut take = |n: &str| found.remove(n).ok_or_else(|| format!("no map {n} among {ids:?}"));
        Ok(Maps { spilled: take("ktm_io_spilled")?, start: take("ktm_io_start")?, slots: take("ktm_io_slot")? })
    }

    fn spilled(&self) -> u64 {
        let mut v = [0u8; 8];
        // SAFETY: key u32, value u64, as the map was created.
        match unsafe { bpf::map_lookup(self.spilled.as_fd(), &0u32.to_ne_bytes(), &mut v) } {
            Ok(true) => u64::from_ne_bytes(v),
            _ => u64::MAX,
        }
    }

    fn hash_entries(&self) -> usize {
        let mut n = 0;
        let mut key: Option<[u8; 4]> = None;
        loop {
            let mut next = [0u8; 4];
            // SAFETY: keys are u32.
            match unsafe { bpf::map_next_key(self.start.as_fd(), key.as_ref().map(|k| &k[..]), &mut next) } {
                Ok(true) if n <= START_SLOTS as usize * 2 => {
                    n += 1;
                    key = Some(next);
                }
                _ => return n,
            }
        }
    }

    /// Gives every `every`-th start-time slot a fake owner, thread 1 (init, never in scope):
    /// as if another target thread were inside a read there, so target threads whose id maps
    /// to it spill into the overflow hash. Only while no target runs: a slot a real thread
    /// holds must not be overwritten.
    fn occupy(&self, every: u32) {
        let mut v = vec![0u8; START_SLOT_SIZE];
        v[..8].copy_from_slice(&1u64.to_ne_bytes());
        for i in (0..START_SLOTS).step_by(every as usize) {
            // SAFETY: key u32, value START_SLOT_SIZE bytes.
            let _ = unsafe { bpf::map_update(self.slots.as_fd(), &i.to_ne_bytes(), &v) };
        }
    }

    /// Frees the slots [`Maps::occupy`] took (no real thread can claim one while it is held).
    fn release(&self) {
        let mut v = vec![0u8; START_SLOT_SIZE];
        let zero = vec![0u8; START_SLOT_SIZE];
        for i in 0..START_SLOTS {
            // SAFETY: as above.
            let held = matches!(unsafe { bpf::map_lookup(self.slots.as_fd(), &i.to_ne_bytes(), &mut v) }, Ok(true));
            if held && v[..8] == 1u64.to_ne_bytes() {
                // SAFETY: as above.
                let _ = unsafe { bpf::map_update(self.slots.as_fd(), &i.to_ne_bytes(), &zero) };
            }
        }
    }

    /// Start-time slots whose owner word is set (a thread inside a read, or a dead one).
    fn slots_held(&self) -> usize {
        let mut v = vec![0u8; START_SLOT_SIZE];
        (0..START_SLOTS)
            .filter(|i| {
                // SAFETY: key u32, value START_SLOT_SIZE bytes.
                matches!(unsafe { bpf::map_lookup(self.slots.as_fd(), &i.to_ne_bytes(), &mut v) }, Ok(true))
                    && v[..8] != [0u8; 8]
            })
            .count()
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().split(' ').next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Figures {
    collections: u64,
    fds: usize,
    rss_kb: u64,
    progs: usize,
    maps: usize,
    links: usize,
    perf_events: usize,
    spilled: u64,
    hash_entries: usize,
    slots_held: usize,
}

fn figures(shared: &Shared, maps: &Maps) -> Figures {
    let h = kobj::held("self");
    Figures {
        collections: shared.now().batches,
        fds: h.fds,
        rss_kb: rss_kb(),
        progs: h.progs.len(),
        maps: h.maps.len(),
        links: h.links.len(),
        perf_events: h.perf_events,
        spilled: maps.spilled(),
        hash_entries: maps.hash_entries(),
        slots_held: maps.slots_held(),
    }
}

fn print_header() {
    println!(
        "| {:<22} | {:>11} | {:>4} | {:>8} | {:>5} | {:>4} | {:>5} | {:>4} | {:>9} | {:>7} | {:>10} |",
        "", "collections", "fds", "RSS KiB", "progs", "maps", "links", "perf", "in-flight", "hash", "slots held"
    );
    println!("|{}|", ["-"; 11].map(|_| "---").join("|"));
}

fn print_row(label: &str, f: &Figures) {
    println!(
        "| {:<22} | {:>11} | {:>4} | {:>8} | {:>5} | {:>4} | {:>5} | {:>4} | {:>9} | {:>7} | {:>10} |",
        label,
        f.collections,
        f.fds,
        f.rss_kb,
        f.progs,
        f.maps,
        f.links,
        f.perf_events,
        f.spilled,
        f.hash_entries,
        f.slots_held
    );
}

/// One life's agreement: what the target did, what was counted.
#[derive(Debug, Default, Clone, Copy)]
struct Agreement {
    preads_done: u64,
    preads_counted: u64,
    reads_done: u64,
    reads_counted: u64,
    /// read-family syscalls the kernel charged to the target (`syscr` of /proc/PID/io):
    /// the commanded ones and any the runtime made (glibc reads a sysfs file when threads
    /// first allocate).
    syscr: u64,
}

impl Agreement {
    /// Preads exactly as commanded; reads at least as commanded; and reads plus preads equal
    /// to the kernel's own tally of the target's read syscalls.
    fn agrees(&self) -> bool {
        self.preads_done == self.preads_counted
            && self.reads_counted >= self.reads_done
            && self.reads_counted + self.preads_counted == self.syscr
    }
}

/// `syscr` of /proc/PID/io: read-family syscalls of every thread the process ever had.
fn syscr(pid: u32) -> R<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).map_err(|e| format!("/proc/{pid}/io: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("syscr:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no syscr in /proc/{pid}/io"))
}

fn do_run(w: &mut Workload, cmd: &str) -> R<u64> {
    w.run(cmd).map_err(|e| e.to_string())?.parse().map_err(|e| format!("{cmd}: {e}"))
}

struct Churn {
    bin: std::path::PathBuf,
    file: String,
    threads: usize,
    shared: Shared,
    decoy: Workload,
    maps: Arc<Maps>,
    cycle: usize,
    rng: u64,
}

impl Churn {
    fn target(&self, cg: &TestCgroup) -> R<Workload> {
        Workload::spawn(&self.bin, COMM, Some(&cg.path)).map_err(|e| e.to_string())
    }

    fn run(&self, w: &mut Workload, cmd: &str) -> R<u64> {
        do_run(w, cmd)
    }

    fn jitter(&mut self, max_ms: u64) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        Duration::from_millis(1 + self.rng % max_ms)
    }

    /// Sends `cmd` and SIGKILLs the target `min_ms..max_ms` later; returns it, dead.
    fn kill_during(&mut self, mut t: Workload, cmd: &str, min_ms: u64, max_ms: u64) -> R<Workload> {
        let pid = t.pid() as i32;
        let cmd = cmd.to_string();
        let reader = std::thread::spawn(move || {
            let _ = t.run(&cmd);
            t
        });
        std::thread::sleep(Duration::from_millis(min_ms) + self.jitter(max_ms - min_ms));
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reader.join().map_err(|_| "reader thread panicked".to_string())
    }

    /// One cycle of churn; returns the agreement of the target's last life.
    fn cycle(&mut self) -> R<Agreement> {
        self.cycle += 1;
        let (file, n) = (self.file.clone(), self.threads);
        let cg_a = TestCgroup::new(&format!("soak{}a", self.cycle));
        // Started; reads; a burst of threads; stopped cleanly.
        let mut t = self.target(&cg_a)?;
        self.shared.scoped(&cg_a.path)?;
        self.run(&mut t, &format!("pread {file} 200 4096"))?;
        self.run(&mut t, &format!("threads {file} {n} 2 4096"))?;
        do_run(&mut self.decoy, &format!("pread {file} 100 4096"))?;
        let _ = t.run("exit");
        drop(t);
        // From here on half the start-time slots are taken: collisions, so the overflow hash
        // carries half the reads (and the SIGKILL below catches some of them in it).
        self.maps.occupy(2);
        // Restarted in the same cgroup.
        let mut t = self.target(&cg_a)?;
        self.run(&mut t, &format!("pread {file} 100 4096"))?;
        // Moved to a new cgroup; the old one removed.
        let cg_b = TestCgroup::new(&format!("soak{}b", self.cycle));
        t.move_to(&cg_b.path).map_err(|e| e.to_string())?;
        drop(cg_a);
        self.shared.scoped(&cg_b.path)?;
        self.run(&mut t, &format!("pread {file} 50 4096"))?;
        // Killed with SIGKILL in the middle of a long run of reads (a few ms into about 0.5 s
        // of preads), then, restarted, in the middle of a burst of threaded reads (once the
        // threads exist, which takes about 100 ms for 4,500).
        let t = self.kill_during(t, &format!("pread {file} 2000000 4096"), 2, 40)?;
        drop(t);
        let t = self.target(&cg_b)?;
        let t = self.kill_during(t, &format!("threads {file} {n} 500 4096"), 100, 400)?;
        drop(t);
        // The last life, restarted in the new cgroup: the counters must agree exactly.
        let mut t = self.target(&cg_b)?;
        // A first thread makes glibc size its malloc arenas, which reads
        // /sys/devices/system/cpu/online once per process: a read the target really does,
        // made here before the baseline so that the life's count is exactly what follows.
        self.run(&mut t, &format!("threads {file} 1 0 4096"))?;
        let before = self.shared.after(2)?;
        let syscr_before = syscr(t.pid())?;
        let (k, m) = (300, 120);
        self.run(&mut t, &format!("pread {file} {k} 4096"))?; // replies bytes
        let mut done = k;
        done += self.run(&mut t, &format!("threads {file} {n} 1 4096"))?; // replies preads
        self.run(&mut t, &format!("read {file} {m} 4096"))?;
        do_run(&mut self.decoy, &format!("pread {file} 77 4096"))?;
        let after = self.shared.after(2)?;
        let syscr = syscr(t.pid())? - syscr_before;
        let _ = t.run("exit");
        drop(t);
        drop(cg_b);
        self.maps.release();
        Ok(Agreement {
            preads_done: done,
            preads_counted: after.preads - before.preads,
            reads_done: m,
            reads_counted: after.reads - before.reads,
            syscr,
        })
    }
}

fn run(opts: &Opts) -> R<()> {
    let before = kobj::held("self");
    let shared = Shared::default();
    let sink = shared.clone();
    let cfg = EbpfConfig { comm_prefix: COMM.into(), ..EbpfConfig::default() };
    let modules: Vec<Box<dyn Module>> = vec![Box::new(IoMonitorModule::new(cfg))];
    let collector =
        Collector::start_with(opts.interval, modules, Box::new(FnRecorder::new(move |b: Batch| sink.record(&b))));
    shared.after(1)?;
    let ours = kobj::held("self").since(&before);
    let maps = Arc::new(Maps::find(&ours.maps)?);
    // The overflow hash's peak in-flight count, sampled throughout.
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (maps, peak, sampling) = (Arc::clone(&maps), Arc::clone(&peak), Arc::clone(&sampling));
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let v = maps.spilled();
                if v != u64::MAX {
                    peak.fetch_max(v, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let dir = common::scratch();
    let file = dir.path().join("data");
    std::fs::write(&file, vec![5u8; 4096]).map_err(|e| e.to_string())?;
    let bin = common::ktm_bin();
    let decoy = Workload::spawn(&bin, DECOY, None).map_err(|e| e.to_string())?;
    let mut churn = Churn {
        bin,
        file: file.display().to_string(),
        threads: opts.threads,
        shared: shared.clone(),
        decoy,
        maps: Arc::clone(&maps),
        cycle: 0,
        rng: 0x9e37_79b9_7f4a_7c15,
    };
    println!(
        "soak: collector every {:?}, target `{COMM}` churned, {} threads per burst ({} start-time slots), until {} collections",
        opts.interval, opts.threads, START_SLOTS, opts.collections
    );
    println!("KTM objects: {ours}");
    print_header();
    print_row("after start", &figures(&shared, &maps));
    let warm = churn.cycle()?;
    let start = figures(&shared, &maps);
    print_row("start (after 1 cycle)", &start);
    let t0 = Instant::now();
    let mut agreed = u64::from(warm.agrees());
    let mut last = warm;
    let mut cycles = 1u64;
    let mut next_row = start.collections + opts.collections / 4;
    while shared.now().batches < start.collections + opts.collections {
        last = churn.cycle()?;
        cycles += 1;
        agreed += u64::from(last.agrees());
        if !last.agrees() {
            eprintln!("soak: cycle {cycles}: the counters disagree with the target: {last:?}");
        }
        if shared.now().batches >= next_row {
            print_row(&format!("cycle {cycles}"), &figures(&shared, &maps));
            next_row += opts.collections / 4;
        }
    }
    let elapsed = t0.elapsed();
    let end = figures(&shared, &maps);
    print_row("end", &end);
    println!(
        "{} collections in {:.1} s ({:.2} ms each), {cycles} churn cycles, up to {} threads started",
        end.collections - start.collections,
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / (end.collections - start.collections) as f64,
        cycles as usize * 3 * opts.threads
    );
    println!(
        "last life: target made {} preads and {} reads (kernel's syscr: {}); counted {} and {}; lives in agreement: {agreed}/{cycles}",
        last.preads_done, last.reads_done, last.syscr, last.preads_counted, last.reads_counted
    );
    let flat = |a: &Figures, b: &Figures| {
        a.fds == b.fds
            && a.progs == b.progs
            && a.maps == b.maps
            && a.links == b.links
            && a.perf_events == b.perf_events
            && b.spilled == 0
            && b.hash_entries == 0
            && b.slots_held == 0
    };
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "overflow hash: peak in-flight count seen during the bursts {peak} (slots collided), {} at the end",
        end.spilled
    );
    drop(churn);
    drop(maps);
    collector.stop();
    let left = kobj::still_in_kernel(&ours);
    println!(
        "after Collector::stop: {} of the collector's ids left in the kernel ({left})",
        left.progs.len() + left.maps.len() + left.links.len()
    );
    let rss_growth = end.rss_kb as f64 / start.rss_kb.max(1) as f64;
    if !flat(&start, &end) || agreed != cycles || !left.is_empty() || rss_growth > 1.25 || peak == 0 {
        return Err(format!(
            "NOT FLAT: start {start:?}, end {end:?}, agreed {agreed}/{cycles}, RSS x{rss_growth:.2}, left {left}, hash peak {peak}"
        ));
    }
    println!("soak: flat (RSS x{rss_growth:.2}), every life counted exactly, nothing left after stop");
    Ok(())
}
