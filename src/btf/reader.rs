//! Walking and querying the types of one BTF blob (its header and string section: `header`).
//!
//! Layout (include/uapi/linux/btf.h): a header, then a type section of variable-length
//! entries (type id N is the N-th entry, id 0 is the implicit `void`), then a section of
//! NUL-terminated strings that entries refer to by byte offset. Entries carry no length and
//! are not indexed, so the parse walks the section once, validating it and recording where each
//! entry starts and which entries are functions; function names are hashed on the first
//! lookup, and every lookup is a bounds-checked read at a known offset.

use std::fmt;
use std::sync::{Arc, OnceLock};

use super::blob::Blob;
use super::error::BtfError;
use super::header::{check_strings, nul_position, read_u32, Header};
use super::kind::Kind;

/// `name_off`, `info`, `size`/`type` of `struct btf_type`.
const TYPE_HEADER_LEN: usize = 12;
/// Byte offset of the `type` field inside a FUNC_PROTO parameter record.
const PARAM_TYPE_OFFSET: usize = 4;
const PARAM_LEN: usize = 8;
/// `struct btf_member`: name_off, type, offset.
const MEMBER_LEN: usize = 12;

/// Parsed kernel BTF: a base blob (vmlinux) or a split blob (a module) chained to its base.
///
/// Cloning is cheap (reference counted), which is what lets every module BTF keep its base
/// without copying the 5-6 MB of vmlinux BTF once per module.
#[derive(Clone)]
pub struct Btf {
    inner: Arc<Inner>,
}

struct Inner {
    /// The whole blob, so error offsets and record offsets are file offsets.
    data: Blob,
    /// Start of each type entry in `data`, in id order (`offsets[0]` is id `first_id`).
    offsets: Vec<u32>,
    first_id: u32,
    /// Start and length of the string section in `data`.
    str_start: usize,
    str_len: usize,
    /// String offsets below this resolve in the base (its `str_end`); 0 for base BTF.
    str_base: u32,
    /// Ids of this blob's FUNC entries, in id order.
    func_ids: Vec<u32>,
    /// `func_ids` keyed by a hash of their names, built on the first lookup: hashing ~60k
    /// names scattered over megabytes of strings costs more than the whole walk, and a
    /// module blob is often parsed only to be searched once. Hashes rather than owned names
    /// avoid one allocation per function.
    func_index: OnceLock<FuncIndex>,
    base: Option<Btf>,
}

/// Open-addressing table of FUNC ids by name hash: one 8-byte slot per entry and one
/// allocation, which matters when tens of thousands of functions are indexed.
struct FuncIndex {
    /// `(low half of the name hash, id)`; id 0 (`void`, never a FUNC) marks a free slot.
    slots: Vec<(u32, u32)>,
    mask: usize,
}

impl FuncIndex {
    fn new(entries: usize) -> FuncIndex {
        // At most half full, so probe runs stay short.
        let len = entries.saturating_mul(2).max(8).checked_next_power_of_two().unwrap_or(1 << 31);
        FuncIndex { slots: vec![(0, 0); len], mask: len - 1 }
    }

    /// Adds `id`. Linear probing in insertion (id) order means a lookup meets equal names in
    /// id order, so duplicates resolve to the lowest id.
    fn insert(&mut self, hash: u64, id: u32) {
        let (tag, mut at) = self.place(hash);
        for _ in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(at) else { return };
            if slot.1 == 0 {
                *slot = (tag, id);
                return;
            }
            at = (at + 1) & self.mask;
        }
    }

    /// The tag and first slot of a hash. The slot comes from the high half: a multiplicative
    /// hash mixes every input bit into its high bits only, and slots from the low bits
    /// clustered the 60,000 names of vmlinux into long probe runs.
    fn place(&self, hash: u64) -> (u32, usize) {
        (hash as u32, ((hash >> 32) as usize) & self.mask)
    }

    /// Ids whose name hash matches, in insertion order, until the first free slot.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let (tag, start) = self.place(hash);
        (0..self.slots.len())
            .map(move |i| self.slots.get((start + i) & self.mask).copied().unwrap_or((0, 0)))
            .take_while(|&(_, id)| id != 0)
            .filter(move |&(t, _)| t == tag)
            .map(|(_, id)| id)
    }
}

/// The fixed part of a type entry.
#[derive(Clone, Copy)]
struct Entry {
    offset: usize,
    name_off: u32,
    kind: Kind,
    vlen: usize,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
}

impl Btf {
    /// Parses base BTF, such as `/sys/kernel/btf/vmlinux`.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        Btf::from_blob(Blob::Owned(bytes.to_vec()), None)
    }

    /// Parses split BTF, such as `/sys/kernel/btf/<module>`, whose type ids continue after
    /// `base`'s last id and whose string offsets continue after `base`'s string section.
    pub fn parse_split(bytes: &[u8], base: &Btf) -> Result<Btf, BtfError> {
        Btf::from_blob(Blob::Owned(bytes.to_vec()), Some(base))
    }

    /// Whether both are the same parsed blob (copies share it), not merely equal.
    pub fn ptr_eq(&self, other: &Btf) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Parses a blob the caller already owns, sparing a copy of a file just read or mapped.
    pub(crate) fn from_blob(data: Blob, base: Option<&Btf>) -> Result<Btf, BtfError> {
        let header = Header::read(&data)?;
        let (first_id, str_base) = match base {
            None => (1, 0),
            Some(b) => (b.last_id().checked_add(1).ok_or(BtfError::TooManyTypes { first_id: u32::MAX })?, b.str_end()),
        };
        check_strings(&data, &header, base.is_some())?;
        let str_len_u32 = u32::try_from(header.str_len).map_err(|_| BtfError::BadStrings {
            detail: format!("length {} does not fit 32-bit offsets", header.str_len),
        })?;
        if str_base.checked_add(str_len_u32).is_none() {
            return Err(BtfError::BadStrings {
                detail: format!("{} bytes after the base's {str_base} overflow 32-bit offsets", header.str_len),
            });
        }
        let mut inner = Inner {
            data,
            offsets: Vec::new(),
            first_id,
            str_start: header.str_start,
            str_len: header.str_len,
            str_base,
            func_ids: Vec::new(),
            func_index: OnceLock::new(),
            base: base.cloned(),
        };
        inner.walk_types(header.type_start, header.type_end)?;
        Ok(Btf { inner: Arc::new(inner) })
    }

    /// Number of types this blob defines, not counting `void` nor the base's types.
    pub fn len(&self) -> usize {
        self.inner.offsets.len()
    }

    /// Whether this blob defines no types (a split blob may, in principle, add none).
    pub fn is_empty(&self) -> bool {
        self.inner.offsets.is_empty()
    }

    /// Id of the first type this blob defines: 1 for base BTF, base's last id + 1 for split.
    pub fn first_id(&self) -> u32 {
        self.inner.first_id
    }

    /// Highest type id known through this blob and its base (0 when there are none).
    pub fn last_id(&self) -> u32 {
        // Cannot overflow: the walk only accepts ids that fit u32.
        let len = u32::try_from(self.len()).unwrap_or(u32::MAX);
        self.first_id().saturating_add(len).saturating_sub(1)
    }

    /// The base this split BTF continues, if any.
    pub fn base(&self) -> Option<&Btf> {
        self.inner.base.as_ref()
    }

    /// Kind of type `id`, looking through to the base; `None` for `void` (id 0, which has no
    /// entry) and for ids beyond [`Btf::last_id`].
    pub fn kind(&self, id: u32) -> Option<Kind> {
        self.entry(id).map(|(_, e)| e.kind)
    }

    /// Name of type `id`, looking through to the base: `Some("")` for anonymous types,
    /// `None` for unknown ids and for names that are not UTF-8.
    pub fn type_name(&self, id: u32) -> Option<&str> {
        let (btf, e) = self.entry(id)?;
        btf.str_at(e.name_off)
    }

    /// Id of the first BTF_KIND_FUNC named `name` among the types this blob defines.
    ///
    /// Only this blob, not the base: for a module that answers "is the function in this
    /// module", which is what attaching needs (module functions need the module's BTF
    /// object); ask the base for vmlinux functions.
    pub fn find_func(&self, name: &str) -> Option<u32> {
        let inner = &*self.inner;
        let want = name.as_bytes();
        let matches = |id: &u32| self.entry(*id).and_then(|(b, e)| b.str_bytes(e.name_off)).is_some_and(|n| n == want);
        let index = inner.func_index.get_or_init(|| inner.index_funcs());
        index.candidates(name_hash(want)).find(matches)
    }

    /// Number of declared parameters of function `func_id` (a FUNC, in this blob or its
    /// base), read from its FUNC_PROTO. The `...` of a variadic function is not counted; see
    /// [`Btf::func_is_variadic`]. `None` if `func_id` is not a FUNC or its prototype is
    /// missing or not a FUNC_PROTO.
    pub fn func_param_count(&self, func_id: u32) -> Option<usize> {
        let (vlen, variadic) = self.func_proto(func_id)?;
        Some(if variadic { vlen.saturating_sub(1) } else { vlen })
    }

    /// Whether function `func_id` takes `...`, which BTF encodes as a last parameter of type
    /// 0. The kernel refuses fentry/fexit on such functions, so callers can say why upfront.
    pub fn func_is_variadic(&self, func_id: u32) -> Option<bool> {
        self.func_proto(func_id).map(|(_, variadic)| variadic)
    }

    /// Id of the first type of `kind` named `name`, looking through to the base. A linear
    /// scan: a program that needs a struct layout asks once at load time.
    pub fn find_type(&self, kind: Kind, name: &str) -> Option<u32> {
        if let Some(found) = self.base().and_then(|b| b.find_type(kind, name)) {
            return Some(found);
        }
        let want = name.as_bytes();
        (self.first_id()..=self.last_id())
            .find(|&id| self.entry(id).is_some_and(|(b, e)| e.kind == kind && b.str_bytes(e.name_off) == Some(want)))
    }

    /// Bit offset of member `member` of struct or union `id`, found through anonymous
    /// struct and union members as C finds it (`folio->flags` sits inside two of them).
    pub fn member_offset_bits(&self, id: u32, member: &str) -> Option<u32> {
        self.member_offset_within(id, member, 0)
    }

    fn member_offset_within(&self, id: u32, member: &str, depth: u32) -> Option<u32> {
        // Anonymous nesting is shallow in practice; the bound keeps a hostile blob whose
        // members refer to each other from recursing without end.
        if depth > 16 {
            return None;
        }
        let (btf, e) = self.entry(id)?;
        if !matches!(e.kind, Kind::Struct | Kind::Union) {
            return None;
        }
        let data = &btf.inner.data;
        let kind_flag = read_u32(data, e.offset.checked_add(4)?)? >> 31 == 1;
        let mut anonymous = Vec::new();
        for i in 0..e.vlen {
            let at = e.offset.checked_add(TYPE_HEADER_LEN)?.checked_add(i.checked_mul(MEMBER_LEN)?)?;
            let name_off = read_u32(data, at)?;
            let ty = read_u32(data, at.checked_add(4)?)?;
            let raw = read_u32(data, at.checked_add(8)?)?;
            // With kind_flag the high byte holds a bitfield size.
            let bits = if kind_flag { raw & 0x00ff_ffff } else { raw };
            match btf.str_at(name_off)? {
                "" => anonymous.push((ty, bits)),
                name if name == member => return Some(bits),
                _ => {}
            }
        }
        anonymous
            .into_iter()
            .find_map(|(ty, bits)| bits.checked_add(self.member_offset_within(ty, member, depth + 1)?))
    }

    /// Value of enumerator `name` of enum `id` (BTF_KIND_ENUM or ENUM64).
    pub fn enum_value(&self, id: u32, name: &str) -> Option<i64> {
        let (btf, e) = self.entry(id)?;
        let len = match e.kind {
            Kind::Enum => 8,
            Kind::Enum64 => 12,
            _ => return None,
        };
        let data = &btf.inner.data;
        (0..e.vlen).find_map(|i| {
            let at = e.offset.checked_add(TYPE_HEADER_LEN)?.checked_add(i.checked_mul(len)?)?;
            if btf.str_at(read_u32(data, at)?)? != name {
                return None;
            }
            let lo = read_u32(data, at.checked_add(4)?)?;
            Some(match e.kind {
                Kind::Enum64 => (u64::from(read_u32(data, at.checked_add(8)?)?) << 32 | u64::from(lo)) as i64,
                _ => i64::from(lo as i32),
            })
        })
    }

    /// `(vlen, variadic)` of the FUNC_PROTO behind FUNC `func_id`.
    fn func_proto(&self, func_id: u32) -> Option<(usize, bool)> {
        let (_, func) = self.entry(func_id)?;
        if func.kind != Kind::Func {
            return None;
        }
        let (btf, proto) = self.entry(func.size_or_type)?;
        if proto.kind != Kind::FuncProto {
            return None;
        }
        let variadic = match proto.vlen.checked_sub(1) {
            None => false,
            Some(last) => {
                let at = last
                    .checked_mul(PARAM_LEN)?
                    .checked_add(proto.offset)?
                    .checked_add(TYPE_HEADER_LEN + PARAM_TYPE_OFFSET)?;
                read_u32(&btf.inner.data, at)? == 0
            }
        };
        Some((proto.vlen, variadic))
    }

    /// The blob that holds `id` and its decoded entry header.
    fn entry(&self, id: u32) -> Option<(&Btf, Entry)> {
        let inner = &*self.inner;
        if id < inner.first_id {
            return inner.base.as_ref()?.entry(id);
        }
        let e = read_entry(&inner.data, inner.local_offset(id)?)?;
        Some((self, e))
    }

    /// One past the highest string offset valid through this blob and its base.
    fn str_end(&self) -> u32 {
        // Checked in `from_blob`; saturating keeps this total anyway.
        let len = u32::try_from(self.inner.str_len).unwrap_or(u32::MAX);
        self.inner.str_base.saturating_add(len)
    }

    fn str_at(&self, off: u32) -> Option<&str> {
        std::str::from_utf8(self.str_bytes(off)?).ok()
    }

    fn str_bytes(&self, off: u32) -> Option<&[u8]> {
        self.inner.str_bytes(off)
    }
}

impl Inner {
    /// Walks the type section once: checks every entry fits, every kind is known and every
    /// name offset resolves; records entry offsets and FUNC ids.
    fn walk_types(&mut self, start: usize, end: usize) -> Result<(), BtfError> {
        // An entry is at least 12 bytes; the bound keeps a hostile header from making us
        // reserve more than the blob could hold.
        self.offsets.reserve(end.saturating_sub(start) / TYPE_HEADER_LEN);
        let str_limit = self.str_base.saturating_add(u32::try_from(self.str_len).unwrap_or(u32::MAX));
        let mut offset = start;
        let mut id = self.first_id;
        while offset < end {
            // Errors are built only when returned (`ok_or_else`, `let else`): building and
            // dropping one per type was a third of the walk.
            let past_end = |kind| BtfError::TypePastEnd { id, offset, kind, end };
            let header_end = offset.checked_add(TYPE_HEADER_LEN).ok_or_else(|| past_end(None))?;
            if header_end > end {
                return Err(past_end(None));
            }
            let info = offset.checked_add(4).and_then(|at| read_u32(&self.data, at)).ok_or_else(|| past_end(None))?;
            let raw_kind = kind_bits(info);
            let Some(kind) = Kind::from_raw(raw_kind) else {
                return Err(BtfError::UnknownKind { id, offset, kind: raw_kind });
            };
            let e = read_entry(&self.data, offset).ok_or_else(|| past_end(Some(kind)))?;
            let (rec_len, per_vlen) = kind.trailing();
            let count = if per_vlen { e.vlen } else { usize::from(rec_len > 0) };
            let next = count
                .checked_mul(rec_len)
                .and_then(|n| n.checked_add(header_end))
                .filter(|&n| n <= end)
                .ok_or_else(|| past_end(Some(kind)))?;

            let check_name = |name_off: u32| {
                if name_off < str_limit {
                    Ok(())
                } else {
                    Err(BtfError::StringOutOfRange { str_off: name_off, limit: u64::from(str_limit), id, offset })
                }
            };
            check_name(e.name_off)?;
            if kind.records_have_names() {
                let mut rec = header_end;
                while rec < next {
                    check_name(read_u32(&self.data, rec).ok_or_else(|| past_end(Some(kind)))?)?;
                    rec = rec.checked_add(rec_len).ok_or_else(|| past_end(Some(kind)))?;
                }
            }
            if kind == Kind::Func {
                self.func_ids.push(id);
            }

            let off32 = u32::try_from(offset).map_err(|_| BtfError::BadHeader {
                detail: format!("type entry at offset {offset} is beyond 4 GiB"),
            })?;
            self.offsets.push(off32);
            offset = next;
            if offset < end {
                let Some(next_id) = id.checked_add(1) else {
                    return Err(BtfError::TooManyTypes { first_id: self.first_id });
                };
                id = next_id;
            }
        }
        Ok(())
    }

    /// Hashes the names of `func_ids`.
    fn index_funcs(&self) -> FuncIndex {
        let mut index = FuncIndex::new(self.func_ids.len());
        for &id in &self.func_ids {
            let name = self
                .local_offset(id)
                .and_then(|off| read_u32(&self.data, off))
                .and_then(|name_off| self.str_bytes(name_off));
            if let Some(name) = name {
                index.insert(name_hash(name), id);
            }
        }
        index
    }

    /// Offset in `data` of this blob's own type `id`.
    fn local_offset(&self, id: u32) -> Option<usize> {
        let index = usize::try_from(id.checked_sub(self.first_id)?).ok()?;
        usize::try_from(*self.offsets.get(index)?).ok()
    }

    /// The NUL-terminated string at `off`, resolving offsets below this blob's strings in
    /// the base, as split BTF does.
    fn str_bytes(&self, off: u32) -> Option<&[u8]> {
        if off < self.str_base {
            return self.base.as_ref()?.str_bytes(off);
        }
        let local = usize::try_from(off - self.str_base).ok()?;
        if local >= self.str_len {
            return None;
        }
        let start = self.str_start.checked_add(local)?;
        let end = self.str_start.checked_add(self.str_len)?;
        let rest = self.data.get(start..end)?;
        rest.get(..nul_position(rest)?)
    }
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("first_id", &self.first_id())
            .field("types", &self.len())
            .field("string_bytes", &self.inner.str_len)
            .field("funcs", &self.inner.func_ids.len())
            .field("split", &self.inner.base.is_some())
            .finish()
    }
}

fn kind_bits(info: u32) -> u8 {
    // Bits 24-28; the mask makes the narrowing lossless.
    ((info >> 24) & 0x1f) as u8
}

/// Decodes the 12-byte header of the entry at `offset`; `None` if it is out of bounds or
/// of unknown kind.
fn read_entry(data: &[u8], offset: usize) -> Option<Entry> {
    let name_off = read_u32(data, offset)?;
    let info = read_u32(data, offset.checked_add(4)?)?;
    let size_or_type = read_u32(data, offset.checked_add(8)?)?;
    Some(Entry {
        offset,
        name_off,
        kind: Kind::from_raw(kind_bits(info))?,
        vlen: (info & 0xffff) as usize,
        size_or_type,
    })
}

/// Hash of a function name, 8 bytes per step (FxHash's mixing): cheap on identifiers, and
/// collisions are resolved by comparing names, so quality only matters for speed.
fn name_hash(name: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = name.len() as u64;
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        let w = c.try_into().map_or(0, u64::from_le_bytes);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    for (t, &b) in tail.iter_mut().zip(chunks.remainder()) {
        *t = b;
    }
    (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K)
}

#[cfg(test)]
mod tests {
    use super::{name_hash, nul_position, FuncIndex};

    #[test]
    fn colliding_hashes_come_back_in_insertion_order() {
        let mut index = FuncIndex::new(4);
        let same = 0x0000_0003_dead_beef;
        for id in [7, 3, 9] {
            index.insert(same, id);
        }
        // Same slot, different tag: probed past, never returned.
        index.insert(0x0000_0003_1234_5678, 11);
        assert_eq!(index.candidates(same).collect::<Vec<_>>(), [7, 3, 9]);
        assert_eq!(index.candidates(0x0000_0003_1234_5678).collect::<Vec<_>>(), [11]);
        // Starting mid-run with a tag nobody has: the whole run is probed, nothing returned.
        assert_eq!(index.candidates(0x0000_0004_feed_0000).count(), 0);
    }

    #[test]
    fn full_index_terminates() {
        let mut index = FuncIndex::new(0);
        for id in 1..=20 {
            index.insert(5, id);
        }
        assert_eq!(index.candidates(5).count(), index.slots.len());
        assert_eq!(index.candidates(6 | 1 << 32).count(), 0, "no free slot to stop at, still ends");
    }

    #[test]
    fn nul_is_found_in_every_position() {
        for len in 0..40 {
            for at in 0..len {
                let mut s = vec![b'a'; len];
                s[at] = 0;
                assert_eq!(nul_position(&s), Some(at), "len {len} at {at}");
                s[at] = 0x80; // high bit set, not NUL
                assert_eq!(nul_position(&s), None);
            }
        }
        assert_eq!(nul_position(&[0x01, 0x80, 0xff, 0x7f, 0x01, 0x01, 0x01, 0x01, 0]), Some(8));
    }

    #[test]
    fn names_hash_apart() {
        let names = ["", "a", "b", "ab", "ba", "ksys_fadvise64_64", "ksys_fadvise64_6", "vfs_read", "vfs_reaD"];
        let mut hashes: Vec<u64> = names.iter().map(|n| name_hash(n.as_bytes())).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), names.len());
    }
}
