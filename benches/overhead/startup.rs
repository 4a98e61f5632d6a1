//! Group `startup` (tables 1 and 1b): IoMonitor::start settled and right after a detach,
//! from process spawn (a re-executed child), what a detach costs, and a replay of the start
//! stage by stage.

use super::harness::{median, mono_ns, status_kb, R};
use super::json::J;
use super::opts::Opts;
use super::progs::{floor_design, Body, Design, Set};
use super::table::{dist, f0, f3, ms, short, Table};
use ktm::attach::{self, AttachPoint, Attachment, Policy};
use ktm::iomonitor::IoMonitor;
use ktm::load::{self, LoadedProgram, ProgramSpec};
use ktm::programs::layout;
use ktm::sys::AsRawFd;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Set in the re-executed child that measures start-up from process start.
pub const CHILD_ENV: &str = "KTM_OVERHEAD_CHILD";

/// The re-executed child: starts the iomonitor, takes one snapshot, reports times and RSS.
pub fn startup_child(t_main: u64) -> i32 {
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
    let (checks, checked) = attach::self_test_time();
    println!(
        "{t_main} {t0} {t1} {} {} {} {checks} {}",
        mon.attached_programs(),
        status_kb("VmRSS").unwrap_or(0),
        status_kb("VmHWM").unwrap_or(0),
        checked.as_nanos()
    );
    0
}

pub struct Startup {
    pub table: String,
    pub json: J,
    pub start_ms: f64,
    pub restart_ms: f64,
    pub process_ms: f64,
    pub child_rss_kb: u64,
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
        let a = attach::attach_program(&prog, point);
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
    let probes = ktm::programs::probes();
    // The plan whose alternative attached: its later alternatives are not tried, as in start.
    let mut attached: Option<&str> = None;
    for (probe, alt) in ktm::inspect::alternatives(&probes) {
        if attached == Some(probe.plan.name.as_str()) {
            continue;
        }
        if let Some(why) = alt.parts().find_map(|(p, _)| policy.forbids(p.mechanism())) {
            let t = AltTiming { error: Some(why.into()), ..Default::default() };
            rows.push((probe.plan.name.clone(), alt.point.to_string(), t));
            continue;
        }
        let (t, held) = try_alt(&probe.plan.name, alt, &fd_of);
        rows.push((probe.plan.name.clone(), alt.point.to_string(), t));
        if let Some(h) = held {
            keep.push(h);
            attached = Some(&probe.plan.name);
        }
    }
    drop(keep);
    Ok((maps_us, rows))
}

/// Runs the group. `t0` and `t1` bracket the process's first IoMonitor::start, `t_main` is
/// when main() began (monotonic ns).
pub fn startup(
    opts: &Opts,
    policy: &Policy,
    points: &[(String, AttachPoint)],
    t_main: u64,
    t0: u64,
    t1: u64,
) -> R<Startup> {
    let first_from_main = (t1 - t_main) as f64;
    let first_start = (t1 - t0) as f64;
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
        pause(opts);
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
    let mut cells: Cells = BTreeMap::new();
    for _ in 0..opts.starts.min(5) {
        pause(opts);
        let (m, rows) = replay_start(policy)?;
        maps.push(m);
        for (i, (probe, point, t)) in rows.into_iter().enumerate() {
            cells.entry((i, probe, point)).or_default().push(t);
        }
    }
    let re = reexecs(opts)?;
    let detach = detach_costs(opts, points)?;
    let (btf_row, btf_times) = btf_resolve(opts);

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
    row("re-exec: spawn -> child main()", &re.to_main);
    row("re-exec: spawn -> all probes attached", &re.to_attached);
    row("re-exec: IoMonitor::start in the fresh child", &re.child_start);
    row(&format!("re-exec: of which self-tests ({} probes checked)", re.checks), &re.self_tests);
    row("re-exec: IoMonitor::start, self-test off (KTM_DISABLE_SELF_TEST=1)", &re.unchecked_start);
    for (name, v) in &detach {
        row(name, v);
    }
    row(&btf_row, &btf_times);
    let mut table = t.render();
    if !re.unchecked_start.is_empty() {
        table.push_str(&format!(
            "self-test: a fresh child's IoMonitor::start with it / without it = {:.2} (medians of {} interleaved pairs)\n",
            median(&re.child_start) / median(&re.unchecked_start),
            re.child_start.len()
        ));
    }
    let b = breakdown(&maps, &cells);
    table.push_str(&b.table);

    let msv = |v: &[f64]| dist(&v.iter().map(|x| ms(*x)).collect::<Vec<_>>());
    let json = J::obj()
        .with("main_to_attached_first_ms", ms(first_from_main))
        .with("start_first_ms", ms(first_start))
        .with("start_settled_ms", msv(&starts))
        .with("start_after_drop_ms", msv(&restarts))
        .with("pause_ms", opts.pause_ms)
        .with("drop_ms", msv(&drops))
        .with("reexec_spawn_to_main_ms", msv(&re.to_main))
        .with("reexec_spawn_to_attached_ms", msv(&re.to_attached))
        .with("reexec_child_start_ms", msv(&re.child_start))
        .with("reexec_child_self_tests_ms", msv(&re.self_tests))
        .with("reexec_child_self_test_probes", re.checks)
        .with("reexec_child_start_self_test_off_ms", msv(&re.unchecked_start))
        .with("reexec_self_test_ratio", median(&re.child_start) / median(&re.unchecked_start))
        .with("reexec_child_rss_kb", dist(&re.rss))
        .with("reexec_child_hwm_kb", dist(&re.hwm))
        .with("detach_one_program_ms", J::Obj(detach.iter().map(|(n, v)| (n.to_string(), msv(v))).collect()))
        .with("btf_resolve_fentry_targets_ms", msv(&btf_times))
        .with("breakdown_maps_us", b.maps_us)
        .with("breakdown_attached_us", b.attached_us)
        .with("breakdown_failed_alternatives_us", b.failed_us)
        .with("breakdown", J::Arr(b.rows));
    Ok(Startup {
        table,
        json,
        start_ms: ms(median(&starts)),
        restart_ms: ms(median(&restarts)),
        process_ms: ms(median(&re.to_attached)),
        child_rss_kb: median(&re.rss) as u64,
    })
}

/// Waits `opts.pause_ms` (250 ms), so that the start after it is a settled one.
fn pause(opts: &Opts) {
    std::thread::sleep(std::time::Duration::from_millis(opts.pause_ms));
}

/// The re-exec runs: times from process spawn (ns), and the child's memory (KiB).
struct Reexecs {
    to_main: Vec<f64>,
    to_attached: Vec<f64>,
    child_start: Vec<f64>,
    /// Of `child_start`, the self-tests' time, and how many points they checked.
    self_tests: Vec<f64>,
    checks: u64,
    /// `child_start` of children with the self-test switched off.
    unchecked_start: Vec<f64>,
    rss: Vec<f64>,
    hwm: Vec<f64>,
}

/// Re-exec: process spawn to all probes attached, `opts.reexecs` times.
fn reexecs(opts: &Opts) -> R<Reexecs> {
    let exe = std::env::current_exe()?;
    let mut re = Reexecs {
        to_main: Vec::new(),
        to_attached: Vec::new(),
        child_start: Vec::new(),
        self_tests: Vec::new(),
        checks: 0,
        unchecked_start: Vec::new(),
        rss: Vec::new(),
        hwm: Vec::new(),
    };
    // Interleaved with children that skip the self-test (KTM_DISABLE_SELF_TEST=1): the same
    // start without it, for the ratio.
    for _ in 0..opts.reexecs {
        pause(opts);
        let o = Command::new(&exe)
            .env(CHILD_ENV, "1")
            .env("KTM_DISABLE_SELF_TEST", "1")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()?;
        let v = child_numbers(&o)?;
        re.unchecked_start.push((v[2] - v[1]) as f64);
        pause(opts);
        let s = mono_ns();
        let o = Command::new(&exe).env(CHILD_ENV, "1").stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
        let v = child_numbers(&o)?;
        re.to_main.push((v[0] - s) as f64);
        re.to_attached.push((v[2] - s) as f64);
        re.child_start.push((v[2] - v[1]) as f64);
        re.rss.push(v[4] as f64);
        re.hwm.push(v[5] as f64);
        re.checks = v[6];
        re.self_tests.push(v[7] as f64);
    }
    Ok(re)
}

/// The start-up child's numbers (see [`startup_child`]).
fn child_numbers(o: &std::process::Output) -> R<Vec<u64>> {
    let text = String::from_utf8_lossy(&o.stdout);
    let v: Vec<u64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    if !o.status.success() || v.len() < 8 {
        return Err(format!("start-up child failed ({}): {text}", o.status).into());
    }
    Ok(v)
}

/// What a detach costs (ns), one empty program at a time by mechanism, then empty programs
/// on all of the iomonitor's `points`.
fn detach_costs(opts: &Opts, points: &[(String, AttachPoint)]) -> R<Vec<(&'static str, Vec<f64>)>> {
    let detach_points = [
        ("drop: one classic syscall tracepoint program", AttachPoint::tracepoint("syscalls", "sys_enter_getppid")),
        ("drop: one classic filemap tracepoint program", AttachPoint::tracepoint("filemap", "mm_filemap_get_pages")),
        ("drop: one raw tracepoint program (sys_enter)", AttachPoint::raw_tracepoint("sys_enter")),
    ];
    let mut detach: Vec<(&'static str, Vec<f64>)> = Vec::new();
    for (name, point) in &detach_points {
        let mut v = Vec::new();
        for _ in 0..3 {
            // A kernel without the point (5.10 has no mm_filemap_get_pages) leaves the row out.
            let Ok(set) = Set::build(&Design::new(vec![]).part("one", point.clone(), Body::Empty)) else {
                break;
            };
            let s = Instant::now();
            drop(set);
            v.push(s.elapsed().as_nanos() as f64);
        }
        if !v.is_empty() {
            detach.push((name, v));
        }
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
    Ok(detach)
}

/// What a kernel that loads fentry programs adds at start (ns): vmlinux BTF read, walked and
/// indexed to resolve the fentry targets (here the policy check skips it, so it is timed
/// apart), then released. Returns the row's name and the times.
fn btf_resolve(opts: &Opts) -> (String, Vec<f64>) {
    let probes = ktm::programs::probes();
    let fentry_funcs: Vec<String> = ktm::inspect::programs(&probes)
        .filter_map(|(_, pt, _)| match pt {
            AttachPoint::Fentry { func, .. } => Some(func.clone()),
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
    (btf_row, btf_times)
}

/// Each replayed alternative's timings, one per replay, by (position in the replay, probe,
/// alternative).
type Cells = BTreeMap<(usize, String, String), Vec<AltTiming>>;

/// Table 1b and its figures (us).
struct Breakdown {
    table: String,
    maps_us: f64,
    attached_us: f64,
    failed_us: f64,
    rows: Vec<J>,
}

/// Table 1b: the replays' medians, alternative by alternative, from the map creation times
/// (us) and the replays' `cells`.
fn breakdown(maps: &[f64], cells: &Cells) -> Breakdown {
    let mut b = Table::new(
        "1b. Start-up breakdown (replay of IoMonitor::start stage by stage, settled, medians, us)",
        &["probe", "alternative", "build", "load", "attach", "outcome"],
    );
    let mut bj = Vec::new();
    let (mut wasted, mut useful) = (0.0, 0.0);
    let maps_med = median(maps);
    b.row(vec![
        "(maps)".into(),
        "config, counters, start slots, hash, spilled".into(),
        "-".into(),
        f0(maps_med),
        "-".into(),
        "ok".into(),
    ]);
    for ((_, probe, point), ts) in cells {
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
    Breakdown { table: b.render(), maps_us: maps_med, attached_us: useful, failed_us: wasted, rows: bj }
}
