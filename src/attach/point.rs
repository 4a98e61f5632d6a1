//! Where and how a program is hooked: the attach point, its mechanism, and the operator's
//! policy over mechanisms.

use crate::sys::bpf::ProgType;
use std::fmt;

/// How a program is hooked into the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
    /// A kprobe program on a `BPF_TRACE_KPROBE_MULTI` link: no perf event, no tracefs.
    KprobeMulti,
    KretprobeMulti,
    RawTracepoint,
    Tracepoint,
}

impl Mechanism {
    /// The name used in status, metrics and the README matrix.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Fentry => "fentry",
            Mechanism::Fexit => "fexit",
            Mechanism::Kprobe => "kprobe",
            Mechanism::Kretprobe => "kretprobe",
            Mechanism::KprobeMulti => "kprobe_multi",
            Mechanism::KretprobeMulti => "kretprobe_multi",
            Mechanism::RawTracepoint => "raw_tracepoint",
            Mechanism::Tracepoint => "tracepoint",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A place to attach a program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttachPoint {
    /// A classic tracepoint `category/name` (tracefs `events/category/name`).
    Tracepoint { category: String, name: String },
    /// A raw tracepoint by name (`sys_enter`, `mm_filemap_add_to_page_cache`).
    RawTracepoint { name: String },
    /// A kernel function's entry or (with `ret`) return, through kprobes.
    Kprobe { func: String, ret: bool },
    /// The same through a kprobe_multi link (fprobe): the same program and `pt_regs`
    /// context, attached by `bpf()` alone, without `perf_event_open` or tracefs.
    KprobeMulti { func: String, ret: bool },
    /// A kernel function's entry or (with `exit`) return, through a BTF trampoline.
    Fentry { func: String, exit: bool },
}

impl AttachPoint {
    /// `category/name` tracepoint.
    pub fn tracepoint(category: &str, name: &str) -> Self {
        AttachPoint::Tracepoint { category: category.into(), name: name.into() }
    }

    /// Raw tracepoint.
    pub fn raw_tracepoint(name: &str) -> Self {
        AttachPoint::RawTracepoint { name: name.into() }
    }

    /// kprobe (`ret` false) or kretprobe.
    pub fn kprobe(func: &str, ret: bool) -> Self {
        AttachPoint::Kprobe { func: func.into(), ret }
    }

    /// kprobe_multi (`ret` false) or kretprobe_multi, on one function.
    pub fn kprobe_multi(func: &str, ret: bool) -> Self {
        AttachPoint::KprobeMulti { func: func.into(), ret }
    }

    /// fentry (`exit` false) or fexit.
    pub fn fentry(func: &str, exit: bool) -> Self {
        AttachPoint::Fentry { func: func.into(), exit }
    }

    /// The mechanism this point uses.
    pub fn mechanism(&self) -> Mechanism {
        match self {
            AttachPoint::Tracepoint { .. } => Mechanism::Tracepoint,
            AttachPoint::RawTracepoint { .. } => Mechanism::RawTracepoint,
            AttachPoint::Kprobe { ret: false, .. } => Mechanism::Kprobe,
            AttachPoint::Kprobe { ret: true, .. } => Mechanism::Kretprobe,
            AttachPoint::KprobeMulti { ret: false, .. } => Mechanism::KprobeMulti,
            AttachPoint::KprobeMulti { ret: true, .. } => Mechanism::KretprobeMulti,
            AttachPoint::Fentry { exit: false, .. } => Mechanism::Fentry,
            AttachPoint::Fentry { exit: true, .. } => Mechanism::Fexit,
        }
    }

    /// The program type a program for this point must be loaded as.
    pub fn prog_type(&self) -> ProgType {
        match self {
            AttachPoint::Tracepoint { .. } => ProgType::Tracepoint,
            AttachPoint::RawTracepoint { .. } => ProgType::RawTracepoint,
            AttachPoint::Kprobe { .. } | AttachPoint::KprobeMulti { .. } => ProgType::Kprobe,
            AttachPoint::Fentry { .. } => ProgType::Tracing,
        }
    }

    /// The ELF section name libbpf would give a program for this point.
    pub fn section(&self) -> String {
        match self {
            AttachPoint::Tracepoint { category, name } => format!("tracepoint/{category}/{name}"),
            AttachPoint::RawTracepoint { name } => format!("raw_tracepoint/{name}"),
            AttachPoint::Kprobe { func, ret: false } => format!("kprobe/{func}"),
            AttachPoint::Kprobe { func, ret: true } => format!("kretprobe/{func}"),
            AttachPoint::KprobeMulti { func, ret: false } => format!("kprobe.multi/{func}"),
            AttachPoint::KprobeMulti { func, ret: true } => format!("kretprobe.multi/{func}"),
            AttachPoint::Fentry { func, exit: false } => format!("fentry/{func}"),
            AttachPoint::Fentry { func, exit: true } => format!("fexit/{func}"),
        }
    }
}

impl fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.section())
    }
}

/// Which mechanisms the operator (or a test) has switched off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub disable_fentry: bool,
    /// Classic kprobes and kprobe_multi alike.
    pub disable_kprobe: bool,
    /// kprobe_multi only, so that classic kprobes can be exercised where both work.
    pub disable_kprobe_multi: bool,
    /// Classic and raw tracepoints alike.
    pub disable_tracepoint: bool,
    /// Trust every function probe that attaches without driving its path first: only to
    /// measure what the self-test costs (the start-up bench), since a probe the kernel never
    /// calls there then counts nothing, silently.
    pub disable_self_test: bool,
}

impl Policy {
    /// From `KTM_DISABLE_FENTRY=1`, `KTM_DISABLE_KPROBE=1`, `KTM_DISABLE_KPROBE_MULTI=1` and
    /// `KTM_DISABLE_TRACEPOINT=1`, which let CI exercise each fallback on kernels where the
    /// preferred mechanism works, and `KTM_DISABLE_SELF_TEST=1`.
    pub fn from_env() -> Policy {
        let on = |k: &str| std::env::var(k).map(|v| v == "1" || v.eq_ignore_ascii_case("true")).unwrap_or(false);
        Policy {
            disable_fentry: on("KTM_DISABLE_FENTRY"),
            disable_kprobe: on("KTM_DISABLE_KPROBE"),
            disable_kprobe_multi: on("KTM_DISABLE_KPROBE_MULTI"),
            disable_tracepoint: on("KTM_DISABLE_TRACEPOINT"),
            disable_self_test: on("KTM_DISABLE_SELF_TEST"),
        }
    }

    /// Why `m` may not be used, if it may not.
    pub fn forbids(&self, m: Mechanism) -> Option<&'static str> {
        match m {
            Mechanism::Fentry | Mechanism::Fexit if self.disable_fentry => Some("disabled by KTM_DISABLE_FENTRY"),
            Mechanism::Kprobe | Mechanism::Kretprobe | Mechanism::KprobeMulti | Mechanism::KretprobeMulti
                if self.disable_kprobe =>
            {
                Some("disabled by KTM_DISABLE_KPROBE")
            }
            Mechanism::KprobeMulti | Mechanism::KretprobeMulti if self.disable_kprobe_multi => {
                Some("disabled by KTM_DISABLE_KPROBE_MULTI")
            }
            Mechanism::Tracepoint | Mechanism::RawTracepoint if self.disable_tracepoint => {
                Some("disabled by KTM_DISABLE_TRACEPOINT")
            }
            _ => None,
        }
    }
}
