//! Classic BPF as seccomp uses it: the instructions, their encoding and the return actions.

/// `struct sock_filter`: one encoded classic BPF instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The `AUDIT_ARCH_*` value of the architecture this crate is built for, which the kernel
/// puts in `seccomp_data.arch`: a filter checks it first, since syscall numbers differ by
/// architecture (and a 32-bit entry into a 64-bit kernel must not pass as a 64-bit call).
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xc000_003e; // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xc000_00b7; // EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const AUDIT_ARCH: u32 = 0; // no filter is built for other architectures: see `ktm::steady_state`

/// `__X32_SYSCALL_BIT`: x86-64's x32 ABI enters with the same arch value and this bit set in
/// the number; a filter that only compares numbers would let x32 calls by.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A 32-bit word of `struct seccomp_data` (little-endian: an argument's low half first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `nr`, the syscall number.
    Nr,
    /// `arch`, an `AUDIT_ARCH_*` value.
    Arch,
    /// Bits 0..32 of argument 0..=5.
    ArgLo(u8),
    /// Bits 32..64 of argument 0..=5.
    ArgHi(u8),
}

impl Field {
    /// The byte offset in `struct seccomp_data`.
    pub fn offset(self) -> u32 {
        match self {
            Field::Nr => 0,
            Field::Arch => 4,
            Field::ArgLo(i) => 16 + 8 * u32::from(i),
            Field::ArgHi(i) => 20 + 8 * u32::from(i),
        }
    }

    /// The field at byte offset `off`, if it is one.
    pub fn at(off: u32) -> Option<Field> {
        match off {
            0 => Some(Field::Nr),
            4 => Some(Field::Arch),
            16..=63 if off % 4 == 0 => {
                let i = ((off - 16) / 8) as u8;
                Some(if (off - 16) % 8 == 0 { Field::ArgLo(i) } else { Field::ArgHi(i) })
            }
            _ => None,
        }
    }
}

/// A conditional jump's test of the accumulator A against the constant k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// A == k
    Eq,
    /// A > k (unsigned)
    Gt,
    /// A >= k (unsigned)
    Ge,
    /// A & k != 0
    Set,
}

/// What the filter answers for a call (`SECCOMP_RET_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Fail the call with this errno, without running it.
    Errno(u16),
    /// Allow the call and log it (the audit log / dmesg): how an allow-list is measured.
    Log,
    /// Kill the whole process.
    KillProcess,
}

impl Action {
    pub fn encode(self) -> u32 {
        match self {
            Action::Allow => 0x7fff_0000,
            Action::Errno(e) => 0x0005_0000 | u32::from(e),
            Action::Log => 0x7ffc_0000,
            Action::KillProcess => 0x8000_0000,
        }
    }

    pub fn decode(v: u32) -> Option<Action> {
        match v {
            0x7fff_0000 => Some(Action::Allow),
            0x7ffc_0000 => Some(Action::Log),
            0x8000_0000 => Some(Action::KillProcess),
            v if v & 0xffff_0000 == 0x0005_0000 => Some(Action::Errno((v & 0xffff) as u16)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Allow => f.write_str("ALLOW"),
            Action::Errno(e) => write!(f, "ERRNO({e})"),
            Action::Log => f.write_str("LOG"),
            Action::KillProcess => f.write_str("KILL_PROCESS"),
        }
    }
}

/// The instructions a seccomp filter needs, with jump offsets resolved (relative to the
/// next instruction, forward only, as classic BPF has them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// `ld [field]`: A = the 32-bit word.
    Load(Field),
    /// `and #k`: A &= k.
    And(u32),
    /// `jCOND #k, jt, jf`.
    Jump { cond: Cond, k: u32, jt: u8, jf: u8 },
    /// `ja k`: an unconditional forward jump.
    Ja(u32),
    /// `ret #action`.
    Ret(Action),
}

// Opcode parts, <linux/bpf_common.h>.
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_AND: u16 = 0x50;
const BPF_K: u16 = 0x00;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_JSET: u16 = 0x40;

impl Cond {
    fn op(self) -> u16 {
        match self {
            Cond::Eq => BPF_JEQ,
            Cond::Gt => BPF_JGT,
            Cond::Ge => BPF_JGE,
            Cond::Set => BPF_JSET,
        }
    }
}

impl Insn {
    pub fn encode(self) -> SockFilter {
        let (code, jt, jf, k) = match self {
            Insn::Load(f) => (BPF_LD | BPF_W | BPF_ABS, 0, 0, f.offset()),
            Insn::And(k) => (BPF_ALU | BPF_AND | BPF_K, 0, 0, k),
            Insn::Jump { cond, k, jt, jf } => (BPF_JMP | cond.op() | BPF_K, jt, jf, k),
            Insn::Ja(k) => (BPF_JMP | BPF_JA, 0, 0, k),
            Insn::Ret(a) => (BPF_RET | BPF_K, 0, 0, a.encode()),
        };
        SockFilter { code, jt, jf, k }
    }

    /// The typed form of an encoded instruction; None for anything this builder never emits.
    pub fn decode(s: SockFilter) -> Option<Insn> {
        let cond = |op| [Cond::Eq, Cond::Gt, Cond::Ge, Cond::Set].into_iter().find(|c| c.op() == op);
        match s.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => Field::at(s.k).map(Insn::Load),
            c if c == BPF_ALU | BPF_AND | BPF_K => Some(Insn::And(s.k)),
            c if c == BPF_JMP | BPF_JA => Some(Insn::Ja(s.k)),
            c if c == BPF_RET | BPF_K => Action::decode(s.k).map(Insn::Ret),
            c if c & 0x07 == BPF_JMP && c & 0x08 == BPF_K => {
                cond(c & 0xf0).map(|cond| Insn::Jump { cond, k: s.k, jt: s.jt, jf: s.jf })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel_headers() {
        // The values of BPF_STMT/BPF_JUMP as <linux/filter.h> users write them.
        assert_eq!(Insn::Load(Field::Arch).encode(), SockFilter { code: 0x20, jt: 0, jf: 0, k: 4 });
        assert_eq!(Insn::Load(Field::ArgLo(0)).encode().k, 16);
        assert_eq!(Insn::Load(Field::ArgHi(5)).encode().k, 60);
        assert_eq!(
            Insn::Jump { cond: Cond::Eq, k: 7, jt: 1, jf: 2 }.encode(),
            SockFilter { code: 0x15, jt: 1, jf: 2, k: 7 }
        );
        assert_eq!(Insn::Jump { cond: Cond::Set, k: 1, jt: 0, jf: 0 }.encode().code, 0x45);
        assert_eq!(Insn::Jump { cond: Cond::Ge, k: 1, jt: 0, jf: 0 }.encode().code, 0x35);
        assert_eq!(Insn::Ja(3).encode().code, 0x05);
        assert_eq!(Insn::And(4).encode().code, 0x54);
        assert_eq!(Insn::Ret(Action::Errno(1)).encode(), SockFilter { code: 0x06, jt: 0, jf: 0, k: 0x0005_0001 });
        assert_eq!(Action::Allow.encode(), 0x7fff_0000);
    }

    #[test]
    fn decode_inverts_encode() {
        for i in [
            Insn::Load(Field::Nr),
            Insn::Load(Field::ArgHi(2)),
            Insn::And(0xf0),
            Insn::Jump { cond: Cond::Gt, k: 9, jt: 3, jf: 0 },
            Insn::Ja(12),
            Insn::Ret(Action::Log),
            Insn::Ret(Action::KillProcess),
            Insn::Ret(Action::Errno(38)),
        ] {
            assert_eq!(Insn::decode(i.encode()), Some(i));
        }
        assert_eq!(Insn::decode(SockFilter { code: 0x20, jt: 0, jf: 0, k: 2 }), None, "unaligned load");
    }
}
