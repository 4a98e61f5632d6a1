# A socket filter that the verifier accepts and walks entirely, so that it prints every
# instruction; see gen-verifier-disasm.sh. Values come from bpf_get_prandom_u32 so that no
# branch is decided in advance.
r9 = *(u32 *)(r1 + 0)
call 7
r6 = r0
call 7
r7 = r0
r2 = r7
r2 &= 63
r1 = r6
r0 = 0
r3 = r1
r3 += 7
r3 -= r2
r3 *= -3
r3 /= 5
r3 |= r1
r3 &= 255
r3 <<= 3
r3 >>= r2
r3 %= 9
r3 ^= -1
r3 s>>= 2
r3 = -2147483648
w4 = w1
w4 += -8
w4 *= w2
w4 <<= 31
w4 s>>= w2
w4 = 0
r3 = -r3
w3 = -w3
r3 = be16 r3
r3 = be64 r3
r3 = le32 r3
r3 = le64 r3
r3 = bswap16 r3
r3 = bswap32 r3
r3 = bswap64 r3
*(u64 *)(r10 - 8) = r1
*(u32 *)(r10 - 16) = 7
*(u16 *)(r10 - 18) = -1
*(u8 *)(r10 - 19) = r2
*(u64 *)(r10 - 32) = 0
r5 = *(u64 *)(r10 - 8)
r5 = *(u32 *)(r10 - 16)
r5 = *(u16 *)(r10 - 18)
r5 = *(u8 *)(r10 - 19)
lock *(u64 *)(r10 - 8) += r1
lock *(u64 *)(r10 - 8) |= r1
lock *(u32 *)(r10 - 16) &= w1
lock *(u32 *)(r10 - 16) ^= w1
r5 = atomic_fetch_add((u64 *)(r10 - 8), r5)
r5 = atomic_fetch_and((u64 *)(r10 - 8), r5)
w5 = atomic_fetch_or((u32 *)(r10 - 16), w5)
w5 = atomic_fetch_xor((u32 *)(r10 - 16), w5)
r5 = xchg_64(r10 - 8, r5)
w5 = xchg32_32(r10 - 16, w5)
r0 = cmpxchg_64(r10 - 8, r0, r5)
w0 = cmpxchg32_32(r10 - 16, w0, w5)
r8 = 0x123456789 ll
r9 = -1 ll
r0 = 0
if r6 == 3 goto +1
r0 = 1
if r6 != r7 goto +1
r0 = 2
if r6 > 100 goto +1
r0 = 3
if r6 >= r7 goto +1
r0 = 4
if r6 < 5 goto +1
r0 = 5
if r6 <= r7 goto +1
r0 = 6
if r6 s> r7 goto +1
r0 = 7
if r6 s>= 5 goto +1
r0 = 8
if r6 s< r7 goto +1
r0 = 9
if r6 s<= 4096 goto +1
r0 = 10
if r6 & 0x10 goto +1
r0 = 11
if r6 & r7 goto +1
r0 = 12
if w6 == w7 goto +1
r0 = 13
if w6 != 16 goto +1
r0 = 14
if w6 s<= -3 goto +1
r0 = 15
if w6 s> w7 goto +1
r0 = 16
if w6 & w7 goto +1
r0 = 17
if w6 < w7 goto +1
goto +0
r0 = 0
exit
