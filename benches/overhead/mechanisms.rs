//! Group `mechanisms` (tables 5 and 5b): classic syscall tracepoints vs raw sys_enter and
//! sys_exit, the order of the filters, classic vs raw filemap:mm_filemap_get_pages.

use super::cost::cost_table;
use super::harness::{self, Bench, Config, Op, R};
use super::json::J;
use super::opts::Opts;
use super::progs::{self, Body, Count, Design, Set, Test};
use super::scopes::Ids;
use super::stats::{stats_per_op, stats_table};
use ktm::attach::AttachPoint;

pub fn mechanism_group(b: &mut Bench, opts: &Opts, ids: &Ids) -> R<(String, J)> {
    let tp = |n: &str| AttachPoint::tracepoint("syscalls", n);
    let tp_points = [
        ("enter_read", tp("sys_enter_read")),
        ("exit_read", tp("sys_exit_read")),
        ("enter_pread", tp("sys_enter_pread64")),
        ("exit_pread", tp("sys_exit_pread64")),
    ];
    let raw_points = [
        ("sys_enter", AttachPoint::raw_tracepoint("sys_enter"), Test::EnterNr),
        ("sys_exit", AttachPoint::raw_tracepoint("sys_exit"), Test::ExitNr),
    ];
    let tp_design = |maps: Vec<ktm::maps::MapDef>, body: Body| {
        let mut d = Design::new(maps);
        for (l, p) in &tp_points {
            d = d.part(l, p.clone(), body.clone());
        }
        d.cgroup = Some(ids.other);
        d
    };
    let raw_design = |maps: Vec<ktm::maps::MapDef>, body: &dyn Fn(Test) -> Body| {
        let mut d = Design::new(maps);
        for (l, p, t) in &raw_points {
            d = d.part(l, p.clone(), body(*t));
        }
        d.cgroup = Some(ids.other);
        d
    };
    let (pc, cfg) = (progs::cnt(true), progs::cfg());
    let designs: Vec<(&'static str, Design)> = vec![
        ("tp empty", tp_design(vec![], Body::Empty)),
        ("tp count", tp_design(vec![pc], Body::Filter(vec![], Count::Atomic))),
        ("tp cgroup>count (nbr)", tp_design(vec![pc, cfg], Body::Filter(vec![Test::Cgroup], Count::Atomic))),
        ("raw empty", raw_design(vec![], &|_| Body::Empty)),
        ("raw nr>count", raw_design(vec![pc], &|t| Body::Filter(vec![t], Count::Atomic))),
        (
            "raw nr>cgroup>count (nbr)",
            raw_design(vec![pc, cfg], &|t| Body::Filter(vec![t, Test::Cgroup], Count::Atomic)),
        ),
        (
            "raw cgroup>nr>count (nbr)",
            raw_design(vec![pc, cfg], &|t| Body::Filter(vec![Test::Cgroup, t], Count::Atomic)),
        ),
        // The page-cache lookup event every buffered read passes: classic vs raw.
        (
            "filemap_get_pages tp empty",
            Design::new(vec![]).part(
                "get_pages",
                AttachPoint::tracepoint("filemap", "mm_filemap_get_pages"),
                Body::Empty,
            ),
        ),
        (
            "filemap_get_pages raw empty",
            Design::new(vec![]).part("get_pages", AttachPoint::raw_tracepoint("mm_filemap_get_pages"), Body::Empty),
        ),
    ];
    let mut configs: Vec<Config> = vec![(
        "bare",
        Box::new(|b: &mut Bench| {
            b.measure("bare", &Op::ALL);
            Ok(())
        }),
    )];
    for (row, d) in &designs {
        let row: &'static str = row;
        configs.push((
            row,
            Box::new(move |b: &mut Bench| {
                let _set = Set::build(d)?;
                b.measure(row, &Op::ALL);
                Ok(())
            }),
        ));
    }
    harness::interleave(b, "mechanisms", opts.rounds, &mut configs)?;
    drop(configs);
    let samples = b.take();
    let mut rows = vec!["bare"];
    rows.extend(designs.iter().map(|(r, _)| *r));
    let (mut table, cost) = cost_table(
        &samples,
        "5. Mechanisms: classic syscall tracepoints (read, pread64 enter/exit) vs raw sys_enter/sys_exit; \
         filter order; classic vs raw filemap:mm_filemap_get_pages (ns per call, medians)",
        &rows,
        "bare",
        &opts.mix,
        &Op::ALL,
    );

    let _stats = ktm::sys::bpf::enable_stats()?;
    let mut results = Vec::new();
    for (row, d) in &designs {
        let set = Set::build(d)?;
        let per = stats_per_op(b, &set.programs(), &Op::ALL)?;
        results.push((*row, per.into_iter().map(|(op, s)| (op.name().to_string(), s)).collect()));
    }
    let cols: Vec<String> = Op::ALL.iter().map(|o| o.name().to_string()).collect();
    let (st, sj) = stats_table(
        "5b. Mechanisms: ns per program run (BPF stats) during each loop; a raw program runs on every syscall",
        &results,
        &cols,
    );
    table.push_str(&st);
    Ok((table, J::obj().with("cost", cost).with("program_stats", sj)))
}
