//! Static checks that need no kernel.
//!
//! The verifier rejects these mistakes too, but only at load time, on the target machine,
//! with an instruction index. Caught here, in [`super::Asm::finish`], they name the line of
//! Rust that emitted the instruction and fail in `cargo test` rather than in production.
//! Each check is one the kernel makes too, so nothing refused here would have loaded, with
//! two approximations in the register check: it follows every branch (the verifier skips
//! one it can prove is never taken, so a read that only such a path reaches is refused here
//! and not there), and it counts every call as setting r0.

use super::decode::walk;
use super::disasm::insn_body;
use super::model::{Call, Instruction, RawInsn, Reg, Src};
use std::fmt;

/// The kernel's limit on a program's length (`BPF_COMPLEXITY_LIMIT_INSNS`), in slots.
pub(crate) const MAX_SLOTS: usize = 1_000_000;

/// A set of registers as a bit mask, bit `n` for `rn`.
type Regs = u16;

const fn bit(r: Reg) -> Regs {
    1 << r as u8
}

/// What is known set when the program starts: the context in r1, the frame pointer.
const AT_ENTRY: Regs = bit(Reg::R1) | bit(Reg::R10);
/// What a bpf-to-bpf callee may read on entry: its arguments and the frame pointer. (How
/// many arguments it takes is not known here, so all five count as set.)
const AT_SUBPROG: Regs = AT_ENTRY | bit(Reg::R2) | bit(Reg::R3) | bit(Reg::R4) | bit(Reg::R5);
/// Registers a call leaves unreadable: the argument registers.
const CLOBBERED_BY_CALL: Regs = bit(Reg::R1) | bit(Reg::R2) | bit(Reg::R3) | bit(Reg::R4) | bit(Reg::R5);

/// A mistake found, at the slot it is about (`None`: the program as a whole). The assembler
/// adds the builder call that emitted the slot.
#[derive(Debug)]
pub(crate) struct Finding {
    pub index: Option<usize>,
    pub reason: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.index {
            write!(f, "instruction {i}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Checks a finished program's slots; returns the first mistake found, in slot order within
/// each check.
pub(crate) fn check(slots: &[RawInsn]) -> Result<(), Finding> {
    let at = |index: usize, reason: String| Finding { index: Some(index), reason };
    if slots.is_empty() {
        return Err(Finding { index: None, reason: "the program is empty".into() });
    }
    if slots.len() > MAX_SLOTS {
        return Err(at(
            MAX_SLOTS,
            format!("the program has {} instruction slots; the kernel accepts at most {MAX_SLOTS}", slots.len()),
        ));
    }

    // Decode: `insns[i]` is the instruction starting at slot i, None on second halves.
    let mut insns: Vec<Option<Instruction>> = vec![None; slots.len()];
    for (i, insn) in walk(slots) {
        insns[i] = Some(insn.map_err(|e| at(i, e.reason))?);
    }
    let starts = || insns.iter().enumerate().filter_map(|(i, insn)| insn.map(|insn| (i, insn)));

    // Instruction by instruction.
    let target = |i: usize, rel: i64, what: &str| -> Result<usize, Finding> {
        let t = i as i64 + 1 + rel;
        if t < 0 || t >= slots.len() as i64 {
            return Err(at(
                i,
                format!("{what} pc{rel:+} lands at slot {t}, outside the program (slots 0..{})", slots.len()),
            ));
        }
        let t = t as usize;
        if insns[t].is_none() {
            return Err(at(
                i,
                format!("{what} pc{rel:+} lands at slot {t}, the second half of the 64-bit load at slot {}", t - 1),
            ));
        }
        Ok(t)
    };
    let mut subprogs = Vec::new();
    for (i, insn) in starts() {
        if writes(&insn) & bit(Reg::R10) != 0 {
            return Err(at(i, format!("`{}` writes r10, the read-only frame pointer", insn_body(&insn))));
        }
        match insn {
            Instruction::Ja { off } => {
                target(i, off.into(), "goto")?;
            }
            Instruction::Jump { off, .. } => {
                target(i, off.into(), "jump to")?;
            }
            Instruction::Call(Call::Local(rel)) => {
                subprogs.push(target(i, rel.into(), "call to")?);
            }
            _ => {}
        }
        if let Some(reason) = bad_operand(&insn) {
            return Err(at(i, reason));
        }
    }

    // The last instruction must not fall through past the end.
    if let Some((last, insn)) = insns.iter().enumerate().rev().find_map(|(i, insn)| insn.map(|insn| (i, insn))) {
        if !matches!(insn, Instruction::Exit | Instruction::Ja { .. }) {
            let text = insn_body(&insn);
            return Err(at(last, format!("the last instruction `{text}` falls off the end; end with exit or goto")));
        }
    }

    // Which registers are set on every path to each instruction: a forward dataflow over
    // the control-flow graph, meet = intersection. `None` marks an instruction not reached.
    let mut set_in: Vec<Option<Regs>> = vec![None; slots.len()];
    let mut work = vec![0usize];
    set_in[0] = Some(AT_ENTRY);
    for &s in &subprogs {
        set_in[s] = Some(set_in[s].map_or(AT_SUBPROG, |r| r & AT_SUBPROG));
        work.push(s);
    }
    while let Some(i) = work.pop() {
        let (Some(insn), Some(before)) = (insns[i], set_in[i]) else {
            continue;
        };
        let after = transfer(&insn, before);
        for s in successors(i, &insn).into_iter().flatten() {
            // Targets and fall-throughs were checked to be in range above; `get_mut` keeps
            // this loop panic-free even if that ever changes.
            let Some(slot) = set_in.get_mut(s) else {
                continue;
            };
            let new = slot.map_or(after, |old| old & after);
            if *slot != Some(new) {
                *slot = Some(new);
                work.push(s);
            }
        }
    }

    for (i, insn) in starts() {
        let text = || insn_body(&insn);
        let Some(before) = set_in[i] else {
            return Err(at(i, format!("`{}` is unreachable (the kernel refuses dead code)", text())));
        };
        let missing = reads(&insn) & !before;
        if missing != 0 {
            let r = missing.trailing_zeros();
            let reason = if insn == Instruction::Exit {
                "exit without r0 set on every path (r0 is the return value)".to_string()
            } else {
                format!(
                    "`{}` reads r{r}, which is not set on every path here \
                     (calls leave r1-r5 unset)",
                    text()
                )
            };
            return Err(at(i, reason));
        }
    }
    Ok(())
}

/// Where control may go after the instruction at `i`: at most the fall-through and a target.
fn successors(i: usize, insn: &Instruction) -> [Option<usize>; 2] {
    let rel = |off: i16| usize::try_from(i as i64 + 1 + i64::from(off)).ok();
    match *insn {
        Instruction::Exit => [None, None],
        Instruction::Ja { off } => [rel(off), None],
        Instruction::Jump { off, .. } => [Some(i + 1), rel(off)],
        _ => [Some(i + insn.slots()), None],
    }
}

/// Registers set after `insn` given those set before.
fn transfer(insn: &Instruction, before: Regs) -> Regs {
    let after = match insn {
        Instruction::Call(_) => before & !CLOBBERED_BY_CALL,
        _ => before,
    };
    after | writes(insn)
}

fn src_bit(src: Src) -> Regs {
    match src {
        Src::Reg(r) => bit(r),
        Src::Imm(_) => 0,
    }
}

/// Registers the instruction reads.
fn reads(insn: &Instruction) -> Regs {
    use super::model::{AluOp, AtomicOp};
    match *insn {
        Instruction::Alu { op: AluOp::Mov, src, .. } => src_bit(src),
        Instruction::Alu { dst, src, .. } => bit(dst) | src_bit(src),
        Instruction::Neg { dst, .. } | Instruction::Endian { dst, .. } => bit(dst),
        Instruction::LoadImm64 { .. } | Instruction::Ja { .. } | Instruction::Call(_) => 0,
        Instruction::Load { src, .. } => bit(src),
        Instruction::StoreImm { dst, .. } => bit(dst),
        Instruction::Store { dst, src, .. } => bit(dst) | bit(src),
        Instruction::Atomic { op: AtomicOp::Cmpxchg, dst, src, .. } => bit(dst) | bit(src) | bit(Reg::R0),
        Instruction::Atomic { dst, src, .. } => bit(dst) | bit(src),
        Instruction::Jump { dst, src, .. } => bit(dst) | src_bit(src),
        Instruction::Exit => bit(Reg::R0),
    }
}

/// Registers the instruction writes.
fn writes(insn: &Instruction) -> Regs {
    use super::model::AtomicOp;
    match *insn {
        Instruction::Alu { dst, .. }
        | Instruction::Neg { dst, .. }
        | Instruction::Endian { dst, .. }
        | Instruction::LoadImm64 { dst, .. }
        | Instruction::Load { dst, .. } => bit(dst),
        Instruction::Atomic { op, src, .. } => match op {
            AtomicOp::Cmpxchg => bit(Reg::R0),
            AtomicOp::Xchg => bit(src),
            AtomicOp::Add { fetch } | AtomicOp::Or { fetch } | AtomicOp::And { fetch } | AtomicOp::Xor { fetch } => {
                if fetch {
                    bit(src)
                } else {
                    0
                }
            }
        },
        Instruction::Call(_) => bit(Reg::R0),
        Instruction::StoreImm { .. }
        | Instruction::Store { .. }
        | Instruction::Ja { .. }
        | Instruction::Jump { .. }
        | Instruction::Exit => 0,
    }
}

/// Constant operands the verifier refuses outright.
fn bad_operand(insn: &Instruction) -> Option<String> {
    use super::model::{AluOp, Width};
    let Instruction::Alu { width, op, src: Src::Imm(imm), .. } = *insn else {
        return None;
    };
    let text = insn_body(insn);
    let bits = match width {
        Width::W32 => 32,
        Width::W64 => 64,
    };
    match op {
        AluOp::Div | AluOp::Mod if imm == 0 => Some(format!("`{text}` divides by zero")),
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh if !(0..bits).contains(&imm) => {
            Some(format!("`{text}` shifts by {imm}, outside 0..{bits}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::MAX_SLOTS;

    /// Asserts that `finish` fails at slot `index`, naming `line` of this file and `words`.
    #[track_caller]
    fn fails(a: Asm, index: usize, line: u32, words: &str) {
        let e = a.finish().unwrap_err();
        let text = e.to_string();
        assert_eq!(e.index, Some(index), "{text}");
        assert!(text.contains(&format!("check.rs:{line})")), "{text}");
        assert!(text.contains(words), "{text}");
    }

    #[test]
    fn valid_program_with_loop_and_branches_passes() {
        let mut a = Asm::new();
        let (top, skip, out) = (a.label("top"), a.label("skip"), a.label("out"));
        a.mov64(R6, R1);
        a.mov64(R7, 0);
        a.bind(top);
        a.jge(R7, 16, out);
        a.st_dw(R10, -8, 0);
        a.mov64(R2, R10);
        a.add64(R2, -8);
        a.ld_map_fd(R1, MapRef("m"));
        a.call(Helper::MapLookupElem);
        a.jeq(R0, 0, skip);
        a.mov64(R1, 1);
        a.atomic_add64(R0, 0, R1);
        a.bind(skip);
        a.add64(R7, 1);
        a.ja(top);
        a.bind(out);
        a.mov32(R0, 0);
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(p.len(), 16);
    }

    #[test]
    fn r0_set_on_one_path_only() {
        let mut a = Asm::new();
        let out = a.label("out");
        a.jeq(R1, 0, out);
        a.mov64(R0, 1);
        a.bind(out);
        let line = line!() + 1;
        a.exit();
        fails(a, 2, line, "exit without r0 set on every path");
    }

    #[test]
    fn r0_never_set() {
        let mut a = Asm::new();
        a.mov64(R1, 0);
        let line = line!() + 1;
        a.exit();
        fails(a, 1, line, "r0");
    }

    #[test]
    fn r0_set_by_call_and_in_a_loop_passes() {
        let mut a = Asm::new();
        let top = a.label("top");
        let out = a.label("out");
        a.call(Helper::KtimeGetNs);
        a.bind(top);
        a.jgt(R0, 100, out);
        a.add64(R0, 1);
        a.ja(top);
        a.bind(out);
        a.exit();
        a.finish().unwrap();
    }

    #[test]
    fn argument_register_read_after_call() {
        let mut a = Asm::new();
        a.mov64(R2, 1);
        a.call(Helper::KtimeGetNs);
        let line = line!() + 1;
        a.add64(R0, R2);
        a.exit();
        fails(a, 2, line, "reads r2");
    }

    #[test]
    fn callee_saved_register_never_set() {
        let mut a = Asm::new();
        let line = line!() + 1;
        a.mov64(R0, R6);
        a.exit();
        fails(a, 0, line, "reads r6");
    }

    #[test]
    fn writes_to_r10() {
        /// Emits one instruction and returns the line it is on.
        type Case = (fn(&mut Asm) -> u32, &'static str);
        let cases: [Case; 4] = [
            (
                |a| {
                    a.add64(R10, 8);
                    line!() - 1
                },
                "r10 += 8",
            ),
            (
                |a| {
                    a.ldx_dw(R10, R1, 0);
                    line!() - 1
                },
                "r10 = *(u64 *)(r1 +0)",
            ),
            (
                |a| {
                    a.ld_imm64(R10, 1);
                    line!() - 1
                },
                "r10 = 0x1",
            ),
            (
                |a| {
                    a.atomic(Size::DW, AtomicOp::Xchg, R1, 0, R10);
                    line!() - 1
                },
                "atomic64_xchg",
            ),
        ];
        for (emit, words) in cases {
            let mut a = Asm::new();
            a.mov64(R0, 0);
            let line = emit(&mut a);
            a.exit();
            fails(a, 1, line, words);
        }
    }

    #[test]
    fn storing_through_r10_is_fine() {
        let mut a = Asm::new();
        a.stx_dw(R10, -8, R1);
        a.st_w(R10, -12, 7);
        a.atomic_add64(R10, -8, R1);
        a.mov64(R0, 0);
        a.exit();
        a.finish().unwrap();
    }

    #[test]
    fn jump_past_the_end() {
        let mut a = Asm::new();
        let end = a.label("end");
        a.mov64(R0, 0);
        let line = line!() + 1;
        a.jeq(R1, 0, end);
        a.exit();
        a.bind(end);
        fails(a, 1, line, "outside the program");
    }

    #[test]
    fn jump_before_the_start() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        let line = line!() + 1;
        a.emit(Instruction::Ja { off: -3 });
        a.exit();
        fails(a, 1, line, "lands at slot -1");
    }

    #[test]
    fn jump_into_a_64_bit_load() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        let line = line!() + 1;
        a.emit(Instruction::Jump { width: Width::W64, cond: Cond::Eq, dst: R1, src: Src::Imm(0), off: 1 });
        a.ld_imm64(R2, 5);
        a.exit();
        fails(a, 1, line, "second half of the 64-bit load at slot 2");
    }

    #[test]
    fn local_call_target_is_checked() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        let line = line!() + 1;
        a.emit(Instruction::Call(Call::Local(7)));
        a.exit();
        fails(a, 1, line, "call to pc+7");
    }

    #[test]
    fn subprogram_is_reachable_and_checked() {
        let mut a = Asm::new();
        a.emit(Instruction::Call(Call::Local(1)));
        a.exit(); // r0 from the call
        a.mov64(R0, R2); // callee reads its argument
        a.exit();
        a.finish().unwrap();

        let mut a = Asm::new();
        a.emit(Instruction::Call(Call::Local(1)));
        a.exit();
        a.mov64(R1, 0);
        let line = line!() + 1;
        a.exit();
        fails(a, 3, line, "exit without r0");
    }

    #[test]
    fn falls_off_the_end() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        let line = line!() + 1;
        a.mov64(R0, 1);
        fails(a, 1, line, "falls off the end");

        let mut a = Asm::new();
        let top = a.label("top");
        a.bind(top);
        a.mov64(R0, 0);
        let line = line!() + 1;
        a.jeq(R1, 0, top);
        fails(a, 1, line, "falls off the end");
    }

    #[test]
    fn ending_in_goto_is_fine() {
        let mut a = Asm::new();
        let (body, out) = (a.label("body"), a.label("out"));
        a.mov64(R0, 0);
        a.ja(body);
        a.bind(out);
        a.exit();
        a.bind(body);
        a.ja(out);
        a.finish().unwrap();
    }

    #[test]
    fn dead_code() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        a.exit();
        let line = line!() + 1;
        a.mov64(R0, 1);
        a.exit();
        fails(a, 2, line, "unreachable");
    }

    #[test]
    fn undecodable_slot() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        let line = line!() + 1;
        a.emit(Instruction::Endian { kind: Endian::ToBe, bits: 8, dst: R1 });
        a.exit();
        fails(a, 1, line, "byte swap of 8 bits");

        let mut a = Asm::new();
        a.mov64(R0, 0);
        let line = line!() + 1;
        a.emit(Instruction::Atomic { size: Size::B, op: AtomicOp::Add { fetch: false }, dst: R1, src: R2, off: 0 });
        a.exit();
        fails(a, 1, line, "not supported");
    }

    #[test]
    fn truncated_64_bit_load() {
        // No builder call can emit half a load; raw slots (from an ELF file, say) can.
        let mut slots = Asm::new();
        slots.mov64(R0, 0).exit();
        let mut raw = slots.finish().unwrap().insns().to_vec();
        raw.push(RawInsn::new(0x18, 1, 0, 0, 1));
        let e = Program::from_raw(raw).check().unwrap_err();
        assert_eq!(e.index, Some(2));
        assert!(e.to_string().contains("missing its second slot"), "{e}");
    }

    #[test]
    fn constant_operands() {
        let mut a = Asm::new();
        a.mov64(R0, 1);
        let line = line!() + 1;
        a.div64(R0, 0);
        a.exit();
        fails(a, 1, line, "divides by zero");

        let mut a = Asm::new();
        a.mov64(R0, 1);
        let line = line!() + 1;
        a.lsh32(R0, 32);
        a.exit();
        fails(a, 1, line, "shifts by 32, outside 0..32");

        let mut a = Asm::new();
        a.mov64(R0, 1);
        a.lsh64(R0, 63);
        a.exit();
        a.finish().unwrap();
    }

    #[test]
    fn empty_program() {
        let e = Asm::new().finish().unwrap_err();
        assert_eq!(e.index, None);
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn size_limit() {
        let mut raw = vec![RawInsn::new(0xb7, 0, 0, 0, 0); MAX_SLOTS];
        raw.push(RawInsn::new(0x95, 0, 0, 0, 0));
        let e = Program::from_raw(raw).check().unwrap_err();
        assert_eq!(e.index, Some(MAX_SLOTS));
        assert!(e.to_string().contains("at most 1000000"), "{e}");

        let mut raw = vec![RawInsn::new(0xb7, 0, 0, 0, 0); MAX_SLOTS - 1];
        raw.push(RawInsn::new(0x95, 0, 0, 0, 0));
        Program::from_raw(raw).check().unwrap();
    }
}
