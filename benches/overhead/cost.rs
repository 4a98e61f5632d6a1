//! Cost per call: the loops measured with the iomonitor attached and what it counted, and
//! the ns-per-call tables against bare and floor.

use super::harness::{Bench, Op, Samples, R};
use super::json::J;
use super::table::{f0, f1, ratio, Table};
use ktm::iomonitor::{IoMonitor, Snapshot};

/// Measures every loop under `row` with the iomonitor attached, and records what it counted
/// per call (latency samples, and page-cache lookups with `lookups`): 1 for the target, 0 for
/// a neighbour, so a table cannot silently compare a run that counted nothing.
pub fn measure_counted(b: &mut Bench, mon: &IoMonitor, row: &str, lookups: bool) -> R<()> {
    for op in Op::WORKLOAD {
        let s0 = mon.snapshot()?;
        let made = b.measure(row, &[op]) as f64;
        let s1 = mon.snapshot()?;
        let (lat, look) = counted(op, &s0, &s1);
        b.push(row, &format!("{op} counted/call"), lat as f64 / made);
        if lookups {
            b.push(row, &format!("{op} cache lookups/call"), look as f64 / made);
        }
    }
    Ok(())
}

/// Events the iomonitor counted for one op's loop.
fn counted(op: Op, a: &Snapshot, b: &Snapshot) -> (u64, u64) {
    let lat = match op {
        Op::Pread => b.pread.count - a.pread.count,
        Op::Read => b.read.count - a.read.count,
        Op::Getppid => (b.pread.count + b.read.count) - (a.pread.count + a.read.count),
        // Pages deleted (one per call for the target).
        Op::Evict => b.page_cache_deletes - a.page_cache_deletes,
    };
    (lat, b.cache_read_attempts - a.cache_read_attempts)
}

/// Added ns per syscall at the mix: w_pread * (pread - bare) + w_read * (read - bare) +
/// w_other * (getppid - bare).
fn mix_cost(b: &Samples, row: &str, mix: &[f64; 3]) -> f64 {
    Op::ALL.iter().zip(mix).map(|(op, w)| w * (b.median(row, op.name()) - b.median("bare", op.name()))).sum()
}

pub fn cost_table(b: &Samples, title: &str, rows: &[&str], floor: &str, mix: &[f64; 3], ops: &[Op]) -> (String, J) {
    let mix_head = format!("+ns/syscall @mix {:.0}/{:.0}/{:.0}", mix[0] * 100.0, mix[1] * 100.0, mix[2] * 100.0);
    let with_floor = floor != "bare";
    let mut head: Vec<String> = vec!["configuration".into(), "pread ns".into(), "read ns".into(), "getppid ns".into()];
    if with_floor {
        head.extend(ops.iter().map(|op| format!("{op}/{floor}")));
    }
    head.extend(ops.iter().map(|op| format!("{op}/bare")));
    head.push(mix_head);
    let head: Vec<&str> = head.iter().map(|s| s.as_str()).collect();
    let mut t = Table::new(title, &head);
    let mut rj = J::obj();
    for &row in rows {
        let m = |op: Op| b.median(row, op.name());
        let fl = |op: Op| b.median(floor, op.name());
        let bare = |op: Op| b.median("bare", op.name());
        let mut cells = vec![row.to_string()];
        cells.extend(ops.iter().map(|&op| f0(m(op))));
        if with_floor {
            cells.extend(ops.iter().map(|&op| ratio(m(op) / fl(op))));
        }
        cells.extend(ops.iter().map(|&op| ratio(m(op) / bare(op))));
        cells.push(f1(mix_cost(b, row, mix)));
        t.row(cells);
        let mut o = J::obj();
        for &op in ops {
            let samples = b.get(row, op.name()).map(|v| v.to_vec()).unwrap_or_default();
            o.set(
                op.name(),
                J::obj()
                    .with("ns_per_call", m(op))
                    .with("samples", samples)
                    .with(&format!("x_{floor}"), m(op) / fl(op))
                    .with("x_bare", m(op) / bare(op)),
            );
        }
        o.set("added_ns_per_syscall_at_mix", mix_cost(b, row, mix));
        rj.set(row, o);
    }
    (t.render(), rj)
}
