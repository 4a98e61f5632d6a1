//! Properties over many random instructions: decoding inverts encoding, and nothing that
//! reads instructions panics on garbage.
//!
//! The generator is a fixed-seed xorshift, so a failure reproduces; the seed is printed and
//! `KTM_INSN_SEED=<n>` runs another.

#[path = "common/rng.rs"]
mod rng;

use ktm::insn::*;
use rng::Rng;

const COUNT: usize = 100_000;
const DEFAULT_SEED: u64 = 0x6b74_6d5f_696e_736e; // "ktm_insn"

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("KTM_INSN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
        eprintln!("seed {seed} (set KTM_INSN_SEED to change)");
        Rng(seed.max(1))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }

    /// Mostly the edges and small values that encodings get wrong, sometimes anything.
    fn i32(&mut self) -> i32 {
        match self.below(4) {
            0 => self.pick(&[0, 1, -1, i32::MIN, i32::MAX, 0x7f, 0x80, 0xffff, -0x8000]),
            1 => self.below(64) as i32 - 32,
            _ => self.next() as i32,
        }
    }

    fn i16(&mut self) -> i16 {
        match self.below(3) {
            0 => self.pick(&[0, 1, -1, i16::MIN, i16::MAX, -8]),
            _ => self.next() as i16,
        }
    }

    fn i64(&mut self) -> i64 {
        match self.below(3) {
            0 => self.pick(&[0, -1, i64::MIN, i64::MAX, 0xffff_ffff, 0x1_0000_0000]),
            1 => i64::from(self.i32()),
            _ => self.next() as i64,
        }
    }

    fn reg(&mut self) -> Reg {
        self.pick(&Reg::ALL)
    }

    fn src(&mut self) -> Src {
        if self.bool() {
            Src::Reg(self.reg())
        } else {
            Src::Imm(self.i32())
        }
    }

    fn width(&mut self) -> Width {
        self.pick(&[Width::W32, Width::W64])
    }

    fn size(&mut self) -> Size {
        self.pick(&[Size::B, Size::H, Size::W, Size::DW])
    }
}

const CONDS: [Cond; 11] =
    [Cond::Eq, Cond::Gt, Cond::Ge, Cond::Set, Cond::Ne, Cond::Sgt, Cond::Sge, Cond::Lt, Cond::Le, Cond::Slt, Cond::Sle];

const ATOMIC_OPS: [AtomicOp; 10] = [
    AtomicOp::Add { fetch: false },
    AtomicOp::Add { fetch: true },
    AtomicOp::Or { fetch: false },
    AtomicOp::Or { fetch: true },
    AtomicOp::And { fetch: false },
    AtomicOp::And { fetch: true },
    AtomicOp::Xor { fetch: false },
    AtomicOp::Xor { fetch: true },
    AtomicOp::Xchg,
    AtomicOp::Cmpxchg,
];

/// Any well-formed instruction, every variant equally likely.
fn instruction(rng: &mut Rng) -> Instruction {
    match rng.below(12) {
        0 => Instruction::Alu { width: rng.width(), op: rng.pick(&AluOp::ALL), dst: rng.reg(), src: rng.src() },
        1 => Instruction::Neg { width: rng.width(), dst: rng.reg() },
        2 => Instruction::Endian {
            kind: rng.pick(&[Endian::ToLe, Endian::ToBe, Endian::Swap]),
            bits: rng.pick(&[16, 32, 64]),
            dst: rng.reg(),
        },
        3 => Instruction::LoadImm64 {
            dst: rng.reg(),
            value: match rng.below(3) {
                0 => Imm64::Const(rng.i64()),
                1 => Imm64::MapFd(rng.i32()),
                _ => Imm64::MapValue { fd: rng.i32(), offset: rng.i32() as u32 },
            },
        },
        4 => Instruction::Load { size: rng.size(), dst: rng.reg(), src: rng.reg(), off: rng.i16() },
        5 => Instruction::StoreImm { size: rng.size(), dst: rng.reg(), off: rng.i16(), imm: rng.i32() },
        6 => Instruction::Store { size: rng.size(), dst: rng.reg(), off: rng.i16(), src: rng.reg() },
        7 => Instruction::Atomic {
            size: rng.pick(&[Size::W, Size::DW]),
            op: rng.pick(&ATOMIC_OPS),
            dst: rng.reg(),
            src: rng.reg(),
            off: rng.i16(),
        },
        8 => Instruction::Ja { off: rng.i16() },
        9 => Instruction::Jump {
            width: rng.width(),
            cond: rng.pick(&CONDS),
            dst: rng.reg(),
            src: rng.src(),
            off: rng.i16(),
        },
        10 => Instruction::Call(match rng.below(3) {
            // Through from_id: `Helper::Other(1)` and `Helper::MapLookupElem` encode alike,
            // and decoding gives the named one.
            0 => Call::Helper(Helper::from_id(if rng.bool() { rng.below(220) as u32 } else { rng.next() as u32 })),
            1 => Call::Local(rng.i32()),
            _ => Call::Kfunc(rng.i32()),
        }),
        _ => Instruction::Exit,
    }
}

#[test]
fn decode_inverts_encode() {
    let mut rng = Rng::from_env();
    let mut all = Vec::with_capacity(COUNT);
    let mut stream = Vec::with_capacity(COUNT * 2);
    for _ in 0..COUNT {
        let insn = instruction(&mut rng);
        let slots = insn.encode();
        assert_eq!(slots.len(), insn.slots(), "{insn:?}");
        let decoded = Instruction::decode(&slots, 0);
        assert_eq!(decoded, Ok((insn, slots.len())), "{insn:?} -> {slots:?}");
        // The text is total too.
        assert!(!insn.to_string().is_empty());
        all.push(insn);
        stream.extend(slots);
    }
    // As one program: slot boundaries found again, bytes round-trip.
    assert_eq!(from_bytes(&to_bytes(&stream)).unwrap(), stream);
    assert_eq!(decode_all(&stream).unwrap(), all);
    let text = disasm(&stream);
    assert_eq!(text.lines().count(), COUNT);
    assert!(!text.contains("<invalid"));
}

/// A slot built to reach deep into the decoder: mostly real opcodes with fields that are
/// often zero (as real ones are), sometimes pure noise.
fn raw_slot(rng: &mut Rng) -> RawInsn {
    const CODES: [u8; 24] = [
        0x07, 0x0f, 0x04, 0x0c, 0x87, 0x84, 0xd4, 0xdc, 0xd7, 0xdf, 0x18, 0x79, 0x61, 0x7a, 0x7b, 0x63, 0xdb, 0xc3,
        0x05, 0x15, 0x1e, 0x85, 0x95, 0x00,
    ];
    let code = if rng.below(4) == 0 { rng.next() as u8 } else { rng.pick(&CODES) };
    let field = |rng: &mut Rng| rng.below(3) != 0;
    let regs = if field(rng) { rng.next() as u8 } else { 0 };
    let off = if field(rng) { rng.i16() } else { 0 };
    let imm = match rng.below(3) {
        0 => 0,
        1 => rng.pick(&[1, 16, 32, 64, 0x41, 0xe1, 0xf1]),
        _ => rng.i32(),
    };
    RawInsn { code, regs, off, imm }
}

#[test]
fn garbage_never_panics_and_what_decodes_reencodes() {
    let mut rng = Rng::from_env();
    let mut slots = Vec::with_capacity(COUNT);
    for _ in 0..COUNT {
        slots.push(raw_slot(&mut rng));
    }
    let mut decoded = 0;
    for i in 0..slots.len() {
        if let Ok((insn, n)) = Instruction::decode(&slots, i) {
            decoded += 1;
            // Strict decoding: nothing the slots hold is dropped.
            assert_eq!(insn.encode(), slots[i..i + n].to_vec(), "slot {i}: {insn:?}");
        }
    }
    eprintln!("{decoded} of {COUNT} random slots decode");
    assert!(decoded > COUNT / 10, "the generator should reach the decoder's success paths");
    assert!(decoded < COUNT, "and its failure paths");

    // Fully random bytes too, through every reader.
    let bytes: Vec<u8> = (0..COUNT * 8).map(|_| rng.next() as u8).collect();
    let noise = from_bytes(&bytes).unwrap();
    for chunk in [&slots[..], &noise[..]] {
        let text = disasm(chunk);
        assert!(text.lines().count() <= chunk.len());
        let program = Program::from_raw(chunk[..1000].to_vec());
        let _ = program.disasm();
        for i in 0..1001 {
            let _ = disasm_at(&program, i);
        }
        let _ = decode_all(chunk);
    }
    assert!(from_bytes(&bytes[..13]).is_err());
}

/// The static checks take whatever the builder is given: random programs finish or are
/// refused with a reason, and never panic.
#[test]
fn checks_never_panic_on_random_programs() {
    let mut rng = Rng::from_env();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..5_000 {
        let mut a = Asm::new();
        // Usually set r0-r9 first, so that more programs get past the register checks.
        if rng.below(4) != 0 {
            for r in &Reg::ALL[..10] {
                a.mov64(*r, 0);
            }
        }
        let len = 1 + rng.below(24);
        for _ in 0..len {
            let mut insn = instruction(&mut rng);
            if rng.below(8) == 0 {
                insn = Instruction::Exit;
            }
            // Short jumps, so that some land inside and the dataflow runs.
            match &mut insn {
                Instruction::Ja { off } | Instruction::Jump { off, .. } => {
                    *off = rng.below(8) as i16 - 4;
                }
                Instruction::Call(Call::Local(rel)) => *rel = rng.below(8) as i32 - 4,
                _ => {}
            }
            a.emit(insn);
        }
        if rng.bool() {
            a.exit();
        }
        match a.finish() {
            Ok(p) => {
                ok += 1;
                assert!(!p.disasm().contains("<invalid"));
            }
            Err(e) => {
                refused += 1;
                assert!(!e.reason.is_empty());
            }
        }
    }
    eprintln!("{ok} random programs pass the checks, {refused} are refused");
    assert!(refused > 0);
}
