//! Reader of the kernel's own BTF (`/sys/kernel/btf/*`).
//!
//! fentry/fexit programs are loaded against the BTF type id of the traced function, and the
//! crate must not need bpftool or libbpf to learn it. So this module reads the BTF the
//! running kernel exports, walks it once with every read bounds-checked (the input comes
//! from a kernel we did not test, and a panic would take the sidecar down), and answers the
//! few questions attaching asks: which id does function X have, in vmlinux or in which
//! module, and how many arguments does it take.

mod blob;
mod error;
mod header;
mod kind;
mod reader;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

pub use error::BtfError;
pub use kind::Kind;
pub use reader::Btf;

/// Where the kernel exports its BTF: `vmlinux` plus one split blob per loaded module.
pub const SYSFS_BTF_DIR: &str = "/sys/kernel/btf";

/// Where a kernel function's BTF_KIND_FUNC lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncLocation {
    /// Type id of the FUNC; for a module function it is an id in that module's split BTF
    /// (which the loader must then name by the module's BTF object fd).
    pub type_id: u32,
    /// `None` for vmlinux, else the module name (the file name under /sys/kernel/btf).
    pub module: Option<String>,
    /// Declared parameters, so fexit programs know where the return value sits; `None`
    /// when the FUNC has no usable FUNC_PROTO.
    pub params: Option<usize>,
}

/// The running kernel's vmlinux BTF, read and parsed once and kept until
/// [`release_vmlinux`].
///
/// The error is cached too: BTF does not appear while the process runs, and every probe
/// asking again would re-read megabytes only to fail the same way.
pub fn vmlinux() -> Result<Btf, BtfError> {
    let mut cached = VMLINUX.lock().unwrap_or_else(PoisonError::into_inner);
    cached
        .get_or_insert_with(|| {
            let path = Path::new(SYSFS_BTF_DIR).join("vmlinux");
            let started = std::time::Instant::now();
            let parsed = read_btf(&path, None);
            match &parsed {
                Ok(btf) => log::debug!("parsed {} ({} types) in {:?}", path.display(), btf.len(), started.elapsed()),
                Err(e) => log::warn!("kernel BTF unavailable: {e}"),
            }
            parsed
        })
        .clone()
}

/// Forgets the cached vmlinux BTF (the blob plus its index, about 7 MiB on a distribution
/// kernel). Attaching is the only user, and it is done once at start: a sidecar should
/// not keep megabytes resident for a lookup it may never make again. A later
/// [`vmlinux`] reads it afresh; a [`Btf`] already handed out stays valid.
pub fn release_vmlinux() {
    VMLINUX.lock().unwrap_or_else(PoisonError::into_inner).take();
}

static VMLINUX: Mutex<Option<Result<Btf, BtfError>>> = Mutex::new(None);

/// Finds kernel function `name` in vmlinux BTF, else in the BTF of loaded modules.
///
/// Modules are re-read on every call, not cached, because they come and go while the
/// sidecar runs; the vmlinux hit, the common case, costs a hash lookup.
pub fn find_kernel_func(name: &str) -> Result<FuncLocation, BtfError> {
    let base = vmlinux()?;
    find_func_with_base(Path::new(SYSFS_BTF_DIR), &base, name)
}

/// [`find_kernel_func`] over another directory laid out like /sys/kernel/btf (a `vmlinux`
/// file plus module files), read afresh: for tests and for inspecting a captured system.
pub fn find_kernel_func_in(dir: &Path, name: &str) -> Result<FuncLocation, BtfError> {
    let base = read_btf(&dir.join("vmlinux"), None)?;
    find_func_with_base(dir, &base, name)
}

fn find_func_with_base(dir: &Path, base: &Btf, name: &str) -> Result<FuncLocation, BtfError> {
    if let Some(type_id) = base.find_func(name) {
        return Ok(FuncLocation { type_id, module: None, params: base.func_param_count(type_id) });
    }
    let entries = std::fs::read_dir(dir).map_err(|e| BtfError::io(dir, &e))?;
    let mut modules: Vec<(String, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let module = entry.file_name().into_string().ok()?;
            (module != "vmlinux").then(|| (module, entry.path()))
        })
        .collect();
    // Deterministic order, so a function present in two modules resolves the same way on
    // every run.
    modules.sort();
    let mut skipped = Vec::new();
    for (module, path) in &modules {
        match read_btf(path, Some(base)) {
            Ok(btf) => {
                if let Some(type_id) = btf.find_func(name) {
                    return Ok(FuncLocation {
                        type_id,
                        module: Some(module.clone()),
                        params: btf.func_param_count(type_id),
                    });
                }
            }
            // Unloaded between listing and reading: not an error, just gone.
            Err(BtfError::NoKernelBtf { .. }) => {}
            Err(e) => {
                log::warn!("skipping module BTF {}: {e}", path.display());
                skipped.push(format!("{module}: {e}"));
            }
        }
    }
    Err(BtfError::FuncNotFound { name: name.to_owned(), modules_searched: modules.len(), skipped })
}

/// Reads and parses one BTF file; a missing file is [`BtfError::NoKernelBtf`].
fn read_btf(path: &Path, base: Option<&Btf>) -> Result<Btf, BtfError> {
    let data = match blob::load(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BtfError::NoKernelBtf { path: path.to_owned() }),
        Err(e) => return Err(BtfError::io(path, &e)),
    };
    // Name the file: a parse error alone does not say which of ~100 blobs was bad.
    Btf::from_blob(data, base).map_err(|e| BtfError::InFile { path: path.to_owned(), error: Box::new(e) })
}
