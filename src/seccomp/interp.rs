//! A classic BPF interpreter for seccomp filters, so tests can ask what a filter answers for
//! any call without installing it (once installed, it cannot be taken back).

use super::cbpf::{Action, Cond, Insn, SockFilter};

/// `struct seccomp_data`: what the kernel hands a filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl SeccompData {
    /// A call `nr` with `args` on the native architecture.
    pub fn call(nr: libc::c_long, args: &[u64]) -> SeccompData {
        let mut a = [0u64; 6];
        a[..args.len().min(6)].copy_from_slice(&args[..args.len().min(6)]);
        SeccompData { nr: nr as i32, arch: super::AUDIT_ARCH, instruction_pointer: 0, args: a }
    }

    fn word(&self, off: u32) -> Option<u32> {
        Some(match off {
            0 => self.nr as u32,
            4 => self.arch,
            8 => self.instruction_pointer as u32,
            12 => (self.instruction_pointer >> 32) as u32,
            16..=63 if off % 4 == 0 => {
                let a = self.args[((off - 16) / 8) as usize];
                if (off - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => return None,
        })
    }
}

/// The action `prog` returns for `data`; None if the program is malformed (runs off its
/// end, loads outside `seccomp_data`, or holds an instruction this builder never emits),
/// which the kernel would have refused to install.
pub fn run(prog: &[SockFilter], data: &SeccompData) -> Option<Action> {
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let insn = Insn::decode(*prog.get(pc)?)?;
        pc += 1;
        match insn {
            Insn::Load(f) => a = data.word(f.offset())?,
            Insn::And(k) => a &= k,
            Insn::Ja(k) => pc += k as usize,
            Insn::Jump { cond, k, jt, jf } => {
                let taken = match cond {
                    Cond::Eq => a == k,
                    Cond::Gt => a > k,
                    Cond::Ge => a >= k,
                    Cond::Set => a & k != 0,
                };
                pc += usize::from(if taken { jt } else { jf });
            }
            Insn::Ret(action) => return Some(action),
        }
    }
}
