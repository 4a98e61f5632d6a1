//! The frame of a BTF blob: its header (magic, version, the type and string sections' bounds)
//! and its string section (NUL-terminated names that type entries refer to by offset). The
//! types themselves are `reader`'s.

use super::error::BtfError;
use super::kind::HEADER_LEN;

const MAGIC: u16 = 0xeb9f;
const VERSION: u8 = 1;

/// Section bounds from the header, as absolute offsets into the blob.
pub(super) struct Header {
    pub(super) type_start: usize,
    pub(super) type_end: usize,
    pub(super) str_start: usize,
    pub(super) str_len: usize,
}

impl Header {
    pub(super) fn read(data: &[u8]) -> Result<Header, BtfError> {
        if data.len() < HEADER_LEN {
            return Err(BtfError::Truncated { len: data.len() });
        }
        if u32::try_from(data.len()).is_err() {
            return Err(BtfError::BadHeader {
                detail: format!("blob of {} bytes exceeds the 4 GiB BTF offsets can address", data.len()),
            });
        }
        let field = |at: usize| read_u32(data, at).ok_or(BtfError::Truncated { len: data.len() });
        let magic = data.first().zip(data.get(1)).map(|(&lo, &hi)| u16::from_le_bytes([lo, hi]));
        match magic {
            Some(MAGIC) => {}
            found => return Err(BtfError::BadMagic { found: found.unwrap_or(0) }),
        }
        let version = data.get(2).copied().unwrap_or(0);
        if version != VERSION {
            return Err(BtfError::BadVersion { found: version });
        }
        let hdr_len = field(4)? as usize;
        if hdr_len < HEADER_LEN {
            return Err(BtfError::BadHeader {
                detail: format!("header length {hdr_len} at offset 4 is below {HEADER_LEN}"),
            });
        }
        if hdr_len > data.len() {
            return Err(BtfError::BadHeader {
                detail: format!(
                    "header length {hdr_len} at offset 4 runs past the end of the {}-byte blob",
                    data.len()
                ),
            });
        }
        let section = |name: &str, off_at: usize| -> Result<(usize, usize), BtfError> {
            let off = field(off_at)? as usize;
            let len = field(off_at + 4)? as usize;
            let start = hdr_len.checked_add(off);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(start), Some(end)) if end <= data.len() => Ok((start, end)),
                _ => Err(BtfError::BadHeader {
                    detail: format!(
                        "{name} section (offset {off} at offset {off_at}, length {len} at \
                         offset {}) runs past the end of the {}-byte blob",
                        off_at + 4,
                        data.len()
                    ),
                }),
            }
        };
        let (type_start, type_end) = section("type", 8)?;
        let (str_start, str_end) = section("string", 16)?;
        if type_start < str_end && str_start < type_end {
            return Err(BtfError::BadHeader {
                detail: format!(
                    "type section [{type_start}, {type_end}) overlaps string section \
                     [{str_start}, {str_end})"
                ),
            });
        }
        Ok(Header { type_start, type_end, str_start, str_len: str_end - str_start })
    }
}

/// Checks what makes every in-range string offset resolve to a terminated string: the
/// section ends with NUL, and base BTF starts with the empty string (name offset 0).
pub(super) fn check_strings(data: &[u8], h: &Header, split: bool) -> Result<(), BtfError> {
    if h.str_len == 0 {
        if split {
            return Ok(());
        }
        return Err(BtfError::BadStrings {
            detail: format!("section at offset {} is empty; base BTF needs at least \"\\0\"", h.str_start),
        });
    }
    let first = data.get(h.str_start).copied();
    let last_at = h.str_start.saturating_add(h.str_len - 1);
    let last = data.get(last_at).copied();
    if !split && first != Some(0) {
        return Err(BtfError::BadStrings {
            detail: format!("section at offset {} does not start with a NUL byte", h.str_start),
        });
    }
    if last != Some(0) {
        return Err(BtfError::BadStrings {
            detail: format!("last byte of the section, at offset {last_at}, is not NUL"),
        });
    }
    Ok(())
}

/// Index of the first NUL, 8 bytes per step: string lookups are most of the cost of
/// indexing function names.
pub(super) fn nul_position(s: &[u8]) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = s.chunks_exact(8);
    let mut done = 0usize;
    for c in &mut chunks {
        let w = c.try_into().map_or(0, u64::from_le_bytes);
        if w.wrapping_sub(LOW) & !w & HIGH != 0 {
            return c.iter().position(|&b| b == 0).map(|p| done + p);
        }
        done += 8;
    }
    chunks.remainder().iter().position(|&b| b == 0).map(|p| done + p)
}

pub(super) fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}
