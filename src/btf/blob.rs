//! The bytes of a BTF file: mapped where the kernel allows it, else read.
//!
//! `/sys/kernel/btf/vmlinux` is served through a kernfs buffer one page per `read()`: 1,350
//! calls and a copy of 5.5 MB, about 2 ms. Since Linux 6.16 the kernel lets the file be
//! mapped read-only and private, which costs a page-table walk instead (0.2 ms here). Older
//! kernels and module files refuse the mapping; then the file is read as before.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// A BTF file's contents.
pub(crate) enum Blob {
    Owned(Vec<u8>),
    Mapped(Mapping),
}

impl Deref for Blob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Blob::Owned(v) => v,
            Blob::Mapped(m) => m.bytes(),
        }
    }
}

/// A read-only private mapping of a whole file, unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and private: nothing writes it, and it lives until drop.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn of(file: &File, len: usize) -> Option<Mapping> {
        // SAFETY: a fresh read-only private mapping; the kernel checks the fd and length.
        let p =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(p.cast::<u8>()).map(|ptr| Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `of` mapped; no reference outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if matches!(self, Blob::Mapped(_)) { "mapped" } else { "read" };
        write!(f, "Blob({how}, {} bytes)", self.len())
    }
}

/// The file's contents, mapped if the kernel allows it.
pub(crate) fn load(path: &Path) -> io::Result<Blob> {
    let mut file = File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(0);
    if len > 0 {
        if let Some(m) = Mapping::of(&file, len) {
            return Ok(Blob::Mapped(m));
        }
    }
    let mut data = Vec::with_capacity(len);
    file.read_to_end(&mut data)?;
    Ok(Blob::Owned(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_maps_or_reads_to_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let blob = load(&path).unwrap();
        assert!(matches!(blob, Blob::Mapped(_)), "a regular file maps");
        assert_eq!(&*blob, &bytes[..]);
        std::fs::write(&path, b"").unwrap();
        assert!(load(&path).unwrap().is_empty());
    }
}
