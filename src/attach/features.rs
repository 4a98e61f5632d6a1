//! Kernel feature probes, as libbpf's `features.c`: each asked once per process with a trivial
//! program and raw syscalls, never through the attach code that consults them.
//!
//! A feature is known by trying it: a trivial program is loaded and attached with each
//! mechanism, once per process. Kernel versions lie (backports, distro configs, lockdown), a
//! real attach does not.

use crate::insn::{Asm, R0};
use crate::load::{self, ProgramSpec};
use crate::sys::bpf::{self, AttachType, ProgType};
use crate::sys::AsFd;
use crate::Result;
use once_cell::sync::OnceCell;

/// `return 0`: what a feature probe loads.
pub(super) fn empty_program() -> Result<crate::insn::Program> {
    let mut a = Asm::new();
    a.mov64(R0, 0).exit();
    Ok(a.finish()?)
}

/// A BPF link kind, probed once per process as libbpf's `features.c` does, so that attaching
/// chooses its way by what the kernel has rather than by whichever call happened to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `BPF_LINK_CREATE` with `BPF_PERF_EVENT` (5.15+); else `PERF_EVENT_IOC_SET_BPF`.
    PerfEvent,
    /// `BPF_LINK_CREATE` for fentry/fexit (5.11+); else `BPF_RAW_TRACEPOINT_OPEN`.
    Tracing,
    /// `BPF_LINK_CREATE` with `BPF_TRACE_KPROBE_MULTI` (5.18+ with `CONFIG_FPROBE`): a kprobe
    /// program on a function with no perf event. There is no older call for it: a plan goes on
    /// to its next alternative (a classic kprobe, which needs `perf_event_open`).
    KprobeMulti,
}

impl Link {
    /// What is used where this link kind is missing (every supported kernel has it).
    pub fn fallback(self) -> &'static str {
        match self {
            Link::PerfEvent => "ioctl(PERF_EVENT_IOC_SET_BPF)",
            Link::Tracing => "bpf(BPF_RAW_TRACEPOINT_OPEN)",
            Link::KprobeMulti => "the plan's next alternative (a classic kprobe: perf_event_open)",
        }
    }
}

/// Whether this kernel has `link`, or why it is taken not to.
pub fn link(link: Link) -> std::result::Result<(), &'static str> {
    static PERF: OnceCell<std::result::Result<(), String>> = OnceCell::new();
    static TRACING: OnceCell<std::result::Result<(), String>> = OnceCell::new();
    static KPROBE_MULTI: OnceCell<std::result::Result<(), String>> = OnceCell::new();
    let (cell, probe): (_, fn() -> std::result::Result<(), String>) = match link {
        Link::PerfEvent => (&PERF, probe_perf_link),
        Link::Tracing => (&TRACING, probe_tracing_link),
        Link::KprobeMulti => (&KPROBE_MULTI, probe_kprobe_multi_link),
    };
    cell.get_or_init(probe).as_ref().map(|_| ()).map_err(String::as_str)
}

/// libbpf's `probe_perf_link`: a trivial tracepoint program linked to perf fd -1 is refused
/// with EBADF where the kernel knows `BPF_PERF_EVENT` (it got as far as the fd), EINVAL where not.
fn probe_perf_link() -> std::result::Result<(), String> {
    let spec = ProgramSpec {
        name: "ktm_probe_plink".into(),
        prog_type: ProgType::Tracepoint,
        program: empty_program().map_err(|e| e.to_string())?,
        attach: None,
    };
    let prog = load::program(&spec, |_| None).map_err(|e| format!("cannot probe: {e}"))?;
    match bpf::link_create(prog.as_fd(), -1, AttachType::PerfEvent) {
        Err(e) if e.errno() == Some(libc::EBADF) => Ok(()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// A trivial fentry program on `vfs_read`, linked with `BPF_LINK_CREATE` and at once released.
fn probe_tracing_link() -> std::result::Result<(), String> {
    if let Some(why) = tracing_refused() {
        return Err(format!("cannot probe: tracing programs are refused: {why}"));
    }
    let func = crate::btf::find_kernel_func("vfs_read")
        .map_err(|e| format!("cannot probe: no BTF for function vfs_read: {e}"))?;
    let spec = ProgramSpec {
        name: "ktm_probe_tlink".into(),
        prog_type: ProgType::Tracing,
        program: empty_program().map_err(|e| e.to_string())?,
        attach: Some((AttachType::TraceFentry, func.type_id)),
    };
    let prog = load::program(&spec, |_| None).map_err(|e| format!("cannot probe: {e}"))?;
    bpf::link_create(prog.as_fd(), 0, AttachType::TraceFentry).map(drop).map_err(|e| e.to_string())
}

/// A trivial kprobe program, loaded for `BPF_TRACE_KPROBE_MULTI`, linked to `vfs_read` and at
/// once released. A kernel before 5.18 loads the program (kprobe programs ignored the expected
/// attach type) and refuses the unknown link with EINVAL; one built without `CONFIG_FPROBE`
/// answers EOPNOTSUPP (Debian's 6.1 kernels, amd64 and arm64, and arm64 6.12, whose ftrace has
/// no `DYNAMIC_FTRACE_WITH_REGS`, which fprobe needs before 6.14).
fn probe_kprobe_multi_link() -> std::result::Result<(), String> {
    let spec = ProgramSpec {
        name: "ktm_probe_kmulti".into(),
        prog_type: ProgType::Kprobe,
        program: empty_program().map_err(|e| e.to_string())?,
        attach: Some((AttachType::TraceKprobeMulti, 0)),
    };
    let prog = load::program(&spec, |_| None).map_err(|e| format!("cannot probe: {e}"))?;
    match bpf::link_create_kprobe_multi(prog.as_fd(), "vfs_read", false) {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => {
            Err(format!("this kernel is built without CONFIG_FPROBE ({e})"))
        }
        Err(e) if e.errno() == Some(libc::EINVAL) => {
            Err(format!("this kernel has no BPF_TRACE_KPROBE_MULTI link (Linux 5.18+) ({e})"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Why this kernel refuses every tracing (fentry/fexit) program, if it does; found without
/// reading BTF.
///
/// A tracing program that names no function (BTF id 0) reaches the verifier and is refused
/// there with EINVAL where tracing programs are allowed; a policy that forbids them
/// (lockdown, an LSM, missing capabilities) answers EPERM before any BTF is looked at. One
/// `bpf()` call tells the two apart, where resolving the traced function first would read
/// and index megabytes of vmlinux BTF only to be refused. Asked once per process.
pub fn tracing_refused() -> Option<&'static str> {
    static REFUSED: OnceCell<Option<String>> = OnceCell::new();
    REFUSED
        .get_or_init(|| {
            let spec = ProgramSpec {
                name: "ktm_probe_tracing".into(),
                prog_type: ProgType::Tracing,
                program: empty_program().ok()?,
                attach: Some((AttachType::TraceFentry, 0)),
            };
            match load::program(&spec, |_| None) {
                Err(e) if e.errno() == Some(libc::EPERM) => Some(e.to_string()),
                _ => None,
            }
        })
        .as_deref()
}
