//! A filter as text, in the notation of the kernel's `bpf_dbg` and `seccomp-tools`, with the
//! `seccomp_data` field of each load named.

use super::cbpf::{Cond, Field, Insn, SockFilter};
use std::fmt::Write;

/// One line per instruction: `0004: jeq #0x27, 0005, 0006`; an instruction this builder never
/// emits is shown as raw numbers.
pub fn disassemble(prog: &[SockFilter]) -> String {
    let mut out = String::new();
    for (i, s) in prog.iter().enumerate() {
        let _ = write!(out, "{i:04}: ");
        let _ = match Insn::decode(*s) {
            Some(Insn::Load(f)) => write!(out, "ld [{}] ; {}", f.offset(), field_name(f)),
            Some(Insn::And(k)) => write!(out, "and #{k:#x}"),
            Some(Insn::Jump { cond, k, jt, jf }) => {
                let op = match cond {
                    Cond::Eq => "jeq",
                    Cond::Gt => "jgt",
                    Cond::Ge => "jge",
                    Cond::Set => "jset",
                };
                write!(out, "{op} #{k:#x}, {:04}, {:04}", i + 1 + usize::from(jt), i + 1 + usize::from(jf))
            }
            Some(Insn::Ja(k)) => write!(out, "ja {:04}", i + 1 + k as usize),
            Some(Insn::Ret(a)) => write!(out, "ret {a}"),
            None => write!(out, "raw code={:#06x} jt={} jf={} k={:#x}", s.code, s.jt, s.jf, s.k),
        };
        out.push('\n');
    }
    out
}

fn field_name(f: Field) -> String {
    match f {
        Field::Nr => "nr".into(),
        Field::Arch => "arch".into(),
        Field::ArgLo(i) => format!("args[{i}] low"),
        Field::ArgHi(i) => format!("args[{i}] high"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Action, Asm};
    use super::*;

    #[test]
    fn text_of_a_small_filter() {
        let mut a = Asm::new();
        let (ok, bad) = (a.new_label(), a.new_label());
        a.load(Field::Arch).jump(Cond::Eq, 0xc000_003e, ok, bad);
        a.label(ok).load(Field::ArgLo(0)).and(0xff).jump(Cond::Set, 4, bad, ok);
        a.label(bad).ret(Action::Errno(1));
        // The label `ok` placed twice is refused; build it correctly instead.
        assert!(a.finish().is_err());
        let mut a = Asm::new();
        let (ok, bad, allow) = (a.new_label(), a.new_label(), a.new_label());
        a.load(Field::Arch).jump(Cond::Eq, 0xc000_003e, ok, bad);
        a.label(ok).load(Field::ArgLo(0)).and(0xff).jump(Cond::Set, 4, bad, allow);
        a.label(allow).ret(Action::Allow);
        a.label(bad).ret(Action::Errno(1));
        assert_eq!(
            disassemble(&a.finish().unwrap()),
            "0000: ld [4] ; arch\n\
             0001: jeq #0xc000003e, 0002, 0006\n\
             0002: ld [16] ; args[0] low\n\
             0003: and #0xff\n\
             0004: jset #0x4, 0006, 0005\n\
             0005: ret ALLOW\n\
             0006: ret ERRNO(1)\n"
        );
    }
}
