//! The `ktm` command: output and exit codes of each subcommand.

mod common;

use common::run::KtmRun;
use ktm::catalogue as c;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Demos run one at a time: each one's workload has the comm `banyand-demo`, and two at once
/// would each discover the other's.
static DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn demo_lock() -> std::sync::MutexGuard<'static, ()> {
    DEMO.lock().unwrap_or_else(|p| p.into_inner())
}

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
fn without_privileges_demo_exits_1_and_run_stays_up_disabled() {
    let _demo = demo_lock();
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: needs root to drop its capabilities");
        return;
    }
    let o = unsafe {
        Command::new(env!("CARGO_BIN_EXE_ktm"))
            .args(["demo", "--intervals", "1"])
            .pre_exec(drop_every_capability)
            .output()
            .unwrap()
    };
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "demo: {err}");
    assert!(err.contains("CAP_BPF") && err.contains("CAP_PERFMON"), "{err}");
    assert!(err.contains("securityContext.capabilities"), "{err}");
    // `run` is the sidecar: it must never exit (and crash-loop its pod) for want of
    // privileges. It reports disabled with the reason and exits 0 on SIGTERM.
    let mut run = KtmRun::spawn_with(None, &["--interval", "100ms"], Some(drop_every_capability));
    let written = run.wait_for("a third batch written without capabilities", |s| collections_at_least(s, 3));
    let state = written.lines().find(|l| l.starts_with(&format!("{}{{", c::MODULE_STATE.name))).unwrap();
    assert!(state.contains("state=\"disabled\""), "{state}");
    assert!(state.contains("CAP_BPF"), "the reason names the missing capability: {state}");
    let o = run.sigterm();
    let err = o.stderr;
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("CAP_BPF") && err.contains("securityContext.capabilities"), "{err}");
}

/// Checks a Prometheus text exposition of real batches and returns its families.
fn parse_batches(out: &str) -> Vec<ktm::prometheus::Family> {
    let last = out.rsplit("# batch at").next().unwrap_or(out);
    let body = if out.contains("# batch at") { format!("#{last}") } else { out.to_string() };
    ktm::prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

#[test]
fn demo_prints_every_metric_moving() {
    let _demo = demo_lock();
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
        c::CACHE_READ_ATTEMPTS.name,
        c::CACHE_MISSES.name,
        c::PAGE_CACHE_ADDS.name,
        c::PAGE_CACHE_DELETES.name,
        c::SYS_READ_BYTES.name,
        c::SYS_PREAD_BYTES.name,
        c::FADVISE_CALLS.name,
        c::FADVISE_SUCCESS.name,
        &format!("{}_count", c::SYS_READ_LATENCY.name),
        &format!("{}_count", c::SYS_PREAD_LATENCY.name),
    ] {
        assert!(value(m) > 0.0, "{m} did not move:\n{last}");
    }
    // Reclaim moves where the demo could limit its workload's memory, and it says why not
    // where it could not.
    if err.contains("ktm demo: memory limited to") {
        for m in [c::MEMORY_LRU_PAGES_SCANNED.name, c::MEMORY_LRU_PAGES_RECLAIMED.name] {
            assert!(value(m) > 0.0, "{m} did not move under the demo's memory limit:\n{last}");
        }
    } else {
        assert!(err.contains("ktm demo: no memory limit ("), "{err}");
    }
    assert!(
        err.contains(&format!("{} counts global direct reclaim only", c::MEMORY_DIRECT_RECLAIM_BEGIN.name)),
        "{err}"
    );
    let advice = fams.iter().find(|f| f.name == c::FADVISE_ADVICE.name).unwrap();
    for a in &c::ADVICE_VALUES[..6] {
        let s = advice.samples.iter().find(|s| s.labels.get("advice").map(String::as_str) == Some(a)).unwrap();
        assert!(s.value >= 4.0, "advice {a}: {}", s.value);
    }
    let counter = fams.iter().find(|f| f.name == c::CACHE_MISSES.name).unwrap();
    assert_eq!(counter.kind, "counter");
    let hist = fams.iter().find(|f| f.name == c::SYS_PREAD_LATENCY.name).unwrap();
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
    let mut run = KtmRun::spawn(
        Some("collector:\n  interval: 200ms\n  modules:\n    - iomonitor\n  ebpf:\n    comm_prefix: ktmclirun\n"),
        &[],
    );
    // The file holds the latest batch only, replaced each interval: wait for a second one.
    let mut seen = std::collections::BTreeSet::new();
    run.wait_for("two batches written", |s| {
        seen.insert(s.to_string());
        seen.len() >= 2
    });
    let o = run.sigterm();
    assert_eq!(o.status.code(), Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("detaching"));
    let written = o.written.unwrap();
    let fams = parse_batches(&written);
    let state = fams.iter().find(|f| f.name == c::MODULE_STATE.name).unwrap();
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
        let pid = child.id() as i32;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), format!("banyand stand-in: burst 1: {preads} preads, {fadvises} fadvise"));
        assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim_end(), "banyand");
        assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), format!("banyand stand-in: burst 2: {preads} preads, {fadvises} fadvise"));
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        assert_eq!(child.wait().unwrap().code(), Some(0), "SIGTERM: exit 0");
    }
}

#[test]
fn a_cgroup_path_that_does_not_exist_warns_at_start() {
    if !common::privileged("a_cgroup_path_that_does_not_exist_warns_at_start") {
        return;
    }
    let mut run = KtmRun::spawn(
        Some("collector:\n  interval: 100ms\n  ebpf:\n    cgroup_path: no-such-cgroup-ktm\n    comm_prefix: ktmnocg\n"),
        &[],
    );
    run.wait_for("a batch", |_| true);
    let o = run.sigterm();
    let err = o.stderr;
    assert_eq!(o.status.code(), Some(0), "{err}");
    let warn = err
        .lines()
        .find(|l| l.contains(" WARN ") && l.contains("no-such-cgroup-ktm"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(warn.contains("does not exist"), "{warn}");
    // One line per event, each with a timestamp and level.
    for l in err.lines() {
        let mut f = l.splitn(3, ' ');
        let (ts, level) = (f.next().unwrap(), f.next().unwrap_or(""));
        assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{l}");
        assert!(["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level), "{l}");
    }
}

#[test]
fn cli_conventions() {
    let o = ktm(&["--version"]);
    assert_eq!((o.status.code(), text(&o.stdout)), (Some(0), format!("ktm {}\n", env!("CARGO_PKG_VERSION"))));
    assert_eq!(text(&ktm(&["-V"]).stdout), text(&o.stdout));
    // --help of each subcommand prints its help and runs nothing (no root needed, no output file).
    for sub in ["run", "probe", "dump", "demo", "emit-elf"] {
        for how in [vec![sub, "--help"], vec!["help", sub], vec![sub, "-h"]] {
            let o = ktm(&how);
            let out = text(&o.stdout);
            assert_eq!(o.status.code(), Some(0), "{how:?}: {}", text(&o.stderr));
            assert!(out.starts_with(&format!("usage: ktm {sub}")), "{how:?}: {out}");
            assert!(!out.contains("== privileges") && !out.contains("== ktm_"), "{how:?} ran the command: {out}");
        }
    }
    assert_eq!(ktm(&["help", "nosuch"]).status.code(), Some(2));
    // A flag given twice is an error, not a silent first-wins.
    for args in [
        &["run", "--interval", "1s", "--interval", "2s"][..],
        &["run", "--output", "a", "--output", "b"],
        &["probe", "--json", "--json"],
        &["demo", "--intervals", "1", "--intervals", "2"],
    ] {
        let o = ktm(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(text(&o.stderr).contains("given twice"), "{args:?}: {}", text(&o.stderr));
    }
    for args in [&["run", "--interval", "soon"][..], &["run", "--listen", "nohost"], &["run", "--log-level", "loud"]] {
        let o = ktm(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
    }
    assert_eq!(ktm(&["dump", "--nosuch"]).status.code(), Some(2));
    // A config `run` cannot run with exits 2 at once (never a retry loop of its own): a port in
    // use, an --output directory that does not exist.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = ktm(&["run", "--listen", &addr]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("cannot listen"), "{}", text(&o.stderr));
    let o = ktm(&["run", "--output", "/nonexistent-ktm/dir/m.prom"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

/// Whether a written batch counts `n` collections or more: a fast interval may replace the
/// file more than once between two polls of [`KtmRun::wait_for`] on a busy host.
fn collections_at_least(batch: &str, n: u64) -> bool {
    batch
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{} ", c::COLLECTIONS.name)))
        .any(|v| v.trim().parse::<u64>().is_ok_and(|v| v >= n))
}

#[test]
fn run_interval_overrides_the_config_and_probe_speaks_json() {
    if !common::privileged("run_interval_overrides_the_config_and_probe_speaks_json") {
        return;
    }
    let mut run =
        KtmRun::spawn(Some("collector:\n  interval: 1h\n  ebpf:\n    comm_prefix: ktmival\n"), &["--interval", "50ms"]);
    // With the config's 1 h, only the first batch would come.
    run.wait_for("--interval did not override collector.interval", |s| collections_at_least(s, 5));
    assert_eq!(run.sigterm().status.code(), Some(0));

    let o = ktm(&["probe", "--json"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(out.lines().count(), 1, "one JSON object: {out}");
    let parsed: serde_yaml::Value = serde_yaml::from_str(&out).expect("JSON (a YAML subset) parses");
    assert_eq!(parsed["privileges"]["ok"], serde_yaml::Value::Bool(true), "{out}");
    assert!(parsed["mechanisms"]["tracepoint"]["works"].as_bool().is_some(), "{out}");
    let plans = parsed["plans"].as_sequence().unwrap();
    assert!(plans.iter().any(|p| p["name"].as_str() == Some("ktm_pread")), "{out}");
}

/// `promtool check metrics` (Debian's `prometheus` package) on `text`: its exit code and output.
fn promtool(text: &str) -> Option<(i32, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("promtool: {e} (.ci/test installs prometheus)")
        }
        Err(e) => {
            eprintln!("SKIP: promtool: {e} (apt-get install prometheus)");
            return None;
        }
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    Some((o.status.code().unwrap_or(-1), format!("{}{}", text_of(&o.stdout), text_of(&o.stderr))))
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn promtool_accepts_every_output() {
    let _demo = demo_lock();
    if !common::privileged("promtool_accepts_every_output") {
        return;
    }
    // The demo: each batch (they are separated by their `# batch at` comment).
    let o = ktm(&["demo", "--intervals", "2", "--interval", "300ms"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let batches: Vec<&str> = out.split("# batch at").filter(|b| !b.trim().is_empty()).collect();
    assert_eq!(batches.len(), 2, "{out}");
    for b in batches {
        let Some((rc, msg)) = promtool(&format!("# batch at{b}")) else { return };
        assert_eq!(rc, 0, "promtool check metrics on a demo batch: {msg}\n{b}");
    }
    // run --output (the textfile) and run --listen (/metrics).
    let mut run = KtmRun::spawn(None, &["--interval", "100ms", "--listen", "127.0.0.1:0"]);
    let stderr = run.child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok);
    let addr = lines.find_map(|l| l.split_once(" on http://").map(|(_, a)| a.to_string())).unwrap();
    // Keep reading stderr: a closed pipe would end ktm by SIGPIPE at its next log line.
    std::thread::spawn(move || lines.for_each(drop));
    run.wait_for("a batch written beside /metrics", |_| true);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    let o = run.sigterm();
    assert_eq!(o.status.code(), Some(0));
    for (what, text) in [("--output", o.written.unwrap()), ("/metrics", body.to_string())] {
        let (rc, msg) = promtool(&text).unwrap();
        assert_eq!(rc, 0, "promtool check metrics on {what}: {msg}\n{text}");
        let lru = [c::MEMORY_LRU_PAGES_SCANNED.name, c::MEMORY_LRU_PAGES_RECLAIMED.name];
        assert!(text.contains(c::MEMORY_DIRECT_RECLAIM_BEGIN.name) || !lru.iter().any(|m| text.contains(m)), "{text}");
    }
}

/// `ktm demo` ends on SIGINT and on SIGTERM as `run` does: it detaches, removes its cgroup
/// `ktm-demo-PID` (and its memory cgroup) and exits 0.
#[test]
fn demo_stops_cleanly_on_sigint_and_sigterm() {
    let _demo = demo_lock();
    if !common::privileged("demo_stops_cleanly_on_sigint_and_sigterm") {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ktm"))
            .args(["demo", "--intervals", "1000", "--interval", "200ms"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let name = format!("ktm-demo-{pid}");
        let v2 = common::cgroup2_mount().map(|m| m.join(&name));
        let v1 = std::path::Path::new("/sys/fs/cgroup/memory").join(&name);
        // Wait until the demo runs its workload (its first interval's line on stdout).
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let t = Instant::now();
        while !line.starts_with("# batch at") {
            line.clear();
            assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "demo ended early");
            assert!(t.elapsed() < Duration::from_secs(30));
        }
        if let Some(v2) = &v2 {
            assert!(v2.exists(), "{} while the demo runs", v2.display());
        }
        unsafe { libc::kill(pid as i32, sig) };
        let drain = std::thread::spawn(move || std::io::Read::read_to_end(&mut stdout, &mut Vec::new()));
        let o = child.wait_with_output().unwrap();
        let _ = drain.join();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "signal {sig}: {err}");
        assert!(err.contains("stopped by a signal"), "{err}");
        if let Some(v2) = &v2 {
            assert!(!v2.exists(), "{} left behind after signal {sig}", v2.display());
        }
        assert!(!v1.exists(), "{} left behind after signal {sig}", v1.display());
    }
}

/// `ktm dump` and `ktm probe` give the same reason for a mechanism the kernel refuses (on
/// this host lockdown refuses fentry/fexit), not the loader's "must provide btf_id".
#[test]
fn dump_and_probe_give_the_same_reason_for_a_refused_mechanism() {
    if !common::privileged("dump_and_probe_give_the_same_reason_for_a_refused_mechanism") {
        return;
    }
    let probe = text(&ktm(&["probe"]).stdout);
    let dump = text(&ktm(&["dump"]).stdout);
    assert!(!dump.contains("must provide btf_id"), "{dump}");
    let mut compared = 0;
    for m in ["fentry", "fexit", "kprobe", "kretprobe", "raw_tracepoint", "tracepoint"] {
        let Some(why) = probe.lines().find_map(|l| l.strip_prefix(&format!("{m:<15} unavailable: "))) else { continue };
        for l in dump.lines().filter(|l| l.starts_with(&format!("-- {m}/"))) {
            assert!(l.contains(&format!("not loadable here: {m} refused: {why}")), "dump: {l}\nprobe: {why}");
            compared += 1;
        }
    }
    eprintln!("{compared} dump lines of refused mechanisms compared");
}

/// Unprivileged, a tracefs that is mounted but closed (mode 0700) is named as such, not as
/// "not mounted".
#[test]
fn unprivileged_dump_says_tracefs_is_closed_not_missing() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: needs root to switch to an unprivileged user");
        return;
    }
    let tracefs = std::path::Path::new("/sys/kernel/tracing");
    match std::fs::metadata(tracefs) {
        Ok(m) if m.is_dir() && m.mode() & 0o077 == 0 && tracefs.join("events").is_dir() => {}
        _ => {
            eprintln!("SKIP: no tracefs mounted at {} with mode 0700", tracefs.display());
            return;
        }
    }
    // A copy of ktm the unprivileged user can reach (the checkout may sit under a 0700 directory).
    let dir = common::scratch();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("ktm");
    std::fs::copy(env!("CARGO_BIN_EXE_ktm"), &bin).unwrap();
    let o = unsafe {
        Command::new(&bin)
            .arg("dump")
            .pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
            .output()
            .unwrap()
    };
    let out = text(&o.stdout);
    assert!(!out.contains("tracefs is not mounted"), "{out}");
    // The exit programs read their record's layout from tracefs.
    let line =
        out.lines().find(|l| l.starts_with("-- tracepoint/syscalls/sys_exit_read:")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("tracefs is mounted at /sys/kernel/tracing but this process cannot read it (mode 0700"),
        "{line}"
    );
}

/// What README says of `emit-elf`'s object, checked: llvm-objdump and readelf read it
/// (tests/elf.rs), and bpftool (libbpf >= 1.0) refuses it for the reasons README quotes.
#[test]
fn bpftool_refuses_the_emitted_object_as_readme_says() {
    let Ok(v) = Command::new("bpftool").arg("version").output() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("bpftool is not installed (.ci/test installs it)");
        }
        eprintln!("SKIP: bpftool is not installed");
        return;
    };
    let readme = include_str!("../README.md");
    let dir = common::scratch();
    let obj = dir.path().join("ktm.o");
    let o = ktm(&["emit-elf", obj.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let linked = dir.path().join("linked.o");
    let gen = Command::new("bpftool").args(["gen", "object"]).arg(&linked).arg(&obj).output().unwrap();
    let skel = Command::new("bpftool").args(["gen", "skeleton"]).arg(&obj).output().unwrap();
    let version = text(&v.stdout);
    for (what, o, says) in [
        ("gen object", gen, "failed to find BTF info for object"),
        ("gen skeleton", skel, "legacy map definitions in 'maps' section are not supported by libbpf v1.0+"),
    ] {
        let err = text(&o.stderr);
        assert!(!o.status.success(), "bpftool {what} accepted the object ({version}): README must change");
        assert!(err.contains(says), "bpftool {what}: {err}");
        assert!(readme.contains(says), "README does not quote `{says}`");
    }
}
