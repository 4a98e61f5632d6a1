//! The `ktm` command: `demo`, `run`, `probe`, `dump` (and the hidden `workload` child; installed
//! as `banyand`, the stand-in BanyanDB of the container tests).
//!
//! Exit codes: 0 success, 1 runtime failure (privileges, kernel), 2 usage or config error.

use ktm::attach::{features, Mechanism};
use ktm::collector::Collector;
use ktm::config::{Config, EbpfConfig};
use ktm::iomonitor::IoMonitorModule;
use ktm::metrics::Batch;
use ktm::module::Module;
use ktm::recorder::FlightRecorder;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage:
  ktm demo [--intervals N] [--interval DURATION]   KTM on a built-in workload, printing each batch
  ktm run [--config FILE] [--output FILE]          the real job: batches as Prometheus text, streamed to
                                                   stdout, or FILE replaced atomically with the latest
  ktm probe                                        what this kernel supports and why
  ktm dump [PROGRAM]                               the generated programs, disassembled
  ktm emit-elf OUT.o                               the programs as an eBPF ELF object (llvm-objdump, bpftool)
exit codes: 0 ok, 1 runtime failure, 2 usage or config error";

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
            let comm = flag(&args, "--comm").unwrap_or_else(|| "banyand-demo".into());
            return ExitCode::from(ktm::workload::child_main(&comm) as u8);
        }
        Some("demo") => demo(&args[1..]),
        Some("run") => run(&args[1..]),
        Some("probe") => probe(),
        Some("dump") => dump(args.get(1).map(String::as_str)),
        Some("emit-elf") => emit_elf(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(Fail::Usage(USAGE.into())),
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

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn check_flags(args: &[String], known: &[&str]) -> Result<(), Fail> {
    let mut i = 0;
    while i < args.len() {
        if !known.contains(&args[i].as_str()) {
            return Err(Fail::Usage(format!("unknown argument `{}`\n{USAGE}", args[i])));
        }
        if args.get(i + 1).is_none() {
            return Err(Fail::Usage(format!("`{}` needs a value", args[i])));
        }
        i += 2;
    }
    Ok(())
}

fn privileged() -> Result<(), Fail> {
    ktm::privileges::check().map_err(|e| Fail::Runtime(e.to_string()))
}

/// The Prometheus text of one batch, headed by a comment with its time.
fn exposition(batch: &Batch) -> String {
    let ts = batch.timestamp.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("# batch at unix time {ts}\n{}\n", ktm::prometheus::render(batch))
}

/// Streams each batch as Prometheus text (stdout).
struct TextRecorder<W: Write + Send>(W);

impl<W: Write + Send> FlightRecorder for TextRecorder<W> {
    fn record(&mut self, batch: Batch) {
        if let Err(e) = self.0.write_all(exposition(&batch).as_bytes()).and_then(|_| self.0.flush()) {
            log::error!("cannot write metrics: {e}");
        }
    }
}

/// Replaces a file with each batch, as the node-exporter textfile collector expects: the
/// text goes to a temporary file in the same directory (mode 0644), is fsynced, and is
/// renamed over the file, so a reader sees the previous batch or the new one, never a part,
/// and the file stays one batch long however long KTM runs.
struct FileRecorder {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
}

impl FileRecorder {
    /// Checks that `path` can be written the way [`FileRecorder::replace`] will write it.
    fn new(path: &str) -> Result<FileRecorder, String> {
        let path = std::path::PathBuf::from(path);
        let name = path.file_name().ok_or_else(|| format!("--output {}: not a file name", path.display()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if path.is_dir() {
            return Err(format!("--output {}: is a directory", path.display()));
        }
        // One fixed temporary name: a run killed between write and rename leaves at most this
        // one file behind, which the next run overwrites.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".ktm-tmp");
        let tmp = dir.join(tmp_name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|_| std::fs::remove_file(&tmp))
            .map_err(|e| format!("--output {}: cannot create files in {}: {e}", path.display(), dir.display()))?;
        Ok(FileRecorder { path, tmp })
    }

    fn replace(&self, text: &str) -> std::io::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.tmp)?;
        // The umask may have narrowed the mode; readers of a textfile need 0644.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path)
    }
}

impl FlightRecorder for FileRecorder {
    fn record(&mut self, batch: Batch) {
        if let Err(e) = self.replace(&exposition(&batch)) {
            let _ = std::fs::remove_file(&self.tmp);
            eprintln!("ktm: cannot write metrics to {}: {e}", self.path.display());
        }
    }
}

fn run(args: &[String]) -> Result<(), Fail> {
    check_flags(args, &["--config", "--output"])?;
    let config = match flag(args, "--config") {
        Some(path) => Config::from_file(std::path::Path::new(&path)).map_err(|e| Fail::Usage(e.to_string()))?,
        None => Config::default(),
    };
    privileged()?;
    // --output FILE holds the latest batch only (replaced atomically each interval); without
    // it every batch streams to stdout.
    let recorder: Box<dyn FlightRecorder> = match flag(args, "--output") {
        Some(p) => Box::new(FileRecorder::new(&p).map_err(Fail::Runtime)?),
        None => Box::new(TextRecorder(std::io::stdout())),
    };
    // Block SIGINT/SIGTERM before any thread starts, so they are only seen by sigwait here.
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.thread_block().map_err(|e| Fail::Runtime(format!("cannot block signals: {e}")))?;
    let collector = Collector::start(&config, recorder).map_err(|e| Fail::Usage(e.to_string()))?;
    let sig = signals.wait().map_err(|e| Fail::Runtime(format!("sigwait: {e}")))?;
    eprintln!("ktm: {sig:?}: detaching and exiting");
    collector.stop();
    Ok(())
}

fn demo(args: &[String]) -> Result<(), Fail> {
    check_flags(args, &["--intervals", "--interval"])?;
    let intervals: u64 = flag(args, "--intervals")
        .map(|v| v.parse().map_err(|_| Fail::Usage(format!("--intervals: `{v}` is not a number"))))
        .transpose()?
        .unwrap_or(5);
    let interval = flag(args, "--interval")
        .map(|v| ktm::config::parse_duration(&v).map_err(|e| Fail::Usage(format!("--interval: {e}"))))
        .transpose()?
        .unwrap_or(Duration::from_secs(2));
    privileged()?;
    ktm::demo::run(intervals, interval).map_err(|e| Fail::Runtime(e.to_string()))
}

fn probe() -> Result<(), Fail> {
    println!("== privileges");
    match ktm::privileges::effective() {
        Ok(eff) => {
            for c in [ktm::privileges::CAP_BPF, ktm::privileges::CAP_PERFMON, ktm::privileges::CAP_SYS_ADMIN] {
                let has = eff & (1u64 << c.bit) != 0;
                println!("{:<18} {}", c.name, if has { "present" } else { "missing" });
            }
        }
        Err(e) => println!("cannot read capabilities: {e}"),
    }
    use ktm::privileges::{self as p, Syscall};
    println!("{:<18} {}", "seccomp", p::seccomp().map_or_else(|| "unknown".to_string(), |s| s.to_string()));
    for (name, call) in [("bpf()", Syscall::Bpf), ("perf_event_open()", Syscall::PerfEventOpen)] {
        println!(
            "{name:<18} {}",
            if p::blocked(call) { "BLOCKED (refused before its arguments are read)" } else { "allowed" }
        );
    }
    println!("{:<18} {}", "lockdown", p::lockdown().unwrap_or_else(|why| why));
    match p::perf_event_paranoid() {
        Ok((level, meaning)) => println!("{:<18} {level}: {meaning}", "perf_event_paranoid"),
        Err(why) => println!("{:<18} {why}", "perf_event_paranoid"),
    }
    if let Err(e) = ktm::privileges::check() {
        return Err(Fail::Runtime(e.to_string()));
    }
    println!("\n== mechanisms (each tried with a trivial program)");
    let f = ktm::attach::mechanisms();
    for m in [
        Mechanism::Fentry,
        Mechanism::Fexit,
        Mechanism::Kprobe,
        Mechanism::Kretprobe,
        Mechanism::RawTracepoint,
        Mechanism::Tracepoint,
    ] {
        match f.get(m) {
            Ok(()) => println!("{:<15} works", m.name()),
            Err(why) => println!("{:<15} unavailable: {why}", m.name()),
        }
    }
    println!("\n== links (each probed once; the fallback is used where one is missing)");
    for l in [ktm::attach::Link::PerfEvent, ktm::attach::Link::Tracing] {
        match features::link(l) {
            Ok(()) => println!("{:<15} works", format!("{l:?}")),
            Err(why) => println!("{:<15} unavailable, {} instead: {why}", format!("{l:?}"), l.fallback()),
        }
    }
    println!("\n== attach plans (preferred first)");
    let mut module = IoMonitorModule::new(EbpfConfig::default());
    module.start().map_err(|e| Fail::Runtime(e.to_string()))?;
    if let Some(m) = module.monitor() {
        for r in m.reports() {
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
    }
    module.stop();
    Ok(())
}

fn dump(only: Option<&str>) -> Result<(), Fail> {
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
        println!("== {} (feeds {})", probe.plan.name, probe.metrics.join(", "));
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
                    let spec = ktm::load::ProgramSpec {
                        name: probe.plan.name.clone(),
                        prog_type: point.prog_type(),
                        program: program.clone(),
                        attach: point.load_target().ok().flatten(),
                    };
                    match ktm::load::program(&spec, fd_of).and_then(|p| p.info()) {
                        Ok(info) if info.verified_insns > 0 => format!("verifier processed {}", info.verified_insns),
                        Ok(_) => "loaded (this kernel does not report the verifier's count)".to_string(),
                        Err(e) => format!("not loadable here: {e}"),
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
