//! KTM beside the programs BanyanDB ships, in the tight loop (issue 26).
//!
//! ```text
//! KTM_SHIPPED_SRC=/path/to/ktm-ebpf cargo bench --bench shipped
//! KTM_SHIPPED_SRC=... cargo bench --bench shipped -- --rounds 15 --calls 200000
//! ```
//!
//! Four configurations in interleaved rounds (each round starts one configuration later),
//! the overhead bench's loops on one pinned CPU, this thread named `ktmbench` in a cgroup v2
//! of its own:
//!
//! - `bare`: no BPF program;
//! - `floor`: empty programs (`r0 = 0; exit`) on the iomonitor's attach points;
//! - `ktm`: the iomonitor in cgroup mode, first on another cgroup (`ktm nbr`: this thread is a
//!   neighbour), then on this thread's (`ktm tgt`);
//! - `shipped`: SkyAPM/ktm-ebpf's iomonitor.c built from `KTM_SHIPPED_SRC` and loaded as the
//!   FODC agent loads it (see `shipped/shipped.rs`), `config_map` on another cgroup
//!   (`shipped nbr`), then on this thread's (`shipped tgt`).
//!
//! Each loop's counts are checked: the target rows must count every pread and read of the
//! loop (warm-up included) and nothing of getppid; the neighbour rows nothing. Three measures,
//! each as the median and the 10th percentile of the rounds, with the ratios KTM ÷ shipped
//! (target, neighbour) and neighbour ÷ floor, all from this one run:
//!
//! - the measuring thread's CPU time per call (`CLOCK_THREAD_CPUTIME_ID`): on a shared host it
//!   leaves out the time other jobs hold the pinned CPU;
//! - wall time per call (the overhead bench's measure);
//! - the programs' own time per call as BPF stats count it, in interleaved rounds of their
//!   own with stats on (stats add two clock reads per run, which the other rounds must not pay).
//!
//! Skips with a message when `KTM_SHIPPED_SRC` is unset or the shipped programs do not build.
//! Needs root.

#[allow(dead_code)]
#[path = "overhead/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "overhead/json.rs"]
mod json;
#[allow(dead_code)]
#[path = "overhead/progs.rs"]
mod progs;
#[allow(dead_code)]
#[path = "shipped/shipped.rs"]
mod shipped;
#[allow(dead_code)]
#[path = "overhead/stats.rs"]
mod stats;
#[allow(dead_code)]
#[path = "overhead/table.rs"]
mod table;

use harness::{pin_to, Bench, CgroupPlace, Config, Fixture, Op, R};
use ktm::attach::Policy;
use ktm::iomonitor::{IoMonitor, Scope, Snapshot};
use shipped::Shipped;
use table::Table;

/// The measuring thread's comm, which the shipped programs are built to require.
const COMM: &str = "ktmbench";

struct Opts {
    rounds: usize,
    calls: usize,
}

fn parse() -> R<Opts> {
    let mut o = Opts { rounds: 9, calls: 200_000 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> R<usize> {
            Ok(args.next().ok_or(format!("{what} needs a value"))?.parse().map_err(|e| format!("{what}: {e}"))?)
        };
        match a.as_str() {
            "--rounds" => o.rounds = num("--rounds")?.max(1),
            "--calls" => o.calls = num("--calls")?.max(1000),
            "--quick" => (o.rounds, o.calls) = (3, 50_000),
            "--bench" => {}
            other if other.starts_with("--") => return Err(format!("unknown option {other}").into()),
            _ => {}
        }
    }
    Ok(o)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("shipped: a benchmark; run it with `cargo bench --bench shipped`");
        return;
    }
    let opts = parse().unwrap_or_else(|e| {
        eprintln!("shipped: {e}");
        std::process::exit(2)
    });
    if let Err(e) = run(&opts) {
        eprintln!("shipped: {e}");
        std::process::exit(1);
    }
}

/// The loops of the comparison: the cached pread and read the programs count, and getppid,
/// which no program of either observes (what every other syscall pays).
const OPS: [Op; 3] = Op::ALL;

/// Events a loop should have counted: the calls for the target's pread and read loops.
fn ktm_counted(op: Op, a: &Snapshot, b: &Snapshot) -> u64 {
    match op {
        Op::Pread => b.pread.count - a.pread.count,
        Op::Read => b.read.count - a.read.count,
        _ => (b.pread.count + b.read.count) - (a.pread.count + a.read.count),
    }
}

fn shipped_counted(op: Op, a: &shipped::Counts, b: &shipped::Counts) -> u64 {
    match op {
        Op::Pread => b.pread - a.pread,
        Op::Read => b.read - a.read,
        _ => (b.pread + b.read) - (a.pread + a.read),
    }
}

/// Counted per call of a loop: 1 for a target's pread and read loops, 0 otherwise.
fn expected(row: &str, op: Op) -> f64 {
    if row.ends_with("tgt") && matches!(op, Op::Pread | Op::Read) {
        1.0
    } else {
        0.0
    }
}

fn run(opts: &Opts) -> R<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP shipped bench: needs root (bpf, tracepoints, cgroups)");
        return Ok(());
    }
    let built = match Shipped::build(COMM) {
        Ok(s) => s,
        Err(e) => {
            println!("{}", shipped::skip_reason(&e.to_string()));
            return Ok(());
        }
    };
    let policy = Policy::from_env();
    let points = stats::ktm_points(&IoMonitor::start(&policy)?);
    let cpus = ktm::sys::online_cpus()?;
    let cpu_pair = [cpus[0], *cpus.last().unwrap_or(&cpus[0])];
    let fixture = Fixture::new()?;
    let fs = fixture.fs_type();
    ktm::workload::set_comm(COMM)?;
    pin_to(cpu_pair[1])?;
    let place = CgroupPlace::enter()?;
    let (mine, other) = (harness::cgroup_id(&place.mine)?, harness::cgroup_id(&place.other)?);
    let mut bench = Bench::new(opts.calls, cpu_pair, fixture)?;
    // The shipped programs belong to another process (the loader), which the harness would
    // take for another job's: no round is discarded; medians and a low percentile instead.
    bench.max_discards = 0;
    let loadavg_start = harness::read_line("/proc/loadavg");
    let floor = progs::floor_design(&points);
    let bad: std::cell::RefCell<Vec<String>> = Default::default();
    let check = |row: &str, op: Op, counted: u64, made: usize| {
        let per = counted as f64 / made as f64;
        if (per - expected(row, op)).abs() > 1e-9 {
            bad.borrow_mut().push(format!("{row} {op}: counted {counted} of {made} calls"));
        }
    };
    let attached_shipped = std::cell::Cell::new(0);
    {
        let mut configs: Vec<Config> = vec![
            (
                "bare",
                Box::new(|b: &mut Bench| {
                    for op in OPS {
                        timed(b, "bare", op);
                    }
                    Ok(())
                }),
            ),
            (
                "floor",
                Box::new(|b: &mut Bench| {
                    let _set = progs::Set::build(&floor)?;
                    for op in OPS {
                        timed(b, "floor", op);
                    }
                    Ok(())
                }),
            ),
            (
                "ktm",
                Box::new(|b: &mut Bench| {
                    let mon = IoMonitor::start(&policy)?;
                    for (row, cg) in [("ktm nbr", other), ("ktm tgt", mine)] {
                        mon.set_scope(&Scope::Cgroup(cg))?;
                        for op in OPS {
                            let s0 = mon.snapshot()?;
                            let made = timed(b, row, op);
                            let s1 = mon.snapshot()?;
                            check(row, op, ktm_counted(op, &s0, &s1), made);
                        }
                    }
                    Ok(())
                }),
            ),
            (
                "shipped",
                Box::new(|b: &mut Bench| {
                    let mut s = built.start(other)?;
                    attached_shipped.set(s.attached);
                    for (row, cg) in [("shipped nbr", other), ("shipped tgt", mine)] {
                        s.set_cgroup(cg)?;
                        for op in OPS {
                            let c0 = s.counts()?;
                            let made = timed(b, row, op);
                            let c1 = s.counts()?;
                            check(row, op, shipped_counted(op, &c0, &c1), made);
                        }
                    }
                    Ok(())
                }),
            ),
        ];
        harness::interleave(&mut bench, "side by side", opts.rounds, &mut configs)?;
    }
    // The programs' own time per call, as BPF stats count it, in rounds of their own (stats
    // add two clock reads per run, which the rounds above must not pay).
    {
        let _stats = ktm::sys::bpf::enable_stats()?;
        let mut configs: Vec<Config> = vec![
            (
                "floor",
                Box::new(|b: &mut Bench| {
                    let set = progs::Set::build(&floor)?;
                    let p = set.programs();
                    for op in STATS_OPS {
                        let a = progs::stats_now(&p)?;
                        let n = b.exercise(&[op]);
                        let z = progs::stats_now(&p)?;
                        b.push("floor", &format!("{op} bpf"), total_ns(&progs::stats_delta(&p, &a, &z)) / n as f64);
                    }
                    Ok(())
                }),
            ),
            (
                "ktm",
                Box::new(|b: &mut Bench| {
                    let mon = IoMonitor::start(&policy)?;
                    let p = stats::ktm_programs(&mon);
                    for (row, cg) in [("ktm nbr", other), ("ktm tgt", mine)] {
                        mon.set_scope(&Scope::Cgroup(cg))?;
                        for op in STATS_OPS {
                            let a = progs::stats_now(&p)?;
                            let n = b.exercise(&[op]);
                            let z = progs::stats_now(&p)?;
                            b.push(row, &format!("{op} bpf"), total_ns(&progs::stats_delta(&p, &a, &z)) / n as f64);
                        }
                    }
                    Ok(())
                }),
            ),
            (
                "shipped",
                Box::new(|b: &mut Bench| {
                    let mut s = built.start(other)?;
                    for (row, cg) in [("shipped nbr", other), ("shipped tgt", mine)] {
                        s.set_cgroup(cg)?;
                        for op in STATS_OPS {
                            let a = s.counts()?;
                            let n = b.exercise(&[op]);
                            let z = s.counts()?;
                            b.push(row, &format!("{op} bpf"), total_ns(&a.stats_since(&z)) / n as f64);
                        }
                    }
                    Ok(())
                }),
            ),
        ];
        harness::interleave(&mut bench, "program time", opts.rounds, &mut configs)?;
    }
    drop(place);
    let samples = bench.take();
    let noise = bench.noise.iter().map(|n| n.others).sum::<f64>() / bench.noise.len().max(1) as f64;

    println!(
        "# KTM beside the shipped programs (SkyAPM/ktm-ebpf {}), tight loop\n\
         kernel {}, {} CPUs online, fixture files on {fs}, measuring thread pinned to CPU {}, {} interleaved \
         rounds x {} calls per loop\n\
         load average at start {loadavg_start}, at end {}; other processes kept {noise:.2} CPUs busy on average \
         during the rounds\n\
         shipped: {} programs attached by the libbpf loader; ktm: {} programs\n",
        built.commit,
        harness::read_line("/proc/sys/kernel/osrelease"),
        cpus.len(),
        cpu_pair[1],
        opts.rounds,
        opts.calls,
        harness::read_line("/proc/loadavg"),
        attached_shipped.get(),
        points.len(),
    );
    for (suffix, what) in [
        (" cpu", "CPU time of the measuring thread per call (user + system)"),
        ("", "wall time per call (includes the time other jobs held the CPU)"),
    ] {
        print_tables(&samples, suffix, what);
    }
    print_bpf(&samples);
    let bad = bad.into_inner();
    if bad.is_empty() {
        println!(
            "\ncounts exact: in every round, ktm tgt and shipped tgt counted each pread and read call of their loops \
             (warm-up included) and no getppid; ktm nbr and shipped nbr counted nothing"
        );
        Ok(())
    } else {
        println!("\nCOUNTS NOT EXACT:");
        for b in &bad {
            println!("  {b}");
        }
        Err(format!("{} loops counted wrong", bad.len()).into())
    }
}

/// A measure (median or low percentile of a row's column) turned into a ratio for one op.
type RatioOf<'a> = dyn Fn(Op, &dyn Fn(&str, Op) -> f64) -> f64 + 'a;

/// The ns-per-call table and the ratios of one measure (`suffix`: the columns' suffix).
fn print_tables(samples: &harness::Samples, suffix: &str, what: &str) {
    let rows = ["bare", "floor", "ktm nbr", "shipped nbr", "ktm tgt", "shipped tgt"];
    let col = |op: Op| format!("{}{suffix}", op.name());
    let low = |row: &str, op: Op| percentile(samples.get(row, &col(op)).unwrap_or(&[]), 0.10);
    let med = |row: &str, op: Op| samples.median(row, &col(op));
    let mut t = Table::new(
        &format!("{what}, ns: median of the rounds (10th percentile), and added over bare at the median"),
        &["configuration", "pread", "read", "getppid", "pread + ns", "read + ns", "getppid + ns"],
    );
    for row in rows {
        let mut cells = vec![row.to_string()];
        cells.extend(OPS.iter().map(|&op| format!("{:.0} ({:.0})", med(row, op), low(row, op))));
        cells.extend(OPS.iter().map(|&op| format!("{:.0}", med(row, op) - med("bare", op))));
        t.row(cells);
    }
    print!("{}", t.render());
    // Ratios of added cost, at the median and at the 10th percentile.
    let added = |row: &str, op: Op, f: &dyn Fn(&str, Op) -> f64| f(row, op) - f("bare", op);
    let mut r = Table::new(
        &format!("Ratios of {what}, this run, at the medians (at the 10th percentiles)"),
        &["ratio", "pread", "read", "getppid"],
    );
    let ratio_row = |name: &str, f: &RatioOf| {
        let mut cells = vec![name.to_string()];
        cells.extend(OPS.iter().map(|&op| format!("{:.2} ({:.2})", f(op, &med), f(op, &low))));
        cells
    };
    r.row(ratio_row("ktm tgt ÷ shipped tgt, added ns over bare", &|op, f| {
        added("ktm tgt", op, f) / added("shipped tgt", op, f)
    }));
    r.row(ratio_row("ktm nbr ÷ shipped nbr, added ns over bare", &|op, f| {
        added("ktm nbr", op, f) / added("shipped nbr", op, f)
    }));
    r.row(ratio_row("ktm nbr ÷ floor, ns per call", &|op, f| f("ktm nbr", op) / f("floor", op)));
    r.row(ratio_row("shipped nbr ÷ floor, ns per call", &|op, f| f("shipped nbr", op) / f("floor", op)));
    r.row(ratio_row("ktm tgt ÷ bare", &|op, f| f("ktm tgt", op) / f("bare", op)));
    r.row(ratio_row("shipped tgt ÷ bare", &|op, f| f("shipped tgt", op) / f("bare", op)));
    r.row(ratio_row("ktm nbr ÷ bare", &|op, f| f("ktm nbr", op) / f("bare", op)));
    r.row(ratio_row("shipped nbr ÷ bare", &|op, f| f("shipped nbr", op) / f("bare", op)));
    print!("{}", r.render());
}

/// The loops whose programs' time BPF stats measure.
const STATS_OPS: [Op; 2] = [Op::Pread, Op::Read];

/// Every program's time over a loop, ns.
fn total_ns(v: &[progs::ProgStat]) -> f64 {
    v.iter().map(|p| p.ns_per_run * p.runs as f64).filter(|x| x.is_finite()).sum()
}

/// The programs' own ns per call (BPF stats) and the ratios of this run.
fn print_bpf(samples: &harness::Samples) {
    let col = |op: Op| format!("{op} bpf");
    let low = |row: &str, op: Op| percentile(samples.get(row, &col(op)).unwrap_or(&[]), 0.10);
    let med = |row: &str, op: Op| samples.median(row, &col(op));
    let mut t = Table::new(
        "Programs' own time per call as BPF stats count it (every program that ran during the loop), ns: median of \
         the rounds (10th percentile)",
        &["configuration", "pread", "read"],
    );
    for row in ["floor", "ktm nbr", "shipped nbr", "ktm tgt", "shipped tgt"] {
        let mut cells = vec![row.to_string()];
        cells.extend(STATS_OPS.iter().map(|&op| format!("{:.0} ({:.0})", med(row, op), low(row, op))));
        t.row(cells);
    }
    print!("{}", t.render());
    let mut r = Table::new(
        "Ratios of the programs' own time, this run, at the medians (at the 10th percentiles)",
        &["ratio", "pread", "read"],
    );
    for (a, b) in
        [("ktm tgt", "shipped tgt"), ("ktm nbr", "shipped nbr"), ("ktm nbr", "floor"), ("shipped nbr", "floor")]
    {
        let mut cells = vec![format!("{a} ÷ {b}")];
        cells.extend(
            STATS_OPS.iter().map(|&op| format!("{:.2} ({:.2})", med(a, op) / med(b, op), low(a, op) / low(b, op))),
        );
        r.row(cells);
    }
    print!("{}", r.render());
}

/// CPU time of the calling thread (user + system), ns: unlike wall time, it leaves out the
/// time other jobs of a shared host hold the pinned CPU.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Measures one loop of `op` under `row`: wall ns per call (the harness's column, `op`'s
/// name) and this thread's CPU ns per call over the warm-up and the loop (column "`op` cpu").
/// Returns the calls made.
fn timed(b: &mut Bench, row: &str, op: Op) -> usize {
    let t0 = thread_cpu_ns();
    let made = b.measure(row, &[op]);
    let cpu = (thread_cpu_ns() - t0) as f64 / made as f64;
    b.push(row, &format!("{op} cpu"), cpu);
    made
}

/// The `p` quantile (nearest rank) of samples; NaN when there are none.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}
