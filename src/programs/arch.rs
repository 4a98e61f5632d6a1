//! What differs per architecture: `struct pt_regs` offsets, syscall numbers, the syscall
//! functions' names. The probe families ask here and hold no `cfg(target_arch)` of their own.

use crate::Result;

/// `struct pt_regs` argument offsets as a kprobe sees them: di, si, dx, cx on x86-64, with
/// the return value in ax.
#[cfg(target_arch = "x86_64")]
pub(super) mod regs {
    pub const ARG: [i16; 4] = [112, 104, 96, 88];
    pub const RET: i16 = 80;
}

/// arm64's `struct pt_regs` begins with `u64 regs[31]`: arguments in x0..x3, and the return
/// value back in x0.
#[cfg(target_arch = "aarch64")]
pub(super) mod regs {
    pub const ARG: [i16; 4] = [0, 8, 16, 24];
    pub const RET: i16 = 0;
}

/// Syscall numbers the raw `sys_enter` programs compare with (`unistd_64.h`; arm64 uses the
/// generic table, where fadvise is `fadvise64_64`).
pub(super) mod nr {
    #[cfg(target_arch = "aarch64")]
    pub const READ: i32 = 63;
    #[cfg(target_arch = "aarch64")]
    pub const PREAD64: i32 = 67;
    #[cfg(target_arch = "aarch64")]
    pub const FADVISE64: i32 = 223;
    #[cfg(not(target_arch = "aarch64"))]
    pub const READ: i32 = 0;
    #[cfg(not(target_arch = "aarch64"))]
    pub const PREAD64: i32 = 17;
    #[cfg(not(target_arch = "aarch64"))]
    pub const FADVISE64: i32 = 221;
}

/// Offset in `struct pt_regs` of a syscall's fourth argument, as `sys_enter` sees the
/// registers: r10 on x86-64 (the syscall ABI puts it there, not in rcx), x3 on arm64.
pub(super) fn syscall_arg3() -> Result<i16> {
    #[cfg(target_arch = "x86_64")]
    return Ok(56);
    #[cfg(target_arch = "aarch64")]
    return Ok(24);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Err(crate::Error::Other("syscall argument access is implemented for x86-64 and arm64 only".into()));
}

/// kprobe programs read arguments from pt_regs, whose layout is per architecture.
pub(super) fn kprobe_regs() -> Result<(&'static [i16; 4], i16)> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    return Ok((&regs::ARG, regs::RET));
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Err(crate::Error::Other("kprobe argument access is implemented for x86-64 and arm64 only".into()));
}

/// The kernel function that is the syscall itself (`__x64_sys_read` on x86-64): ksys_*
/// helpers are inlined into it on some kernels (6.12's `ksys_pread64`), and a probe on the
/// out-of-line copy would then never fire.
pub fn syscall_fn(syscall: &str) -> String {
    #[cfg(target_arch = "aarch64")]
    return format!("__arm64_sys_{syscall}");
    #[cfg(not(target_arch = "aarch64"))]
    return format!("__x64_sys_{syscall}");
}

/// Where a kretprobe finds the return value in `struct pt_regs`: ax on x86-64, x0 on arm64.
pub(super) fn kretprobe_ret() -> Result<i16> {
    Ok(kprobe_regs()?.1)
}

/// The fadvise syscall: `fadvise64` on x86-64, `fadvise64_64` in the generic table arm64
/// uses.
#[cfg(target_arch = "aarch64")]
pub(super) const FADVISE: &str = "fadvise64_64";
#[cfg(not(target_arch = "aarch64"))]
pub(super) const FADVISE: &str = "fadvise64";
