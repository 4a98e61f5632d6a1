//! Unit tests on hand-built blobs: every kind, split continuation, and each error's message.

use super::testutil::{hdr, kind as k, put_u32, BtfWriter};
use super::{Btf, BtfError, Kind};

fn every_kind() -> (Vec<u8>, u32) {
    let mut w = BtfWriter::new();
    let func = w.add_every_kind();
    (w.finish(), func)
}

fn err_of(blob: &[u8]) -> BtfError {
    match Btf::parse(blob) {
        Ok(b) => panic!("expected an error, parsed {b:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_kind_is_walked_and_named() {
    let (blob, func) = every_kind();
    let btf = Btf::parse(&blob).unwrap();
    let expect = [
        (Kind::Int, "int"),
        (Kind::Ptr, ""),
        (Kind::Array, ""),
        (Kind::Struct, "st"),
        (Kind::Union, "un"),
        (Kind::Enum, "en"),
        (Kind::Fwd, "fw"),
        (Kind::Typedef, "td"),
        (Kind::Volatile, ""),
        (Kind::Const, ""),
        (Kind::Restrict, ""),
        (Kind::FuncProto, ""),
        (Kind::Func, "func_all"),
        (Kind::Var, "va"),
        (Kind::Datasec, ".data"),
        (Kind::Float, "fl"),
        (Kind::DeclTag, "dt"),
        (Kind::TypeTag, "tt"),
        (Kind::Enum64, "e64"),
    ];
    assert_eq!(btf.len(), expect.len());
    assert_eq!((btf.first_id(), btf.last_id()), (1, 19));
    for (i, (kind, name)) in expect.iter().enumerate() {
        let id = i as u32 + 1;
        assert_eq!(btf.kind(id), Some(*kind), "kind of [{id}]");
        assert_eq!(btf.type_name(id), Some(*name), "name of [{id}]");
        assert_eq!(Kind::from_raw(kind.raw()), Some(*kind));
    }
    // Every raw kind number 1..=19 appears once above.
    let mut raws: Vec<u8> = expect.iter().map(|(k, _)| k.raw()).collect();
    raws.sort_unstable();
    assert_eq!(raws, (1..=19).collect::<Vec<u8>>());
    assert_eq!(btf.find_func("func_all"), Some(func));
    assert_eq!(btf.func_param_count(func), Some(2));
    assert_eq!(btf.func_is_variadic(func), Some(false));
}

#[test]
fn ids_outside_the_blob_and_void_have_no_entry() {
    let (blob, _) = every_kind();
    let btf = Btf::parse(&blob).unwrap();
    for id in [0, 20, u32::MAX] {
        assert_eq!(btf.kind(id), None);
        assert_eq!(btf.type_name(id), None);
        assert_eq!(btf.func_param_count(id), None);
    }
}

#[test]
fn lookups_reject_non_functions() {
    let (blob, _) = every_kind();
    let btf = Btf::parse(&blob).unwrap();
    assert_eq!(btf.find_func("int"), None, "an INT is not a FUNC");
    assert_eq!(btf.find_func("va"), None, "a VAR is not a FUNC");
    assert_eq!(btf.find_func("missing"), None);
    assert_eq!(btf.find_func(""), None);
    // [12] is the FUNC_PROTO itself, [1] an INT.
    assert_eq!(btf.func_param_count(12), None);
    assert_eq!(btf.func_param_count(1), None);
}

#[test]
fn func_with_a_non_proto_type_has_no_param_count() {
    let mut w = BtfWriter::new();
    let int = w.int("int", 4, true);
    let bad = w.func("points_at_int", int, 0);
    let dangling = w.func("points_nowhere", 999, 0);
    let btf = Btf::parse(&w.finish()).unwrap();
    assert_eq!(btf.find_func("points_at_int"), Some(bad));
    assert_eq!(btf.func_param_count(bad), None);
    assert_eq!(btf.func_param_count(dangling), None);
}

#[test]
fn variadic_marker_is_not_a_parameter() {
    let mut w = BtfWriter::new();
    let int = w.int("int", 4, true);
    let proto = w.func_proto(int, &[("fmt", int), ("", 0)]);
    let printk = w.func("printk", proto, 1);
    let void_proto = w.func_proto(0, &[]);
    let nop = w.func("nop", void_proto, 0);
    let btf = Btf::parse(&w.finish()).unwrap();
    assert_eq!(btf.func_param_count(printk), Some(1));
    assert_eq!(btf.func_is_variadic(printk), Some(true));
    assert_eq!(btf.func_param_count(nop), Some(0));
    assert_eq!(btf.func_is_variadic(nop), Some(false));
}

#[test]
fn duplicate_function_names_resolve_to_the_first() {
    let mut w = BtfWriter::new();
    let proto = w.func_proto(0, &[]);
    let first = w.func("dup", proto, 0);
    w.func("dup", proto, 0);
    let other = w.func("other", proto, 0);
    let btf = Btf::parse(&w.finish()).unwrap();
    assert_eq!(btf.find_func("dup"), Some(first));
    assert_eq!(btf.find_func("other"), Some(other));
}

#[test]
fn split_btf_continues_ids_and_strings() {
    let mut bw = BtfWriter::new();
    let int = bw.int("int", 4, true);
    let base_proto = bw.func_proto(int, &[("a", int), ("b", int), ("c", int)]);
    bw.func("base_fn", base_proto, 1);
    let base_blob = bw.finish();
    let base = Btf::parse(&base_blob).unwrap();

    let mut sw = BtfWriter::new_split(base.last_id(), bw.str_len());
    // Reuses the base's string "int" (offset 1) for a typedef, as deduplicated module BTF does.
    let td = sw.raw_type(1, k::TYPEDEF, 0, false, int, &[]);
    let proto = sw.func_proto(td, &[("x", td)]);
    let mod_fn = sw.func("mod_fn", proto, 1);
    // A module FUNC whose prototype lives in the base.
    let reuse = sw.func("mod_reuses_base_proto", base_proto, 0);
    let split = Btf::parse_split(&sw.finish(), &base).unwrap();

    assert_eq!(split.first_id(), base.last_id() + 1);
    assert_eq!(td, base.last_id() + 1);
    assert_eq!(split.len(), 4);
    assert_eq!(split.last_id(), reuse);
    assert_eq!(split.type_name(td), Some("int"));
    assert_eq!(split.type_name(mod_fn), Some("mod_fn"));
    assert_eq!(split.type_name(int), Some("int"), "base ids resolve through the split");
    assert_eq!(split.kind(base_proto), Some(Kind::FuncProto));
    assert_eq!(split.find_func("mod_fn"), Some(mod_fn));
    assert_eq!(split.find_func("base_fn"), None, "find_func only searches the module itself");
    assert_eq!(split.func_param_count(mod_fn), Some(1));
    assert_eq!(split.func_param_count(reuse), Some(3));
    assert!(split.base().is_some());
    assert!(base.base().is_none());
}

#[test]
fn split_btf_may_have_no_strings_of_its_own() {
    let mut bw = BtfWriter::new();
    let int = bw.int("int", 4, true);
    let base = Btf::parse(&bw.finish()).unwrap();
    let mut sw = BtfWriter::new_split(base.last_id(), bw.str_len());
    let p = sw.ptr(int);
    let split = Btf::parse_split(&sw.finish(), &base).unwrap();
    assert_eq!(split.kind(p), Some(Kind::Ptr));
    assert_eq!(split.type_name(p), Some(""));
}

#[test]
fn split_string_offsets_past_both_sections_are_rejected() {
    let mut bw = BtfWriter::new();
    bw.int("int", 4, true);
    let base = Btf::parse(&bw.finish()).unwrap();
    let mut sw = BtfWriter::new_split(base.last_id(), bw.str_len());
    let own = sw.add_str("x");
    let limit = own + 2;
    sw.raw_type(limit, k::FWD, 0, false, 0, &[]);
    let e = Btf::parse_split(&sw.finish(), &base).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "string offset {limit} outside the string section (valid offsets are below \
             {limit}), used by type [2] at offset 24"
        )
    );
}

#[test]
fn empty_type_section_is_fine() {
    let blob = BtfWriter::new().finish();
    let btf = Btf::parse(&blob).unwrap();
    assert!(btf.is_empty());
    assert_eq!(btf.last_id(), 0);
    assert_eq!(btf.find_func("x"), None);
}

#[test]
fn bad_magic_is_named() {
    let (mut blob, _) = every_kind();
    blob[0..2].copy_from_slice(&0x1234_u16.to_le_bytes());
    let e = err_of(&blob);
    assert_eq!(e, BtfError::BadMagic { found: 0x1234 });
    assert!(e.to_string().starts_with("bad magic 0x1234 at offset 0"), "{e}");

    blob[0..2].copy_from_slice(&[0xeb, 0x9f]);
    assert!(err_of(&blob).to_string().contains("big-endian"));
}

#[test]
fn unknown_version_is_rejected() {
    let (mut blob, _) = every_kind();
    blob[hdr::VERSION] = 2;
    let e = err_of(&blob);
    assert_eq!(e.to_string(), "unsupported BTF version 2 at offset 2 (only version 1 is known)");
}

#[test]
fn truncated_header_is_named() {
    let (blob, _) = every_kind();
    for len in [0, 1, 2, 23] {
        let e = err_of(&blob[..len]);
        assert_eq!(e, BtfError::Truncated { len });
        assert!(e.to_string().contains("too short for the 24-byte header"), "{e}");
    }
}

#[test]
fn header_fields_that_do_not_fit_are_named() {
    let (blob, _) = every_kind();
    let mut short = blob.clone();
    put_u32(&mut short, hdr::HDR_LEN, 12);
    assert!(err_of(&short).to_string().contains("header length 12 at offset 4 is below 24"));

    let mut long = blob.clone();
    put_u32(&mut long, hdr::HDR_LEN, u32::MAX);
    assert!(err_of(&long).to_string().contains("runs past the end"));

    for (field, what) in [(hdr::TYPE_LEN, "type"), (hdr::STR_OFF, "string"), (hdr::STR_LEN, "string")] {
        let mut b = blob.clone();
        put_u32(&mut b, field, u32::MAX);
        let msg = err_of(&b).to_string();
        assert!(msg.starts_with(&format!("bad BTF header: {what} section")), "{msg}");
        assert!(msg.contains(&format!("runs past the end of the {}-byte blob", blob.len())), "{msg}");
    }

    let mut overlap = blob.clone();
    put_u32(&mut overlap, hdr::STR_OFF, 0);
    assert!(err_of(&overlap).to_string().contains("overlaps"));
}

#[test]
fn larger_header_is_skipped() {
    // A newer header with 8 more bytes: the reader only needs the fields it knows.
    let (blob, func) = every_kind();
    let mut bigger = blob[..hdr::SIZE].to_vec();
    bigger.extend_from_slice(&[0; 8]);
    bigger.extend_from_slice(&blob[hdr::SIZE..]);
    put_u32(&mut bigger, hdr::HDR_LEN, 32);
    let btf = Btf::parse(&bigger).unwrap();
    assert_eq!(btf.find_func("func_all"), Some(func));
}

#[test]
fn type_running_past_the_section_is_named() {
    let mut w = BtfWriter::new();
    w.int("int", 4, true);
    // A STRUCT claiming 3 members but carrying 1 (12 bytes).
    let name = w.add_str("s");
    w.raw_type(name, k::STRUCT, 3, false, 4, &[0, 1, 0]);
    let e = err_of(&w.finish());
    assert_eq!(
        e.to_string(),
        "type section entry [2] (STRUCT) at offset 40 runs past the end of the type section \
         (which ends at offset 64)"
    );
}

#[test]
fn partial_entry_header_at_the_end_is_named() {
    let mut w = BtfWriter::new();
    w.int("int", 4, true);
    w.raw_bytes(&[0; 8]);
    let e = err_of(&w.finish());
    assert_eq!(e, BtfError::TypePastEnd { id: 2, offset: 40, kind: None, end: 48 });
}

#[test]
fn unknown_and_zero_kinds_stop_the_walk() {
    for raw in [0u8, 20, 31] {
        let mut w = BtfWriter::new();
        w.int("int", 4, true);
        w.raw_type(0, raw, 0, false, 0, &[]);
        let e = err_of(&w.finish());
        assert_eq!(e, BtfError::UnknownKind { id: 2, offset: 40, kind: raw });
        assert!(e.to_string().contains(&format!("unknown kind {raw}")), "{e}");
    }
}

#[test]
fn string_offset_out_of_range_is_named() {
    let mut w = BtfWriter::new();
    w.raw_type(99, k::FWD, 0, false, 0, &[]);
    let e = err_of(&w.finish());
    assert_eq!(
        e.to_string(),
        "string offset 99 outside the string section (valid offsets are below 1), used by \
         type [1] at offset 24"
    );
}

#[test]
fn member_param_and_enumerator_names_are_checked() {
    for kind in [k::STRUCT, k::UNION, k::ENUM, k::FUNC_PROTO, k::ENUM64] {
        let words: &[u32] = match kind {
            k::ENUM | k::FUNC_PROTO => &[500, 0],
            _ => &[500, 0, 0],
        };
        let mut w = BtfWriter::new();
        w.raw_type(0, kind, 1, false, 4, words);
        let e = err_of(&w.finish());
        assert!(matches!(e, BtfError::StringOutOfRange { str_off: 500, id: 1, offset: 24, .. }), "kind {kind}: {e}");
    }
    // DATASEC records carry no names: 500 there is a type id, not a string.
    let mut w = BtfWriter::new();
    w.raw_type(0, k::DATASEC, 1, false, 4, &[500, 0, 4]);
    assert!(Btf::parse(&w.finish()).is_ok());
}

#[test]
fn string_section_shape_is_checked() {
    let (blob, _) = every_kind();
    let mut no_nul_end = blob.clone();
    *no_nul_end.last_mut().unwrap() = b'x';
    let e = err_of(&no_nul_end);
    assert!(e.to_string().starts_with("bad BTF string section: last byte"), "{e}");
    assert!(e.to_string().contains(&format!("at offset {}", blob.len() - 1)), "{e}");

    let mut w = BtfWriter::new();
    w.int("int", 4, true);
    let mut no_nul_start = w.finish();
    let str_start = hdr::SIZE + 16;
    no_nul_start[str_start] = b'x';
    let e = err_of(&no_nul_start);
    assert_eq!(
        e.to_string(),
        format!("bad BTF string section: section at offset {str_start} does not start with a NUL byte")
    );

    let mut empty = BtfWriter::new().finish();
    put_u32(&mut empty, hdr::STR_LEN, 0);
    assert!(err_of(&empty).to_string().contains("is empty"));
}

#[test]
fn errors_are_cloneable_std_errors() {
    let e = err_of(&[0u8; 4]);
    let cloned = e.clone();
    assert_eq!(e, cloned);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(cloned);
    assert_eq!(boxed.to_string(), e.to_string());
    assert!(format!("{e:?}").contains("Truncated"));
}

#[test]
fn debug_output_is_a_summary() {
    let (blob, _) = every_kind();
    let s = format!("{:?}", Btf::parse(&blob).unwrap());
    assert!(s.contains("types: 19") && s.contains("funcs: 1"), "{s}");
}

#[test]
fn thousands_of_functions_are_all_found() {
    let mut w = BtfWriter::new();
    let proto = w.func_proto(0, &[]);
    let mut ids = Vec::new();
    for i in 0..3000 {
        ids.push(w.func(&format!("fn_{i}"), proto, 0));
        if i % 100 == 0 {
            w.func(&format!("fn_{i}"), proto, 0); // a later duplicate must not win
        }
    }
    let btf = Btf::parse(&w.finish()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(btf.find_func(&format!("fn_{i}")), Some(*id));
    }
    assert_eq!(btf.find_func("fn_3000"), None);
    assert_eq!(btf.find_func("fn_"), None);
}

#[test]
fn members_are_found_through_anonymous_structs_and_unions() {
    // struct folio { union { struct { long flags; long lru; }; struct page page; };
    //                union { struct { long _flags_1; }; struct page __page_1; }; }
    let mut w = BtfWriter::new();
    let long = w.int("long", 8, true);
    let page = w.struct_("page", 64, &[("flags", long, 0)]);
    let inner0 = w.struct_("", 16, &[("flags", long, 0), ("lru", long, 64)]);
    let u0 = w.union_("", 64, &[("", inner0, 0), ("page", page, 0)]);
    let inner1 = w.struct_("", 8, &[("_flags_1", long, 0)]);
    let u1 = w.union_("", 64, &[("", inner1, 0), ("__page_1", page, 0)]);
    let folio = w.struct_("folio", 128, &[("", u0, 0), ("", u1, 512)]);
    let flags = w.enum_("pageflags", &[("PG_locked", 0), ("PG_head", 6)]);
    let btf = Btf::parse(&w.finish()).unwrap();
    assert_eq!(btf.find_type(Kind::Struct, "folio"), Some(folio));
    assert_eq!(btf.find_type(Kind::Union, "folio"), None);
    assert_eq!(btf.member_offset_bits(folio, "flags"), Some(0));
    assert_eq!(btf.member_offset_bits(folio, "lru"), Some(64));
    assert_eq!(btf.member_offset_bits(folio, "_flags_1"), Some(512));
    assert_eq!(btf.member_offset_bits(folio, "missing"), None);
    assert_eq!(btf.member_offset_bits(long, "flags"), None);
    assert_eq!(btf.find_type(Kind::Enum, "pageflags"), Some(flags));
    assert_eq!(btf.enum_value(flags, "PG_head"), Some(6));
    assert_eq!(btf.enum_value(flags, "PG_tail"), None);
}
