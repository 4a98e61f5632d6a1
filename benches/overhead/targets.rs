//! The targets the issue set: each measured figure against its limit, and their table.

use super::collection::Collection;
use super::harness::{Op, Samples};
use super::json::J;
use super::startup::Startup;
use super::table::{f3, ratio, Table};

/// One target: measured against a limit (lower is better).
pub struct Target {
    pub name: String,
    pub measured: f64,
    pub limit: f64,
    pub unit: &'static str,
}

impl Target {
    pub fn pass(&self) -> bool {
        self.measured.is_finite() && self.measured <= self.limit
    }
}

/// Group `startup`'s targets; `first_ms` is bench main() to all probes attached.
pub fn startup(first_ms: f64, s: &Startup) -> Vec<Target> {
    let ms_target = |name: &str, measured| Target { name: name.into(), measured, limit: 10.0, unit: "ms" };
    vec![
        ms_target("start-up: bench main() -> all probes attached (first start)", first_ms),
        ms_target("start-up: IoMonitor::start (median, settled)", s.start_ms),
        ms_target("start-up: IoMonitor::start right after a detach (median)", s.restart_ms),
        ms_target("start-up: process spawn -> all probes attached (median of re-execs)", s.process_ms),
    ]
}

/// Group `collection`'s targets, with the RSS of group `startup`'s re-exec child when it ran.
pub fn collection(c: &Collection, child_rss_kb: Option<u64>) -> Vec<Target> {
    let mut targets = Vec::new();
    targets.push(Target {
        name: "collection: one IoMonitor::snapshot (median)".into(),
        measured: c.snapshot_ms,
        limit: 1.0,
        unit: "ms",
    });
    targets.push(Target {
        name: "collection: collect + status + push of the module (median, slower case)".into(),
        measured: c.push_ms,
        limit: 1.0,
        unit: "ms",
    });
    if let Some(kb) = child_rss_kb {
        targets.push(Target {
            name: "RSS of a process running only the iomonitor (re-exec child)".into(),
            measured: kb as f64 / 1024.0,
            limit: 10.0,
            unit: "MiB",
        });
    }
    targets.push(Target {
        name: "RSS of this bench process with the iomonitor running".into(),
        measured: c.rss_kb as f64 / 1024.0,
        limit: 10.0,
        unit: "MiB",
    });
    targets
}

/// Group `workload`'s targets: neighbour and target against the floor and bare.
pub fn workload(s: &Samples) -> Vec<Target> {
    let mut targets = Vec::new();
    for (label, row) in [("cgroup", "ktm nbr cgroup"), ("comm", "ktm nbr comm")] {
        for op in Op::WORKLOAD {
            targets.push(Target {
                name: format!("neighbour {op} ({label} mode) / floor"),
                measured: s.median(row, op.name()) / s.median("floor", op.name()),
                limit: 1.10,
                unit: "x",
            });
        }
    }
    for (label, row) in [("cgroup", "ktm tgt cgroup"), ("comm", "ktm tgt comm")] {
        for op in [Op::Pread, Op::Read, Op::Evict] {
            targets.push(Target {
                name: format!("target {op} ({label} mode) / floor"),
                measured: s.median(row, op.name()) / s.median("floor", op.name()),
                limit: 1.5,
                unit: "x",
            });
        }
    }
    for (label, row, limit) in [
        ("neighbour", "ktm nbr cgroup", 1.6),
        ("neighbour", "ktm nbr comm", 1.6),
        ("target", "ktm tgt cgroup", 2.2),
        ("target", "ktm tgt comm", 2.2),
    ] {
        targets.push(Target {
            name: format!("{label} pread ({} mode) / bare", row.rsplit(' ').next().unwrap_or("")),
            measured: s.median(row, "pread") / s.median("bare", "pread"),
            limit,
            unit: "x",
        });
    }
    targets
}

/// The table of the targets and their verdicts, and the same as JSON.
pub fn table(targets: &[Target]) -> (String, J) {
    let mut t = Table::new("Targets (medians on this host)", &["target", "measured", "limit", "verdict"]);
    let mut tjs = Vec::new();
    for tg in targets {
        let verdict = if tg.pass() { "PASS" } else { "MISS" };
        let (m, l) = if tg.unit == "x" {
            (format!("{:.3}x", tg.measured), format!("<= {}", ratio(tg.limit)))
        } else {
            (format!("{} {}", f3(tg.measured), tg.unit), format!("< {} {}", tg.limit, tg.unit))
        };
        t.row(vec![tg.name.clone(), m, l, verdict.into()]);
        tjs.push(
            J::obj()
                .with("target", tg.name.as_str())
                .with("measured", tg.measured)
                .with("limit", tg.limit)
                .with("unit", tg.unit)
                .with("pass", tg.pass()),
        );
    }
    (t.render(), J::Arr(tjs))
}
