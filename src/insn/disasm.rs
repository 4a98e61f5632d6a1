//! Disassembly in the syntax `bpftool prog dump xlated` prints (the kernel's
//! `kernel/bpf/disasm.c`), so that a verifier log, a bpftool dump and KTM's own output can be
//! read side by side.

use super::{AtomicOp, Call, Endian, Imm64, Instruction, Program, RawInsn, Reg, Size, Src, Width};
use std::fmt;

fn reg(width: Width, r: Reg) -> String {
    match width {
        Width::W32 => format!("w{}", r.num()),
        Width::W64 => format!("r{}", r.num()),
    }
}

fn size(s: Size) -> &'static str {
    match s {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

fn mem(s: Size, base: Reg, off: i16) -> String {
    format!("*({} *)(r{} {off:+})", size(s), base.num())
}

/// One instruction, without the opcode prefix.
pub fn disasm_insn(insn: &Instruction) -> String {
    match *insn {
        Instruction::Alu { width, op, dst, src } => match src {
            Src::Reg(s) => format!("{} {} {}", reg(width, dst), op.symbol(), reg(width, s)),
            Src::Imm(i) => format!("{} {} {i}", reg(width, dst), op.symbol()),
        },
        Instruction::Neg { width, dst } => format!("{} = -{}", reg(width, dst), reg(width, dst)),
        Instruction::Endian { kind, bits, dst } => {
            let name = match kind {
                Endian::ToLe => "le",
                Endian::ToBe => "be",
                Endian::Swap => "bswap",
            };
            format!("r{} = {name}{bits} r{}", dst.num(), dst.num())
        }
        Instruction::LoadImm64 { dst, value } => match value {
            Imm64::Const(v) => format!("r{} = {:#x}", dst.num(), v),
            Imm64::MapFd(fd) => format!("r{} = map[fd:{fd}]", dst.num()),
            Imm64::MapValue { fd, offset } => format!("r{} = map[fd:{fd}][0]+{offset}", dst.num()),
        },
        Instruction::Load { size: s, dst, src, off } => format!("r{} = {}", dst.num(), mem(s, src, off)),
        Instruction::StoreImm { size: s, dst, off, imm } => format!("{} = {imm}", mem(s, dst, off)),
        Instruction::Store { size: s, dst, off, src } => format!("{} = r{}", mem(s, dst, off), src.num()),
        Instruction::Atomic { size: s, op, dst, src, off } => {
            let prefix = if s == Size::DW { "atomic64" } else { "atomic" };
            let at = format!("({} *)(r{} {off:+})", size(s), dst.num());
            let (name, sym, fetch) = match op {
                AtomicOp::Add { fetch } => ("add", "+=", fetch),
                AtomicOp::Or { fetch } => ("or", "|=", fetch),
                AtomicOp::And { fetch } => ("and", "&=", fetch),
                AtomicOp::Xor { fetch } => ("xor", "^=", fetch),
                AtomicOp::Xchg => return format!("r{} = {prefix}_xchg({at}, r{})", src.num(), src.num()),
                AtomicOp::Cmpxchg => return format!("r0 = {prefix}_cmpxchg({at}, r0, r{})", src.num()),
            };
            if fetch {
                format!("r{} = {prefix}_fetch_{name}({at}, r{})", src.num(), src.num())
            } else {
                format!("lock {} {sym} r{}", mem(s, dst, off), src.num())
            }
        }
        Instruction::Ja { off } => format!("goto pc{off:+}"),
        Instruction::Jump { width, cond, dst, src, off } => match src {
            Src::Reg(s) => format!("if {} {} {} goto pc{off:+}", reg(width, dst), cond.symbol(), reg(width, s)),
            Src::Imm(i) => format!("if {} {} {:#x} goto pc{off:+}", reg(width, dst), cond.symbol(), i as u32),
        },
        Instruction::Call(Call::Helper(h)) => match h.name() {
            Some(name) => format!("call bpf_{name}#{}", h.id()),
            None => format!("call unknown#{}", h.id()),
        },
        Instruction::Call(Call::Local(rel)) => format!("call pc{rel:+}"),
        Instruction::Call(Call::Kfunc(id)) => format!("call kernel-function#{id}"),
        Instruction::Exit => "exit".to_string(),
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(2);
        self.encode_into(&mut raw);
        write!(f, "({:02x}) {}", raw.first().map_or(0, |r| r.code), disasm_insn(self))
    }
}

/// The slot at `index` of raw slots, printed; undecodable slots say why.
fn slot_text(slots: &[RawInsn], index: usize) -> (String, usize) {
    let code = slots.get(index).map_or(0, |r| r.code);
    match Instruction::decode(slots, index) {
        Ok((insn, n)) => (format!("({code:02x}) {}", disasm_insn(&insn)), n),
        Err(e) => (format!("({code:02x}) <invalid: {}>", e.reason), 1),
    }
}

/// A whole program, numbered as bpftool numbers it (the second slot of a 64-bit load takes
/// a number but no line).
pub fn disasm(slots: &[RawInsn]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < slots.len() {
        let (text, n) = slot_text(slots, i);
        out.push_str(&format!("{i:4}: {text}\n"));
        i += n;
    }
    out
}

/// The instruction at slot `index` of a program, printed (for the verifier error).
pub fn disasm_at(program: &Program, index: usize) -> Option<String> {
    (index < program.len()).then(|| slot_text(program.insns(), index).0)
}

/// A program with its map references named after each map load.
pub fn disasm_program(program: &Program) -> String {
    let mut out = String::new();
    let mut i = 0;
    let slots = program.insns();
    while i < slots.len() {
        let (text, n) = slot_text(slots, i);
        out.push_str(&format!("{i:4}: {text}"));
        if let Some(r) = program.relocs().iter().find(|r| r.insn == i) {
            out.push_str(&format!("  ; map {}", r.map.0));
        }
        out.push('\n');
        i += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{Asm, Cond, Helper, MapRef, R0, R1, R10, R2};

    fn one(f: impl FnOnce(&mut Asm)) -> String {
        let mut a = Asm::new();
        f(&mut a);
        let raw = a.insns_for_test();
        slot_text(&raw, 0).0
    }

    #[test]
    fn bpftool_syntax() {
        assert_eq!(
            one(|a| {
                a.mov64(R0, 0);
            }),
            "(b7) r0 = 0"
        );
        assert_eq!(
            one(|a| {
                a.mov64(R1, R10);
            }),
            "(bf) r1 = r10"
        );
        assert_eq!(
            one(|a| {
                a.add64(R1, -8);
            }),
            "(07) r1 += -8"
        );
        assert_eq!(
            one(|a| {
                a.mov32(R0, 0);
            }),
            "(b4) w0 = 0"
        );
        assert_eq!(
            one(|a| {
                a.mov32(R1, R2);
            }),
            "(bc) w1 = w2"
        );
        assert_eq!(
            one(|a| {
                a.arsh64(R1, 3);
            }),
            "(c7) r1 s>>= 3"
        );
        assert_eq!(
            one(|a| {
                a.neg64(R1);
            }),
            "(87) r1 = -r1"
        );
        assert_eq!(
            one(|a| {
                a.ldx_dw(R1, R1, 8);
            }),
            "(79) r1 = *(u64 *)(r1 +8)"
        );
        assert_eq!(
            one(|a| {
                a.stx_dw(R10, -8, R1);
            }),
            "(7b) *(u64 *)(r10 -8) = r1"
        );
        assert_eq!(
            one(|a| {
                a.st_dw(R10, -8, 0);
            }),
            "(7a) *(u64 *)(r10 -8) = 0"
        );
        assert_eq!(
            one(|a| {
                a.ld_imm64(R1, 0x1234);
            }),
            "(18) r1 = 0x1234"
        );
        assert_eq!(
            one(|a| {
                a.ld_map_fd(R1, MapRef("m"));
            }),
            "(18) r1 = map[fd:0]"
        );
        assert_eq!(
            one(|a| {
                a.call(Helper::MapLookupElem);
            }),
            "(85) call bpf_map_lookup_elem#1"
        );
        assert_eq!(
            one(|a| {
                a.atomic_add64(R0, 0, R1);
            }),
            "(db) lock *(u64 *)(r0 +0) += r1"
        );
        assert_eq!(
            one(|a| {
                a.atomic(Size::DW, AtomicOp::Add { fetch: true }, R0, 0, R1);
            }),
            "(db) r1 = atomic64_fetch_add((u64 *)(r0 +0), r1)"
        );
        assert_eq!(
            one(|a| {
                a.atomic(Size::W, AtomicOp::Cmpxchg, R0, 4, R1);
            }),
            "(c3) r0 = atomic_cmpxchg((u32 *)(r0 +4), r0, r1)"
        );
        assert_eq!(
            one(|a| {
                a.be(16, R1);
            }),
            "(dc) r1 = be16 r1"
        );
        assert_eq!(
            one(|a| {
                a.le(16, R1);
            }),
            "(d4) r1 = le16 r1"
        );
        assert_eq!(
            one(|a| {
                a.exit();
            }),
            "(95) exit"
        );
        let jump = Instruction::Jump { width: Width::W64, cond: Cond::Eq, dst: R0, src: Src::Imm(0), off: 3 };
        assert_eq!(jump.to_string(), "(15) if r0 == 0x0 goto pc+3");
        let jump32 = Instruction::Jump { width: Width::W32, cond: Cond::Sgt, dst: R1, src: Src::Reg(R2), off: -2 };
        assert_eq!(jump32.to_string(), "(6e) if w1 s> w2 goto pc-2");
        assert_eq!(Instruction::Ja { off: -4 }.to_string(), "(05) goto pc-4");
    }

    #[test]
    fn numbering_skips_the_second_slot_and_bad_slots_say_why() {
        let mut raw = Instruction::LoadImm64 { dst: R1, value: Imm64::Const(1) }.encode();
        raw.push(RawInsn::new(0xff, 0, 0, 0, 0));
        raw.extend(Instruction::Exit.encode());
        let text = disasm(&raw);
        assert_eq!(text, "   0: (18) r1 = 0x1\n   2: (ff) <invalid: unknown ALU opcode 0xff>\n   3: (95) exit\n");
    }
}
