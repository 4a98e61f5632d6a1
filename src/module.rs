//! What the collector drives: one KTM module's life cycle, kept apart so a module's own
//! code depends on this trait and not on the collector above it.

use crate::metrics::{Metric, ModuleStatus};
use crate::Result;

/// A KTM module, driven by the collector.
pub trait Module: Send {
    /// The name used in the config's `collector.modules` and in status.
    fn name(&self) -> &str;
    /// Loads and attaches; an error leaves the module disabled with that reason.
    fn start(&mut self) -> Result<()>;
    /// Reads the module's counters (and does its periodic health checks).
    fn collect(&mut self) -> Vec<Metric>;
    /// The module's state, reason and metric sources now.
    fn status(&self) -> ModuleStatus;
    /// Detaches everything.
    fn stop(&mut self);
    /// The module's own cost (its BPF programs' runs and run time), exported with its
    /// metrics; nothing by default.
    fn self_metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
}
