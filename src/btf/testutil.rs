//! Writer of small BTF blobs for tests.
//!
//! Shared by the unit tests (as `btf::testutil`) and by `tests/btf.rs` (through `#[path]`),
//! so it uses nothing from the crate: tests must be able to build blobs the reader has never
//! seen, including broken ones, without going through the code under test.
#![allow(dead_code)]

/// Offsets of `struct btf_header` fields, for tests that corrupt them.
pub mod hdr {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 2;
    pub const FLAGS: usize = 3;
    pub const HDR_LEN: usize = 4;
    pub const TYPE_OFF: usize = 8;
    pub const TYPE_LEN: usize = 12;
    pub const STR_OFF: usize = 16;
    pub const STR_LEN: usize = 20;
    pub const SIZE: usize = 24;
}

/// Raw kind numbers (BTF_KIND_*).
pub mod kind {
    pub const INT: u8 = 1;
    pub const PTR: u8 = 2;
    pub const ARRAY: u8 = 3;
    pub const STRUCT: u8 = 4;
    pub const UNION: u8 = 5;
    pub const ENUM: u8 = 6;
    pub const FWD: u8 = 7;
    pub const TYPEDEF: u8 = 8;
    pub const VOLATILE: u8 = 9;
    pub const CONST: u8 = 10;
    pub const RESTRICT: u8 = 11;
    pub const FUNC: u8 = 12;
    pub const FUNC_PROTO: u8 = 13;
    pub const VAR: u8 = 14;
    pub const DATASEC: u8 = 15;
    pub const FLOAT: u8 = 16;
    pub const DECL_TAG: u8 = 17;
    pub const TYPE_TAG: u8 = 18;
    pub const ENUM64: u8 = 19;
}

/// Builds a header + type section + string section, little-endian.
pub struct BtfWriter {
    types: Vec<u8>,
    strings: Vec<u8>,
    /// Added to local string offsets: the base's string section length for split BTF.
    str_base: u32,
    next_id: u32,
}

impl Default for BtfWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BtfWriter {
    /// Base BTF: ids from 1, strings start with the empty name.
    pub fn new() -> Self {
        BtfWriter { types: Vec::new(), strings: vec![0], str_base: 0, next_id: 1 }
    }

    /// Split BTF over a base with `base_last_id` types and `base_str_len` string bytes.
    pub fn new_split(base_last_id: u32, base_str_len: u32) -> Self {
        BtfWriter { types: Vec::new(), strings: Vec::new(), str_base: base_str_len, next_id: base_last_id + 1 }
    }

    /// Id the next added type will get.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Length of the string section so far (what a split blob over this one continues at).
    pub fn str_len(&self) -> u32 {
        self.strings.len() as u32
    }

    /// Appends `s` and returns its offset as types refer to it; "" in base BTF is offset 0.
    pub fn add_str(&mut self, s: &str) -> u32 {
        if s.is_empty() && self.str_base == 0 {
            return 0;
        }
        let off = self.str_base + self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    /// Appends raw bytes to the type section (for deliberately broken entries).
    pub fn raw_bytes(&mut self, bytes: &[u8]) {
        self.types.extend_from_slice(bytes);
    }

    /// Appends an entry from its fields and trailing u32 words; returns its id.
    pub fn raw_type(
        &mut self,
        name_off: u32,
        kind: u8,
        vlen: u16,
        kind_flag: bool,
        size_or_type: u32,
        trailing: &[u32],
    ) -> u32 {
        let info = (u32::from(kind_flag) << 31) | (u32::from(kind) << 24) | u32::from(vlen);
        for w in [name_off, info, size_or_type].iter().chain(trailing) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn named(&mut self, name: &str, kind: u8, vlen: u16, size_or_type: u32, tr: &[u32]) -> u32 {
        let off = self.add_str(name);
        self.raw_type(off, kind, vlen, false, size_or_type, tr)
    }

    pub fn int(&mut self, name: &str, size: u32, signed: bool) -> u32 {
        let encoding = u32::from(signed);
        self.named(name, kind::INT, 0, size, &[(encoding << 24) | (size * 8)])
    }

    pub fn ptr(&mut self, to: u32) -> u32 {
        self.named("", kind::PTR, 0, to, &[])
    }

    pub fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
        self.named("", kind::ARRAY, 0, 0, &[elem, index, nelems])
    }

    fn composite(&mut self, k: u8, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        let mut tr = Vec::new();
        for &(n, ty, bit_off) in members {
            tr.extend([self.add_str(n), ty, bit_off]);
        }
        self.named(name, k, members.len() as u16, size, &tr)
    }

    /// Members are `(name, type, bit offset)`.
    pub fn struct_(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(kind::STRUCT, name, size, members)
    }

    pub fn union_(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(kind::UNION, name, size, members)
    }

    pub fn enum_(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
        let mut tr = Vec::new();
        for &(n, v) in values {
            tr.extend([self.add_str(n), v as u32]);
        }
        self.named(name, kind::ENUM, values.len() as u16, 4, &tr)
    }

    pub fn enum64(&mut self, name: &str, values: &[(&str, u64)]) -> u32 {
        let mut tr = Vec::new();
        for &(n, v) in values {
            tr.extend([self.add_str(n), v as u32, (v >> 32) as u32]);
        }
        self.named(name, kind::ENUM64, values.len() as u16, 8, &tr)
    }

    pub fn fwd(&mut self, name: &str) -> u32 {
        self.named(name, kind::FWD, 0, 0, &[])
    }

    pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
        self.named(name, kind::TYPEDEF, 0, to, &[])
    }

    pub fn volatile(&mut self, to: u32) -> u32 {
        self.named("", kind::VOLATILE, 0, to, &[])
    }

    pub fn const_(&mut self, to: u32) -> u32 {
        self.named("", kind::CONST, 0, to, &[])
    }

    pub fn restrict(&mut self, to: u32) -> u32 {
        self.named("", kind::RESTRICT, 0, to, &[])
    }

    /// Params are `(name, type)`; a trailing `("", 0)` makes the function variadic.
    pub fn func_proto(&mut self, ret: u32, params: &[(&str, u32)]) -> u32 {
        let mut tr = Vec::new();
        for &(n, ty) in params {
            tr.extend([self.add_str(n), ty]);
        }
        self.named("", kind::FUNC_PROTO, params.len() as u16, ret, &tr)
    }

    /// Linkage 0 static, 1 global, 2 extern (stored in vlen).
    pub fn func(&mut self, name: &str, proto: u32, linkage: u16) -> u32 {
        self.named(name, kind::FUNC, linkage, proto, &[])
    }

    pub fn var(&mut self, name: &str, ty: u32, linkage: u32) -> u32 {
        self.named(name, kind::VAR, 0, ty, &[linkage])
    }

    /// Entries are `(var type id, offset, size)`.
    pub fn datasec(&mut self, name: &str, size: u32, vars: &[(u32, u32, u32)]) -> u32 {
        let tr: Vec<u32> = vars.iter().flat_map(|&(t, o, s)| [t, o, s]).collect();
        self.named(name, kind::DATASEC, vars.len() as u16, size, &tr)
    }

    pub fn float(&mut self, name: &str, size: u32) -> u32 {
        self.named(name, kind::FLOAT, 0, size, &[])
    }

    /// `component` -1 tags the type itself, else a member/parameter index.
    pub fn decl_tag(&mut self, name: &str, ty: u32, component: i32) -> u32 {
        self.named(name, kind::DECL_TAG, 0, ty, &[component as u32])
    }

    pub fn type_tag(&mut self, name: &str, to: u32) -> u32 {
        self.named(name, kind::TYPE_TAG, 0, to, &[])
    }

    /// One of each kind, named after the kind; returns the FUNC's id (`func_all`, 2 params).
    pub fn add_every_kind(&mut self) -> u32 {
        let int = self.int("int", 4, true);
        let ptr = self.ptr(int);
        self.array(int, int, 4);
        self.struct_("st", 8, &[("a", int, 0), ("b", int, 32)]);
        self.union_("un", 4, &[("x", int, 0)]);
        self.enum_("en", &[("E0", 0), ("E1", -1)]);
        self.fwd("fw");
        let td = self.typedef("td", ptr);
        self.volatile(int);
        self.const_(int);
        self.restrict(ptr);
        let proto = self.func_proto(int, &[("p0", int), ("p1", td)]);
        let func = self.func("func_all", proto, 1);
        let var = self.var("va", int, 1);
        self.datasec(".data", 4, &[(var, 0, 4)]);
        self.float("fl", 8);
        self.decl_tag("dt", func, -1);
        self.type_tag("tt", int);
        self.enum64("e64", &[("BIG", u64::MAX)]);
        func
    }

    /// Header (24 bytes) + types + strings, sections back to back.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(hdr::SIZE + self.types.len() + self.strings.len());
        out.extend_from_slice(&0xeb9f_u16.to_le_bytes());
        out.push(1); // version
        out.push(0); // flags
        let words = [hdr::SIZE as u32, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32];
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// Overwrites the little-endian u32 at `at`.
pub fn put_u32(blob: &mut [u8], at: usize, v: u32) {
    blob[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Reads the little-endian u32 at `at`.
pub fn get_u32(blob: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(blob[at..at + 4].try_into().unwrap())
}
