//! Disassembler (interim: raw fields until the bpftool-syntax printer lands).

use super::{Instruction, Program};

/// The instruction at slot `index`, printed.
pub fn disasm_at(program: &Program, index: usize) -> Option<String> {
    let raw = program.insns().get(index)?;
    Some(match Instruction::decode(program.insns(), index) {
        Ok((insn, _)) => format!("({:02x}) {insn:?}", raw.code),
        Err(e) => format!("({:02x}) <invalid: {}>", raw.code, e.reason),
    })
}
