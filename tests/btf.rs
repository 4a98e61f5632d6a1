//! The BTF reader against the running kernel (cross-checked with bpftool), against a fake
//! /sys/kernel/btf directory, and under random corruption.

#[path = "common/rng.rs"]
mod rng;
#[path = "../src/btf/testutil.rs"]
mod testutil;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use ktm::btf::{self, Btf, BtfError, Kind};
use testutil::{hdr, kind as k, put_u32, BtfWriter};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The raw vmlinux BTF, or `None` (with the reason printed) when this kernel has none.
fn vmlinux_bytes() -> Option<&'static [u8]> {
    static BYTES: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| match std::fs::read(VMLINUX) {
            Ok(b) => Some(b),
            Err(e) => {
                println!("SKIP: cannot read {VMLINUX} ({e}); kernel without CONFIG_DEBUG_INFO_BTF?");
                None
            }
        })
        .as_deref()
}

/// One `[id] KIND 'name' ...` line of `bpftool btf dump`, with what the checks need.
#[derive(Debug, Default, Clone)]
struct DumpType {
    kind: String,
    name: String,
    /// `type_id=` of a FUNC (its prototype).
    type_id: Option<u32>,
    /// `vlen=` of a FUNC_PROTO.
    vlen: Option<usize>,
    /// For a FUNC_PROTO: whether the last parameter is `'(anon)' type_id=0`, i.e. `...`.
    variadic: bool,
}

/// Runs `bpftool btf dump [-B <base>] file <file>` (`$BPFTOOL` if set); `None` (skip) if
/// bpftool is missing. Under CI=true a missing bpftool fails the test, because the
/// cross-check would otherwise vanish silently; the QEMU guests (KTM_IN_QEMU=1) are known to
/// ship without it and only skip.
fn bpftool_dump(file: &str, base: Option<&str>) -> Option<HashMap<u32, DumpType>> {
    let mut args = vec!["btf", "dump"];
    if let Some(b) = base {
        args.extend(["-B", b]);
    }
    args.extend(["file", file]);
    let candidates = match std::env::var("BPFTOOL") {
        Ok(explicit) => vec![explicit],
        Err(_) => ["bpftool", "/usr/sbin/bpftool", "/sbin/bpftool"].map(String::from).to_vec(),
    };
    let out = candidates.iter().find_map(|bin| Command::new(bin).args(&args).output().ok());
    let Some(out) = out else {
        let in_qemu = std::env::var_os("KTM_IN_QEMU").is_some();
        assert!(
            !in_ci() || in_qemu,
            "bpftool not found (tried {candidates:?}) and CI=true requires the cross-check of {file}: \
             install the bpftool package"
        );
        println!("SKIP: bpftool not found (tried {candidates:?}); cannot cross-check {file}");
        return None;
    };
    assert!(out.status.success(), "bpftool {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(parse_dump(&String::from_utf8(out.stdout).expect("bpftool output is UTF-8")))
}

fn parse_dump(text: &str) -> HashMap<u32, DumpType> {
    let mut types = HashMap::new();
    let mut last_proto: Option<u32> = None;
    for line in text.lines() {
        if let Some(param) = line.strip_prefix('\t') {
            if let Some(id) = last_proto {
                let t: &mut DumpType = types.get_mut(&id).unwrap();
                t.variadic = param.trim() == "'(anon)' type_id=0";
            }
            continue;
        }
        let Some(rest) = line.strip_prefix('[') else { continue };
        let (id, rest) = rest.split_once("] ").expect("`[id] KIND` line");
        let id: u32 = id.parse().expect("numeric id");
        let (kind, rest) = rest.split_once(' ').expect("kind then name");
        let name_start = rest.find('\'').expect("quoted name") + 1;
        let name_len = rest[name_start..].find('\'').expect("closing quote");
        let name = &rest[name_start..name_start + name_len];
        let field = |key: &str| {
            rest[name_start + name_len..]
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .map(|v| v.parse::<u64>().expect("numeric field"))
        };
        let t = DumpType {
            kind: kind.to_owned(),
            name: if name == "(anon)" { String::new() } else { name.to_owned() },
            type_id: if kind == "FUNC" { field("type_id=").map(|v| v as u32) } else { None },
            vlen: field("vlen=").map(|v| v as usize),
            variadic: false,
        };
        last_proto = (kind == "FUNC_PROTO").then_some(id);
        types.insert(id, t);
    }
    types
}

/// Checks every type of `btf` (its own ids) against bpftool's dump of the same file;
/// `base_dump` holds the base's types, which module functions' prototypes may be.
fn cross_check(btf: &Btf, dump: &HashMap<u32, DumpType>, base_dump: Option<&HashMap<u32, DumpType>>, what: &str) {
    let own = btf.first_id()..=btf.last_id();
    let dumped: Vec<u32> = dump.keys().copied().filter(|id| own.contains(id)).collect();
    assert_eq!(dumped.len(), btf.len(), "{what}: number of types");
    let mut first_func: HashMap<&str, u32> = HashMap::new();
    for (&id, t) in dump {
        if !own.contains(&id) {
            continue;
        }
        assert_eq!(btf.kind(id).map(Kind::name), Some(t.kind.as_str()), "{what}: kind of [{id}]");
        assert_eq!(btf.type_name(id), Some(t.name.as_str()), "{what}: name of [{id}]");
        if t.kind == "FUNC" {
            let e = first_func.entry(&t.name).or_insert(id);
            *e = (*e).min(id);
            let proto_id = t.type_id.expect("FUNC has type_id");
            let proto = dump
                .get(&proto_id)
                .or_else(|| base_dump?.get(&proto_id))
                .unwrap_or_else(|| panic!("{what}: [{proto_id}] of {} not in the dump", t.name));
            let vlen = proto.vlen.expect("FUNC_PROTO has vlen");
            let expected = if proto.variadic { vlen - 1 } else { vlen };
            assert_eq!(btf.func_param_count(id), Some(expected), "{what}: params of {} [{id}]", t.name);
            assert_eq!(btf.func_is_variadic(id), Some(proto.variadic), "{what}: variadic {}", t.name);
        }
    }
    for (name, id) in &first_func {
        assert_eq!(btf.find_func(name), Some(*id), "{what}: find_func({name})");
    }
    println!("{what}: {} types and {} function names agree with bpftool", btf.len(), first_func.len());
}

#[test]
fn vmlinux_agrees_with_bpftool() {
    let Some(bytes) = vmlinux_bytes() else { return };
    let started = Instant::now();
    let btf = Btf::parse(bytes).expect("the running kernel's BTF parses");
    println!("parsed {VMLINUX}: {} bytes, {} types in {:?}", bytes.len(), btf.len(), started.elapsed());
    let Some(dump) = bpftool_dump(VMLINUX, None) else { return };

    for name in ["ksys_fadvise64_64", "filemap_get_read_batch", "vfs_read", "do_sys_openat2", "schedule"] {
        let expected = dump.iter().filter(|(_, t)| t.kind == "FUNC" && t.name == name).map(|(id, _)| *id).min();
        println!("{name}: bpftool {expected:?}, ours {:?}", btf.find_func(name));
        assert_eq!(btf.find_func(name), expected, "id of {name}");
    }
    // The functions KTM attaches to exist on every kernel the crate targets but one.
    assert!(btf.find_func("ksys_fadvise64_64").is_some());
    assert_eq!(btf.find_func("no_such_function_in_any_kernel"), None);
    cross_check(&btf, &dump, None, "vmlinux");
}

#[test]
fn vmlinux_is_parsed_once_until_released_and_finds_fadvise() {
    if vmlinux_bytes().is_none() {
        return;
    }
    let a = btf::vmlinux().expect("vmlinux BTF");
    let b = btf::vmlinux().expect("vmlinux BTF");
    assert!(a.ptr_eq(&b), "cached, not re-parsed");
    btf::release_vmlinux();
    let c = btf::vmlinux().expect("vmlinux BTF again");
    assert!(!a.ptr_eq(&c), "read afresh after release");
    assert_eq!(a.find_func("ksys_fadvise64_64"), c.find_func("ksys_fadvise64_64"), "the released copy still works");
    let loc = btf::find_kernel_func("ksys_fadvise64_64").expect("ksys_fadvise64_64 in kernel BTF");
    assert_eq!(loc.module, None);
    assert_eq!(Some(loc.type_id), a.find_func("ksys_fadvise64_64"));
    assert_eq!(loc.params, Some(4), "fd, offset, len, advice");

    let e = btf::find_kernel_func("no_such_function_in_any_kernel").unwrap_err();
    assert!(matches!(e, BtfError::FuncNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("no_such_function_in_any_kernel"), "{e}");
}

/// Directory of module BTF to check: /sys/kernel/btf, or `$KTM_BTF_DIR`, a copy of another
/// kernel's (`vmlinux` plus module files), so split BTF from kernels whose guests lack
/// bpftool can still be cross-checked on a host that has it.
fn module_btf_dir() -> std::path::PathBuf {
    std::env::var_os("KTM_BTF_DIR").map_or_else(|| "/sys/kernel/btf".into(), Into::into)
}

#[test]
fn module_btf_agrees_with_bpftool() {
    let dir = module_btf_dir();
    let vmlinux_path = dir.join("vmlinux");
    let Ok(base_bytes) = std::fs::read(&vmlinux_path) else {
        println!("SKIP: no {}; kernel without CONFIG_DEBUG_INFO_BTF?", vmlinux_path.display());
        return;
    };
    let base = Btf::parse(&base_bytes).expect("vmlinux BTF parses");
    let mut modules: Vec<String> = std::fs::read_dir(&dir)
        .expect("list the BTF directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "vmlinux")
        .collect();
    modules.sort();
    if modules.is_empty() {
        println!("SKIP: no module BTF in {} besides vmlinux (no BTF-carrying modules loaded)", dir.display());
        return;
    }
    println!("{} module BTF files in {}", modules.len(), dir.display());
    let vmlinux_str = vmlinux_path.to_str().expect("UTF-8 path");
    let base_dump = bpftool_dump(vmlinux_str, None);
    for (n, module) in modules.iter().enumerate() {
        let path = dir.join(module);
        let bytes = std::fs::read(&path).expect("read module BTF");
        let btf = Btf::parse_split(&bytes, &base).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(btf.first_id(), base.last_id() + 1, "{module}: ids continue after vmlinux");
        // A function vmlinux lacks must be located in a module that has it. (Each search
        // re-reads the whole directory, so only the first few modules are searched.)
        let own_func = (btf.first_id()..=btf.last_id())
            .filter(|&id| btf.kind(id) == Some(Kind::Func))
            .filter_map(|id| btf.type_name(id).map(|n| (id, n.to_owned())))
            .find(|(_, n)| base.find_func(n).is_none());
        if let (Some((id, name)), true) = (own_func, n < 5) {
            let loc = btf::find_kernel_func_in(&dir, &name).expect("module function found");
            let found_in = loc.module.clone().expect("found in a module, not vmlinux");
            if found_in == *module {
                assert_eq!(Some(loc.type_id), btf.find_func(&name));
                assert!(loc.type_id <= id);
            } else {
                // Several modules may define the same static function; the first in name order wins.
                assert!(found_in < *module, "{name}: found in {found_in}, sorted after {module}");
            }
            println!("{module}: {name} -> [{}] in {found_in}", loc.type_id);
        }
        if base_dump.is_some() {
            if let Some(dump) = bpftool_dump(path.to_str().expect("UTF-8 path"), Some(vmlinux_str)) {
                cross_check(&btf, &dump, base_dump.as_ref(), module);
            }
        }
    }
}

/// Writes a fake /sys/kernel/btf: `vmlinux` and split modules over it.
struct FakeSysfs {
    dir: tempfile::TempDir,
    base: Vec<u8>,
    base_last_id: u32,
    base_str_len: u32,
    base_func: u32,
}

impl FakeSysfs {
    fn new() -> FakeSysfs {
        let mut w = BtfWriter::new();
        let int = w.int("int", 4, true);
        let proto = w.func_proto(int, &[("a", int)]);
        let base_func = w.func("in_vmlinux", proto, 1);
        let base = w.finish();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("vmlinux"), &base).unwrap();
        FakeSysfs { dir, base, base_last_id: w.next_id() - 1, base_str_len: w.str_len(), base_func }
    }

    /// Adds module `name` defining FUNC `func` with `params` int parameters; returns its id.
    fn module(&self, name: &str, func: &str, params: usize) -> u32 {
        let mut w = BtfWriter::new_split(self.base_last_id, self.base_str_len);
        let p: Vec<(&str, u32)> = (0..params).map(|_| ("p", 1)).collect();
        let proto = w.func_proto(1, &p);
        let id = w.func(func, proto, 0);
        std::fs::write(self.dir.path().join(name), w.finish()).unwrap();
        id
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn module_search_in_a_fake_sysfs() {
    let fake = FakeSysfs::new();
    let in_a = fake.module("mod_a", "only_in_a", 2);
    let in_b = fake.module("mod_b", "only_in_b", 5);
    fake.module("mod_c", "in_vmlinux", 0);

    let loc = btf::find_kernel_func_in(fake.path(), "in_vmlinux").unwrap();
    assert_eq!(loc, btf::FuncLocation { type_id: fake.base_func, module: None, params: Some(1) });
    let loc = btf::find_kernel_func_in(fake.path(), "only_in_a").unwrap();
    assert_eq!(loc, btf::FuncLocation { type_id: in_a, module: Some("mod_a".into()), params: Some(2) });
    let loc = btf::find_kernel_func_in(fake.path(), "only_in_b").unwrap();
    assert_eq!(loc, btf::FuncLocation { type_id: in_b, module: Some("mod_b".into()), params: Some(5) });
    assert_eq!(in_a, fake.base_last_id + 2, "module ids continue after vmlinux's");

    let e = btf::find_kernel_func_in(fake.path(), "nowhere").unwrap_err();
    assert_eq!(e.to_string(), "kernel function `nowhere` has no BTF_KIND_FUNC in vmlinux nor in 3 module BTF file(s)");
}

#[test]
fn broken_module_is_skipped_and_reported() {
    let fake = FakeSysfs::new();
    std::fs::write(fake.path().join("mod_bad"), b"\x34\x12 not btf at all, long enough").unwrap();
    let good = fake.module("mod_good", "good_fn", 1);
    assert_eq!(btf::find_kernel_func_in(fake.path(), "good_fn").unwrap().type_id, good);
    let e = btf::find_kernel_func_in(fake.path(), "nowhere").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("2 module BTF file(s)"), "{msg}");
    assert!(msg.contains("unreadable module BTF: mod_bad: "), "{msg}");
    assert!(msg.contains("mod_bad: bad magic 0x1234 at offset 0"), "{msg}");
}

#[test]
fn missing_or_broken_vmlinux_is_explained() {
    let empty = tempfile::tempdir().unwrap();
    let e = btf::find_kernel_func_in(empty.path(), "anything").unwrap_err();
    assert!(matches!(e, BtfError::NoKernelBtf { .. }), "{e:?}");
    assert!(e.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{e}");
    assert!(e.to_string().contains("vmlinux does not exist"), "{e}");

    let fake = FakeSysfs::new();
    let mut bad = fake.base.clone();
    bad.truncate(30);
    std::fs::write(fake.path().join("vmlinux"), &bad).unwrap();
    let e = btf::find_kernel_func_in(fake.path(), "in_vmlinux").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with(&fake.path().join("vmlinux").display().to_string()), "{msg}");
    assert!(msg.contains("runs past the end of the 30-byte blob"), "{msg}");
}

use rng::Rng;

impl Rng {
    /// A u32 near the edges a reader can get wrong (0, MAX, around `len`, powers of two).
    fn u32_edge(&mut self, len: usize) -> u32 {
        let len = len as u32;
        match self.below(8) {
            0 => 0,
            1 => u32::MAX,
            2 => u32::MAX - self.below(16) as u32,
            3 => len.wrapping_add(self.below(8) as u32),
            4 => len.wrapping_sub(self.below(8) as u32),
            5 => 1 << self.below(32),
            _ => self.next() as u32,
        }
    }
}

/// Applies one random mutation; returns what it did, for the failure report.
fn mutate(rng: &mut Rng, blob: &mut Vec<u8>, types: std::ops::Range<usize>) -> String {
    // An earlier truncation may have cut into the type section.
    let types = types.start.min(blob.len())..types.end.min(blob.len());
    match rng.below(6) {
        0 => {
            let len = rng.below(blob.len() + 1);
            blob.truncate(len);
            format!("truncate to {len}")
        }
        1 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let at = rng.below(blob.len());
                blob[at] ^= 1 << rng.below(8);
            }
            format!("{n} bit flips")
        }
        2 => {
            let field = [hdr::HDR_LEN, hdr::TYPE_OFF, hdr::TYPE_LEN, hdr::STR_OFF, hdr::STR_LEN][rng.below(5)];
            let v = rng.u32_edge(blob.len());
            put_u32(blob, field, v);
            format!("header field at {field} = {v}")
        }
        3 if types.len() >= 4 => {
            // A word inside the type section: info (kind/vlen), name_off or a type id.
            let at = types.start + rng.below(types.len() / 4) * 4;
            let v = match rng.below(3) {
                0 => (rng.below(32) as u32) << 24 | rng.below(0x10000) as u32,
                1 => rng.u32_edge(blob.len()),
                _ => rng.next() as u32,
            };
            put_u32(blob, at, v);
            format!("type word at {at} = {v:#x}")
        }
        4 => {
            let at = rng.below(blob.len());
            let n = rng.below(64).min(blob.len() - at);
            for b in &mut blob[at..at + n] {
                *b = rng.next() as u8;
            }
            format!("{n} random bytes at {at}")
        }
        _ => {
            blob[hdr::VERSION] = rng.below(3) as u8;
            blob[hdr::FLAGS] = rng.next() as u8;
            format!("version {} flags {}", blob[hdr::VERSION], blob[hdr::FLAGS])
        }
    }
}

/// Everything a caller may ask of a parsed blob, to shake out panics in the lookups too.
fn exercise(btf: &Btf) {
    let last = btf.last_id();
    for id in (0..=last.saturating_add(2)).chain([u32::MAX]) {
        let _ = (btf.kind(id), btf.type_name(id), btf.func_param_count(id), btf.func_is_variadic(id));
    }
    for name in ["func_all", "mod_fn", "int", "", "ksys_fadvise64_64"] {
        if let Some(id) = btf.find_func(name) {
            assert_eq!(btf.kind(id), Some(Kind::Func));
            assert_eq!(btf.type_name(id), Some(name));
        }
    }
    let _ = format!("{btf:?}");
}

fn fuzz_seed() -> u64 {
    std::env::var("KTM_BTF_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6b74_6d5f_6274_6621)
}

/// Runs `parse` on `iterations` mutations of `original`, reporting the first panic with the
/// seed, iteration and mutation so it can be replayed.
fn fuzz(
    label: &str,
    seed: u64,
    iterations: usize,
    original: &[u8],
    types: std::ops::Range<usize>,
    parse: &dyn Fn(&[u8]) -> Result<Btf, BtfError>,
) -> (usize, usize) {
    let mut rng = Rng(seed);
    let (mut ok, mut err) = (0, 0);
    for i in 0..iterations {
        let mut blob = original.to_vec();
        let mut did = Vec::new();
        for _ in 0..1 + rng.below(3) {
            if blob.len() < hdr::SIZE {
                break;
            }
            did.push(mutate(&mut rng, &mut blob, types.clone()));
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match parse(&blob) {
            Ok(btf) => {
                exercise(&btf);
                true
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        }));
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => panic!("{label}: panic at iteration {i} (seed {seed:#x}) after mutations {did:?}"),
        }
    }
    println!("{label}: {iterations} mutations, {ok} parsed, {err} rejected");
    (ok, err)
}

#[test]
fn random_corruption_never_panics() {
    let seed = fuzz_seed();
    println!("fuzz seed {seed:#x} (set KTM_BTF_FUZZ_SEED={seed} to replay)");
    let started = Instant::now();

    // Synthetic base with every kind, and a split blob over it.
    let mut bw = BtfWriter::new();
    bw.add_every_kind();
    let base_blob = bw.finish();
    let base = Btf::parse(&base_blob).expect("synthetic base parses");
    let mut sw = BtfWriter::new_split(base.last_id(), bw.str_len());
    let int = 1;
    let proto = sw.func_proto(int, &[("x", int), ("", 0)]);
    sw.func("mod_fn", proto, 0);
    sw.raw_type(1, k::TYPEDEF, 0, false, int, &[]);
    sw.struct_("mod_st", 4, &[("m", int, 0)]);
    let split_blob = sw.finish();
    Btf::parse_split(&split_blob, &base).expect("synthetic split parses");

    let types_of = |blob: &[u8]| hdr::SIZE..hdr::SIZE + testutil::get_u32(blob, hdr::TYPE_LEN) as usize;
    let (ok, err) = fuzz("synthetic base", seed, 20_000, &base_blob, types_of(&base_blob), &|b| Btf::parse(b));
    assert!(ok > 0 && err > 0, "mutations should both keep and break the blob");
    let split_seed = seed ^ 0x5b1d;
    fuzz("synthetic split", split_seed, 8000, &split_blob, types_of(&split_blob), &|b| Btf::parse_split(b, &base));

    // The real thing, cut down: header + a prefix of the type section + all the strings, so
    // most entries still name real strings. Full-size parses would take too long in debug.
    if let Some(real) = vmlinux_bytes() {
        let type_len = testutil::get_u32(real, hdr::TYPE_LEN) as usize;
        let str_off = testutil::get_u32(real, hdr::STR_OFF) as usize;
        let str_len = testutil::get_u32(real, hdr::STR_LEN) as usize;
        let strings = &real[hdr::SIZE + str_off..hdr::SIZE + str_off + str_len];
        let mut rng = Rng(seed ^ 0x7ea1);
        let (mut ok, mut err) = (0, 0);
        for round in 0..12 {
            // A prefix cut at an arbitrary byte: usually mid-entry, so the walk must stop cleanly.
            let cut = rng.below(type_len.min(64 * 1024)) + 12;
            let mut blob = real[..hdr::SIZE + cut].to_vec();
            blob.extend_from_slice(strings);
            put_u32(&mut blob, hdr::TYPE_LEN, cut as u32);
            put_u32(&mut blob, hdr::STR_OFF, cut as u32);
            let whole = match Btf::parse(&blob) {
                Ok(b) => {
                    exercise(&b);
                    cut
                }
                // The entry that crosses the cut tells where the last whole entry ends.
                Err(BtfError::TypePastEnd { offset, .. }) => offset - hdr::SIZE,
                Err(e) => panic!("a cut type section must fail as an entry past the end, got: {e}"),
            };
            // Mutate a prefix of whole entries, which parses, so lookups get exercised too.
            let mut blob = real[..hdr::SIZE + whole].to_vec();
            blob.extend_from_slice(strings);
            put_u32(&mut blob, hdr::TYPE_LEN, whole as u32);
            put_u32(&mut blob, hdr::STR_OFF, whole as u32);
            let prefix = Btf::parse(&blob).expect("prefix of whole entries parses");
            assert!(!prefix.is_empty() || whole == 0);
            let (o, e) =
                fuzz("vmlinux prefix", seed ^ round, 150, &blob, hdr::SIZE..hdr::SIZE + whole, &|b| Btf::parse(b));
            ok += o;
            err += e;
        }
        println!("vmlinux prefixes: {ok} parsed, {err} rejected");
    } else {
        println!("no vmlinux BTF: fuzzed synthetic blobs only");
    }
    println!("fuzzing took {:?}", started.elapsed());
}

#[test]
fn split_over_the_wrong_base_fails_cleanly() {
    // A module blob whose name offsets assume a bigger base string section than it gets.
    let mut sw = BtfWriter::new_split(10, 5000);
    let proto = sw.func_proto(0, &[]);
    sw.func("needs_big_base", proto, 0);
    let blob = sw.finish();
    let small_base = Btf::parse(&BtfWriter::new().finish()).unwrap();
    let e = Btf::parse_split(&blob, &small_base).unwrap_err();
    assert!(e.to_string().contains("outside the string section"), "{e}");
}
