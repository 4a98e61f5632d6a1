//! The configuration surface: the design's YAML, and that every rejection names the dotted
//! key and the line, since an operator only has the sidecar's log to find the mistake.

use std::path::PathBuf;
use std::time::Duration;

use ktm::config::{Config, ConfigError};

/// The example from the design document, byte for byte.
const DESIGN_YAML: &str = "\
collector:
  interval: 10s
  modules:
    - iomonitor
  ebpf:
    # Optional: absolute or /sys/fs/cgroup-relative path to the BanyanDB cgroup v2.
    # cgroup_path: /sys/fs/cgroup/<banyandb-cgroup>
    # Optional: comm name prefix used for process discovery and fallback filtering.
    # comm_prefix: banyand
";

fn err(src: &str) -> ConfigError {
    match Config::from_yaml_str(src) {
        Ok(cfg) => panic!("accepted {src:?} as {cfg:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's key, line and that its message contains `fragment`.
#[track_caller]
fn assert_err(src: &str, key: Option<&str>, line: usize, fragment: &str) {
    let e = err(src);
    let text = e.to_string();
    assert_eq!(e.key(), key, "key of {text:?}");
    assert_eq!(e.line(), Some(line), "line of {text:?}");
    assert!(text.contains(fragment), "{text:?} lacks {fragment:?}");
    if let Some(k) = key {
        assert!(text.starts_with(&format!("{k}: ")), "{text:?} does not lead with the key");
    }
    assert!(text.contains(&format!("line {line}")), "{text:?} lacks the line");
}

#[test]
fn design_yaml_is_the_defaults() {
    let cfg = Config::from_yaml_str(DESIGN_YAML).unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.collector.interval, Duration::from_secs(10));
    assert_eq!(cfg.collector.modules, vec!["iomonitor".to_string()]);
    assert_eq!(cfg.collector.ebpf.cgroup_path, None);
    assert_eq!(cfg.collector.ebpf.comm_prefix, "banyand");
}

#[test]
fn empty_documents_and_missing_sections_take_defaults() {
    for src in ["", "\n", "# nothing\n", "---\n", "collector:\n", "collector: {}\n", "collector:\n  ebpf:\n"] {
        assert_eq!(Config::from_yaml_str(src).unwrap(), Config::default(), "{src:?}");
    }
    let cfg = Config::from_yaml_str("collector:\n  ebpf:\n    comm_prefix: bydb\n").unwrap();
    assert_eq!(cfg.collector.interval, Duration::from_secs(10));
    assert_eq!(cfg.collector.modules, vec!["iomonitor".to_string()]);
    assert_eq!(cfg.collector.ebpf.comm_prefix, "bydb");
}

#[test]
fn every_setting_is_read() {
    let cfg = Config::from_yaml_str(
        "collector:\n  interval: 1m30s\n  modules: []\n  ebpf:\n    cgroup_path: /sys/fs/cgroup/kubepods/pod1\n    comm_prefix: banyand-data\n",
    )
    .unwrap();
    assert_eq!(cfg.collector.interval, Duration::from_secs(90));
    assert!(cfg.collector.modules.is_empty());
    assert_eq!(cfg.collector.ebpf.cgroup_path, Some(PathBuf::from("/sys/fs/cgroup/kubepods/pod1")));
    assert_eq!(cfg.collector.ebpf.comm_prefix, "banyand-data");
    let rel = Config::from_yaml_str("collector:\n  ebpf:\n    cgroup_path: system.slice/banyand.service\n").unwrap();
    assert_eq!(rel.collector.ebpf.cgroup_path, Some(PathBuf::from("system.slice/banyand.service")));
    // Fifteen bytes is the longest comm there is.
    let long = Config::from_yaml_str("collector:\n  ebpf:\n    comm_prefix: abcdefghijklmno\n").unwrap();
    assert_eq!(long.collector.ebpf.comm_prefix.len(), 15);
}

#[test]
fn go_durations() {
    let ok = [
        ("10s", Duration::from_secs(10)),
        ("500ms", Duration::from_millis(500)),
        ("1m", Duration::from_secs(60)),
        ("1m30s", Duration::from_secs(90)),
        ("2h", Duration::from_secs(7200)),
        ("250us", Duration::from_micros(250)),
        ("250µs", Duration::from_micros(250)),
        ("250μs", Duration::from_micros(250)),
        ("100ns", Duration::from_nanos(100)),
        ("1.5s", Duration::from_millis(1500)),
        (".5m", Duration::from_secs(30)),
        ("+3s", Duration::from_secs(3)),
        ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
    ];
    for (text, want) in ok {
        let src = format!("collector:\n  interval: {text}\n");
        assert_eq!(Config::from_yaml_str(&src).unwrap().collector.interval, want, "{text}");
    }
}

#[test]
fn bad_durations_name_key_and_line() {
    let at = |v: &str| format!("collector:\n  modules: [iomonitor]\n  interval: {v}\n");
    assert_err(&at("10x"), Some("collector.interval"), 3, "\"10x\" is not a duration");
    assert_err(&at("10x"), Some("collector.interval"), 3, "unknown unit \"x\"");
    assert_err(&at("10"), Some("collector.interval"), 3, "units are required");
    assert_err(&at("'10'"), Some("collector.interval"), 3, "units are required");
    assert_err(&at("1.5"), Some("collector.interval"), 3, "units are required");
    assert_err(&at("0s"), Some("collector.interval"), 3, "greater than zero");
    assert_err(&at("0"), Some("collector.interval"), 3, "units are required");
    assert_err(&at("-10s"), Some("collector.interval"), 3, "greater than zero");
    assert_err(&at("10s5"), Some("collector.interval"), 3, "missing unit");
    assert_err(&at("s"), Some("collector.interval"), 3, "not a duration");
    assert_err(&at("''"), Some("collector.interval"), 3, "not a duration");
    assert_err(&at("1.2.3s"), Some("collector.interval"), 3, "not a duration");
    assert_err(&at("99999999999h"), Some("collector.interval"), 3, "out of range");
    assert_err(&at("true"), Some("collector.interval"), 3, "found a boolean");
    assert_err(&at("[10s]"), Some("collector.interval"), 3, "found a list");
    assert_err(&at("{a: 1}"), Some("collector.interval"), 3, "found a mapping");
}

#[test]
fn unknown_keys_at_every_level() {
    assert_err("collectr:\n  interval: 10s\n", Some("collectr"), 1, "unknown key");
    assert_err("collector:\n  interval: 10s\n  intervall: 5s\n", Some("collector.intervall"), 3, "unknown key");
    assert_err(
        "collector:\n  ebpf:\n    cgroup_paht: /sys/fs/cgroup/x\n",
        Some("collector.ebpf.cgroup_paht"),
        3,
        "expected one of: cgroup_path, comm_prefix",
    );
    assert_err("collector:\n  ebpf: {comm_prefix: x, 5: y}\n", Some("collector.ebpf.5"), 2, "unknown key");
}

#[test]
fn repeated_keys_are_refused() {
    assert_err("collector:\n  interval: 1s\n  interval: 2s\n", Some("collector.interval"), 3, "twice");
}

#[test]
fn wrong_types() {
    assert_err("- collector\n", None, 1, "found a list");
    assert_err("collector: 5\n", Some("collector"), 1, "expected a mapping");
    assert_err("collector:\n  ebpf: [a]\n", Some("collector.ebpf"), 2, "found a list");
    assert_err("collector:\n  modules: iomonitor\n", Some("collector.modules"), 2, "expected a list of module names");
    assert_err("collector:\n  ebpf:\n    comm_prefix: 123\n", Some("collector.ebpf.comm_prefix"), 3, "found a number");
    assert_err("collector:\n  ebpf:\n    cgroup_path: [a]\n", Some("collector.ebpf.cgroup_path"), 3, "found a list");
    assert_err("collector: !custom {}\n", Some("collector"), 1, "tagged");
}

#[test]
fn comm_prefix_limits() {
    let at = |v: &str| format!("collector:\n  ebpf:\n    comm_prefix: {v}\n");
    assert_err(&at("''"), Some("collector.ebpf.comm_prefix"), 3, "must not be empty");
    assert_err(&at("abcdefghijklmnop"), Some("collector.ebpf.comm_prefix"), 3, "longer than 15");
    assert_err(
        &at("abcdefghijklmnop"),
        Some("collector.ebpf.comm_prefix"),
        3,
        "16 bytes including the terminating NUL",
    );
}

#[test]
fn cgroup_path_may_not_escape() {
    let at = |v: &str| format!("collector:\n  ebpf:\n    cgroup_path: {v}\n");
    assert_err(&at("../etc"), Some("collector.ebpf.cgroup_path"), 3, "escapes the cgroup mount");
    assert_err(&at("a/../../b"), Some("collector.ebpf.cgroup_path"), 3, "escapes the cgroup mount");
    assert_err(&at("''"), Some("collector.ebpf.cgroup_path"), 3, "must not be empty");
    // Climbing back down is fine, and an absolute path is checked against the mount later.
    assert!(Config::from_yaml_str(&at("a/../b")).is_ok());
    assert!(Config::from_yaml_str(&at("/sys/fs/cgroup/../cgroup/x")).is_ok());
}

#[test]
fn modules_must_be_known_and_distinct() {
    assert_err(
        "collector:\n  modules:\n    - iomonitor\n    - cpumonitor\n",
        Some("collector.modules[1]"),
        4,
        "unknown module \"cpumonitor\" (known: iomonitor)",
    );
    assert_err("collector:\n  modules:\n    - iomonitor\n    - iomonitor\n", Some("collector.modules[1]"), 4, "twice");
    assert_err("collector:\n  modules:\n    -\n", Some("collector.modules[0]"), 3, "found null");
    let cfg = Config::from_yaml_str_with_modules("collector:\n  modules: [iomonitor, cpu]\n", &["iomonitor", "cpu"]);
    assert_eq!(cfg.unwrap().collector.modules, vec!["iomonitor".to_string(), "cpu".to_string()]);
}

#[test]
fn malformed_yaml_has_line_and_column() {
    let e = err("collector:\n  interval: 10s\n   modules: [\n");
    assert_eq!(e.key(), None);
    assert!(e.line().is_some() && e.column().is_some(), "{e}");
    assert!(e.to_string().starts_with("malformed YAML"), "{e}");
    let e = err("collector:\n  interval: 10s\n  ebpf: : x\n");
    assert_eq!((e.line(), e.column()), (Some(3), Some(9)), "{e}");
    let e = err("collector: {}\n---\ncollector: {}\n");
    assert!(e.to_string().contains("more than one document"), "{e}");
    let e = err("collector:\n  interval: *nowhere\n");
    assert_eq!(e.line(), Some(2), "{e}");
}

#[test]
fn from_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("ktm.yaml");
    std::fs::write(&good, DESIGN_YAML).unwrap();
    assert_eq!(Config::from_file(&good).unwrap(), Config::default());

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "collector:\n  interval: 10x\n").unwrap();
    let e = Config::from_file(&bad).unwrap_err();
    assert_eq!((e.key(), e.line()), (Some("collector.interval"), Some(2)));
    assert_eq!(e.file(), Some(bad.as_path()));
    assert!(e.to_string().starts_with(&format!("{}: collector.interval: ", bad.display())), "{e}");

    let missing = dir.path().join("missing.yaml");
    let e = Config::from_file(&missing).unwrap_err();
    assert!(e.to_string().contains("missing.yaml"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
}

/// Every prefix and several corruptions of a valid document must parse or fail, never panic.
#[test]
fn never_panics() {
    let src = "collector:\n  interval: 1m30s\n  modules: [iomonitor]\n  ebpf:\n    cgroup_path: /sys/fs/cgroup/x\n    comm_prefix: \"banyand\"\n";
    for (i, _) in src.char_indices() {
        let _ = Config::from_yaml_str(&src[..i]);
        for junk in ["\t", ":", "-", "[", "{", "\"", "'", "&a ", "*a ", "!t ", "? ", "\u{0}", "é", "\n  "] {
            let _ = Config::from_yaml_str(&format!("{}{junk}{}", &src[..i], &src[i..]));
        }
    }
    let deep = "[".repeat(10_000);
    assert!(Config::from_yaml_str(&deep).is_err());
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
    assert!(Config::from_yaml_str(bomb).is_err());
}

#[test]
fn deep_nesting_huge_files_and_second_documents_are_refused_quickly_with_a_line() {
    let t = std::time::Instant::now();
    let deep = format!("collector:\n  ebpf: {}x{}\n", "{a: ".repeat(100_000), "}".repeat(100_000));
    assert_err(&deep, None, 2, "nested more than 32 deep");
    let big = format!("collector:\n  ebpf:\n    comm_prefix: bydb\n{}", "# padding\n".repeat(200_000));
    assert_err(&big, None, 104_857, "past the 1048576 read at most");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // Brackets in quotes and comments do not count.
    let quoted = format!("collector:\n  ebpf:\n    comm_prefix: \"{}\" # {}\n", "[".repeat(16), "{".repeat(100));
    assert_err(&quoted, Some("collector.ebpf.comm_prefix"), 3, "longer than 15");
    assert_err("collector:\n  interval: 1s\n---\ncollector: {}\n", None, 4, "a second one starts here");
    assert_err("---\n...\ncollector: {}\n", None, 3, "a second one starts here");
}
