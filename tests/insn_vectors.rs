//! Encodings compared byte for byte with LLVM's BPF assembler.
//!
//! Each entry pairs an instruction built with the crate and its spelling in LLVM's syntax.
//! `tests/data/insn/vectors.txt` holds LLVM's encoding of each spelling, made by
//! `tests/data/insn/gen-vectors.sh`; run this test with `KTM_REGEN_VECTORS=1` first to
//! rewrite the list of spellings it feeds to LLVM.

use ktm::insn::{
    AluOp, AtomicOp, Call, Cond, Endian, Helper, Imm64, Instruction, Reg, Size, Src, Width, R0, R1, R10, R2,
};

const ALU: [(AluOp, &str); 12] = [
    (AluOp::Add, "+="),
    (AluOp::Sub, "-="),
    (AluOp::Mul, "*="),
    (AluOp::Div, "/="),
    (AluOp::Or, "|="),
    (AluOp::And, "&="),
    (AluOp::Lsh, "<<="),
    (AluOp::Rsh, ">>="),
    (AluOp::Mod, "%="),
    (AluOp::Xor, "^="),
    (AluOp::Mov, "="),
    (AluOp::Arsh, "s>>="),
];

const CONDS: [(Cond, &str); 11] = [
    (Cond::Eq, "=="),
    (Cond::Gt, ">"),
    (Cond::Ge, ">="),
    (Cond::Set, "&"),
    (Cond::Ne, "!="),
    (Cond::Sgt, "s>"),
    (Cond::Sge, "s>="),
    (Cond::Lt, "<"),
    (Cond::Le, "<="),
    (Cond::Slt, "s<"),
    (Cond::Sle, "s<="),
];

const SIZES: [(Size, &str); 4] = [(Size::B, "u8"), (Size::H, "u16"), (Size::W, "u32"), (Size::DW, "u64")];

fn r(width: Width, reg: Reg) -> String {
    match width {
        Width::W32 => format!("w{}", reg.num()),
        Width::W64 => format!("r{}", reg.num()),
    }
}

fn cases() -> Vec<(String, Instruction)> {
    let mut v = Vec::new();
    for width in [Width::W64, Width::W32] {
        for (op, sym) in ALU {
            v.push((
                format!("{} {sym} {}", r(width, R1), r(width, R2)),
                Instruction::Alu { width, op, dst: R1, src: Src::Reg(R2) },
            ));
            v.push((format!("{} {sym} -7", r(width, R1)), Instruction::Alu { width, op, dst: R1, src: Src::Imm(-7) }));
        }
        v.push((format!("{0} = -{0}", r(width, R1)), Instruction::Neg { width, dst: R1 }));
        for (cond, sym) in CONDS {
            v.push((
                format!("if {} {sym} {} goto +3", r(width, R1), r(width, R2)),
                Instruction::Jump { width, cond, dst: R1, src: Src::Reg(R2), off: 3 },
            ));
            v.push((
                format!("if {} {sym} 7 goto -2", r(width, R1)),
                Instruction::Jump { width, cond, dst: R1, src: Src::Imm(7), off: -2 },
            ));
        }
    }
    for bits in [16u8, 32, 64] {
        for (kind, name) in [(Endian::ToLe, "le"), (Endian::ToBe, "be"), (Endian::Swap, "bswap")] {
            v.push((format!("r1 = {name}{bits} r1"), Instruction::Endian { kind, bits, dst: R1 }));
        }
    }
    for (size, name) in SIZES {
        v.push((format!("r1 = *({name} *)(r2 + 3)"), Instruction::Load { size, dst: R1, src: R2, off: 3 }));
        v.push((format!("r1 = *({name} *)(r10 - 8)"), Instruction::Load { size, dst: R1, src: R10, off: -8 }));
        v.push((format!("*({name} *)(r10 - 8) = r1"), Instruction::Store { size, dst: R10, off: -8, src: R1 }));
        v.push((format!("*({name} *)(r10 - 16) = 5"), Instruction::StoreImm { size, dst: R10, off: -16, imm: 5 }));
    }
    for (size, t, w) in [(Size::DW, "u64", "r"), (Size::W, "u32", "w")] {
        for (name, sym, op, fop) in [
            ("add", "+=", AtomicOp::Add { fetch: false }, AtomicOp::Add { fetch: true }),
            ("or", "|=", AtomicOp::Or { fetch: false }, AtomicOp::Or { fetch: true }),
            ("and", "&=", AtomicOp::And { fetch: false }, AtomicOp::And { fetch: true }),
            ("xor", "^=", AtomicOp::Xor { fetch: false }, AtomicOp::Xor { fetch: true }),
        ] {
            v.push((
                format!("lock *({t} *)(r1 + 8) {sym} {w}2"),
                Instruction::Atomic { size, op, dst: R1, src: R2, off: 8 },
            ));
            v.push((
                format!("{w}2 = atomic_fetch_{name}(({t} *)(r1 + 8), {w}2)"),
                Instruction::Atomic { size, op: fop, dst: R1, src: R2, off: 8 },
            ));
        }
    }
    v.push((
        "r2 = xchg_64(r1 + 8, r2)".into(),
        Instruction::Atomic { size: Size::DW, op: AtomicOp::Xchg, dst: R1, src: R2, off: 8 },
    ));
    v.push((
        "w2 = xchg32_32(r1 + 8, w2)".into(),
        Instruction::Atomic { size: Size::W, op: AtomicOp::Xchg, dst: R1, src: R2, off: 8 },
    ));
    v.push((
        "r0 = cmpxchg_64(r1 + 8, r0, r2)".into(),
        Instruction::Atomic { size: Size::DW, op: AtomicOp::Cmpxchg, dst: R1, src: R2, off: 8 },
    ));
    v.push((
        "w0 = cmpxchg32_32(r1 + 8, w0, w2)".into(),
        Instruction::Atomic { size: Size::W, op: AtomicOp::Cmpxchg, dst: R1, src: R2, off: 8 },
    ));
    v.push(("r1 = 4886718345 ll".into(), Instruction::LoadImm64 { dst: R1, value: Imm64::Const(0x1_2345_6789) }));
    v.push(("r0 = -2 ll".into(), Instruction::LoadImm64 { dst: R0, value: Imm64::Const(-2) }));
    v.push(("goto +2".into(), Instruction::Ja { off: 2 }));
    v.push(("goto -4".into(), Instruction::Ja { off: -4 }));
    v.push(("call 1".into(), Instruction::Call(Call::Helper(Helper::MapLookupElem))));
    v.push(("call 80".into(), Instruction::Call(Call::Helper(Helper::GetCurrentCgroupId))));
    v.push(("exit".into(), Instruction::Exit));
    v
}

fn parse_hex(list: &str) -> Vec<u8> {
    list.split(',').map(|b| u8::from_str_radix(b.trim().trim_start_matches("0x"), 16).unwrap()).collect()
}

#[test]
fn encodings_match_llvm() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/insn");
    let cases = cases();
    if std::env::var_os("KTM_REGEN_VECTORS").is_some() {
        let asm: String = cases.iter().map(|(a, _)| format!("{a}\n")).collect();
        std::fs::write(dir.join("vectors.asm"), asm).unwrap();
        eprintln!("wrote vectors.asm; now run tests/data/insn/gen-vectors.sh");
        return;
    }
    let text = std::fs::read_to_string(dir.join("vectors.txt")).unwrap();
    let vectors: std::collections::HashMap<String, Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(asm, hex)| (asm.split_whitespace().collect::<Vec<_>>().join(" "), parse_hex(hex)))
        .collect();
    assert!(vectors.len() >= cases.len(), "every case has an LLVM vector ({} < {})", vectors.len(), cases.len());
    for (asm, insn) in &cases {
        let llvm = vectors.get(asm.as_str()).unwrap_or_else(|| panic!("no LLVM vector for `{asm}`"));
        let ours = ktm::insn::to_bytes(&insn.encode());
        assert_eq!(&ours, llvm, "`{asm}`: ours {ours:02x?}, LLVM {llvm:02x?}");
        // And back: LLVM's bytes decode to the same instruction.
        let slots = ktm::insn::from_bytes(llvm).unwrap();
        assert_eq!(Instruction::decode(&slots, 0).unwrap().0, *insn, "`{asm}` decodes back");
    }
}
