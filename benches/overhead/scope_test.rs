//! Group `scope-test`: the cgroup scope test in fentry programs, the cgroup-id helper
//! against reading `current->cgroups->dfl_cgrp->kn->id` through BTF-typed pointers
//! (`bpf_get_current_task_btf()`, 5.11+), one of issue 26's candidates for a cheaper
//! neighbour. Both count the same thing: the helper is `task_dfl_cgroup(current)->kn->id`
//! under `rcu_read_lock()`; the BTF path makes the same four loads in the program, each
//! guarded by the JIT, and leaves out the RCU lock (a fentry program already runs inside an
//! RCU read section). It needs fentry and vmlinux BTF: the QEMU guests
//! (`.ci/qemu/bench-guest.sh -- --only scope-test`); where either is missing it says why.
//!
//! Each design is one program at the entry of each of pread64's and read's syscall
//! functions, so a call runs one scope test; nbr rows compare with another cgroup's id (the
//! test fails, as for every other process on the node), tgt rows with this thread's (the
//! test passes and a per-CPU counter is added to, which checks that both tests select the
//! same calls).

use super::harness::{self, median, Bench, Config, Op, R};
use super::json::J;
use super::opts::{in_qemu, Opts};
use super::progs::{cfg, cnt, Body, Count, Design, Set, Test};
use super::scopes::Ids;
use super::stats::stats_during;
use super::table::{f0, f1, ratio, Table};
use ktm::attach::AttachPoint;
use ktm::programs::{syscall_fn, TaskCgroup};

const OPS: [Op; 2] = [Op::Pread, Op::Read];

/// The rows: (name, body, cgroup compared with, counts?).
fn designs(ids: &Ids, off: TaskCgroup) -> Vec<(&'static str, Design)> {
    let design = |body: Body, cgroup: Option<u64>| {
        let mut d = Design::new(vec![cnt(true), cfg()]);
        for s in ["pread64", "read"] {
            d = d.part(s, AttachPoint::fentry(&syscall_fn(s), false), body.clone());
        }
        d.cgroup = cgroup;
        d
    };
    let filter = |t: Test| Body::Filter(vec![t], Count::Atomic);
    vec![
        ("empty fentry", design(Body::Empty, None)),
        ("helper nbr", design(filter(Test::Cgroup), Some(ids.other))),
        ("task-btf nbr", design(filter(Test::TaskCgroup(off)), Some(ids.other))),
        ("helper tgt", design(filter(Test::Cgroup), Some(ids.mine))),
        ("task-btf tgt", design(filter(Test::TaskCgroup(off)), Some(ids.mine))),
    ]
}

fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(if in_qemu() { 250 } else { 50 }));
}

/// Runs the group; returns its tables and JSON.
pub fn group(b: &mut Bench, opts: &Opts, ids: &Ids) -> R<(String, J)> {
    let title = "9. scope-test: the cgroup test in fentry programs, helper vs BTF-typed loads";
    let off = match TaskCgroup::from_kernel() {
        Ok(o) => o,
        Err(why) => return Ok((format!("\n## {title}: unavailable: {why}\n"), J::obj().with("unavailable", why))),
    };
    let designs = designs(ids, off);
    for (row, d) in &designs {
        if let Err(e) = Set::build(d) {
            let why = format!("{row}: {e}");
            return Ok((format!("\n## {title}: unavailable: {why}\n"), J::obj().with("unavailable", why)));
        }
    }

    // Both tests select exactly the calls of this thread's cgroup, and nothing of another.
    let mut exact = Vec::new();
    for (row, d) in &designs[1..] {
        let set = Set::build(d)?;
        let before = set.count().ok_or("no counter")?;
        let calls = b.exercise(&OPS) as u64;
        let got = set.count().ok_or("no counter")? - before;
        let want = if row.ends_with("tgt") { calls } else { 0 };
        if got != want {
            return Err(format!("scope-test: {row} counted {got} of {calls} calls, expected {want}").into());
        }
        exact.push(format!("{row} {got}/{calls}"));
    }

    // Wall time per call, interleaved rounds.
    let mut configs: Vec<Config> = vec![(
        "bare",
        Box::new(|b: &mut Bench| {
            settle();
            b.measure("bare", &OPS);
            Ok(())
        }),
    )];
    for (row, d) in &designs {
        configs.push((
            row,
            Box::new(move |b: &mut Bench| {
                let _set = Set::build(d)?;
                settle();
                b.measure(row, &OPS);
                Ok(())
            }),
        ));
    }
    harness::interleave(b, "scope-test", opts.rounds, &mut configs)?;
    drop(configs);
    let s = b.take();

    // The programs' own time (BPF stats), the designs interleaved in rounds of their own.
    let stats_guard = ktm::sys::bpf::enable_stats();
    let mut ns_per_run: Vec<(&str, Vec<f64>)> = designs.iter().map(|(r, _)| (*r, Vec::new())).collect();
    if stats_guard.is_ok() {
        for round in 0..opts.rounds {
            for i in 0..designs.len() {
                let (row, d) = &designs[(i + round) % designs.len()];
                let set = Set::build(d)?;
                settle();
                let st = stats_during(b, &set.programs(), &[Op::Pread])?;
                // Only the pread64 part runs in a pread loop (the read part's time is NaN).
                let (runs, ns): (u64, f64) = st
                    .iter()
                    .filter(|p| p.runs > 0)
                    .fold((0, 0.0), |(r, n), p| (r + p.runs, n + p.ns_per_run * p.runs as f64));
                if let Some((_, v)) = ns_per_run.iter_mut().find(|(r, _)| r == row).filter(|_| runs > 0) {
                    v.push(ns / runs as f64);
                }
            }
        }
    }

    let mut t = Table::new(
        &format!(
            "{title}: medians of {} interleaved rounds of {} calls ({} ns: read the ratios); \
             added = over bare, floor = empty fentry; BPF stats: ns per program run",
            opts.rounds,
            b.calls,
            if in_qemu() { "TCG-emulated" } else { "this host's" }
        ),
        &["configuration", "pread ns", "read ns", "pread added ÷ floor's", "read added ÷ floor's", "ns per run"],
    );
    let mut j = J::obj();
    let added = |row: &str, op: Op| s.median(row, op.name()) - s.median("bare", op.name());
    for row in std::iter::once("bare").chain(designs.iter().map(|(r, _)| *r)) {
        let stat = ns_per_run.iter().find(|(r, _)| *r == row).map(|(_, v)| median(v));
        let vs_floor = |op: Op| {
            if row == "bare" {
                "-".to_string()
            } else {
                ratio(added(row, op) / added("empty fentry", op))
            }
        };
        t.row(vec![
            row.to_string(),
            f0(s.median(row, "pread")),
            f0(s.median(row, "read")),
            vs_floor(Op::Pread),
            vs_floor(Op::Read),
            stat.map_or("-".into(), f1),
        ]);
        j.set(
            row,
            J::obj()
                .with("pread_ns", s.median(row, "pread"))
                .with("read_ns", s.median(row, "read"))
                .with("ns_per_run", stat),
        );
    }
    let mut out = t.render();
    let stat = |row: &str| ns_per_run.iter().find(|(r, _)| *r == row).map_or(f64::NAN, |(_, v)| median(v));
    let body = |row: &str| stat(row) - stat("empty fentry");
    out.push_str(&format!(
        "task-btf ÷ helper, the programs' time above the empty program's: nbr {}, tgt {}; \
         per call above bare: nbr pread {}, read {}\n",
        ratio(body("task-btf nbr") / body("helper nbr")),
        ratio(body("task-btf tgt") / body("helper tgt")),
        ratio(added("task-btf nbr", Op::Pread) / added("helper nbr", Op::Pread)),
        ratio(added("task-btf nbr", Op::Read) / added("helper nbr", Op::Read)),
    ));
    if let Err(e) = &stats_guard {
        out.push_str(&format!("BPF statistics unavailable: {e}\n"));
    }
    out.push_str(&format!("counts exact: {}\n", exact.join(", ")));
    j.set("offsets", [off.cgroups, off.dfl_cgrp, off.kn, off.id].map(|o| o as u64).to_vec());
    j.set("exact", exact);
    Ok((out, j))
}
