//! `include/ktm.h` against `src/capi.rs`: every prototype, struct and constant of the header
//! must match the Rust definitions, type by type, in order. A host compiled against a header
//! that disagrees with the library would read garbage without any error, so this is checked
//! on the text of both, with no C compiler needed. (cgo then compiles the header for real in
//! `.ci/go-test.sh`.)

use std::collections::BTreeMap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A type with every blank removed, C spelling: `constchar*`, `ktm_t*`, `char**`.
type Ty = String;

#[derive(Debug, PartialEq)]
struct Func {
    ret: Ty,
    params: Vec<(String, Ty)>,
}

#[derive(Debug, Default)]
struct Api {
    funcs: BTreeMap<String, Func>,
    structs: BTreeMap<String, Vec<(String, Ty)>>,
    consts: BTreeMap<String, u64>,
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

/// `KtmModuleStatus` -> `ktm_module_status_t`, `Ktm` -> `ktm_t`.
fn c_struct_name(rust: &str) -> String {
    let mut out = String::new();
    for (i, ch) in rust.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out + "_t"
}

/// A Rust FFI type in the C spelling of `squash`.
fn c_type(rust: &str) -> Ty {
    let rust = rust.trim();
    if let Some(rest) = rust.strip_prefix("*const ") {
        return format!("const{}*", c_type(rest));
    }
    if let Some(rest) = rust.strip_prefix("*mut ") {
        return format!("{}*", c_type(rest));
    }
    match rust {
        "c_char" => "char".into(),
        "c_int" => "int".into(),
        "usize" => "size_t".into(),
        "u32" => "uint32_t".into(),
        "u64" => "uint64_t".into(),
        "i64" => "int64_t".into(),
        "f64" => "double".into(),
        "()" | "" => "void".into(),
        s if s.starts_with("Ktm") => c_struct_name(s),
        other => panic!("no C spelling for Rust type `{other}` in src/capi.rs: add it here"),
    }
}

/// The text between `open` at `start` and its matching `close`.
fn matching(s: &str, start: usize, open: char, close: char) -> (usize, usize) {
    let mut depth = 0;
    for (i, ch) in s[start..].char_indices() {
        if ch == open {
            depth += 1;
        } else if ch == close {
            depth -= 1;
            if depth == 0 {
                return (start, start + i);
            }
        }
    }
    panic!("unbalanced {open}{close} after byte {start}");
}

fn parse_rust(src: &str) -> Api {
    // Only the library part: the unit test modules (`#[cfg(test)] mod ... { }`, wherever
    // they sit) are not ABI.
    let mut lib = src.to_string();
    while let Some(at) = lib.find("#[cfg(test)]") {
        let (_, close) = matching(&lib, lib[at..].find('{').expect("a test module") + at, '{', '}');
        lib.replace_range(at..=close, "");
    }
    let src = lib.as_str();
    let mut api = Api::default();
    let mut rest = src;
    while let Some(at) = rest.find("extern \"C\" fn ") {
        let after = &rest[at + "extern \"C\" fn ".len()..];
        let name = after[..after.find('(').unwrap()].trim().to_string();
        let (open, close) = matching(after, after.find('(').unwrap(), '(', ')');
        let params = after[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, t) = p.split_once(':').unwrap();
                (n.trim().to_string(), c_type(t))
            })
            .collect();
        let tail = &after[close + 1..after[close..].find('{').unwrap() + close];
        let ret = c_type(tail.trim().strip_prefix("->").unwrap_or("").trim());
        assert!(api.funcs.insert(name.clone(), Func { ret, params }).is_none(), "{name} twice");
        rest = &after[close..];
    }
    let mut rest = src;
    while let Some(at) = rest.find("#[repr(C)]\npub struct ") {
        let after = &rest[at + "#[repr(C)]\npub struct ".len()..];
        let name = after[..after.find('{').unwrap()].trim();
        let (open, close) = matching(after, after.find('{').unwrap(), '{', '}');
        let fields = after[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (n, t) = f.strip_prefix("pub ").expect("public fields").split_once(':').unwrap();
                (n.trim().trim_start_matches("r#").to_string(), c_type(t))
            })
            .collect();
        api.structs.insert(c_struct_name(name), fields);
        rest = &after[close..];
    }
    for line in src.lines() {
        if let Some(rest) = line.strip_prefix("pub const ") {
            let (name, value) = rest.split_once(':').unwrap();
            let value = value.split('=').nth(1).unwrap().trim().trim_end_matches(';');
            let name = if name == "ABI_VERSION" { "KTM_ABI_VERSION" } else { name };
            api.consts.insert(name.to_string(), value.parse().unwrap());
        }
    }
    api
}

fn parse_header(h: &str) -> Api {
    let mut api = Api::default();
    // Comments, preprocessor lines and the C++ guard out; `#define`s kept aside.
    let mut text = String::new();
    let mut in_cpp_guard = false;
    let mut chars = h.to_string();
    while let Some(start) = chars.find("/*") {
        let end = chars[start..].find("*/").expect("unterminated comment") + start + 2;
        chars.replace_range(start..end, " ");
    }
    for line in chars.lines() {
        let t = line.trim();
        if t.starts_with("#ifdef __cplusplus") {
            in_cpp_guard = true;
        } else if in_cpp_guard {
            in_cpp_guard = !t.starts_with("#endif");
        } else if let Some(d) = t.strip_prefix("#define ") {
            let mut it = d.split_whitespace();
            if let (Some(name), Some(value)) = (it.next(), it.next()) {
                if let Ok(v) = value.parse() {
                    api.consts.insert(name.to_string(), v);
                }
            }
        } else if !t.starts_with('#') {
            text.push_str(line);
            text.push('\n');
        }
    }
    // Struct definitions, then removed from the text.
    while let Some(at) = text.find("typedef struct") {
        let semi = text[at..].find(';').unwrap() + at;
        let Some(brace) = text[at..semi].find('{').map(|b| b + at) else {
            text.replace_range(at..=semi, " "); // the opaque `typedef struct ktm ktm_t;`
            continue;
        };
        let (open, close) = matching(&text, brace, '{', '}');
        let end = text[close..].find(';').unwrap() + close;
        let name = text[close + 1..end].trim().to_string();
        let fields = text[open + 1..close]
            .split(';')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| {
                let split = f.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap() + 1;
                (f[split..].to_string(), squash(&f[..split]))
            })
            .collect();
        api.structs.insert(name, fields);
        text.replace_range(at..=end, " ");
    }
    for decl in text.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let paren = decl.find('(').unwrap_or_else(|| panic!("not a prototype: {decl}"));
        let head = decl[..paren].trim();
        let split = head.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap() + 1;
        let (ret, name) = (squash(&head[..split]), head[split..].to_string());
        let inner = &decl[paren + 1..decl.rfind(')').unwrap()];
        let params = if inner.trim() == "void" {
            Vec::new()
        } else {
            inner
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    let split = p.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap() + 1;
                    (p[split..].to_string(), squash(&p[..split]))
                })
                .collect()
        };
        assert!(api.funcs.insert(name.clone(), Func { ret, params }).is_none(), "{name} twice in ktm.h");
    }
    api
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn header_matches_the_rust_abi() {
    let rust = parse_rust(&read("src/capi.rs"));
    let c = parse_header(&read("include/ktm.h"));
    assert!(rust.funcs.len() >= 12, "parsed too few Rust functions: {:?}", rust.funcs.keys());
    let names = |a: &Api| a.funcs.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&c), names(&rust), "functions in ktm.h vs extern \"C\" fns in src/capi.rs");
    for (name, f) in &rust.funcs {
        assert_eq!(&c.funcs[name], f, "prototype of {name}: ktm.h (left) vs src/capi.rs (right)");
    }
    let structs = |a: &Api| a.structs.keys().cloned().collect::<Vec<_>>();
    assert_eq!(structs(&c), structs(&rust), "structs in ktm.h vs #[repr(C)] pub structs in src/capi.rs");
    for (name, fields) in &rust.structs {
        assert_eq!(&c.structs[name], fields, "fields of {name}: ktm.h (left) vs src/capi.rs (right)");
    }
    assert_eq!(c.consts, rust.consts, "#defines in ktm.h vs pub consts in src/capi.rs");
}

#[test]
fn the_checker_sees_a_mismatch() {
    let rust = parse_rust("#[no_mangle]\npub extern \"C\" fn ktm_x(a: *mut *mut c_char, n: usize) -> c_int {\n}\n");
    let good = parse_header("int ktm_x(char **a, size_t n);");
    let bad = parse_header("int ktm_x(char *a, size_t n);");
    assert_eq!(good.funcs["ktm_x"], rust.funcs["ktm_x"]);
    assert_ne!(bad.funcs["ktm_x"], rust.funcs["ktm_x"]);
    let rust = parse_rust("#[repr(C)]\npub struct KtmAb {\n    pub r#type: u32,\n    pub p: *const KtmLabel,\n}\n");
    let c = parse_header("typedef struct ktm_ab { uint32_t type; const ktm_label_t *p; } ktm_ab_t;");
    assert_eq!(c.structs["ktm_ab_t"], rust.structs["ktm_ab_t"]);
}
