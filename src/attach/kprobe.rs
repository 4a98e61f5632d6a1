//! Kprobes: a perf event on a kernel function's entry or return, through the kprobe PMU
//! (4.17+) or, before it, a tracefs `kprobe_events` entry removed on drop.

use super::tracefs;
use crate::error::Unsupported;
use crate::privileges::Syscall;
use crate::sys::{perf, OwnedFd};
use crate::{Error, Result};
use std::ffi::CString;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

pub(super) const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

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
        return match perf::open_kprobe(pmu, config, &cfunc, &what) {
            Err(e) if e.errno() == Some(libc::ENOENT) => Err(Unsupported::from_error(
                format!("{what}: no such function in this kernel (absent, renamed or inlined)"),
                &e,
            )
            .into()),
            other => Ok((other?, None)),
        };
    }
    let root = tracefs::root()?;
    let events = root.join("kprobe_events");
    if !events.exists() {
        return Err(Unsupported::new(format!(
            "{what}: this kernel has no kprobes (no {KPROBE_PMU}, no {}): built without CONFIG_KPROBE_EVENTS",
            events.display()
        ))
        .into());
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
