//! The command line: the options, the groups `--only` picks, and the QEMU guests' defaults.

use std::path::PathBuf;

pub struct Opts {
    pub quick: bool,
    pub json: Option<PathBuf>,
    pub rounds: usize,
    pub calls: usize,
    pub starts: usize,
    pub reexecs: usize,
    pub snapshots: usize,
    /// Syscall mix (pread, read, other) for the cost-per-syscall column.
    pub mix: [f64; 3],
    /// Pause before a "settled" start: a start within ~100 ms of a detach waits for the
    /// kernel (see the start-up table).
    pub pause_ms: u64,
    /// Groups to run (all when empty).
    pub only: Vec<String>,
}

/// The groups `--only` can pick.
pub const GROUPS: [&str; 7] =
    ["startup", "collection", "workload", "mechanisms", "slots", "guest-mechanisms", "scope-test"];

/// Extra arguments, whitespace-separated, appended to the command line's: a QEMU guest runs
/// every binary as `NAME --test-threads=1 --nocapture`, so `.ci/qemu/bench-guest.sh` selects
/// the measurement with `KTM_BENCH_ARGS="--bench --only guest-mechanisms"` instead.
const ARGS_ENV: &str = "KTM_BENCH_ARGS";

/// The command line's arguments, then those of [`ARGS_ENV`].
pub fn bench_args() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(extra) = std::env::var(ARGS_ENV) {
        args.extend(extra.split_whitespace().map(String::from));
    }
    args
}

/// Set by the QEMU guests' /init: everything runs under TCG, some 10 to 50 times slower.
pub fn in_qemu() -> bool {
    std::env::var_os("KTM_IN_QEMU").is_some()
}

impl Opts {
    pub fn parse() -> Result<Opts, String> {
        let args = bench_args();
        let quick = args.iter().any(|a| a == "--quick");
        // A cached 4 KiB pread costs microseconds under TCG: fewer calls, and more rounds
        // against the drift of a shared host (a guest-mechanisms round takes about 3 s).
        let qemu = in_qemu();
        let mut o = Opts {
            quick,
            json: None,
            rounds: if qemu {
                9
            } else if quick {
                3
            } else {
                5
            },
            calls: if qemu {
                20_000
            } else if quick {
                50_000
            } else {
                200_000
            },
            starts: if quick { 2 } else { 9 },
            reexecs: if quick { 2 } else { 5 },
            snapshots: if quick { 1000 } else { 10_000 },
            mix: [0.10, 0.20, 0.70],
            pause_ms: 250,
            only: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}"));
            match a.as_str() {
                // --test-threads=1 and --nocapture: how the QEMU runner calls every binary.
                "--quick" | "--bench" | "--nocapture" => {}
                a if a.starts_with("--test-threads") => {}
                "--json" => o.json = Some(PathBuf::from(val("a path")?)),
                "--rounds" => o.rounds = val("a number")?.parse().map_err(|_| "bad --rounds")?,
                "--calls" => o.calls = val("a number")?.parse().map_err(|_| "bad --calls")?,
                "--only" => {
                    o.only = val("groups")?.split(',').map(|g| g.trim().to_string()).collect();
                    if let Some(g) = o.only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
                        return Err(format!("--only: unknown group {g} (groups: {})", GROUPS.join(",")));
                    }
                }
                "--mix" => {
                    let v: Vec<f64> =
                        val("pread,read,other")?.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                    let sum: f64 = v.iter().sum();
                    if v.len() != 3 || sum <= 0.0 {
                        return Err("--mix takes three weights: pread,read,other".into());
                    }
                    o.mix = [v[0] / sum, v[1] / sum, v[2] / sum];
                }
                "-h" | "--help" => {
                    println!(
                        "overhead [--quick] [--json PATH|-] [--rounds N] [--calls N] [--mix PREAD,READ,OTHER] \
                         [--only {}]",
                        GROUPS.join(",")
                    );
                    std::process::exit(0);
                }
                other => eprintln!("overhead: ignoring argument {other}"),
            }
        }
        Ok(o)
    }

    pub fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}
