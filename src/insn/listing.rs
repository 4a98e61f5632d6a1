//! Listings of a built [`Program`]: the disassembly of its slots with the map each map load
//! refers to, whole or one instruction.

use super::asm::Program;
use super::disasm::{render, steps, write_step};
use super::model::Instruction;

fn map_note(program: &Program, index: usize) -> Option<String> {
    program.relocs().iter().find(|r| r.insn == index).map(|r| format!(" // map {}", r.map.0))
}

impl Program {
    /// The program as [`disasm`](super::disasm) prints it, with ` // map NAME` after each map load, since
    /// the fd in the slot is only a placeholder until the program is resolved.
    pub fn disasm(&self) -> String {
        render(self.insns(), |i| map_note(self, i))
    }
}

/// Same as [`Program::disasm`], under the name the CLI and loader use.
pub fn disasm_program(program: &Program) -> String {
    program.disasm()
}

/// The instruction covering slot `index` (the text without its number), for an error that
/// points at one instruction, such as the verifier's last line. `None` past the end.
pub fn disasm_at(program: &Program, index: usize) -> Option<String> {
    let step = steps(program.insns()).find(|s| index < s.index + s.insn.as_ref().map_or(1, Instruction::slots))?;
    let mut out = String::new();
    write_step(&mut out, &step);
    if let Some(n) = map_note(program, step.index) {
        out.push_str(&n);
    }
    Some(out)
}
