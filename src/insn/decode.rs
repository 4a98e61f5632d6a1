//! Decoding slots into [`Instruction`]s, one function per instruction class.
//!
//! Strict where the kernel is: a field the instruction does not use must be zero (the
//! verifier refuses it with "uses reserved fields"), so that every slot that decodes
//! re-encodes to the same bytes and the disassembly shows all there is.

use super::helper::Helper;
use super::model::{
    AluOp, AtomicOp, Call, Cond, DecodeError, Endian, Imm64, Instruction, RawInsn, Reg, Size, Src, Width,
};
use super::opcode::*;

impl Instruction {
    /// Decodes the instruction starting at `slots[index]`; returns it and how many slots it used.
    ///
    /// Strict where the kernel is: a field the instruction does not use must be zero (the
    /// verifier refuses it with "uses reserved fields"), so that every slot that decodes
    /// re-encodes to the same bytes and the disassembly shows all there is.
    pub fn decode(slots: &[RawInsn], index: usize) -> Result<(Instruction, usize), DecodeError> {
        decode(slots, index)
    }
}

/// Decodes a whole program slot by slot.
pub fn decode_all(slots: &[RawInsn]) -> Result<Vec<Instruction>, DecodeError> {
    walk(slots).map(|(_, insn)| insn).collect()
}

/// Decodes the instruction starting at `slots[index]`; returns it and how many slots it used.
fn decode(slots: &[RawInsn], index: usize) -> Result<(Instruction, usize), DecodeError> {
    let raw = *slots.get(index).ok_or_else(|| DecodeError { index, reason: "past the end of the program".into() })?;
    let d = Slot { index, raw, code: raw.code };
    let insn = match raw.code & 0x07 {
        BPF_ALU => d.alu(Width::W32)?,
        BPF_ALU64 => d.alu(Width::W64)?,
        BPF_JMP => d.jmp(Width::W64)?,
        BPF_JMP32 => d.jmp(Width::W32)?,
        BPF_LD => return Ok((d.ld_imm64(slots.get(index + 1))?, 2)),
        BPF_LDX => d.ldx()?,
        BPF_ST => d.st()?,
        _ => d.stx()?, // BPF_STX
    };
    Ok((insn, 1))
}

/// The one walk over a program's slots: each instruction's first slot index and what decoding
/// it gave. A 64-bit load takes two slots, and a slot that does not decode takes one, so one bad
/// slot never hides the rest (a caller that wants the first error stops there).
pub fn walk(slots: &[RawInsn]) -> impl Iterator<Item = (usize, Result<Instruction, DecodeError>)> + '_ {
    let mut index = 0;
    std::iter::from_fn(move || {
        if index >= slots.len() {
            return None;
        }
        let at = index;
        let (insn, n) = match decode(slots, at) {
            Ok((insn, n)) => (Ok(insn), n),
            Err(e) => (Err(e), 1),
        };
        index += n;
        Some((at, insn))
    })
}

/// The slot being decoded, with the checks every class shares.
struct Slot {
    index: usize,
    raw: RawInsn,
    code: u8,
}

impl Slot {
    fn err(&self, reason: String) -> DecodeError {
        DecodeError { index: self.index, reason }
    }

    fn reg(&self, n: u8, what: &str) -> Result<Reg, DecodeError> {
        Reg::from_u8(n).ok_or_else(|| self.err(format!("{what} register r{n} does not exist")))
    }

    fn dst(&self) -> Result<Reg, DecodeError> {
        self.reg(self.raw.dst(), "dst")
    }

    fn src_reg(&self) -> Result<Reg, DecodeError> {
        self.reg(self.raw.src(), "src")
    }

    /// Fields that must be zero for this opcode, checked in one place.
    fn unused(&self, fields: &[(&str, bool)]) -> Result<(), DecodeError> {
        match fields.iter().find(|(_, nonzero)| *nonzero) {
            Some((name, _)) => Err(self.err(format!(
                "opcode {:#04x} has a nonzero {name}, a field it does not use \
                 (the kernel rejects reserved fields)",
                self.code
            ))),
            None => Ok(()),
        }
    }

    /// The second operand of ALU operations and conditional jumps: a register (`BPF_X`,
    /// immediate unused) or the immediate (src register unused).
    fn operand(&self) -> Result<Src, DecodeError> {
        if self.code & BPF_X != 0 {
            self.unused(&[("immediate", self.raw.imm != 0)])?;
            Ok(Src::Reg(self.src_reg()?))
        } else {
            self.unused(&[("src register", self.raw.src() != 0)])?;
            Ok(Src::Imm(self.raw.imm))
        }
    }

    /// `BPF_ALU` and `BPF_ALU64`: two-operand operations, negation and byte swaps.
    fn alu(&self, width: Width) -> Result<Instruction, DecodeError> {
        let (code, raw) = (self.code, self.raw);
        let op = code & 0xf0;
        let dst = self.dst()?;
        if op == BPF_NEG {
            self.unused(&[
                ("source bit", code & BPF_X != 0),
                ("src register", raw.src() != 0),
                ("offset", raw.off != 0),
                ("immediate", raw.imm != 0),
            ])?;
            return Ok(Instruction::Neg { width, dst });
        }
        if op == BPF_END {
            let kind = match (width, code & BPF_X) {
                (Width::W32, 0) => Endian::ToLe,
                (Width::W32, _) => Endian::ToBe,
                (Width::W64, 0) => Endian::Swap,
                _ => return Err(self.err(format!("opcode {code:#04x}: no such byte-swap"))),
            };
            self.unused(&[("src register", raw.src() != 0), ("offset", raw.off != 0)])?;
            let bits = match raw.imm {
                16 | 32 | 64 => raw.imm as u8,
                n => return Err(self.err(format!("byte swap of {n} bits"))),
            };
            return Ok(Instruction::Endian { kind, bits, dst });
        }
        let op = AluOp::from_code(op).ok_or_else(|| self.err(format!("unknown ALU opcode {code:#04x}")))?;
        if raw.off != 0 {
            return Err(
                self.err(format!("ALU opcode {code:#04x} with offset {} (signed/sx forms are not modelled)", raw.off))
            );
        }
        Ok(Instruction::Alu { width, op, dst, src: self.operand()? })
    }

    /// `BPF_JMP` and `BPF_JMP32`: `ja`, calls, `exit` (64-bit class only) and conditional jumps.
    fn jmp(&self, width: Width) -> Result<Instruction, DecodeError> {
        let (code, raw) = (self.code, self.raw);
        let op = code & 0xf0;
        match (width, op) {
            (Width::W64, BPF_JA) => {
                self.unused(&[
                    ("source bit", code & BPF_X != 0),
                    ("dst register", raw.dst() != 0),
                    ("src register", raw.src() != 0),
                    ("immediate", raw.imm != 0),
                ])?;
                Ok(Instruction::Ja { off: raw.off })
            }
            (Width::W64, BPF_CALL) => {
                self.unused(&[
                    ("source bit", code & BPF_X != 0),
                    ("dst register", raw.dst() != 0),
                    ("offset", raw.off != 0),
                ])?;
                let call = match raw.src() {
                    0 => Call::Helper(Helper::from_id(raw.imm as u32)),
                    BPF_PSEUDO_CALL => Call::Local(raw.imm),
                    BPF_PSEUDO_KFUNC_CALL => Call::Kfunc(raw.imm),
                    s => return Err(self.err(format!("call with unknown src {s}"))),
                };
                Ok(Instruction::Call(call))
            }
            (Width::W64, BPF_EXIT) => {
                self.unused(&[
                    ("source bit", code & BPF_X != 0),
                    ("dst register", raw.dst() != 0),
                    ("src register", raw.src() != 0),
                    ("offset", raw.off != 0),
                    ("immediate", raw.imm != 0),
                ])?;
                Ok(Instruction::Exit)
            }
            _ => {
                let cond = Cond::from_code(op).ok_or_else(|| self.err(format!("unknown jump opcode {code:#04x}")))?;
                let dst = self.dst()?;
                Ok(Instruction::Jump { width, cond, dst, src: self.operand()?, off: raw.off })
            }
        }
    }

    /// `BPF_LD`: only the two-slot 64-bit immediate load; `next` is its second slot.
    fn ld_imm64(&self, next: Option<&RawInsn>) -> Result<Instruction, DecodeError> {
        let (code, raw) = (self.code, self.raw);
        if code != BPF_LD | BPF_DW | BPF_IMM {
            // Packet-access modes of classic BPF (`linux/bpf_common.h`).
            const BPF_ABS: u8 = 0x20;
            const BPF_IND: u8 = 0x40;
            return Err(self.err(match code & 0xe0 {
                BPF_ABS | BPF_IND => {
                    format!("legacy packet load {code:#04x} is not supported")
                }
                _ => format!("no such load opcode {code:#04x}"),
            }));
        }
        self.unused(&[("offset", raw.off != 0)])?;
        let next = next.ok_or_else(|| self.err("64-bit immediate load is missing its second slot".into()))?;
        if next.code != 0 || next.regs != 0 || next.off != 0 {
            return Err(self.err("second slot of a 64-bit immediate load is not zero-coded".into()));
        }
        let dst = self.dst()?;
        let value = match raw.src() {
            0 => Imm64::Const((i64::from(next.imm) << 32) | i64::from(raw.imm as u32)),
            BPF_PSEUDO_MAP_FD if next.imm == 0 => Imm64::MapFd(raw.imm),
            BPF_PSEUDO_MAP_FD => {
                return Err(self.err(format!("map fd load with {} in its second slot, which must be 0", next.imm)))
            }
            BPF_PSEUDO_MAP_VALUE => Imm64::MapValue { fd: raw.imm, offset: next.imm as u32 },
            s => return Err(self.err(format!("64-bit immediate load with unsupported pseudo source {s}"))),
        };
        Ok(Instruction::LoadImm64 { dst, value })
    }

    /// `BPF_LDX`: loads from memory.
    fn ldx(&self) -> Result<Instruction, DecodeError> {
        let code = self.code;
        if code & 0xe0 != BPF_MEM {
            return Err(self.err(format!("load mode of opcode {code:#04x} is not supported")));
        }
        self.unused(&[("immediate", self.raw.imm != 0)])?;
        Ok(Instruction::Load { size: Size::from_code(code), dst: self.dst()?, src: self.src_reg()?, off: self.raw.off })
    }

    /// `BPF_ST`: stores of an immediate.
    fn st(&self) -> Result<Instruction, DecodeError> {
        let code = self.code;
        if code & 0xe0 != BPF_MEM {
            return Err(self.err(format!("store mode of opcode {code:#04x} is not supported")));
        }
        self.unused(&[("src register", self.raw.src() != 0)])?;
        Ok(Instruction::StoreImm {
            size: Size::from_code(code),
            dst: self.dst()?,
            off: self.raw.off,
            imm: self.raw.imm,
        })
    }

    /// `BPF_STX`: stores of a register and atomic operations.
    fn stx(&self) -> Result<Instruction, DecodeError> {
        let (code, raw) = (self.code, self.raw);
        let size = Size::from_code(code);
        let dst = self.dst()?;
        let src = self.src_reg()?;
        match code & 0xe0 {
            BPF_MEM => {
                self.unused(&[("immediate", raw.imm != 0)])?;
                Ok(Instruction::Store { size, dst, off: raw.off, src })
            }
            BPF_ATOMIC if matches!(size, Size::W | Size::DW) => {
                let op = AtomicOp::from_imm(raw.imm)
                    .ok_or_else(|| self.err(format!("unknown atomic operation {:#x}", raw.imm)))?;
                Ok(Instruction::Atomic { size, op, dst, src, off: raw.off })
            }
            _ => Err(self.err(format!("store mode of opcode {code:#04x} is not supported"))),
        }
    }
}
