r1 += r2
r1 += -7
r1 -= r2
r1 -= -7
r1 *= r2
r1 *= -7
r1 /= r2
r1 /= -7
r1 |= r2
r1 |= -7
r1 &= r2
r1 &= -7
r1 <<= r2
r1 <<= -7
r1 >>= r2
r1 >>= -7
r1 %= r2
r1 %= -7
r1 ^= r2
r1 ^= -7
r1 = r2
r1 = -7
r1 s>>= r2
r1 s>>= -7
r1 = -r1
if r1 == r2 goto +3
if r1 == 7 goto -2
if r1 > r2 goto +3
if r1 > 7 goto -2
if r1 >= r2 goto +3
if r1 >= 7 goto -2
if r1 & r2 goto +3
if r1 & 7 goto -2
if r1 != r2 goto +3
if r1 != 7 goto -2
if r1 s> r2 goto +3
if r1 s> 7 goto -2
if r1 s>= r2 goto +3
if r1 s>= 7 goto -2
if r1 < r2 goto +3
if r1 < 7 goto -2
if r1 <= r2 goto +3
if r1 <= 7 goto -2
if r1 s< r2 goto +3
if r1 s< 7 goto -2
if r1 s<= r2 goto +3
if r1 s<= 7 goto -2
w1 += w2
w1 += -7
w1 -= w2
w1 -= -7
w1 *= w2
w1 *= -7
w1 /= w2
w1 /= -7
w1 |= w2
w1 |= -7
w1 &= w2
w1 &= -7
w1 <<= w2
w1 <<= -7
w1 >>= w2
w1 >>= -7
w1 %= w2
w1 %= -7
w1 ^= w2
w1 ^= -7
w1 = w2
w1 = -7
w1 s>>= w2
w1 s>>= -7
w1 = -w1
if w1 == w2 goto +3
if w1 == 7 goto -2
if w1 > w2 goto +3
if w1 > 7 goto -2
if w1 >= w2 goto +3
if w1 >= 7 goto -2
if w1 & w2 goto +3
if w1 & 7 goto -2
if w1 != w2 goto +3
if w1 != 7 goto -2
if w1 s> w2 goto +3
if w1 s> 7 goto -2
if w1 s>= w2 goto +3
if w1 s>= 7 goto -2
if w1 < w2 goto +3
if w1 < 7 goto -2
if w1 <= w2 goto +3
if w1 <= 7 goto -2
if w1 s< w2 goto +3
if w1 s< 7 goto -2
if w1 s<= w2 goto +3
if w1 s<= 7 goto -2
r1 = le16 r1
r1 = be16 r1
r1 = bswap16 r1
r1 = le32 r1
r1 = be32 r1
r1 = bswap32 r1
r1 = le64 r1
r1 = be64 r1
r1 = bswap64 r1
r1 = *(u8 *)(r2 + 3)
r1 = *(u8 *)(r10 - 8)
*(u8 *)(r10 - 8) = r1
*(u8 *)(r10 - 16) = 5
r1 = *(u16 *)(r2 + 3)
r1 = *(u16 *)(r10 - 8)
*(u16 *)(r10 - 8) = r1
*(u16 *)(r10 - 16) = 5
r1 = *(u32 *)(r2 + 3)
r1 = *(u32 *)(r10 - 8)
*(u32 *)(r10 - 8) = r1
*(u32 *)(r10 - 16) = 5
r1 = *(u64 *)(r2 + 3)
r1 = *(u64 *)(r10 - 8)
*(u64 *)(r10 - 8) = r1
*(u64 *)(r10 - 16) = 5
lock *(u64 *)(r1 + 8) += r2
r2 = atomic_fetch_add((u64 *)(r1 + 8), r2)
lock *(u64 *)(r1 + 8) |= r2
r2 = atomic_fetch_or((u64 *)(r1 + 8), r2)
lock *(u64 *)(r1 + 8) &= r2
r2 = atomic_fetch_and((u64 *)(r1 + 8), r2)
lock *(u64 *)(r1 + 8) ^= r2
r2 = atomic_fetch_xor((u64 *)(r1 + 8), r2)
lock *(u32 *)(r1 + 8) += w2
w2 = atomic_fetch_add((u32 *)(r1 + 8), w2)
lock *(u32 *)(r1 + 8) |= w2
w2 = atomic_fetch_or((u32 *)(r1 + 8), w2)
lock *(u32 *)(r1 + 8) &= w2
w2 = atomic_fetch_and((u32 *)(r1 + 8), w2)
lock *(u32 *)(r1 + 8) ^= w2
w2 = atomic_fetch_xor((u32 *)(r1 + 8), w2)
r2 = xchg_64(r1 + 8, r2)
w2 = xchg32_32(r1 + 8, w2)
r0 = cmpxchg_64(r1 + 8, r0, r2)
w0 = cmpxchg32_32(r1 + 8, w0, w2)
r1 = 4886718345 ll
r0 = -2 ll
goto +2
goto -4
call 1
call 80
exit
