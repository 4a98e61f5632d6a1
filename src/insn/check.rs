//! Static checks that need no kernel, run by [`super::Asm::finish`].
//!
//! They catch the builder's own mistakes (a jump into the middle of a 64-bit load, a program
//! that can fall off its end, an exit with r0 unset) before the verifier sees the program,
//! and name the Rust line that emitted the offending instruction.

use super::{AsmError, AtomicOp, Call, Instruction, Program, Reg, R0, R10};

/// Programs may not be longer than this (the kernel's BPF_COMPLEXITY_LIMIT_INSNS).
pub const MAX_SLOTS: usize = 1_000_000;

/// Decoded instructions with the slot index each starts at.
fn decode(program: &Program) -> Result<Vec<(usize, Instruction)>, AsmError> {
    let slots = program.insns();
    let mut out = Vec::new();
    let mut i = 0;
    while i < slots.len() {
        let (insn, n) = Instruction::decode(slots, i).map_err(|e| AsmError::at(i, program.site(i), e.reason))?;
        out.push((i, insn));
        i += n;
    }
    Ok(out)
}

/// The register an instruction writes, if any.
fn written(insn: &Instruction) -> Option<Reg> {
    match *insn {
        Instruction::Alu { dst, .. }
        | Instruction::Neg { dst, .. }
        | Instruction::Endian { dst, .. }
        | Instruction::LoadImm64 { dst, .. }
        | Instruction::Load { dst, .. } => Some(dst),
        Instruction::Atomic { op: AtomicOp::Cmpxchg, .. } => Some(R0),
        // Fetching forms and xchg return the old value in src.
        Instruction::Atomic { src, op, .. } if fetches(op) => Some(src),
        Instruction::Call(_) => Some(R0),
        _ => None,
    }
}

fn fetches(op: AtomicOp) -> bool {
    match op {
        AtomicOp::Add { fetch } | AtomicOp::Or { fetch } | AtomicOp::And { fetch } | AtomicOp::Xor { fetch } => fetch,
        AtomicOp::Xchg | AtomicOp::Cmpxchg => true,
    }
}

/// Checks a finished program.
pub(crate) fn check(program: &Program) -> Result<(), AsmError> {
    let len = program.len();
    let err = |i: usize, reason: String| AsmError::at(i, program.site(i), reason);
    if len == 0 {
        return Err(AsmError { index: None, site: None, reason: "empty program".into() });
    }
    if len > MAX_SLOTS {
        return Err(err(MAX_SLOTS, format!("{len} instructions, more than the kernel's {MAX_SLOTS}")));
    }
    let insns = decode(program)?;
    // Which slots start an instruction (jump targets must be among them).
    let mut starts = vec![false; len];
    let mut index_of = vec![usize::MAX; len];
    for (k, (i, _)) in insns.iter().enumerate() {
        starts[*i] = true;
        index_of[*i] = k;
    }
    let mut succ: Vec<Vec<usize>> = Vec::with_capacity(insns.len());
    for (k, (i, insn)) in insns.iter().enumerate() {
        if written(insn) == Some(R10) {
            return Err(err(*i, format!("writes r10, the read-only frame pointer: {insn}")));
        }
        let next = k + 1;
        let target = |off: i16| -> Result<usize, AsmError> {
            let t = *i as i64 + 1 + i64::from(off);
            if t < 0 || t as usize >= len {
                return Err(err(*i, format!("jump to {t} lands outside the program (0..{len})")));
            }
            if !starts[t as usize] {
                return Err(err(*i, format!("jump to {t} lands on the second half of a 64-bit load")));
            }
            Ok(index_of[t as usize])
        };
        let s = match insn {
            Instruction::Exit => vec![],
            Instruction::Ja { off } => vec![target(*off)?],
            Instruction::Jump { off, .. } => vec![next, target(*off)?],
            _ => vec![next],
        };
        if s.contains(&insns.len()) {
            return Err(err(*i, "the program can run past its last instruction (end with exit or a jump)".into()));
        }
        succ.push(s);
    }
    // Must-analysis: is r0 written on every path from the entry to each instruction?
    // Start optimistic (true) everywhere but the entry, then only ever lower to false.
    let mut r0_in = vec![true; insns.len()];
    r0_in[0] = false;
    let mut work: Vec<usize> = (0..insns.len()).collect();
    while let Some(k) = work.pop() {
        let out = r0_in[k] || written(&insns[k].1) == Some(R0);
        for &n in &succ[k] {
            if r0_in[n] && !out {
                r0_in[n] = false;
                work.push(n);
            }
        }
    }
    for (k, (i, insn)) in insns.iter().enumerate() {
        if matches!(insn, Instruction::Exit) && !r0_in[k] {
            return Err(err(*i, "exit with r0 unset on some path (return a value)".into()));
        }
        if let Instruction::Call(Call::Local(_)) = insn {
            return Err(err(*i, "BPF-to-BPF calls are not supported by the checks".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::insn::{Asm, Instruction, Program, RawInsn, R0, R1, R10};

    #[test]
    fn valid_programs_with_loops_and_branches_pass() {
        let mut a = Asm::new();
        let top = a.label("top");
        let done = a.label("done");
        a.mov64(R1, 0);
        a.bind(top);
        a.add64(R1, 1);
        a.jge(R1, 10, done);
        a.ja(top);
        a.bind(done);
        a.mov64(R0, 0);
        a.exit();
        a.finish().unwrap();
    }

    #[test]
    fn r0_must_be_set_on_every_path() {
        let mut a = Asm::new();
        let skip = a.label("skip");
        a.jeq(R1, 0, skip);
        a.mov64(R0, 1);
        a.bind(skip);
        a.exit();
        let e = a.finish().unwrap_err();
        assert_eq!(e.index, Some(2));
        assert!(e.to_string().contains("r0 unset"), "{e}");
        assert!(e.to_string().contains("check.rs"), "the builder line: {e}");
    }

    #[test]
    fn writing_r10_is_refused() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        a.add64(R10, 8);
        a.exit();
        let e = a.finish().unwrap_err();
        assert_eq!(e.index, Some(1));
        assert!(e.to_string().contains("r10"), "{e}");
    }

    #[test]
    fn falling_off_the_end_is_refused() {
        let mut a = Asm::new();
        a.mov64(R0, 0);
        let e = a.finish().unwrap_err();
        assert!(e.to_string().contains("past its last instruction"), "{e}");
    }

    #[test]
    fn jumps_into_a_64_bit_load_or_outside_are_refused() {
        let mut raw = Instruction::Ja { off: 1 }.encode();
        raw.extend(Instruction::LoadImm64 { dst: R0, value: crate::insn::Imm64::Const(1) }.encode());
        raw.extend(Instruction::Exit.encode());
        let e = super::check(&Program::from_raw(raw.clone())).unwrap_err();
        assert!(e.to_string().contains("second half"), "{e}");
        raw[0] = Instruction::Ja { off: 9 }.encode()[0];
        let e = super::check(&Program::from_raw(raw.clone())).unwrap_err();
        assert!(e.to_string().contains("outside the program"), "{e}");
        // A 64-bit load cut in half at the end.
        let mut cut = vec![Instruction::Exit.encode()[0]];
        cut.push(RawInsn::new(0x18, 0, 0, 0, 0));
        let e = super::check(&Program::from_raw(cut)).unwrap_err();
        assert!(e.to_string().contains("second slot"), "{e}");
    }
}
