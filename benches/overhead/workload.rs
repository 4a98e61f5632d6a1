//! Group `workload` (tables 2, 3 and 3b): the cost per call of the iomonitor as neighbour
//! and as target against bare and the floor, what it counted, and each program's cost.

use super::cost::{cost_table, measure_counted};
use super::harness::{self, Bench, Config, Op, Samples, R};
use super::json::J;
use super::opts::Opts;
use super::progs::{floor_design, ProgStat, Set};
use super::scopes::{variants, Ids};
use super::stats::{ktm_programs, stats_during};
use super::table::{f1, f3, Table};
use ktm::attach::{AttachPoint, Policy};
use ktm::iomonitor::IoMonitor;
use std::collections::BTreeMap;

pub struct Group1 {
    pub table: String,
    pub json: J,
    pub samples: Samples,
}

pub fn main_group(
    b: &mut Bench,
    opts: &Opts,
    policy: &Policy,
    points: &[(String, AttachPoint)],
    ids: &Ids,
) -> R<Group1> {
    let floor = floor_design(points);
    let vars = variants(ids);
    let mut configs: Vec<Config> = vec![
        (
            "bare",
            Box::new(|b: &mut Bench| {
                b.measure("bare", &Op::WORKLOAD);
                Ok(())
            }),
        ),
        (
            "floor",
            Box::new(|b: &mut Bench| {
                let _set = Set::build(&floor)?;
                b.measure("floor", &Op::WORKLOAD);
                Ok(())
            }),
        ),
        (
            "ktm",
            Box::new(|b: &mut Bench| {
                let mon = IoMonitor::start(policy)?;
                for (row, scope) in &vars {
                    mon.set_scope(scope)?;
                    measure_counted(b, &mon, row, true)?;
                }
                Ok(())
            }),
        ),
    ];
    harness::interleave(b, "workload", opts.rounds, &mut configs)?;
    drop(configs);
    let samples = b.take();
    let b = &samples;

    let mut rows = vec!["bare", "floor"];
    rows.extend(vars.iter().map(|(r, _)| *r));
    let (mut table, mut json) = cost_table(
        b,
        "3. Workload cost: ns per call (medians); floor = empty programs on the iomonitor's attach points",
        &rows,
        "floor",
        &opts.mix,
        &Op::WORKLOAD,
    );
    let mut c = Table::new(
        "3b. What the iomonitor counted per call of each loop (sanity: 1 for the target, 0 for a neighbour)",
        &[
            "configuration",
            "pread: latency",
            "pread: cache lookups",
            "read: latency",
            "read: cache lookups",
            "getppid",
            "evict: deletes",
        ],
    );
    let mut cj = J::obj();
    for (row, _) in &vars {
        let g = |col: String| b.median(row, &col);
        c.row(vec![
            row.to_string(),
            f3(g("pread counted/call".into())),
            f3(g("pread cache lookups/call".into())),
            f3(g("read counted/call".into())),
            f3(g("read cache lookups/call".into())),
            f3(g("getppid counted/call".into())),
            f3(g("evict counted/call".into())),
        ]);
        cj.set(
            row,
            J::obj()
                .with("pread_latency_per_call", g("pread counted/call".into()))
                .with("pread_cache_lookups_per_call", g("pread cache lookups/call".into()))
                .with("read_latency_per_call", g("read counted/call".into()))
                .with("read_cache_lookups_per_call", g("read cache lookups/call".into()))
                .with("evict_deletes_per_call", g("evict counted/call".into())),
        );
    }
    table.push_str(&c.render());
    json = J::obj().with("rows", json).with("counted", cj).with("mix_pread_read_other", opts.mix.to_vec());
    Ok(Group1 { table, json, samples })
}

pub fn main_stats(b: &mut Bench, policy: &Policy, points: &[(String, AttachPoint)], ids: &Ids) -> R<(String, J)> {
    let _stats = ktm::sys::bpf::enable_stats()?;
    let mut cols: Vec<&str> = vec!["empty"];
    let mut cells: BTreeMap<(String, &str), ProgStat> = BTreeMap::new();
    b.exercise(&Op::WORKLOAD);
    {
        let set = Set::build(&floor_design(points))?;
        for s in stats_during(b, &set.programs(), &Op::WORKLOAD)? {
            cells.insert((s.label.clone(), "empty"), s);
        }
    }
    let mon = IoMonitor::start(policy)?;
    let progs = ktm_programs(&mon);
    for (row, scope) in variants(ids) {
        mon.set_scope(&scope)?;
        let col = row.trim_start_matches("ktm ");
        cols.push(col);
        for s in stats_during(b, &progs, &Op::WORKLOAD)? {
            cells.insert((s.label.clone(), col), s);
        }
    }
    drop(mon);
    let mut head = vec!["program", "attach point"];
    head.extend(cols.iter().copied());
    head.push("runs (tgt cgroup pass)");
    let mut t = Table::new(
        &format!(
            "2. Per-program cost: BPF_ENABLE_STATS run_time_ns/run_cnt (ns per run) over {} calls each of pread, read, \
             getppid, evict (evict: 1/20 of them); empty = r0 = 0; exit at the same point",
            b.calls
        ),
        &head,
    );
    let mut pj = Vec::new();
    for (name, point) in points {
        let mut row = vec![name.clone(), point.to_string()];
        let mut o = J::obj().with("program", name.as_str()).with("point", point.to_string());
        for col in &cols {
            let s = cells.get(&(name.clone(), *col));
            row.push(f1(s.map_or(f64::NAN, |s| s.ns_per_run)));
            o.set(col, J::obj().with("ns_per_run", s.map(|s| s.ns_per_run)).with("runs", s.map(|s| s.runs)));
        }
        let runs = cells.get(&(name.clone(), "tgt cgroup")).map_or(0, |s| s.runs);
        row.push(runs.to_string());
        t.row(row);
        pj.push(o);
    }
    Ok((t.render(), J::Arr(pj)))
}
