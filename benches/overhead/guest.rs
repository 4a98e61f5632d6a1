//! Group `guest-mechanisms`: fentry/fexit vs kprobe/kretprobe vs classic syscall tracepoints
//! on the syscall functions the iomonitor's latency probes use, as empty programs and as the
//! real iomonitor. Meant for the QEMU guests (`.ci/qemu/bench-guest.sh`), where both fentry
//! and kprobes work; there everything runs under TCG, so absolute times mean nothing and
//! only ratios to the bare call of the same run (interleaved rounds, medians) are reported.
//! Where a mechanism is unavailable (this host: kprobes compiled out, fentry refused), its
//! rows say so and why, and the rest is measured.

use super::cost::measure_counted;
use super::harness::{self, Bench, Config, Op, Samples, R};
use super::json::J;
use super::opts::{in_qemu, Opts};
use super::progs::{Body, Design, ProgStat, Set};
use super::scopes::Ids;
use super::stats::{ktm_programs, stats_per_op};
use super::table::{f0, f1, f3, ratio, Table};
use ktm::attach::{AttachPoint, Mechanism, Policy};
use ktm::iomonitor::{IoMonitor, Scope};
use ktm::programs::syscall_fn;

/// The syscalls whose latency the iomonitor measures.
const SYSCALLS: [&str; 2] = ["pread64", "read"];
/// The ops whose syscalls carry the probes (getppid carries none, but pays for classic
/// syscall tracepoints' slow path).
const PROBED: [Op; 2] = [Op::Pread, Op::Read];

/// Waits for the kernel to finish what an attach or detach left to do asynchronously (RCU
/// callbacks freeing programs and trampolines, ftrace text patching). Under TCG each
/// change of kernel text also throws away translated code, and without the pause the first
/// loop after a configuration change (bare's pread, mostly) ran up to 30% slow.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(if in_qemu() { 250 } else { 50 }));
}

/// One way of hooking the entry and exit of the syscalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mech {
    Fentry,
    Kprobe,
    /// kprobe programs on kprobe_multi links (fprobe), where the kernel has them.
    KprobeMulti,
    Tracepoint,
}

impl Mech {
    const ALL: [Mech; 4] = [Mech::Fentry, Mech::Kprobe, Mech::KprobeMulti, Mech::Tracepoint];

    fn name(self) -> &'static str {
        match self {
            Mech::Fentry => "fentry+fexit",
            Mech::Kprobe => "kprobe+kretprobe",
            Mech::KprobeMulti => "kprobe_multi+kretprobe_multi",
            Mech::Tracepoint => "tracepoints",
        }
    }

    /// The entry and exit points for `syscall`.
    fn points(self, syscall: &str) -> [AttachPoint; 2] {
        let f = syscall_fn(syscall);
        match self {
            Mech::Fentry => [AttachPoint::fentry(&f, false), AttachPoint::fentry(&f, true)],
            Mech::Kprobe => [AttachPoint::kprobe(&f, false), AttachPoint::kprobe(&f, true)],
            Mech::KprobeMulti => [AttachPoint::kprobe_multi(&f, false), AttachPoint::kprobe_multi(&f, true)],
            Mech::Tracepoint => [
                AttachPoint::tracepoint("syscalls", &format!("sys_enter_{syscall}")),
                AttachPoint::tracepoint("syscalls", &format!("sys_exit_{syscall}")),
            ],
        }
    }

    /// The mechanism of the entry point (what the iomonitor's latency probes must have got).
    fn entry(self) -> Mechanism {
        match self {
            Mech::Fentry => Mechanism::Fentry,
            Mech::Kprobe => Mechanism::Kprobe,
            Mech::KprobeMulti => Mechanism::KprobeMulti,
            Mech::Tracepoint => Mechanism::Tracepoint,
        }
    }

    /// The empty programs' row.
    fn floor(self) -> &'static str {
        match self {
            Mech::Fentry => "empty fentry+fexit",
            Mech::Kprobe => "empty kprobe+kretprobe",
            Mech::KprobeMulti => "empty kprobe_multi+kretprobe_multi",
            Mech::Tracepoint => "empty tracepoints",
        }
    }

    /// The iomonitor's rows: neighbour, target.
    fn ktm(self) -> [&'static str; 2] {
        match self {
            Mech::Fentry => ["ktm fentry nbr", "ktm fentry tgt"],
            Mech::Kprobe => ["ktm kprobe nbr", "ktm kprobe tgt"],
            Mech::KprobeMulti => ["ktm kprobe_multi nbr", "ktm kprobe_multi tgt"],
            Mech::Tracepoint => ["ktm tracepoint nbr", "ktm tracepoint tgt"],
        }
    }

    /// The policy that gives the iomonitor this mechanism where it works.
    fn policy(self) -> Policy {
        match self {
            Mech::Fentry => Policy::default(),
            Mech::Kprobe => Policy {
                disable_fentry: true,
                disable_tracepoint: true,
                disable_kprobe_multi: true,
                ..Policy::default()
            },
            Mech::KprobeMulti => Policy { disable_fentry: true, disable_tracepoint: true, ..Policy::default() },
            Mech::Tracepoint => Policy { disable_fentry: true, disable_kprobe: true, ..Policy::default() },
        }
    }

    fn policy_text(self) -> &'static str {
        match self {
            Mech::Fentry => "default policy",
            Mech::Kprobe => "KTM_DISABLE_FENTRY + KTM_DISABLE_TRACEPOINT + KTM_DISABLE_KPROBE_MULTI",
            Mech::KprobeMulti => "KTM_DISABLE_FENTRY + KTM_DISABLE_TRACEPOINT",
            Mech::Tracepoint => "KTM_DISABLE_FENTRY + KTM_DISABLE_KPROBE",
        }
    }
}

/// Empty programs at the entry and exit of both syscalls.
fn floor_design(m: Mech) -> Design {
    let mut d = Design::new(Vec::new());
    for s in SYSCALLS {
        let short = s.trim_end_matches("64");
        let [enter, exit] = m.points(s);
        d = d.part(&format!("{short}_in"), enter, Body::Empty).part(&format!("{short}_out"), exit, Body::Empty);
    }
    d
}

/// The iomonitor's latency probes, which must have got the mechanism under test.
const LATENCY_PROBES: [&str; 2] = ["ktm_pread", "ktm_read"];

/// Checks that the iomonitor's latency probes got `m`; else says why not.
fn check_mechanism(mon: &IoMonitor, m: Mech) -> Result<(), String> {
    for name in LATENCY_PROBES {
        let r = mon.reports().find(|r| r.name == name).ok_or(format!("{name}: no such probe"))?;
        let got = r.attached.as_ref().map(|p| p.mechanism());
        if got == Some(m.entry()) {
            continue;
        }
        let why = r
            .failures
            .iter()
            .find(|(p, _)| p.mechanism() == m.entry())
            .map(|(p, why)| format!("{p}: {why}"))
            .unwrap_or_default();
        let got = r.attached.as_ref().map_or("nothing".to_string(), |p| p.to_string());
        return Err(format!("{name} got {got} instead of {}; {why}", m.entry()));
    }
    Ok(())
}

/// One iomonitor configuration, started once before the rounds.
struct KtmCheck {
    /// Measured, or why not.
    status: Result<(), String>,
    /// (probe, what it attached or why nothing).
    attached: Vec<(String, String)>,
}

fn check_ktm(m: Mech) -> KtmCheck {
    let mon = match IoMonitor::start(&m.policy()) {
        Ok(mon) => mon,
        Err(e) => return KtmCheck { status: Err(format!("IoMonitor::start: {e}")), attached: Vec::new() },
    };
    let attached = mon
        .reports()
        .map(|r| (r.name.clone(), r.attached.as_ref().map_or("not attached".to_string(), |p| p.to_string())))
        .collect();
    KtmCheck { status: check_mechanism(&mon, m), attached }
}

/// `a / b` of the medians of a cell in two rows.
fn rel(s: &Samples, a: &str, b: &str, op: Op) -> f64 {
    s.median(a, op.name()) / s.median(b, op.name())
}

/// `(a - bare) / (b - bare)`: how much more one mechanism adds than another (NaN when `b`
/// adds nothing measurable).
fn added(s: &Samples, a: &str, b: &str, op: Op) -> f64 {
    let bare = s.median("bare", op.name());
    let (x, y) = (s.median(a, op.name()) - bare, s.median(b, op.name()) - bare);
    if y > 0.0 {
        x / y
    } else {
        f64::NAN
    }
}

fn unavailable(why: &str) -> String {
    format!("unavailable: {why}")
}

/// Footnotes of a table: the long reasons, numbered.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    /// The marker of `why` (the same reason, the same number).
    fn mark(&mut self, why: &str) -> String {
        let i = self.0.iter().position(|w| w == why).unwrap_or_else(|| {
            self.0.push(why.to_string());
            self.0.len() - 1
        });
        format!("unavailable [{}]", i + 1)
    }

    fn render(&self) -> String {
        self.0.iter().enumerate().map(|(i, w)| format!("[{}] {w}\n", i + 1)).collect()
    }
}

/// A mechanism's empty programs, and whether this kernel attached them.
type Floor = (Mech, Design, Result<(), String>);

/// Runs the group; returns its tables and JSON.
pub fn group(b: &mut Bench, opts: &Opts, ids: &Ids) -> R<(String, J)> {
    // Which configurations this kernel can run, tried once before the rounds.
    let floors: Vec<Floor> = Mech::ALL
        .iter()
        .map(|&m| {
            let d = floor_design(m);
            let st = Set::build(&d).map(drop).map_err(|e| e.to_string());
            (m, d, st)
        })
        .collect();
    let ktms: Vec<(Mech, KtmCheck)> = Mech::ALL.iter().map(|&m| (m, check_ktm(m))).collect();
    let s = measure(b, opts, ids, &floors, &ktms)?;

    let mut out = String::new();
    let mut js = J::obj();
    let mut notes = Notes::default();
    let (t, j) = configurations(&floors, &ktms, &mut notes);
    out.push_str(&t);
    out.push_str(&notes.render());
    js.set("configurations", j);
    let (t, j) = attached(&ktms);
    out.push_str(&t);
    js.set("iomonitor_attached", j);
    let (t, j) = cost(&s, opts, b.calls, &floors, &ktms, &mut notes);
    out.push_str(&t);
    js.set("cost", j);
    let (t, j) = comparisons(&s);
    out.push_str(&t);
    js.set("comparisons", j);

    // BPF statistics: time inside the programs only (not the trampoline, kprobe or perf
    // path that calls them).
    match program_stats(b, &floors, &ktms, ids) {
        Ok((st, sj)) => {
            out.push_str(&st);
            js.set("program_stats", sj);
        }
        Err(e) => {
            out.push_str(&format!("\n## 8d. BPF statistics unavailable: {e}\n"));
            js.set("program_stats", J::obj().with("unavailable", e.to_string()));
        }
    }
    Ok((out, js))
}

/// The interleaved rounds: bare, each floor and each iomonitor configuration that this
/// kernel can run.
fn measure(b: &mut Bench, opts: &Opts, ids: &Ids, floors: &[Floor], ktms: &[(Mech, KtmCheck)]) -> R<Samples> {
    let scopes = |m: Mech| {
        let [nbr, tgt] = m.ktm();
        [(nbr, Scope::Cgroup(ids.other)), (tgt, Scope::Cgroup(ids.mine))]
    };

    let mut configs: Vec<Config> = vec![(
        "bare",
        Box::new(|b: &mut Bench| {
            settle();
            b.measure("bare", &Op::ALL);
            Ok(())
        }),
    )];
    for (m, d, st) in floors {
        if st.is_err() {
            continue;
        }
        let row = m.floor();
        configs.push((
            row,
            Box::new(move |b: &mut Bench| {
                let _set = Set::build(d)?;
                settle();
                b.measure(row, &Op::ALL);
                Ok(())
            }),
        ));
    }
    for (m, k) in ktms {
        if k.status.is_err() {
            continue;
        }
        let m = *m;
        configs.push((
            m.ktm()[0],
            Box::new(move |b: &mut Bench| {
                let mon = IoMonitor::start(&m.policy())?;
                check_mechanism(&mon, m)?;
                settle();
                for (row, scope) in scopes(m) {
                    mon.set_scope(&scope)?;
                    measure_counted(b, &mon, row, false)?;
                }
                Ok(())
            }),
        ));
    }
    harness::interleave(b, "guest-mechanisms", opts.rounds, &mut configs)?;
    drop(configs);
    Ok(b.take())
}

/// Table 8: what was measured, and what could not be (the long reasons as `notes`).
fn configurations(floors: &[Floor], ktms: &[(Mech, KtmCheck)], notes: &mut Notes) -> (String, J) {
    // What was measured, and what could not be.
    let mut t = Table::new(
        "8. guest-mechanisms: the configurations (empty = `r0 = 0; exit` at the entry and exit of both syscalls; \
         ktm = the IoMonitor, nbr = scoped to another cgroup, tgt = to this process's cgroup)",
        &["configuration", "attached to pread64 / read", "status"],
    );
    let mut cj = Vec::new();
    for (m, _, st) in floors {
        let points: Vec<String> = SYSCALLS.iter().flat_map(|s| m.points(s)).map(|p| p.to_string()).collect();
        let status = st.as_ref().map_or_else(|e| unavailable(e), |_| "measured".to_string());
        let cell = st.as_ref().map_or_else(|e| notes.mark(e), |_| "measured".to_string());
        t.row(vec![m.floor().into(), format!("{}: {}", m.name(), SYSCALLS.map(syscall_fn).join(", ")), cell]);
        cj.push(J::obj().with("configuration", m.floor()).with("points", points).with("status", status));
    }
    for (m, k) in ktms {
        let lat: Vec<String> = LATENCY_PROBES
            .iter()
            .filter_map(|n| k.attached.iter().find(|(p, _)| p == n).map(|(_, a)| a.clone()))
            .collect();
        let status = k.status.as_ref().map_or_else(|e| unavailable(e), |_| "measured".to_string());
        let row = format!("ktm {} ({})", m.name(), m.policy_text());
        let cell = k.status.as_ref().map_or_else(|e| notes.mark(e), |_| "measured".to_string());
        t.row(vec![row.clone(), lat.join(" + "), cell]);
        cj.push(
            J::obj()
                .with("configuration", row.as_str())
                .with("rows", m.ktm().to_vec())
                .with("latency_probes", lat)
                .with("status", status),
        );
    }
    (t.render(), J::Arr(cj))
}

/// Table 8a: every probe of each iomonitor configuration (the other probes cost too).
fn attached(ktms: &[(Mech, KtmCheck)]) -> (String, J) {
    let mut head = vec!["probe".to_string()];
    head.extend(ktms.iter().map(|(m, _)| format!("ktm {}", m.name())));
    let head: Vec<&str> = head.iter().map(|h| h.as_str()).collect();
    let mut t = Table::new("8a. What each IoMonitor configuration attached, probe by probe", &head);
    let mut aj = J::obj();
    let names: Vec<String> =
        ktms.iter().flat_map(|(_, k)| k.attached.iter().map(|(n, _)| n.clone())).fold(Vec::new(), |mut v, n| {
            if !v.contains(&n) {
                v.push(n);
            }
            v
        });
    for name in &names {
        let mut row = vec![name.clone()];
        for (_, k) in ktms {
            row.push(k.attached.iter().find(|(n, _)| n == name).map_or("-".into(), |(_, a)| a.clone()));
        }
        t.row(row);
    }
    for (m, k) in ktms {
        aj.set(m.name(), J::Obj(k.attached.iter().map(|(n, a)| (n.clone(), J::from(a.as_str()))).collect()));
    }
    (t.render(), aj)
}

/// Table 8b: cost per call, as ratios to bare and to the same mechanism's empty programs.
fn cost(
    s: &Samples,
    opts: &Opts,
    calls: usize,
    floors: &[Floor],
    ktms: &[(Mech, KtmCheck)],
    notes: &mut Notes,
) -> (String, J) {
    let mut head: Vec<String> = vec!["configuration".into()];
    head.extend(Op::ALL.iter().map(|op| format!("{op} ns")));
    head.extend(Op::ALL.iter().map(|op| format!("{op}/bare")));
    head.extend(Op::ALL.iter().map(|op| format!("{op}/floor")));
    head.push("pread counted/call".into());
    head.push("read counted/call".into());
    head.push("note".into());
    let head: Vec<&str> = head.iter().map(|h| h.as_str()).collect();
    let mut t = Table::new(
        &format!(
            "8b. Cost per call, medians of {} interleaved rounds of {} calls per loop (ns are {}; read the ratios); \
             floor = the same mechanism's empty programs",
            opts.rounds,
            calls,
            if in_qemu() { "TCG-emulated" } else { "this host's" }
        ),
        &head,
    );
    let mut rows: Vec<(&str, Option<&str>, Result<(), String>)> = vec![("bare", None, Ok(()))];
    for (m, _, st) in floors {
        rows.push((m.floor(), None, st.clone()));
    }
    for (m, k) in ktms {
        for row in m.ktm() {
            rows.push((row, Some(m.floor()), k.status.clone()));
        }
    }
    let mut rj = J::obj();
    for (row, floor, st) in &rows {
        let mut cells = vec![row.to_string()];
        if let Err(why) = st {
            cells.extend(std::iter::repeat("-".to_string()).take(head.len() - 2));
            cells.push(notes.mark(why));
            t.row(cells);
            rj.set(row, J::obj().with("unavailable", why.as_str()));
            continue;
        }
        let fl = floor.filter(|f| floors.iter().any(|(m, _, st)| m.floor() == *f && st.is_ok()));
        cells.extend(Op::ALL.iter().map(|&op| f0(s.median(row, op.name()))));
        cells.extend(Op::ALL.iter().map(|&op| ratio(rel(s, row, "bare", op))));
        cells.extend(Op::ALL.iter().map(|&op| fl.map_or("-".into(), |f| ratio(rel(s, row, f, op)))));
        let cnt = |op: Op| s.median(row, &format!("{op} counted/call"));
        cells.push(if floor.is_some() { f3(cnt(Op::Pread)) } else { "-".into() });
        cells.push(if floor.is_some() { f3(cnt(Op::Read)) } else { "-".into() });
        cells.push(String::new());
        t.row(cells);
        let mut o = J::obj().with("floor", fl);
        for op in Op::ALL {
            let mut c = J::obj()
                .with("ns_per_call", s.median(row, op.name()))
                .with("samples", s.get(row, op.name()).map(|v| v.to_vec()).unwrap_or_default())
                .with("x_bare", rel(s, row, "bare", op));
            if let Some(f) = fl {
                c.set("x_floor", rel(s, row, f, op));
            }
            if floor.is_some() {
                c.set("counted_per_call", cnt(op));
            }
            o.set(op.name(), c);
        }
        rj.set(row, o);
    }
    (t.render(), rj)
}

/// Table 8c: the comparisons the choice rests on, A vs B in the same run.
fn comparisons(s: &Samples) -> (String, J) {
    let measured = |row: &str| s.get(row, "pread").is_some();
    let pairs: Vec<(String, &str, &str)> = vec![
        ("empty: kprobe+kretprobe vs fentry+fexit".into(), Mech::Kprobe.floor(), Mech::Fentry.floor()),
        ("ktm neighbour: kprobe vs fentry".into(), Mech::Kprobe.ktm()[0], Mech::Fentry.ktm()[0]),
        ("ktm target: kprobe vs fentry".into(), Mech::Kprobe.ktm()[1], Mech::Fentry.ktm()[1]),
        ("empty: tracepoints vs fentry+fexit".into(), Mech::Tracepoint.floor(), Mech::Fentry.floor()),
        ("ktm neighbour: tracepoint vs fentry".into(), Mech::Tracepoint.ktm()[0], Mech::Fentry.ktm()[0]),
        ("ktm target: tracepoint vs fentry".into(), Mech::Tracepoint.ktm()[1], Mech::Fentry.ktm()[1]),
        ("empty: tracepoints vs kprobe+kretprobe".into(), Mech::Tracepoint.floor(), Mech::Kprobe.floor()),
        ("ktm target: tracepoint vs kprobe".into(), Mech::Tracepoint.ktm()[1], Mech::Kprobe.ktm()[1]),
        ("empty: kprobe_multi vs kprobe+kretprobe".into(), Mech::KprobeMulti.floor(), Mech::Kprobe.floor()),
        ("ktm target: kprobe_multi vs kprobe".into(), Mech::KprobeMulti.ktm()[1], Mech::Kprobe.ktm()[1]),
    ];
    let mut t = Table::new(
        "8c. A vs B, same run: A/B of ns per call, and (A - bare)/(B - bare) = how many times B's added cost A adds",
        &[
            "comparison (A vs B)",
            "pread A/B",
            "read A/B",
            "getppid A/B",
            "pread added A/B",
            "read added A/B",
            "pread A/bare",
            "pread B/bare",
            "note",
        ],
    );
    let mut pj = Vec::new();
    for (name, a, bb) in &pairs {
        if !measured(a) || !measured(bb) {
            let missing = if measured(a) { bb } else { a };
            let mut cells = vec![name.clone()];
            cells.extend(std::iter::repeat("-".to_string()).take(7));
            cells.push(format!("{missing} not measured"));
            t.row(cells);
            pj.push(J::obj().with("comparison", name.as_str()).with("unavailable", *missing));
            continue;
        }
        let mut cells = vec![name.clone()];
        cells.extend(Op::ALL.iter().map(|&op| ratio(rel(s, a, bb, op))));
        cells.extend(PROBED.iter().map(|&op| ratio(added(s, a, bb, op))));
        cells.push(ratio(rel(s, a, "bare", Op::Pread)));
        cells.push(ratio(rel(s, bb, "bare", Op::Pread)));
        cells.push(String::new());
        t.row(cells);
        let mut o = J::obj().with("comparison", name.as_str()).with("a", *a).with("b", *bb);
        for op in Op::ALL {
            o.set(
                op.name(),
                J::obj()
                    .with("a_over_b", rel(s, a, bb, op))
                    .with("added_a_over_added_b", added(s, a, bb, op))
                    .with("a_over_bare", rel(s, a, "bare", op))
                    .with("b_over_bare", rel(s, bb, "bare", op)),
            );
        }
        pj.push(o);
    }
    (t.render(), J::Arr(pj))
}

type StatRows = Vec<(String, Vec<(Op, Vec<ProgStat>)>)>;

fn program_stats(b: &mut Bench, floors: &[Floor], ktms: &[(Mech, KtmCheck)], ids: &Ids) -> R<(String, J)> {
    let _stats = ktm::sys::bpf::enable_stats()?;
    let mut results: StatRows = Vec::new();
    for (m, d, st) in floors {
        if st.is_err() {
            continue;
        }
        let set = Set::build(d)?;
        results.push((m.floor().to_string(), stats_per_op(b, &set.programs(), &PROBED)?));
    }
    for (m, k) in ktms {
        if k.status.is_err() {
            continue;
        }
        let mon = IoMonitor::start(&m.policy())?;
        mon.set_scope(&Scope::Cgroup(ids.mine))?;
        results.push((m.ktm()[1].to_string(), stats_per_op(b, &ktm_programs(&mon), &PROBED)?));
    }
    let calls = b.calls as f64;
    let mut t = Table::new(
        &format!(
            "8d. BPF statistics (BPF_ENABLE_STATS), {} calls per loop: ns per program run and runs per call; \
             only the time inside the program, not the trampoline / kprobe / perf path around it",
            b.calls
        ),
        &["configuration", "program @ point", "pread ns/run", "pread runs/call", "read ns/run", "read runs/call"],
    );
    let mut j = Vec::new();
    let mut per_call: Vec<(String, [f64; 2])> = Vec::new();
    for (row, per_op) in &results {
        let mut sum = [0.0; 2];
        let mut first = true;
        let n = per_op.first().map_or(0, |(_, v)| v.len());
        for i in 0..n {
            let runs: Vec<u64> = per_op.iter().map(|(_, v)| v[i].runs).collect();
            if runs.iter().all(|&r| r == 0) {
                continue; // an iomonitor program these loops never reach
            }
            let s0 = &per_op[0].1[i];
            let mut cells =
                vec![if first { row.clone() } else { String::new() }, format!("{} @ {}", s0.label, s0.point)];
            first = false;
            let mut o = J::obj()
                .with("configuration", row.as_str())
                .with("program", s0.label.as_str())
                .with("point", s0.point.as_str());
            for (k, (op, v)) in per_op.iter().enumerate() {
                let st = &v[i];
                cells.push(f1(st.ns_per_run));
                cells.push(f3(st.runs as f64 / calls));
                if st.runs > 0 {
                    sum[k] += st.ns_per_run * st.runs as f64 / calls;
                }
                o.set(op.name(), J::obj().with("ns_per_run", st.ns_per_run).with("runs", st.runs));
            }
            t.row(cells);
            j.push(o);
        }
        per_call.push((row.clone(), sum));
    }
    let mut out = t.render();
    let mut t = Table::new(
        "8e. BPF statistics summed per call: ns inside all programs per pread / read call, and vs the empty \
         fentry+fexit",
        &["configuration", "pread ns/call", "read ns/call", "pread vs fentry+fexit", "read vs fentry+fexit"],
    );
    let base = per_call.iter().find(|(r, _)| r == Mech::Fentry.floor()).map(|(_, v)| *v);
    let mut sj = J::obj();
    for (row, v) in &per_call {
        let vs = |k: usize| base.map_or("-".to_string(), |b| ratio(v[k] / b[k]));
        t.row(vec![row.clone(), f1(v[0]), f1(v[1]), vs(0), vs(1)]);
        sj.set(row, J::obj().with("pread_ns_per_call", v[0]).with("read_ns_per_call", v[1]));
    }
    out.push_str(&t.render());
    Ok((out, J::obj().with("programs", J::Arr(j)).with("per_call", sj)))
}
