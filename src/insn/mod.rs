//! A typed model of the eBPF instruction set, an assembler with labels, and a disassembler.
//!
//! Programs are assembled in Rust at run time so that building KTM needs no clang and no
//! BPF toolchain. The model ([`Instruction`]) says what an instruction means; [`RawInsn`] is
//! the 8-byte wire form the kernel reads. [`Asm`] builds programs with constructors that read
//! like the C they replace, named labels and symbolic map references.
//!
//! From the ground up: `opcode` and `helper` (the kernel's numbers), `model` (the typed
//! instructions and their encoding), `decode` (slots back to instructions, and [`walk`], the one
//! walk over a program's slots), `disasm` (bpftool's text of slots), `check` (static checks), `asm` (the assembler),
//! `listing` (a built program's disassembly with its map names).
//! This file only hands their names on.

mod asm;
mod check;
mod decode;
mod disasm;
mod helper;
mod listing;
mod model;
pub mod opcode;

pub use asm::{Asm, AsmError, Label, MapRef, MapReloc, Program, RelocKind, Site};
pub use decode::{decode_all, walk};
pub use disasm::{disasm, disasm_insn};
pub use helper::Helper;
pub use listing::{disasm_at, disasm_program};
pub use model::*;
