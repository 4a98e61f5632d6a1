//! `ktm demo`: KTM against a built-in workload, so a newcomer sees every metric move.

use crate::collector::Collector;
use crate::config::EbpfConfig;
use crate::iomonitor::IoMonitorModule;
use crate::recorder::MemoryRecorder;
use crate::workload::{Workload, ADVICE};
use crate::{Error, Result};
use std::path::PathBuf;
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

/// Runs the demo for `intervals` collection intervals of length `interval`, printing each
/// pushed batch as Prometheus text on stdout and progress on stderr.
pub fn run(intervals: u64, interval: Duration) -> Result<()> {
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
        let mut child = Workload::spawn(&bin, DEMO_COMM, cgroup.as_ref().map(|c| c.0.as_path()))?;
        eprintln!("ktm demo: loading and attaching the iomonitor programs (interval {interval:?})");
        let recorder = MemoryRecorder::new(4);
        let module = IoMonitorModule::new(EbpfConfig::default());
        let collector = Collector::start_with(interval, vec![Box::new(module)], Box::new(recorder.clone()));
        if !recorder.wait_for(1, Duration::from_secs(30)) {
            return Err(Error::Other("the collector pushed nothing within 30 s".into()));
        }
        // Attached and self-tested: from here on the demo can no longer load anything.
        crate::lockdown::after_start(&collector, &crate::lockdown::LockDown::default());
        let cached = dir.join("cached");
        std::fs::write(&cached, vec![7u8; 64 * 1024]).map_err(|e| Error::io("write demo file", e))?;
        for round in 1..=intervals {
            eprintln!(
                "ktm demo: interval {round}/{intervals}: cached and cold reads, preads, every fadvise advice, writes, a truncation"
            );
            work(&mut child, &dir, &cached, round)?;
            let seen = recorder.total();
            if !recorder.wait_for(seen + 1, interval * 3) {
                return Err(Error::Other("the collector stopped pushing".into()));
            }
            if let Some(batch) = recorder.latest() {
                println!("{}", crate::prometheus::render(&batch));
            }
        }
        collector.stop();
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn work(child: &mut Workload, dir: &std::path::Path, cached: &std::path::Path, round: u64) -> Result<()> {
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
    let written = dir.join("written");
    child.run(&format!("write {} {}", written.display(), 256 * 1024))?;
    // Truncation removes the pages just written (and DONTNEED above the cached ones).
    child.run(&format!("truncate {} 0", written.display()))?;
    Ok(())
}
