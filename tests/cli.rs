//! The `ktm` command: output and exit codes of each subcommand.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ktm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ktm")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn usage_errors_exit_2() {
    let o = ktm(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("usage:"));
    let o = ktm(&["demo", "--intervals", "many"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--intervals"), "{}", text(&o.stderr));
    let o = ktm(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("exit codes"));
}

#[test]
fn config_errors_name_key_and_line_and_exit_2() {
    let dir = common::scratch();
    for (yaml, key, line) in [
        ("collector:\n  interval: 10x\n", "collector.interval", 2),
        ("collector:\n  ebpf:\n    comm_prefx: banyand\n", "collector.ebpf.comm_prefx", 3),
        ("collector:\n  modules:\n    - nosuch\n", "collector.modules", 3),
        ("collector:\n  ebpf:\n    comm_prefix: this-is-far-too-long\n", "collector.ebpf.comm_prefix", 3),
    ] {
        let p = dir.path().join("bad.yaml");
        std::fs::write(&p, yaml).unwrap();
        let o = ktm(&["run", "--config", p.to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(key), "{yaml}: {err}");
        assert!(err.contains(&format!("line {line}")), "{yaml}: {err}");
    }
}

/// In the child, before exec: drop every capability while staying uid 0, so that nothing
/// depends on whether another user could reach the binary (a checkout under a 0700
/// directory). The securebits keep exec from granting root its capabilities back, the
/// bounding and ambient sets are emptied, and no_new_privs forbids file capabilities.
fn drop_every_capability() -> std::io::Result<()> {
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
    const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;
    let err = || Err(std::io::Error::last_os_error());
    unsafe {
        let bits = SECBIT_NOROOT
            | SECBIT_NOROOT_LOCKED
            | SECBIT_NO_SETUID_FIXUP
            | SECBIT_NO_SETUID_FIXUP_LOCKED
            | SECBIT_NO_CAP_AMBIENT_RAISE
            | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        if libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) != 0 {
            return err();
        }
        if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 {
            return err();
        }
        // Every capability the kernel knows (EINVAL past the last one).
        let mut cap = 0;
        while libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) >= 0 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                return err();
            }
            cap += 1;
        }
        // capset(2), version 3: empty effective, permitted and inheritable sets.
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        let header = Header { version: 0x2008_0522, pid: 0 };
        let data = [0u32; 6];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return err();
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return err();
        }
    }
    Ok(())
}

#[test]
fn without_privileges_names_the_capabilities_and_exits_1() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: needs root to drop its capabilities");
        return;
    }
    for sub in [&["run"][..], &["demo", "--intervals", "1"][..]] {
        let o = unsafe {
            Command::new(env!("CARGO_BIN_EXE_ktm")).args(sub).pre_exec(drop_every_capability).output().unwrap()
        };
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{sub:?}: {err}");
        assert!(err.contains("CAP_BPF") && err.contains("CAP_PERFMON"), "{err}");
        assert!(err.contains("securityContext.capabilities"), "{err}");
    }
}

/// Checks a Prometheus text exposition of real batches and returns its families.
fn parse_batches(out: &str) -> Vec<ktm::prometheus::Family> {
    let last = out.rsplit("# batch at").next().unwrap_or(out);
    let body = if out.contains("# batch at") { format!("#{last}") } else { out.to_string() };
    ktm::prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

#[test]
fn demo_prints_every_metric_moving() {
    if !common::privileged("demo_prints_every_metric_moving") {
        return;
    }
    let o = ktm(&["demo", "--intervals", "2", "--interval", "500ms"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("starting workload") && err.contains("attaching"), "progress on stderr: {err}");
    // The last batch of the demo.
    let last = out.trim_end().rsplit("\n\n").next().unwrap();
    let fams = ktm::prometheus::parse(last).unwrap_or_else(|e| panic!("{e}\n{last}"));
    let value =
        |name: &str| -> f64 { fams.iter().flat_map(|f| &f.samples).filter(|s| s.name == name).map(|s| s.value).sum() };
    for m in [
        "ktm_cache_read_attempts_total",
        "ktm_cache_misses_total",
        "ktm_page_cache_adds_total",
        "ktm_page_cache_deletes_total",
        "ktm_sys_read_bytes_total",
        "ktm_sys_pread_bytes_total",
        "ktm_fadvise_calls_total",
        "ktm_fadvise_success_total",
        "ktm_sys_read_latency_seconds_count",
        "ktm_sys_pread_latency_seconds_count",
    ] {
        assert!(value(m) > 0.0, "{m} did not move:\n{last}");
    }
    let advice = fams.iter().find(|f| f.name == "ktm_fadvise_advice_total").unwrap();
    for a in ["normal", "random", "sequential", "willneed", "dontneed", "noreuse"] {
        let s = advice.samples.iter().find(|s| s.labels.get("advice").map(String::as_str) == Some(a)).unwrap();
        assert!(s.value >= 4.0, "advice {a}: {}", s.value);
    }
    let counter = fams.iter().find(|f| f.name == "ktm_cache_misses_total").unwrap();
    assert_eq!(counter.kind, "counter");
    let hist = fams.iter().find(|f| f.name == "ktm_sys_pread_latency_seconds").unwrap();
    assert_eq!(hist.kind, "histogram");
    assert!(
        hist.samples.iter().any(|s| s.labels.get("le").map(String::as_str) == Some("5.12e-7")),
        "le = true upper bounds"
    );
}

#[test]
fn run_pushes_batches_and_stops_cleanly_on_sigterm() {
    if !common::privileged("run_pushes_batches_and_stops_cleanly_on_sigterm") {
        return;
    }
    let dir = common::scratch();
    let cfg = dir.path().join("ktm.yaml");
    std::fs::write(
        &cfg,
        "collector:\n  interval: 200ms\n  modules:\n    - iomonitor\n  ebpf:\n    comm_prefix: ktmclirun\n",
    )
    .unwrap();
    let out = dir.path().join("metrics.prom");
    let child = Command::new(env!("CARGO_BIN_EXE_ktm"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--output", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    // The file holds the latest batch only, replaced each interval: wait for a second one.
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(20), "no batches written");
        if let Ok(s) = std::fs::read_to_string(&out) {
            seen.insert(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("detaching"));
    let written = std::fs::read_to_string(&out).unwrap();
    let fams = parse_batches(&written);
    let state = fams.iter().find(|f| f.name == "ktm_module_state").unwrap();
    assert_eq!(state.samples[0].labels["state"], "waiting_for_target");
}

#[test]
fn probe_and_dump() {
    if !common::privileged("probe_and_dump") {
        return;
    }
    let o = ktm(&["probe"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    for s in ["CAP_BPF", "tracepoint", "raw_tracepoint", "ktm_read:", "ktm_fadvise:"] {
        assert!(out.contains(s), "probe output lacks {s}:\n{out}");
    }
    let o = ktm(&["dump", "ktm_fadvise"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.contains("fexit/")
            && out.contains("_sys_fadvise64")
            && out.contains("instructions")
            && out.contains("exit"),
        "{out}"
    );
    assert!(out.contains("verifier processed"), "the verifier's count where the program loads: {out}");
    assert_eq!(ktm(&["dump", "nosuch"]).status.code(), Some(2));
}

#[test]
fn emit_elf_writes_an_object_readelf_reads() {
    let dir = common::scratch();
    let out = dir.path().join("iomonitor.o");
    let o = ktm(&["emit-elf", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), 247, "e_machine EM_BPF");
    assert_eq!(ktm(&["emit-elf"]).status.code(), Some(2));
}

/// The stand-in BanyanDB of the container tests (`.ci/podman`): the binary installed as
/// `banyand` has that comm, bursts once at start and once per SIGUSR1 at its scale, and
/// exits 0 on SIGTERM.
#[test]
fn installed_as_banyand_it_is_the_stand_in() {
    use std::io::{BufRead, BufReader};
    let dir = common::scratch();
    let bin = dir.path().join("banyand");
    std::fs::copy(env!("CARGO_BIN_EXE_ktm"), &bin).unwrap();
    for (scale, preads, fadvises) in [(None, 1000, 7), (Some("5"), 5000, 35)] {
        let mut cmd = Command::new(&bin);
        cmd.arg("standalone").stdout(Stdio::piped()).env_remove("BANYAND_STANDIN_SCALE");
        if let Some(s) = scale {
            cmd.env("BANYAND_STANDIN_SCALE", s);
        }
        let mut child = cmd.spawn().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), format!("banyand stand-in: burst 1: {preads} preads, {fadvises} fadvise"));
        assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim_end(), "banyand");
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), format!("banyand stand-in: burst 2: {preads} preads, {fadvises} fadvise"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0), "SIGTERM: exit 0");
    }
}
