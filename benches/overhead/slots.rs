//! Group `slots` (tables 6 and 7): per-CPU vs shared counters, and hash vs LRU hash vs array
//! start-time maps, under one and two threads of preads.

use super::harness::{self, Bench, Config, Op, R};
use super::json::J;
use super::opts::Opts;
use super::progs::{self, Body, Count, Design, Set};
use super::stats::stats_table;
use super::table::{f0, f3, ratio, Table};
use ktm::attach::AttachPoint;

/// Per-CPU vs shared counters, and hash vs LRU hash start maps: 1 and 2 threads of preads.
pub fn slot_groups(b: &mut Bench, opts: &Opts) -> R<((String, J), (String, J))> {
    let enter = AttachPoint::tracepoint("syscalls", "sys_enter_pread64");
    let exit = AttachPoint::tracepoint("syscalls", "sys_exit_pread64");
    let count = |per_cpu: bool, c: Count| {
        Design::new(vec![progs::cnt(per_cpu)]).part("count", enter.clone(), Body::Filter(vec![], c))
    };
    let pcpu: Vec<(&'static str, Design)> = vec![
        ("per-CPU slot, atomic add", count(true, Count::Atomic)),
        ("per-CPU slot, plain add", count(true, Count::Plain)),
        ("shared slot, atomic add", count(false, Count::Atomic)),
    ];
    let ts = |kind: &str| {
        Design::new(vec![progs::ts(kind)]).part("ts_enter", enter.clone(), Body::TsEnter).part(
            "ts_exit",
            exit.clone(),
            Body::TsExit,
        )
    };
    let hash: Vec<(&'static str, Design)> = vec![
        ("hash (preallocated)", ts("hash")),
        ("hash (BPF_F_NO_PREALLOC)", ts("hash_noprealloc")),
        ("LRU hash", ts("lru")),
        ("array slot by tid", {
            Design::new(vec![progs::ts("array")]).part("slot_enter", enter.clone(), Body::SlotEnter).part(
                "slot_exit",
                exit.clone(),
                Body::SlotExit,
            )
        }),
    ];
    let mut out = Vec::new();
    for (group, title, designs) in [
        (
            "per-CPU vs shared",
            "6. Counter slot: per-CPU vs one shared slot, counting program on sys_enter_pread64",
            &pcpu,
        ),
        (
            "hash vs LRU",
            "7. Start timestamps: hash vs LRU hash vs array slot (store at enter, take at exit of pread64)",
            &hash,
        ),
    ] {
        let mut configs: Vec<Config> = vec![(
            "bare",
            Box::new(|b: &mut Bench| {
                b.measure("bare", &[Op::Pread]);
                b.measure2("bare", Op::Pread)
            }),
        )];
        for (row, d) in designs.iter() {
            let row: &'static str = row;
            configs.push((
                row,
                Box::new(move |b: &mut Bench| {
                    let _set = Set::build(d)?;
                    b.measure(row, &[Op::Pread]);
                    b.measure2(row, Op::Pread)
                }),
            ));
        }
        harness::interleave(b, group, opts.rounds, &mut configs)?;
        drop(configs);
        let samples = b.take();

        let stats_fd = ktm::sys::bpf::enable_stats()?;
        let mut results = Vec::new();
        let mut checks = Vec::new();
        for (row, d) in designs.iter() {
            let set = Set::build(d)?;
            let progs = set.programs();
            let a = progs::stats_now(&progs)?;
            b.exercise(&[Op::Pread]);
            let m = progs::stats_now(&progs)?;
            let c0 = set.count();
            b.two_threads(Op::Pread)?;
            let z = progs::stats_now(&progs)?;
            if let (Some(c0), Some(c1)) = (c0, set.count()) {
                checks.push((*row, (c1 - c0) as f64 / (2 * (b.calls + b.warmup())) as f64));
            }
            results.push((
                *row,
                vec![
                    ("1T".to_string(), progs::stats_delta(&progs, &a, &m)),
                    ("2T".to_string(), progs::stats_delta(&progs, &m, &z)),
                ],
            ));
        }
        drop(stats_fd);

        let mut t =
            Table::new(title, &["configuration", "pread ns (1 thread)", "pread ns (2 threads)", "1T/bare", "2T/bare"]);
        let mut rj = J::obj();
        let mut rows = vec!["bare"];
        rows.extend(designs.iter().map(|(r, _)| *r));
        for row in rows {
            let (one, two) = (samples.median(row, "pread"), samples.median(row, "pread 2T"));
            let (b1, b2) = (samples.median("bare", "pread"), samples.median("bare", "pread 2T"));
            t.row(vec![row.into(), f0(one), f0(two), ratio(one / b1), ratio(two / b2)]);
            rj.set(
                row,
                J::obj()
                    .with("pread_1t_ns", one)
                    .with("pread_2t_ns", two)
                    .with("samples_1t", samples.get(row, "pread").map(|v| v.to_vec()).unwrap_or_default())
                    .with("samples_2t", samples.get(row, "pread 2T").map(|v| v.to_vec()).unwrap_or_default()),
            );
        }
        let mut table = t.render();
        let (st, sj) =
            stats_table(&format!("{title}: ns per program run (BPF stats)"), &results, &["1T".into(), "2T".into()]);
        table.push_str(&st);
        let mut cj = J::obj();
        if !checks.is_empty() {
            let mut c = Table::new(
                "counted / pread calls in the 2-thread run (1.000 = no update lost)",
                &["configuration", "ratio"],
            );
            for (row, r) in &checks {
                c.row(vec![row.to_string(), f3(*r)]);
                cj.set(row, *r);
            }
            table.push_str(&c.render());
        }
        out.push((table, J::obj().with("cost", rj).with("program_stats", sj).with("counted_per_call_2t", cj)));
    }
    let hash = out.pop().ok_or("no hash group")?;
    let pcpu = out.pop().ok_or("no per-CPU group")?;
    Ok((pcpu, hash))
}
