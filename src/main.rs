//! The `ktm` command: `demo`, `run`, `probe`, `dump`, `emit-elf` (and the hidden `workload`
//! child; installed as `banyand`, the stand-in BanyanDB of the container tests). It parses
//! arguments and calls the library; it holds no BPF knowledge of its own.
//!
//! Exit codes: 0 success, 1 runtime failure (privileges, kernel), 2 usage or config error.
//! `ktm run` never exits 1 for want of privileges or kernel support: it stays up disabled.

use ktm::attach::{features, Mechanism};
use ktm::collector::{Collector, Options};
use ktm::config::{Config, EbpfConfig};
use ktm::iomonitor::IoMonitorModule;
use ktm::module::Module;
use ktm::recorder::FlightRecorder;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage:
  ktm demo [--intervals N] [--interval DURATION]   KTM on a built-in workload, printing each batch
  ktm run [--config FILE] [--output FILE] [--listen ADDR] [--interval DURATION]
          [--capabilities drop|keep] [--seccomp enforce|log|off]
                                                   the real job: batches as Prometheus text, on stdout,
                                                   in FILE (the latest, replaced atomically), or served
                                                   on ADDR (host:port or :port) at /metrics; once
                                                   attached it drops every capability and installs its
                                                   seccomp filter (README \"Lock-down after start\")
  ktm probe [--json]                               what this kernel supports and why
  ktm dump [PROGRAM]                               the generated programs, disassembled
  ktm emit-elf OUT.o                               the programs as an eBPF ELF object (llvm-objdump, readelf)
  ktm help [COMMAND] | ktm COMMAND --help | ktm --version
demo, run and probe take --log-level error|warn|info|debug|trace|off (default info): log lines on stderr
exit codes: 0 ok, 1 runtime failure, 2 usage or config error";

const DEMO_HELP: &str = "usage: ktm demo [--intervals N] [--interval DURATION] [--log-level LEVEL]
Starts a workload child `banyand-demo` in a cgroup of its own (ktm-demo-PID, with a memory
limit so that reclaim moves where the host allows it), runs KTM on it for N intervals
(default 5) of DURATION (default 2s) and prints each batch as Prometheus text.
SIGINT/SIGTERM detach everything, remove the cgroup and exit 0.";

const RUN_HELP: &str =
    "usage: ktm run [--config FILE] [--output FILE] [--listen ADDR] [--interval DURATION] [--log-level LEVEL]
               [--capabilities drop|keep] [--seccomp enforce|log|off]
  --config FILE      the YAML config (default: built-in defaults)
  --interval D       the collection interval, overriding collector.interval (e.g. 10s, 500ms)
  --output FILE      FILE holds the latest batch, replaced atomically (node-exporter textfile)
  --listen ADDR      serve GET /metrics, /healthz, /readyz on ADDR (host:port or :port)
  --capabilities drop|keep   once attached, drop every capability (default) or keep them
  --seccomp enforce|log|off  once attached, KTM's own seccomp filter refuses every load
                             (default enforce; log only logs what it would refuse)
Without --output and --listen every batch streams to stdout. When the kernel or the sandbox
refuses KTM (seccomp, capabilities, lockdown), run stays up with state `disabled` and the
reason, and tries again every minute. SIGINT/SIGTERM detach everything and exit 0.
Exit codes: 0 after a signal, 1 runtime failure, 2 usage or config error.";

const PROBE_HELP: &str = "usage: ktm probe [--json] [--log-level LEVEL]
Prints the privileges (capabilities, seccomp, lockdown, perf_event_paranoid), the attach
mechanisms this kernel allows and why not, and each probe's attach plan. --json prints the
same as one JSON object.";

const DUMP_HELP: &str = "usage: ktm dump [PROGRAM]
Disassembles every generated program of every alternative (or those of PROGRAM), with the
verifier's processed-instruction count where the program loads.";

const EMIT_ELF_HELP: &str = "usage: ktm emit-elf OUT.o
Writes the programs as an eBPF ELF relocatable object: one section per program, a legacy
`maps` section, relocations, license. llvm-objdump and readelf read it; libbpf 1.x and
bpftool's `gen object`/`gen skeleton` refuse legacy maps.";

enum Fail {
    Usage(String),
    Runtime(String),
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`ktm dump | head`), as command-line tools do, instead of
    // panicking in print!.
    // SAFETY: resetting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Installed as `banyand` (the container tests' stand-in BanyanDB image), it is that.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name().is_some_and(|n| n == "banyand") {
        let scale = std::env::var("BANYAND_STANDIN_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        return ExitCode::from(ktm::workload::standin_main(scale) as u8);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("workload") => {
            let comm = flag_value(&args[1..], "--comm").unwrap_or_else(|| "banyand-demo".into());
            return ExitCode::from(ktm::workload::child_main(&comm) as u8);
        }
        Some(sub @ ("demo" | "run" | "probe" | "dump" | "emit-elf")) if wants_help(&args[1..]) => {
            println!("{}", help(sub).unwrap_or(USAGE));
            Ok(())
        }
        Some("demo") => demo(&args[1..]),
        Some("run") => run(&args[1..]),
        Some("probe") => probe(&args[1..]),
        Some("dump") => dump(&args[1..]),
        Some("emit-elf") => emit_elf(&args[1..]),
        Some("-V" | "--version" | "version") if args.len() == 1 => {
            println!("ktm {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("-h" | "--help" | "help") => match args.get(1) {
            None => {
                println!("{USAGE}");
                Ok(())
            }
            Some(sub) => match help(sub) {
                Some(h) => {
                    println!("{h}");
                    Ok(())
                }
                None => Err(Fail::Usage(format!("no command `{sub}`\n{USAGE}"))),
            },
        },
        Some(other) => Err(Fail::Usage(format!("unknown command `{other}`\n{USAGE}"))),
        None => Err(Fail::Usage(USAGE.into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("ktm: {m}");
            ExitCode::from(2)
        }
        Err(Fail::Runtime(m)) => {
            eprintln!("ktm: {m}");
            ExitCode::from(1)
        }
    }
}

fn help(sub: &str) -> Option<&'static str> {
    Some(match sub {
        "demo" => DEMO_HELP,
        "run" => RUN_HELP,
        "probe" => PROBE_HELP,
        "dump" => DUMP_HELP,
        "emit-elf" => EMIT_ELF_HELP,
        _ => return None,
    })
}

/// `--help` or `-h` anywhere among a subcommand's arguments: print its help, run nothing.
fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

/// The value after `name`, for the hidden `workload` child only.
fn flag_value(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// A subcommand's flags, parsed: each given at most once.
struct Flags(std::collections::BTreeMap<&'static str, Option<String>>);

impl Flags {
    /// Parses `args` against `valued` (flags taking a value) and `switches` (flags without).
    fn parse(args: &[String], valued: &[&'static str], switches: &[&'static str], sub: &str) -> Result<Flags, Fail> {
        let mut out = std::collections::BTreeMap::new();
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            let (name, value) = if let Some(&n) = valued.iter().find(|n| **n == a) {
                let v = args.get(i + 1).ok_or_else(|| Fail::Usage(format!("`{a}` needs a value")))?;
                i += 2;
                (n, Some(v.clone()))
            } else if let Some(&n) = switches.iter().find(|n| **n == a) {
                i += 1;
                (n, None)
            } else {
                return Err(Fail::Usage(format!(
                    "unknown argument `{a}` for `ktm {sub}`\n{}",
                    help(sub).unwrap_or(USAGE)
                )));
            };
            if out.insert(name, value).is_some() {
                return Err(Fail::Usage(format!("`{name}` given twice")));
            }
        }
        Ok(Flags(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Installs the stderr logger at `--log-level` (default info).
fn install_logger(flags: &Flags) -> Result<(), Fail> {
    let level = match flags.get("--log-level") {
        Some(l) => ktm::logger::parse_level(l).map_err(|e| Fail::Usage(format!("--log-level: {e}")))?,
        None => log::LevelFilter::Info,
    };
    ktm::logger::install(level).map_err(|e| Fail::Runtime(format!("cannot install the logger: {e}")))
}

fn parse_interval(flags: &Flags, name: &str) -> Result<Option<Duration>, Fail> {
    flags.get(name).map(|v| ktm::config::parse_duration(v).map_err(|e| Fail::Usage(format!("{name}: {e}")))).transpose()
}

/// Blocks SIGINT and SIGTERM in this thread and every thread started after, so that only
/// [`wait_signal`] sees them. Call before any thread starts.
fn block_signals() -> Result<nix::sys::signal::SigSet, Fail> {
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.thread_block().map_err(|e| Fail::Runtime(format!("cannot block signals: {e}")))?;
    Ok(signals)
}

/// Every module is loaded, attached and self-tested: the one place where that is known, on
/// the collector's thread, before its first batch with every module running. From here on
/// KTM can no longer load anything (README "Lock-down after start").
fn all_attached(lockdown: &ktm::lockdown::LockDown) {
    log::info!("every module is loaded and attached");
    ktm::lockdown::after_all_started(lockdown);
}

/// The demo's [`all_attached`]: the filter, but the capabilities kept, because the demo
/// removes the cgroups it made when it ends, and a cgroup root is mode 0555 (rmdir under it
/// needs CAP_DAC_OVERRIDE). Loads are refused by the filter all the same.
fn demo_attached() {
    all_attached(&ktm::lockdown::LockDown { keep_capabilities: true, ..ktm::lockdown::LockDown::default() });
}

fn run(args: &[String]) -> Result<(), Fail> {
    let flags = Flags::parse(
        args,
        &["--config", "--output", "--listen", "--interval", "--log-level", "--capabilities", "--seccomp"],
        &[],
        "run",
    )?;
    let lockdown = ktm::lockdown::LockDown::from_flags(flags.get("--capabilities"), flags.get("--seccomp"))
        .map_err(Fail::Usage)?;
    let mut config = match flags.get("--config") {
        Some(path) => Config::from_file(std::path::Path::new(path)).map_err(|e| Fail::Usage(e.to_string()))?,
        None => Config::default(),
    };
    if let Some(interval) = parse_interval(&flags, "--interval")? {
        config.collector.interval = interval;
    }
    let listen = flags.get("--listen").map(ktm::http::parse_listen).transpose().map_err(Fail::Usage)?;
    // Before any thread starts: the logger (so that the config's warnings reach it), then
    // blocking the signals.
    install_logger(&flags)?;
    let signals = block_signals()?;
    let modules = ktm::collector::modules_from_config(&config).map_err(|e| Fail::Usage(e.to_string()))?;
    // --output FILE holds the latest batch only (replaced atomically each interval); --listen
    // serves it; with neither, every batch streams to stdout.
    let output: Option<Box<dyn FlightRecorder>> = match flags.get("--output") {
        Some(p) => Some(Box::new(ktm::textfile::FileRecorder::new(p).map_err(Fail::Usage)?)),
        None if listen.is_none() => Some(Box::new(ktm::textfile::TextRecorder(std::io::stdout()))),
        None => None,
    };
    // Never exit for want of privileges: a sidecar that exits is restarted, and one that
    // restarts in a loop makes its pod unready. The module reports disabled with the reason
    // in every batch and the collector tries again every minute.
    if let Err(e) = ktm::privileges::check() {
        log::error!("{e}");
        log::warn!(
            "KTM stays up with its modules disabled, retrying every {}s",
            ktm::collector::DEFAULT_RETRY.as_secs()
        );
    }
    let published = ktm::http::Published::new();
    let server = match listen {
        Some(addr) => {
            let server = ktm::http::Server::start(addr, published.clone(), ktm::http::Limits::default())
                .map_err(|e| Fail::Usage(format!("--listen {addr}: cannot listen: {e}")))?;
            log::info!("serving /metrics, /healthz and /readyz on http://{}", server.local_addr());
            Some(server)
        }
        None => None,
    };
    // The batch is rendered for the server only when there is one.
    let recorder: Box<dyn FlightRecorder> = match (&server, output) {
        (Some(_), output) => Box::new(ktm::http::PublishRecorder::new(published, output)),
        (None, Some(output)) => output,
        (None, None) => Box::new(ktm::textfile::TextRecorder(std::io::stdout())),
    };
    let options = Options { on_all_started: Some(Box::new(move || all_attached(&lockdown))), ..Options::default() };
    let collector = Collector::start_with_options(config.collector.interval, modules, recorder, options);
    let sig = signals.wait().map_err(|e| Fail::Runtime(format!("sigwait: {e}")))?;
    log::info!("{sig:?}: detaching and exiting");
    collector.stop();
    if let Some(s) = server {
        s.stop();
    }
    Ok(())
}

fn demo(args: &[String]) -> Result<(), Fail> {
    let flags = Flags::parse(args, &["--intervals", "--interval", "--log-level"], &[], "demo")?;
    let intervals: u64 = flags
        .get("--intervals")
        .map(|v| v.parse().map_err(|_| Fail::Usage(format!("--intervals: `{v}` is not a number"))))
        .transpose()?
        .unwrap_or(5);
    let interval = parse_interval(&flags, "--interval")?.unwrap_or(Duration::from_secs(2));
    let signals = block_signals()?;
    install_logger(&flags)?;
    ktm::privileges::check().map_err(|e| Fail::Runtime(e.to_string()))?;
    // SIGINT/SIGTERM end the demo like `run`: the demo notices the flag, detaches, removes its
    // cgroup and workload, and exits 0.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("ktm-signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                log::info!("{sig:?}: stopping the demo");
                flag.store(true, Ordering::SeqCst);
            }
        })
        .map_err(|e| Fail::Runtime(format!("cannot start the signal thread: {e}")))?;
    match ktm::demo::run(intervals, interval, &stop, demo_attached) {
        Ok(()) if stop.load(Ordering::SeqCst) => {
            eprintln!("ktm demo: stopped by a signal: detached, workload and cgroup removed");
            Ok(())
        }
        Ok(()) => Ok(()),
        Err(e) => Err(Fail::Runtime(e.to_string())),
    }
}

/// A JSON string literal.
fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{"works": true}` or `{"works": false, "why": ...}`.
fn json_result(r: &Result<(), impl std::fmt::Display>) -> String {
    match r {
        Ok(()) => "{\"works\":true}".into(),
        Err(why) => format!("{{\"works\":false,\"why\":{}}}", json(&why.to_string())),
    }
}

fn json_pairs(pairs: &[(ktm::attach::AttachPoint, String)], key: &str) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(p, why)| format!("{{\"point\":{},\"{key}\":{}}}", json(&p.to_string()), json(why)))
        .collect();
    format!("[{}]", items.join(","))
}

const MECHANISMS: [Mechanism; 8] = [
    Mechanism::Fentry,
    Mechanism::Fexit,
    Mechanism::Kprobe,
    Mechanism::Kretprobe,
    Mechanism::KprobeMulti,
    Mechanism::KretprobeMulti,
    Mechanism::RawTracepoint,
    Mechanism::Tracepoint,
];

fn probe(args: &[String]) -> Result<(), Fail> {
    let flags = Flags::parse(args, &["--log-level"], &["--json"], "probe")?;
    install_logger(&flags)?;
    use ktm::privileges::{self as p, Syscall};
    let caps: Vec<(&str, Option<bool>)> = [p::CAP_BPF, p::CAP_PERFMON, p::CAP_SYS_ADMIN]
        .iter()
        .map(|c| (c.name, p::effective().ok().map(|eff| eff & (1u64 << c.bit) != 0)))
        .collect();
    let seccomp = p::seccomp().map_or_else(|| "unknown".to_string(), |s| s.to_string());
    let blocked = [("bpf()", p::blocked(Syscall::Bpf)), ("perf_event_open()", p::blocked(Syscall::PerfEventOpen))];
    let lockdown = p::lockdown().unwrap_or_else(|why| why);
    let paranoid = p::perf_event_paranoid().map(|(level, meaning)| format!("{level}: {meaning}"));
    let privileged = p::check().map_err(|e| e.to_string());
    let as_json = flags.has("--json");
    if !as_json {
        println!("== privileges");
        for (name, has) in &caps {
            let word = match has {
                Some(true) => "present",
                Some(false) => "missing",
                None => "unknown (cannot read capabilities)",
            };
            println!("{name:<18} {word}");
        }
        println!("{:<18} {seccomp}", "seccomp");
        for (name, b) in blocked {
            println!("{name:<18} {}", if b { "BLOCKED (refused before its arguments are read)" } else { "allowed" });
        }
        println!("{:<18} {lockdown}", "lockdown");
        println!("{:<18} {}", "perf_event_paranoid", paranoid.clone().unwrap_or_else(|why| why));
        match p::Held::current() {
            Ok(h) => println!("{:<18} {h}", "this process"),
            Err(e) => println!("{:<18} unknown: {e}", "this process"),
        }
        println!(
            "{:<18} {}",
            "after start",
            match ktm::lockdown::map_reads_need_capability() {
                Ok(false) => "ktm run drops every capability and installs its seccomp filter",
                Ok(true) =>
                    "ktm run keeps CAP_BPF alone (this kernel refuses map reads without it) and installs its seccomp filter",
                Err(_) => "ktm run drops capabilities and installs its seccomp filter (map-read probe failed)",
            }
        );
    }
    if let Err(e) = &privileged {
        if as_json {
            println!("{{\"privileges\":{{\"ok\":false,\"why\":{}}}}}", json(e));
        }
        return Err(Fail::Runtime(e.clone()));
    }
    let f = ktm::attach::mechanisms();
    let links = [ktm::attach::Link::PerfEvent, ktm::attach::Link::Tracing, ktm::attach::Link::KprobeMulti];
    let mut module = IoMonitorModule::new(EbpfConfig::default());
    module.start().map_err(|e| Fail::Runtime(e.to_string()))?;
    let reports: Vec<ktm::attach::PlanReport> =
        module.monitor().map(|m| m.reports().cloned().collect()).unwrap_or_default();
    module.stop();
    if as_json {
        let caps: Vec<String> =
            caps.iter().map(|(n, h)| format!("{}:{}", json(n), h.map_or("null".into(), |b| b.to_string()))).collect();
        let blocked: Vec<String> = blocked.iter().map(|(n, b)| format!("{}:{b}", json(n))).collect();
        let mechs: Vec<String> =
            MECHANISMS.iter().map(|m| format!("{}:{}", json(m.name()), json_result(&f.get(*m)))).collect();
        let links: Vec<String> = links
            .iter()
            .map(|l| {
                let r = features::link(*l).map_err(|why| format!("{why}; {} instead", l.fallback()));
                format!("{}:{}", json(&format!("{l:?}")), json_result(&r))
            })
            .collect();
        let plans: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{{\"name\":{},\"attached\":{},\"mechanism\":{},\"failures\":{},\"fallbacks\":{},\"unchecked\":{}}}",
                    json(&r.name),
                    r.attached.as_ref().map_or("null".into(), |p| json(&p.to_string())),
                    r.attached.as_ref().map_or("null".into(), |p| json(p.mechanism().name())),
                    json_pairs(&r.failures, "why"),
                    json_pairs(&r.fallbacks, "note"),
                    json_pairs(&r.unchecked, "why"),
                )
            })
            .collect();
        println!(
            "{{\"version\":{},\"privileges\":{{\"ok\":true,\"capabilities\":{{{}}},\"seccomp\":{},\"blocked\":{{{}}},\"lockdown\":{},\"perf_event_paranoid\":{}}},\"mechanisms\":{{{}}},\"links\":{{{}}},\"plans\":[{}]}}",
            json(env!("CARGO_PKG_VERSION")),
            caps.join(","),
            json(&seccomp),
            blocked.join(","),
            json(&lockdown),
            json(&paranoid.unwrap_or_else(|why| why)),
            mechs.join(","),
            links.join(","),
            plans.join(",")
        );
        return Ok(());
    }
    println!("\n== mechanisms (each tried with a trivial program)");
    for m in MECHANISMS {
        match f.get(m) {
            Ok(()) => println!("{:<15} works", m.name()),
            Err(why) => println!("{:<15} unavailable: {why}", m.name()),
        }
    }
    println!("\n== links (each probed once; the fallback is used where one is missing)");
    for l in links {
        match features::link(l) {
            Ok(()) => println!("{:<15} works", format!("{l:?}")),
            Err(why) => println!("{:<15} unavailable, {} instead: {why}", format!("{l:?}"), l.fallback()),
        }
    }
    println!("\n== attach plans (preferred first)");
    for r in &reports {
        match &r.attached {
            Some(p) => println!("{}: {} ({p})", r.name, p.mechanism()),
            None => println!("{}: UNAVAILABLE", r.name),
        }
        for (p, why) in &r.failures {
            println!("    {p} failed: {why}");
        }
        for (p, note) in &r.fallbacks {
            println!("    {p} attached by {note}");
        }
        for (p, why) in &r.unchecked {
            println!("    {p} not checked to fire: {why}");
        }
    }
    Ok(())
}

fn dump(args: &[String]) -> Result<(), Fail> {
    let only = match args {
        [] => None,
        [name] if !name.starts_with('-') => Some(name.as_str()),
        _ => return Err(Fail::Usage(format!("dump takes at most one program name\n{DUMP_HELP}"))),
    };
    // The module's maps, so programs can be loaded for the verifier's count (when privileged).
    let maps: Vec<ktm::maps::Map> =
        ktm::programs::layout::map_defs().into_iter().filter_map(|d| ktm::maps::Map::create(d).ok()).collect();
    let fd_of = |m: ktm::insn::MapRef| {
        use std::os::fd::AsRawFd;
        maps.iter().find(|x| x.def().name == m).map(|x| x.as_raw_fd())
    };
    let mut shown = 0;
    for probe in ktm::programs::probes() {
        if only.is_some_and(|n| n != probe.plan.name) {
            continue;
        }
        if probe.metrics.is_empty() {
            println!("== {} (feeds no metric: it keeps the scope on BanyanDB)", probe.plan.name);
        } else {
            println!("== {} (feeds {})", probe.plan.name, probe.metrics.join(", "));
        }
        for alt in &probe.plan.alternatives {
            for (point, build) in alt.parts() {
                shown += 1;
                let program = match build() {
                    Ok(p) => p,
                    Err(e) => {
                        println!("-- {point}: cannot build on this kernel: {e}");
                        continue;
                    }
                };
                let verified = if maps.is_empty() {
                    "not loaded (no privileges)".to_string()
                } else {
                    // The same reason `ktm probe` gives when the kernel refuses the mechanism
                    // itself (lockdown refusing fentry), rather than the loader's error for a
                    // program that could not even be given its target.
                    match (ktm::attach::mechanisms().get(point.mechanism()), point.load_target()) {
                        (Err(why), _) => format!("not loadable here: {} refused: {why}", point.mechanism().name()),
                        (Ok(()), Err(e)) => format!("not loadable here: {e}"),
                        (Ok(()), Ok(attach)) => {
                            let spec = ktm::load::ProgramSpec {
                                name: probe.plan.name.clone(),
                                prog_type: point.prog_type(),
                                program: program.clone(),
                                attach,
                            };
                            match ktm::load::program(&spec, fd_of).and_then(|p| p.info()) {
                                Ok(info) if info.verified_insns > 0 => {
                                    format!("verifier processed {}", info.verified_insns)
                                }
                                Ok(_) => "loaded (this kernel does not report the verifier's count)".to_string(),
                                Err(e) => format!("not loadable here: {e}"),
                            }
                        }
                    }
                };
                println!("-- {point}: {} instructions; {verified}", program.len());
                print!("{}", ktm::insn::disasm_program(&program));
            }
        }
    }
    if shown == 0 {
        return Err(Fail::Usage(format!("no program named `{}`", only.unwrap_or(""))));
    }
    Ok(())
}

fn emit_elf(args: &[String]) -> Result<(), Fail> {
    let [out] = args else { return Err(Fail::Usage(format!("emit-elf takes one output path\n{USAGE}"))) };
    let (bytes, warnings) = ktm::elf::iomonitor_object().map_err(|e| Fail::Runtime(e.to_string()))?;
    for w in warnings {
        eprintln!("ktm: skipped: {w}");
    }
    std::fs::write(out, &bytes).map_err(|e| Fail::Runtime(format!("cannot write {out}: {e}")))?;
    eprintln!("ktm: wrote {out} ({} bytes)", bytes.len());
    Ok(())
}
