//! The programs BanyanDB ships (SkyAPM/ktm-ebpf's `iomonitor.c`, loaded by cilium/ebpf in the
//! FODC agent), built and loaded for a side-by-side measurement (issue 26).
//!
//! Nothing of theirs is in this repository: `KTM_SHIPPED_SRC` names a checkout of
//! SkyAPM/ktm-ebpf, and the bench builds `iomonitor/ebpf/programs/iomonitor.c` from it with
//! Debian's clang and libbpf headers (installed with apt-get when missing) in a temporary
//! directory, with the flags of its Makefile (`-O2 -g -Wall -Werror -D__TARGET_ARCH_...`) and
//! its own `generated/vmlinux.h`. One line is changed: the comm the programs require of the
//! target (`"banyand"`) becomes the bench target's comm, because the programs count a task only
//! when both its cgroup matches `config_map[0]` and its comm starts with that string.
//!
//! The agent loads the object with cilium/ebpf, writes the target's cgroup id into
//! `config_map[0]` and attaches every program at its section's tracepoint. `loader.c` (ours,
//! beside this file) does the same with libbpf in a child process, and answers the bench's
//! requests for the counts (summed over the per-pid, per-CPU maps) and the BPF stats of each
//! program.

use super::harness::R;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The environment variable naming a checkout of SkyAPM/ktm-ebpf.
pub const SRC_ENV: &str = "KTM_SHIPPED_SRC";

/// The shipped program's source, relative to the checkout.
const PROGRAM: &str = "iomonitor/ebpf/programs/iomonitor.c";

/// The line of the source that fixes the target's comm.
const COMM_LINE: &str = "const char target[] = \"banyand\";";

const LOADER_C: &str = include_str!("loader.c");

/// The built object and loader, in a temporary directory removed on drop.
pub struct Shipped {
    dir: tempfile::TempDir,
    /// The commit of the checkout, when it is a git work tree (for the report).
    pub commit: String,
}

/// Why the shipped programs are not measured (printed as the bench's skip message).
pub fn skip_reason(e: &str) -> String {
    format!(
        "SKIP shipped: {e}. Set {SRC_ENV} to a checkout of https://github.com/SkyAPM/ktm-ebpf \
         (the bench builds its iomonitor.c with clang and libbpf-dev from Debian)"
    )
}

fn installed() -> bool {
    let has = |p: &str| Path::new(p).exists();
    which("clang").is_some() && has("/usr/include/bpf/libbpf.h") && has("/usr/include/bpf/bpf_helpers.h")
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(prog)).find(|p| p.exists())
}

/// clang and libbpf-dev from Debian, when missing.
fn install() -> R<()> {
    if installed() {
        return Ok(());
    }
    eprintln!("shipped: installing clang and libbpf-dev from Debian");
    let get = |args: &[&str]| -> R<bool> {
        Ok(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()?.success())
    };
    let pkgs = ["install", "-y", "--no-install-recommends", "clang", "libbpf-dev", "libc6-dev"];
    if !(get(&pkgs)? || (get(&["update"])? && get(&pkgs)?)) || !installed() {
        return Err("apt-get install clang libbpf-dev failed".into());
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> R<()> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// The work tree of `given`: itself, or, for a bare git directory (a mirror), its HEAD
/// extracted under `tmp`.
fn checkout(given: &Path, tmp: &Path) -> R<PathBuf> {
    if given.join(PROGRAM).exists() || !given.join("HEAD").exists() {
        return Ok(given.to_path_buf());
    }
    let tree = tmp.join("src");
    std::fs::create_dir(&tree)?;
    let archive = Command::new("git")
        .arg("--git-dir")
        .arg(given)
        .args(["archive", "HEAD"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("git archive: {e}"))?;
    let stdout = archive.stdout.ok_or("git archive: no stdout")?;
    run(Command::new("tar").arg("-x").arg("-C").arg(&tree).stdin(stdout), "git archive HEAD | tar -x")?;
    Ok(tree)
}

impl Shipped {
    /// Builds the shipped object (its target comm set to `comm`) and the loader from the
    /// checkout `KTM_SHIPPED_SRC` names. Err says why not (no variable, no compiler, a build
    /// error).
    pub fn build(comm: &str) -> R<Shipped> {
        let given = PathBuf::from(std::env::var_os(SRC_ENV).ok_or(format!("{SRC_ENV} is not set"))?);
        let dir = tempfile::Builder::new().prefix("ktm-shipped").tempdir()?;
        let src = checkout(&given, dir.path())?;
        let program = src.join(PROGRAM);
        let text = std::fs::read_to_string(&program).map_err(|e| format!("{}: {e}", program.display()))?;
        if !text.contains(COMM_LINE) {
            return Err(format!("{}: no line `{COMM_LINE}` (another version of the source?)", program.display()).into());
        }
        install()?;
        // The source includes "../generated/vmlinux.h": the copy sits at the same depth.
        let progs = dir.path().join("programs");
        std::fs::create_dir(&progs)?;
        std::os::unix::fs::symlink(src.join("iomonitor/ebpf/generated"), dir.path().join("generated"))?;
        let patched = text.replace(COMM_LINE, &format!("const char target[] = \"{comm}\";"));
        std::fs::write(progs.join("iomonitor.c"), patched)?;
        let arch = match std::env::consts::ARCH {
            "x86_64" => "x86",
            "aarch64" => "arm64",
            a => a,
        };
        run(
            Command::new("clang")
                .args(["-O2", "-g", "-Wall", "-Werror", &format!("-D__TARGET_ARCH_{arch}"), "-target", "bpf", "-c"])
                .arg(progs.join("iomonitor.c"))
                .arg("-o")
                .arg(dir.path().join("iomonitor.o")),
            "clang iomonitor.c",
        )?;
        std::fs::write(dir.path().join("loader.c"), LOADER_C)?;
        run(
            Command::new("clang")
                .args(["-O2", "-Wall"])
                .arg(dir.path().join("loader.c"))
                .arg("-o")
                .arg(dir.path().join("loader"))
                .arg("-lbpf"),
            "clang loader.c -lbpf",
        )?;
        let commit = Command::new("git")
            .arg(if given.join("HEAD").exists() { "--git-dir" } else { "-C" })
            .arg(&given)
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        Ok(Shipped { dir, commit })
    }

    /// Loads and attaches the programs, `config_map[0]` = `cgroup`.
    pub fn start(&self, cgroup: u64) -> R<Running> {
        let mut child = Command::new(self.dir.path().join("loader"))
            .arg(self.dir.path().join("iomonitor.o"))
            .arg(cgroup.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("loader: no stdin")?;
        let out = BufReader::new(child.stdout.take().ok_or("loader: no stdout")?);
        let mut r = Running { child, stdin: Some(stdin), out, attached: 0 };
        let line = r.line()?;
        r.attached = line
            .strip_prefix("ready ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("loader: expected `ready N`, got {line:?}"))?;
        Ok(r)
    }
}

/// What the shipped programs counted, and each program's BPF stats.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub pread: u64,
    pub read: u64,
    pub lookups: u64,
    pub adds: u64,
    pub deletes: u64,
    /// (program name, section, run_cnt, run_time_ns).
    pub progs: Vec<(String, String, u64, u64)>,
}

impl Counts {
    /// Each program's runs and ns per run between `self` and a later reading, as the
    /// project's benches hold them (label: program name, point: section).
    pub fn stats_since(&self, later: &Counts) -> Vec<super::progs::ProgStat> {
        later
            .progs
            .iter()
            .map(|(name, sec, runs, ns)| {
                let (r0, n0) = self.progs.iter().find(|p| &p.0 == name).map_or((0, 0), |p| (p.2, p.3));
                let runs = runs.saturating_sub(r0);
                super::progs::ProgStat {
                    label: name.clone(),
                    point: sec.clone(),
                    runs,
                    ns_per_run: if runs == 0 { f64::NAN } else { ns.saturating_sub(n0) as f64 / runs as f64 },
                }
            })
            .collect()
    }
}

/// The loader child with the programs attached; detaches (ends the child) on drop.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    pub attached: usize,
}

impl Running {
    fn line(&mut self) -> R<String> {
        let mut s = String::new();
        if self.out.read_line(&mut s)? == 0 {
            return Err("loader exited (its stderr says why)".into());
        }
        Ok(s.trim_end().to_string())
    }

    fn ask(&mut self, cmd: &str) -> R<()> {
        let stdin = self.stdin.as_mut().ok_or("loader: stdin closed")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        Ok(())
    }

    /// `config_map[0]` = `cgroup`, as the agent re-targets.
    pub fn set_cgroup(&mut self, cgroup: u64) -> R<()> {
        self.ask(&format!("cgroup {cgroup}"))?;
        match self.line()?.as_str() {
            "ok" => Ok(()),
            other => Err(format!("loader: {other}").into()),
        }
    }

    /// The counts now. The exchange runs on a thread of its own named `ktm-shipped-ask`: the
    /// bench's target thread reading the reply would itself be a read the shipped programs
    /// count (same cgroup, target comm); that thread's comm fails their comm test.
    pub fn counts(&mut self) -> R<Counts> {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("ktm-shipped-ask".into())
                .spawn_scoped(s, || self.counts_here().map_err(|e| e.to_string()))
                .map_err(|e| e.to_string())?
                .join()
                .unwrap_or_else(|_| Err("counts thread panicked".into()))
        })
        .map_err(Into::into)
    }

    fn counts_here(&mut self) -> R<Counts> {
        self.ask("counts")?;
        let mut c = Counts::default();
        loop {
            let line = self.line()?;
            let f: Vec<&str> = line.split_whitespace().collect();
            let num =
                |i: usize| -> R<u64> { Ok(f.get(i).ok_or_else(|| format!("loader: short line {line:?}"))?.parse()?) };
            match f.first().copied() {
                Some("end") => return Ok(c),
                Some("count") => {
                    let v = num(2)?;
                    match f.get(1).copied() {
                        Some("pread") => c.pread = v,
                        Some("read") => c.read = v,
                        Some("lookups") => c.lookups = v,
                        Some("adds") => c.adds = v,
                        Some("deletes") => c.deletes = v,
                        _ => {}
                    }
                }
                Some("prog") => c.progs.push((f[1].to_string(), f[2].to_string(), num(3)?, num(4)?)),
                _ => return Err(format!("loader: unexpected {line:?}").into()),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // End of stdin: the loader detaches and exits.
        drop(self.stdin.take());
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(10) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
