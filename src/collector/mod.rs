//! The collector: runs the modules and pushes their metrics to the Flight Recorder every
//! interval, on one thread.
//!
//! Modules are started on the collector's thread, so a slow or failing module start never
//! blocks the sidecar; a module that fails is reported disabled in the status that goes out
//! with every batch, and the others keep running. A disabled module is started again every
//! [`Options::retry`] (by default [`DEFAULT_RETRY`]), so a sidecar whose runtime refuses
//! `bpf()` stays up, says why in every batch, and starts counting once the refusal is lifted:
//! it never exits and so never crash-loops its pod.
//!
//! Every batch also carries the collector's own metrics ([`SELF_METRICS`]): how many
//! collections ran, how long the last one took, and how many times a module start failed.
//!
//! A panic in the sidecar's [`FlightRecorder`] (or in a module's `collect`) stops the
//! collector cleanly: the panic is caught on the collector's thread, every module is stopped
//! (all programs detached, all maps freed), the reason is logged, and
//! [`Collector::failure`] returns it. Collection does not resume: a recorder that panicked
//! may be left in any state, and feeding it more batches could only repeat or worsen that.

use crate::config::Config;
use crate::driver::{Driven, Retry};
use crate::iomonitor::IoMonitorModule;
use crate::metrics::{Batch, Metric};
use crate::module::Module;
use crate::recorder::FlightRecorder;
use crate::{Error, Result};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Builds the modules the config names (validated against `config::KNOWN_MODULES`), and
/// warns about settings that are valid but cannot take effect yet (see
/// [`warn_cgroup_path`]).
pub fn modules_from_config(config: &Config) -> Result<Vec<Box<dyn Module>>> {
    warn_cgroup_path(&config.collector.ebpf, &crate::discovery::Roots::system());
    config
        .collector
        .modules
        .iter()
        .map(|name| match name.as_str() {
            "iomonitor" => Ok(Box::new(IoMonitorModule::new(config.collector.ebpf.clone())) as Box<dyn Module>),
            other => Err(Error::Other(format!("collector.modules: unknown module `{other}`"))),
        })
        .collect()
}

/// Warns once when `collector.ebpf.cgroup_path` names no directory under the cgroup v2
/// mount: the config is valid (the cgroup may be created later, or lie outside this
/// sidecar's cgroup namespace), but until discovery finds it KTM filters by comm prefix only,
/// and an operator who mistyped it must hear so at start, not find it in a status label.
/// Returns the warning, if any.
pub fn warn_cgroup_path(cfg: &crate::config::EbpfConfig, roots: &crate::discovery::Roots) -> Option<String> {
    let configured = cfg.cgroup_path.as_ref()?;
    let why = match crate::discovery::find_cgroup2(roots) {
        Err(e) => format!("no cgroup v2 mount is visible ({e})"),
        Ok(mount) => {
            let dir = if configured.is_absolute() {
                roots.under_sysroot(configured)
            } else {
                roots.under_sysroot(&mount.mount_point.join(configured))
            };
            if dir.is_dir() {
                return None;
            }
            format!("{} does not exist", dir.display())
        }
    };
    let msg = format!(
        "collector.ebpf.cgroup_path {}: {why}; KTM filters by comm prefix `{}` until discovery finds the target's cgroup (if it lies outside this sidecar's cgroup namespace, that is expected)",
        configured.display(),
        cfg.comm_prefix
    );
    log::warn!("{msg}");
    Some(msg)
}

/// How long a disabled module waits before it is started again.
///
/// One minute: what disables a module (a seccomp profile, missing capabilities, lockdown, a
/// kernel without a mechanism) changes only when an operator changes the pod or the node,
/// which takes longer than that anyway, so a shorter retry would only repeat the same
/// refusal (each a full load attempt: maps created, programs built and refused) and the same
/// log line; a longer one would leave counting off for minutes after the fix. Never shorter
/// than the collection interval.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(60);

/// The names of the collector's own metrics, in every batch.
pub const SELF_METRICS: [&str; 3] = [
    crate::catalogue::COLLECTIONS.name,
    crate::catalogue::COLLECTION_DURATION.name,
    crate::catalogue::MODULE_START_FAILURES.name,
];

/// Run-time choices of the collector besides its interval, modules and recorder.
#[must_use]
pub struct Options {
    /// How long a disabled module waits before it is started again (at least the interval).
    pub retry: Duration,
    /// Called once on the collector's thread as soon as every module has started (loaded and
    /// attached): the one place where "everything is attached" is known, for work that must
    /// follow attachment, such as giving up privileges.
    pub on_all_started: Option<Box<dyn FnOnce() + Send>>,
}

impl Default for Options {
    fn default() -> Self {
        Options { retry: DEFAULT_RETRY, on_all_started: None }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("retry", &self.retry)
            .field("on_all_started", &self.on_all_started.is_some())
            .finish()
    }
}

type StopFlag = Arc<(Mutex<bool>, Condvar)>;
type Failure = Arc<Mutex<Option<String>>>;

/// The running collector thread. [`Collector::stop`] (or drop) stops the modules, detaching
/// every program, and joins the thread.
#[derive(Debug)]
#[must_use = "dropping the Collector stops collection"]
pub struct Collector {
    stop: StopFlag,
    failure: Failure,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Starts the modules named in `config` and pushes to `recorder` every
    /// `collector.interval`, the first batch right after start.
    pub fn start(config: &Config, recorder: Box<dyn FlightRecorder>) -> Result<Collector> {
        Ok(Collector::start_with(config.collector.interval, modules_from_config(config)?, recorder))
    }

    /// As [`Collector::start`] with given modules.
    pub fn start_with(
        interval: Duration,
        modules: Vec<Box<dyn Module>>,
        recorder: Box<dyn FlightRecorder>,
    ) -> Collector {
        Collector::start_with_options(interval, modules, recorder, Options::default())
    }

    /// As [`Collector::start_with`], with [`Options`].
    pub fn start_with_options(
        interval: Duration,
        modules: Vec<Box<dyn Module>>,
        recorder: Box<dyn FlightRecorder>,
        options: Options,
    ) -> Collector {
        let stop: StopFlag = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let failure: Failure = Arc::new(Mutex::new(None));
        let failed = Arc::clone(&failure);
        let thread = std::thread::Builder::new()
            .name("ktm-collector".into())
            .spawn(move || run(interval, options, modules, recorder, flag, failed))
            .map_err(|e| log::error!("cannot start the KTM collector thread: {e}"))
            .ok();
        if thread.is_none() {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some("cannot start the collector thread".into());
        }
        Collector { stop, failure, thread }
    }

    /// Whether the collector is still collecting (false after a panic stopped it).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Why the collector stopped on its own, if it did: the recorder's (or a module's) panic
    /// message. Its modules were stopped and every program detached before this is set.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops collecting, detaches every module's programs and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    interval: Duration,
    options: Options,
    modules: Vec<Box<dyn Module>>,
    mut recorder: Box<dyn FlightRecorder>,
    stop: StopFlag,
    failure: Failure,
) {
    let retry = Retry::Every(options.retry.max(interval));
    let mut on_all_started = options.on_all_started;
    let mut collections = 0u64;
    let mut slots: Vec<Driven> = modules.into_iter().map(Driven::new).collect();
    for s in slots.iter_mut() {
        let _ = s.start(retry);
    }
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        for s in slots.iter_mut().filter(|s| s.retry_due(now)) {
            let _ = s.start(retry);
        }
        if slots.iter().all(Driven::is_running) {
            if let Some(f) = on_all_started.take() {
                f();
            }
        }
        // AssertUnwindSafe: after a panic nothing of the modules or the recorder is used again
        // except `Module::stop`, which only drops their kernel objects.
        let collected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let began = Instant::now();
            let mut metrics = Vec::new();
            let mut status = Vec::new();
            for s in slots.iter_mut() {
                status.push(s.collect(&mut metrics, true));
            }
            collections += 1;
            let failures = slots.iter().map(Driven::start_failures).sum();
            metrics.extend(self_metrics(collections, began.elapsed(), failures));
            metrics.extend(crate::privileges::Held::current().ok().map(|h| h.metric()));
            recorder.record(Batch { timestamp: SystemTime::now(), metrics, status });
        }));
        if let Err(panic) = collected {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".into());
            let why = format!("the collector stopped: a panic while collecting or recording a batch: {what}");
            log::error!("KTM {why}; every module was stopped and its programs detached");
            for s in slots.iter_mut() {
                // A module that panicked in collect may panic again; it is dropped below anyway.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.release()));
            }
            drop(slots);
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            return;
        }
        next += interval;
        let (lock, cv) = &*stop;
        let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *stopped {
                for s in slots.iter_mut() {
                    s.release();
                }
                return;
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            stopped = cv.wait_timeout(stopped, next - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// The collector's own metrics ([`SELF_METRICS`]).
fn self_metrics(collections: u64, took: Duration, start_failures: u64) -> Vec<Metric> {
    use crate::catalogue as c;
    vec![
        c::COLLECTIONS.counter(collections),
        c::COLLECTION_DURATION.gauge(took.as_secs_f64()),
        c::MODULE_START_FAILURES.counter(start_failures),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ModuleState, ModuleStatus};
    use crate::recorder::MemoryRecorder;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `fail` starts with the same reason, then runs.
    struct Flaky {
        fail: u32,
        starts: Arc<AtomicU32>,
    }

    impl Module for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn start(&mut self) -> Result<()> {
            let n = self.starts.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                Err(Error::Other("bpf() is refused".into()))
            } else {
                Ok(())
            }
        }
        fn collect(&mut self) -> Vec<Metric> {
            vec![Metric::counter("flaky_total", "F.", 1)]
        }
        fn status(&self) -> ModuleStatus {
            ModuleStatus::new("flaky", ModuleState::Active)
        }
        fn stop(&mut self) {}
    }

    #[test]
    fn a_disabled_module_is_retried_and_reported_meanwhile() {
        let starts = Arc::new(AtomicU32::new(0));
        let recorder = MemoryRecorder::new(256);
        let attached = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&attached);
        let options = Options {
            retry: Duration::from_millis(100),
            on_all_started: Some(Box::new(move || {
                seen.fetch_add(1, Ordering::SeqCst);
            })),
        };
        let module = Flaky { fail: 2, starts: Arc::clone(&starts) };
        let c = Collector::start_with_options(
            Duration::from_millis(20),
            vec![Box::new(module)],
            Box::new(recorder.clone()),
            options,
        );
        assert!(recorder.wait_for(1, Duration::from_secs(10)));
        let first = recorder.history()[0].clone();
        let s = first.module("flaky").unwrap();
        assert_eq!((s.state, s.reason.as_deref()), (ModuleState::Disabled, Some("bpf() is refused")));
        assert!(first.get("flaky_total", &[]).is_none());
        assert_eq!(
            first.get(crate::catalogue::MODULE_START_FAILURES.name, &[]).map(|m| &m.value),
            Some(&crate::metrics::MetricValue::Counter(1))
        );
        let t = Instant::now();
        while recorder.latest().map_or(true, |b| b.get("flaky_total", &[]).is_none()) {
            assert!(t.elapsed() < Duration::from_secs(10), "never retried");
            std::thread::sleep(Duration::from_millis(10));
        }
        c.stop();
        let last = recorder.latest().unwrap();
        assert_eq!(last.module("flaky").unwrap().state, ModuleState::Active);
        assert_eq!(starts.load(Ordering::SeqCst), 3, "two refused starts, then one that worked");
        assert_eq!(attached.load(Ordering::SeqCst), 1, "on_all_started runs once, after the start that worked");
        // Retries were spaced by the retry interval, not every 20 ms collection.
        let disabled = recorder.history().iter().filter(|b| b.get("flaky_total", &[]).is_none()).count();
        assert!(disabled >= 5, "{disabled} batches while disabled: retried no faster than every 100 ms");
    }
}
