//! The `/metrics` endpoint under load: scrape latency and `ktm run`'s resident memory while
//! 10 clients scrape once a second each (10 scrapes/s), beside a target doing preads so the
//! exposition has its real size. A benchmark program, not a test: it prints figures
//! (README "Performance", `/metrics`), it asserts nothing.
//!
//! usage: cargo bench --bench scrape -- [--seconds N] [--clients N] [--per-second N]
//! (root: it loads KTM's programs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().to_string()))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One scrape on a new connection (as Prometheus does after an idle close), its latency and size.
fn scrape(addr: SocketAddr) -> std::io::Result<(Duration, usize)> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::with_capacity(64 * 1024);
    s.read_to_end(&mut out)?;
    if !out.starts_with(b"HTTP/1.1 200 ") {
        return Err(std::io::Error::other("not 200"));
    }
    Ok((t.elapsed(), out.len()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("scrape bench: needs root (it runs ktm run, which loads BPF programs)");
        return;
    }
    let seconds = arg("--seconds", 60);
    let clients = arg("--clients", 10);
    let per_second = arg("--per-second", 1);
    let bin = env!("CARGO_BIN_EXE_ktm");
    let prefix = format!("ktmbench{}", std::process::id() % 100000);
    let dir = std::env::temp_dir().join(format!("ktm-scrape-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ktm.yaml");
    std::fs::write(&cfg, format!("collector:\n  interval: 1s\n  ebpf:\n    comm_prefix: {prefix}\n")).unwrap();
    let mut ktm = Command::new(bin)
        .args(["run", "--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The address: --log-level warn hides the info line, so find the socket in /proc.
    let pid = ktm.id();
    let addr = {
        let t = Instant::now();
        loop {
            if let Some(a) = listening_port(pid) {
                break a;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "ktm run does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // A target doing preads all along, so the counters and histograms move.
    let mut target = ktm::workload::Workload::spawn(std::path::Path::new(bin), &prefix, None).unwrap();
    let file = dir.join("data");
    std::fs::write(&file, vec![1u8; 4096]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut threads = Vec::new();
    for c in 0..clients {
        let (stop, latencies, errors, bytes) =
            (Arc::clone(&stop), Arc::clone(&latencies), Arc::clone(&errors), Arc::clone(&bytes));
        threads.push(std::thread::spawn(move || {
            let period = Duration::from_secs(1) / per_second.max(1) as u32;
            // Spread the clients over the second.
            std::thread::sleep(period / clients.max(1) as u32 * c as u32);
            let mut next = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                match scrape(addr) {
                    Ok((d, n)) => {
                        latencies.lock().unwrap().push(d);
                        bytes.store(n as u64, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }));
    }
    let t = Instant::now();
    let mut rss = Vec::new();
    while t.elapsed() < Duration::from_secs(seconds) {
        let _ = target.run(&format!("pread {} 200 4096", file.display()));
        rss.push(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    for th in threads {
        let _ = th.join();
    }
    let elapsed = t.elapsed();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let final_rss = rss_kib(pid);
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = ktm.wait();
    drop(target);
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "scrape bench: {clients} clients x {per_second}/s for {:.0} s against `ktm run --listen` (interval 1 s)",
        elapsed.as_secs_f64()
    );
    println!(
        "  scrapes        {} ({:.1}/s), errors {}",
        l.len(),
        l.len() as f64 / elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
    println!("  response       {} bytes", bytes.load(Ordering::Relaxed));
    println!(
        "  latency ms     p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        ms(percentile(&l, 0.5)),
        ms(percentile(&l, 0.9)),
        ms(percentile(&l, 0.99)),
        ms(l.last().copied().unwrap_or_default())
    );
    println!(
        "  ktm RSS KiB    before scraping {idle_rss}  during max {}  after {final_rss}",
        rss.iter().max().copied().unwrap_or(0)
    );
}

/// The 127.0.0.1 port process `pid` listens on, from /proc/net/tcp and its fds.
fn listening_port(pid: u32) -> Option<SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    for line in tcp.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // local_address st(0A = LISTEN) ... inode at 9
        if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
            let port = u16::from_str_radix(f[1].split(':').nth(1)?, 16).ok()?;
            return Some(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    None
}
