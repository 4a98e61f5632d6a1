//! Hand-built BTF blobs: each kind walked, split continuation, and errors.

use super::*;

/// A little BTF writer for tests.
pub(crate) struct Writer {
    types: Vec<u8>,
    strings: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer { types: Vec::new(), strings: vec![0] }
    }

    pub(crate) fn with_string_base(strings: &[u8]) -> Writer {
        Writer { types: Vec::new(), strings: strings.to_vec() }
    }

    pub(crate) fn str(&mut self, s: &str) -> u32 {
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    pub(crate) fn ty(&mut self, kind: u32, name_off: u32, vlen: u32, size_or_type: u32, trailing: usize) {
        self.types.extend_from_slice(&name_off.to_le_bytes());
        self.types.extend_from_slice(&((kind << 24) | vlen).to_le_bytes());
        self.types.extend_from_slice(&size_or_type.to_le_bytes());
        self.types.extend(std::iter::repeat_n(0u8, trailing));
    }

    pub(crate) fn finish(&self, skip_strings: usize) -> Vec<u8> {
        let strings = &self.strings[skip_strings..];
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
        b.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.types);
        b.extend_from_slice(strings);
        b
    }
}

/// Every kind, then two functions.
pub(crate) fn sample() -> Vec<u8> {
    let mut w = Writer::new();
    let int = w.str("int");
    w.ty(kind::INT, int, 0, 4, 4); // 1
    w.ty(kind::PTR, 0, 0, 1, 0); // 2
    w.ty(kind::ARRAY, 0, 0, 0, 12); // 3
    let s = w.str("s");
    w.ty(kind::STRUCT, s, 2, 8, 24); // 4
    w.ty(kind::UNION, s, 1, 8, 12); // 5
    w.ty(kind::ENUM, s, 3, 4, 24); // 6
    w.ty(kind::FWD, s, 0, 0, 0); // 7
    w.ty(kind::TYPEDEF, s, 0, 1, 0); // 8
    w.ty(kind::VOLATILE, 0, 0, 1, 0); // 9
    w.ty(kind::CONST, 0, 0, 1, 0); // 10
    w.ty(kind::RESTRICT, 0, 0, 2, 0); // 11
    w.ty(kind::FUNC_PROTO, 0, 4, 1, 32); // 12
    let f = w.str("ksys_fadvise64_64");
    w.ty(kind::FUNC, f, 1, 12, 0); // 13
    w.ty(kind::VAR, s, 0, 1, 4); // 14
    w.ty(kind::DATASEC, s, 1, 4, 12); // 15
    w.ty(kind::FLOAT, s, 0, 8, 0); // 16
    w.ty(kind::DECL_TAG, s, 0, 4, 4); // 17
    w.ty(kind::TYPE_TAG, s, 0, 2, 0); // 18
    w.ty(kind::ENUM64, s, 1, 8, 12); // 19
    w.ty(kind::FUNC_PROTO, 0, 0, 1, 0); // 20
    let g = w.str("vfs_read");
    w.ty(kind::FUNC, g, 1, 20, 0); // 21
    w.finish(0)
}

#[test]
fn every_kind_is_walked() {
    let btf = Btf::parse(&sample()).unwrap();
    assert_eq!(btf.len(), 21);
    assert_eq!(btf.find_func("ksys_fadvise64_64"), Some(13));
    assert_eq!(btf.func_param_count(13), Some(4));
    assert_eq!(btf.find_func("vfs_read"), Some(21));
    assert_eq!(btf.func_param_count(21), Some(0));
    assert_eq!(btf.find_func("nope"), None);
    assert_eq!(btf.func_param_count(1), None);
}

#[test]
fn split_btf_continues_ids_and_strings() {
    let base_bytes = sample();
    let base = Btf::parse(&base_bytes).unwrap();
    let mut w = Writer::with_string_base(&base.strings);
    let name = w.str("module_func");
    w.ty(kind::FUNC_PROTO, 0, 2, 1, 16); // 22
    w.ty(kind::FUNC, name, 1, 22, 0); // 23
    let split = Btf::parse_split(&w.finish(base.strings.len()), &base).unwrap();
    assert_eq!(split.find_func("module_func"), Some(23));
    assert_eq!(split.func_param_count(23), Some(2));
}

#[test]
fn errors_say_what_is_wrong() {
    let good = sample();
    let e = |b: &[u8]| Btf::parse(b).unwrap_err().to_string();
    assert!(e(&good[..10]).contains("shorter than its header"));
    let mut bad = good.clone();
    bad[0] = 0x34;
    assert!(e(&bad).contains("bad magic"));
    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes()); // type_len
    assert!(e(&bad).contains("runs past the end"));
    let mut bad = good.clone();
    bad[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&((31u32 << 24) | 1).to_le_bytes());
    assert!(e(&bad).contains("unknown kind 31"));
    // A FUNC whose name points outside the strings.
    let mut w = Writer::new();
    w.ty(kind::FUNC, 9999, 0, 0, 0);
    assert!(e(&w.finish(0)).contains("outside the string section"));
}

#[test]
fn random_corruption_never_panics() {
    let good = sample();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..50_000 {
        let mut b = good.clone();
        match next() % 3 {
            0 => b.truncate((next() as usize) % good.len()),
            1 => {
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
            }
            _ => {
                let i = 4 + 4 * ((next() as usize) % 5);
                b[i..i + 4].copy_from_slice(&(next() as u32).to_le_bytes());
            }
        }
        let _ = Btf::parse(&b);
    }
}
