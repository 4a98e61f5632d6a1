//! The BPF toolkit imports nothing of the application: no file of it names a module of the
//! application through `crate::` (in code or in a doc link, which is a dependency too).
//!
//! The toolkit's modules are listed here and grouped so in `src/lib.rs`; every other
//! `pub mod` of `src/lib.rs` is the application's. `KTM_LAYERING_ROOT=/path/to/checkout` checks
//! another tree's `src/` (how this test was seen to fail on the tree before the split).

use std::path::{Path, PathBuf};

/// The toolkit: top-level modules (a file `src/NAME.rs` or a folder `src/NAME/`), and single
/// files of a mixed folder.
const TOOLKIT_MODULES: &[&str] = &["attach", "btf", "error", "host", "insn", "load", "maps", "privileges", "sys"];
const TOOLKIT_FILES: &[&str] = &["elf/writer.rs"];
/// Paths below an application module that the toolkit may name: its own files in a mixed folder.
const ALLOWED: &[&str] = &["elf::writer"];

fn root() -> PathBuf {
    std::env::var_os("KTM_LAYERING_ROOT").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The `pub mod NAME;` lines of `src/lib.rs`.
fn lib_modules(lib: &str) -> Vec<String> {
    lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod ")?.strip_suffix(';').map(str::to_string)).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn toolkit_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for m in TOOLKIT_MODULES {
        let file = src.join(format!("{m}.rs"));
        if file.is_file() {
            files.push(file);
        }
        if src.join(m).is_dir() {
            rust_files(&src.join(m), &mut files);
        }
    }
    files.extend(TOOLKIT_FILES.iter().map(|f| src.join(f)).filter(|f| f.is_file()));
    files.sort();
    files
}

/// Every path a text names after `crate::`, with `crate::{a, b::c}` groups expanded (to their
/// first segments and the segment after, enough for [`ALLOWED`]).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let ident =
        |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect() };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = ident(item.trim());
                    if !name.is_empty() {
                        out.push((n + 1, name));
                    }
                }
            } else {
                out.push((n + 1, ident(rest)));
            }
        }
    }
    out
}

#[test]
fn the_toolkit_imports_nothing_of_the_application() {
    let root = root();
    let src = root.join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let application: Vec<String> =
        lib_modules(&lib).into_iter().filter(|m| !TOOLKIT_MODULES.contains(&m.as_str())).collect();
    assert!(application.iter().any(|m| m == "config"), "no application modules found in {}", src.display());
    let files = toolkit_files(&src);
    assert!(files.len() > 30, "only {} toolkit files under {}", files.len(), src.display());
    let mut violations = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (line, path) in crate_paths(&text) {
            let first = path.split("::").next().unwrap_or_default();
            if application.iter().any(|a| a == first) && !ALLOWED.iter().any(|ok| path.starts_with(ok)) {
                violations.push(format!("{}:{line}: crate::{path}", f.strip_prefix(&root).unwrap_or(f).display()));
            }
        }
    }
    assert!(violations.is_empty(), "the toolkit names the application:\n{}", violations.join("\n"));
}

/// `src/lib.rs` shows the split: the toolkit's `pub mod` lines come first, together, under the
/// comment that says so, and nothing listed here is missing there.
#[test]
fn lib_rs_groups_the_toolkit_first() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let modules = lib_modules(&lib);
    let head: Vec<&str> = modules.iter().take(TOOLKIT_MODULES.len()).map(String::as_str).collect();
    let mut want = TOOLKIT_MODULES.to_vec();
    want.sort_unstable();
    let mut got = head.clone();
    got.sort_unstable();
    assert_eq!(got, want, "src/lib.rs's first pub mod lines are not the toolkit's: {head:?}");
    assert!(lib.contains("// The BPF toolkit") && lib.contains("// The application"), "src/lib.rs's group comments");
}

/// The checker sees through groups and doc links: a check that cannot fail is none.
#[test]
fn crate_paths_finds_every_form() {
    let text =
        "use crate::{Error, discovery::PidNs};\n/// see [`crate::lockdown`]\nlet m = crate::metrics::Metric::gauge();";
    let names: Vec<String> = crate_paths(text).into_iter().map(|(_, p)| p).collect();
    assert_eq!(names, ["Error", "discovery::PidNs", "lockdown", "metrics::Metric::gauge"]);
}
