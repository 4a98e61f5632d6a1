//! One module driven through its life: started, failed (disabled with the reason), retried,
//! collected, stopped. The collector's thread and the C ABI both drive modules through
//! [`Driven`], so a module starts, fails, logs and reports disabled the same way under
//! `ktm run`, a Rust host and the Go package; what differs between them (the collector retries
//! on its own and adds each module's self-metrics; a C host starts and stops when it asks) is
//! an argument, not a second copy.

use crate::metrics::{Metric, ModuleState, ModuleStatus};
use crate::module::Module;
use std::time::{Duration, Instant};

/// Where a driven module is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Life {
    /// `start` was never called.
    NotStarted,
    Running,
    /// The last start failed, for this reason.
    Failed(String),
    /// Stopped after it ran.
    Stopped,
}

/// How a driven module is started again after a failed start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Only when the host asks again (the C ABI): every failure is logged as an error.
    OnRequest,
    /// On its own, every this long (the collector): a failure is logged when it is new or its
    /// reason changed, so a module that stays disabled logs once, not every retry.
    Every(Duration),
}

/// A module and where it is in its life.
pub struct Driven {
    module: Box<dyn Module>,
    life: Life,
    /// The state its last start or collection found while it ran, for
    /// [`Driven::is_degraded`] between collections.
    last: Option<ModuleState>,
    /// When a failed module is due to be started again ([`Retry::Every`]).
    retry_at: Option<Instant>,
    /// Starts that failed, over the driven module's whole life.
    start_failures: u64,
}

impl std::fmt::Debug for Driven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driven")
            .field("module", &self.module.name())
            .field("life", &self.life)
            .field("start_failures", &self.start_failures)
            .finish()
    }
}

impl Driven {
    /// `module`, not started yet.
    pub fn new(module: Box<dyn Module>) -> Driven {
        Driven { module, life: Life::NotStarted, last: None, retry_at: None, start_failures: 0 }
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        self.module.name()
    }

    /// Whether the module is started and has not been stopped since.
    pub fn is_running(&self) -> bool {
        self.life == Life::Running
    }

    /// Starts that failed so far.
    pub fn start_failures(&self) -> u64 {
        self.start_failures
    }

    /// Whether the last start failed and `retry`'s wait since then is over.
    pub fn retry_due(&self, now: Instant) -> bool {
        matches!(self.life, Life::Failed(_)) && self.retry_at.is_some_and(|at| now >= at)
    }

    /// Starts the module unless it runs: loads and attaches. A failure leaves it disabled
    /// with that reason (its status says so) and is returned; it is logged as `retry` says.
    pub fn start(&mut self, retry: Retry) -> Result<(), String> {
        match &self.life {
            Life::Running => return Ok(()),
            // A module that failed may hold half of what it made; stop drops it all.
            Life::Failed(_) => self.module.stop(),
            Life::NotStarted | Life::Stopped => {}
        }
        let r = self.module.start().map_err(|e| e.to_string());
        let name = self.module.name();
        match (&r, &self.life, retry) {
            (Err(why), Life::Failed(before), Retry::Every(_)) if why == before => {
                log::debug!("KTM module {name} is still disabled: {why}")
            }
            (Err(why), _, Retry::Every(every)) => log::error!(
                "KTM module {name} could not start and is disabled (trying again every {}s): {why}",
                every.as_secs()
            ),
            (Err(why), _, Retry::OnRequest) => log::error!("KTM module {name} could not start and is disabled: {why}"),
            (Ok(()), Life::Failed(_), Retry::Every(_)) => log::info!("KTM module {name} started"),
            (Ok(()), _, _) => {}
        }
        self.retry_at = match retry {
            Retry::Every(every) => Some(Instant::now() + every),
            Retry::OnRequest => None,
        };
        match &r {
            Ok(()) => {
                self.life = Life::Running;
                self.last = Some(self.module.status().state);
            }
            Err(why) => {
                self.start_failures += 1;
                self.life = Life::Failed(why.clone());
                self.last = Some(ModuleState::Disabled);
            }
        }
        r
    }

    /// Stops the module if it runs: detaches and unloads every program. Stopping what does
    /// not run does nothing; a module whose start failed stays disabled with that reason.
    pub fn stop(&mut self) {
        if self.life == Life::Running {
            self.module.stop();
            self.life = Life::Stopped;
            self.last = None;
        }
    }

    /// Drops whatever the module holds, running or half made by a failed start: the end of
    /// its life (the collector's shutdown).
    pub fn release(&mut self) {
        match self.life {
            Life::Running => self.stop(),
            Life::Failed(_) => self.module.stop(),
            Life::NotStarted | Life::Stopped => {}
        }
    }

    /// The status of a module that does not run: disabled, with why.
    fn idle_status(&self) -> Option<ModuleStatus> {
        let why = match &self.life {
            Life::Running => return None,
            Life::NotStarted => "not started",
            Life::Failed(why) => why,
            Life::Stopped => "stopped",
        };
        Some(ModuleStatus::disabled(self.module.name(), why))
    }

    /// One collection: the module's metrics (with its self-metrics when `with_self_metrics`)
    /// appended to `metrics`, and its status. A module that does not run gives only its
    /// status, disabled with the reason.
    pub fn collect(&mut self, metrics: &mut Vec<Metric>, with_self_metrics: bool) -> ModuleStatus {
        if let Some(idle) = self.idle_status() {
            return idle;
        }
        metrics.extend(self.module.collect());
        if with_self_metrics {
            metrics.extend(self.module.self_metrics());
        }
        let status = self.module.status();
        self.last = Some(status.state);
        status
    }

    /// Whether the last start failed, or the last start or collection found the running
    /// module degraded or disabled. A stopped module is off, not degraded.
    pub fn is_degraded(&self) -> bool {
        matches!(self.life, Life::Failed(_)) || matches!(self.last, Some(ModuleState::Degraded | ModuleState::Disabled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Result};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    /// Refuses to start while `refuse` is set; counts its stops.
    struct Toggle {
        refuse: Arc<AtomicBool>,
        stops: Arc<AtomicU32>,
    }

    impl Module for Toggle {
        fn name(&self) -> &str {
            "toggle"
        }
        fn start(&mut self) -> Result<()> {
            if self.refuse.load(Ordering::SeqCst) {
                Err(Error::Other("bpf() is refused".into()))
            } else {
                Ok(())
            }
        }
        fn collect(&mut self) -> Vec<Metric> {
            vec![Metric::counter("toggle_total", "T.", 1)]
        }
        fn status(&self) -> ModuleStatus {
            ModuleStatus::new("toggle", ModuleState::Active)
        }
        fn stop(&mut self) {
            self.stops.fetch_add(1, Ordering::SeqCst);
        }
        fn self_metrics(&self) -> Vec<Metric> {
            vec![Metric::counter("toggle_runs_total", "R.", 2)]
        }
    }

    fn toggle() -> (Driven, Arc<AtomicBool>, Arc<AtomicU32>) {
        let (refuse, stops) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
        let d = Driven::new(Box::new(Toggle { refuse: Arc::clone(&refuse), stops: Arc::clone(&stops) }));
        (d, refuse, stops)
    }

    fn reason(s: &ModuleStatus) -> (ModuleState, Option<&str>) {
        (s.state, s.reason.as_deref())
    }

    fn names(m: &[Metric]) -> Vec<&str> {
        m.iter().map(|x| x.name.as_str()).collect()
    }

    #[test]
    fn a_life_from_not_started_to_stopped() {
        let (mut d, refuse, stops) = toggle();
        let mut m = Vec::new();
        assert_eq!(reason(&d.collect(&mut m, true)), (ModuleState::Disabled, Some("not started")));
        assert!(!d.is_degraded() && !d.is_running());
        assert_eq!(d.start(Retry::OnRequest), Err("bpf() is refused".into()));
        assert_eq!(reason(&d.collect(&mut m, true)), (ModuleState::Disabled, Some("bpf() is refused")));
        assert!(d.is_degraded() && m.is_empty());
        // Stop leaves a failed module disabled with its reason and touches nothing.
        d.stop();
        assert_eq!(reason(&d.collect(&mut m, true)), (ModuleState::Disabled, Some("bpf() is refused")));
        assert_eq!(stops.load(Ordering::SeqCst), 0);
        // A start after a failed one first drops what the failed one made.
        refuse.store(false, Ordering::SeqCst);
        assert_eq!(d.start(Retry::OnRequest), Ok(()));
        assert_eq!((stops.load(Ordering::SeqCst), d.start_failures()), (1, 1));
        assert!(!d.retry_due(Instant::now() + Duration::from_secs(3600)), "running: nothing to retry");
        assert_eq!(d.start(Retry::OnRequest), Ok(()), "a running module is left alone");
        assert_eq!(stops.load(Ordering::SeqCst), 1);
        assert_eq!(reason(&d.collect(&mut m, false)), (ModuleState::Active, None));
        assert_eq!(names(&m), ["toggle_total"]);
        m.clear();
        d.collect(&mut m, true);
        assert_eq!(names(&m), ["toggle_total", "toggle_runs_total"]);
        assert!(!d.is_degraded());
        d.stop();
        d.stop();
        assert_eq!(stops.load(Ordering::SeqCst), 2, "stopped once");
        assert_eq!(reason(&d.collect(&mut m, true)), (ModuleState::Disabled, Some("stopped")));
        assert!(!d.is_degraded(), "a stopped module is off, not degraded");
    }

    #[test]
    fn a_failed_start_is_due_again_after_the_retry_and_released_at_the_end() {
        let (mut d, _refuse, stops) = toggle();
        let before = Instant::now();
        assert!(d.start(Retry::Every(Duration::from_secs(60))).is_err());
        assert!(!d.retry_due(before));
        assert!(d.retry_due(before + Duration::from_secs(61)));
        d.release();
        assert_eq!((d.start_failures(), stops.load(Ordering::SeqCst)), (1, 1));
        let (mut d, _refuse, stops) = toggle();
        assert!(d.start(Retry::OnRequest).is_err());
        assert!(!d.retry_due(before + Duration::from_secs(3600)), "on request only: never due");
        d.release();
        assert_eq!(stops.load(Ordering::SeqCst), 1);
    }
}
