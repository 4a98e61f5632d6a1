//! Errors of the BTF reader.
//!
//! The reader runs inside a long-lived sidecar on kernels nobody tested, so a bad blob must
//! turn into a message an operator can act on: which field, at which byte of the file, and
//! what the reader expected instead. Offsets are always counted from the first byte of the
//! blob (the file), so they can be checked with `xxd`.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::kind::{Kind, HEADER_LEN};

/// Why kernel BTF could not be read, parsed or searched.
///
/// `Clone` because [`super::vmlinux`] parses once per process and hands every caller a copy
/// of the same failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BtfError {
    /// `/sys/kernel/btf/vmlinux` does not exist.
    NoKernelBtf { path: PathBuf },
    /// A BTF file exists but could not be read.
    Io { path: PathBuf, kind: io::ErrorKind, message: String },
    /// The blob is shorter than the fixed part of the header.
    Truncated { len: usize },
    /// The first two bytes are not the BTF magic.
    BadMagic { found: u16 },
    /// A header version this reader does not know the layout of.
    BadVersion { found: u8 },
    /// Header lengths or section bounds that do not fit the blob.
    BadHeader { detail: String },
    /// The string section is malformed as a whole (not NUL-terminated, ...).
    BadStrings { detail: String },
    /// A type entry (its 12-byte header or its trailing data) crosses the end of the type
    /// section. `kind` is `None` when not even the entry's header fits.
    TypePastEnd { id: u32, offset: usize, kind: Option<Kind>, end: usize },
    /// A kind number this reader does not know the size of, so the walk cannot go on.
    UnknownKind { id: u32, offset: usize, kind: u8 },
    /// A name offset that points outside the string section(s).
    StringOutOfRange { str_off: u32, limit: u64, id: u32, offset: usize },
    /// More types than type ids (u32) can number.
    TooManyTypes { first_id: u32 },
    /// A parse error in the named file.
    InFile { path: PathBuf, error: Box<BtfError> },
    /// The function has no BTF_KIND_FUNC in vmlinux nor in any module BTF.
    FuncNotFound { name: String, modules_searched: usize, skipped: Vec<String> },
}

impl BtfError {
    /// Builds an [`BtfError::Io`] that keeps only what is cloneable from the `io::Error`.
    pub(crate) fn io(path: impl Into<PathBuf>, err: &io::Error) -> Self {
        BtfError::Io { path: path.into(), kind: err.kind(), message: err.to_string() }
    }
}

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BtfError::NoKernelBtf { path } => write!(
                f,
                "{} does not exist: the kernel was built without CONFIG_DEBUG_INFO_BTF, so \
                 functions cannot be found by BTF id (fentry/fexit unavailable)",
                path.display()
            ),
            BtfError::Io { path, message, .. } => {
                write!(f, "cannot read {}: {message}", path.display())
            }
            BtfError::Truncated { len } => {
                write!(f, "BTF blob is {len} bytes, too short for the {}-byte header", HEADER_LEN)
            }
            BtfError::BadMagic { found } => {
                write!(f, "bad magic 0x{found:04x} at offset 0 (expected 0xeb9f")?;
                if *found == 0x9feb {
                    f.write_str("; this is big-endian BTF, which this reader does not support")?;
                }
                f.write_str(")")
            }
            BtfError::BadVersion { found } => {
                write!(f, "unsupported BTF version {found} at offset 2 (only version 1 is known)")
            }
            BtfError::BadHeader { detail } => write!(f, "bad BTF header: {detail}"),
            BtfError::BadStrings { detail } => write!(f, "bad BTF string section: {detail}"),
            BtfError::TypePastEnd { id, offset, kind, end } => {
                write!(f, "type section entry [{id}]")?;
                if let Some(kind) = kind {
                    write!(f, " ({kind})")?;
                }
                write!(
                    f,
                    " at offset {offset} runs past the end of the type section (which ends at \
                     offset {end})"
                )
            }
            BtfError::UnknownKind { id, offset, kind } => write!(
                f,
                "type section entry [{id}] at offset {offset} has unknown kind {kind} (this \
                 reader knows kinds 1 to {}), so the rest of the section cannot be walked",
                Kind::MAX_RAW
            ),
            BtfError::StringOutOfRange { str_off, limit, id, offset } => write!(
                f,
                "string offset {str_off} outside the string section (valid offsets are below \
                 {limit}), used by type [{id}] at offset {offset}"
            ),
            BtfError::TooManyTypes { first_id } => {
                write!(f, "type ids starting at {first_id} overflow 32 bits; the type section is corrupt")
            }
            BtfError::InFile { path, error } => write!(f, "{}: {error}", path.display()),
            BtfError::FuncNotFound { name, modules_searched, skipped } => {
                write!(
                    f,
                    "kernel function `{name}` has no BTF_KIND_FUNC in vmlinux nor in \
                     {modules_searched} module BTF file(s)"
                )?;
                if !skipped.is_empty() {
                    write!(f, "; unreadable module BTF: {}", skipped.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

// No `source()`: `InFile` already prints its inner error, and chain printers would repeat it.
impl std::error::Error for BtfError {}
