//! The iomonitor's own cost: each attached program's runs and run time from the kernel's BPF
//! statistics, exported as ebpf_exporter and Tetragon export theirs.
//!
//! The kernel counts `run_cnt` and `run_time_ns` per program only while statistics are on
//! (`sysctl kernel.bpf_stats_enabled=1`, or a `BPF_ENABLE_STATS` fd held by anyone): each
//! program run then pays two clock reads (~20-40 ns), which is why KTM does not turn them
//! on itself. Off, the program series are left out (zeros would read as "never ran") and
//! `ktm_bpf_stats_enabled` says 0.

use super::monitor::IoMonitor;
use crate::catalogue;
use crate::metrics::Metric;

/// Where the kernel says whether statistics are on.
const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Whether the kernel's BPF run-time statistics are on (the sysctl reads 1).
pub fn stats_enabled() -> bool {
    std::fs::read_to_string(SYSCTL).is_ok_and(|s| s.trim() == "1")
}

/// `ktm_bpf_stats_enabled`, and per attached program (labels `module`, `program`, `attach`)
/// `ktm_bpf_program_runs_total` and `ktm_bpf_program_run_time_seconds_total` when the
/// statistics are on or have counted anything (a `BPF_ENABLE_STATS` fd, which the sysctl does
/// not show, turns them on too).
pub fn program_metrics(monitor: &IoMonitor) -> Vec<Metric> {
    let on = stats_enabled();
    let mut out = vec![catalogue::BPF_STATS_ENABLED.gauge(if on { 1.0 } else { 0.0 })];
    let infos: Vec<_> =
        monitor.attached_at().filter_map(|(point, program)| Some((point, program, program.info().ok()?))).collect();
    if !on && infos.iter().all(|(_, _, i)| i.run_cnt == 0) {
        return out;
    }
    for (point, program, info) in infos {
        let attach = point.to_string();
        let label = |m: Metric| {
            m.with_label("module", "iomonitor").with_label("program", program.name()).with_label("attach", &attach)
        };
        out.push(label(catalogue::BPF_PROGRAM_RUNS.counter(info.run_cnt)));
        out.push(label(catalogue::BPF_PROGRAM_RUN_TIME.float_counter(info.run_time_ns as f64 / 1e9)));
    }
    out
}
