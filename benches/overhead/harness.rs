//! The measuring machinery: workload loops, CPU pinning, cgroup placement, interleaved
//! rounds, and a few readings of /proc.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::Instant;

/// The bench's result type.
pub type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Bytes per read and pread call.
pub const CHUNK: usize = 4096;
/// Size of the file the read loop walks through (then rewinds with lseek).
pub const READ_FILE: usize = 1 << 20;

/// CLOCK_MONOTONIC in ns: comparable across processes, unlike `Instant`.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> R<()> {
    // SAFETY: cpu_set_t is plain bits; sched_setaffinity(0) affects the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("sched_setaffinity(cpu {cpu}): {}", std::io::Error::last_os_error()).into());
        }
    }
    Ok(())
}

/// Median of samples (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// The loops the workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// pread64 of 4 KiB at offset 0 of a cached 4 KiB file.
    Pread,
    /// read of 4 KiB chunks walking a cached 1 MiB file (one lseek per 256 reads).
    Read,
    /// getppid(2): a syscall KTM does not observe.
    Getppid,
    /// pwrite of 4 KiB at offset 0 of an empty file, then ftruncate to 0: one page added to
    /// and one removed from the page cache per call (no disk I/O), for the page-cache add
    /// and delete tracepoints. Far slower than the others: it runs [`Op::calls`] calls.
    Evict,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Pread, Op::Read, Op::Getppid];
    /// The workload group's loops: [`Op::ALL`] and the page-cache churn of [`Op::Evict`].
    pub const WORKLOAD: [Op; 4] = [Op::Pread, Op::Read, Op::Getppid, Op::Evict];

    /// Calls of this op in a loop sized for `calls` calls of a cached read.
    pub fn calls(self, calls: usize) -> usize {
        match self {
            Op::Evict => (calls / 20).max(100),
            _ => calls,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Pread => "pread",
            Op::Read => "read",
            Op::Getppid => "getppid",
            Op::Evict => "evict",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The files the loops read, on a real filesystem so the page-cache tracepoints fire. Each
/// of the two threads of the two-thread workload has its own files, so that they share no
/// page-cache folio and the only line they can contend on is the one under test.
pub struct Fixture {
    dir: tempfile::TempDir,
    pub pread: [PathBuf; 2],
    pub read: [PathBuf; 2],
    pub evict: [PathBuf; 2],
}

impl Fixture {
    pub fn new() -> R<Fixture> {
        let dir = tempfile::Builder::new().prefix("ktm-overhead").tempdir()?;
        let pread = [dir.path().join("pread0.dat"), dir.path().join("pread1.dat")];
        let read = [dir.path().join("read0.dat"), dir.path().join("read1.dat")];
        let evict = [dir.path().join("evict0.dat"), dir.path().join("evict1.dat")];
        for p in &evict {
            std::fs::write(p, [])?;
        }
        for p in &pread {
            std::fs::write(p, vec![0x5au8; CHUNK])?;
            std::fs::read(p)?; // into the page cache
        }
        for p in &read {
            std::fs::write(p, vec![0xa5u8; READ_FILE])?;
            std::fs::read(p)?;
        }
        Ok(Fixture { dir, pread, read, evict })
    }

    /// The filesystem type holding the files (statfs f_type, named when known).
    pub fn fs_type(&self) -> String {
        let c = std::ffi::CString::new(self.dir.path().as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: statfs writes into st; c is NUL-terminated.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return "unknown".into();
        }
        match st.f_type as u64 {
            0xEF53 => "ext4".into(),
            0x0102_1994 => "tmpfs (no filemap tracepoints: results unrepresentative)".into(),
            0x5846_5342 => "xfs".into(),
            0x9123_683E => "btrfs".into(),
            t => format!("0x{t:x}"),
        }
    }
}

/// One thread's open files and buffer.
pub struct Loops {
    pread: File,
    read: File,
    evict: File,
    buf: Vec<u8>,
    chunk: usize,
}

impl Loops {
    /// Thread `i`'s loops (0 or 1).
    pub fn open(fx: &Fixture, i: usize) -> R<Loops> {
        Ok(Loops {
            pread: File::open(&fx.pread[i])?,
            read: File::open(&fx.read[i])?,
            evict: std::fs::OpenOptions::new().write(true).open(&fx.evict[i])?,
            buf: vec![0u8; CHUNK],
            chunk: 0,
        })
    }

    /// Runs `n` calls of `op`; returns ns per call.
    #[inline(never)]
    pub fn run(&mut self, op: Op, n: usize) -> f64 {
        let buf = self.buf.as_mut_ptr().cast::<libc::c_void>();
        let t = Instant::now();
        match op {
            Op::Pread => {
                let fd = self.pread.as_raw_fd();
                for _ in 0..n {
                    // SAFETY: buf holds CHUNK bytes.
                    unsafe { libc::pread(fd, buf, CHUNK, 0) };
                }
            }
            Op::Read => {
                let fd = self.read.as_raw_fd();
                for _ in 0..n {
                    // SAFETY: buf holds CHUNK bytes.
                    unsafe { libc::read(fd, buf, CHUNK) };
                    self.chunk += 1;
                    if self.chunk == READ_FILE / CHUNK {
                        self.chunk = 0;
                        // SAFETY: plain lseek on our fd.
                        unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
                    }
                }
            }
            Op::Getppid => {
                for _ in 0..n {
                    // SAFETY: no arguments; the raw syscall, not a libc cache.
                    unsafe { libc::syscall(libc::SYS_getppid) };
                }
            }
            Op::Evict => {
                let fd = self.evict.as_raw_fd();
                for _ in 0..n {
                    // SAFETY: buf holds CHUNK bytes; plain ftruncate on our fd.
                    unsafe {
                        libc::pwrite(fd, buf, CHUNK, 0);
                        libc::ftruncate(fd, 0);
                    }
                }
            }
        }
        t.elapsed().as_nanos() as f64 / n as f64
    }
}

/// Samples keyed by (row, column).
#[derive(Default, Clone)]
pub struct Samples(pub BTreeMap<(String, String), Vec<f64>>);

impl Samples {
    pub fn push(&mut self, row: &str, col: &str, x: f64) {
        self.0.entry((row.to_string(), col.to_string())).or_default().push(x);
    }

    /// Median of a cell (NaN when empty).
    pub fn median(&self, row: &str, col: &str) -> f64 {
        self.get(row, col).map_or(f64::NAN, median)
    }

    pub fn get(&self, row: &str, col: &str) -> Option<&[f64]> {
        self.0.get(&(row.to_string(), col.to_string())).map(|v| v.as_slice())
    }
}

/// The loops and the samples they produce (one group's at a time).
pub struct Bench {
    pub calls: usize,
    /// CPUs for the two-thread workload; the main thread runs on `cpus[1]`.
    pub cpus: [usize; 2],
    pub fixture: Fixture,
    loops: Loops,
    pub samples: Samples,
    pub noise: Vec<Noise>,
    /// Time left to wait for a quiet host before rounds, over the whole run.
    pub quiet_budget: std::time::Duration,
    /// Time spent waiting so far.
    pub waited: std::time::Duration,
    /// Noisy rounds a group may discard and measure again.
    pub max_discards: usize,
}

impl Bench {
    pub fn new(calls: usize, cpus: [usize; 2], fixture: Fixture) -> R<Bench> {
        let loops = Loops::open(&fixture, 1)?;
        Ok(Bench {
            calls,
            cpus,
            fixture,
            loops,
            samples: Samples::default(),
            noise: Vec::new(),
            quiet_budget: std::time::Duration::ZERO,
            waited: std::time::Duration::ZERO,
            max_discards: usize::MAX,
        })
    }

    /// Calls of a warm-up before each timed loop.
    pub fn warmup(&self) -> usize {
        (self.calls / 20).max(1000)
    }

    pub fn push(&mut self, row: &str, col: &str, x: f64) {
        self.samples.push(row, col, x);
    }

    /// Waits, within the run's budget, until no other process holds a BPF program and the
    /// rest of the host used under [`NOISY_ROUND`] CPUs over the last half second.
    pub fn wait_quiet(&mut self) {
        let step = std::time::Duration::from_millis(500);
        while self.quiet_budget >= step {
            let cpu = CpuUse::now();
            std::thread::sleep(step);
            let (others, _) = cpu.others_since();
            if others <= NOISY_ROUND && foreign_programs() == 0 {
                return;
            }
            self.quiet_budget -= step;
            self.waited += step;
        }
    }

    /// Takes this group's samples out, leaving none for the next group.
    pub fn take(&mut self) -> Samples {
        std::mem::take(&mut self.samples)
    }

    /// Times each op on this thread; returns the calls made (warm-up included).
    pub fn measure(&mut self, row: &str, ops: &[Op]) -> usize {
        let mut made = 0;
        for &op in ops {
            let (warm, n) = (op.calls(self.warmup()), op.calls(self.calls));
            self.loops.run(op, warm);
            let ns = self.loops.run(op, n);
            made += warm + n;
            self.push(row, op.name(), ns);
        }
        made
    }

    /// Runs each op untimed (for BPF statistics); returns the calls made.
    pub fn exercise(&mut self, ops: &[Op]) -> usize {
        ops.iter()
            .map(|&op| {
                let n = op.calls(self.calls);
                self.loops.run(op, n);
                n
            })
            .sum()
    }

    /// Runs `op` on two threads at once, one per CPU; records the mean of their ns per call
    /// under column "<op> 2T".
    pub fn measure2(&mut self, row: &str, op: Op) -> R<()> {
        let ns = self.two_threads(op)?;
        self.push(row, &format!("{} 2T", op.name()), ns);
        Ok(())
    }

    /// Two threads, pinned to the two CPUs, each doing `calls` of `op` after a barrier.
    pub fn two_threads(&self, op: Op) -> R<f64> {
        let barrier = Barrier::new(2);
        let (fx, n, warm) = (&self.fixture, self.calls, self.warmup());
        let results: Vec<Result<f64, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .cpus
                .iter()
                .enumerate()
                .map(|(i, &cpu)| {
                    let barrier = &barrier;
                    s.spawn(move || -> Result<f64, String> {
                        let ready = Loops::open(fx, i).and_then(|l| pin_to(cpu).map(|_| l)).map_err(|e| e.to_string());
                        // Both threads reach the barrier, even one that failed to get ready.
                        barrier.wait();
                        let mut l = ready?;
                        l.run(op, warm);
                        Ok(l.run(op, n))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into()))).collect()
        });
        let mut sum = 0.0;
        for r in &results {
            sum += r.as_ref().map_err(|e| e.clone())?;
        }
        Ok(sum / results.len() as f64)
    }
}

/// CPU time of the whole host and of this process, to tell how busy the rest of the host was.
#[derive(Clone, Copy)]
pub struct CpuUse {
    at: Instant,
    /// Jiffies: busy (user+nice+system+irq+softirq), steal, this process (self + children).
    busy: u64,
    steal: u64,
    mine: u64,
}

impl CpuUse {
    pub fn now() -> CpuUse {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let f: Vec<u64> =
            stat.lines().next().unwrap_or("").split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the ")" that ends comm: utime is the 12th, stime, cutime, cstime follow.
        let rest: Vec<u64> =
            me.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        let mine = (11..15).map(|i| rest.get(i).copied().unwrap_or(0)).sum();
        CpuUse { at: Instant::now(), busy: g(0) + g(1) + g(2) + g(5) + g(6), steal: g(7), mine }
    }

    /// Since `self`: CPUs' worth of busy time spent outside this process, and of steal time.
    pub fn others_since(&self) -> (f64, f64) {
        let now = CpuUse::now();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let others = now.busy.saturating_sub(self.busy).saturating_sub(now.mine.saturating_sub(self.mine));
        (others as f64 / hz / secs, now.steal.saturating_sub(self.steal) as f64 / hz / secs)
    }
}

/// How quiet the host was during a group's kept rounds (averages over them).
pub struct Noise {
    pub group: String,
    /// CPUs' worth of busy time of other processes.
    pub others: f64,
    /// CPUs' worth of steal time.
    pub steal: f64,
    /// Most BPF programs of other processes loaded during a kept round.
    pub foreign: usize,
    /// Rounds measured again because they were noisy.
    pub discarded: usize,
}

/// BPF programs loaded on the host that this process holds no fd of.
pub fn foreign_programs() -> usize {
    let mine: Vec<u64> = bpf_fds().iter().filter(|f| !f.is_map).map(|f| f.id).collect();
    host_prog_ids().iter().filter(|id| !mine.contains(&(**id as u64))).count()
}

/// A configuration measured once per round: sets up, measures, tears down.
pub type Config<'a> = (&'static str, Box<dyn FnMut(&mut Bench) -> R<()> + 'a>);

/// A round during which other processes kept this much CPU busy (in CPUs), or loaded BPF
/// programs, is measured again: on a shared host another job's syscalls and programs would
/// otherwise be in the figures.
pub const NOISY_ROUND: f64 = 0.25;

/// Runs every configuration once per round, starting each round one configuration later, so
/// slow drift of the host spreads over all of them. A noisy round is discarded and run
/// again, up to `min(rounds, bench.max_discards)` extra times; the figures say how many were.
pub fn interleave(bench: &mut Bench, group: &str, rounds: usize, configs: &mut [Config<'_>]) -> R<()> {
    let k = configs.len();
    let (mut kept, mut discarded) = (0, 0);
    let (mut others_sum, mut steal_sum, mut foreign_max) = (0.0, 0.0, 0);
    let mut r = 0;
    while kept < rounds {
        eprint!("  {group}: round {}/{rounds} ({discarded} discarded)   \r", kept + 1);
        bench.wait_quiet();
        let before = bench.samples.clone();
        let cpu = CpuUse::now();
        let foreign0 = foreign_programs();
        for i in 0..k {
            let (name, f) = &mut configs[(i + r) % k];
            f(bench).map_err(|e| format!("{group}/{name}: {e}"))?;
        }
        let foreign = foreign0.max(foreign_programs());
        let (others, steal) = cpu.others_since();
        r += 1;
        if (others > NOISY_ROUND || foreign > 0) && discarded < bench.max_discards.min(rounds) {
            discarded += 1;
            bench.samples = before;
            continue;
        }
        kept += 1;
        others_sum += others;
        steal_sum += steal;
        foreign_max = foreign_max.max(foreign);
    }
    eprintln!();
    bench.noise.push(Noise {
        group: group.to_string(),
        others: others_sum / kept.max(1) as f64,
        steal: steal_sum / kept.max(1) as f64,
        foreign: foreign_max,
        discarded,
    });
    Ok(())
}

/// The cgroup v2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_root() -> R<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(dir) = left.split_whitespace().nth(4) {
                return Ok(PathBuf::from(dir.replace("\\040", " ")));
            }
        }
    }
    Err("no cgroup2 mount in /proc/self/mountinfo".into())
}

/// The cgroup id `bpf_get_current_cgroup_id` reports for tasks in `dir`: its inode.
pub fn cgroup_id(dir: &Path) -> R<u64> {
    Ok(std::fs::metadata(dir)?.ino())
}

/// This process moved into a cgroup of its own, with an empty sibling that stands for
/// another pod's cgroup; moved back and both removed on drop.
pub struct CgroupPlace {
    home: PathBuf,
    pub mine: PathBuf,
    pub other: PathBuf,
}

impl CgroupPlace {
    pub fn enter() -> R<CgroupPlace> {
        let root = cgroup2_root()?;
        let cg = std::fs::read_to_string("/proc/self/cgroup")?;
        let rel = cg.lines().find_map(|l| l.strip_prefix("0::")).ok_or("no cgroup v2 line in /proc/self/cgroup")?;
        let home = root.join(rel.trim_start_matches('/'));
        let pid = std::process::id();
        let mine = root.join(format!("ktm-overhead-{pid}-target"));
        let other = root.join(format!("ktm-overhead-{pid}-other"));
        std::fs::create_dir(&mine).map_err(|e| format!("mkdir {}: {e}", mine.display()))?;
        let place = CgroupPlace { home, mine, other };
        std::fs::create_dir(&place.other).map_err(|e| format!("mkdir {}: {e}", place.other.display()))?;
        std::fs::write(place.mine.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("move into {}: {e}", place.mine.display()))?;
        Ok(place)
    }
}

impl Drop for CgroupPlace {
    fn drop(&mut self) {
        let _ = std::fs::write(self.home.join("cgroup.procs"), std::process::id().to_string());
        let _ = std::fs::remove_dir(&self.mine);
        let _ = std::fs::remove_dir(&self.other);
    }
}

/// A `/proc/self/status` field in kB (VmRSS, VmHWM).
pub fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One BPF object fd of this process, from /proc/self/fdinfo.
#[derive(Debug, Clone)]
pub struct BpfFd {
    pub fd: i32,
    pub is_map: bool,
    pub kind: u64,
    pub memlock: u64,
    pub id: u64,
}

/// Every map and program fd this process holds, with its memlock.
pub fn bpf_fds() -> Vec<BpfFd> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else { return out };
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
        let (is_map, kind) = match (field("map_type:"), field("prog_type:")) {
            (Some(t), _) => (true, t),
            (None, Some(t)) => (false, t),
            _ => continue,
        };
        let id = if is_map { field("map_id:") } else { field("prog_id:") };
        out.push(BpfFd { fd, is_map, kind, memlock: field("memlock:").unwrap_or(0), id: id.unwrap_or(0) });
    }
    out.sort_by_key(|b| b.fd);
    out
}

/// Ids of every BPF program loaded on the host (BPF_PROG_GET_NEXT_ID).
pub fn host_prog_ids() -> Vec<u32> {
    #[repr(C)]
    struct Attr {
        start_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut ids = Vec::new();
    let mut id = 0;
    loop {
        let mut a = Attr { start_id: id, next_id: 0, open_flags: 0 };
        // SAFETY: the GET_NEXT_ID attribute holds no pointers.
        let r = unsafe { libc::syscall(libc::SYS_bpf, 11, &mut a as *mut Attr, std::mem::size_of::<Attr>()) };
        if r != 0 || ids.len() > 100_000 {
            return ids;
        }
        id = a.next_id;
        ids.push(id);
    }
}

/// First line of a /proc or /sys file, trimmed.
pub fn read_line(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.lines().next().unwrap_or("").trim().to_string()).unwrap_or_default()
}
