//! `ktm run --listen`: a real Prometheus server scrapes it and the exact pread count comes
//! back through Prometheus' query API; hostile clients (slowloris, a 1 MiB header, 1000
//! connections, garbage, HTTP/1.0, pipelining) neither break serving nor delay collection,
//! and the counts stay exact. Loopback addresses only.

mod common;

use common::TestCgroup;
use ktm::catalogue as c;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `ktm run --listen 127.0.0.1:0` child; SIGTERM and a wait on drop.
struct Ktm {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Ktm {
    fn start(prefix: &str, interval: &str) -> Ktm {
        let dir = common::scratch();
        let cfg = dir.path().join("ktm.yaml");
        std::fs::write(&cfg, format!("collector:\n  ebpf:\n    comm_prefix: {prefix}\n")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ktm"))
            .args(["run", "--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0", "--interval", interval])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let keep = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, a)) = line.split_once(" on http://") {
                    let _ = tx.send(a.to_string());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("ktm run never said where it listens: {:?}", lines.lock().unwrap()));
        Ktm { child: Some(child), addr: addr.parse().unwrap(), stderr: lines, _dir: dir }
    }

    fn metrics(&self) -> String {
        let (status, head, body) = get(self.addr, "/metrics");
        assert_eq!(status, 200, "{head}{body}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4\r\n"), "{head}");
        body
    }

    /// Waits until `/metrics` satisfies `ok`, returning that body.
    fn until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let body = self.metrics();
            if ok(&body) {
                return body;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "never {what}: {body}\n{:?}", self.stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap().code()
    }
}

impl Drop for Ktm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// One request with `Connection: close`: status, head, body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let raw = exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
    split(&raw)
}

/// Writes `request` and reads until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn split(raw: &str) -> (u16, String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, format!("{head}\r\n"), body.to_string())
}

/// The value of the series `name` (no labels) in an exposition.
fn value(body: &str, name: &str) -> Option<u64> {
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn preads(body: &str) -> Option<u64> {
    value(body, &format!("{}_count", c::SYS_PREAD_LATENCY.name))
}

/// A target `ktm workload` with `prefix` in a cgroup of its own, and a file to pread.
struct Target {
    child: ktm::workload::Workload,
    file: String,
    _cgroup: TestCgroup,
    _dir: tempfile::TempDir,
}

impl Target {
    fn start(prefix: &str) -> Target {
        let cgroup = TestCgroup::new(prefix);
        let child = ktm::workload::Workload::spawn(&common::ktm_bin(), prefix, Some(&cgroup.path)).unwrap();
        let dir = common::scratch();
        let file = dir.path().join("data");
        std::fs::write(&file, vec![5u8; 4096]).unwrap();
        Target { child, file: file.to_str().unwrap().into(), _cgroup: cgroup, _dir: dir }
    }

    fn preads(&mut self, n: u32) {
        self.child.run(&format!("pread {} {n} 4096", self.file)).unwrap();
    }
}

fn prefix(tag: &str) -> String {
    format!("ktm{tag}{}", std::process::id() % 100000)
}

/// KTM counting `target`'s preads exactly: waits until the target's cgroup is programmed.
fn counting(tag: &str) -> (Ktm, Target) {
    let p = prefix(tag);
    let target = Target::start(&p);
    let ktm = Ktm::start(&p, "200ms");
    ktm.until("programmed on the target's cgroup", |b| {
        b.lines().any(|l| l.starts_with(&format!("{}{{", c::MODULE_STATE.name)) && l.contains("scope=\"cgroup "))
    });
    (ktm, target)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Prometheus query's single value, through the HTTP API (HTTP/1.0: no chunked body).
fn query(port: u16, q: &str) -> Option<String> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /api/v1/query?query={q} HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[1.7e9,"1000"]}]}}
    let v = out.split("\"value\":[").nth(1)?;
    let v = v.split_once(',')?.1;
    Some(v.trim_start_matches('"').split('"').next()?.to_string())
}

#[test]
fn a_real_prometheus_scrapes_the_exact_pread_count() {
    if !common::privileged("a_real_prometheus_scrapes_the_exact_pread_count") {
        return;
    }
    let Ok(prometheus) = which("prometheus") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("prometheus is not installed (.ci/test installs Debian's `prometheus`)");
        }
        eprintln!("SKIP: prometheus is not installed (apt-get install prometheus)");
        return;
    };
    let (ktm, mut target) = counting("prom");
    target.preads(1000);
    let body = ktm.until("1000 preads", |b| preads(b) == Some(1000));
    assert_eq!(preads(&body), Some(1000));
    let dir = common::scratch();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ktm\n    static_configs:\n      - targets: ['{}']\n",
            ktm.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prom = Command::new(prometheus)
        .args([
            &format!("--config.file={}", cfg.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut got = None;
    while t.elapsed() < Duration::from_secs(60) {
        got = query(port, &format!("{}_count%7Bjob%3D%22ktm%22%7D", c::SYS_PREAD_LATENCY.name));
        if got.as_deref() == Some("1000") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let up = query(port, "up%7Bjob%3D%22ktm%22%7D");
    let scrapes = query(port, c::SCRAPES.name);
    unsafe { libc::kill(prom.id() as i32, libc::SIGTERM) };
    let _ = prom.wait();
    let mut log = String::new();
    let _ = prom.stderr.take().unwrap().read_to_string(&mut log);
    assert_eq!(got.as_deref(), Some("1000"), "Prometheus' value of the pread count; prometheus log:\n{log}");
    assert_eq!(up.as_deref(), Some("1"), "up");
    assert!(scrapes.as_ref().is_some_and(|s| s.parse::<u64>().unwrap_or(0) >= 1), "{} {scrapes:?}", c::SCRAPES.name);
    // More preads: Prometheus is gone, KTM still counts exactly.
    target.preads(234);
    ktm.until("1234 preads", |b| preads(b) == Some(1234));
    assert_eq!(ktm.stop(), Some(0));
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .ok_or(())
}

#[test]
fn hostile_clients_neither_break_serving_nor_delay_collection() {
    if !common::privileged("hostile_clients_neither_break_serving_nor_delay_collection") {
        return;
    }
    // Room for 1000 client sockets in this process.
    let lim = libc::rlimit { rlim_cur: 4096, rlim_max: 4096 };
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let (ktm, mut target) = counting("host");
    target.preads(1000);
    ktm.until("1000 preads", |b| preads(b) == Some(1000));
    let addr = ktm.addr;
    let collections = |b: &str| value(b, c::COLLECTIONS.name).unwrap();

    // Slowloris: 50 connections trickling a request head a byte every 100 ms.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut lorises = Vec::new();
    for _ in 0..50 {
        let stop = Arc::clone(&stop);
        lorises.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut sent = 0u32;
            for b in b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-A: ".iter().chain(std::iter::repeat(&b'a')) {
                if stop.load(std::sync::atomic::Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = collections(&ktm.metrics());
    let t = Instant::now();
    for _ in 0..20 {
        let t1 = Instant::now();
        assert!(preads(&ktm.metrics()) == Some(1000));
        assert!(t1.elapsed() < Duration::from_secs(1), "a scrape beside 50 slowloris clients took {:?}", t1.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = collections(&ktm.metrics());
    let expected = (t.elapsed().as_millis() / 200) as u64;
    assert!(after - before + 2 >= expected, "collections went on: {before} -> {after} in {:?}", t.elapsed());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for l in lorises {
        // The server cut each one off by its 10 s head deadline or the sender stopped: never a full head.
        l.join().unwrap();
    }

    // A 1 MiB header: refused with 431 (or reset while still sending), never buffered.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big.resize(big.len() + (1 << 20), b'b');
    big.extend_from_slice(b"\r\n\r\n");
    let _ = s.write_all(&big);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out);
    assert!(head.is_empty() || head.starts_with("HTTP/1.1 431 "), "{head}");
    assert_eq!(preads(&ktm.metrics()), Some(1000));

    // Garbage bytes: 400 and closed.
    let raw = exchange(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 400 "), "{raw:?}");
    let raw = exchange(addr, b"GET /metrics\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 400 "), "{raw:?}");
    // HTTP/1.0: served and closed.
    let (status, head, body) = split(&exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n"));
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    assert_eq!(preads(&body), Some(1000));
    // Methods and paths.
    let (status, head, _) = split(&exchange(addr, b"POST /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("Allow: GET, HEAD"), "{head}");
    assert_eq!(get(addr, "/nope").0, 404);
    let (status, head, body) = split(&exchange(addr, b"HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    // Pipelined: three requests in one write, answered in order on one connection.
    let raw = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let statuses: Vec<&str> = raw.match_indices("HTTP/1.1 ").map(|(i, _)| &raw[i + 9..i + 12]).collect();
    assert_eq!(statuses, ["200", "200", "404"], "{raw}");
    assert!(raw.contains("\nok\n") || raw.contains("\r\n\r\nok\n"), "{raw}");

    // 1000 connections held open: a scraper still gets in (the quietest are closed for it).
    let mut held = Vec::new();
    for _ in 0..1000 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connection {} refused: {e}", held.len()),
        }
    }
    let t1 = Instant::now();
    assert_eq!(preads(&ktm.metrics()), Some(1000));
    assert!(t1.elapsed() < Duration::from_secs(3), "a scrape behind 1000 idle connections took {:?}", t1.elapsed());
    drop(held);
    let body = ktm.metrics();
    assert!(value(&body, c::HTTP_CONNECTIONS_EVICTED.name).unwrap() >= 1000 - 128, "{body}");
    assert!(value(&body, c::HTTP_REQUESTS_REFUSED.name).unwrap() >= 3, "{body}");

    // Counting went on exactly through all of it.
    target.preads(500);
    let body = ktm.until("1500 preads", |b| preads(b) == Some(1500));
    // All of it served by a KTM that locked itself down once attached (README, "Lock-down
    // after start"): no_new_privs, its seccomp filter, no capability (CAP_BPF alone where the
    // kernel refuses map reads without it).
    let held = body
        .lines()
        .find(|l| l.starts_with(&format!("{}{{", ktm::catalogue::PRIVILEGES.name)))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(held.contains("no_new_privs=\"1\"") && held.contains("seccomp=\"2\""), "{held}");
    assert!(held.contains("cap_eff=\"0000000000000000\"") || held.contains("cap_eff=\"0000008000000000\""), "{held}");
    let health = get(addr, "/healthz");
    assert_eq!(health.0, 200);
    assert!(health.2.starts_with("ok\niomonitor "), "{}", health.2);
    assert_eq!(get(addr, "/readyz").0, 200);
    assert_eq!(ktm.stop(), Some(0));
}

/// With the kernel's BPF statistics on, each program's runs and run time are exported.
#[test]
fn bpf_program_statistics_are_exported_when_the_kernel_counts_them() {
    if !common::privileged("bpf_program_statistics_are_exported_when_the_kernel_counts_them") {
        return;
    }
    let (ktm, mut target) = counting("stat");
    let body = ktm.metrics();
    assert!(body.contains(&format!("# TYPE {} gauge\n", c::BPF_STATS_ENABLED.name)), "{body}");
    // Statistics on for the length of this test only (an fd, not the sysctl).
    let stats = ktm::sys::bpf::enable_stats().expect("BPF_ENABLE_STATS");
    target.preads(1000);
    let body = ktm.until("1000 preads", |b| preads(b) == Some(1000));
    drop(stats);
    let runs = |b: &str| -> u64 {
        b.lines()
            .filter(|l| {
                l.starts_with(&format!("{}{{", c::BPF_PROGRAM_RUNS.name)) && l.contains("program=\"ktm_pread\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    // Every pread on the machine runs the program (it filters inside): at least the target's.
    assert!(runs(&body) >= 1000, "{body}");
    let time = body
        .lines()
        .find(|l| l.starts_with(&format!("{}{{", c::BPF_PROGRAM_RUN_TIME.name)) && l.contains("program=\"ktm_pread\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(time > 0.0, "{body}");
    assert!(body.contains(&format!("# TYPE {} counter\n", c::BPF_PROGRAM_RUN_TIME.name)), "{body}");
    assert!(body.contains(&format!("# TYPE {} gauge\n", c::COLLECTION_DURATION.name)), "{body}");
    assert!(value(&body, c::COLLECTIONS.name).unwrap() >= 1, "{body}");
    assert!(value(&body, c::SCRAPES.name).unwrap() >= 2, "{body}");
    assert_eq!(ktm.stop(), Some(0));
}
