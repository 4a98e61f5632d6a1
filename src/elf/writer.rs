//! The generic writer: programs and map definitions in, ELF relocatable object bytes out.
//! It knows nothing of which programs these are (see the parent module for the layout).

use crate::attach::AttachPoint;
use crate::insn::{opcode, Program, RawInsn, RelocKind};
use crate::maps::MapDef;
use crate::{Error, Result};
use object::write::{Object, Relocation, SectionId, Symbol, SymbolId, SymbolSection};
use object::{elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags};
use object::{SymbolKind, SymbolScope};
use std::collections::{BTreeMap, HashSet};
use std::mem::size_of;

/// Name of the legacy map definitions section libbpf (before 1.0) and iproute2 read.
pub const MAPS_SECTION: &str = "maps";
/// Name of the license section.
pub const LICENSE_SECTION: &str = "license";
/// Symbol of the license string, as `char _license[] SEC("license")` would define it.
pub const LICENSE_SYMBOL: &str = "_license";
/// Bytes of one `struct bpf_map_def { u32 type, key_size, value_size, max_entries, map_flags; }`.
pub const MAP_DEF_SIZE: usize = 20;

/// One program to write: where it attaches (as a section name), its symbol and its slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfProgram {
    /// The section, e.g. `tracepoint/syscalls/sys_enter_read`, from [`AttachPoint::section`].
    pub section: String,
    /// The program's symbol, which libbpf would use as the program's name.
    pub name: String,
    pub program: Program,
}

impl ElfProgram {
    /// A program for `point`, in the section libbpf would read that point from.
    pub fn new(point: &AttachPoint, name: impl Into<String>, program: Program) -> Self {
        ElfProgram { section: point.section(), name: name.into(), program }
    }
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Other(format!("cannot write ELF object: {what}"))
}

fn obj_err(e: object::write::Error) -> Error {
    bad(e)
}

/// A symbol name must be non-empty, NUL-free and unique in the object, or readers (and
/// libbpf's name lookups) would pick the wrong one.
fn claim_name<'a>(names: &mut HashSet<&'a str>, name: &'a str, what: &str) -> Result<()> {
    if name.is_empty() || name.contains('\0') {
        return Err(bad(format!("{what} has an empty name or one with a NUL byte: {name:?}")));
    }
    if !names.insert(name) {
        return Err(bad(format!("symbol `{name}` ({what}) is defined twice")));
    }
    Ok(())
}

/// Sections KTM writes itself, or that libbpf gives a meaning other than "a program".
fn reserved_section(name: &str) -> bool {
    name.is_empty() || name.starts_with('.') || [MAPS_SECTION, LICENSE_SECTION, "version"].contains(&name)
}

/// The legacy `struct bpf_map_def` record libbpf read from the `maps` section.
fn map_def_bytes(def: &MapDef) -> [u8; MAP_DEF_SIZE] {
    let mut b = [0u8; MAP_DEF_SIZE];
    let fields = [def.map_type as u32, def.key_size, def.value_size, def.max_entries, def.flags];
    for (chunk, v) in b.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// Checks that slot `at` starts a 64-bit immediate load, which is the only instruction a
/// map relocation may patch.
fn check_ld_imm64(p: &ElfProgram, insns: &[RawInsn], at: usize) -> Result<()> {
    let first = insns.get(at).map(|i| i.code);
    if first != Some(opcode::BPF_LD | opcode::BPF_DW | opcode::BPF_IMM) || at + 1 >= insns.len() {
        return Err(bad(format!(
            "program `{}`: map reference at slot {at} is not a 64-bit immediate load (opcode {first:?})",
            p.name
        )));
    }
    Ok(())
}

/// Writes `programs` and `maps` as an ELF64 little-endian `EM_BPF` relocatable object.
///
/// Programs that share a section are placed one after the other in it, each with its own
/// symbol, as clang does for two functions with the same `SEC()`: libbpf (0.2 and later)
/// splits such a section by symbol, whereas a suffixed section name would be parsed as a
/// different attach target.
///
/// Every map reference becomes an `R_BPF_64_64` relocation against the map's symbol in
/// `maps`, with the instruction bytes exactly as the crate loads them before fds are filled
/// in. For a direct value reference ([`RelocKind::Value`]) that means `src_reg` is already
/// `BPF_PSEUDO_MAP_VALUE` and the second slot's `imm` holds the offset into the value, the
/// kernel's own encoding. Clang would instead place the variable in `.data`/`.bss` and keep
/// the offset in the first slot's `imm` for libbpf to move; a BTF-less `maps` section has no
/// such form, and keeping the kernel's encoding means the disassembly shows the access the
/// kernel verifies.
pub fn write_object(programs: &[ElfProgram], maps: &[MapDef]) -> Result<Vec<u8>> {
    let mut names: HashSet<&str> = HashSet::new();
    claim_name(&mut names, LICENSE_SYMBOL, "the license")?;
    for m in maps {
        claim_name(&mut names, m.name.0, "a map")?;
    }
    for p in programs {
        claim_name(&mut names, &p.name, "a program")?;
        if reserved_section(&p.section) || p.section.contains('\0') {
            return Err(bad(format!("program `{}`: section name {:?} is reserved or invalid", p.name, p.section)));
        }
        if p.program.is_empty() {
            return Err(bad(format!("program `{}` has no instructions", p.name)));
        }
    }

    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little);

    // Maps first: program relocations refer to their symbols.
    let mut map_syms: BTreeMap<&str, SymbolId> = BTreeMap::new();
    if !maps.is_empty() {
        let sec = obj.add_section(Vec::new(), MAPS_SECTION.as_bytes().to_vec(), SectionKind::Data);
        for m in maps {
            let at = obj.append_section_data(sec, &map_def_bytes(m), 4);
            let sym = obj.add_symbol(data_symbol(m.name.0, at, MAP_DEF_SIZE, sec));
            map_syms.insert(m.name.0, sym);
        }
    }

    let sec = obj.add_section(Vec::new(), LICENSE_SECTION.as_bytes().to_vec(), SectionKind::Data);
    let license = format!("{}\0", crate::load::LICENSE);
    let at = obj.append_section_data(sec, license.as_bytes(), 1);
    obj.add_symbol(data_symbol(LICENSE_SYMBOL, at, license.len(), sec));

    // Sections in order of first appearance, so the object reads in the order given.
    let mut sections: Vec<(&str, SectionId)> = Vec::new();
    for p in programs {
        let sec = match sections.iter().find(|(s, _)| *s == p.section) {
            Some((_, id)) => *id,
            None => {
                let id = obj.add_section(Vec::new(), p.section.as_bytes().to_vec(), SectionKind::Text);
                sections.push((&p.section, id));
                id
            }
        };
        let insns = p.program.insns();
        let bytes = crate::insn::to_bytes(insns);
        let start = obj.append_section_data(sec, &bytes, 8);
        obj.add_symbol(Symbol {
            name: p.name.as_bytes().to_vec(),
            value: start,
            size: bytes.len() as u64,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(sec),
            flags: SymbolFlags::None,
        });
        for r in p.program.relocs() {
            check_ld_imm64(p, insns, r.insn)?;
            let sym = *map_syms.get(r.map.0).ok_or_else(|| {
                bad(format!("program `{}` refers to map `{}`, which is not among the maps given", p.name, r.map.0))
            })?;
            let want_src = match r.kind {
                RelocKind::Fd => opcode::BPF_PSEUDO_MAP_FD,
                RelocKind::Value { .. } => opcode::BPF_PSEUDO_MAP_VALUE,
            };
            if insns[r.insn].src() != want_src {
                return Err(bad(format!(
                    "program `{}`: slot {} is a {:?} reference but its src_reg is {}",
                    p.name,
                    r.insn,
                    r.kind,
                    insns[r.insn].src()
                )));
            }
            let reloc = Relocation {
                offset: start + (r.insn * size_of::<RawInsn>()) as u64,
                symbol: sym,
                addend: 0,
                flags: RelocationFlags::Elf { r_type: elf::R_BPF_64_64 },
            };
            obj.add_relocation(sec, reloc).map_err(obj_err)?;
        }
    }
    obj.write().map_err(obj_err)
}

/// A global `STT_OBJECT` symbol, as clang emits for a global variable.
fn data_symbol(name: &str, value: u64, size: usize, sec: SectionId) -> Symbol {
    Symbol {
        name: name.as_bytes().to_vec(),
        value,
        size: size as u64,
        kind: SymbolKind::Data,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Section(sec),
        flags: SymbolFlags::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{Asm, MapRef, R0, R1};
    use crate::sys::bpf::MapType;
    use object::read::{Object as _, ObjectSection as _, ObjectSymbol as _};

    const M: MapRef = MapRef("m");

    fn prog(offset: Option<u32>) -> Program {
        let mut a = Asm::new();
        match offset {
            Some(o) => a.ld_map_value(R1, M, o),
            None => a.ld_map_fd(R1, M),
        };
        a.mov64(R0, 0);
        a.exit();
        a.finish().unwrap()
    }

    fn map() -> MapDef {
        MapDef { name: M, map_type: MapType::Array, key_size: 4, value_size: 8, max_entries: 1, flags: 0 }
    }

    #[test]
    fn programs_sharing_a_section_get_their_own_symbols() {
        let point = AttachPoint::raw_tracepoint("sys_enter");
        let ps = [ElfProgram::new(&point, "a", prog(None)), ElfProgram::new(&point, "b", prog(Some(8)))];
        let bytes = write_object(&ps, &[map()]).unwrap();
        let f = object::File::parse(&*bytes).unwrap();
        let sec = f.section_by_name("raw_tracepoint/sys_enter").unwrap();
        assert_eq!(sec.size(), 2 * 4 * 8);
        let sym = |n: &str| f.symbols().find(|s| s.name() == Ok(n)).unwrap();
        assert_eq!((sym("a").address(), sym("b").address()), (0, 32));
        let relocs: Vec<u64> = sec.relocations().map(|(off, _)| off).collect();
        assert_eq!(relocs, vec![0, 32]);
    }

    #[test]
    fn refuses_what_it_cannot_write_faithfully() {
        let point = AttachPoint::raw_tracepoint("sys_enter");
        let p = ElfProgram::new(&point, "a", prog(None));
        let e = write_object(std::slice::from_ref(&p), &[]).unwrap_err().to_string();
        assert!(e.contains("map `m`"), "{e}");
        let e = write_object(&[p.clone(), p.clone()], &[map()]).unwrap_err().to_string();
        assert!(e.contains("defined twice"), "{e}");
        let clash = ElfProgram { name: "m".into(), ..p.clone() };
        assert!(write_object(&[clash], &[map()]).is_err());
        let maps_sec = ElfProgram { section: "maps".into(), ..p };
        assert!(write_object(&[maps_sec], &[map()]).is_err());
    }

    #[test]
    fn map_def_is_the_legacy_record() {
        let b = map_def_bytes(&map());
        assert_eq!(b, [2, 0, 0, 0, 4, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
