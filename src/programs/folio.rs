//! Where a folio keeps its flags and its order, from the running kernel's BTF.
//!
//! The raw `mm_filemap_add_to_page_cache` tracepoint hands over a `struct folio *` and
//! nothing else; the classic tracepoint's `order` field needs tracefs, which a container
//! rarely has. `folio_order()` is an inline function whose fields moved between releases
//! (`_folio_order` in 6.1, the low byte of `_flags_1` from 6.6) and `PG_head`'s bit depends
//! on the configuration, so both come from BTF rather than from a table of versions.

use crate::btf::Kind;
use crate::{Error, Result};

/// Byte offsets of a folio's flags word and of the word whose low byte is its order, and
/// the `PG_head` bit that says the folio is large (has an order at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolioLayout {
    pub flags: u32,
    pub head_bit: u32,
    pub order: u32,
}

impl FolioLayout {
    /// The running kernel's layout; `Ok(None)` for a kernel without folios, whose
    /// tracepoint passes a `struct page *` of one page.
    pub fn from_kernel() -> Result<Option<FolioLayout>> {
        let btf = crate::btf::vmlinux()
            .map_err(|e| Error::Other(format!("a folio's order is read at offsets from kernel BTF: {e}")))?;
        Self::from_btf(&btf)
    }

    /// [`FolioLayout::from_kernel`] on given BTF.
    pub fn from_btf(btf: &crate::btf::Btf) -> Result<Option<FolioLayout>> {
        let Some(folio) = btf.find_type(Kind::Struct, "folio") else { return Ok(None) };
        let missing = |what: &str| Error::Other(format!("kernel BTF has no {what}: a folio's order cannot be read"));
        let bytes = |bits: u32| (bits % 8 == 0).then_some(bits / 8);
        let flags = btf.member_offset_bits(folio, "flags").and_then(bytes).ok_or_else(|| missing("folio.flags"))?;
        let order = ["_flags_1", "_folio_order"]
            .iter()
            .find_map(|m| btf.member_offset_bits(folio, m).and_then(bytes))
            .ok_or_else(|| missing("folio._flags_1 or folio._folio_order"))?;
        let head_bit = btf
            .find_type(Kind::Enum, "pageflags")
            .and_then(|e| btf.enum_value(e, "PG_head"))
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v < 64)
            .ok_or_else(|| missing("enum pageflags PG_head"))?;
        Ok(Some(FolioLayout { flags, head_bit, order }))
    }
}
