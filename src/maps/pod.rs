//! Plain-old-data: types that may be copied to and from the kernel byte for byte.

/// A type with no padding-sensitive invariants, no pointers and no drop glue, whose every bit
/// pattern is a valid value.
///
/// # Safety
/// Implementors must be `repr(C)` or primitive, contain no padding bytes the kernel could
/// misread, and accept any bit pattern.
pub unsafe trait Pod: Copy + 'static {
    /// The value's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Pod types are plain bytes of their size.
        unsafe { std::slice::from_raw_parts(self as *const Self as *const u8, std::mem::size_of::<Self>()) }
    }

    /// A value read from the first `size_of::<Self>()` bytes, or None if there are fewer.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < std::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked; any bit pattern is valid; read_unaligned copes with alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const Self) })
    }
}

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: primitive integers accept every bit pattern.
        unsafe impl Pod for $t {}
    )*};
}

pod!(u8, u16, u32, u64, i8, i16, i32, i64);

// SAFETY: arrays of Pod have no padding between elements.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}
