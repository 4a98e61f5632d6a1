//! Support shared by the privileged integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// True when the test may use bpf(); otherwise prints why and returns false, or, under
/// `CI=true`, fails: CI must never silently skip a privileged test.
pub fn privileged(test: &str) -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else {
        match ktm::maps::Array::<u32>::create("ktm_priv_probe", 1) {
            Ok(_) => None,
            Err(e) => Some(format!("bpf() unavailable: {e}")),
        }
    };
    match why {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: privileged test cannot run under CI=true: {why}")
        }
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            false
        }
    }
}

/// The `ktm` binary that serves as the workload child.
pub fn ktm_bin() -> PathBuf {
    ktm::workload::ktm_bin(env!("CARGO_BIN_EXE_ktm"))
}

/// A line for the kernel-matrix runner: one row, one cell for this kernel.
pub fn matrix(row: &str, cell: &str) {
    println!("KTM-MATRIX\t{row}\t{cell}");
}

/// A scratch directory on a real filesystem (TMPDIR; the QEMU guests point it at ext4).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("ktm-test").tempdir().expect("create scratch dir")
}

/// Whether the kernel frees the object with this id (frees are RCU-deferred, so wait a bit).
pub fn gone(lookup: impl Fn() -> ktm::Result<std::os::fd::OwnedFd>) -> bool {
    for _ in 0..200 {
        match lookup() {
            Err(e) if e.errno() == Some(libc::ENOENT) => return true,
            _ => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    false
}
