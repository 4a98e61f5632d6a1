//! The targets the issue set: each measured figure against its limit.

use super::harness::{Op, Samples};

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

pub fn workload_targets(s: &Samples, targets: &mut Vec<Target>) {
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
}
