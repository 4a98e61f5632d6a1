//! Hostile sandboxes: a seccomp filter that denies `bpf()` (as container runtimes' default
//! profile does) is named as such, not as a missing capability; kernel lockdown and
//! `perf_event_paranoid` are named by `ktm probe`.

mod common;

use ktm::catalogue as c;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Installs, in the calling (just forked) process, a seccomp filter that answers EPERM to
/// `bpf()` and allows everything else. Async-signal-safe: only prctl/syscall on a stack filter.
fn deny_bpf() -> std::io::Result<()> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let filter = [
        // struct seccomp_data: nr at 0, arch at 4.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jeq(ARCH, 0, 3),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jeq(libc::SYS_bpf as u32, 0, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prog points at the filter, which outlives the calls.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn ktm_under_seccomp(args: &[&str]) -> Output {
    let mut cmd = Command::new(common::ktm_bin());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: deny_bpf only makes syscalls.
    unsafe { cmd.pre_exec(deny_bpf) };
    let mut child = cmd.spawn().unwrap();
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("ktm {args:?} under seccomp did not exit: {}", String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn seccomp_denying_bpf_is_named_not_blamed_on_capabilities() {
    // Root is needed for the capabilities to be present; the filter itself needs none.
    if !common::privileged("seccomp_denying_bpf_is_named_not_blamed_on_capabilities") {
        return;
    }
    for args in [&["probe"][..], &["demo", "--intervals", "1"][..]] {
        let o = ktm_under_seccomp(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("bpf() is blocked by a seccomp filter"), "{args:?}: {err}");
        assert!(err.contains("Seccomp: 2"), "{args:?} quotes /proc/self/status: {err}");
        assert!(err.contains("not by a missing capability"), "{args:?}: {err}");
        assert!(err.contains("seccompProfile"), "{args:?} says how to fix it: {err}");
        assert!(!err.contains("securityContext.capabilities"), "{args:?} does not blame capabilities: {err}");
        assert!(!err.contains("perf_event_open() is"), "{args:?}: perf_event_open is not filtered: {err}");
    }
    let o = ktm_under_seccomp(&["probe"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("filter (Seccomp: 2"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("bpf()") && l.contains("BLOCKED")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("perf_event_open()") && l.contains("allowed")), "{text}");
}

/// `ktm run` under a filter refusing `bpf()` (a runtime's default seccomp profile) must not
/// exit: a sidecar that exits is restarted, and one restarted in a loop makes its pod
/// unready. It stays up, publishes `disabled` with the reason in every batch (the file and
/// /metrics), keeps collecting, and exits 0 on SIGTERM.
#[test]
fn run_under_seccomp_stays_up_disabled_and_exits_0_on_sigterm() {
    if !common::privileged("run_under_seccomp_stays_up_disabled_and_exits_0_on_sigterm") {
        return;
    }
    let dir = common::scratch();
    let out = dir.path().join("metrics.prom");
    let mut cmd = Command::new(common::ktm_bin());
    cmd.args(["run", "--interval", "100ms", "--output", out.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: deny_bpf only makes syscalls.
    unsafe { cmd.pre_exec(deny_bpf) };
    let mut child = cmd.spawn().unwrap();
    // stderr read on a thread (the address is in a log line; the rest is checked at the end).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if let Some((_, a)) = line.split_once(" on http://") {
                let _ = tx.send(a.to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).expect("ktm run says where it listens");
    let t = Instant::now();
    let mut batches = std::collections::BTreeSet::new();
    while batches.len() < 5 {
        assert!(child.try_wait().unwrap().is_none(), "ktm run exited under the seccomp filter");
        assert!(t.elapsed() < Duration::from_secs(20), "fewer than 5 batches in 20 s");
        if let Ok(s) = std::fs::read_to_string(&out) {
            batches.insert(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "ktm run exited under the seccomp filter");
    let text = std::fs::read_to_string(&out).unwrap();
    let state = text
        .lines()
        .find(|l| l.starts_with(&format!("{}{{", c::MODULE_STATE.name)))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(state.contains("state=\"disabled\""), "{state}");
    assert!(state.contains("bpf() is blocked by a seccomp filter"), "{state}");
    assert!(text.contains(&format!("{} 1\n", c::MODULE_START_FAILURES.name)), "one start, no retry yet: {text}");
    // The same on /metrics, and /healthz stays 200 (a disabled monitor never fails a probe).
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    let metrics = get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with(&format!("{}{{", c::MODULE_STATE.name))
            && l.contains("state=\"disabled\"")
            && l.contains("bpf() is blocked by a seccomp filter")),
        "{metrics}"
    );
    let health = get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200 ") && health.contains("iomonitor disabled: "), "{health}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("bpf() is blocked by a seccomp filter"), "{err}");
    assert!(err.contains("disabled"), "{err}");
    assert!(err.contains("SIGTERM: detaching"), "{err}");
}

#[test]
fn eperm_under_seccomp_names_the_filter_in_the_library_error() {
    if !common::privileged("eperm_under_seccomp_names_the_filter_in_the_library_error") {
        return;
    }
    // This test binary, re-run under the filter, creates a map (see `seccomp_child`).
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "seccomp_child", "--nocapture", "--test-threads=1"]).env("KTM_SECCOMP_CHILD", "1");
    // SAFETY: deny_bpf only makes syscalls.
    unsafe { cmd.pre_exec(deny_bpf) };
    let o = cmd.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let msg =
        out.lines().find_map(|l| l.split_once("SECCOMP-CHILD: ").map(|(_, m)| m)).unwrap_or_else(|| panic!("{out}"));
    assert!(msg.contains("Operation not permitted"), "{msg}");
    assert!(msg.contains("bpf() is blocked by a seccomp filter"), "{msg}");
    assert!(!msg.contains("needs CAP_BPF"), "{msg}");
}

/// The child half of the test above: does nothing unless run by it.
#[test]
fn seccomp_child() {
    if std::env::var_os("KTM_SECCOMP_CHILD").is_none() {
        return;
    }
    let msg = match ktm::maps::Array::<u64>::create("ktm_seccomp", 1) {
        Ok(_) => "created".to_string(),
        Err(e) => e.to_string(),
    };
    println!("SECCOMP-CHILD: {msg}");
}

#[test]
fn probe_names_lockdown_and_perf_event_paranoid() {
    if !common::privileged("probe_names_lockdown_and_perf_event_paranoid") {
        return;
    }
    let o = Command::new(common::ktm_bin()).arg("probe").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").unwrap();
    let line = text.lines().find(|l| l.starts_with("perf_event_paranoid")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!(" {}:", paranoid.trim())), "{line}");
    let line = text.lines().find(|l| l.starts_with("lockdown")).unwrap_or_else(|| panic!("{text}"));
    let expected = ktm::privileges::lockdown();
    match &expected {
        Ok(mode) => assert!(line.ends_with(mode.as_str()), "{line} vs {mode}"),
        Err(why) => assert!(line.contains(why.as_str()), "{line} vs {why}"),
    }
    // Where the kernel is locked down, an error it causes names the level.
    if let Ok(mode) = expected.as_deref() {
        if mode != "none" {
            assert!(text.contains(&format!("kernel lockdown: {mode}")), "refusals name the lockdown: {text}");
        }
    }
    assert!(text.contains("seccomp") && text.contains("disabled (Seccomp: 0)"), "{text}");
}

#[test]
fn without_cap_perfmon_the_error_names_perf_event_paranoid() {
    if !common::privileged("without_cap_perfmon_the_error_names_perf_event_paranoid") {
        return;
    }
    // Root without CAP_PERFMON and CAP_SYS_ADMIN in its bounding set: after exec, root's
    // capabilities are the bounding set, so CAP_BPF stays and those two go.
    let mut cmd = Command::new(common::ktm_bin());
    cmd.arg("probe").stdin(Stdio::null());
    // SAFETY: prctl only.
    unsafe {
        cmd.pre_exec(|| {
            for cap in [38, 21] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("CAP_PERFMON") && l.contains("missing")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("CAP_BPF") && l.contains("present")), "{out}");
    let level = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").unwrap();
    assert!(err.contains("missing CAP_PERFMON"), "{err}");
    assert!(err.contains(&format!("perf_event_paranoid is {}", level.trim())), "{err}");
}
