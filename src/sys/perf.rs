//! `perf_event_open()` and the ioctls that attach BPF programs to perf events.

use super::{fd_result, last_os_error, AsRawFd, BorrowedFd, OwnedFd};
use crate::privileges::Syscall;
use crate::Result;
use std::ffi::CStr;
use std::mem::size_of;

/// `PERF_TYPE_TRACEPOINT`.
pub const TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const IOC_ENABLE: libc::c_ulong = 0x2400;
const IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER1` (72 bytes), which every kernel since
/// 2.6.33 accepts and which holds the kprobe fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    /// Bitfield: bit 0 `disabled`, ...
    pub flags: u64,
    pub wakeup_events: u32,
    pub bp_type: u32,
    /// `kprobe_func` (pointer to the function name) for the kprobe PMU.
    pub config1: u64,
    /// `probe_offset` for the kprobe PMU.
    pub config2: u64,
}

/// Opens a perf event for all processes on CPU 0.
///
/// For tracepoints and kprobes the attached BPF program runs on every CPU whatever the
/// event's CPU; one event suffices.
pub fn open(attr: &PerfEventAttr, what: &str) -> Result<OwnedFd> {
    let mut a = *attr;
    a.size = size_of::<PerfEventAttr>() as u32;
    // SAFETY: a is a valid perf_event_attr of the size it declares.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &a as *const PerfEventAttr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    fd_result(Syscall::PerfEventOpen, ret, || format!("perf_event_open({what})"))
}

/// A perf event for the tracefs tracepoint with this id.
pub fn open_tracepoint(id: u64, what: &str) -> Result<OwnedFd> {
    let attr =
        PerfEventAttr { type_: TYPE_TRACEPOINT, config: id, sample_period: 1, wakeup_events: 1, ..Default::default() };
    open(&attr, what)
}

/// A perf event for a kprobe (`config` holding the retprobe bit for a kretprobe) on `func`,
/// through the kprobe PMU whose dynamic type is `pmu`.
pub fn open_kprobe(pmu: u32, config: u64, func: &CStr, what: &str) -> Result<OwnedFd> {
    let attr = PerfEventAttr {
        type_: pmu,
        config,
        sample_period: 1,
        wakeup_events: 1,
        // kprobe_func: the kernel reads the name during the call; func outlives it.
        config1: func.as_ptr() as usize as u64,
        ..Default::default()
    };
    open(&attr, what)
}

/// `PERF_EVENT_IOC_SET_BPF` then `PERF_EVENT_IOC_ENABLE`: the pre-5.15 way to attach, which
/// detaches when the perf fd is closed.
pub fn set_bpf_and_enable(perf: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: SET_BPF takes the program fd as its argument.
    if unsafe { libc::ioctl(perf.as_raw_fd(), IOC_SET_BPF as _, prog.as_raw_fd()) } < 0 {
        return Err(last_os_error(Syscall::Bpf, "ioctl(PERF_EVENT_IOC_SET_BPF)"));
    }
    // SAFETY: ENABLE takes no argument.
    if unsafe { libc::ioctl(perf.as_raw_fd(), IOC_ENABLE as _, 0) } < 0 {
        return Err(last_os_error(Syscall::Bpf, "ioctl(PERF_EVENT_IOC_ENABLE)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn layout_matches_perf_event_h() {
        assert_eq!(size_of::<PerfEventAttr>(), 72); // PERF_ATTR_SIZE_VER1
        assert_eq!(offset_of!(PerfEventAttr, flags), 40);
        assert_eq!(offset_of!(PerfEventAttr, config1), 56);
    }
}
