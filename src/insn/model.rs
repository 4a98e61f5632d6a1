//! The instruction model: what an instruction means ([`Instruction`]) and its 8-byte wire
//! form ([`RawInsn`]), with encoding.

use super::helper::Helper;
use super::opcode::*;
use std::fmt;

/// One of the eleven BPF registers. R10 is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

pub use Reg::*;

impl Reg {
    /// All registers in order.
    pub const ALL: [Reg; 11] = [R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10];

    /// The register with number `n` (0..=10).
    pub fn from_u8(n: u8) -> Option<Reg> {
        Reg::ALL.get(usize::from(n)).copied()
    }

    /// The register's number.
    pub fn num(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.num())
    }
}

/// The second operand of ALU and conditional jump instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Src {
    Reg(Reg),
    Imm(i32),
}

impl From<Reg> for Src {
    fn from(r: Reg) -> Src {
        Src::Reg(r)
    }
}

impl From<i32> for Src {
    fn from(v: i32) -> Src {
        Src::Imm(v)
    }
}

/// Operand width of ALU operations and conditional jumps: 32-bit (`w` registers) or 64-bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    W32,
    W64,
}

/// Memory access size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    B,
    H,
    W,
    DW,
}

impl Size {
    /// Bytes accessed.
    pub fn bytes(self) -> u32 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    pub(super) fn code(self) -> u8 {
        match self {
            Size::B => BPF_B,
            Size::H => BPF_H,
            Size::W => BPF_W,
            Size::DW => BPF_DW,
        }
    }

    pub(super) fn from_code(code: u8) -> Size {
        match code & 0x18 {
            BPF_B => Size::B,
            BPF_H => Size::H,
            BPF_W => Size::W,
            _ => Size::DW,
        }
    }
}

/// One table per operation enum: each variant with its opcode bits and C operator, in enum
/// order (checked at compile time, since `code` and `symbol` index it by discriminant), read
/// by `ALL`, `code`, `from_code` and `symbol`.
macro_rules! opcode_table {
    ($ty:ident, $table:ident, $n:literal, [$(($v:ident, $code:expr, $sym:literal)),* $(,)?]) => {
        const $table: [($ty, u8, &str); $n] = [$(($ty::$v, $code, $sym)),*];

        const _: () = {
            let mut i = 0;
            while i < $n {
                assert!($table[i].0 as usize == i, concat!(stringify!($table), " is not in enum order"));
                i += 1;
            }
        };

        impl $ty {
            /// Every variant, in opcode order.
            pub const ALL: [$ty; $n] = {
                let mut all = [$table[0].0; $n];
                let mut i = 0;
                while i < $n {
                    all[i] = $table[i].0;
                    i += 1;
                }
                all
            };

            pub(super) fn code(self) -> u8 {
                $table[self as usize].1
            }

            pub(super) fn from_code(op: u8) -> Option<$ty> {
                $table.iter().find(|(_, code, _)| *code == op).map(|(v, _, _)| *v)
            }

            /// The C operator the disassembler prints (`+=`, `s>>=`, `==`, `s>`, `&`).
            pub fn symbol(self) -> &'static str {
                $table[self as usize].2
            }
        }
    };
}

/// Two-operand ALU operations (`dst op= src`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Or,
    And,
    Lsh,
    Rsh,
    Mod,
    Xor,
    Mov,
    Arsh,
}

// Each AluOp with its opcode and C operator, in enum order.
opcode_table!(
    AluOp,
    ALU_OPS,
    12,
    [
        (Add, BPF_ADD, "+="),
        (Sub, BPF_SUB, "-="),
        (Mul, BPF_MUL, "*="),
        (Div, BPF_DIV, "/="),
        (Or, BPF_OR, "|="),
        (And, BPF_AND, "&="),
        (Lsh, BPF_LSH, "<<="),
        (Rsh, BPF_RSH, ">>="),
        (Mod, BPF_MOD, "%="),
        (Xor, BPF_XOR, "^="),
        (Mov, BPF_MOV, "="),
        (Arsh, BPF_ARSH, "s>>="),
    ]
);

/// Conditions of conditional jumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    Eq,
    Gt,
    Ge,
    Set,
    Ne,
    Sgt,
    Sge,
    Lt,
    Le,
    Slt,
    Sle,
}

// Each Cond with its opcode and C operator, in enum order.
opcode_table!(
    Cond,
    CONDS,
    11,
    [
        (Eq, BPF_JEQ, "=="),
        (Gt, BPF_JGT, ">"),
        (Ge, BPF_JGE, ">="),
        (Set, BPF_JSET, "&"),
        (Ne, BPF_JNE, "!="),
        (Sgt, BPF_JSGT, "s>"),
        (Sge, BPF_JSGE, "s>="),
        (Lt, BPF_JLT, "<"),
        (Le, BPF_JLE, "<="),
        (Slt, BPF_JSLT, "s<"),
        (Sle, BPF_JSLE, "s<="),
    ]
);

/// Atomic read-modify-write operations on memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `lock *(dst + off) op= src`, or with `fetch`, `src = atomic_fetch_op(dst + off, src)`.
    Add {
        fetch: bool,
    },
    Or {
        fetch: bool,
    },
    And {
        fetch: bool,
    },
    Xor {
        fetch: bool,
    },
    /// `src = xchg(dst + off, src)`.
    Xchg,
    /// `r0 = cmpxchg(dst + off, r0, src)`.
    Cmpxchg,
}

impl AtomicOp {
    pub(super) fn imm(self) -> i32 {
        let f = |fetch: bool| if fetch { i32::from(BPF_FETCH) } else { 0 };
        match self {
            AtomicOp::Add { fetch } => i32::from(BPF_ADD) | f(fetch),
            AtomicOp::Or { fetch } => i32::from(BPF_OR) | f(fetch),
            AtomicOp::And { fetch } => i32::from(BPF_AND) | f(fetch),
            AtomicOp::Xor { fetch } => i32::from(BPF_XOR) | f(fetch),
            AtomicOp::Xchg => BPF_XCHG,
            AtomicOp::Cmpxchg => BPF_CMPXCHG,
        }
    }

    pub(super) fn from_imm(imm: i32) -> Option<AtomicOp> {
        if imm == BPF_XCHG {
            return Some(AtomicOp::Xchg);
        }
        if imm == BPF_CMPXCHG {
            return Some(AtomicOp::Cmpxchg);
        }
        let fetch = imm & i32::from(BPF_FETCH) != 0;
        let op = u8::try_from(imm & !i32::from(BPF_FETCH)).ok()?;
        match op {
            BPF_ADD => Some(AtomicOp::Add { fetch }),
            BPF_OR => Some(AtomicOp::Or { fetch }),
            BPF_AND => Some(AtomicOp::And { fetch }),
            BPF_XOR => Some(AtomicOp::Xor { fetch }),
            _ => None,
        }
    }
}

/// Byte-order conversions (`BPF_END`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Convert to little endian (`le16`, ...): a truncation on x86.
    ToLe,
    /// Convert to big endian (`be16`, ...).
    ToBe,
    /// Unconditional byte swap (`bswap16`, ...; `BPF_ALU64 | BPF_END`, kernel 6.6+).
    Swap,
}

/// What the second slot of a 64-bit immediate load refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Imm64 {
    /// A plain constant.
    Const(i64),
    /// `BPF_PSEUDO_MAP_FD`: the map with this fd (the kernel replaces it with the map pointer).
    MapFd(i32),
    /// `BPF_PSEUDO_MAP_VALUE`: the address of `offset` bytes into the value of an array map.
    MapValue { fd: i32, offset: u32 },
}

/// The target of a call instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    Helper(Helper),
    /// A BPF-to-BPF call, relative to the next instruction.
    Local(i32),
    /// A kernel function by BTF id.
    Kfunc(i32),
}

/// One eBPF instruction, by meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Instruction {
    /// `dst op= src` in 32 or 64 bits.
    Alu { width: Width, op: AluOp, dst: Reg, src: Src },
    /// `dst = -dst`.
    Neg { width: Width, dst: Reg },
    /// `dst = le16/be32/bswap64 dst`; `bits` is 16, 32 or 64.
    Endian { kind: Endian, bits: u8, dst: Reg },
    /// `dst = imm64` in two slots.
    LoadImm64 { dst: Reg, value: Imm64 },
    /// `dst = *(size *)(src + off)`.
    Load { size: Size, dst: Reg, src: Reg, off: i16 },
    /// `*(size *)(dst + off) = imm`.
    StoreImm { size: Size, dst: Reg, off: i16, imm: i32 },
    /// `*(size *)(dst + off) = src`.
    Store { size: Size, dst: Reg, off: i16, src: Reg },
    /// Atomic operation on `*(size *)(dst + off)` with `src`; size is W or DW.
    Atomic { size: Size, op: AtomicOp, dst: Reg, src: Reg, off: i16 },
    /// `goto pc + 1 + off`.
    Ja { off: i16 },
    /// `if dst cond src goto pc + 1 + off`.
    Jump { width: Width, cond: Cond, dst: Reg, src: Src, off: i16 },
    /// `call ...`.
    Call(Call),
    /// `exit`.
    Exit,
}

/// The 8-byte wire form of one instruction slot (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct RawInsn {
    pub code: u8,
    /// Low nibble: dst register; high nibble: src register.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl RawInsn {
    /// Builds a slot from its fields.
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> RawInsn {
        RawInsn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
    }

    /// The dst register number field.
    pub fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    /// The src register number field.
    pub fn src(&self) -> u8 {
        self.regs >> 4
    }

    /// The little-endian bytes the kernel reads.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    /// Parses one slot from its little-endian bytes.
    pub fn from_bytes(b: [u8; 8]) -> RawInsn {
        RawInsn {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Serializes slots into the byte stream handed to `BPF_PROG_LOAD` or an ELF section.
pub fn to_bytes(insns: &[RawInsn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

/// Parses a byte stream into slots; the length must be a multiple of 8.
pub fn from_bytes(bytes: &[u8]) -> Result<Vec<RawInsn>, DecodeError> {
    if bytes.len() % 8 != 0 {
        return Err(DecodeError { index: bytes.len() / 8, reason: format!("{} trailing bytes", bytes.len() % 8) });
    }
    Ok(bytes.chunks_exact(8).map(|c| RawInsn::from_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
}

/// An instruction slot that does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Index of the offending slot.
    pub index: usize,
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "instruction {}: {}", self.index, self.reason)
    }
}

impl std::error::Error for DecodeError {}

fn width_class(width: Width, c32: u8, c64: u8) -> u8 {
    match width {
        Width::W32 => c32,
        Width::W64 => c64,
    }
}

impl Instruction {
    /// Number of 8-byte slots this instruction occupies (2 for 64-bit immediate loads).
    pub fn slots(&self) -> usize {
        match self {
            Instruction::LoadImm64 { .. } => 2,
            _ => 1,
        }
    }

    /// Encodes into one or two slots, appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<RawInsn>) {
        use Instruction::*;
        let raw = match *self {
            Alu { width, op, dst, src } => {
                let class = width_class(width, BPF_ALU, BPF_ALU64);
                match src {
                    Src::Imm(imm) => RawInsn::new(class | op.code() | BPF_K, dst.num(), 0, 0, imm),
                    Src::Reg(s) => RawInsn::new(class | op.code() | BPF_X, dst.num(), s.num(), 0, 0),
                }
            }
            Neg { width, dst } => RawInsn::new(width_class(width, BPF_ALU, BPF_ALU64) | BPF_NEG, dst.num(), 0, 0, 0),
            Endian { kind, bits, dst } => {
                let code = match kind {
                    self::Endian::ToLe => BPF_ALU | BPF_END | BPF_TO_LE,
                    self::Endian::ToBe => BPF_ALU | BPF_END | BPF_TO_BE,
                    self::Endian::Swap => BPF_ALU64 | BPF_END | BPF_TO_LE,
                };
                RawInsn::new(code, dst.num(), 0, 0, i32::from(bits))
            }
            LoadImm64 { dst, value } => {
                let (src, lo, hi) = match value {
                    Imm64::Const(v) => (0, v as i32, (v >> 32) as i32),
                    Imm64::MapFd(fd) => (BPF_PSEUDO_MAP_FD, fd, 0),
                    Imm64::MapValue { fd, offset } => (BPF_PSEUDO_MAP_VALUE, fd, offset as i32),
                };
                out.push(RawInsn::new(BPF_LD | BPF_DW | BPF_IMM, dst.num(), src, 0, lo));
                RawInsn::new(0, 0, 0, 0, hi)
            }
            Load { size, dst, src, off } => RawInsn::new(BPF_LDX | BPF_MEM | size.code(), dst.num(), src.num(), off, 0),
            StoreImm { size, dst, off, imm } => RawInsn::new(BPF_ST | BPF_MEM | size.code(), dst.num(), 0, off, imm),
            Store { size, dst, off, src } => {
                RawInsn::new(BPF_STX | BPF_MEM | size.code(), dst.num(), src.num(), off, 0)
            }
            Atomic { size, op, dst, src, off } => {
                RawInsn::new(BPF_STX | BPF_ATOMIC | size.code(), dst.num(), src.num(), off, op.imm())
            }
            Ja { off } => RawInsn::new(BPF_JMP | BPF_JA, 0, 0, off, 0),
            Jump { width, cond, dst, src, off } => {
                let class = width_class(width, BPF_JMP32, BPF_JMP);
                match src {
                    Src::Imm(imm) => RawInsn::new(class | cond.code() | BPF_K, dst.num(), 0, off, imm),
                    Src::Reg(s) => RawInsn::new(class | cond.code() | BPF_X, dst.num(), s.num(), off, 0),
                }
            }
            Call(call) => {
                let (src, imm) = match call {
                    self::Call::Helper(h) => (0, h.id() as i32),
                    self::Call::Local(rel) => (BPF_PSEUDO_CALL, rel),
                    self::Call::Kfunc(id) => (BPF_PSEUDO_KFUNC_CALL, id),
                };
                RawInsn::new(BPF_JMP | BPF_CALL, 0, src, 0, imm)
            }
            Exit => RawInsn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        };
        out.push(raw);
    }

    /// Encodes into a fresh vector of slots.
    pub fn encode(&self) -> Vec<RawInsn> {
        let mut v = Vec::with_capacity(2);
        self.encode_into(&mut v);
        v
    }
}
