//! KTM's overhead benchmark (issue 6): start-up, per-program cost, workload cost per call
//! (bare, floor, neighbour, target), collection cost, and the mechanism comparisons the
//! README's choices rest on.
//!
//! ```text
//! cargo bench --bench overhead                     # full run, about a minute
//! cargo bench --bench overhead -- --quick          # about 20 s
//! cargo bench --bench overhead -- --json out.json  # also write the figures as JSON
//! cargo bench --bench overhead -- --only guest-mechanisms --quick
//! .ci/qemu/bench-guest.sh                          # guest-mechanisms in the QEMU guests
//! ```
//!
//! `--only GROUP,...` picks groups; `--json -` prints the JSON on stdout between
//! `KTM-BENCH-JSON-BEGIN` and `KTM-BENCH-JSON-END` lines. Arguments in `KTM_BENCH_ARGS` are
//! appended to the command line's (the QEMU runner passes only libtest's). With
//! `KTM_IN_QEMU` set (the guests' /init), the defaults are 9 rounds of 20 000 calls.
//!
//! Needs root (bpf, perf tracepoints, cgroup v2). Prints the tables to stdout, progress to
//! stderr. Workload figures are medians of interleaved rounds on one pinned CPU; ratios are
//! ratios of those medians.

#[path = "overhead/guest.rs"]
mod guest;
#[path = "overhead/harness.rs"]
mod harness;
#[path = "overhead/json.rs"]
mod json;
#[path = "overhead/progs.rs"]
mod progs;

use harness::{bpf_fds, median, mono_ns, pin_to, status_kb, Bench, CgroupPlace, Config, Fixture, Op, Samples, R};
use json::J;
use ktm::attach::{self, AttachPoint, Attachment, Policy};
use ktm::iomonitor::{IoMonitor, Scope, Snapshot};
use ktm::load::{self, LoadedProgram, ProgramSpec};
use ktm::programs::layout;
use ktm::sys::AsRawFd;
use progs::{Body, Count, Design, ProgStat, Set, Test};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The lines around the JSON of `--json -`.
const JSON_BEGIN: &str = "KTM-BENCH-JSON-BEGIN";
const JSON_END: &str = "KTM-BENCH-JSON-END";

/// Set in the re-executed child that measures start-up from process start.
const CHILD_ENV: &str = "KTM_OVERHEAD_CHILD";
/// The comm of the measuring thread (target in comm mode).
const COMM: &str = "ktmbench";
/// A comm prefix no process here has (neighbour in comm mode).
const OTHER_COMM: &str = "banyand";
/// The comm of the child the collection group's module finds as its target.
const TARGET_COMM: &str = "ktmbenchtarget";

struct Opts {
    quick: bool,
    json: Option<PathBuf>,
    rounds: usize,
    calls: usize,
    starts: usize,
    reexecs: usize,
    snapshots: usize,
    /// Syscall mix (pread, read, other) for the cost-per-syscall column.
    mix: [f64; 3],
    /// Pause before a "settled" start: a start within ~100 ms of a detach waits for the
    /// kernel (see the start-up table).
    pause_ms: u64,
    /// Groups to run (all when empty).
    only: Vec<String>,
}

/// The groups `--only` can pick.
const GROUPS: [&str; 6] = ["startup", "collection", "workload", "mechanisms", "slots", "guest-mechanisms"];

/// Extra arguments, whitespace-separated, appended to the command line's: a QEMU guest runs
/// every binary as `NAME --test-threads=1 --nocapture`, so `.ci/qemu/bench-guest.sh` selects
/// the measurement with `KTM_BENCH_ARGS="--bench --only guest-mechanisms"` instead.
const ARGS_ENV: &str = "KTM_BENCH_ARGS";

/// The command line's arguments, then those of [`ARGS_ENV`].
fn bench_args() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(extra) = std::env::var(ARGS_ENV) {
        args.extend(extra.split_whitespace().map(String::from));
    }
    args
}

/// Set by the QEMU guests' /init: everything runs under TCG, some 10 to 50 times slower.
fn in_qemu() -> bool {
    std::env::var_os("KTM_IN_QEMU").is_some()
}

impl Opts {
    fn parse() -> Result<Opts, String> {
        let args = bench_args();
        let quick = args.iter().any(|a| a == "--quick");
        // A cached 4 KiB pread costs microseconds under TCG: fewer calls, and more rounds
        // against the drift of a shared host (a guest-mechanisms round takes about 3 s).
        let qemu = in_qemu();
        let mut o = Opts {
            quick,
            json: None,
            rounds: if qemu {
                9
            } else if quick {
                3
            } else {
                5
            },
            calls: if qemu {
                20_000
            } else if quick {
                50_000
            } else {
                200_000
            },
            starts: if quick { 2 } else { 9 },
            reexecs: if quick { 2 } else { 5 },
            snapshots: if quick { 1000 } else { 10_000 },
            mix: [0.10, 0.20, 0.70],
            pause_ms: 250,
            only: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}"));
            match a.as_str() {
                // --test-threads=1 and --nocapture: how the QEMU runner calls every binary.
                "--quick" | "--bench" | "--nocapture" => {}
                a if a.starts_with("--test-threads") => {}
                "--json" => o.json = Some(PathBuf::from(val("a path")?)),
                "--rounds" => o.rounds = val("a number")?.parse().map_err(|_| "bad --rounds")?,
                "--calls" => o.calls = val("a number")?.parse().map_err(|_| "bad --calls")?,
                "--only" => {
                    o.only = val("groups")?.split(',').map(|g| g.trim().to_string()).collect();
                    if let Some(g) = o.only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
                        return Err(format!("--only: unknown group {g} (groups: {})", GROUPS.join(",")));
                    }
                }
                "--mix" => {
                    let v: Vec<f64> =
                        val("pread,read,other")?.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                    let sum: f64 = v.iter().sum();
                    if v.len() != 3 || sum <= 0.0 {
                        return Err("--mix takes three weights: pread,read,other".into());
                    }
                    o.mix = [v[0] / sum, v[1] / sum, v[2] / sum];
                }
                "-h" | "--help" => {
                    println!(
                        "overhead [--quick] [--json PATH|-] [--rounds N] [--calls N] [--mix PREAD,READ,OTHER] \
                         [--only {}]",
                        GROUPS.join(",")
                    );
                    std::process::exit(0);
                }
                other => eprintln!("overhead: ignoring argument {other}"),
            }
        }
        Ok(o)
    }

    fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

fn main() {
    let t_main = mono_ns();
    if std::env::var_os(CHILD_ENV).is_some() {
        std::process::exit(startup_child(t_main));
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench binaries with no
    // arguments, where minutes of measurement in a debug build would be wasted.
    if !bench_args().iter().any(|a| a == "--bench") {
        println!("overhead: a benchmark; run it with `cargo bench --bench overhead`");
        return;
    }
    let opts = Opts::parse().unwrap_or_else(|e| {
        eprintln!("overhead: {e}");
        std::process::exit(2)
    });
    if let Err(e) = run(&opts, t_main) {
        eprintln!("overhead: {e}");
        std::process::exit(1);
    }
}

/// The re-executed child: starts the iomonitor, takes one snapshot, reports times and RSS.
fn startup_child(t_main: u64) -> i32 {
    let t0 = mono_ns();
    let mon = match IoMonitor::start(&Policy::from_env()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("child: {e}");
            return 1;
        }
    };
    let t1 = mono_ns();
    let _ = mon.snapshot();
    println!(
        "{t_main} {t0} {t1} {} {} {}",
        mon.attached_programs(),
        status_kb("VmRSS").unwrap_or(0),
        status_kb("VmHWM").unwrap_or(0)
    );
    0
}

// ---------------------------------------------------------------------------------------
// Output helpers

/// A text table with a title; the first column left-aligned, the rest right-aligned.
struct Table {
    title: String,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(title: &str, head: &[&str]) -> Table {
        Table { title: title.into(), head: head.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let cols = self.head.len();
        let mut w = vec![0; cols];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        // Text columns left, figures right.
        let left: Vec<bool> = (0..cols)
            .map(|i| {
                i == 0
                    || self.rows.iter().any(|r| {
                        r.get(i).and_then(|c| c.chars().next()).is_some_and(|ch| ch.is_alphabetic() || ch == '(')
                    })
            })
            .collect();
        let line = |r: &Vec<String>| {
            let mut s = String::new();
            for (i, width) in w.iter().enumerate() {
                let c = r.get(i).map_or("", |c| c.as_str());
                if i == 0 {
                    s.push_str(&format!("{c:<width$}"));
                } else if left[i] {
                    s.push_str(&format!("  {c:<width$}"));
                } else {
                    s.push_str(&format!("  {c:>width$}"));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = format!("\n## {}\n", self.title);
        out.push_str(&line(&self.head));
        out.push_str(&format!("{}\n", "-".repeat(w.iter().sum::<usize>() + 2 * (cols - 1))));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

fn f0(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.0}")
    } else {
        "-".into()
    }
}

fn f1(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "-".into()
    }
}

fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "-".into()
    }
}

fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}x")
    } else {
        "-".into()
    }
}

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

/// Median, min and max of samples as JSON.
fn dist(v: &[f64]) -> J {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    J::obj().with("median", median(v)).with("min", min).with("max", max).with("n", v.len())
}

/// One target: measured against a limit (lower is better).
struct Target {
    name: String,
    measured: f64,
    limit: f64,
    unit: &'static str,
}

impl Target {
    fn pass(&self) -> bool {
        self.measured.is_finite() && self.measured <= self.limit
    }
}

// ---------------------------------------------------------------------------------------
// The run

fn run(opts: &Opts, t_main: u64) -> R<()> {
    let policy = Policy::from_env();
    // 1. Start-up, first: the first IoMonitor::start of this process, timed from main.
    let t0 = mono_ns();
    let first = IoMonitor::start(&policy);
    let t1 = mono_ns();
    let first = match first {
        Ok(m) => m,
        Err(e) => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            println!("SKIP overhead bench: IoMonitor::start failed ({e}){}", if root { "" } else { "; not root" });
            return Ok(());
        }
    };
    let other_progs_at_start = harness::foreign_programs();
    let mut out = String::new();
    let mut js = J::obj();
    let mut targets: Vec<Target> = Vec::new();

    // The iomonitor's attach points on this kernel, by program name.
    let points = ktm_points(&first);
    let mut plan =
        Table::new("iomonitor attach plan on this kernel", &["probe", "attached", "alternatives that failed"]);
    let mut plan_js = Vec::new();
    for r in first.reports() {
        let failures: Vec<String> = r.failures.iter().map(|(p, why)| format!("{p}: {}", short(why, 40))).collect();
        plan.row(vec![
            r.name.clone(),
            r.attached.as_ref().map_or("NOT ATTACHED".into(), |p| p.to_string()),
            failures.join("; "),
        ]);
        plan_js.push(
            J::obj()
                .with("probe", r.name.as_str())
                .with("attached", r.attached.as_ref().map(|p| p.to_string()))
                .with("failures", failures),
        );
    }
    let attached_programs = first.attached_programs();
    drop(first);
    out.push_str(&plan.render());
    js.set("attach_plan", J::Arr(plan_js));

    let cpus = ktm::sys::online_cpus()?;
    let cpu_pair = [cpus[0], *cpus.last().unwrap_or(&cpus[0])];
    let fixture = Fixture::new()?;
    let fs = fixture.fs_type();
    let loadavg_start = harness::read_line("/proc/loadavg");
    js.set(
        "host",
        J::obj()
            .with("kernel", harness::read_line("/proc/sys/kernel/osrelease"))
            .with("online_cpus", cpus.len())
            .with("loadavg_start", loadavg_start.as_str())
            .with("bpf_stats_enabled_at_start", harness::read_line("/proc/sys/kernel/bpf_stats_enabled"))
            .with("other_bpf_programs_at_start", other_progs_at_start)
            .with("fixture_fs", fs.as_str())
            .with("pinned_cpu", cpu_pair[1])
            .with("rounds", opts.rounds)
            .with("calls_per_loop", opts.calls)
            .with("quick", opts.quick),
    );

    let mut child_rss_kb = None;
    // Printed after the workload groups, in the issue's order (1 to 4).
    let mut coll_table = String::new();
    if opts.runs("startup") {
        eprintln!("start-up ...");
        let startup = startup(opts, &policy, &points, t_main, t0, t1)?;
        out.push_str(&startup.table);
        js.set("startup", startup.json);
        let ms_target = |name: &str, measured| Target { name: name.into(), measured, limit: 10.0, unit: "ms" };
        targets
            .push(ms_target("start-up: bench main() -> all probes attached (first start)", ms((t1 - t_main) as f64)));
        targets.push(ms_target("start-up: IoMonitor::start (median, settled)", startup.start_ms));
        targets.push(ms_target("start-up: IoMonitor::start right after a detach (median)", startup.restart_ms));
        targets
            .push(ms_target("start-up: process spawn -> all probes attached (median of re-execs)", startup.process_ms));
        child_rss_kb = Some(startup.child_rss_kb);
    }

    if opts.runs("collection") {
        eprintln!("collection ...");
        let coll = collection(opts, &policy, child_rss_kb)?;
        coll_table = coll.table;
        js.set("collection", coll.json);
        targets.push(Target {
            name: "collection: one IoMonitor::snapshot (median)".into(),
            measured: coll.snapshot_ms,
            limit: 1.0,
            unit: "ms",
        });
        targets.push(Target {
            name: "collection: collect + status + push of the module (median, slower case)".into(),
            measured: coll.push_ms,
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
            measured: coll.rss_kb as f64 / 1024.0,
            limit: 10.0,
            unit: "MiB",
        });
    }

    // The workload groups: pinned, in a cgroup of our own.
    ktm::workload::set_comm(COMM)?;
    pin_to(cpu_pair[1])?;
    let place = CgroupPlace::enter()?;
    // Another pod's pid namespace, held by a child that unshared one and sleeps.
    let other_pod = other_pid_namespace()?;
    let ids = Ids {
        mine: harness::cgroup_id(&place.mine)?,
        other: harness::cgroup_id(&place.other)?,
        own_pidns: ktm::discovery::PidNs::of_self(std::path::Path::new("/proc"))
            .ok_or("cannot stat /proc/self/ns/pid")?,
        other_pidns: other_pod.1,
    };
    let mut bench = Bench::new(opts.calls, cpu_pair, fixture)?;
    // Bounded: full runs stay under 3 minutes even on a busy host, quick ones near 30 s.
    bench.quiet_budget = std::time::Duration::from_secs(if opts.quick { 3 } else { 30 });
    bench.max_discards = if opts.quick { 1 } else { opts.rounds };
    if in_qemu() {
        // Nothing else runs in the guest, and what loads the host is invisible from inside.
        // Not even BPF programs of other processes: the only ones are this process's own,
        // still being freed after a detach.
        bench.quiet_budget = std::time::Duration::ZERO;
        bench.max_discards = 0;
    }

    if opts.runs("workload") {
        eprintln!("workload cost ...");
        let g1 = main_group(&mut bench, opts, &policy, &points, &ids)?;
        eprintln!("per-program statistics ...");
        let (pt, pj) = main_stats(&mut bench, &policy, &points, &ids)?;
        out.push_str(&pt);
        out.push_str(&g1.table);
        js.set("programs", pj);
        js.set("workload", g1.json);
        workload_targets(&g1.samples, &mut targets);
    }
    out.push_str(&coll_table);
    if opts.runs("mechanisms") {
        eprintln!("mechanisms ...");
        let (t, j) = mechanism_group(&mut bench, opts, &ids)?;
        out.push_str(&t);
        js.set("mechanisms", j);
    }
    if opts.runs("slots") {
        eprintln!("per-CPU vs shared, hash vs LRU ...");
        let ((pt, pj), (ht, hj)) = slot_groups(&mut bench, opts)?;
        out.push_str(&pt);
        out.push_str(&ht);
        js.set("percpu_vs_shared", pj);
        js.set("start_map", hj);
    }
    if opts.runs("guest-mechanisms") {
        eprintln!("fentry vs kprobe vs tracepoint (guest-mechanisms) ...");
        let (t, j) = guest::group(&mut bench, opts, &ids)?;
        out.push_str(&t);
        js.set("guest_mechanisms", j);
    }
    drop(place);
    js.set("waited_for_quiet_s", bench.waited.as_secs_f64());
    if !bench.noise.is_empty() {
        let mut t = Table::new(
            &format!(
                "Host noise in the kept rounds of each group (CPUs' worth of other processes' busy time and of \
                 steal; BPF programs of other processes); a round with more than {} CPUs or any foreign program \
                 was discarded and measured again (at most {} times per group); waited {:.1} s for a quiet host",
                harness::NOISY_ROUND,
                bench.max_discards.min(opts.rounds),
                bench.waited.as_secs_f64()
            ),
            &["group", "other processes", "steal", "foreign BPF programs", "rounds discarded"],
        );
        let mut nj = J::obj();
        for n in &bench.noise {
            t.row(vec![
                n.group.clone(),
                format!("{:.2}", n.others),
                format!("{:.2}", n.steal),
                n.foreign.to_string(),
                n.discarded.to_string(),
            ]);
            nj.set(
                &n.group,
                J::obj()
                    .with("other_busy_cpus", n.others)
                    .with("steal_cpus", n.steal)
                    .with("foreign_bpf_programs", n.foreign)
                    .with("rounds_discarded", n.discarded),
            );
        }
        out.push_str(&t.render());
        js.set("noise", nj);
    }

    let mut t = Table::new("Targets (medians on this host)", &["target", "measured", "limit", "verdict"]);
    let mut tjs = Vec::new();
    for tg in &targets {
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
    if !targets.is_empty() {
        out.push_str(&t.render());
    }
    js.set("targets", J::Arr(tjs));

    let progs_at_end = harness::host_prog_ids().len();
    let loadavg_end = harness::read_line("/proc/loadavg");
    js.set("host_end", J::obj().with("loadavg_end", loadavg_end.as_str()).with("bpf_programs_at_end", progs_at_end));
    let head = format!(
        "# KTM overhead ({})\n\
         kernel {}, {} CPUs online, fixture files on {fs}, measuring thread pinned to CPU {}, \
         {} rounds x {} calls per loop\n\
         load average at start {loadavg_start}, at end {loadavg_end}\n\
         BPF programs of other processes at start: {other_progs_at_start}; BPF programs on the host at end: {progs_at_end}\n\
         iomonitor: {attached_programs} programs attached\n",
        if opts.quick { "quick" } else { "full" },
        harness::read_line("/proc/sys/kernel/osrelease"),
        cpus.len(),
        cpu_pair[1],
        opts.rounds,
        opts.calls,
    );
    print!("{head}{out}");
    match &opts.json {
        // On stdout between marker lines: a QEMU guest's only way out is its console.
        Some(path) if path.as_os_str() == "-" => println!("\n{JSON_BEGIN}\n{js}\n{JSON_END}"),
        Some(path) => {
            std::fs::write(path, format!("{js}\n")).map_err(|e| format!("write {}: {e}", path.display()))?;
            eprintln!("JSON written to {}", path.display());
        }
        None => {}
    }
    Ok(())
}

fn workload_targets(s: &Samples, targets: &mut Vec<Target>) {
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

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "..."
    }
}

/// Each loaded iomonitor program's name and attach point, from its plan's winning alternative.
fn ktm_points(mon: &IoMonitor) -> Vec<(String, AttachPoint)> {
    mon.attached_at().map(|(point, p)| (p.name().to_string(), point.clone())).collect()
}

/// (label, point, program) of each iomonitor program, labelled as [`ktm_points`] names them.
fn ktm_programs(mon: &IoMonitor) -> Vec<(String, String, &LoadedProgram)> {
    let points = ktm_points(mon);
    mon.programs()
        .map(|p| {
            let point = points.iter().find(|(n, _)| n == p.name()).map_or(String::new(), |(_, a)| a.to_string());
            (p.name().to_string(), point, p)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Start-up

struct Startup {
    table: String,
    json: J,
    start_ms: f64,
    restart_ms: f64,
    process_ms: f64,
    child_rss_kb: u64,
}

/// One alternative's stage timings in a start-up replay.
#[derive(Default, Clone)]
struct AltTiming {
    build_us: f64,
    load_us: f64,
    attach_us: f64,
    error: Option<String>,
}

type Held = Vec<(Attachment, LoadedProgram)>;

fn try_alt(
    name: &str,
    alt: &ktm::attach::Alternative,
    fd_of: &dyn Fn(ktm::insn::MapRef) -> Option<i32>,
) -> (AltTiming, Option<Held>) {
    let mut t = AltTiming::default();
    let mut held = Vec::new();
    for (i, (point, build)) in alt.parts().enumerate() {
        let s = Instant::now();
        let spec = match build().and_then(|program| {
            Ok(ProgramSpec {
                name: if i == 0 { name.to_string() } else { format!("{name}_{i}") },
                prog_type: point.prog_type(),
                program,
                attach: point.load_target()?,
            })
        }) {
            Ok(s) => s,
            Err(e) => {
                t.build_us += s.elapsed().as_nanos() as f64 / 1e3;
                t.error = Some(e.to_string());
                return (t, None);
            }
        };
        t.build_us += s.elapsed().as_nanos() as f64 / 1e3;
        let s = Instant::now();
        let prog = load::program(&spec, fd_of);
        t.load_us += s.elapsed().as_nanos() as f64 / 1e3;
        let prog = match prog {
            Ok(p) => p,
            Err(e) => {
                t.error = Some(format!("load: {e}"));
                return (t, None);
            }
        };
        let s = Instant::now();
        let a = attach::program(&prog, point);
        t.attach_us += s.elapsed().as_nanos() as f64 / 1e3;
        match a {
            Ok(a) => held.push((a, prog)),
            Err(e) => {
                t.error = Some(format!("attach: {e}"));
                return (t, None);
            }
        }
    }
    (t, Some(held))
}

/// Replays IoMonitor::start stage by stage: map creation, then each probe's alternatives
/// with build, load and attach timed apart.
/// (probe, alternative, timings).
type AltRow = (String, String, AltTiming);

fn replay_start(policy: &Policy) -> R<(f64, Vec<AltRow>)> {
    let s = Instant::now();
    let maps = layout::map_defs().into_iter().map(ktm::maps::Map::create).collect::<Result<Vec<_>, _>>()?;
    let maps_us = s.elapsed().as_nanos() as f64 / 1e3;
    let fd_of = |m: ktm::insn::MapRef| maps.iter().find(|map| map.def().name == m).map(|map| map.as_raw_fd());
    let mut rows = Vec::new();
    let mut keep: Vec<Held> = Vec::new();
    for probe in ktm::programs::probes() {
        for alt in &probe.plan.alternatives {
            if let Some(why) = alt.parts().find_map(|(p, _)| policy.forbids(p.mechanism())) {
                let t = AltTiming { error: Some(why.into()), ..Default::default() };
                rows.push((probe.plan.name.clone(), alt.point.to_string(), t));
                continue;
            }
            let (t, held) = try_alt(&probe.plan.name, alt, &fd_of);
            rows.push((probe.plan.name.clone(), alt.point.to_string(), t));
            if let Some(h) = held {
                keep.push(h);
                break;
            }
        }
    }
    drop(keep);
    Ok((maps_us, rows))
}

fn startup(
    opts: &Opts,
    policy: &Policy,
    points: &[(String, AttachPoint)],
    t_main: u64,
    t0: u64,
    t1: u64,
) -> R<Startup> {
    let first_from_main = (t1 - t_main) as f64;
    let first_start = (t1 - t0) as f64;
    let pause = || std::thread::sleep(std::time::Duration::from_millis(opts.pause_ms));
    let timed_start = || -> R<(f64, IoMonitor)> {
        let s = Instant::now();
        let m = IoMonitor::start(policy)?;
        Ok((s.elapsed().as_nanos() as f64, m))
    };
    let timed_drop = |m: IoMonitor| {
        let s = Instant::now();
        drop(m);
        s.elapsed().as_nanos() as f64
    };
    let (mut starts, mut restarts, mut drops) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.starts {
        // Settled: nothing detached in the last pause_ms (a sidecar starting on a quiet node).
        pause();
        let (t, m) = timed_start()?;
        starts.push(t);
        drops.push(timed_drop(m));
        // Right after a detach (a sidecar restarted at once).
        let (t, m) = timed_start()?;
        restarts.push(t);
        drops.push(timed_drop(m));
    }
    // Replays, for the breakdown.
    let mut maps = Vec::new();
    let mut cells: BTreeMap<(usize, String, String), Vec<AltTiming>> = BTreeMap::new();
    for _ in 0..opts.starts.min(5) {
        pause();
        let (m, rows) = replay_start(policy)?;
        maps.push(m);
        for (i, (probe, point, t)) in rows.into_iter().enumerate() {
            cells.entry((i, probe, point)).or_default().push(t);
        }
    }
    // Re-exec: process spawn to all probes attached.
    let exe = std::env::current_exe()?;
    let (mut to_main, mut to_attached, mut child_start, mut rss, mut hwm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.reexecs {
        pause();
        let s = mono_ns();
        let o = Command::new(&exe).env(CHILD_ENV, "1").stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
        let text = String::from_utf8_lossy(&o.stdout);
        let v: Vec<u64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if !o.status.success() || v.len() < 6 {
            return Err(format!("start-up child failed ({}): {text}", o.status).into());
        }
        to_main.push((v[0] - s) as f64);
        to_attached.push((v[2] - s) as f64);
        child_start.push((v[2] - v[1]) as f64);
        rss.push(v[4] as f64);
        hwm.push(v[5] as f64);
    }

    // What a detach costs, one empty program at a time, by mechanism.
    let detach_points = [
        ("drop: one classic syscall tracepoint program", AttachPoint::tracepoint("syscalls", "sys_enter_getppid")),
        ("drop: one classic filemap tracepoint program", AttachPoint::tracepoint("filemap", "mm_filemap_get_pages")),
        ("drop: one raw tracepoint program (sys_enter)", AttachPoint::raw_tracepoint("sys_enter")),
    ];
    let mut detach: Vec<(&str, Vec<f64>)> = Vec::new();
    for (name, point) in &detach_points {
        let mut v = Vec::new();
        for _ in 0..3 {
            let set = Set::build(&Design::new(vec![]).part("one", point.clone(), Body::Empty))?;
            let s = Instant::now();
            drop(set);
            v.push(s.elapsed().as_nanos() as f64);
        }
        detach.push((name, v));
    }
    // The same programs as the iomonitor (empty), detached in parallel threads.
    let mut v = Vec::new();
    for _ in 0..opts.starts.min(3) {
        let set = Set::build(&floor_design(points))?;
        let s = Instant::now();
        drop(set);
        v.push(s.elapsed().as_nanos() as f64);
    }
    detach.push(("drop: empty programs on the iomonitor's points, one thread each", v));

    // What a kernel that loads fentry programs adds at start: vmlinux BTF read, walked and
    // indexed to resolve the fentry targets (here the policy check skips it, so it is timed
    // apart), then released.
    let fentry_funcs: Vec<String> = ktm::programs::probes()
        .iter()
        .flat_map(|p| p.plan.alternatives.iter().flat_map(|a| a.parts().map(|(pt, _)| pt.clone())))
        .filter_map(|pt| match pt {
            AttachPoint::Fentry { func, .. } => Some(func),
            _ => None,
        })
        .collect();
    let mut btf_times = Vec::new();
    for _ in 0..opts.reexecs {
        ktm::btf::release_vmlinux();
        let s = Instant::now();
        for f in &fentry_funcs {
            let _ = ktm::btf::find_kernel_func(f);
        }
        btf_times.push(s.elapsed().as_nanos() as f64);
    }
    ktm::btf::release_vmlinux();
    let btf_row = format!("vmlinux BTF: resolve the {} fentry targets from scratch", fentry_funcs.len());

    let mut t = Table::new("1. Start-up (ms)", &["measure", "median", "min", "max", "runs"]);
    let mut row = |name: &str, v: &[f64]| {
        let v: Vec<f64> = v.iter().map(|x| ms(*x)).collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        t.row(vec![name.into(), f3(median(&v)), f3(min), f3(max), v.len().to_string()]);
    };
    row("bench main() -> all probes attached (first start)", &[first_from_main]);
    row("IoMonitor::start, first in the process (cold)", &[first_start]);
    row(&format!("IoMonitor::start, settled ({} ms after the last detach)", opts.pause_ms), &starts);
    row("IoMonitor::start, right after a drop (restart)", &restarts);
    row("drop(IoMonitor): detach and close everything", &drops);
    row("re-exec: spawn -> child main()", &to_main);
    row("re-exec: spawn -> all probes attached", &to_attached);
    row("re-exec: IoMonitor::start in the fresh child", &child_start);
    for (name, v) in &detach {
        row(name, v);
    }
    row(&btf_row, &btf_times);
    let mut table = t.render();

    let mut b = Table::new(
        "1b. Start-up breakdown (replay of IoMonitor::start stage by stage, settled, medians, us)",
        &["probe", "alternative", "build", "load", "attach", "outcome"],
    );
    let mut bj = Vec::new();
    let (mut wasted, mut useful) = (0.0, 0.0);
    let maps_med = median(&maps);
    b.row(vec![
        "(maps)".into(),
        "config, counters, start slots, hash, spilled".into(),
        "-".into(),
        f0(maps_med),
        "-".into(),
        "ok".into(),
    ]);
    for ((_, probe, point), ts) in &cells {
        let med = |f: fn(&AltTiming) -> f64| median(&ts.iter().map(f).collect::<Vec<_>>());
        let (bu, lo, at) = (med(|t| t.build_us), med(|t| t.load_us), med(|t| t.attach_us));
        let err = ts.last().and_then(|t| t.error.clone());
        if err.is_some() {
            wasted += bu + lo + at;
        } else {
            useful += bu + lo + at;
        }
        b.row(vec![
            probe.clone(),
            point.clone(),
            f0(bu),
            f0(lo),
            f0(at),
            err.as_deref().map_or("attached".into(), |e| short(e, 60)),
        ]);
        bj.push(
            J::obj()
                .with("probe", probe.as_str())
                .with("alternative", point.as_str())
                .with("build_us", bu)
                .with("load_us", lo)
                .with("attach_us", at)
                .with("error", err),
        );
    }
    b.row(vec![
        "total".into(),
        format!("maps {} + attached {} + failed alternatives {}", f0(maps_med), f0(useful), f0(wasted)),
        "".into(),
        "".into(),
        "".into(),
        "us".into(),
    ]);
    table.push_str(&b.render());

    let msv = |v: &[f64]| dist(&v.iter().map(|x| ms(*x)).collect::<Vec<_>>());
    let json = J::obj()
        .with("main_to_attached_first_ms", ms(first_from_main))
        .with("start_first_ms", ms(first_start))
        .with("start_settled_ms", msv(&starts))
        .with("start_after_drop_ms", msv(&restarts))
        .with("pause_ms", opts.pause_ms)
        .with("drop_ms", msv(&drops))
        .with("reexec_spawn_to_main_ms", msv(&to_main))
        .with("reexec_spawn_to_attached_ms", msv(&to_attached))
        .with("reexec_child_start_ms", msv(&child_start))
        .with("reexec_child_rss_kb", dist(&rss))
        .with("reexec_child_hwm_kb", dist(&hwm))
        .with("detach_one_program_ms", J::Obj(detach.iter().map(|(n, v)| (n.to_string(), msv(v))).collect()))
        .with("btf_resolve_fentry_targets_ms", msv(&btf_times))
        .with("breakdown_maps_us", maps_med)
        .with("breakdown_attached_us", useful)
        .with("breakdown_failed_alternatives_us", wasted)
        .with("breakdown", J::Arr(bj));
    Ok(Startup {
        table,
        json,
        start_ms: ms(median(&starts)),
        restart_ms: ms(median(&restarts)),
        process_ms: ms(median(&to_attached)),
        child_rss_kb: median(&rss) as u64,
    })
}

// ---------------------------------------------------------------------------------------
// 4. Collection

struct Collection {
    table: String,
    json: J,
    snapshot_ms: f64,
    push_ms: f64,
    rss_kb: u64,
}

fn collection(opts: &Opts, policy: &Policy, child_rss_kb: Option<u64>) -> R<Collection> {
    let mon = IoMonitor::start(policy)?;
    mon.set_scope(&Scope::Comm(OTHER_COMM.into()))?;
    for _ in 0..100 {
        mon.snapshot()?;
    }
    let mut v = Vec::with_capacity(opts.snapshots);
    for _ in 0..opts.snapshots {
        let s = Instant::now();
        let snap: Snapshot = mon.snapshot()?;
        v.push(s.elapsed().as_nanos() as f64);
        std::hint::black_box(snap);
    }
    let mut sorted = v.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    let rss = status_kb("VmRSS").unwrap_or(0);
    let hwm = status_kb("VmHWM").unwrap_or(0);
    let fds = bpf_fds();
    let mut t = Table::new("4. Collection", &["measure", "value"]);
    t.row(vec!["IoMonitor::snapshot, median (us)".into(), f1(median(&v) / 1e3)]);
    t.row(vec!["IoMonitor::snapshot, p99 (us)".into(), f1(p99 / 1e3)]);
    t.row(vec!["snapshots timed".into(), v.len().to_string()]);
    if let Some(kb) = child_rss_kb {
        t.row(vec!["RSS, re-exec child running only the iomonitor (KiB)".into(), kb.to_string()]);
    }
    t.row(vec!["RSS, this bench process with the iomonitor (KiB)".into(), rss.to_string()]);
    t.row(vec!["VmHWM, this bench process (KiB)".into(), hwm.to_string()]);
    let mut maps_total = 0;
    let mut progs_total = 0;
    let mut mj = Vec::new();
    for f in &fds {
        if f.is_map {
            maps_total += f.memlock;
            // SAFETY: the fd is open for as long as `mon` lives, which outlives this use.
            let info = ktm::sys::bpf::map_info(unsafe { std::os::fd::BorrowedFd::borrow_raw(f.fd) });
            let name = info.map(|i| ktm::sys::bpf::name_str(&i.name)).unwrap_or_default();
            t.row(vec![format!("map {name} (type {}, id {}) memlock (bytes)", f.kind, f.id), f.memlock.to_string()]);
            mj.push(J::obj().with("name", name).with("type", f.kind).with("memlock", f.memlock));
        } else {
            progs_total += f.memlock;
        }
    }
    t.row(vec!["maps' kernel memory, sum of memlock (KiB)".into(), f1(maps_total as f64 / 1024.0)]);
    t.row(vec![
        format!(
            "programs' kernel memory, sum of memlock over {} programs (KiB)",
            fds.iter().filter(|f| !f.is_map).count()
        ),
        f1(progs_total as f64 / 1024.0),
    ]);
    let json = J::obj()
        .with("snapshot_us", dist(&v.iter().map(|x| x / 1e3).collect::<Vec<_>>()))
        .with("snapshot_p99_us", p99 / 1e3)
        .with("rss_kb_bench", rss)
        .with("hwm_kb_bench", hwm)
        .with("rss_kb_child", child_rss_kb)
        .with("maps_memlock_bytes", maps_total)
        .with("programs_memlock_bytes", progs_total)
        .with("maps", J::Arr(mj));
    drop(mon);
    // Target found (a child serving workload commands, as BanyanDB would be): a health check
    // per collection. No target: a discovery scan of /proc per collection.
    let _target = ktm::workload::Workload::spawn(std::path::Path::new(env!("CARGO_BIN_EXE_ktm")), TARGET_COMM, None)?;
    let mut json = json;
    let mut push_ms: f64 = 0.0;
    for (label, prefix) in [("target found", TARGET_COMM), ("no target", OTHER_COMM)] {
        let (push, state) = collect_and_push(opts, policy, prefix)?;
        let mut sorted = push.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
        t.row(vec![
            format!("collect + status + push, {label} ({state}), median / p99 (us)"),
            format!("{} / {}", f1(median(&push) / 1e3), f1(p99 / 1e3)),
        ]);
        json = json.with(
            &format!("collect_push_{}", label.replace(' ', "_")),
            J::obj()
                .with("us", dist(&push.iter().map(|x| x / 1e3).collect::<Vec<_>>()))
                .with("p99_us", p99 / 1e3)
                .with("state", state),
        );
        push_ms = push_ms.max(median(&push) / 1e6);
    }
    Ok(Collection { table: t.render(), json, snapshot_ms: median(&v) / 1e6, push_ms, rss_kb: rss })
}

/// One collection as the collector thread makes it every interval: the module's refresh
/// (health check of the target, or discovery while there is none), the snapshot turned into
/// metrics, the status, and a push to a recorder, with the target found by `prefix`.
/// Returns the times (ns) and the module's state.
fn collect_and_push(opts: &Opts, policy: &Policy, prefix: &str) -> R<(Vec<f64>, String)> {
    use ktm::iomonitor::IoMonitorModule;
    use ktm::module::Module;
    use ktm::recorder::FlightRecorder;
    let cfg = ktm::config::EbpfConfig { cgroup_path: None, comm_prefix: prefix.into() };
    let mut module = IoMonitorModule::with(cfg, ktm::discovery::Roots::system(), *policy);
    module.start()?;
    let mut recorder = ktm::recorder::MemoryRecorder::new(4);
    let mut once = |module: &mut IoMonitorModule| {
        let metrics = module.collect();
        let status = vec![module.status()];
        recorder.record(ktm::metrics::Batch { timestamp: std::time::SystemTime::now(), metrics, status });
    };
    for _ in 0..10 {
        once(&mut module);
    }
    let state = format!("{:?}", module.status().state);
    let mut v = Vec::with_capacity(opts.snapshots / 10);
    for _ in 0..(opts.snapshots / 10).max(100) {
        let s = Instant::now();
        once(&mut module);
        v.push(s.elapsed().as_nanos() as f64);
    }
    module.stop();
    Ok((v, state))
}

// ---------------------------------------------------------------------------------------
// 3. Workload cost: bare, floor, iomonitor as neighbour and as target

struct Ids {
    mine: u64,
    other: u64,
    /// The bench's own pid namespace (the pod of the target rows).
    own_pidns: ktm::discovery::PidNs,
    /// A pid namespace the bench is not in (another pod's, for the neighbour rows).
    other_pidns: ktm::discovery::PidNs,
}

/// A child holding a pid namespace of its own (it unshared one and sleeps), and that
/// namespace. The bench thread is never in it: a same-comm neighbour of another pod.
fn other_pid_namespace() -> R<(HeldNs, ktm::discovery::PidNs)> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("3600");
    // The namespace is named through /proc only once a process lives in it: the child
    // forks its init (the sleep) and waits, outside it, letting go of every fd but stdio.
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let init = libc::fork();
            if init < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if init > 0 {
                for fd in 3..1024 {
                    libc::close(fd);
                }
                let mut status = 0;
                libc::waitpid(init, &mut status, 0);
                libc::_exit(0);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let meta = std::fs::metadata(format!("/proc/{}/ns/pid_for_children", child.id()))?;
    let dev = meta.dev();
    let ns = ktm::discovery::PidNs {
        dev: (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev)),
        ino: meta.ino(),
    };
    Ok((HeldNs(child), ns))
}

/// The child holding a namespace, killed with the bench.
struct HeldNs(std::process::Child);

impl Drop for HeldNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Group1 {
    table: String,
    json: J,
    samples: Samples,
}

fn variants(ids: &Ids) -> Vec<(&'static str, Scope)> {
    vec![
        ("ktm nbr off", Scope::Off),
        ("ktm nbr cgroup", Scope::Cgroup(ids.other)),
        ("ktm nbr comm", Scope::Comm(OTHER_COMM.into())),
        ("ktm tgt cgroup", Scope::Cgroup(ids.mine)),
        ("ktm tgt comm", Scope::Comm(COMM.into())),
        // The pod: a BanyanDB of another pod has the target's comm and fails the pid
        // namespace test; the target passes it while its cgroup id is being learned.
        (
            "ktm nbr pod comm",
            Scope::CommInPidNs { prefix: COMM.into(), pidns: ids.other_pidns, narrow: true, learn: None },
        ),
        (
            "ktm tgt pod comm",
            Scope::CommInPidNs { prefix: COMM.into(), pidns: ids.own_pidns, narrow: true, learn: Some(1) },
        ),
    ]
}

fn floor_design(points: &[(String, AttachPoint)]) -> Design {
    let mut d = Design::new(Vec::new());
    for (name, p) in points {
        d = d.part(name, p.clone(), Body::Empty);
    }
    d
}

/// Events the iomonitor counted for one op's loop.
/// Measures every loop under `row` with the iomonitor attached, and records what it counted
/// per call (latency samples, and page-cache lookups with `lookups`): 1 for the target, 0 for
/// a neighbour, so a table cannot silently compare a run that counted nothing.
fn measure_counted(b: &mut Bench, mon: &IoMonitor, row: &str, lookups: bool) -> R<()> {
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

fn cost_table(b: &Samples, title: &str, rows: &[&str], floor: &str, mix: &[f64; 3], ops: &[Op]) -> (String, J) {
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

fn main_group(b: &mut Bench, opts: &Opts, policy: &Policy, points: &[(String, AttachPoint)], ids: &Ids) -> R<Group1> {
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

// ---------------------------------------------------------------------------------------
// 2. Per-program statistics

fn main_stats(b: &mut Bench, policy: &Policy, points: &[(String, AttachPoint)], ids: &Ids) -> R<(String, J)> {
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

// ---------------------------------------------------------------------------------------
// Mechanism comparisons

fn stats_per_op(b: &mut Bench, progs: &[(String, String, &LoadedProgram)], ops: &[Op]) -> R<Vec<(Op, Vec<ProgStat>)>> {
    ops.iter().map(|&op| Ok((op, stats_during(b, progs, &[op])?))).collect()
}

/// Each program's statistics over one run of the `ops` loops.
fn stats_during(b: &mut Bench, progs: &[(String, String, &LoadedProgram)], ops: &[Op]) -> R<Vec<ProgStat>> {
    let a = progs::stats_now(progs)?;
    b.exercise(ops);
    let z = progs::stats_now(progs)?;
    Ok(progs::stats_delta(progs, &a, &z))
}

/// Per column (an op, or a thread count): each program's statistics.
type StatCols = Vec<(String, Vec<ProgStat>)>;

fn stats_table(title: &str, results: &[(&str, StatCols)], cols: &[String]) -> (String, J) {
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

fn mechanism_group(b: &mut Bench, opts: &Opts, ids: &Ids) -> R<(String, J)> {
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

/// Per-CPU vs shared counters, and hash vs LRU hash start maps: 1 and 2 threads of preads.
fn slot_groups(b: &mut Bench, opts: &Opts) -> R<((String, J), (String, J))> {
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
