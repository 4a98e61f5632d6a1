//! The BTF reader against the running kernel, checked by an independent tool (bpftool).

use ktm::btf::{self, Btf};
use std::process::Command;

fn bpftool_func_ids(names: &[&str]) -> Option<Vec<(String, u32)>> {
    let out = Command::new("bpftool").args(["btf", "dump", "file", "/sys/kernel/btf/vmlinux"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::new();
    for line in text.lines() {
        // [90552] FUNC 'ksys_fadvise64_64' type_id=90551 linkage=static
        let Some(rest) = line.strip_prefix('[') else { continue };
        let Some((id, rest)) = rest.split_once("] FUNC '") else { continue };
        let Some((name, _)) = rest.split_once('\'') else { continue };
        if names.contains(&name) {
            found.push((name.to_string(), id.parse().ok()?));
        }
    }
    Some(found)
}

#[test]
fn func_ids_match_bpftool() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI=true: this kernel has no BTF");
        eprintln!("SKIP: no /sys/kernel/btf/vmlinux");
        return;
    }
    let names = ["ksys_fadvise64_64", "vfs_read", "ksys_read", "ksys_pread64", "filemap_get_pages"];
    let Some(expected) = bpftool_func_ids(&names) else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI=true: bpftool is missing (apt-get install bpftool)");
        eprintln!("SKIP: bpftool unavailable");
        return;
    };
    assert!(expected.iter().any(|(n, _)| n == "ksys_fadvise64_64"), "bpftool lists ksys_fadvise64_64");
    let vmlinux = btf::vmlinux().unwrap();
    for (name, id) in &expected {
        assert_eq!(vmlinux.find_func(name), Some(*id), "{name}");
    }
    let loc = btf::find_kernel_func("ksys_fadvise64_64").unwrap();
    assert_eq!(loc.params, Some(4));
    assert!(btf::find_kernel_func("no_such_function_anywhere").is_err());
}

#[test]
fn module_btf_parses_as_split() {
    let Ok(base) = btf::vmlinux() else { return };
    let modules: Vec<_> = std::fs::read_dir("/sys/kernel/btf")
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| !p.ends_with("vmlinux")).collect())
        .unwrap_or_default();
    if modules.is_empty() {
        eprintln!("no module BTF on this kernel (modules built in): nothing to parse");
        return;
    }
    for m in modules {
        let bytes = std::fs::read(&m).unwrap();
        let split = Btf::parse_split(&bytes, base).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        assert!(!split.is_empty(), "{}", m.display());
    }
}

/// Truncations and byte flips of the real vmlinux BTF: errors, never panics.
#[test]
fn corrupted_vmlinux_never_panics() {
    let Ok(bytes) = std::fs::read("/sys/kernel/btf/vmlinux") else { return };
    let prefix = &bytes[..bytes.len().min(256 * 1024)];
    let seed = 0x5eed_u64;
    println!("seed {seed:#x}");
    let mut x = seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..300 {
        let mut b = prefix.to_vec();
        b.truncate(24 + (next() as usize) % (b.len() - 24));
        for _ in 0..next() % 8 {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let _ = Btf::parse(&b);
    }
}
