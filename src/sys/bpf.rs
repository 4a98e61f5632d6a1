//! The `bpf()` system call, one function per command KTM uses.

use super::{AsRawFd, BorrowedFd, OwnedFd};
use crate::privileges::Syscall;
use crate::{Error, Result};
use std::ffi::CString;
use std::mem::{size_of, zeroed};

/// `enum bpf_cmd` values used here.
#[allow(missing_docs)]
pub mod cmd {
    pub const MAP_CREATE: u32 = 0;
    pub const MAP_LOOKUP_ELEM: u32 = 1;
    pub const MAP_UPDATE_ELEM: u32 = 2;
    pub const MAP_DELETE_ELEM: u32 = 3;
    pub const MAP_GET_NEXT_KEY: u32 = 4;
    pub const PROG_LOAD: u32 = 5;
    pub const PROG_GET_NEXT_ID: u32 = 11;
    pub const MAP_GET_NEXT_ID: u32 = 12;
    pub const PROG_GET_FD_BY_ID: u32 = 13;
    pub const MAP_GET_FD_BY_ID: u32 = 14;
    pub const OBJ_GET_INFO_BY_FD: u32 = 15;
    pub const RAW_TRACEPOINT_OPEN: u32 = 17;
    pub const LINK_CREATE: u32 = 28;
    pub const ENABLE_STATS: u32 = 32;
}

/// `enum bpf_prog_type` values used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ProgType {
    Kprobe = 2,
    Tracepoint = 5,
    RawTracepoint = 17,
    Tracing = 26,
}

impl ProgType {
    /// The ELF section prefix and name libbpf uses for this type.
    pub fn name(self) -> &'static str {
        match self {
            ProgType::Kprobe => "kprobe",
            ProgType::Tracepoint => "tracepoint",
            ProgType::RawTracepoint => "raw_tracepoint",
            ProgType::Tracing => "tracing",
        }
    }
}

/// `enum bpf_attach_type` values used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum AttachType {
    TraceRawTp = 23,
    TraceFentry = 24,
    TraceFexit = 25,
    PerfEvent = 41,
    /// `BPF_TRACE_KPROBE_MULTI` (5.18+): a kprobe program's expected attach type at load, and
    /// the link that attaches it through fprobe (ftrace), with no perf event.
    TraceKprobeMulti = 42,
}

/// `BPF_F_KPROBE_MULTI_RETURN`: the kprobe_multi link fires at the functions' return.
pub const KPROBE_MULTI_RETURN: u32 = 1;

/// `enum bpf_map_type` values used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapType {
    Hash = 1,
    Array = 2,
    PercpuHash = 5,
    PercpuArray = 6,
    LruHash = 9,
    LruPercpuHash = 10,
}

impl MapType {
    /// True where lookups return one value per possible CPU.
    pub fn per_cpu(self) -> bool {
        matches!(self, MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash)
    }
}

/// `BPF_OBJ_NAME_LEN`: names are truncated to 15 bytes plus NUL.
pub const OBJ_NAME_LEN: usize = 16;

fn obj_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut out = [0u8; OBJ_NAME_LEN];
    // The kernel accepts only [A-Za-z0-9_.] in object names.
    let clean = name.bytes().filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.');
    for (dst, b) in out.iter_mut().take(OBJ_NAME_LEN - 1).zip(clean) {
        *dst = b;
    }
    out
}

/// Issues `bpf(cmd, attr, size_of::<A>())`.
///
/// # Safety
/// `attr` must be the attribute layout the kernel expects for `cmd`, and every pointer in it
/// must be valid for the access the command makes.
unsafe fn sys_bpf<A>(cmd: u32, attr: &mut A) -> libc::c_long {
    #[cfg(test)]
    if let Some(ret) = fake::call(cmd, (attr as *mut A).cast(), size_of::<A>()) {
        return ret;
    }
    libc::syscall(
        libc::SYS_bpf,
        cmd as libc::c_long,
        attr as *mut A as *mut libc::c_void,
        size_of::<A>() as libc::c_long,
    )
}

/// The test seam (aya's `TEST_SYSCALL`): unit tests put a function in place of the kernel, on
/// their own thread, so that the callers' ordering, fallbacks and reports are tested on a host
/// without `bpf()` (or where it would answer differently).
#[cfg(test)]
pub(crate) mod fake {
    use std::cell::RefCell;

    /// The kernel as a test plays it: `(cmd, attr, attr size)` to a return value (an fd the
    /// fake opened, or 0) or an errno.
    pub(crate) type Kernel = Box<dyn FnMut(u32, *mut u8, usize) -> Result<libc::c_long, i32>>;

    thread_local! {
        static KERNEL: RefCell<Option<Kernel>> = const { RefCell::new(None) };
    }

    /// Runs `f` with `kernel` answering every `bpf()` this thread makes.
    pub(crate) fn with<R>(kernel: Kernel, f: impl FnOnce() -> R) -> R {
        struct Restore;
        impl Drop for Restore {
            fn drop(&mut self) {
                KERNEL.with(|k| k.borrow_mut().take());
            }
        }
        KERNEL.with(|k| *k.borrow_mut() = Some(kernel));
        let _restore = Restore;
        f()
    }

    /// An fd for a fake to return: /dev/null, closed by the caller's `OwnedFd` as a real one is.
    pub(crate) fn fd() -> libc::c_long {
        // SAFETY: a NUL-terminated path; the fd returned is owned by whoever the fake hands it to.
        libc::c_long::from(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })
    }

    /// The fake's answer, `None` where no fake is installed on this thread.
    pub(super) fn call(cmd: u32, attr: *mut u8, size: usize) -> Option<libc::c_long> {
        KERNEL.with(|k| {
            let mut k = k.borrow_mut();
            let answer = (k.as_mut()?)(cmd, attr, size);
            Some(answer.unwrap_or_else(|errno| {
                // SAFETY: errno is this thread's, always valid.
                unsafe { *libc::__errno_location() = errno };
                -1
            }))
        })
    }
}

fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

// Every attribute is built one way: a struct literal, the fields KTM does not set taken from
// `Default` (zero). No attribute has implicit padding (gaps and the 8-byte-aligned tail are
// named fields), so a literal initialises every byte the kernel reads; `no_implicit_padding`
// checks it.

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; OBJ_NAME_LEN],
}

/// `BPF_MAP_CREATE`.
pub fn map_create(
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: map_type as u32,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        map_name: obj_name(name),
        ..Default::default()
    };
    with_memlock_retry(|| {
        // SAFETY: attr is the MAP_CREATE layout and holds no pointers.
        let ret = unsafe { sys_bpf(cmd::MAP_CREATE, &mut attr) };
        super::fd_result(Syscall::Bpf, ret, || format!("bpf(BPF_MAP_CREATE) of {map_type:?} map `{name}`"))
    })
}

#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn elem_cmd(
    cmd: u32,
    map: BorrowedFd<'_>,
    key: *const u8,
    value: u64,
    flags: u64,
) -> std::result::Result<(), std::io::Error> {
    let mut attr = ElemAttr { map_fd: map.as_raw_fd() as u32, _pad: 0, key: ptr(key), value, flags };
    // SAFETY: the callers pass buffers of the map's key and value sizes.
    let ret = unsafe { sys_bpf(cmd, &mut attr) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `BPF_MAP_LOOKUP_ELEM`; `Ok(false)` when the key is absent.
///
/// # Safety
/// `key` and `value` must be at least the map's key and (per-CPU) value size.
pub unsafe fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> Result<bool> {
    match elem_cmd(cmd::MAP_LOOKUP_ELEM, map, key.as_ptr(), ptr(value.as_mut_ptr()), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(super::os_error(Syscall::Bpf, "bpf(BPF_MAP_LOOKUP_ELEM)", e)),
    }
}

/// `BPF_MAP_UPDATE_ELEM` with `BPF_ANY`.
///
/// # Safety
/// `key` and `value` must be at least the map's key and (per-CPU) value size.
pub unsafe fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> Result<()> {
    elem_cmd(cmd::MAP_UPDATE_ELEM, map, key.as_ptr(), ptr(value.as_ptr()), 0)
        .map_err(|e| super::os_error(Syscall::Bpf, "bpf(BPF_MAP_UPDATE_ELEM)", e))
}

/// `BPF_MAP_DELETE_ELEM`; `Ok(false)` when the key was absent.
///
/// # Safety
/// `key` must be at least the map's key size.
pub unsafe fn map_delete(map: BorrowedFd<'_>, key: &[u8]) -> Result<bool> {
    match elem_cmd(cmd::MAP_DELETE_ELEM, map, key.as_ptr(), 0, 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(super::os_error(Syscall::Bpf, "bpf(BPF_MAP_DELETE_ELEM)", e)),
    }
}

/// `BPF_MAP_GET_NEXT_KEY`; `Ok(false)` after the last key. `key` None asks for the first.
///
/// # Safety
/// `key` and `next` must be at least the map's key size.
pub unsafe fn map_next_key(map: BorrowedFd<'_>, key: Option<&[u8]>, next: &mut [u8]) -> Result<bool> {
    let k = key.map_or(std::ptr::null(), |k| k.as_ptr());
    match elem_cmd(cmd::MAP_GET_NEXT_KEY, map, k, ptr(next.as_mut_ptr()), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(super::os_error(Syscall::Bpf, "bpf(BPF_MAP_GET_NEXT_KEY)", e)),
    }
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; OBJ_NAME_LEN],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    pub attach_prog_fd: u32,
    /// `core_relo_cnt`, zero: named so that the 8-byte-aligned struct's tail is not padding.
    pub core_relo_cnt: u32,
}

/// What `BPF_PROG_LOAD` needs besides the instructions.
#[derive(Clone, Debug)]
pub struct ProgLoad<'a> {
    pub prog_type: ProgType,
    pub name: &'a str,
    pub license: &'a str,
    pub expected_attach_type: Option<AttachType>,
    /// BTF type id of the traced function, for fentry/fexit.
    pub attach_btf_id: u32,
}

/// `BPF_PROG_LOAD` of already-encoded instructions. `log` receives the verifier's output
/// when `log_level` is non-zero; the kernel answers ENOSPC when it does not fit.
pub fn prog_load(p: &ProgLoad<'_>, insns: &[u8], log_level: u32, log: &mut [u8]) -> Result<OwnedFd> {
    let license = CString::new(p.license).map_err(|_| Error::Other("license contains a NUL byte".into()))?;
    let logged = log_level != 0 && !log.is_empty();
    let mut attr = ProgLoadAttr {
        prog_type: p.prog_type as u32,
        insn_cnt: u32::try_from(insns.len() / 8).map_err(|_| Error::Other("program too long".into()))?,
        insns: ptr(insns.as_ptr()),
        license: ptr(license.as_ptr()),
        log_level: if logged { log_level } else { 0 },
        log_size: if logged { u32::try_from(log.len()).unwrap_or(u32::MAX) } else { 0 },
        log_buf: if logged { ptr(log.as_mut_ptr()) } else { 0 },
        prog_name: obj_name(p.name),
        expected_attach_type: p.expected_attach_type.map_or(0, |t| t as u32),
        attach_btf_id: p.attach_btf_id,
        ..Default::default()
    };
    with_memlock_retry(|| {
        // SAFETY: insns, license and log outlive the call; sizes are set from them.
        let ret = unsafe { sys_bpf(cmd::PROG_LOAD, &mut attr) };
        super::fd_result(Syscall::Bpf, ret, || {
            format!("bpf(BPF_PROG_LOAD) of {} program `{}`", p.prog_type.name(), p.name)
        })
    })
}

#[repr(C)]
struct GetIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

fn get_fd_by_id(cmd: u32, id: u32, what: &str) -> Result<OwnedFd> {
    let mut attr = GetIdAttr { id, next_id: 0, open_flags: 0 };
    // SAFETY: the GET_FD_BY_ID layout holds no pointers.
    let ret = unsafe { sys_bpf(cmd, &mut attr) };
    super::fd_result(Syscall::Bpf, ret, || format!("bpf(BPF_{what}_GET_FD_BY_ID) for id {id}"))
}

/// `BPF_PROG_GET_FD_BY_ID`: ENOENT once the program has left the kernel.
pub fn prog_fd_by_id(id: u32) -> Result<OwnedFd> {
    get_fd_by_id(cmd::PROG_GET_FD_BY_ID, id, "PROG")
}

/// `BPF_MAP_GET_FD_BY_ID`: ENOENT once the map has left the kernel.
pub fn map_fd_by_id(id: u32) -> Result<OwnedFd> {
    get_fd_by_id(cmd::MAP_GET_FD_BY_ID, id, "MAP")
}

/// `struct bpf_prog_info`, whole as of Linux 6.1 (the kernel fills what it knows).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProgInfo {
    pub prog_type: u32,
    pub id: u32,
    pub tag: [u8; 8],
    pub jited_prog_len: u32,
    pub xlated_prog_len: u32,
    pub jited_prog_insns: u64,
    pub xlated_prog_insns: u64,
    pub load_time: u64,
    pub created_by_uid: u32,
    pub nr_map_ids: u32,
    pub map_ids: u64,
    pub name: [u8; OBJ_NAME_LEN],
    pub ifindex: u32,
    pub gpl_compatible: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub nr_jited_ksyms: u32,
    pub nr_jited_func_lens: u32,
    pub jited_ksyms: u64,
    pub jited_func_lens: u64,
    pub btf_id: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub nr_func_info: u32,
    pub nr_line_info: u32,
    pub line_info: u64,
    pub jited_line_info: u64,
    pub nr_jited_line_info: u32,
    pub line_info_rec_size: u32,
    pub jited_line_info_rec_size: u32,
    pub nr_prog_tags: u32,
    pub prog_tags: u64,
    /// Cumulative run time while `BPF_ENABLE_STATS` is on.
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
    /// Instructions the verifier processed (5.16+; zero before).
    pub verified_insns: u32,
    pub attach_btf_obj_id: u32,
    pub attach_btf_id: u32,
}

/// `struct bpf_map_info` up to the fields KTM reads.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MapInfo {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; OBJ_NAME_LEN],
    pub ifindex: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn obj_info<T>(fd: BorrowedFd<'_>, what: &str) -> Result<T> {
    // SAFETY: the info structs are plain integers; all-zero is valid.
    let mut info: T = unsafe { zeroed() };
    let mut attr =
        InfoAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: size_of::<T>() as u32, info: ptr(&mut info as *mut T) };
    // SAFETY: info is writable for info_len bytes.
    let ret = unsafe { sys_bpf(cmd::OBJ_GET_INFO_BY_FD, &mut attr) };
    if ret < 0 {
        return Err(super::last_os_error(Syscall::Bpf, format!("bpf(BPF_OBJ_GET_INFO_BY_FD) on {what}")));
    }
    Ok(info)
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a program.
pub fn prog_info(fd: BorrowedFd<'_>) -> Result<ProgInfo> {
    obj_info(fd, "a program")
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a map.
pub fn map_info(fd: BorrowedFd<'_>) -> Result<MapInfo> {
    obj_info(fd, "a map")
}

/// Decodes a NUL-padded kernel object name.
pub fn name_str(name: &[u8]) -> String {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

#[repr(C)]
struct RawTpAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// `BPF_RAW_TRACEPOINT_OPEN`: attaches a raw tracepoint program to `name`, or (with `None`)
/// a tracing program to the function its `attach_btf_id` names.
pub fn raw_tracepoint_open(name: Option<&str>, prog: BorrowedFd<'_>) -> Result<OwnedFd> {
    let cname = name.map(CString::new).transpose().map_err(|_| Error::Other("tracepoint name contains NUL".into()))?;
    let mut attr =
        RawTpAttr { name: cname.as_ref().map_or(0, |c| ptr(c.as_ptr())), prog_fd: prog.as_raw_fd() as u32, _pad: 0 };
    // SAFETY: the name outlives the call.
    let ret = unsafe { sys_bpf(cmd::RAW_TRACEPOINT_OPEN, &mut attr) };
    super::fd_result(Syscall::Bpf, ret, || {
        format!("bpf(BPF_RAW_TRACEPOINT_OPEN) on {}", name.unwrap_or("the program's BTF target"))
    })
}

#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    /// `target_btf_id` or `perf_event.bpf_cookie`, both zero here.
    target: u64,
}

/// `BPF_LINK_CREATE` with `target_fd` (a perf event fd for `PerfEvent`, 0 for fentry/fexit).
pub fn link_create(prog: BorrowedFd<'_>, target_fd: i32, attach_type: AttachType) -> Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: target_fd as u32,
        attach_type: attach_type as u32,
        flags: 0,
        target: 0,
    };
    // SAFETY: no pointers in this layout.
    let ret = unsafe { sys_bpf(cmd::LINK_CREATE, &mut attr) };
    super::fd_result(Syscall::Bpf, ret, || format!("bpf(BPF_LINK_CREATE) with attach type {attach_type:?}"))
}

/// `link_create` with its `kprobe_multi` member: the common head, then flags, count and the
/// user pointers (symbol names; addresses and cookies unused, zero).
#[repr(C)]
#[derive(Default)]
struct KprobeMultiAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    kprobe_multi_flags: u32,
    cnt: u32,
    syms: u64,
    addrs: u64,
    cookies: u64,
}

/// `BPF_LINK_CREATE` with `BPF_TRACE_KPROBE_MULTI` on one function by name, at its entry or
/// (with `ret`) its return. Needs no perf event and no tracefs: the kernel attaches through
/// fprobe (`CONFIG_FPROBE`; EOPNOTSUPP without it, EINVAL before 5.18, ESRCH for a name
/// ftrace cannot trace).
pub fn link_create_kprobe_multi(prog: BorrowedFd<'_>, func: &str, ret: bool) -> Result<OwnedFd> {
    let cfunc = CString::new(func).map_err(|_| Error::Other("function name contains NUL".into()))?;
    let syms = [cfunc.as_ptr()];
    let mut attr = KprobeMultiAttr {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type: AttachType::TraceKprobeMulti as u32,
        kprobe_multi_flags: if ret { KPROBE_MULTI_RETURN } else { 0 },
        cnt: 1,
        syms: ptr(syms.as_ptr()),
        ..Default::default()
    };
    // SAFETY: syms and the name it points to outlive the call; cnt is its length.
    let ret_fd = unsafe { sys_bpf(cmd::LINK_CREATE, &mut attr) };
    super::fd_result(Syscall::Bpf, ret_fd, || {
        format!(
            "bpf(BPF_LINK_CREATE) with attach type TraceKprobeMulti on {func}{}",
            if ret { " (return)" } else { "" }
        )
    })
}

#[repr(C)]
struct StatsAttr {
    stats_type: u32,
}

/// `BPF_ENABLE_STATS(BPF_STATS_RUN_TIME)`: programs accumulate run_time_ns and run_cnt while
/// the returned fd is open.
#[must_use = "statistics stop when the fd is dropped"]
pub fn enable_stats() -> Result<OwnedFd> {
    let mut attr = StatsAttr { stats_type: 0 };
    // SAFETY: no pointers in this layout.
    let ret = unsafe { sys_bpf(cmd::ENABLE_STATS, &mut attr) };
    super::fd_result(Syscall::Bpf, ret, || "bpf(BPF_ENABLE_STATS)".to_string())
}

/// Runs `f`; on EPERM with a finite RLIMIT_MEMLOCK, raises the limit once and retries.
///
/// Kernels before 5.11 charge BPF memory against RLIMIT_MEMLOCK (usually 8 MiB or 64 KiB),
/// later ones charge the memory cgroup; raising only after an EPERM leaves the limit alone
/// where the kernel does not use it.
fn with_memlock_retry(mut f: impl FnMut() -> Result<OwnedFd>) -> Result<OwnedFd> {
    match f() {
        Err(e) if e.errno() == Some(libc::EPERM) && raise_memlock() => f(),
        other => other,
    }
}

fn raise_memlock() -> bool {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into cur.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut cur) } != 0 || cur.rlim_cur == libc::RLIM_INFINITY {
        return false;
    }
    let inf = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads inf.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) } == 0;
    if ok {
        log::info!("raised RLIMIT_MEMLOCK to unlimited: this kernel charges BPF memory to it");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// Offsets checked against `linux/bpf.h` with gcc's offsetof on Linux 6.1 headers.
    #[test]
    fn layouts_match_linux_bpf_h() {
        assert_eq!(offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(offset_of!(ProgLoadAttr, attach_prog_fd), 112);
        assert_eq!(offset_of!(LinkCreateAttr, target), 16);
        assert_eq!(offset_of!(KprobeMultiAttr, kprobe_multi_flags), 16);
        assert_eq!(offset_of!(KprobeMultiAttr, syms), 24);
        assert_eq!(offset_of!(KprobeMultiAttr, cookies), 40);
        assert_eq!(size_of::<ProgInfo>(), 232);
        assert_eq!(offset_of!(ProgInfo, name), 64);
        assert_eq!(offset_of!(ProgInfo, run_time_ns), 192);
        assert_eq!(offset_of!(ProgInfo, verified_insns), 216);
        assert_eq!(offset_of!(ProgInfo, attach_btf_id), 224);
        assert_eq!(offset_of!(MapInfo, btf_value_type_id), 72);
        assert_eq!(size_of::<ElemAttr>(), 32);
    }

    /// Each attribute's size is the sum of its fields: no padding a literal leaves unset.
    #[test]
    fn no_implicit_padding() {
        assert_eq!(size_of::<MapCreateAttr>(), 7 * 4 + OBJ_NAME_LEN);
        assert_eq!(size_of::<ElemAttr>(), 4 + 4 + 3 * 8);
        assert_eq!(size_of::<ProgLoadAttr>(), 120);
        assert_eq!(offset_of!(ProgLoadAttr, core_relo_cnt) + 4, size_of::<ProgLoadAttr>());
        assert_eq!(size_of::<GetIdAttr>(), 3 * 4);
        assert_eq!(size_of::<InfoAttr>(), 4 + 4 + 8);
        assert_eq!(size_of::<RawTpAttr>(), 8 + 4 + 4);
        assert_eq!(size_of::<LinkCreateAttr>(), 4 * 4 + 8);
        assert_eq!(size_of::<KprobeMultiAttr>(), 6 * 4 + 3 * 8);
        assert_eq!(size_of::<StatsAttr>(), 4);
    }

    #[test]
    fn names_are_sanitised_and_truncated() {
        assert_eq!(&obj_name("ktm-read_enter.x")[..], b"ktmread_enter.x\0");
        assert_eq!(name_str(&obj_name("a_very_long_program_name")), "a_very_long_pro");
    }
}
