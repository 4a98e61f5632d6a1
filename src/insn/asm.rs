//! The assembler: builds a [`Program`] from constructors that read like C.
//!
//! Every emitting method is `#[track_caller]`, so each instruction slot remembers the line of
//! Rust that produced it; a verifier rejection can then point at the builder call, not only
//! at an instruction index.

use super::check;
use super::helper::Helper;
use super::model::*;
use super::opcode;
use std::fmt;
use std::panic::Location;

/// Where in the Rust source an instruction was emitted.
pub type Site = &'static Location<'static>;

/// A jump target, created by [`Asm::label`] and placed by [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Label(u32);

/// A symbolic reference to a map, resolved to an fd once the maps exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapRef(pub &'static str);

/// How a map reference is encoded into its 64-bit immediate load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocKind {
    /// `BPF_PSEUDO_MAP_FD`: the map itself.
    Fd,
    /// `BPF_PSEUDO_MAP_VALUE`: an address inside the single value of an array map.
    Value { offset: u32 },
}

/// A 64-bit immediate load at slot `insn` that refers to `map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapReloc {
    pub insn: usize,
    pub map: MapRef,
    pub kind: RelocKind,
}

/// A mistake in a program found without a kernel, with the builder call that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsmError {
    /// Instruction slot concerned, when there is one.
    pub index: Option<usize>,
    /// The Rust source location that emitted it.
    pub site: Option<Site>,
    pub reason: String,
}

impl Program {
    /// The static checks of [`check`](super::check) on this program, each mistake named with the
    /// builder call that emitted its slot.
    pub(crate) fn check(&self) -> Result<(), AsmError> {
        check::check(self.insns()).map_err(|f| AsmError {
            index: f.index,
            site: f.index.and_then(|i| self.site(i)),
            reason: f.reason,
        })
    }
}

impl AsmError {
    pub(crate) fn at(index: usize, site: Option<Site>, reason: impl Into<String>) -> AsmError {
        AsmError { index: Some(index), site, reason: reason.into() }
    }
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.index {
            write!(f, "instruction {i}: ")?;
        }
        f.write_str(&self.reason)?;
        if let Some(site) = self.site {
            write!(f, " (emitted at {}:{})", site.file(), site.line())?;
        }
        Ok(())
    }
}

impl std::error::Error for AsmError {}

/// A finished program: instruction slots with their source sites and unresolved map references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    insns: Vec<RawInsn>,
    sites: Vec<Site>,
    relocs: Vec<MapReloc>,
}

impl Program {
    /// The slots, with map references still zero.
    pub fn insns(&self) -> &[RawInsn] {
        &self.insns
    }

    /// Number of 8-byte slots.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// True for a program with no instructions (never produced by [`Asm::finish`]).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The builder call that emitted slot `index`.
    pub fn site(&self, index: usize) -> Option<Site> {
        self.sites.get(index).copied()
    }

    /// Map references, in slot order.
    pub fn relocs(&self) -> &[MapReloc] {
        &self.relocs
    }

    /// The maps the program refers to, each once, sorted by name.
    pub fn maps(&self) -> Vec<MapRef> {
        let mut v: Vec<MapRef> = self.relocs.iter().map(|r| r.map).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The slots with every map reference replaced by the fd `fd_of` gives for it.
    pub fn resolve(&self, fd_of: impl Fn(MapRef) -> Option<i32>) -> Result<Vec<RawInsn>, AsmError> {
        let mut out = self.insns.clone();
        for r in &self.relocs {
            let fd = fd_of(r.map)
                .ok_or_else(|| AsmError::at(r.insn, self.site(r.insn), format!("map `{}` was not created", r.map.0)))?;
            let (src, hi) = match r.kind {
                RelocKind::Fd => (opcode::BPF_PSEUDO_MAP_FD, 0),
                RelocKind::Value { offset } => (opcode::BPF_PSEUDO_MAP_VALUE, offset as i32),
            };
            let slot = out.get_mut(r.insn).ok_or_else(|| AsmError::at(r.insn, None, "relocation past the end"))?;
            slot.regs = (src << 4) | slot.dst();
            slot.imm = fd;
            if let Some(next) = out.get_mut(r.insn + 1) {
                next.imm = hi;
            }
        }
        Ok(out)
    }

    /// Builds a program from raw slots (for tests and the ELF reader), with no source sites.
    pub fn from_raw(insns: Vec<RawInsn>) -> Program {
        Program { sites: Vec::new(), relocs: Vec::new(), insns }
    }
}

/// The program builder. Emitting methods never fail; mistakes are reported by [`Asm::finish`].
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<RawInsn>,
    sites: Vec<Site>,
    labels: Vec<(&'static str, Option<usize>, Option<Site>)>,
    fixups: Vec<(usize, Label)>,
    relocs: Vec<MapReloc>,
    errors: Vec<AsmError>,
}

macro_rules! alu_ops {
    ($($name64:ident, $name32:ident => $op:ident;)*) => {$(
        #[doc = concat!("`dst ", stringify!($op), "= src` in 64 bits.")]
        #[track_caller]
        pub fn $name64(&mut self, dst: Reg, src: impl Into<Src>) -> &mut Self {
            self.alu64(AluOp::$op, dst, src)
        }
        #[doc = concat!("`dst ", stringify!($op), "= src` in 32 bits (zero-extends).")]
        #[track_caller]
        pub fn $name32(&mut self, dst: Reg, src: impl Into<Src>) -> &mut Self {
            self.alu32(AluOp::$op, dst, src)
        }
    )*};
}

macro_rules! jumps {
    ($($name:ident, $name32:ident => $cond:ident;)*) => {$(
        #[doc = concat!("`if dst ", stringify!($cond), " src goto label` comparing 64 bits.")]
        #[track_caller]
        pub fn $name(&mut self, dst: Reg, src: impl Into<Src>, label: Label) -> &mut Self {
            self.jmp(Width::W64, Cond::$cond, dst, src, label)
        }
        #[doc = concat!("`if dst ", stringify!($cond), " src goto label` comparing the low 32 bits.")]
        #[track_caller]
        pub fn $name32(&mut self, dst: Reg, src: impl Into<Src>, label: Label) -> &mut Self {
            self.jmp(Width::W32, Cond::$cond, dst, src, label)
        }
    )*};
}

macro_rules! mem_ops {
    ($($ldx:ident, $stx:ident, $st:ident => $size:ident;)*) => {$(
        #[doc = concat!("`dst = *(", stringify!($size), " *)(src + off)`.")]
        #[track_caller]
        pub fn $ldx(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
            self.emit(Instruction::Load { size: Size::$size, dst, src, off })
        }
        #[doc = concat!("`*(", stringify!($size), " *)(dst + off) = src`.")]
        #[track_caller]
        pub fn $stx(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
            self.emit(Instruction::Store { size: Size::$size, dst, off, src })
        }
        #[doc = concat!("`*(", stringify!($size), " *)(dst + off) = imm`.")]
        #[track_caller]
        pub fn $st(&mut self, dst: Reg, off: i16, imm: i32) -> &mut Self {
            self.emit(Instruction::StoreImm { size: Size::$size, dst, off, imm })
        }
    )*};
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Number of slots emitted so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// True before anything is emitted.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Emits any instruction.
    #[track_caller]
    pub fn emit(&mut self, insn: Instruction) -> &mut Self {
        let site = Location::caller();
        let before = self.insns.len();
        insn.encode_into(&mut self.insns);
        for _ in before..self.insns.len() {
            self.sites.push(site);
        }
        self
    }

    /// A new, unplaced jump target; `name` appears in error messages.
    pub fn label(&mut self, name: &'static str) -> Label {
        self.labels.push((name, None, None));
        Label(self.labels.len() as u32 - 1)
    }

    /// Places `label` at the next instruction.
    #[track_caller]
    pub fn bind(&mut self, label: Label) -> &mut Self {
        let here = self.insns.len();
        let site = Location::caller();
        match self.labels.get_mut(label.0 as usize) {
            Some(slot) if slot.1.is_none() => {
                slot.1 = Some(here);
                slot.2 = Some(site);
            }
            Some(slot) => {
                let name = slot.0;
                self.errors.push(AsmError {
                    index: Some(here),
                    site: Some(site),
                    reason: format!("label `{name}` bound twice"),
                });
            }
            None => self.errors.push(AsmError {
                index: Some(here),
                site: Some(site),
                reason: "label from another Asm".into(),
            }),
        }
        self
    }

    /// `dst op= src` in 64 bits.
    #[track_caller]
    pub fn alu64(&mut self, op: AluOp, dst: Reg, src: impl Into<Src>) -> &mut Self {
        self.emit(Instruction::Alu { width: Width::W64, op, dst, src: src.into() })
    }

    /// `dst op= src` in 32 bits.
    #[track_caller]
    pub fn alu32(&mut self, op: AluOp, dst: Reg, src: impl Into<Src>) -> &mut Self {
        self.emit(Instruction::Alu { width: Width::W32, op, dst, src: src.into() })
    }

    alu_ops! {
        mov64, mov32 => Mov;
        add64, add32 => Add;
        sub64, sub32 => Sub;
        mul64, mul32 => Mul;
        div64, div32 => Div;
        mod64, mod32 => Mod;
        or64, or32 => Or;
        and64, and32 => And;
        xor64, xor32 => Xor;
        lsh64, lsh32 => Lsh;
        rsh64, rsh32 => Rsh;
        arsh64, arsh32 => Arsh;
    }

    /// `dst = -dst` in 64 bits.
    #[track_caller]
    pub fn neg64(&mut self, dst: Reg) -> &mut Self {
        self.emit(Instruction::Neg { width: Width::W64, dst })
    }

    /// `dst = -dst` in 32 bits.
    #[track_caller]
    pub fn neg32(&mut self, dst: Reg) -> &mut Self {
        self.emit(Instruction::Neg { width: Width::W32, dst })
    }

    /// `dst = be<bits>(dst)`: host to big endian.
    #[track_caller]
    pub fn be(&mut self, bits: u8, dst: Reg) -> &mut Self {
        self.emit(Instruction::Endian { kind: Endian::ToBe, bits, dst })
    }

    /// `dst = le<bits>(dst)`: host to little endian.
    #[track_caller]
    pub fn le(&mut self, bits: u8, dst: Reg) -> &mut Self {
        self.emit(Instruction::Endian { kind: Endian::ToLe, bits, dst })
    }

    /// `dst = bswap<bits>(dst)` (kernel 6.6+).
    #[track_caller]
    pub fn bswap(&mut self, bits: u8, dst: Reg) -> &mut Self {
        self.emit(Instruction::Endian { kind: Endian::Swap, bits, dst })
    }

    mem_ops! {
        ldx_b, stx_b, st_b => B;
        ldx_h, stx_h, st_h => H;
        ldx_w, stx_w, st_w => W;
        ldx_dw, stx_dw, st_dw => DW;
    }

    /// Atomic `op` on `*(size *)(dst + off)` with `src`.
    #[track_caller]
    pub fn atomic(&mut self, size: Size, op: AtomicOp, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.emit(Instruction::Atomic { size, op, dst, src, off })
    }

    /// `lock *(u64 *)(dst + off) += src`.
    #[track_caller]
    pub fn atomic_add64(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.atomic(Size::DW, AtomicOp::Add { fetch: false }, dst, off, src)
    }

    /// `dst = imm` with a full 64-bit constant.
    #[track_caller]
    pub fn ld_imm64(&mut self, dst: Reg, imm: i64) -> &mut Self {
        self.emit(Instruction::LoadImm64 { dst, value: Imm64::Const(imm) })
    }

    /// `dst = &map`, for helper calls that take a map.
    #[track_caller]
    pub fn ld_map_fd(&mut self, dst: Reg, map: MapRef) -> &mut Self {
        self.relocs.push(MapReloc { insn: self.insns.len(), map, kind: RelocKind::Fd });
        self.emit(Instruction::LoadImm64 { dst, value: Imm64::MapFd(0) })
    }

    /// `dst = &map_value[0] + offset`: direct access to an array map's single value.
    #[track_caller]
    pub fn ld_map_value(&mut self, dst: Reg, map: MapRef, offset: u32) -> &mut Self {
        self.relocs.push(MapReloc { insn: self.insns.len(), map, kind: RelocKind::Value { offset } });
        self.emit(Instruction::LoadImm64 { dst, value: Imm64::MapValue { fd: 0, offset } })
    }

    /// `goto label`.
    #[track_caller]
    pub fn ja(&mut self, label: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), label));
        self.emit(Instruction::Ja { off: 0 })
    }

    /// `if dst cond src goto label`.
    #[track_caller]
    pub fn jmp(&mut self, width: Width, cond: Cond, dst: Reg, src: impl Into<Src>, label: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), label));
        self.emit(Instruction::Jump { width, cond, dst, src: src.into(), off: 0 })
    }

    jumps! {
        jeq, jeq32 => Eq;
        jne, jne32 => Ne;
        jgt, jgt32 => Gt;
        jge, jge32 => Ge;
        jlt, jlt32 => Lt;
        jle, jle32 => Le;
        jsgt, jsgt32 => Sgt;
        jsge, jsge32 => Sge;
        jslt, jslt32 => Slt;
        jsle, jsle32 => Sle;
        jset, jset32 => Set;
    }

    /// `r0 = helper(r1, ..., r5)`; clobbers r1-r5.
    #[track_caller]
    pub fn call(&mut self, helper: Helper) -> &mut Self {
        self.emit(Instruction::Call(Call::Helper(helper)))
    }

    /// `r0 = helper(&map, fp + key)`: a map helper (lookup, update, delete) on the key stored
    /// at stack offset `key`. Sets r1 and r2; an update's r3 and r4 must be set before.
    #[track_caller]
    pub fn map_call(&mut self, helper: Helper, map: MapRef, key: i16) -> &mut Self {
        self.ld_map_fd(R1, map).stack_addr(R2, key).call(helper)
    }

    /// `dst = fp + slot`: the address of the stack slot at offset `slot` (negative), as a
    /// helper's pointer argument. Two instructions: the verifier wants the frame pointer
    /// copied, then offset.
    #[track_caller]
    pub fn stack_addr(&mut self, dst: Reg, slot: i16) -> &mut Self {
        self.mov64(dst, R10).add64(dst, i32::from(slot))
    }

    /// `return r0`.
    #[track_caller]
    pub fn exit(&mut self) -> &mut Self {
        self.emit(Instruction::Exit)
    }

    /// Resolves labels, runs the static checks, and returns the program.
    pub fn finish(mut self) -> Result<Program, AsmError> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        for &(at, label) in &self.fixups {
            let site = self.sites.get(at).copied();
            let (name, target, _) = self
                .labels
                .get(label.0 as usize)
                .copied()
                .ok_or_else(|| AsmError::at(at, site, "label from another Asm"))?;
            let target = target
                .ok_or_else(|| AsmError::at(at, site, format!("jump to label `{name}`, which is never bound")))?;
            let rel = target as i64 - at as i64 - 1;
            let off = i16::try_from(rel).map_err(|_| {
                AsmError::at(
                    at,
                    site,
                    format!("jump to label `{name}` spans {rel} instructions, beyond the 16-bit offset"),
                )
            })?;
            if let Some(slot) = self.insns.get_mut(at) {
                slot.off = off;
            }
        }
        let program = Program { insns: self.insns, sites: self.sites, relocs: self.relocs };
        program.check()?;
        Ok(program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let top = a.label("top");
        let out = a.label("out");
        a.mov64(R0, 0);
        a.bind(top);
        a.add64(R0, 1);
        a.jge(R0, 10, out);
        a.ja(top);
        a.bind(out);
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(p.insns()[2].off, 1); // to slot 4
        assert_eq!(p.insns()[3].off, -3); // back to slot 1
    }

    #[test]
    fn map_call_passes_the_map_and_the_stack_key() {
        let mut a = Asm::new();
        a.st_w(R10, -4, 0);
        a.map_call(Helper::MapLookupElem, MapRef("m"), -4);
        a.exit();
        let text = a.finish().unwrap().disasm();
        let lines: Vec<&str> = text.lines().skip(1).take(4).map(|l| l.split_once(": ").unwrap().1).collect();
        assert_eq!(
            lines,
            ["(18) r1 = map[fd:0] // map m", "(bf) r2 = r10", "(07) r2 += -4", "(85) call bpf_map_lookup_elem#1"],
            "{text}"
        );
    }

    #[test]
    fn unbound_label_names_its_site() {
        let mut a = Asm::new();
        let nowhere = a.label("nowhere");
        a.mov64(R0, 0);
        a.ja(nowhere);
        a.exit();
        let e = a.finish().unwrap_err();
        assert_eq!(e.index, Some(1));
        assert!(e.to_string().contains("`nowhere`"), "{e}");
        assert!(e.to_string().contains("asm.rs"), "{e}");
    }

    #[test]
    fn map_refs_resolve_to_fds() {
        let mut a = Asm::new();
        a.ld_map_fd(R1, MapRef("counters"));
        a.ld_map_value(R2, MapRef("config"), 16);
        a.mov64(R0, 0);
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(p.maps(), vec![MapRef("config"), MapRef("counters")]);
        let raw = p.resolve(|m| Some(if m.0 == "counters" { 7 } else { 9 })).unwrap();
        assert_eq!((raw[0].src(), raw[0].imm, raw[1].imm), (1, 7, 0));
        assert_eq!((raw[2].src(), raw[2].imm, raw[3].imm), (2, 9, 16));
        assert!(p.resolve(|_| None).unwrap_err().to_string().contains("`counters`"));
    }
}
