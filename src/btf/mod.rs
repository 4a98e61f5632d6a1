//! A small reader of kernel BTF: enough to find a function's type id for fentry/fexit.
//!
//! The kernel describes itself in `/sys/kernel/btf/vmlinux` (and each module in
//! `/sys/kernel/btf/<module>`, as split BTF continuing the vmlinux ids). KTM needs only the
//! ids of FUNC entries and their parameter counts, so that is all it indexes. Every read is
//! bounds-checked: a truncated or corrupt file is an error, never a panic.

use once_cell::sync::OnceCell;
use std::collections::HashMap;
use std::fmt;

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const TYPE_LEN: usize = 12;

/// BTF kinds (`BTF_KIND_*`).
#[allow(missing_docs)]
pub mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// A malformed or missing BTF blob, with where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfError(String);

impl BtfError {
    fn new(s: impl Into<String>) -> Self {
        BtfError(s.into())
    }
}

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BtfError {}

/// One type entry, reduced to what lookups need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Type {
    kind: u32,
    name_off: u32,
    vlen: u32,
    /// `size` or `type`, by kind.
    size_or_type: u32,
}

/// A parsed BTF blob (base or split).
#[derive(Debug)]
pub struct Btf {
    /// Id of the first type here: 1 for base BTF, base count + 1 for split BTF.
    first_id: u32,
    types: Vec<Type>,
    strings: Vec<u8>,
    /// Where this blob's strings start in the combined string space (base string length for split BTF).
    str_base: u32,
    funcs: HashMap<String, u32>,
    protos: HashMap<u32, u32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Bytes of data after a type entry of `kind` with `vlen` members.
fn trailing(kind: u32, vlen: u32, at: usize) -> Result<usize, BtfError> {
    let v = vlen as usize;
    Ok(match kind {
        kind::INT | kind::VAR | kind::DECL_TAG => 4,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => v * 12,
        kind::ENUM | kind::FUNC_PROTO => v * 8,
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        k => return Err(BtfError::new(format!("type entry at offset {at} has unknown kind {k}"))),
    })
}

impl Btf {
    /// Parses base BTF (`/sys/kernel/btf/vmlinux`).
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        Self::parse_inner(bytes, None)
    }

    /// Parses split BTF (a module's), whose ids and strings continue `base`'s.
    pub fn parse_split(bytes: &[u8], base: &Btf) -> Result<Btf, BtfError> {
        Self::parse_inner(bytes, Some(base))
    }

    fn parse_inner(b: &[u8], base: Option<&Btf>) -> Result<Btf, BtfError> {
        let magic = u16_at(b, 0).ok_or_else(|| BtfError::new("BTF shorter than its header"))?;
        if magic != MAGIC {
            return Err(BtfError::new(format!(
                "bad magic {magic:#06x} (expected {MAGIC:#06x}; big-endian BTF is not supported)"
            )));
        }
        if b.get(2) != Some(&1) {
            return Err(BtfError::new(format!("unsupported BTF version {:?}", b.get(2))));
        }
        let field = |at| u32_at(b, at).ok_or_else(|| BtfError::new("BTF shorter than its header"));
        let hdr_len = field(4)? as usize;
        if hdr_len < HEADER_LEN {
            return Err(BtfError::new(format!("header length {hdr_len} is below {HEADER_LEN}")));
        }
        let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
        let section = |off: u32, len: u32, what: &str| {
            let start = hdr_len.checked_add(off as usize);
            let end = start.and_then(|s| s.checked_add(len as usize));
            match (start, end) {
                (Some(s), Some(e)) if e <= b.len() => Ok(&b[s..e]),
                _ => Err(BtfError::new(format!(
                    "{what} section ({len} bytes at {off}) runs past the end ({} bytes)",
                    b.len()
                ))),
            }
        };
        let types_bytes = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?.to_vec();
        let (first_id, str_base) = match base {
            Some(base) => (base.next_id(), base.str_base.saturating_add(base.strings.len() as u32)),
            None => (1, 0),
        };
        let mut btf =
            Btf { first_id, types: Vec::new(), strings, str_base, funcs: HashMap::new(), protos: HashMap::new() };
        let mut at = 0usize;
        while at < types_bytes.len() {
            let rd = |o: usize| {
                u32_at(types_bytes, at + o)
                    .ok_or_else(|| BtfError::new(format!("type entry at offset {at} runs past the end")))
            };
            let (name_off, info, size_or_type) = (rd(0)?, rd(4)?, rd(8)?);
            let t = Type { kind: (info >> 24) & 0x1f, name_off, vlen: info & 0xffff, size_or_type };
            let next = at
                .checked_add(TYPE_LEN + trailing(t.kind, t.vlen, at)?)
                .filter(|&n| n <= types_bytes.len())
                .ok_or_else(|| BtfError::new(format!("type entry at offset {at} runs past the end")))?;
            let id = btf.first_id.checked_add(btf.types.len() as u32).ok_or_else(|| BtfError::new("too many types"))?;
            if t.kind == kind::FUNC_PROTO {
                btf.protos.insert(id, t.vlen);
            }
            btf.types.push(t);
            at = next;
        }
        for (i, t) in btf.types.iter().enumerate() {
            if t.kind == kind::FUNC {
                let id = btf.first_id + i as u32;
                let name = btf.string(t.name_off, base)?;
                btf.funcs.entry(name.to_string()).or_insert(id);
            }
        }
        Ok(btf)
    }

    fn next_id(&self) -> u32 {
        self.first_id.saturating_add(self.types.len() as u32)
    }

    /// The string at `off` in the combined (base + this) string space.
    fn string<'a>(&'a self, off: u32, base: Option<&'a Btf>) -> Result<&'a str, BtfError> {
        let (bytes, local) = if off < self.str_base {
            match base {
                Some(b) => (&b.strings, off.checked_sub(b.str_base).unwrap_or(u32::MAX)),
                None => return Err(BtfError::new(format!("string offset {off} is in a base BTF that was not given"))),
            }
        } else {
            (&self.strings, off - self.str_base)
        };
        let tail = bytes
            .get(local as usize..)
            .ok_or_else(|| BtfError::new(format!("string offset {off} outside the string section")))?;
        let end = tail
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| BtfError::new(format!("string at {off} is not terminated")))?;
        std::str::from_utf8(&tail[..end]).map_err(|_| BtfError::new(format!("string at {off} is not UTF-8")))
    }

    /// Number of types in this blob.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// True for a blob with no types.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The type id of the FUNC named `name`.
    pub fn find_func(&self, name: &str) -> Option<u32> {
        self.funcs.get(name).copied()
    }

    /// Number of parameters of FUNC `func_id` (from its FUNC_PROTO), for fexit's return slot.
    pub fn func_param_count(&self, func_id: u32) -> Option<usize> {
        let t = self.types.get(func_id.checked_sub(self.first_id)? as usize)?;
        if t.kind != kind::FUNC {
            return None;
        }
        self.protos.get(&t.size_or_type).map(|&n| n as usize)
    }
}

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

static VMLINUX_BTF: OnceCell<Result<Btf, BtfError>> = OnceCell::new();

/// The running kernel's BTF, read and parsed once per process.
pub fn vmlinux() -> Result<&'static Btf, BtfError> {
    VMLINUX_BTF
        .get_or_init(|| {
            let bytes = std::fs::read(VMLINUX).map_err(|e| {
                BtfError::new(format!("cannot read {VMLINUX} ({e}): the kernel lacks CONFIG_DEBUG_INFO_BTF, so fentry/fexit are unavailable"))
            })?;
            Btf::parse(&bytes)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Where a kernel function's BTF lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncLocation {
    pub type_id: u32,
    /// None for vmlinux, else the module whose BTF has it.
    pub module: Option<String>,
    /// Its parameter count.
    pub params: Option<usize>,
}

/// Finds a kernel function in vmlinux BTF, then in each module's.
pub fn find_kernel_func(name: &str) -> Result<FuncLocation, BtfError> {
    let base = vmlinux()?;
    if let Some(id) = base.find_func(name) {
        return Ok(FuncLocation { type_id: id, module: None, params: base.func_param_count(id) });
    }
    if let Ok(dir) = std::fs::read_dir("/sys/kernel/btf") {
        for entry in dir.flatten() {
            let module = entry.file_name().to_string_lossy().into_owned();
            if module == "vmlinux" {
                continue;
            }
            let Ok(bytes) = std::fs::read(entry.path()) else { continue };
            if let Ok(btf) = Btf::parse_split(&bytes, base) {
                if let Some(id) = btf.find_func(name) {
                    return Ok(FuncLocation { type_id: id, module: Some(module), params: btf.func_param_count(id) });
                }
            }
        }
    }
    Err(BtfError::new(format!("no function `{name}` in the kernel's BTF (inlined, renamed, or absent on this kernel)")))
}

#[cfg(test)]
mod tests;
