//! The collector: runs the modules and pushes their metrics to the Flight Recorder every
//! interval, on one thread.
//!
//! Modules are started on the collector's thread, so a slow or failing module start never
//! blocks the sidecar; a module that fails is reported disabled in the status that goes out
//! with every batch, and the others keep running.
//!
//! A panic in the sidecar's [`FlightRecorder`] (or in a module's `collect`) stops the
//! collector cleanly: the panic is caught on the collector's thread, every module is stopped
//! (all programs detached, all maps freed), the reason is logged, and
//! [`Collector::failure`] returns it. Collection does not resume: a recorder that panicked
//! may be left in any state, and feeding it more batches could only repeat or worsen that.

use crate::config::Config;
use crate::iomonitor::IoMonitorModule;
use crate::metrics::{Batch, ModuleState, ModuleStatus};
use crate::module::Module;
use crate::recorder::FlightRecorder;
use crate::{Error, Result};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Builds the modules the config names (validated against `config::KNOWN_MODULES`).
pub fn modules_from_config(config: &Config) -> Result<Vec<Box<dyn Module>>> {
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

type StopFlag = Arc<(Mutex<bool>, Condvar)>;
type Failure = Arc<Mutex<Option<String>>>;
/// Set once every module's start has returned: whether all of them started.
type Started = Arc<(Mutex<Option<bool>>, Condvar)>;

/// The running collector thread. [`Collector::stop`] (or drop) stops the modules, detaching
/// every program, and joins the thread.
#[derive(Debug)]
#[must_use = "dropping the Collector stops collection"]
pub struct Collector {
    stop: StopFlag,
    failure: Failure,
    started: Started,
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
        let stop: StopFlag = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let failure: Failure = Arc::new(Mutex::new(None));
        let failed = Arc::clone(&failure);
        let started: Started = Arc::new((Mutex::new(None), Condvar::new()));
        let starting = Arc::clone(&started);
        let thread = std::thread::Builder::new()
            .name("ktm-collector".into())
            .spawn(move || run(interval, modules, recorder, flag, failed, starting))
            .map_err(|e| log::error!("cannot start the KTM collector thread: {e}"))
            .ok();
        if thread.is_none() {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some("cannot start the collector thread".into());
        }
        Collector { stop, failure, started, thread }
    }

    /// Waits up to `timeout` for every module's start (load, attach, self-test) to return:
    /// Some(true) if all started, Some(false) if one is disabled, None if still starting or
    /// the thread is gone. The point after which [`crate::lockdown::lock_down`] may run.
    pub fn wait_started(&self, timeout: Duration) -> Option<bool> {
        let (lock, cv) = &*self.started;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv.wait_timeout_while(guard, timeout, |s| s.is_none()).unwrap_or_else(|p| p.into_inner());
        *guard
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
    mut modules: Vec<Box<dyn Module>>,
    mut recorder: Box<dyn FlightRecorder>,
    stop: StopFlag,
    failure: Failure,
    started_flag: Started,
) {
    let mut started = Vec::with_capacity(modules.len());
    for m in modules.iter_mut() {
        let r = m.start();
        if let Err(e) = &r {
            log::error!("KTM module {} could not start and is disabled: {e}", m.name());
        }
        started.push(r.map_err(|e| e.to_string()));
    }
    *started_flag.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(started.iter().all(Result::is_ok));
    started_flag.1.notify_all();
    let mut next = Instant::now();
    loop {
        // AssertUnwindSafe: after a panic nothing of the modules or the recorder is used again
        // except `Module::stop`, which only drops their kernel objects.
        let collected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut metrics = Vec::new();
            let mut status = Vec::new();
            for (m, ok) in modules.iter_mut().zip(&started) {
                match ok {
                    Ok(()) => {
                        metrics.extend(m.collect());
                        status.push(m.status());
                    }
                    Err(why) => status.push(ModuleStatus {
                        module: m.name().to_string(),
                        state: ModuleState::Disabled,
                        reason: Some(why.clone()),
                        sources: Vec::new(),
                        scope: String::new(),
                    }),
                }
            }
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
            for m in modules.iter_mut() {
                // A module that panicked in collect may panic again; it is dropped below anyway.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.stop()));
            }
            drop(modules);
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            return;
        }
        next += interval;
        let (lock, cv) = &*stop;
        let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *stopped {
                for m in modules.iter_mut() {
                    m.stop();
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
