//! Per-program statistics (BPF_ENABLE_STATS) over the bench's loops, and their tables.

use super::harness::{Bench, Op, R};
use super::json::J;
use super::progs::{self, ProgStat};
use super::table::{f1, Table};
use ktm::attach::AttachPoint;
use ktm::iomonitor::IoMonitor;
use ktm::load::LoadedProgram;

/// Each loaded iomonitor program's name and attach point, from its plan's winning alternative.
pub fn ktm_points(mon: &IoMonitor) -> Vec<(String, AttachPoint)> {
    mon.attached_at().map(|(point, p)| (p.name().to_string(), point.clone())).collect()
}

/// (label, point, program) of each iomonitor program, labelled as [`ktm_points`] names them.
pub fn ktm_programs(mon: &IoMonitor) -> Vec<(String, String, &LoadedProgram)> {
    let points = ktm_points(mon);
    mon.programs()
        .map(|p| {
            let point = points.iter().find(|(n, _)| n == p.name()).map_or(String::new(), |(_, a)| a.to_string());
            (p.name().to_string(), point, p)
        })
        .collect()
}

pub fn stats_per_op(
    b: &mut Bench,
    progs: &[(String, String, &LoadedProgram)],
    ops: &[Op],
) -> R<Vec<(Op, Vec<ProgStat>)>> {
    ops.iter().map(|&op| Ok((op, stats_during(b, progs, &[op])?))).collect()
}

/// Each program's statistics over one run of the `ops` loops.
pub fn stats_during(b: &mut Bench, progs: &[(String, String, &LoadedProgram)], ops: &[Op]) -> R<Vec<ProgStat>> {
    let a = progs::stats_now(progs)?;
    b.exercise(ops);
    let z = progs::stats_now(progs)?;
    Ok(progs::stats_delta(progs, &a, &z))
}

/// Per column (an op, or a thread count): each program's statistics.
pub type StatCols = Vec<(String, Vec<ProgStat>)>;

pub fn stats_table(title: &str, results: &[(&str, StatCols)], cols: &[String]) -> (String, J) {
    let mut head = vec!["configuration".to_string(), "program @ point".to_string()];
    head.extend(cols.iter().map(|c| format!("{c} ns/run")));
    let head_ref: Vec<&str> = head.iter().map(|s| s.as_str()).collect();
    let mut t = Table::new(title, &head_ref);
    let mut j = Vec::new();
    for (row, per_col) in results {
        let labels: Vec<(String, String)> = per_col
            .first()
            .map(|(_, v)| v.iter().map(|s| (s.label.clone(), s.point.clone())).collect())
            .unwrap_or_default();
        for (i, (label, point)) in labels.iter().enumerate() {
            let mut cells = vec![if i == 0 { row.to_string() } else { String::new() }, format!("{label} @ {point}")];
            let mut o =
                J::obj().with("configuration", *row).with("program", label.as_str()).with("point", point.as_str());
            for (col, stats) in per_col {
                let s = &stats[i];
                cells.push(f1(s.ns_per_run));
                o.set(col, J::obj().with("ns_per_run", s.ns_per_run).with("runs", s.runs));
            }
            t.row(cells);
            j.push(o);
        }
    }
    (t.render(), J::Arr(j))
}
