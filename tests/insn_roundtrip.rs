//! decode(encode(x)) == x over random instructions; the disassembler and decoder never
//! panic on random slots.

use ktm::insn::{AluOp, AtomicOp, Call, Cond, Endian, Helper, Imm64, Instruction, RawInsn, Reg, Size, Src, Width};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn reg(&mut self) -> Reg {
        self.pick(&Reg::ALL)
    }
}

const SIZES: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];

fn random(r: &mut Rng) -> Instruction {
    let width = r.pick(&[Width::W32, Width::W64]);
    let src = if r.next() % 2 == 0 { Src::Reg(r.reg()) } else { Src::Imm(r.next() as i32) };
    match r.next() % 12 {
        0 => Instruction::Alu { width, op: r.pick(&AluOp::ALL), dst: r.reg(), src },
        1 => Instruction::Neg { width, dst: r.reg() },
        2 => Instruction::Endian {
            kind: r.pick(&[Endian::ToLe, Endian::ToBe, Endian::Swap]),
            bits: r.pick(&[16, 32, 64]),
            dst: r.reg(),
        },
        3 => {
            let value = match r.next() % 3 {
                0 => Imm64::Const(r.next() as i64),
                1 => Imm64::MapFd(r.next() as i32),
                _ => Imm64::MapValue { fd: r.next() as i32, offset: r.next() as u32 },
            };
            Instruction::LoadImm64 { dst: r.reg(), value }
        }
        4 => Instruction::Load { size: r.pick(&SIZES), dst: r.reg(), src: r.reg(), off: r.next() as i16 },
        5 => Instruction::StoreImm { size: r.pick(&SIZES), dst: r.reg(), off: r.next() as i16, imm: r.next() as i32 },
        6 => Instruction::Store { size: r.pick(&SIZES), dst: r.reg(), off: r.next() as i16, src: r.reg() },
        7 => {
            let fetch = r.next() % 2 == 0;
            let op = r.pick(&[
                AtomicOp::Add { fetch },
                AtomicOp::Or { fetch },
                AtomicOp::And { fetch },
                AtomicOp::Xor { fetch },
                AtomicOp::Xchg,
                AtomicOp::Cmpxchg,
            ]);
            Instruction::Atomic {
                size: r.pick(&[Size::W, Size::DW]),
                op,
                dst: r.reg(),
                src: r.reg(),
                off: r.next() as i16,
            }
        }
        8 => Instruction::Ja { off: r.next() as i16 },
        9 => Instruction::Jump { width, cond: r.pick(&Cond::ALL), dst: r.reg(), src, off: r.next() as i16 },
        10 => Instruction::Call(match r.next() % 3 {
            0 => Call::Helper(Helper::from_id((r.next() % 300) as u32)),
            1 => Call::Local(r.next() as i32),
            _ => Call::Kfunc(r.next() as i32),
        }),
        _ => Instruction::Exit,
    }
}

#[test]
fn decode_of_encode_is_identity() {
    let seed = 0x0dd_ba11_u64;
    println!("seed {seed:#x}");
    let mut r = Rng(seed);
    for _ in 0..100_000 {
        let insn = random(&mut r);
        let raw = insn.encode();
        let (back, used) = Instruction::decode(&raw, 0).unwrap_or_else(|e| panic!("{insn:?}: {e}"));
        assert_eq!(back, insn);
        assert_eq!(used, raw.len());
        // Bytes round-trip too.
        assert_eq!(ktm::insn::from_bytes(&ktm::insn::to_bytes(&raw)).unwrap(), raw);
    }
}

#[test]
fn random_slots_never_panic() {
    let mut r = Rng(0xfeed_f00d);
    for _ in 0..2_000 {
        let slots: Vec<RawInsn> = (0..1 + r.next() % 16).map(|_| RawInsn::from_bytes(r.next().to_le_bytes())).collect();
        let _ = ktm::insn::disasm(&slots);
        let _ = ktm::insn::decode_all(&slots);
        let _ = Instruction::decode(&slots, (r.next() % 20) as usize);
    }
}
