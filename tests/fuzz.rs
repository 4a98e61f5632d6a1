//! Hostile input, fuzzed: coverage-free, seeded and bounded loops over everything KTM parses
//! that a user or the kernel hands it. The YAML config (mutations of valid files, random
//! bytes, deep nesting, aliases), `/proc/*/cgroup`, `/proc/*/stat`, `/proc/*/status` and
//! `/proc/self/mountinfo` (through discovery's injectable roots, on fake trees), and tracepoint
//! `format` files. (BTF blobs are fuzzed in tests/btf.rs.)
//!
//! Every case runs on a worker thread under a time limit: never a panic, never a hang, and
//! an error (for the ones that error) that names what was wrong. A failure prints the seed
//! and the case; `KTM_FUZZ_SEED` replays another seed, `KTM_FUZZ_SCALE` multiplies the cases.

#[path = "common/rng.rs"]
mod rng;

use ktm::config::{Config, EbpfConfig};
use ktm::discovery::{self, Roots};
use rng::Rng;
use std::fmt::Debug;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per-case time limit: generous for a debug build on a shared 2-core machine; a hang is
/// unbounded, so any limit finds it.
const CASE_LIMIT: Duration = Duration::from_secs(5);

fn seed() -> u64 {
    std::env::var("KTM_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6b74_6d5f_6675_7a7a)
}

fn scaled(cases: usize) -> usize {
    cases * std::env::var("KTM_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1usize)
}

fn shown<T: Debug>(input: &T) -> String {
    let s = format!("{input:?}");
    if s.len() > 2000 {
        format!("{}... ({} chars)", &s[..s.char_indices().nth(2000).map_or(s.len(), |(i, _)| i)], s.len())
    } else {
        s
    }
}

/// Runs `cases` generated inputs through `check` on a worker thread, each within
/// [`CASE_LIMIT`]; `check` returns Err for a wrong answer (an error that names nothing).
fn fuzz<I: Debug + Send + 'static>(
    name: &str,
    cases: usize,
    mut generate: impl FnMut(&mut Rng, usize) -> I + Send + 'static,
    check: impl Fn(&I) -> Result<(), String> + Send + 'static,
) {
    let seed = seed() ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) | 1;
    let current: Arc<Mutex<String>> = Arc::default();
    let (tx, rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let cur = Arc::clone(&current);
    std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .spawn(move || {
            let mut rng = Rng(seed);
            for i in 0..cases {
                let input = generate(&mut rng, i);
                *cur.lock().unwrap_or_else(|p| p.into_inner()) = shown(&input);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input))).unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(format!("PANIC: {msg}"))
                });
                if tx.send((i, r)).is_err() {
                    return;
                }
            }
        })
        .unwrap();
    for i in 0..cases {
        match rx.recv_timeout(CASE_LIMIT) {
            Ok((_, Ok(()))) => {}
            Ok((j, Err(why))) => {
                let input = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                panic!("{name}: case {j} (seed {seed:#x}): {why}\ninput: {input}");
            }
            Err(_) => {
                let input = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                panic!("{name}: case {i} (seed {seed:#x}) did not finish within {CASE_LIMIT:?}\ninput: {input}");
            }
        }
    }
    eprintln!("{name}: {cases} cases, seed {seed:#x}");
}

/// Bytes that mean something to the grammars fuzzed here.
const SPECIAL: &[&[u8]] = &[
    b":",
    b"-",
    b" ",
    b"  ",
    b"\n",
    b"\t",
    b"&a",
    b"*a",
    b"[",
    b"]",
    b"{",
    b"}",
    b"!",
    b"!!str",
    b"'",
    b"\"",
    b"#",
    b"%",
    b"|",
    b">",
    b"?",
    b",",
    b"0",
    b"-1",
    b"1e999",
    b"~",
    b"null",
    b"\0",
    b"\\",
    b"\xff",
    b"\xc3",
    b"...",
    b"---",
    b"\r",
    b"<<: *a",
    b"/",
    b"..",
    b"(",
    b")",
    b";",
    b"field:",
    b"offset:",
    b"size:",
    b"0::",
    b"cgroup2",
    b"9999999999999999999999",
];

/// `input` with a few random edits.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = SPECIAL[rng.below(SPECIAL.len())];
                v.splice(at..at, s.iter().copied());
            }
            2 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 if !v.is_empty() => {
                let from = rng.below(v.len());
                let end = (from + 1 + rng.below(32)).min(v.len());
                let chunk = v[from..end].to_vec();
                v.splice(at..at, chunk);
            }
            4 => {
                let b = rng.next() as u8;
                v.insert(at, b);
            }
            _ => {
                // Swap two lines.
                let mut lines: Vec<Vec<u8>> = v.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
                v = lines.join(&b'\n');
            }
        }
    }
    v
}

fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let n = rng.below(max + 1);
    (0..n).map(|_| rng.next() as u8).collect()
}

// ---- the YAML config ----

const CONFIGS: &[&str] = &[
    "collector:\n  interval: 10s\n  modules:\n    - iomonitor\n  ebpf:\n    # cgroup_path: /sys/fs/cgroup/x\n    # comm_prefix: banyand\n",
    "collector:\n  interval: 1m30s\n  modules: [iomonitor]\n  ebpf:\n    cgroup_path: /sys/fs/cgroup/unified/kubepods/pod1\n    comm_prefix: bydb\n",
    "collector: {interval: 500ms, ebpf: {comm_prefix: \"banyand\", cgroup_path: kubepods/pod}}\n",
    "---\ncollector:\n  ebpf:\n    comm_prefix: 'banyand-data'\n...\n",
    "base: &b\n  interval: 2s\ncollector:\n  <<: *b\n",
];

/// An error names what was wrong: the key, the position or the file, and a message.
fn config_error_named(e: &ktm::config::ConfigError) -> Result<(), String> {
    let text = e.to_string();
    if e.message().trim().is_empty() {
        return Err(format!("empty message: {text:?}"));
    }
    if e.key().is_none() && e.line().is_none() && e.file().is_none() {
        return Err(format!("names neither key, line nor file: {text:?}"));
    }
    Ok(())
}

fn check_config(bytes: &[u8]) -> Result<(), String> {
    // A file: any bytes.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("ktm.yaml");
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    match Config::from_file(&path) {
        Ok(cfg) => cfg.collector.ebpf.validate().map_err(|e| format!("accepted an invalid config: {e}"))?,
        Err(e) => {
            config_error_named(&e)?;
            if e.file() != Some(path.as_path()) {
                return Err(format!("a file's error does not name the file: {e}"));
            }
        }
    }
    // A string: the same, when it is one.
    if let Ok(s) = std::str::from_utf8(bytes) {
        match Config::from_yaml_str(s) {
            Ok(cfg) => cfg.collector.ebpf.validate().map_err(|e| format!("accepted an invalid config: {e}"))?,
            Err(e) => config_error_named(&e)?,
        }
    }
    Ok(())
}

#[test]
fn config_mutations_of_valid_files() {
    fuzz(
        "config-mutations",
        scaled(3000),
        |rng, _| {
            let seed = CONFIGS[rng.below(CONFIGS.len())];
            mutate(rng, seed.as_bytes())
        },
        |b| check_config(b),
    );
}

#[test]
fn config_random_bytes() {
    fuzz("config-random", scaled(1000), |rng, _| random_bytes(rng, 512), |b| check_config(b));
}

/// Deep nesting and alias expansion, as structured cases.
#[test]
fn config_deep_nesting_and_aliases() {
    let mut cases: Vec<String> = Vec::new();
    for depth in [10, 100, 1_000, 10_000, 100_000] {
        cases.push(format!("collector: {}{}\n", "[".repeat(depth), "]".repeat(depth)));
        cases.push(format!("collector:\n  ebpf: {}x{}\n", "{a: ".repeat(depth), "}".repeat(depth)));
        cases.push(format!("collector: {}", "[".repeat(depth)));
        let mut nested = String::from("collector:\n");
        for i in 0..depth.min(5_000) {
            nested += &" ".repeat(2 * (i + 1));
            nested += "k:\n";
        }
        cases.push(nested);
        cases.push(format!("collector:\n  modules:\n{}", "    - iomonitor\n".repeat(depth)));
        cases.push(format!("collector:\n  modules: {}iomonitor\n", "- ".repeat(depth)));
    }
    // The billion laughs, an alias loop, aliases into every key, anchors on everything.
    let mut laughs =
        String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        laughs += &format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 9].join(","));
    }
    cases.push(laughs.clone() + "collector:\n  modules: *a9\n");
    cases.push(laughs + "collector: *a9\n");
    cases.push("collector: &c\n  ebpf: *c\n".into());
    cases.push("collector: &c [*c]\n".into());
    cases.push("x: &p banyand\ncollector:\n  interval: &i 3s\n  ebpf:\n    comm_prefix: *p\ny: *i\n".into());
    cases.push("collector:\n  interval: *nosuch\n".into());
    cases.push("collector: !!binary aGVsbG8=\n".into());
    cases.push("collector:\n  <<: {interval: 1s}\n  <<: {interval: 2s}\n".into());
    cases.push(format!("collector:\n  ebpf:\n    comm_prefix: {}\n", "x".repeat(1 << 20)));
    cases.push(format!("collector:\n  interval: {}s\n", "9".repeat(10_000)));
    fuzz("config-structured", cases.len(), move |_, i| cases[i].clone(), |s| check_config(s.as_bytes()));
}

// ---- /proc and mountinfo, through discovery's roots ----

const MOUNTINFO: &str = "\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
42 31 0:39 /kubepods /sys/fs/cgroup/sub\\040dir rw - cgroup2 cgroup2 rw
";
const CGROUP: &str = "12:pids:/user.slice\n4:memory:/x\n1:name=systemd:/t\n0::/t\n";
const STAT: &str = "200 (banyand) S 1 200 200 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 1 1 2\n";
const STATUS: &str = "Name:\tbanyand\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t200\nPid:\t200\nPPid:\t1\n\
CapEff:\t000001ffffffffff\nNoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n";

/// A fake system: mountinfo, three processes (the sidecar, a target, a neighbour) with
/// fuzzed files, and cgroup directories.
#[derive(Debug)]
struct Tree {
    mountinfo: Vec<u8>,
    /// Per process: comm, stat, cgroup, status.
    procs: Vec<(u32, [Vec<u8>; 4])>,
    cgroup_procs: Vec<u8>,
    cfg_path: Option<String>,
}

fn tree(rng: &mut Rng) -> Tree {
    let pick = |rng: &mut Rng, seed: &str| match rng.below(4) {
        0 => seed.as_bytes().to_vec(),
        1 => random_bytes(rng, 256),
        _ => mutate(rng, seed.as_bytes()),
    };
    let mut procs = Vec::new();
    for (pid, comm) in [(10u32, "fodc"), (200, "banyand"), (201, "banyand-2"), (300, "neighbour")] {
        let stat = STAT.replace("200", &pid.to_string());
        procs.push((
            pid,
            [
                pick(rng, &format!("{comm}\n")),
                pick(rng, &stat),
                pick(rng, CGROUP),
                pick(rng, &STATUS.replace("200", &pid.to_string())),
            ],
        ));
    }
    let cfg_path = match rng.below(4) {
        0 => Some("/sys/fs/cgroup/unified/t".to_string()),
        1 => Some(String::from_utf8_lossy(&mutate(rng, b"/sys/fs/cgroup/unified/t")).into_owned()),
        _ => None,
    };
    Tree { mountinfo: pick(rng, MOUNTINFO), procs, cgroup_procs: pick(rng, "200\n201\n"), cfg_path }
}

fn check_tree(t: &Tree) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let roots = Roots { proc: dir.path().join("proc"), sysroot: dir.path().to_path_buf(), self_pid: 10 };
    let w = |p: &Path, b: &[u8]| -> Result<(), String> {
        std::fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(p, b).map_err(|e| e.to_string())
    };
    w(&roots.proc.join("self/mountinfo"), &t.mountinfo)?;
    for (pid, [comm, stat, cgroup, status]) in &t.procs {
        let d = roots.proc.join(pid.to_string());
        w(&d.join("comm"), comm)?;
        w(&d.join("stat"), stat)?;
        w(&d.join("cgroup"), cgroup)?;
        w(&d.join("status"), status)?;
    }
    for cg in ["sys/fs/cgroup/unified/t", "sys/fs/cgroup/sub dir"] {
        w(&dir.path().join(cg).join("cgroup.procs"), &t.cgroup_procs)?;
    }
    // The parsers alone...
    let entries = discovery::mountinfo::parse_mountinfo(&t.mountinfo);
    let _ = discovery::mountinfo::select_cgroup2(&entries);
    for (_, [_, stat, cgroup, status]) in &t.procs {
        let _ = discovery::procfs::parse_stat(stat);
        let _ = discovery::procfs::parse_cgroup_v2(cgroup);
        let _ = ktm::privileges::parse_seccomp(&String::from_utf8_lossy(status));
    }
    if let Err(e) = discovery::find_cgroup2(&roots) {
        if e.path() != Some(roots.proc.join("self/mountinfo").as_path()) {
            return Err(format!("a mountinfo error that does not name the file: {e}"));
        }
    }
    // ...and discovery over the whole tree, for a few configurations.
    for prefix in ["banyand", "b", "neighbour", "fodc"] {
        let cfg = EbpfConfig { comm_prefix: prefix.into(), cgroup_path: t.cfg_path.as_ref().map(Into::into) };
        if cfg.validate().is_err() {
            continue;
        }
        match discovery::discover(&cfg, &roots) {
            Ok(None) => {}
            Ok(Some(target)) => {
                if let discovery::CgroupVerdict::Unusable { reason } = &target.cgroup {
                    if reason.trim().is_empty() {
                        return Err(format!("an unusable cgroup without a reason: {target:?}"));
                    }
                }
                if target.pid == 10 {
                    return Err("discovery chose the sidecar itself".into());
                }
            }
            Err(e) if e.path().is_none() && !matches!(e, discovery::DiscoveryError::Config(_)) => {
                return Err(format!("an error that names no file: {e}"))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

#[test]
fn proc_and_mountinfo_through_discovery_roots() {
    fuzz("proc-trees", scaled(400), |rng, _| tree(rng), check_tree);
}

#[test]
fn proc_and_mountinfo_parsers() {
    fuzz(
        "proc-parsers",
        scaled(5000),
        |rng, _| {
            let seed = [MOUNTINFO, CGROUP, STAT, STATUS][rng.below(4)];
            if rng.below(3) == 0 {
                random_bytes(rng, 1024)
            } else {
                mutate(rng, seed.as_bytes())
            }
        },
        |b| {
            let _ = discovery::mountinfo::parse_mountinfo(b);
            let _ = discovery::procfs::parse_stat(b);
            let _ = discovery::procfs::parse_cgroup_v2(b);
            let text = String::from_utf8_lossy(b);
            let _ = ktm::privileges::parse_seccomp(&text);
            let _ = ktm::privileges::parse_lockdown(&text);
            match ktm::privileges::parse_effective(&text) {
                Err(e) if !e.to_string().contains("/proc/self/status") => Err(format!("{e} does not name the file")),
                _ => Ok(()),
            }
        },
    );
}

// ---- tracepoint format files ----

const FORMAT: &str = "name: mm_filemap_add_to_page_cache
ID: 600
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;
\tfield:struct file * file;\toffset:16;\tsize:8;\tsigned:0;
\tfield:char name[16];\toffset:24;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] s;\toffset:40;\tsize:4;\tsigned:0;
\tfield:unsigned char order;\toffset:44;\tsize:1;\tsigned:0;

print fmt: \"ino %lx pfn=0x%lx order=%u\", REC->i_ino, REC->pfn, REC->order
";

/// Format files of the running kernel as more seeds, when tracefs is readable.
fn kernel_formats() -> Vec<String> {
    let Ok(root) = ktm::attach::tracefs_root() else { return Vec::new() };
    let mut out = Vec::new();
    for cat in ["syscalls", "filemap", "vmscan", "sched"] {
        let Ok(dir) = std::fs::read_dir(root.join("events").join(cat)) else { continue };
        for e in dir.flatten().take(20) {
            if let Ok(t) = std::fs::read_to_string(e.path().join("format")) {
                out.push(t);
            }
        }
    }
    out
}

#[test]
fn tracepoint_format_files() {
    // The known fields parse before any mutation.
    assert_eq!(ktm::attach::parse_tracepoint_format(FORMAT, "order"), Some((44, 1)));
    assert_eq!(ktm::attach::parse_tracepoint_format(FORMAT, "file"), Some((16, 8)));
    let mut seeds = vec![FORMAT.to_string()];
    seeds.extend(kernel_formats());
    fuzz(
        "tracepoint-format",
        scaled(5000),
        move |rng, _| {
            let s = &seeds[rng.below(seeds.len())];
            let bytes = if rng.below(5) == 0 { random_bytes(rng, 600) } else { mutate(rng, s.as_bytes()) };
            let field = ["order", "file", "pfn", "common_pid", "s", "name", "", "offset:"][rng.below(8)];
            (String::from_utf8_lossy(&bytes).into_owned(), field)
        },
        |(text, field)| {
            if let Some((offset, size)) = ktm::attach::parse_tracepoint_format(text, field) {
                // What it returns came from a declaration of that field.
                let declared = text.lines().any(|l| l.contains(&format!("offset:{offset}")) && l.contains(*field));
                if !declared || !text.contains(&format!("size:{size}")) {
                    return Err(format!("({offset}, {size}) for {field:?} is in no declaration"));
                }
            }
            Ok(())
        },
    );
}
