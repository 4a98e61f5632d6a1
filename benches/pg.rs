//! KTM under a real database (issue 14): PostgreSQL as the target, pgbench -S as the load.
//!
//! ```text
//! cargo bench --bench pg                          # about 3 minutes
//! cargo bench --bench pg -- --rounds 5 --secs 15  # longer
//! cargo bench --bench pg -- --scale 20 --clients 4 --threads 2
//! cargo bench --bench pg -- --explain --configs floor,ktm,cgroup,cgroup-plain,slot,clock,pid
//! ```
//!
//! Installs PostgreSQL and pgbench from Debian (`apt-get install postgresql
//! postgresql-contrib`) when missing; initialises a cluster in a temporary directory (owned by
//! the postgres user, `shared_buffers=16MB`, a Unix socket in that directory, its own port);
//! runs the postmaster in a cgroup v2 of its own, so that the postmaster and every backend are
//! in it; loads `pgbench -i -s 20` (about 300 MB, read from the page cache afterwards); then
//! runs `pgbench -S` from outside that cgroup in interleaved rounds of four configurations:
//!
//! - `none`: no BPF program;
//! - `floor`: empty programs (`r0 = 0; exit`) on the iomonitor's attach points, BPF stats on;
//! - `ktm`: the iomonitor targeting the database's cgroup, BPF stats on;
//! - `ktm-nostats`: the same with BPF stats off (stats cost two clock reads per run);
//! - `shipped` (issue 26): the programs BanyanDB ships (SkyAPM/ktm-ebpf), built from
//!   `KTM_SHIPPED_SRC` and loaded as the FODC agent loads them, `config_map` on the database's
//!   cgroup, their target comm `postgres` (see `shipped/shipped.rs`), BPF stats on. Left out,
//!   with a message saying why, when `KTM_SHIPPED_SRC` is unset or they do not build.
//!
//! Reports tps per configuration (median, min, max), per-program run counts and ns per run,
//! the programs' CPU as a share of the database cgroup's CPU (`cpu.stat` usage_usec), and
//! KTM's counts against the programs' run counts and the kernel's own `syscr` tally of the
//! database's processes. The server, the cgroup and the temporary directory are removed on
//! every exit the process sees (errors, panics, SIGINT, SIGTERM, SIGHUP).
//!
//! Needs root. Prints the tables to stdout, progress to stderr.

#[allow(dead_code)]
#[path = "overhead/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "overhead/progs.rs"]
mod progs;
#[allow(dead_code)]
#[path = "shipped/shipped.rs"]
mod shipped;

use harness::{cgroup2_root, cgroup_id, median, CpuUse, R};
use ktm::attach::{AttachPoint, Policy};
use ktm::iomonitor::{IoMonitor, Scope, Snapshot};
use ktm::load::LoadedProgram;
use progs::{Body, Design, ProgStat, Set};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT, SIGTERM or SIGHUP: the bench stops at the next check and cleans up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Opts {
    /// Also run the component programs (`--explain`).
    explain: bool,
    /// Only these configurations (`--configs a,b`).
    only: Option<Vec<String>>,
    rounds: usize,
    secs: u32,
    scale: u32,
    clients: u32,
    threads: u32,
}

impl Opts {
    fn parse() -> R<Opts> {
        let mut o = Opts { explain: false, only: None, rounds: 3, secs: 10, scale: 20, clients: 4, threads: 2 };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut num = |what: &str| -> R<u32> {
                Ok(args.next().ok_or(format!("{what} needs a value"))?.parse().map_err(|e| format!("{what}: {e}"))?)
            };
            match a.as_str() {
                "--rounds" => o.rounds = num("--rounds")? as usize,
                "--secs" => o.secs = num("--secs")?,
                "--scale" => o.scale = num("--scale")?,
                "--clients" => o.clients = num("--clients")?,
                "--threads" => o.threads = num("--threads")?,
                "--explain" => o.explain = true,
                "--configs" => {
                    o.only = Some(args.next().ok_or("--configs needs a value")?.split(',').map(String::from).collect())
                }
                "--bench" => {}
                other if other.starts_with("--") => return Err(format!("unknown option {other}").into()),
                _ => {} // a libtest filter
            }
        }
        Ok(o)
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("pg: a benchmark; run it with `cargo bench --bench pg`");
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    let opts = Opts::parse().unwrap_or_else(|e| {
        eprintln!("pg: {e}");
        std::process::exit(2)
    });
    if let Err(e) = run(&opts) {
        eprintln!("pg: {e}");
        std::process::exit(1);
    }
}

fn check_stop() -> R<()> {
    if STOP.load(Ordering::SeqCst) {
        return Err("interrupted".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The server

/// The PostgreSQL binaries directory, installing the packages when there is none.
fn pg_bin() -> R<PathBuf> {
    let find = || -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("postgres").exists() && b.join("initdb").exists() && b.join("pgbench").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    if let Some(b) = find() {
        return Ok(b);
    }
    eprintln!("pg: installing postgresql and postgresql-contrib from Debian");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "postgresql", "postgresql-contrib"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?
        .success()
        || (Command::new("apt-get").arg("update").status()?.success()
            && Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "postgresql", "postgresql-contrib"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()?
                .success());
    if !ok {
        return Err("apt-get install postgresql postgresql-contrib failed".into());
    }
    find().ok_or_else(|| "no /usr/lib/postgresql/*/bin with postgres, initdb and pgbench".into())
}

/// uid and gid of the postgres user (the packages create it).
fn postgres_ids() -> R<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for l in passwd.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&"postgres") && f.len() > 3 {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    Err("no postgres user".into())
}

/// Everything the bench creates; dropping it stops the server and removes the cgroup and the
/// temporary directory.
struct Db {
    bin: PathBuf,
    dir: PathBuf,
    cgroup: PathBuf,
    port: u16,
    server: Option<Child>,
}

impl Db {
    fn new(bin: PathBuf) -> R<Db> {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("ktm-pg-{pid}"));
        let cgroup = cgroup2_root()?.join(format!("ktm-pg-{pid}"));
        let db = Db { bin, dir, cgroup, port: 50000 + (pid % 10000) as u16, server: None };
        let (uid, gid) = postgres_ids()?;
        std::fs::create_dir(&db.dir)?;
        std::os::unix::fs::chown(&db.dir, Some(uid), Some(gid))?;
        std::fs::set_permissions(&db.dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir(&db.cgroup).map_err(|e| format!("mkdir {}: {e}", db.cgroup.display()))?;
        Ok(db)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command run as the postgres user (from this process's cgroup).
    fn as_postgres(&self, prog: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(self.bin.join(prog));
        c
    }

    fn init(&mut self, scale: u32) -> R<()> {
        let st = self
            .as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            return Err("initdb failed".into());
        }
        // The postmaster is started by a root shell that first moves itself into the cgroup,
        // so the postmaster and every process it forks are in it from the start.
        let cmd = format!(
            "echo $$ > '{}/cgroup.procs' && exec runuser -u postgres -- '{}' -D '{}' -p {} -k '{}' \
             -c listen_addresses= -c shared_buffers=16MB -c max_connections=20 -c fsync=off \
             -c synchronous_commit=off -c autovacuum=off",
            self.cgroup.display(),
            self.bin.join("postgres").display(),
            self.data().display(),
            self.port,
            self.dir.display()
        );
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        self.server = Some(Command::new("sh").args(["-c", &cmd]).stdout(log.try_clone()?).stderr(log).spawn()?);
        let t = Instant::now();
        loop {
            check_stop()?;
            let ready = self
                .as_postgres("pg_isready")
                .args(["-q", "-h"])
                .arg(&self.dir)
                .args(["-p", &self.port.to_string()])
                .status()?
                .success();
            if ready {
                break;
            }
            if let Some(st) = self.server.as_mut().and_then(|s| s.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(format!("postgres exited ({st}):\n{log}").into());
            }
            if t.elapsed() > Duration::from_secs(30) {
                return Err("postgres not ready after 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("pg: pgbench -i -s {scale}");
        let st = self
            .pgbench()
            .args(["-i", "-q", "-s", &scale.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            return Err("pgbench -i failed".into());
        }
        Ok(())
    }

    fn pgbench(&self) -> Command {
        let mut c = self.as_postgres("pgbench");
        c.arg("-h").arg(&self.dir).args(["-p", &self.port.to_string(), "-U", "postgres"]);
        c
    }

    /// Runs `pgbench -S` for `secs` seconds; its tps.
    fn select_only(&self, opts: &Opts, secs: u32) -> R<f64> {
        let out = self
            .pgbench()
            .args(["-S", "-n", "-c", &opts.clients.to_string(), "-j", &opts.threads.to_string()])
            .args(["-T", &secs.to_string(), "postgres"])
            .stderr(Stdio::null())
            .output()?;
        check_stop()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|x| x.parse().ok())
            })
            .ok_or_else(|| format!("no tps in pgbench's output:\n{text}").into())
    }

    fn cpu_usec(&self) -> u64 {
        let s = std::fs::read_to_string(self.cgroup.join("cpu.stat")).unwrap_or_default();
        s.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|x| x.trim().parse().ok()).unwrap_or(0)
    }

    /// Sum of `syscr` over the cgroup's processes. A reaped backend's tally is added to the
    /// postmaster's (`/proc/PID/io` counts waited-for children), so the sum only grows.
    fn procs(&self) -> usize {
        std::fs::read_to_string(self.cgroup.join("cgroup.procs")).map_or(0, |p| p.lines().count())
    }

    /// Waits (up to 2 s) until the backends of the last pgbench run have exited and been
    /// reaped, so that their `syscr` is in the postmaster's.
    fn settle(&self, procs: usize) {
        let t = Instant::now();
        while self.procs() > procs && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    fn syscr(&self) -> u64 {
        let procs = std::fs::read_to_string(self.cgroup.join("cgroup.procs")).unwrap_or_default();
        procs
            .lines()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{}/io", p.trim())).ok())
            .filter_map(|io| {
                io.lines().find_map(|l| l.strip_prefix("syscr: ")).and_then(|x| x.trim().parse::<u64>().ok())
            })
            .sum()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            // SIGINT to the postmaster: fast shutdown.
            let pm = std::fs::read_to_string(self.data().join("postmaster.pid")).ok();
            if let Some(pid) = pm.as_deref().and_then(|t| t.lines().next()).and_then(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) && s.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Whatever is left in the cgroup.
        let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
        let t = Instant::now();
        while std::fs::remove_dir(&self.cgroup).is_err() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        eprintln!("pg: server stopped, {} and {} removed", self.cgroup.display(), self.dir.display());
    }
}

// ---------------------------------------------------------------------------------------
// Measurement

/// The iomonitor's attach points here, one per program, named as the programs are.
fn ktm_points(mon: &IoMonitor) -> Vec<(String, AttachPoint)> {
    mon.attached_at().map(|(point, p)| (p.name().to_string(), point.clone())).collect()
}

fn ktm_programs<'a>(mon: &'a IoMonitor, points: &[(String, AttachPoint)]) -> Vec<(String, String, &'a LoadedProgram)> {
    mon.programs()
        .map(|p| {
            let point = points.iter().find(|(n, _)| n == p.name()).map_or(String::new(), |(_, a)| a.to_string());
            (p.name().to_string(), point, p)
        })
        .collect()
}

/// One round of one configuration.
#[derive(Default)]
struct RoundData {
    tps: f64,
    cgroup_usec: u64,
    syscr: u64,
    prog: Vec<ProgStat>,
    /// KTM's (or the shipped programs') counts: preads, reads, page-cache lookups.
    counted: Option<(u64, u64, u64)>,
    /// Busy CPUs of processes other than this bench, pgbench and the database (the host's
    /// load) during the round.
    others: f64,
}

fn measure(
    db: &Db,
    opts: &Opts,
    progs: &[(String, String, &LoadedProgram)],
    mon: Option<&IoMonitor>,
    mut anchor: Option<&mut shipped::Running>,
) -> R<RoundData> {
    let s0 = mon.map(|m| m.snapshot()).transpose()?;
    let a0 = anchor.as_mut().map(|a| a.counts()).transpose()?;
    let p0 = progs::stats_now(progs)?;
    let procs = db.procs();
    let (u0, c0, cpu, t) = (db.cpu_usec(), db.syscr(), CpuUse::now(), Instant::now());
    let tps = db.select_only(opts, opts.secs)?;
    db.settle(procs);
    let (u1, c1) = (db.cpu_usec(), db.syscr());
    // Busy CPUs of other processes: pgbench is a waited-for child (in this process's
    // figures), the database is subtracted.
    let others = cpu.others_since().0 - (u1.saturating_sub(u0) as f64 / 1e6 / t.elapsed().as_secs_f64().max(1e-3));
    let p1 = progs::stats_now(progs)?;
    let s1 = mon.map(|m| m.snapshot()).transpose()?;
    let a1 = anchor.as_mut().map(|a| a.counts()).transpose()?;
    let mut prog = progs::stats_delta(progs, &p0, &p1);
    let counted = match (s0, s1, a0, a1) {
        (Some(a), Some(b), _, _) => Some(delta(&a, &b)),
        (_, _, Some(a), Some(b)) => {
            prog = a.stats_since(&b);
            Some((b.pread - a.pread, b.read - a.read, b.lookups - a.lookups))
        }
        _ => None,
    };
    Ok(RoundData { tps, cgroup_usec: u1.saturating_sub(u0), syscr: c1.saturating_sub(c0), prog, counted, others })
}

fn delta(a: &Snapshot, b: &Snapshot) -> (u64, u64, u64) {
    (b.pread.count - a.pread.count, b.read.count - a.read.count, b.cache_read_attempts - a.cache_read_attempts)
}

const CONFIGS: [&str; 5] = ["none", "floor", "ktm", "ktm-nostats", "shipped"];

/// The shipped programs' enter, exit and page-cache lookup programs of a pread, and KTM's.
const SHIPPED_PREAD: [&str; 3] = ["trace_enter_pread64_tp", "trace_exit_pread64_tp", "trace_mm_filemap_get_pages"];
const KTM_PREAD: [&str; 3] = ["ktm_pread", "ktm_pread_1", "ktm_cache_look"];

/// `--explain`: pieces of the pread path as separate programs on the pread enter, pread exit
/// and page-cache lookup points (BPF stats on), to tell which piece grows under load.
/// `cgroup`: the scope test, a per-CPU counter lookup and an atomic add; `cgroup-plain`: the
/// same with a plain add; `slot`: no scope test, the thread's start slot stored at enter
/// (id, clock) and taken at exit (clock), as the iomonitor's slot array does; `clock`: the
/// thread id and clock helpers of `slot` without the slot; `pid`: the thread id helper alone.
/// Issue 26's footprint candidates: `cgroup-shared`: `cgroup` with one counter shared by all
/// CPUs instead of a per-CPU one; `hash`: `slot` with the start time in a hash by thread id
/// (update at enter, lookup and delete at exit, as the shipped programs keep it).
const EXPLAIN: [&str; 7] = ["cgroup", "cgroup-plain", "cgroup-shared", "slot", "hash", "clock", "pid"];

fn explain_design(cfg: &str, points: &[(String, AttachPoint)], cg: u64) -> Design {
    use progs::{Count, Test};
    let at = |n: &str| points.iter().find(|(p, _)| p == n).map(|(_, a)| a.clone());
    let mut d = Design::new(vec![
        progs::cnt(cfg != "cgroup-shared"),
        progs::cfg(),
        progs::ts(if cfg == "hash" { "hash" } else { "array" }),
    ]);
    d.cgroup = Some(cg);
    for (i, name) in ["ktm_pread", "ktm_pread_1", "ktm_cache_look"].into_iter().enumerate() {
        let Some(point) = at(name) else { continue };
        let body = match cfg {
            "cgroup" | "cgroup-shared" => Body::Filter(vec![Test::Cgroup], Count::Atomic),
            "hash" if i == 0 => Body::TsEnter,
            "hash" if i == 1 => Body::TsExit,
            "hash" => continue,
            "cgroup-plain" => Body::Filter(vec![Test::Cgroup], Count::Plain),
            "clock" if i < 2 => Body::Clock,
            "pid" if i < 2 => Body::Pid,
            "clock" | "pid" => continue,
            _ if i == 0 => Body::SlotEnter,
            _ if i == 1 => Body::SlotExit,
            _ => continue,
        };
        d = d.part(name, point, body);
    }
    d
}

fn run(opts: &Opts) -> R<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (bpf, tracepoints, cgroups, runuser)".into());
    }
    let bin = pg_bin()?;
    let mut db = Db::new(bin)?;
    db.init(opts.scale)?;
    let cg = cgroup_id(&db.cgroup)?;
    let policy = Policy::from_env();
    let points = {
        let mon = IoMonitor::start(&policy)?;
        ktm_points(&mon)
    };
    let mut floor = Design::new(Vec::new());
    for (name, p) in &points {
        floor = floor.part(name, p.clone(), Body::Empty);
    }
    eprintln!("pg: warm-up, pgbench -S for 5 s");
    db.select_only(opts, 5)?;

    let mut configs: Vec<&str> = CONFIGS.to_vec();
    if opts.explain {
        configs.extend(EXPLAIN);
    }
    if let Some(only) = &opts.only {
        configs.retain(|c| only.iter().any(|o| o == c));
    }
    let anchor = if configs.contains(&"shipped") {
        match shipped::Shipped::build("postgres") {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("pg: {}", shipped::skip_reason(&e.to_string()));
                configs.retain(|c| *c != "shipped");
                None
            }
        }
    } else {
        None
    };
    let mut data: BTreeMap<&str, Vec<RoundData>> = BTreeMap::new();
    let t0 = Instant::now();
    for r in 0..opts.rounds {
        for k in 0..configs.len() {
            check_stop()?;
            let cfg = configs[(r + k) % configs.len()];
            let d = match cfg {
                "none" => measure(&db, opts, &[], None, None)?,
                "shipped" => {
                    let _stats = ktm::sys::bpf::enable_stats()?;
                    let mut run = anchor.as_ref().ok_or("no shipped build")?.start(cg)?;
                    measure(&db, opts, &[], None, Some(&mut run))?
                }
                c if EXPLAIN.contains(&c) => {
                    let _stats = ktm::sys::bpf::enable_stats()?;
                    let set = Set::build(&explain_design(c, &points, cg))?;
                    measure(&db, opts, &set.programs(), None, None)?
                }
                "floor" => {
                    let _stats = ktm::sys::bpf::enable_stats()?;
                    let set = Set::build(&floor)?;
                    measure(&db, opts, &set.programs(), None, None)?
                }
                _ => {
                    let stats = if cfg == "ktm" { Some(ktm::sys::bpf::enable_stats()?) } else { None };
                    let mon = IoMonitor::start(&policy)?;
                    mon.set_scope(&Scope::Cgroup(cg))?;
                    let progs = ktm_programs(&mon, &points);
                    let d = measure(&db, opts, &progs, Some(&mon), None)?;
                    drop(stats);
                    d
                }
            };
            eprintln!(
                "pg: round {} {cfg:<11} {:>8.0} tps, db cgroup {:.2} CPUs, rest of the host {:.2} CPUs ({:.0} s)",
                r + 1,
                d.tps,
                d.cgroup_usec as f64 / 1e6 / f64::from(opts.secs),
                d.others,
                t0.elapsed().as_secs_f64()
            );
            data.entry(cfg).or_default().push(d);
        }
    }
    report(opts, &data, &points);
    if let Some(a) = &anchor {
        side_by_side(&data, &a.commit);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Report

fn med(v: impl Iterator<Item = f64>) -> f64 {
    median(&v.collect::<Vec<_>>())
}

fn report(opts: &Opts, data: &BTreeMap<&str, Vec<RoundData>>, points: &[(String, AttachPoint)]) {
    let (load1, others) = (harness::read_line("/proc/loadavg"), med(data.values().flatten().map(|d| d.others)));
    println!(
        "\nPostgreSQL under pgbench -S -c {} -j {}, {} s per round, {} interleaved rounds, scale {}",
        opts.clients, opts.threads, opts.secs, opts.rounds, opts.scale
    );
    println!(
        "host: {} CPUs, loadavg at the end {}; busy CPUs of other processes than the bench, pgbench and the \
         database: median {:.2} per round, max {:.2}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load1.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        others,
        data.values().flatten().map(|d| d.others).fold(0.0, f64::max)
    );
    println!("\n| config | tps median | min | max | ÷ none (median) | db cgroup CPUs |");
    println!("|---|---|---|---|---|---|");
    let none = med(data.get("none").into_iter().flatten().map(|d| d.tps));
    for cfg in CONFIGS {
        let Some(v) = data.get(cfg) else { continue };
        let tps: Vec<f64> = v.iter().map(|d| d.tps).collect();
        let mut s = tps.clone();
        s.sort_by(f64::total_cmp);
        println!(
            "| {cfg} | {:.0} | {:.0} | {:.0} | {:.3} | {:.2} |",
            median(&tps),
            s.first().copied().unwrap_or(f64::NAN),
            s.last().copied().unwrap_or(f64::NAN),
            median(&tps) / none,
            med(v.iter().map(|d| d.cgroup_usec as f64 / 1e6 / f64::from(opts.secs)))
        );
    }
    // Per-program table: runs per transaction and ns per run, floor and ktm.
    println!("\n| program | attach point | floor ns/run | ktm ns/run | ktm − floor | ktm runs/s |");
    println!("|---|---|---|---|---|---|");
    let prog_med = |cfg: &str, name: &str, f: &dyn Fn(&ProgStat, &RoundData) -> f64| {
        med(data
            .get(cfg)
            .into_iter()
            .flatten()
            .filter_map(|d| d.prog.iter().find(|p| p.label == name).map(|p| f(p, d))))
    };
    for (name, point) in points {
        let fl = prog_med("floor", name, &|p, _| p.ns_per_run);
        let k = prog_med("ktm", name, &|p, _| p.ns_per_run);
        let runs = prog_med("ktm", name, &|p, _| p.runs as f64 / f64::from(opts.secs));
        println!("| {name} | {point} | {fl:.1} | {k:.1} | {:.1} | {runs:.0} |", k - fl);
    }
    if data.contains_key("slot") {
        println!("\n--explain: ns per run under load, pieces of the pread path (medians of rounds)\n");
        println!("| program | floor | cgroup | cgroup-plain | cgroup-shared | slot | hash | clock | pid | ktm |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for name in ["ktm_pread", "ktm_pread_1", "ktm_cache_look"] {
            let cells: Vec<String> =
                ["floor", "cgroup", "cgroup-plain", "cgroup-shared", "slot", "hash", "clock", "pid", "ktm"]
                    .iter()
                    .map(|c| format!("{:.1}", prog_med(c, name, &|p, _| p.ns_per_run)))
                    .collect();
            println!("| {name} | {} |", cells.join(" | "));
        }
    }
    for cfg in ["floor", "ktm"] {
        let Some(v) = data.get(cfg) else { continue };
        let share = med(v.iter().map(|d| {
            let ns: f64 = d.prog.iter().map(|p| p.ns_per_run * p.runs as f64).filter(|x| x.is_finite()).sum();
            100.0 * ns / 1e3 / d.cgroup_usec.max(1) as f64
        }));
        println!(
            "\n{cfg}: program CPU (all runs, any task) = {share:.2} % of the database cgroup's CPU (median of rounds)"
        );
    }
    if let Some(v) = data.get("ktm") {
        let per_pread = |d: &RoundData| {
            let (preads, _, _) = d.counted.unwrap_or((0, 0, 0));
            let ns: f64 = d.prog.iter().map(|p| p.ns_per_run * p.runs as f64).filter(|x| x.is_finite()).sum();
            ns / preads.max(1) as f64
        };
        println!(
            "ktm: all program time ÷ target preads = {:.0} ns per pread (median of rounds)",
            med(v.iter().map(per_pread))
        );
        for (cfg, v) in data.iter().filter(|(c, _)| **c == "floor" || **c == "ktm") {
            let ns = |n: &str| med(v.iter().filter_map(|d| d.prog.iter().find(|p| p.label == n).map(|p| p.ns_per_run)));
            let (e, x, l) = (ns("ktm_pread"), ns("ktm_pread_1"), ns("ktm_cache_look"));
            println!(
                "{cfg}: pread enter + exit + page-cache lookup = {e:.0} + {x:.0} + {l:.0} = {:.0} ns per cached pread",
                e + x + l
            );
        }
        // The target's share: each pread/read/lookup program's runs taken as the target's
        // count (KTM's own), at the program's mean ns per run; every run of the others.
        let target_share = med(v.iter().map(|d| {
            let (p, r, l) = d.counted.unwrap_or((0, 0, 0));
            let ns: f64 = d
                .prog
                .iter()
                .filter(|x| x.ns_per_run.is_finite())
                .map(|x| {
                    let runs = match x.label.as_str() {
                        "ktm_pread" | "ktm_pread_1" => p.min(x.runs),
                        "ktm_read" | "ktm_read_1" => r.min(x.runs),
                        "ktm_cache_look" => l.min(x.runs),
                        _ => x.runs,
                    };
                    x.ns_per_run * runs as f64
                })
                .sum();
            100.0 * ns / 1e3 / d.cgroup_usec.max(1) as f64
        }));
        println!(
            "ktm: program CPU of the target's own events ≈ {target_share:.2} % of the database cgroup's CPU \
             (runs of the read/pread/lookup programs counted as KTM's counts of them)"
        );
        println!("\n| round | ktm preads | reads | preads+reads | db syscr | pread enter runs | exit runs | cache lookups | lookup runs |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (i, d) in v.iter().enumerate() {
            let (p, r, l) = d.counted.unwrap_or((0, 0, 0));
            let runs = |n: &str| d.prog.iter().find(|x| x.label == n).map_or(0, |x| x.runs);
            println!(
                "| {} | {p} | {r} | {} | {} | {} | {} | {l} | {} |",
                i + 1,
                p + r,
                d.syscr,
                runs("ktm_pread"),
                runs("ktm_pread_1"),
                runs("ktm_cache_look")
            );
        }
    }
}

/// Issue 26: KTM beside the shipped programs, per target pread and as a share of the
/// database's CPU, with the ratios of this run, and both counts against the kernel's.
fn side_by_side(data: &BTreeMap<&str, Vec<RoundData>>, commit: &str) {
    let rounds = |cfg: &str| data.get(cfg).map_or(&[][..], |v| v.as_slice());
    let three = |d: &RoundData, names: &[&str; 3]| -> f64 {
        names.iter().map(|n| d.prog.iter().find(|p| p.label == *n).map_or(f64::NAN, |p| p.ns_per_run)).sum()
    };
    let total_ns =
        |d: &RoundData| -> f64 { d.prog.iter().map(|p| p.ns_per_run * p.runs as f64).filter(|x| x.is_finite()).sum() };
    let stat = |cfg: &str, f: &dyn Fn(&RoundData) -> f64| -> (f64, f64, f64) {
        let v: Vec<f64> = rounds(cfg).iter().map(f).collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(&v), lo, hi)
    };
    let cell = |(m, lo, hi): (f64, f64, f64), digits: usize| format!("{m:.digits$} ({lo:.digits$}-{hi:.digits$})");
    println!(
        "\nKTM beside the shipped programs (SkyAPM/ktm-ebpf {commit}, built with Debian's clang, loaded with libbpf \
         as the FODC agent loads them, config_map = the database's cgroup): median (min-max) of {} rounds",
        rounds("shipped").len()
    );
    println!("\n| per target pread / share of the database's CPU | floor | ktm | shipped | ktm ÷ shipped |");
    println!("|---|---|---|---|---|");
    let pread_ns = |cfg: &str| {
        let names = if cfg == "shipped" { &SHIPPED_PREAD } else { &KTM_PREAD };
        stat(cfg, &|d| three(d, names))
    };
    let (fl, k, s) = (pread_ns("floor"), pread_ns("ktm"), pread_ns("shipped"));
    println!(
        "| enter + exit + page-cache lookup, ns as BPF stats count | {} | {} | {} | {:.2} |",
        cell(fl, 0),
        cell(k, 0),
        cell(s, 0),
        k.0 / s.0
    );
    println!(
        "| the same above the floor (empty programs on KTM's points) | | {:.0} | {:.0} | {:.2} |",
        k.0 - fl.0,
        s.0 - fl.0,
        (k.0 - fl.0) / (s.0 - fl.0)
    );
    let per_pread = |cfg: &str| {
        stat(cfg, &|d| {
            let preads = match d.counted {
                Some((p, _, _)) => p,
                // The floor counts nothing: its pread enter program's runs.
                None => d.prog.iter().find(|p| p.label == "ktm_pread").map_or(0, |p| p.runs),
            };
            total_ns(d) / preads.max(1) as f64
        })
    };
    let (fl, k, s) = (per_pread("floor"), per_pread("ktm"), per_pread("shipped"));
    println!(
        "| all program time ÷ target preads, ns | {} | {} | {} | {:.2} |",
        cell(fl, 0),
        cell(k, 0),
        cell(s, 0),
        k.0 / s.0
    );
    let share = |cfg: &str| stat(cfg, &|d| 100.0 * total_ns(d) / 1e3 / d.cgroup_usec.max(1) as f64);
    let (fl, k, s) = (share("floor"), share("ktm"), share("shipped"));
    println!(
        "| programs' CPU ÷ the database cgroup's CPU, % | {} | {} | {} | {:.2} |",
        cell(fl, 2),
        cell(k, 2),
        cell(s, 2),
        k.0 / s.0
    );
    println!(
        "| the same above the floor, % | | {:.2} | {:.2} | {:.2} |",
        k.0 - fl.0,
        s.0 - fl.0,
        (k.0 - fl.0) / (s.0 - fl.0)
    );
    let tps = |cfg: &str| stat(cfg, &|d| d.tps);
    println!(
        "| tps (too noisy here to compare) | {} | {} | {} | {:.2} |",
        cell(tps("floor"), 0),
        cell(tps("ktm"), 0),
        cell(tps("shipped"), 0),
        tps("ktm").0 / tps("shipped").0
    );
    println!("\n| round | config | preads | reads | preads+reads | db syscr | exact | pread enter runs | lookups | lookup runs |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut exact = true;
    for (cfg, enter, look) in [("ktm", "ktm_pread", "ktm_cache_look"), ("shipped", SHIPPED_PREAD[0], SHIPPED_PREAD[2])]
    {
        for (i, d) in rounds(cfg).iter().enumerate() {
            let (p, r, l) = d.counted.unwrap_or((0, 0, 0));
            let runs = |n: &str| d.prog.iter().find(|x| x.label == n).map_or(0, |x| x.runs);
            let ok = p + r == d.syscr;
            exact &= ok;
            println!(
                "| {} | {cfg} | {p} | {r} | {} | {} | {} | {} | {l} | {} |",
                i + 1,
                p + r,
                d.syscr,
                if ok { "yes" } else { "NO" },
                runs(enter),
                runs(look)
            );
        }
    }
    println!(
        "\ncounts: {}",
        if exact {
            "exact for both: in every round preads + reads = the database processes' syscr"
        } else {
            "NOT EXACT in some round (see the table)"
        }
    );
}
