//! The encoder checked byte for byte against LLVM's BPF assembler.
//!
//! `tests/data/insn/vectors.txt` holds what `llvm-mc` emitted for each line of assembly
//! (regenerate with `tests/data/insn/gen-vectors.sh`; this test needs no LLVM). For each line,
//! the table below builds the same instruction with the crate's `Asm`, inside a small program
//! that passes the static checks, and the bytes must be identical. The table is written out
//! instruction by instruction rather than parsed from the assembly, so that it is the
//! crate's own constructors, not a second parser, that are being tested.

use ktm::insn::*;

const VECTORS: &str = include_str!("data/insn/vectors.txt");

/// Emits the instruction of one vector (and, for forward jumps, what they jump over).
type Build = fn(&mut Asm);

/// Slots before the instruction under test: r0-r9 set (so every read is of a set register),
/// then a jump to the epilogue (so that `exit` under test leaves nothing unreachable).
const PROLOGUE: usize = 11;

/// A forward jump by one: the jump, one instruction, then its target.
fn over(a: &mut Asm, jump: fn(&mut Asm, Label)) {
    let l = a.label("over");
    jump(a, l);
    a.mov64(R0, 1);
    a.bind(l);
}

#[rustfmt::skip]
const TABLE: &[(&str, Build)] = &[
    ("r3 += 7", |a| { a.add64(R3, 7); }),
    ("r3 += r4", |a| { a.add64(R3, R4); }),
    ("r3 -= -8", |a| { a.sub64(R3, -8); }),
    ("r3 -= r4", |a| { a.sub64(R3, R4); }),
    ("r3 *= 2147483647", |a| { a.mul64(R3, 2147483647); }),
    ("r3 *= r4", |a| { a.mul64(R3, R4); }),
    ("r3 /= 7", |a| { a.div64(R3, 7); }),
    ("r3 /= r4", |a| { a.div64(R3, R4); }),
    ("r3 |= 0x10", |a| { a.or64(R3, 16); }),
    ("r3 |= r4", |a| { a.or64(R3, R4); }),
    ("r3 &= 255", |a| { a.and64(R3, 255); }),
    ("r3 &= r4", |a| { a.and64(R3, R4); }),
    ("r3 <<= 63", |a| { a.lsh64(R3, 63); }),
    ("r3 <<= r4", |a| { a.lsh64(R3, R4); }),
    ("r3 >>= 1", |a| { a.rsh64(R3, 1); }),
    ("r3 >>= r4", |a| { a.rsh64(R3, R4); }),
    ("r3 ^= -1", |a| { a.xor64(R3, -1); }),
    ("r3 ^= r4", |a| { a.xor64(R3, R4); }),
    ("r3 = -2147483648", |a| { a.mov64(R3, -2147483648); }),
    ("r3 = r4", |a| { a.mov64(R3, R4); }),
    ("r3 s>>= 7", |a| { a.arsh64(R3, 7); }),
    ("r3 s>>= r4", |a| { a.arsh64(R3, R4); }),
    ("w3 += 7", |a| { a.add32(R3, 7); }),
    ("w3 += w4", |a| { a.add32(R3, R4); }),
    ("w3 -= -8", |a| { a.sub32(R3, -8); }),
    ("w3 -= w4", |a| { a.sub32(R3, R4); }),
    ("w3 *= 3", |a| { a.mul32(R3, 3); }),
    ("w3 *= w4", |a| { a.mul32(R3, R4); }),
    ("w3 /= 7", |a| { a.div32(R3, 7); }),
    ("w3 /= w4", |a| { a.div32(R3, R4); }),
    ("w3 |= 0x10", |a| { a.or32(R3, 16); }),
    ("w3 |= w4", |a| { a.or32(R3, R4); }),
    ("w3 &= 255", |a| { a.and32(R3, 255); }),
    ("w3 &= w4", |a| { a.and32(R3, R4); }),
    ("w3 <<= 31", |a| { a.lsh32(R3, 31); }),
    ("w3 <<= w4", |a| { a.lsh32(R3, R4); }),
    ("w3 >>= 1", |a| { a.rsh32(R3, 1); }),
    ("w3 >>= w4", |a| { a.rsh32(R3, R4); }),
    ("w3 ^= -1", |a| { a.xor32(R3, -1); }),
    ("w3 ^= w4", |a| { a.xor32(R3, R4); }),
    ("w3 = 0", |a| { a.mov32(R3, 0); }),
    ("w3 = w4", |a| { a.mov32(R3, R4); }),
    ("w3 s>>= 7", |a| { a.arsh32(R3, 7); }),
    ("w3 s>>= w4", |a| { a.arsh32(R3, R4); }),
    ("r0 = 0", |a| { a.mov64(R0, 0); }),
    ("r1 = r10", |a| { a.mov64(R1, R10); }),
    ("r9 = r8", |a| { a.mov64(R9, R8); }),
    ("r3 = -r3", |a| { a.neg64(R3); }),
    ("w3 = -w3", |a| { a.neg32(R3); }),
    ("r5 = le16 r5", |a| { a.le(16, R5); }),
    ("r5 = le32 r5", |a| { a.le(32, R5); }),
    ("r5 = le64 r5", |a| { a.le(64, R5); }),
    ("r5 = be16 r5", |a| { a.be(16, R5); }),
    ("r5 = be32 r5", |a| { a.be(32, R5); }),
    ("r5 = be64 r5", |a| { a.be(64, R5); }),
    ("if r1 == 3 goto +1", |a| { over(a, |a, l| { a.jeq(R1, 3, l); }); }),
    ("if r1 == r2 goto +1", |a| { over(a, |a, l| { a.jeq(R1, R2, l); }); }),
    ("if r1 != 3 goto +1", |a| { over(a, |a, l| { a.jne(R1, 3, l); }); }),
    ("if r1 != r2 goto +1", |a| { over(a, |a, l| { a.jne(R1, R2, l); }); }),
    ("if r1 > 3 goto +1", |a| { over(a, |a, l| { a.jgt(R1, 3, l); }); }),
    ("if r1 > r2 goto +1", |a| { over(a, |a, l| { a.jgt(R1, R2, l); }); }),
    ("if r1 >= 3 goto +1", |a| { over(a, |a, l| { a.jge(R1, 3, l); }); }),
    ("if r1 >= r2 goto +1", |a| { over(a, |a, l| { a.jge(R1, R2, l); }); }),
    ("if r1 < 3 goto +1", |a| { over(a, |a, l| { a.jlt(R1, 3, l); }); }),
    ("if r1 < r2 goto +1", |a| { over(a, |a, l| { a.jlt(R1, R2, l); }); }),
    ("if r1 <= 3 goto +1", |a| { over(a, |a, l| { a.jle(R1, 3, l); }); }),
    ("if r1 <= r2 goto +1", |a| { over(a, |a, l| { a.jle(R1, R2, l); }); }),
    ("if r1 s> -3 goto +1", |a| { over(a, |a, l| { a.jsgt(R1, -3, l); }); }),
    ("if r1 s> r2 goto +1", |a| { over(a, |a, l| { a.jsgt(R1, R2, l); }); }),
    ("if r1 s>= -3 goto +1", |a| { over(a, |a, l| { a.jsge(R1, -3, l); }); }),
    ("if r1 s>= r2 goto +1", |a| { over(a, |a, l| { a.jsge(R1, R2, l); }); }),
    ("if r1 s< -3 goto +1", |a| { over(a, |a, l| { a.jslt(R1, -3, l); }); }),
    ("if r1 s< r2 goto +1", |a| { over(a, |a, l| { a.jslt(R1, R2, l); }); }),
    ("if r1 s<= -3 goto +1", |a| { over(a, |a, l| { a.jsle(R1, -3, l); }); }),
    ("if r1 s<= r2 goto +1", |a| { over(a, |a, l| { a.jsle(R1, R2, l); }); }),
    ("if w1 == 3 goto +1", |a| { over(a, |a, l| { a.jeq32(R1, 3, l); }); }),
    ("if w1 == w2 goto +1", |a| { over(a, |a, l| { a.jeq32(R1, R2, l); }); }),
    ("if w1 != 3 goto +1", |a| { over(a, |a, l| { a.jne32(R1, 3, l); }); }),
    ("if w1 != w2 goto +1", |a| { over(a, |a, l| { a.jne32(R1, R2, l); }); }),
    ("if w1 > 3 goto +1", |a| { over(a, |a, l| { a.jgt32(R1, 3, l); }); }),
    ("if w1 > w2 goto +1", |a| { over(a, |a, l| { a.jgt32(R1, R2, l); }); }),
    ("if w1 >= 3 goto +1", |a| { over(a, |a, l| { a.jge32(R1, 3, l); }); }),
    ("if w1 >= w2 goto +1", |a| { over(a, |a, l| { a.jge32(R1, R2, l); }); }),
    ("if w1 < 3 goto +1", |a| { over(a, |a, l| { a.jlt32(R1, 3, l); }); }),
    ("if w1 < w2 goto +1", |a| { over(a, |a, l| { a.jlt32(R1, R2, l); }); }),
    ("if w1 <= 3 goto +1", |a| { over(a, |a, l| { a.jle32(R1, 3, l); }); }),
    ("if w1 <= w2 goto +1", |a| { over(a, |a, l| { a.jle32(R1, R2, l); }); }),
    ("if w1 s> -3 goto +1", |a| { over(a, |a, l| { a.jsgt32(R1, -3, l); }); }),
    ("if w1 s> w2 goto +1", |a| { over(a, |a, l| { a.jsgt32(R1, R2, l); }); }),
    ("if w1 s>= -3 goto +1", |a| { over(a, |a, l| { a.jsge32(R1, -3, l); }); }),
    ("if w1 s>= w2 goto +1", |a| { over(a, |a, l| { a.jsge32(R1, R2, l); }); }),
    ("if w1 s< -3 goto +1", |a| { over(a, |a, l| { a.jslt32(R1, -3, l); }); }),
    ("if w1 s< w2 goto +1", |a| { over(a, |a, l| { a.jslt32(R1, R2, l); }); }),
    ("if w1 s<= -3 goto +1", |a| { over(a, |a, l| { a.jsle32(R1, -3, l); }); }),
    ("if w1 s<= w2 goto +1", |a| { over(a, |a, l| { a.jsle32(R1, R2, l); }); }),
    ("if r9 == 0 goto -2", |a| { a.emit(Instruction::Jump { width: Width::W64, cond: Cond::Eq, dst: R9, src: Src::Imm(0), off: -2 }); }),
    ("if w6 s< w7 goto -10", |a| { a.emit(Instruction::Jump { width: Width::W32, cond: Cond::Slt, dst: R6, src: Src::Reg(R7), off: -10 }); }),
    ("goto +0", |a| { let l = a.label("next"); a.ja(l).bind(l); }),
    ("goto -3", |a| { a.emit(Instruction::Ja { off: -3 }); }),
    ("call 1", |a| { a.call(Helper::MapLookupElem); }),
    ("call 185", |a| { a.call(Helper::GetFuncArgCnt); }),
    ("exit", |a| { a.exit(); }),
    ("r1 = *(u8 *)(r2 + 0)", |a| { a.ldx_b(R1, R2, 0); }),
    ("r1 = *(u16 *)(r2 - 2)", |a| { a.ldx_h(R1, R2, -2); }),
    ("r1 = *(u32 *)(r2 + 4)", |a| { a.ldx_w(R1, R2, 4); }),
    ("r1 = *(u64 *)(r2 - 8)", |a| { a.ldx_dw(R1, R2, -8); }),
    ("r7 = *(u64 *)(r6 + 32767)", |a| { a.ldx_dw(R7, R6, 32767); }),
    ("r7 = *(u8 *)(r6 - 32768)", |a| { a.ldx_b(R7, R6, -32768); }),
    ("*(u8 *)(r10 - 1) = r1", |a| { a.stx_b(R10, -1, R1); }),
    ("*(u16 *)(r10 - 2) = r1", |a| { a.stx_h(R10, -2, R1); }),
    ("*(u32 *)(r10 - 4) = r1", |a| { a.stx_w(R10, -4, R1); }),
    ("*(u64 *)(r10 - 8) = r1", |a| { a.stx_dw(R10, -8, R1); }),
    ("*(u64 *)(r9 + 32767) = r8", |a| { a.stx_dw(R9, 32767, R8); }),
    ("lock *(u32 *)(r1 + 8) += w2", |a| { a.atomic(Size::W, AtomicOp::Add { fetch: false }, R1, 8, R2); }),
    ("lock *(u64 *)(r1 - 8) += r2", |a| { a.atomic_add64(R1, -8, R2); }),
    ("lock *(u32 *)(r1 + 8) |= w2", |a| { a.atomic(Size::W, AtomicOp::Or { fetch: false }, R1, 8, R2); }),
    ("lock *(u64 *)(r1 + 8) |= r2", |a| { a.atomic(Size::DW, AtomicOp::Or { fetch: false }, R1, 8, R2); }),
    ("lock *(u32 *)(r1 + 8) &= w2", |a| { a.atomic(Size::W, AtomicOp::And { fetch: false }, R1, 8, R2); }),
    ("lock *(u64 *)(r1 + 8) &= r2", |a| { a.atomic(Size::DW, AtomicOp::And { fetch: false }, R1, 8, R2); }),
    ("lock *(u32 *)(r1 + 8) ^= w2", |a| { a.atomic(Size::W, AtomicOp::Xor { fetch: false }, R1, 8, R2); }),
    ("lock *(u64 *)(r1 + 8) ^= r2", |a| { a.atomic(Size::DW, AtomicOp::Xor { fetch: false }, R1, 8, R2); }),
    ("r1 = 0x123456789 ll", |a| { a.ld_imm64(R1, 0x123456789); }),
    ("r1 = -1 ll", |a| { a.ld_imm64(R1, -1); }),
    ("r2 = 0 ll", |a| { a.ld_imm64(R2, 0); }),
    ("r2 = 0x8000000000000000 ll", |a| { a.ld_imm64(R2, i64::MIN); }),
    ("r9 = 0xffffffff ll", |a| { a.ld_imm64(R9, 0xffffffff); }),
    ("r3 %= 9", |a| { a.mod64(R3, 9); }),
    ("r3 %= r4", |a| { a.mod64(R3, R4); }),
    ("w3 %= 9", |a| { a.mod32(R3, 9); }),
    ("w3 %= w4", |a| { a.mod32(R3, R4); }),
    ("if r1 & 0x10 goto +1", |a| { over(a, |a, l| { a.jset(R1, 16, l); }); }),
    ("if r1 & r2 goto +1", |a| { over(a, |a, l| { a.jset(R1, R2, l); }); }),
    ("if w1 & 0x10 goto +1", |a| { over(a, |a, l| { a.jset32(R1, 16, l); }); }),
    ("if w1 & w2 goto +1", |a| { over(a, |a, l| { a.jset32(R1, R2, l); }); }),
    ("*(u8 *)(r10 - 1) = 255", |a| { a.st_b(R10, -1, 255); }),
    ("*(u16 *)(r10 - 2) = -1", |a| { a.st_h(R10, -2, -1); }),
    ("*(u32 *)(r10 - 4) = 7", |a| { a.st_w(R10, -4, 7); }),
    ("*(u64 *)(r10 - 8) = 0", |a| { a.st_dw(R10, -8, 0); }),
    ("w2 = atomic_fetch_add((u32 *)(r1 + 8), w2)", |a| { a.atomic(Size::W, AtomicOp::Add { fetch: true }, R1, 8, R2); }),
    ("r2 = atomic_fetch_add((u64 *)(r1 + 8), r2)", |a| { a.atomic(Size::DW, AtomicOp::Add { fetch: true }, R1, 8, R2); }),
    ("w2 = atomic_fetch_or((u32 *)(r1 + 8), w2)", |a| { a.atomic(Size::W, AtomicOp::Or { fetch: true }, R1, 8, R2); }),
    ("r2 = atomic_fetch_or((u64 *)(r1 + 8), r2)", |a| { a.atomic(Size::DW, AtomicOp::Or { fetch: true }, R1, 8, R2); }),
    ("w2 = atomic_fetch_and((u32 *)(r1 + 8), w2)", |a| { a.atomic(Size::W, AtomicOp::And { fetch: true }, R1, 8, R2); }),
    ("r2 = atomic_fetch_and((u64 *)(r1 + 8), r2)", |a| { a.atomic(Size::DW, AtomicOp::And { fetch: true }, R1, 8, R2); }),
    ("w2 = atomic_fetch_xor((u32 *)(r1 + 8), w2)", |a| { a.atomic(Size::W, AtomicOp::Xor { fetch: true }, R1, 8, R2); }),
    ("r2 = atomic_fetch_xor((u64 *)(r1 - 8), r2)", |a| { a.atomic(Size::DW, AtomicOp::Xor { fetch: true }, R1, -8, R2); }),
    ("w2 = xchg32_32(r1 + 8, w2)", |a| { a.atomic(Size::W, AtomicOp::Xchg, R1, 8, R2); }),
    ("r2 = xchg_64(r1 + 8, r2)", |a| { a.atomic(Size::DW, AtomicOp::Xchg, R1, 8, R2); }),
    ("w0 = cmpxchg32_32(r1 + 8, w0, w2)", |a| { a.atomic(Size::W, AtomicOp::Cmpxchg, R1, 8, R2); }),
    ("r0 = cmpxchg_64(r1 + 8, r0, r2)", |a| { a.atomic(Size::DW, AtomicOp::Cmpxchg, R1, 8, R2); }),
    ("r5 = bswap16 r5", |a| { a.bswap(16, R5); }),
    ("r5 = bswap32 r5", |a| { a.bswap(32, R5); }),
    ("r5 = bswap64 r5", |a| { a.bswap(64, R5); }),
    ("r1 = map[fd:5]", |a| { a.ld_map_fd(R1, MapRef("m")); }),
    ("r1 = map[fd:5][0]+16", |a| { a.ld_map_value(R1, MapRef("m"), 16); }),
    ("call pc+0", |a| { a.emit(Instruction::Call(Call::Local(0))); }),
    ("call kernel-function#1234", |a| { a.emit(Instruction::Call(Call::Kfunc(1234))); }),
];

/// The fd every map reference resolves to, as in the hand-checked map vectors.
const MAP_FD: i32 = 5;

/// Builds `build`'s instruction inside a checked program; returns its slots, maps resolved.
fn assemble(build: Build) -> Result<Vec<RawInsn>, AsmError> {
    let mut a = Asm::new();
    let epilogue = a.label("epilogue");
    for r in [R0, R1, R2, R3, R4, R5, R6, R7, R8, R9] {
        a.mov64(r, 0);
    }
    a.jeq(R1, 0, epilogue);
    build(&mut a);
    a.bind(epilogue);
    a.mov64(R0, 0);
    a.exit();
    let program = a.finish()?;
    let slots = program.resolve(|_| Some(MAP_FD))?;
    Ok(slots[PROLOGUE..].to_vec())
}

struct Vector<'a> {
    /// Which assembler (the `@` line above it).
    source: &'a str,
    asm: &'a str,
    bytes: Vec<u8>,
    line: usize,
}

fn vectors() -> Vec<Vector<'static>> {
    let mut source = "";
    let mut out = Vec::new();
    for (n, line) in VECTORS.lines().enumerate() {
        if let Some(s) = line.strip_prefix("@ ") {
            source = s;
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (asm, hex) = line.split_once('\t').unwrap_or_else(|| panic!("vectors.txt:{}: no tab", n + 1));
        let bytes = hex
            .split(' ')
            .map(|b| u8::from_str_radix(b, 16))
            .collect::<Result<Vec<u8>, _>>()
            .unwrap_or_else(|e| panic!("vectors.txt:{}: {e}", n + 1));
        assert!(!bytes.is_empty() && bytes.len() % 8 == 0, "vectors.txt:{}: {} bytes", n + 1, bytes.len());
        out.push(Vector { source, asm, bytes, line: n + 1 });
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn encodings_match_llvm() {
    let vectors = vectors();
    let mut failures = Vec::new();
    for v in &vectors {
        let Some((_, build)) = TABLE.iter().find(|(asm, _)| *asm == v.asm) else {
            failures.push(format!("line {}: `{}` has no entry in TABLE", v.line, v.asm));
            continue;
        };
        let slots = match assemble(*build) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("line {}: `{}`: {e}", v.line, v.asm));
                continue;
            }
        };
        let ours = to_bytes(&slots);
        let ours = &ours[..v.bytes.len().min(ours.len())];
        if ours != v.bytes.as_slice() {
            failures.push(format!(
                "line {}: `{}` ({})\n  llvm: {}\n  ktm:  {}\n  ktm disassembles to: {}",
                v.line,
                v.asm,
                v.source,
                hex(&v.bytes),
                hex(ours),
                Instruction::decode(&slots, 0).map_or_else(|e| e.to_string(), |(i, _)| i.to_string())
            ));
        }
    }
    for (asm, _) in TABLE {
        if !vectors.iter().any(|v| v.asm == *asm) {
            failures.push(format!("TABLE entry `{asm}` has no vector"));
        }
    }
    assert!(failures.is_empty(), "{} of {} vectors differ:\n{}", failures.len(), vectors.len(), failures.join("\n"));
    // Every section contributes, so a truncated regeneration cannot pass unnoticed.
    for source in ["llvm-mc-14", "llvm-mc-19", "hand-checked"] {
        let n = vectors.iter().filter(|v| v.source.starts_with(source)).count();
        assert!(n > 0, "no vectors from {source}");
        eprintln!("{n:4} vectors from {source}");
    }
}

/// The decoder read against the same independent bytes: each vector decodes, and encodes
/// back to exactly those bytes.
#[test]
fn llvm_bytes_decode_and_reencode() {
    for v in vectors() {
        let slots = from_bytes(&v.bytes).unwrap();
        let (insn, n) = Instruction::decode(&slots, 0).unwrap_or_else(|e| panic!("line {}: `{}`: {e}", v.line, v.asm));
        assert_eq!(n, slots.len(), "line {}: `{}`", v.line, v.asm);
        assert_eq!(insn.encode(), slots, "line {}: `{}` decoded to {insn:?}", v.line, v.asm);
    }
}

/// Every opcode of the instruction set the vectors span is covered: each ALU, jump and
/// memory opcode byte that the crate can emit appears in some vector.
#[test]
fn vectors_cover_every_opcode() {
    let seen: std::collections::BTreeSet<u8> = vectors().iter().map(|v| v.bytes[0]).collect();
    let mut missing = Vec::new();
    for class in [opcode::BPF_ALU, opcode::BPF_ALU64] {
        for op in (0x00..=0xc0).step_by(0x10) {
            for src in [opcode::BPF_K, opcode::BPF_X] {
                let code = class | op | src;
                if op == opcode::BPF_NEG && src == opcode::BPF_X {
                    continue; // reserved
                }
                if !seen.contains(&code) {
                    missing.push(code);
                }
            }
        }
        for src in [opcode::BPF_TO_LE, opcode::BPF_TO_BE] {
            let code = class | opcode::BPF_END | src;
            if class == opcode::BPF_ALU64 && src == opcode::BPF_TO_BE {
                continue; // reserved
            }
            if !seen.contains(&code) {
                missing.push(code);
            }
        }
    }
    for class in [opcode::BPF_JMP, opcode::BPF_JMP32] {
        for op in [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xa0, 0xb0, 0xc0, 0xd0] {
            for src in [opcode::BPF_K, opcode::BPF_X] {
                if !seen.contains(&(class | op | src)) {
                    missing.push(class | op | src);
                }
            }
        }
    }
    for code in [0x05, 0x85, 0x95, 0x18] {
        if !seen.contains(&code) {
            missing.push(code);
        }
    }
    for size in [opcode::BPF_B, opcode::BPF_H, opcode::BPF_W, opcode::BPF_DW] {
        for code in [
            opcode::BPF_LDX | opcode::BPF_MEM | size,
            opcode::BPF_ST | opcode::BPF_MEM | size,
            opcode::BPF_STX | opcode::BPF_MEM | size,
        ] {
            if !seen.contains(&code) {
                missing.push(code);
            }
        }
    }
    for size in [opcode::BPF_W, opcode::BPF_DW] {
        let code = opcode::BPF_STX | opcode::BPF_ATOMIC | size;
        for imm in [0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xa0, 0xa1, 0xe1, 0xf1] {
            let found = vectors().iter().any(|v| v.bytes[0] == code && v.bytes[4] == imm);
            assert!(found, "no vector for atomic {code:#04x} imm {imm:#04x}");
        }
    }
    let missing: Vec<String> = missing.iter().map(|c| format!("{c:#04x}")).collect();
    assert!(missing.is_empty(), "opcodes without a vector: {missing:?}");
}

/// The disassembler against the kernel's own: `verifier-disasm.txt` holds, for each
/// instruction of a program the verifier walked entirely, its bytes and the text the
/// verifier printed for it (regenerate with `tests/data/insn/gen-verifier-disasm.sh`).
#[test]
fn disassembly_matches_the_kernel() {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for line in include_str!("data/insn/verifier-disasm.txt").lines() {
        if line.starts_with('#') {
            continue;
        }
        let (hex, text) = line.split_once('\t').expect("bytes <TAB> text");
        for b in hex.split(' ') {
            bytes.push(u8::from_str_radix(b, 16).unwrap());
        }
        expected.push(text);
    }
    let slots = from_bytes(&bytes).unwrap();
    let ours = disasm(&slots);
    let ours: Vec<&str> = ours.lines().map(|l| l.split_once(": ").map_or(l, |(_, text)| text)).collect();
    let differ: Vec<String> = expected
        .iter()
        .zip(&ours)
        .filter(|(k, o)| k != o)
        .map(|(k, o)| format!("  kernel: {k}\n  ktm:    {o}"))
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert_eq!(ours.len(), expected.len());
    assert!(expected.len() > 90, "{} instructions", expected.len());
}
