//! Kprobe plumbing and feature probes.
//!
//! A feature is known by trying it: a trivial program is loaded and attached with each
//! mechanism, once per process. Kernel versions lie (backports, distro configs, lockdown), a
//! real attach does not.

use super::{attach, tracefs, AttachPoint, Mechanism};
use crate::insn::{Asm, R0};
use crate::load::{self, ProgramSpec};
use crate::privileges::Syscall;
use crate::sys::{perf, OwnedFd};
use crate::{Error, Result};
use once_cell::sync::OnceCell;
use std::ffi::CString;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// A kprobe created through tracefs `kprobe_events`, removed on drop.
#[derive(Debug)]
pub struct KprobeEvent {
    name: String,
}

impl Drop for KprobeEvent {
    fn drop(&mut self) {
        // The owning Attachment closes the perf event first, so the removal succeeds.
        if let Ok(root) = tracefs::root() {
            let _ = write_kprobe_events(&root.join("kprobe_events"), &format!("-:kprobes/{}", self.name));
        }
    }
}

fn write_kprobe_events(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(line.as_bytes())?;
    f.write_all(b"\n")
}

/// Opens a perf event for a kprobe on `func`: the kprobe PMU (4.17+) if the kernel has it,
/// else a tracefs kprobe event.
pub(super) fn open_kprobe(func: &str, ret: bool) -> Result<(OwnedFd, Option<KprobeEvent>)> {
    let what = format!("{} {func}", if ret { "kretprobe" } else { "kprobe" });
    if let Ok(t) = std::fs::read_to_string(format!("{KPROBE_PMU}/type")) {
        let pmu: u32 = t
            .trim()
            .parse()
            .map_err(|_| Error::Parse { what: format!("{KPROBE_PMU}/type"), detail: t.trim().into() })?;
        let config = if ret { 1u64 << retprobe_bit()? } else { 0 };
        let cfunc = CString::new(func).map_err(|_| Error::Other("function name contains NUL".into()))?;
        let attr = perf::PerfEventAttr {
            type_: pmu,
            config,
            sample_period: 1,
            wakeup_events: 1,
            config1: cfunc.as_ptr() as usize as u64,
            ..Default::default()
        };
        return match perf::open(&attr, &what) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                Err(Error::Other(format!("{what}: no such function in this kernel (absent, renamed or inlined)")))
            }
            other => Ok((other?, None)),
        };
    }
    let root = tracefs::root()?;
    let events = root.join("kprobe_events");
    if !events.exists() {
        return Err(Error::Other(format!(
            "{what}: this kernel has no kprobes (no {KPROBE_PMU}, no {}): built without CONFIG_KPROBE_EVENTS",
            events.display()
        )));
    }
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = format!("ktm_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let line = format!("{}:kprobes/{name} {func}", if ret { 'r' } else { 'p' });
    write_kprobe_events(&events, &line).map_err(|e| {
        // Lockdown refuses kprobe_events writes with EPERM: diagnosed like a bpf() refusal.
        crate::sys::os_error(Syscall::Bpf, format!("{what}: write `{line}` to {}", events.display()), e)
    })?;
    let guard = KprobeEvent { name: name.clone() };
    let id = tracefs::tracepoint_id("kprobes", &name)?;
    Ok((perf::open_tracepoint(id, &what)?, Some(guard)))
}

fn retprobe_bit() -> Result<u32> {
    let path = format!("{KPROBE_PMU}/format/retprobe");
    let t = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("read {path}"), e))?;
    t.trim()
        .strip_prefix("config:")
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| Error::Parse { what: path, detail: t.trim().into() })
}

/// What this kernel lets KTM do, each mechanism tried for real.
#[derive(Clone, Debug)]
pub struct Features {
    pub results: Vec<(Mechanism, AttachPoint, std::result::Result<(), String>)>,
}

impl Features {
    /// Whether `m` worked, or why not.
    pub fn get(&self, m: Mechanism) -> std::result::Result<(), String> {
        self.results.iter().find(|(mm, _, _)| *mm == m).map_or(Err("not probed".into()), |(_, _, r)| r.clone())
    }
}

static FEATURES: OnceCell<Features> = OnceCell::new();

/// Probes each mechanism once per process.
pub fn features() -> &'static Features {
    FEATURES.get_or_init(|| {
        let points = [
            AttachPoint::fentry("vfs_read", false),
            AttachPoint::fentry("vfs_read", true),
            AttachPoint::kprobe("vfs_read", false),
            AttachPoint::kprobe("vfs_read", true),
            AttachPoint::raw_tracepoint("sys_enter"),
            AttachPoint::tracepoint("syscalls", "sys_enter_getppid"),
        ];
        let results =
            points.into_iter().map(|p| (p.mechanism(), p.clone(), try_point(&p).map_err(|e| e.to_string()))).collect();
        Features { results }
    })
}

/// `return 0`: what a feature probe loads.
fn empty_program() -> Result<crate::insn::Program> {
    let mut a = Asm::new();
    a.mov64(R0, 0).exit();
    Ok(a.finish()?)
}

fn try_point(point: &AttachPoint) -> Result<()> {
    let spec = ProgramSpec {
        name: format!("ktm_probe_{}", point.mechanism().name()),
        prog_type: point.prog_type(),
        program: empty_program()?,
        attach: point.load_target()?,
    };
    let prog = load::load(&spec, |_| None)?;
    let _attached = attach(&prog, point)?;
    Ok(())
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
                prog_type: crate::sys::bpf::ProgType::Tracing,
                program: empty_program().ok()?,
                attach: Some((crate::sys::bpf::AttachType::TraceFentry, 0)),
            };
            match load::load(&spec, |_| None) {
                Err(e) if e.errno() == Some(libc::EPERM) => Some(e.to_string()),
                _ => None,
            }
        })
        .as_deref()
}
