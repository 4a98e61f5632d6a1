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
//!
//! This file is the entry point: it parses the options ([`opts`]), runs the groups they pick
//! and prints what they return. Each group is a file under `overhead/`: [`startup`],
//! [`collection`], [`workload`], [`mechanisms`], [`slots`], [`guest`]; [`targets`] holds the
//! limits their figures are held to. Below the groups: [`cost`] (ns per call) and [`stats`]
//! (ns per program run), [`scopes`] (whom the iomonitor counts), [`progs`] (the comparison
//! programs), [`table`] and [`json`] (output), [`harness`] (loops, rounds, noise, cgroups).
//! A new group is a file with a `pub fn` returning its table and JSON, a name in
//! [`opts::GROUPS`] and a branch in [`run`].

#[path = "overhead/collection.rs"]
mod collection;
#[path = "overhead/cost.rs"]
mod cost;
#[path = "overhead/guest.rs"]
mod guest;
#[path = "overhead/harness.rs"]
mod harness;
#[path = "overhead/json.rs"]
mod json;
#[path = "overhead/mechanisms.rs"]
mod mechanisms;
#[path = "overhead/opts.rs"]
mod opts;
#[path = "overhead/progs.rs"]
mod progs;
#[path = "overhead/scope_test.rs"]
mod scope_test;
#[path = "overhead/scopes.rs"]
mod scopes;
#[path = "overhead/slots.rs"]
mod slots;
#[path = "overhead/startup.rs"]
mod startup;
#[path = "overhead/stats.rs"]
mod stats;
#[path = "overhead/table.rs"]
mod table;
#[path = "overhead/targets.rs"]
mod targets;
#[path = "overhead/workload.rs"]
mod workload;

use harness::{mono_ns, pin_to, Bench, CgroupPlace, Fixture, R};
use json::J;
use ktm::attach::Policy;
use ktm::iomonitor::IoMonitor;
use opts::{bench_args, in_qemu, Opts};
use scopes::{other_pid_namespace, HeldNs, Ids, COMM};
use stats::ktm_points;
use table::{ms, short, Table};
use targets::Target;

/// The lines around the JSON of `--json -`.
const JSON_BEGIN: &str = "KTM-BENCH-JSON-BEGIN";
const JSON_END: &str = "KTM-BENCH-JSON-END";

fn main() {
    let t_main = mono_ns();
    if std::env::var_os(startup::CHILD_ENV).is_some() {
        std::process::exit(startup::startup_child(t_main));
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

/// Runs the groups `opts` picks, in the issue's order, and prints their tables (then the
/// JSON, with `--json`).
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
    let (plan, plan_js) = attach_plan(&first);
    let attached_programs = first.attached_programs();
    drop(first);
    out.push_str(&plan);
    js.set("attach_plan", plan_js);

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
        let startup = startup::startup(opts, &policy, &points, t_main, t0, t1)?;
        targets.extend(targets::startup(ms((t1 - t_main) as f64), &startup));
        child_rss_kb = Some(startup.child_rss_kb);
        out.push_str(&startup.table);
        js.set("startup", startup.json);
    }

    if opts.runs("collection") {
        eprintln!("collection ...");
        let coll = collection::collection(opts, &policy, child_rss_kb)?;
        targets.extend(targets::collection(&coll, child_rss_kb));
        coll_table = coll.table;
        js.set("collection", coll.json);
    }

    // The workload groups: pinned, in a cgroup of our own.
    let (mut bench, place, ids, _other_pod) = workload_bench(opts, cpu_pair, fixture)?;

    if opts.runs("workload") {
        eprintln!("workload cost ...");
        let g1 = workload::main_group(&mut bench, opts, &policy, &points, &ids)?;
        eprintln!("per-program statistics ...");
        let (pt, pj) = workload::main_stats(&mut bench, &policy, &points, &ids)?;
        out.push_str(&pt);
        out.push_str(&g1.table);
        js.set("programs", pj);
        js.set("workload", g1.json);
        targets.extend(targets::workload(&g1.samples));
    }
    out.push_str(&coll_table);
    if opts.runs("mechanisms") {
        eprintln!("mechanisms ...");
        let (t, j) = mechanisms::mechanism_group(&mut bench, opts, &ids)?;
        out.push_str(&t);
        js.set("mechanisms", j);
    }
    if opts.runs("slots") {
        eprintln!("per-CPU vs shared, hash vs LRU ...");
        let ((pt, pj), (ht, hj)) = slots::slot_groups(&mut bench, opts)?;
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
    if opts.runs("scope-test") {
        eprintln!("cgroup helper vs BTF-typed loads (scope-test) ...");
        let (t, j) = scope_test::group(&mut bench, opts, &ids)?;
        out.push_str(&t);
        js.set("scope_test", j);
    }
    drop(place);
    js.set("waited_for_quiet_s", bench.waited.as_secs_f64());
    if let Some((t, j)) = noise_table(&bench, opts) {
        out.push_str(&t);
        js.set("noise", j);
    }

    let (t, tjs) = targets::table(&targets);
    if !targets.is_empty() {
        out.push_str(&t);
    }
    js.set("targets", tjs);

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
    write_json(opts, &js)
}

/// The iomonitor's attach plan on this kernel: what each probe attached, and which
/// alternatives failed before it.
fn attach_plan(first: &IoMonitor) -> (String, J) {
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
    (plan.render(), J::Arr(plan_js))
}

/// The bench of the workload groups: this thread named [`COMM`] and pinned to the second of
/// `cpus`, in a cgroup of its own, beside another pod's pid namespace (held by a child until
/// the returned [`HeldNs`] drops).
fn workload_bench(opts: &Opts, cpu_pair: [usize; 2], fixture: Fixture) -> R<(Bench, CgroupPlace, Ids, HeldNs)> {
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
    Ok((bench, place, ids, other_pod.0))
}

/// The host noise in the kept rounds of each group, when any group measured.
fn noise_table(bench: &Bench, opts: &Opts) -> Option<(String, J)> {
    if bench.noise.is_empty() {
        return None;
    }
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
    Some((t.render(), nj))
}

/// Writes the JSON where `--json` says: a file, or stdout between marker lines.
fn write_json(opts: &Opts, js: &J) -> R<()> {
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
