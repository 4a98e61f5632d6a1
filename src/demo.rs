//! `ktm demo`: KTM against a built-in workload, so a newcomer sees every metric move.

use crate::collector::{Collector, Options};
use crate::config::EbpfConfig;
use crate::iomonitor::IoMonitorModule;
use crate::recorder::MemoryRecorder;
use crate::workload::{Workload, ADVICE};
use crate::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The demo child's comm: it matches the default prefix `banyand`.
pub const DEMO_COMM: &str = "banyand-demo";

/// A cgroup v2 directory of the demo's own, removed on drop.
struct DemoCgroup(PathBuf);

impl DemoCgroup {
    fn create() -> Option<DemoCgroup> {
        let mount = crate::discovery::find_cgroup2(&crate::discovery::Roots::system()).ok()?.mount_point;
        let path = mount.join(format!("ktm-demo-{}", std::process::id()));
        std::fs::create_dir(&path).ok()?;
        Some(DemoCgroup(path))
    }
}

impl Drop for DemoCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The memory limit the demo puts on its workload, so that reading `BIG_FILE` bytes makes
/// the workload's own reclaim run (the LRU counters move).
pub const MEMORY_LIMIT: u64 = 24 << 20;
/// The file the workload reads each interval, twice the limit.
const BIG_FILE: usize = 48 << 20;

/// Where the demo limited its workload's memory, or why it could not.
enum MemoryLimit {
    /// `memory.max` of the demo's cgroup v2 directory.
    V2,
    /// A cgroup v1 memory directory of the demo's own, removed on drop.
    V1(PathBuf),
    /// No memory controller the demo can use, and why.
    None(String),
}

impl MemoryLimit {
    /// Limits the workload `pid` (already in `cgroup`, if there is one) to [`MEMORY_LIMIT`]:
    /// in the cgroup v2 directory when the memory controller is enabled there, else in a
    /// cgroup v1 memory directory of its own (hybrid hosts keep memory on v1).
    fn apply(cgroup: Option<&DemoCgroup>, pid: u32) -> MemoryLimit {
        let mut why = Vec::new();
        match cgroup {
            Some(cg) if cg.0.join("memory.max").exists() => {
                match std::fs::write(cg.0.join("memory.max"), MEMORY_LIMIT.to_string()) {
                    Ok(()) => return MemoryLimit::V2,
                    Err(e) => why.push(format!("cannot write {}: {e}", cg.0.join("memory.max").display())),
                }
            }
            Some(_) => why.push("the cgroup v2 memory controller is not enabled for the demo's cgroup".into()),
            None => why.push("no cgroup v2 directory".into()),
        }
        let v1 = std::path::Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let dir = v1.join(format!("ktm-demo-{}", std::process::id()));
            let made = std::fs::create_dir(&dir)
                .and_then(|_| std::fs::write(dir.join("memory.limit_in_bytes"), MEMORY_LIMIT.to_string()))
                .and_then(|_| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
            match made {
                Ok(()) => return MemoryLimit::V1(dir),
                Err(e) => {
                    let _ = std::fs::remove_dir(&dir);
                    why.push(format!("cannot limit memory in {}: {e}", dir.display()));
                }
            }
        } else {
            why.push("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory".into());
        }
        MemoryLimit::None(why.join("; "))
    }

    fn describe(&self) -> String {
        let mib = MEMORY_LIMIT >> 20;
        match self {
            MemoryLimit::V2 => format!("memory limited to {mib} MiB (cgroup v2 memory.max)"),
            MemoryLimit::V1(dir) => format!("memory limited to {mib} MiB (cgroup v1 {})", dir.display()),
            MemoryLimit::None(why) => {
                format!("no memory limit ({why}): the LRU reclaim counters stay 0 unless the machine itself runs short")
            }
        }
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        if let MemoryLimit::V1(dir) = self {
            // The workload is killed before this is dropped; its pages stay charged a moment.
            for _ in 0..50 {
                if std::fs::remove_dir(&*dir).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Waits for batch number `n` (counted since start), giving up at `timeout` or as soon as
/// `stop` is set; true when the batch came.
fn wait_batch(recorder: &MemoryRecorder, n: u64, timeout: Duration, stop: &AtomicBool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        if recorder.wait_for(n, Duration::from_millis(50)) {
            return true;
        }
    }
    false
}

/// Runs the demo for `intervals` collection intervals of length `interval`, printing each
/// pushed batch as Prometheus text on stdout and progress on stderr.
///
/// Setting `stop` (the `ktm` command does on SIGINT/SIGTERM) ends it within ~50 ms with
/// `Ok`: the collector is stopped (every program detached), the workload killed and its
/// cgroup removed, as on a normal end. `on_attached` is called on the collector's thread once
/// the module is loaded and attached.
pub fn run(intervals: u64, interval: Duration, stop: &AtomicBool, on_attached: fn()) -> Result<()> {
    let bin = std::env::current_exe().map_err(|e| Error::io("find the ktm binary", e))?;
    let dir = std::env::temp_dir().join(format!("ktm-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let result = (|| {
        let cgroup = DemoCgroup::create();
        eprintln!(
            "ktm demo: starting workload `{DEMO_COMM}`{}",
            cgroup
                .as_ref()
                .map_or(" (no cgroup v2: comm filtering)".to_string(), |c| format!(" in cgroup {}", c.0.display()))
        );
        // Declared before the child, so dropped after it (locals drop in reverse order): the
        // workload is killed and reaped before its cgroups are removed.
        let limit;
        let mut child = Workload::spawn(&bin, DEMO_COMM, cgroup.as_ref().map(|c| c.0.as_path()))?;
        limit = MemoryLimit::apply(cgroup.as_ref(), child.pid());
        eprintln!("ktm demo: {}", limit.describe());
        eprintln!(
            "ktm demo: {} counts global direct reclaim only (the whole machine short of memory), which the demo does not cause; a cgroup limit's reclaim shows in the LRU counters",
            crate::catalogue::MEMORY_DIRECT_RECLAIM_BEGIN.name
        );
        eprintln!("ktm demo: loading and attaching the iomonitor programs (interval {interval:?})");
        let recorder = MemoryRecorder::new(4);
        // Its own cgroup, so that another `banyand` on this machine (a real BanyanDB, another
        // demo) is not taken for the demo's workload.
        let cfg = EbpfConfig { cgroup_path: cgroup.as_ref().map(|c| c.0.clone()), ..EbpfConfig::default() };
        let module = IoMonitorModule::new(cfg);
        let options = Options { on_all_started: Some(Box::new(on_attached)), ..Options::default() };
        let collector =
            Collector::start_with_options(interval, vec![Box::new(module)], Box::new(recorder.clone()), options);
        if !wait_batch(&recorder, 1, Duration::from_secs(30), stop) {
            if stop.load(Ordering::SeqCst) {
                collector.stop();
                return Ok(());
            }
            return Err(Error::Other("the collector pushed nothing within 30 s".into()));
        }
        let big = dir.join("big");
        std::fs::write(&big, vec![2u8; BIG_FILE]).map_err(|e| Error::io("write demo file", e))?;
        let cached = dir.join("cached");
        std::fs::write(&cached, vec![7u8; 64 * 1024]).map_err(|e| Error::io("write demo file", e))?;
        for round in 1..=intervals {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            eprintln!(
                "ktm demo: interval {round}/{intervals}: cached and cold reads, preads, every fadvise advice, writes, a truncation"
            );
            work(&mut child, &dir, &cached, &big, round)?;
            let seen = recorder.total();
            if !wait_batch(&recorder, seen + 1, interval * 3, stop) {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                return Err(Error::Other("the collector stopped pushing".into()));
            }
            if let Some(batch) = recorder.latest() {
                print!("{}", crate::textfile::exposition(&batch));
            }
        }
        collector.stop();
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn work(
    child: &mut Workload,
    dir: &std::path::Path,
    cached: &std::path::Path,
    big: &std::path::Path,
    round: u64,
) -> Result<()> {
    let c = cached.display();
    child.run(&format!("pread {c} 500 4096"))?;
    child.run(&format!("read {c} 500 4096"))?;
    // A cold file: written and flushed by us, evicted, then read by the target.
    let cold = dir.join(format!("cold-{round}"));
    std::fs::write(&cold, vec![1u8; 1 << 20]).map_err(|e| Error::io("write demo file", e))?;
    let f = std::fs::File::open(&cold).map_err(|e| Error::io("open demo file", e))?;
    let _ = f.sync_all();
    // SAFETY: fadvise on an open fd.
    unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, libc::POSIX_FADV_DONTNEED) };
    child.run(&format!("readall {} 65536", cold.display()))?;
    for (name, _) in ADVICE {
        child.run(&format!("fadvise {c} {name} 2"))?;
    }
    child.run("fadvise - normal 1")?;
    // Twice the memory limit, read cold: the workload's cgroup must reclaim to make room.
    evict(big)?;
    child.run(&format!("readall {} 1048576", big.display()))?;
    let written = dir.join("written");
    child.run(&format!("write {} {}", written.display(), 256 * 1024))?;
    // Truncation removes the pages just written (and DONTNEED above the cached ones).
    child.run(&format!("truncate {} 0", written.display()))?;
    Ok(())
}

/// Drops `path`'s pages from the page cache, so that the next read is cold.
fn evict(path: &std::path::Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open demo file", e))?;
    // SAFETY: fadvise on an open fd.
    unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, libc::POSIX_FADV_DONTNEED) };
    Ok(())
}
