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

/// The whole program, one slot per line, numbered as `bpftool prog dump xlated` numbers.
pub fn disasm_program(program: &Program) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < program.len() {
        let text = disasm_at(program, i).unwrap_or_default();
        out.push_str(&format!("{i:4}: {text}\n"));
        i += match Instruction::decode(program.insns(), i) {
            Ok((_, n)) => n,
            Err(_) => 1,
        };
    }
    out
}
