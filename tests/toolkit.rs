//! Privileged tests of the BPF toolkit: real programs counting a real child's syscalls.

mod common;

use ktm::attach::{self, attach_plan, features, Alternative, AttachPoint, Feature, Mechanism, Needs, Plan, Policy};
use ktm::insn::{Asm, Helper, MapRef, Program, R0, R1, R10, R2, R6};
use ktm::load::{self, ProgramSpec};
use ktm::maps::{Array, PerCpuArray};
use ktm::sys::bpf;
use ktm::sys::AsRawFd;
use ktm::workload::Workload;
use std::path::Path;

const CONFIG: MapRef = MapRef("config");
const COUNTER: MapRef = MapRef("counter");

/// `if (tgid != config[0]) return 0; [if (syscall_nr != nr) return 0;] counter[0]++ (this CPU)`.
///
/// With `syscall_nr`, the program sits on raw tracepoint `sys_enter`, whose second argument is
/// the syscall number.
fn counter_program(syscall_nr: Option<i64>) -> ktm::Result<Program> {
    let mut a = Asm::new();
    let out = a.label("out");
    a.mov64(R6, R1); // ctx
    if let Some(nr) = syscall_nr {
        a.ldx_dw(R2, R6, 8); // args[1]: syscall id
        a.jne(R2, nr as i32, out);
    }
    a.call(Helper::GetCurrentPidTgid);
    a.rsh64(R0, 32);
    a.ld_map_value(R1, CONFIG, 0);
    a.ldx_w(R1, R1, 0);
    a.jne(R0, R1, out);
    a.st_w(R10, -4, 0);
    a.map_call(Helper::MapLookupElem, COUNTER, -4);
    a.jeq(R0, 0, out);
    a.mov64(R1, 1);
    a.atomic_add64(R0, 0, R1);
    a.bind(out);
    a.mov64(R0, 0);
    a.exit();
    Ok(a.finish()?)
}

struct Maps {
    config: Array<u32>,
    counter: PerCpuArray<u64>,
}

impl Maps {
    fn new() -> Maps {
        Maps { config: Array::create("config", 1).unwrap(), counter: PerCpuArray::create("counter", 1).unwrap() }
    }

    fn fd_of(&self) -> impl Fn(MapRef) -> Option<i32> + '_ {
        move |m| match m {
            CONFIG => Some(self.config.map().as_raw_fd()),
            COUNTER => Some(self.counter.map().as_raw_fd()),
            _ => None,
        }
    }

    fn count(&self) -> u64 {
        self.counter.get(0).unwrap().sum()
    }
}

fn file_of(dir: &Path, bytes: usize) -> String {
    let p = dir.join("data");
    std::fs::write(&p, vec![7u8; bytes]).unwrap();
    p.to_str().unwrap().to_string()
}

fn count_preads(point: AttachPoint, program: Program, test: &str) {
    let maps = Maps::new();
    let spec = ProgramSpec {
        name: "ktm_test_count".into(),
        prog_type: point.prog_type(),
        program,
        attach: point.load_target().unwrap(),
    };
    let prog = load::program(&spec, maps.fd_of()).unwrap();
    let attachment = attach::attach_program(&prog, &point).unwrap();
    let dir = common::scratch();
    let file = file_of(dir.path(), 4096);
    let mut child = Workload::spawn(&common::ktm_bin(), "ktmtest", None).unwrap();
    maps.config.set(0, &child.pid()).unwrap();

    const N: u64 = 1000;
    child.run(&format!("pread {file} {N} 4096")).unwrap();
    assert_eq!(maps.count(), N, "{test}: preads counted by {point}");
    // Other processes' preads (ours) are filtered out.
    let f = std::fs::File::open(&file).unwrap();
    for _ in 0..10 {
        std::os::unix::fs::FileExt::read_at(&f, &mut [0u8; 16], 0).unwrap();
    }
    assert_eq!(maps.count(), N, "{test}: a non-target's preads were counted");

    // Detaching stops the counting.
    drop(attachment);
    child.run(&format!("pread {file} 50 4096")).unwrap();
    assert_eq!(maps.count(), N, "{test}: counting went on after the attachment was dropped");

    // Once everything is dropped, nothing of ours is left in the kernel.
    let (prog_id, map_ids) = (prog.id(), [maps.config.map().id(), maps.counter.map().id()]);
    drop(prog);
    drop(maps);
    assert!(common::gone(|| bpf::prog_fd_by_id(prog_id)), "{test}: program {prog_id} still in the kernel");
    for id in map_ids {
        assert!(common::gone(|| bpf::map_fd_by_id(id)), "{test}: map {id} still in the kernel");
    }
    common::matrix(&format!("toolkit:{}", point.mechanism()), "pass");
}

#[test]
fn tracepoint_counts_exact_preads() {
    if !common::privileged("tracepoint_counts_exact_preads") {
        return;
    }
    count_preads(
        AttachPoint::tracepoint("syscalls", "sys_enter_pread64"),
        counter_program(None).unwrap(),
        "tracepoint",
    );
}

#[test]
fn raw_tracepoint_counts_exact_preads() {
    if !common::privileged("raw_tracepoint_counts_exact_preads") {
        return;
    }
    count_preads(
        AttachPoint::raw_tracepoint("sys_enter"),
        counter_program(Some(libc::SYS_pread64)).unwrap(),
        "raw tracepoint",
    );
}

#[test]
fn verifier_rejection_names_message_and_instruction() {
    if !common::privileged("verifier_rejection_names_message_and_instruction") {
        return;
    }
    let mut a = Asm::new();
    a.mov64(R1, 0);
    a.ldx_dw(R0, R1, 0); // dereferences a plain number
    a.exit();
    let program = a.finish().unwrap();
    let spec = ProgramSpec {
        name: "ktm_bad".into(),
        prog_type: ktm::sys::bpf::ProgType::RawTracepoint,
        program,
        attach: None,
    };
    let err = load::program(&spec, |_| None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("invalid mem access"), "verifier message missing: {text}");
    assert!(text.contains("at instruction 1"), "failing instruction missing: {text}");
    assert!(text.contains("tests/toolkit.rs:"), "builder call site missing: {text}");
    match err {
        ktm::Error::Verifier(v) => {
            assert_eq!(v.insn_index, Some(1));
            assert!(v.log.contains("invalid mem access"));
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
}

/// Each CPU's slot of a per-CPU array is written only from that CPU, and the sum is exact.
#[test]
fn per_cpu_array_sums_over_pinned_threads() {
    if !common::privileged("per_cpu_array_sums_over_pinned_threads") {
        return;
    }
    let maps = Maps::new();
    maps.config.set(0, &std::process::id()).unwrap();
    let point = AttachPoint::tracepoint("syscalls", "sys_enter_getppid");
    let spec = ProgramSpec {
        name: "ktm_test_percpu".into(),
        prog_type: point.prog_type(),
        program: counter_program(None).unwrap(),
        attach: None,
    };
    let prog = load::program(&spec, maps.fd_of()).unwrap();
    let _a = attach::attach_program(&prog, &point).unwrap();
    let cpus = ktm::sys::online_cpus().unwrap();
    let per_cpu_calls = |cpu: usize| 100 + 37 * cpu as u64;
    std::thread::scope(|s| {
        for &cpu in &cpus {
            s.spawn(move || {
                let set = {
                    let mut set = nix::sched::CpuSet::new();
                    set.set(cpu).unwrap();
                    set
                };
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
                for _ in 0..per_cpu_calls(cpu) {
                    unsafe { libc::getppid() };
                }
            });
        }
    });
    let values = maps.counter.get(0).unwrap();
    assert_eq!(values.0.len(), ktm::sys::possible_cpus().unwrap());
    for &cpu in &cpus {
        assert_eq!(values.0[cpu], per_cpu_calls(cpu), "slot of CPU {cpu}");
    }
    assert_eq!(values.sum(), cpus.iter().map(|&c| per_cpu_calls(c)).sum::<u64>());
}

/// The example chain: fentry, kprobe, then tracepoint on the page-cache lookup.
#[test]
fn fallback_chain_reports_each_step() {
    if !common::privileged("fallback_chain_reports_each_step") {
        return;
    }
    let maps = Maps::new();
    let plan = Plan {
        name: "ktm_read_batch".into(),
        alternatives: vec![
            Alternative::new(AttachPoint::fentry("filemap_get_read_batch", false), || counter_program(None)),
            Alternative::new(AttachPoint::kprobe_multi("filemap_get_read_batch", false), || counter_program(None)),
            Alternative::new(AttachPoint::kprobe("filemap_get_read_batch", false), || counter_program(None)),
            Alternative::new(AttachPoint::tracepoint("filemap", "mm_filemap_get_pages"), || counter_program(None)),
        ],
        exercise: None,
    };
    let fd_of = maps.fd_of();
    let (attached, report) = attach_plan(&plan, &Policy::from_env(), &fd_of);
    println!("{report}");
    // Every step that failed says why; a step failed only where the feature probe also failed
    // (or where the symbol or tracepoint is missing on this kernel).
    for (point, why) in &report.failures {
        assert!(!why.is_empty(), "{point} failed without a reason");
        let m = point.mechanism();
        if common::mechanism_works(m, &Policy::from_env()) {
            assert!(
                why.contains("does not exist") || why.contains("no BTF") || why.contains("no such function"),
                "{point} failed although {m} works here: {why}"
            );
        }
    }
    // On a kernel without kprobes (the dev/CI host), the kprobe step names that.
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        let kp = report.failures.iter().find(|(p, _)| p.mechanism() == Mechanism::Kprobe).expect("kprobe step tried");
        assert!(kp.1.contains("no kprobes") || kp.1.contains("KTM_DISABLE_KPROBE"), "{}", kp.1);
    }
    let Some(attached) = attached else {
        // Only a kernel with none of the three (5.10: no such symbol, no such tracepoint) may
        // end with nothing attached.
        let tp = attach::tracefs_root().unwrap().join("events/filemap/mm_filemap_get_pages");
        assert!(!tp.exists(), "tracepoint exists but the chain attached nothing: {report}");
        common::matrix("toolkit:chain", "unavailable");
        return;
    };
    let mech = report.attached.as_ref().unwrap().mechanism();
    // Exact counting through whichever mechanism won: one cached single-page pread = one
    // page-cache batch lookup.
    let dir = common::scratch();
    let file = file_of(dir.path(), 4096);
    let mut child = Workload::spawn(&common::ktm_bin(), "ktmtest", None).unwrap();
    child.run(&format!("pread {file} 1 4096")).unwrap(); // now cached
    maps.config.set(0, &child.pid()).unwrap();
    child.run(&format!("pread {file} 500 4096")).unwrap();
    assert_eq!(maps.count(), 500, "cached preads seen by {mech}");
    drop(attached);
    common::matrix("toolkit:chain", &format!("{mech} pass"));
}

/// The exact preads of the target through a kprobe_multi link on pread64's syscall function,
/// at its entry and at its return (`BPF_F_KPROBE_MULTI_RETURN`), where the kernel has such
/// links; where it does not, the reason names why (no `CONFIG_FPROBE`, or before 5.18) and
/// agrees with the feature probe.
#[test]
fn kprobe_multi_counts_exact_preads() {
    if !common::privileged("kprobe_multi_counts_exact_preads") {
        return;
    }
    let func = ktm::programs::syscall_fn("pread64");
    let link = features::link(attach::Link::KprobeMulti);
    let real = attach::mechanisms().get(Mechanism::KprobeMulti);
    println!("kprobe_multi link: {link:?}; kprobe_multi probe: {real:?}");
    if let Err(why) = link {
        // The kernel's answer, kept as an errno: EOPNOTSUPP built without fprobe, EINVAL no such link.
        let cell = match why.errno {
            Some(libc::EOPNOTSUPP) => "unavailable: no CONFIG_FPROBE",
            Some(libc::EINVAL) => "unavailable: before 5.18",
            _ => panic!("unexplained: {why} (errno {:?})", why.errno),
        };
        assert!(why.why.contains("CONFIG_FPROBE") || why.why.contains("5.18"), "unexplained: {why}");
        let e = AttachPoint::kprobe_multi(&func, false).load_target().expect_err("a load target without the link");
        assert!(e.to_string().contains(&why.why), "{e}");
        assert_eq!(e.errno(), why.errno, "{e}");
        assert!(real.is_err(), "kprobe_multi worked although its link was reported missing");
        common::matrix("toolkit:kprobe_multi", cell);
        common::matrix("toolkit:kretprobe_multi", cell);
        return;
    }
    assert_eq!(real, Ok(()), "the link works, yet a kprobe_multi on vfs_read does not");
    assert_eq!(attach::mechanisms().get(Mechanism::KretprobeMulti), Ok(()));
    for ret in [false, true] {
        let point = AttachPoint::kprobe_multi(&func, ret);
        count_preads(point, counter_program(None).unwrap(), if ret { "kretprobe_multi" } else { "kprobe_multi" });
    }
}

/// The switches: KTM_DISABLE_KPROBE_MULTI takes kprobe_multi alone (the classic kprobe after it
/// is used), KTM_DISABLE_KPROBE both kinds; each failure says which switch.
#[test]
fn kprobe_switches_pick_the_kind() {
    if !common::privileged("kprobe_switches_pick_the_kind") {
        return;
    }
    let maps = Maps::new();
    let func = ktm::programs::syscall_fn("pread64");
    let plan = Plan {
        name: "ktm_kswitch".into(),
        alternatives: vec![
            Alternative::new(AttachPoint::kprobe_multi(&func, false), || counter_program(None)),
            Alternative::new(AttachPoint::kprobe(&func, false), || counter_program(None)),
        ],
        exercise: None,
    };
    let kernel = |m: Mechanism| attach::mechanisms().get(m).is_ok();
    let no_multi = Policy { disable_kprobe_multi: true, ..Policy::default() };
    let (attached, report) = attach_plan(&plan, &no_multi, &maps.fd_of());
    println!("{report}");
    assert_eq!(report.failures[0].1, "disabled by KTM_DISABLE_KPROBE_MULTI", "{report}");
    assert_eq!(report.attached.as_ref().map(|p| p.mechanism()), Some(Mechanism::Kprobe).filter(|&m| kernel(m)));
    drop(attached);
    let no_kprobes = Policy { disable_kprobe: true, ..Policy::default() };
    let (attached, report) = attach_plan(&plan, &no_kprobes, &maps.fd_of());
    assert!(attached.is_none(), "{report}");
    let reasons: Vec<&str> = report.failures.iter().map(|(_, why)| why.as_str()).collect();
    assert_eq!(reasons, ["disabled by KTM_DISABLE_KPROBE"; 2], "{report}");
    let (attached, report) = attach_plan(&plan, &Policy::default(), &maps.fd_of());
    let first = [Mechanism::KprobeMulti, Mechanism::Kprobe].into_iter().find(|&m| kernel(m));
    assert_eq!(report.attached.as_ref().map(|p| p.mechanism()), first, "{report}");
    drop(attached);
}

/// The BTF-free check that decides whether fentry is worth resolving must agree with
/// really loading and attaching an fentry program.
#[test]
fn tracing_refusal_is_known_without_btf() {
    if !common::privileged("tracing_refusal_is_known_without_btf") {
        return;
    }
    let refused = attach::probe(Feature::TracingPrograms).err();
    let real = attach::mechanisms().get(Mechanism::Fentry);
    println!("tracing_refused: {refused:?}; fentry probe: {real:?}");
    match (&real, refused) {
        (Ok(()), None) => common::matrix("toolkit:tracing-policy", "allowed"),
        (Err(_), Some(why)) => {
            // Bypass the check: a program naming a real function is refused the same way.
            let loc = ktm::btf::find_kernel_func("vfs_read").expect("vfs_read in kernel BTF");
            let mut a = Asm::new();
            a.mov64(R0, 0).exit();
            let spec = ProgramSpec {
                name: "ktm_test_fentry".into(),
                prog_type: bpf::ProgType::Tracing,
                program: a.finish().unwrap(),
                attach: Some((bpf::AttachType::TraceFentry, loc.type_id)),
            };
            let e = load::program(&spec, |_| None).expect_err("fentry on vfs_read loaded although reported refused");
            assert_eq!(e.errno(), Some(libc::EPERM), "{e} (the check said: {why})");
            assert_eq!(why.errno, Some(libc::EPERM), "{why}");
            common::matrix("toolkit:tracing-policy", "refused");
        }
        // Allowed by policy, yet the real probe failed for a reason of its own (no BTF, no
        // such function): the check must not have claimed a refusal.
        (Err(e), None) => assert_ne!(e.errno, Some(libc::EPERM), "refusal missed: {e}"),
        (Ok(()), Some(why)) => panic!("fentry works, yet reported refused: {why}"),
    }
}

/// A tracepoint the kernel lacks is named as missing, by either mechanism, so a status
/// line can say "does not exist" rather than quote an errno.
#[test]
fn missing_tracepoints_are_named() {
    if !common::privileged("missing_tracepoints_are_named") {
        return;
    }
    let maps = Maps::new();
    for point in [
        AttachPoint::raw_tracepoint("ktm_no_such_tracepoint"),
        AttachPoint::tracepoint("filemap", "ktm_no_such_tracepoint"),
    ] {
        let plan = Plan {
            name: "ktm_missing".into(),
            alternatives: vec![Alternative::new(point.clone(), || counter_program(None))],
            exercise: None,
        };
        // Whatever the run's switches: this is about the kernel's answer.
        let (attached, report) = attach_plan(&plan, &Policy::default(), &maps.fd_of());
        assert!(attached.is_none(), "{point} attached");
        let why = &report.failures[0].1;
        assert!(why.contains("ktm_no_such_tracepoint does not exist on this kernel"), "{point}: {why}");
    }
}

/// close(2) of no file: EBADF, and nothing changes.
fn call_close() -> Result<(), String> {
    // SAFETY: -1 is never an open fd.
    unsafe { libc::close(-1) };
    Ok(())
}

/// A function probe that attaches but never runs on the path its plan measures is refused,
/// and the plan goes on: here the "measured path" is getppid(2) and the function close's
/// syscall function (a syscall with arguments: `SYSCALL_DEFINE0` wrappers have no BTF), exactly the shape of a ksys_* helper inlined into its syscall. With an
/// exercise that does call it, the same points are trusted.
#[test]
fn a_function_probe_that_never_fires_is_refused() {
    if !common::privileged("a_function_probe_that_never_fires_is_refused") {
        return;
    }
    let maps = Maps::new();
    let func = ktm::programs::syscall_fn("close");
    let plan = |exercise: attach::Exercise| Plan {
        name: "ktm_selftest".into(),
        alternatives: vec![
            Alternative::new(AttachPoint::fentry(&func, false), || counter_program(None)),
            Alternative::new(AttachPoint::kprobe_multi(&func, false), || counter_program(None)),
            Alternative::new(AttachPoint::kprobe(&func, false), || counter_program(None)),
            Alternative::new(AttachPoint::raw_tracepoint("sys_enter"), || counter_program(Some(libc::SYS_getppid))),
        ],
        exercise: Some(exercise),
    };
    let policy = Policy::from_env();
    let works = |m: Mechanism| common::mechanism_works(m, &policy);

    let (attached, report) =
        attach_plan(&plan(attach::Exercise::new("getppid", common::call_getppid)), &policy, &maps.fd_of());
    println!("{report}");
    let raw = Some(Mechanism::RawTracepoint).filter(|&m| works(m));
    assert_eq!(report.attached.as_ref().map(|p| p.mechanism()), raw, "{report}");
    drop(attached);
    let mut refused = 0;
    for (point, why) in &report.failures {
        if works(point.mechanism()) {
            assert!(why.contains("never ran while this process drove the path"), "{point}: {why}");
            refused += 1;
        }
    }
    let silent: Vec<Mechanism> = report.silent.iter().map(|p| p.mechanism()).collect();
    let expected_silent: Vec<Mechanism> =
        [Mechanism::Fentry, Mechanism::KprobeMulti, Mechanism::Kprobe].into_iter().filter(|&m| works(m)).collect();
    assert_eq!(silent, expected_silent, "{report}");
    let refused_cell = report
        .failures
        .iter()
        .filter(|(p, _)| works(p.mechanism()))
        .map(|(p, _)| p.mechanism().name())
        .collect::<Vec<_>>()
        .join(", ");
    common::matrix(
        "self-test refuses a silent function probe",
        if refused == 0 { "none works here" } else { &refused_cell },
    );

    let (attached, report) = attach_plan(&plan(attach::Exercise::new("close", call_close)), &policy, &maps.fd_of());
    println!("{report}");
    let expected = [Mechanism::Fentry, Mechanism::KprobeMulti, Mechanism::Kprobe, Mechanism::RawTracepoint]
        .into_iter()
        .find(|&m| works(m));
    assert_eq!(report.attached.as_ref().map(|p| p.mechanism()), expected, "{report}");
    assert!(report.unchecked.is_empty(), "{report}");
    drop(attached);
}

/// The feature table against the kernel's history: every feature this kernel is new enough to
/// have ([`Feature::since`]) is there, unless the host's build or policy is seen to exclude it
/// ([`ktm::attach::Needs`]: no kprobes, no fprobe, no BTF, lockdown). A missing feature on a
/// kernel that should have it fails here instead of passing as a fallback. The `KTM_DISABLE_*`
/// switches of the matrix's variants steer attach plans, not this table: it holds in every column.
#[test]
fn features_present_on_kernels_that_have_them() {
    if !common::privileged("features_present_on_kernels_that_have_them") {
        return;
    }
    let arch = std::env::consts::ARCH;
    let version = features::kernel_version().expect("uname release");
    let mut rows = Vec::new();
    for f in Feature::all() {
        let Some(since) = f.since(arch) else {
            println!("{f}: no minimum kernel known for {arch}");
            continue;
        };
        let got = attach::probe(f);
        let excluded: Vec<String> = f.needs().iter().filter_map(|n| n.unmet()).collect();
        println!("{f}: since {}.{}; {got:?}; host exclusions {excluded:?}", since.0, since.1);
        let row = match (&got, version >= since, excluded.is_empty()) {
            (Ok(()), _, true) => "present",
            (Ok(()), _, false) => panic!("{f} works, yet the host was taken to exclude it: {excluded:?}"),
            (Err(why), true, true) => panic!(
                "{f} is missing on Linux {}.{} ({arch}), which should have it since {}.{}, and nothing on \
                 this host excludes it: {why} (errno {:?})",
                version.0, version.1, since.0, since.1, why.errno
            ),
            (Err(_), true, false) => "excluded by the host",
            (Err(_), false, _) => "older kernel",
        };
        rows.push(format!("{f}: {row}"));
    }
    // Each exclusion is exact: lockdown refuses tracing with EPERM, a kernel without fprobe
    // answers EOPNOTSUPP; any other answer is a failure of its own.
    if Needs::NoLockdown.unmet().is_some() {
        assert_eq!(attach::probe(Feature::TracingPrograms).err().and_then(|u| u.errno), Some(libc::EPERM));
    }
    if Needs::Kprobes.unmet().is_some() {
        assert!(attach::mechanisms().get(Mechanism::Kprobe).is_err(), "kprobes work without the kprobe PMU");
    }
    println!("{}", rows.join("\n"));
    let present = rows.iter().filter(|r| r.ends_with("present")).count();
    common::matrix("toolkit:features", &format!("{present}/{} present, none missing", rows.len()));
}
