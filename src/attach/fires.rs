//! The self-test that a function probe fires on the path it measures.
//!
//! A kernel function can exist in kallsyms and BTF, load, attach, and still never run where a
//! metric looks for it: the compiler inlined it into its caller on that build, and the
//! out-of-line copy is reached only from elsewhere (arm64 6.12 inlines `ksys_fadvise64_64` into
//! `__arm64_sys_fadvise64_64`; x86-64 6.12 inlines `ksys_pread64`). A probe there reports its
//! mechanism and counts nothing. So before a plan trusts an fentry/fexit, kprobe or
//! kprobe_multi part, a canary program on the same point counts this thread's hits while the
//! plan's [`Exercise`] drives the path once; a point the canary never saw is refused, and the
//! plan goes on to its next alternative. Tracepoints need no check: the kernel calls them where they are written.

use super::attachment;
use super::point::{AttachPoint, Mechanism};
use crate::host::PidNs;
use crate::insn::{Asm, Helper, MapRef, R0, R1, R10, R2, R3, R4};
use crate::load::{self, ProgramSpec};
use crate::maps::Array;
use crate::sys::bpf::AttachType;
use crate::sys::AsRawFd;
use crate::Result;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Drives the path a plan measures once, from the calling thread (a pipe read for read(2), a
/// cold read of a scratch file for a page-cache miss). `Err` says why it cannot here (no
/// disk-backed scratch directory, say); the point is then trusted, with that reason reported.
///
/// Known by its name, which keys the verdict cache: a function pointer's address names no
/// function reliably (identical functions may be folded into one, one function may have two).
#[derive(Clone, Copy, Debug)]
pub struct Exercise {
    /// Unique among the exercises of a process: the path it drives (`read`, `cold_read`).
    pub name: &'static str,
    pub run: fn() -> std::result::Result<(), String>,
}

impl Exercise {
    /// The exercise `name`, driven by `run`.
    pub const fn new(name: &'static str, run: fn() -> std::result::Result<(), String>) -> Exercise {
        Exercise { name, run }
    }
}

/// What the check found for one point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The canary saw the exercise.
    Fired,
    /// The canary never ran while the exercise drove the path: probing here would count nothing.
    Silent(String),
    /// The check could not be made (the exercise or the canary failed); the point is trusted.
    Unchecked(String),
}

const CANARY: MapRef = MapRef("ktm_canary");

/// Whether points of this mechanism need the check.
pub fn needs_check(m: Mechanism) -> bool {
    matches!(
        m,
        Mechanism::Fentry
            | Mechanism::Fexit
            | Mechanism::Kprobe
            | Mechanism::Kretprobe
            | Mechanism::KprobeMulti
            | Mechanism::KretprobeMulti
    )
}

static SPENT_NS: AtomicU64 = AtomicU64::new(0);
static CHECKS: AtomicU64 = AtomicU64::new(0);

/// How many self-tests this process has made and the time they took, in total: what the
/// checks add to a start (the start-up bench reports it).
pub fn spent() -> (u64, Duration) {
    (CHECKS.load(Ordering::Relaxed), Duration::from_nanos(SPENT_NS.load(Ordering::Relaxed)))
}

/// Adds `checks` self-tests that took `took` to [`spent`] (the iomonitor's own are made
/// without canaries, by its programs).
pub fn account(checks: u64, took: Duration) {
    SPENT_NS.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    CHECKS.fetch_add(checks, Ordering::Relaxed);
}

/// Checks `point` (its load target `attach` already resolved for the program it vouches for)
/// with `exercise`, once per process for each pair: whether a function is inlined does not
/// change while the kernel runs.
pub(super) fn check(point: &AttachPoint, attach: Option<(AttachType, u32)>, exercise: Exercise) -> Verdict {
    static SEEN: LazyLock<Mutex<HashMap<(AttachPoint, &'static str), Verdict>>> = LazyLock::new(Default::default);
    let key = (point.clone(), exercise.name);
    // Held across the check: canaries of two threads must not see each other's exercise
    // (each counts only its own thread, but one check at a time also keeps attach cost flat).
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = seen.get(&key) {
        return v.clone();
    }
    let started = std::time::Instant::now();
    let verdict = match run(point, attach, exercise) {
        Ok(v) => v,
        Err(e) => Verdict::Unchecked(format!("canary could not attach: {e}")),
    };
    account(1, started.elapsed());
    log::debug!("{point}: self-test: {verdict:?} in {:?}", started.elapsed());
    seen.insert(key, verdict.clone());
    verdict
}

fn run(point: &AttachPoint, attach: Option<(AttachType, u32)>, exercise: Exercise) -> Result<Verdict> {
    let hits = Array::<u64>::create("ktm_canary", 1)?;
    let spec = ProgramSpec {
        name: "ktm_canary".into(),
        prog_type: point.prog_type(),
        program: canary(thread_pid_tgid(), own_pid_ns())?,
        attach,
    };
    let fd = hits.map().as_raw_fd();
    let prog = load::program(&spec, |m| (m == CANARY).then_some(fd))?;
    let attached = attachment::attach_program(&prog, point)?;
    // Only the exercise's hits count: attaching and detaching make syscalls of their own
    // (closing fds), which a canary on such a syscall's function would see.
    let before = hits.get(0)?;
    let driven = (exercise.run)();
    let after = hits.get(0)?;
    drop(attached);
    if let Err(why) = driven {
        return Ok(Verdict::Unchecked(why));
    }
    Ok(match after - before {
        0 => Verdict::Silent(silent_reason(point)),
        _ => Verdict::Fired,
    })
}

/// Why a function probe that attached but never ran while its path was driven is refused.
pub fn silent_reason(point: &AttachPoint) -> String {
    format!(
        "attached, but never ran while this process drove the path it measures (the kernel does \
         not call it there: inlined into its caller on this build?); {} would count nothing",
        point.mechanism()
    )
}

/// `tgid << 32 | tid` of the calling thread as `getpid()`/`gettid()` give them: in the process's
/// own pid namespace.
fn thread_pid_tgid() -> u64 {
    // SAFETY: getpid and gettid take no arguments and cannot fail.
    let (tgid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    (u64::from(tgid as u32) << 32) | u64::from(tid as u32)
}

/// The pid namespace this process lives in, where it is not the host's: a sidecar in its pod's
/// pid namespace (`shareProcessNamespace`) sees itself under other ids than the kernel's
/// `bpf_get_current_pid_tgid()` gives, and a canary comparing those would never see the
/// exercise: every function probe would be refused as silent.
fn own_pid_ns() -> Option<PidNs> {
    PidNs::of_self(std::path::Path::new("/proc")).filter(|ns| !ns.is_initial())
}

/// ```c
/// u64 id;
/// if (!ns) id = bpf_get_current_pid_tgid();
/// else if (bpf_get_ns_current_pid_tgid(ns->dev, ns->ino, &id, 8)) return 0;  // {pid, tgid}
/// if (id == me) __sync_fetch_and_add(&hits[0], 1);
/// return 0;
/// ```
fn canary(me: u64, ns: Option<PidNs>) -> Result<crate::insn::Program> {
    let mut a = Asm::new();
    let out = a.label("out");
    match ns {
        None => {
            a.call(Helper::GetCurrentPidTgid);
        }
        Some(ns) => {
            // struct bpf_pidns_info { u32 pid; u32 tgid; }: as a little-endian u64, tgid << 32 | pid.
            a.ld_imm64(R1, ns.dev as i64);
            a.ld_imm64(R2, ns.ino as i64);
            a.mov64(R3, R10);
            a.add64(R3, -8);
            a.mov64(R4, 8);
            a.call(Helper::GetNsCurrentPidTgid);
            a.jne(R0, 0, out);
            a.ldx_dw(R0, R10, -8);
        }
    }
    a.ld_imm64(R1, me as i64);
    a.jne(R0, R1, out);
    a.ld_map_value(R1, CANARY, 0);
    a.mov64(R2, 1);
    a.atomic_add64(R1, 0, R2);
    a.bind(out);
    a.mov64(R0, 0);
    a.exit();
    Ok(a.finish()?)
}
