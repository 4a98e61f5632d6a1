//! Every iomonitor probe: what it feeds and its attach plan, preferred mechanism first.
//!
//! Each alternative of a plan measures the same thing; where a mechanism would change a
//! metric's meaning it is left out of the plan, and a kernel with no alternative left
//! reports the metric unavailable.

use super::emit::{
    add_imm, add_positive_ret, add_reg, count_advice, counters, latency_enter, latency_exit, program, program_after,
    stack, take_start, unscoped,
};
use super::exercise;
use super::layout::{lane, tag};
use crate::attach::{tracepoint_field, Alternative, AttachPoint, Exercise, Plan};
use crate::insn::{Asm, Helper, Label, Program, R0, R1, R10, R2, R3, R6};
use crate::{Error, Result};

/// A probe: its plan and the metrics it feeds.
#[derive(Debug)]
pub struct Probe {
    pub plan: Plan,
    pub metrics: &'static [&'static str],
}

/// `struct pt_regs` argument offsets as a kprobe sees them: di, si, dx, cx on x86-64, with
/// the return value in ax.
#[cfg(target_arch = "x86_64")]
mod regs {
    pub const ARG: [i16; 4] = [112, 104, 96, 88];
    pub const RET: i16 = 80;
}

/// arm64's `struct pt_regs` begins with `u64 regs[31]`: arguments in x0..x3, and the return
/// value back in x0.
#[cfg(target_arch = "aarch64")]
mod regs {
    pub const ARG: [i16; 4] = [0, 8, 16, 24];
    pub const RET: i16 = 0;
}

/// Syscall numbers the raw `sys_enter` programs compare with (`unistd_64.h`; arm64 uses the
/// generic table, where fadvise is `fadvise64_64`).
mod nr {
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
fn syscall_arg3() -> Result<i16> {
    #[cfg(target_arch = "x86_64")]
    return Ok(56);
    #[cfg(target_arch = "aarch64")]
    return Ok(24);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Err(Error::Other("syscall argument access is implemented for x86-64 and arm64 only".into()));
}

/// kprobe programs read arguments from pt_regs, whose layout is per architecture.
fn kprobe_regs() -> Result<(&'static [i16; 4], i16)> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    return Ok((&regs::ARG, regs::RET));
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Err(Error::Other("kprobe argument access is implemented for x86-64 and arm64 only".into()));
}

/// The offset of a tracepoint record field, or an error naming it.
fn tp_field(category: &str, name: &str, field: &str) -> Result<i16> {
    tracepoint_field(category, name, field)?
        .map(|(o, _)| o)
        .ok_or_else(|| Error::Other(format!("tracepoint {category}/{name} has no field `{field}` on this kernel")))
}

/// A program that adds one to `lane` for each target event.
fn count_one(lane: usize) -> Result<Program> {
    program(move |a, out| {
        counters(a, out);
        add_imm(a, lane, 1);
    })
}

/// An alternative counting one per event at `point`.
fn counting(point: AttachPoint, lane: usize) -> Alternative {
    Alternative::new(point, move || count_one(lane))
}

/// The two ways to run a kprobe program on a function, preferred first: a kprobe_multi link,
/// then a classic kprobe. The program and its `pt_regs` context are the same; kprobe_multi
/// goes first because it needs only `bpf()`: no `perf_event_open` (which Debian's
/// `perf_event_paranoid` 3 reserves to `CAP_SYS_ADMIN`, and which a seccomp profile may deny),
/// no kprobe PMU or tracefs. Where both work, both enter through ftrace on these functions.
/// A kernel without it (before 5.18, or without `CONFIG_FPROBE`: Debian's 6.1, arm64 up to
/// 6.12) goes on to the classic kprobe.
const KPROBES: [fn(&str, bool) -> AttachPoint; 2] = [AttachPoint::kprobe_multi, AttachPoint::kprobe];

/// A plan counting one per call of kernel function `func`, in which tracepoint
/// `category/event` sits: fentry, the raw tracepoint (it skips building the record nobody
/// reads, about 10 ns), the classic one, then kprobes ([`KPROBES`]). `exercise` calls `func`.
fn counting_calls(name: &str, func: &str, (category, event): (&str, &str), lane: usize, exercise: Exercise) -> Plan {
    Plan {
        name: name.into(),
        alternatives: vec![
            counting(AttachPoint::fentry(func, false), lane),
            counting(AttachPoint::raw_tracepoint(event), lane),
            counting(AttachPoint::tracepoint(category, event), lane),
            counting(KPROBES[0](func, false), lane),
            counting(KPROBES[1](func, false), lane),
        ],
        exercise: Some(exercise),
    }
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

/// Raw `sys_enter` gives `(struct pt_regs *regs, long id)` and runs for every syscall: the
/// number test comes before anything else, so other syscalls leave after one compare.
fn syscall_is(nr: i32) -> impl Fn(&mut Asm, Label) + Copy {
    move |a, out| {
        a.ldx_dw(R1, R6, 8);
        a.jne(R1, nr, out);
    }
}

/// Where a kretprobe finds the return value in `struct pt_regs`: ax on x86-64, x0 on arm64.
fn kretprobe_ret() -> Result<i16> {
    Ok(kprobe_regs()?.1)
}

/// Where fexit finds `func`'s return value: after its arguments, one u64 each. The count
/// comes from the function's BTF prototype; a syscall wrapper (`__x64_sys_read`) takes one
/// `const struct pt_regs *`, which is the layout assumed when BTF names no prototype.
fn fexit_ret(func: &str) -> i16 {
    let params = crate::btf::find_kernel_func(func).ok().and_then(|f| f.params).unwrap_or(1);
    (params.min(12) * 8) as i16
}

/// The exit half of a read/pread pair: latency, then bytes. One program for every
/// mechanism; only where the return value sits differs (`ret_at`).
///
/// ```c
/// if (!take_start(tag, &start)) return 0;        // only a target thread stored one
/// record_latency(h, bpf_ktime_get_ns() - start);
/// long ret = *(long *)((char *)ctx + ret_at);    // fexit: after the args; tracepoint: `ret`;
/// if (ret > 0) counters[bytes] += ret;           // kretprobe: regs->ax; raw sys_exit: args[1]
/// ```
fn latency_exit_program(
    h: super::layout::HistLanes,
    tag: u32,
    bytes: usize,
    ret_at: impl Fn() -> Result<i16> + Send + Sync + 'static,
) -> impl Fn() -> Result<Program> + Send + Sync {
    move || {
        let at = ret_at()?;
        unscoped(move |a, out| {
            latency_exit(a, out, h, tag);
            add_positive_ret(a, out, bytes, at);
        })
    }
}

fn latency(
    name: &str,
    syscall: &'static str,
    nr: i32,
    h: super::layout::HistLanes,
    tag: u32,
    bytes: usize,
    exercise: Exercise,
) -> Plan {
    let func = syscall_fn(syscall);
    let enter = move || program(move |a, out| latency_enter(a, out, tag));
    let raw_enter = move || program_after(syscall_is(nr), move |a, out| latency_enter(a, out, tag));
    // One exit program for every mechanism: it takes only a start its own enter stored, so
    // it may run at every syscall's exit (raw sys_exit). Only the return value's place
    // differs between mechanisms.
    let exit = move |ret_at: Box<dyn Fn() -> Result<i16> + Send + Sync>| latency_exit_program(h, tag, bytes, ret_at);
    let fexit_func = func.clone();
    let exit_tp = format!("sys_exit_{syscall}");
    let exit_tp2 = exit_tp.clone();
    let kprobes =
        KPROBES.map(|k| Alternative::new(k(&func, false), enter).and(k(&func, true), exit(Box::new(kretprobe_ret))));
    let [kprobe_multi, kprobe] = kprobes;
    Plan {
        name: name.into(),
        alternatives: vec![
            Alternative::new(AttachPoint::fentry(&func, false), enter)
                .and(AttachPoint::fentry(&func, true), exit(Box::new(move || Ok(fexit_ret(&fexit_func))))),
            // Tracepoints before kprobes: measured cheaper in every guest kernel, per read and
            // at a 10/20/70 syscall mix, despite the tax they put on every syscall (README).
            Alternative::new(AttachPoint::tracepoint("syscalls", &format!("sys_enter_{syscall}")), enter).and(
                AttachPoint::tracepoint("syscalls", &exit_tp),
                exit(Box::new(move || tp_field("syscalls", &exit_tp2, "ret"))),
            ),
            kprobe_multi,
            kprobe,
            // Last: needs neither tracefs nor BTF nor kprobes (a container without
            // CAP_SYS_ADMIN on a kernel that refuses fentry), but runs on every syscall.
            // sys_exit's arguments are (struct pt_regs *regs, long ret).
            Alternative::new(AttachPoint::raw_tracepoint("sys_enter"), raw_enter)
                .and(AttachPoint::raw_tracepoint("sys_exit"), exit(Box::new(|| Ok(8)))),
        ],
        exercise: Some(exercise),
    }
}

/// The fadvise syscall: `fadvise64` on x86-64, `fadvise64_64` in the generic table arm64
/// uses.
#[cfg(target_arch = "aarch64")]
const FADVISE: &str = "fadvise64_64";
#[cfg(not(target_arch = "aarch64"))]
const FADVISE: &str = "fadvise64";

/// Where an fadvise program finds the advice.
#[derive(Clone, Copy, Debug)]
enum Advice {
    /// At this offset of the context (a tracepoint record's `advice`).
    InContext(i16),
    /// In the syscall's saved user registers (at `arg_at`), whose `struct pt_regs *` is at
    /// `regs_at` of the context: a syscall function's only argument (fentry, kprobe) or raw
    /// `sys_enter`'s first.
    InSavedRegs { regs_at: i16, arg_at: u32 },
}

impl Advice {
    /// The advice in the saved registers that the context points to at `regs_at`.
    fn in_saved_regs(regs_at: i16) -> Result<Advice> {
        Ok(Advice::InSavedRegs { regs_at, arg_at: syscall_arg3()? as u32 })
    }

    /// `r1 = advice`, or `goto out` where the saved registers cannot be read.
    fn load(self, a: &mut Asm, out: Label) {
        match self {
            Advice::InContext(at) => {
                a.ldx_dw(R1, R6, at);
            }
            Advice::InSavedRegs { regs_at, arg_at } => read_through(a, out, regs_at, arg_at),
        }
    }
}

/// fadvise at a function's exit, where arguments and result are both at hand (one program):
/// preferably the syscall function itself, `long __x64_sys_fadvise64(const struct pt_regs
/// *regs)`, because `ksys_fadvise64_64(int fd, loff_t offset, loff_t len, int advice)` below
/// it is inlined on some builds (arm64 6.12). 5.10's verifier cannot read the syscall
/// function's argument (its `struct pt_regs` is only declared there), so `ksys_fadvise64_64`
/// follows, trusted only where the self-test sees it run.
fn fadvise_fexit(
    func: String,
    advice: impl Fn() -> Result<Advice> + Send + Sync + 'static,
) -> impl Fn() -> Result<Program> + Send + Sync {
    move || {
        let ret = fexit_ret(&func);
        let advice = advice()?;
        program(move |a, out| {
            count_call(a, out, advice);
            success_if_zero(a, |a| {
                a.ldx_dw(R2, R6, ret);
            });
        })
    }
}

/// `counters[FADVISE_CALLS]++; counters[FADVISE_ADVICE + advice]++` for a target's call.
fn count_call(a: &mut Asm, out: Label, advice: Advice) {
    counters(a, out);
    add_imm(a, lane::FADVISE_CALLS, 1);
    advice.load(a, out);
    count_advice(a);
}

/// `if ((int)r2 == 0) counters[FADVISE_SUCCESS]++`, with r2 loaded by `load`.
fn success_if_zero(a: &mut Asm, load: impl FnOnce(&mut Asm)) {
    let failed = a.label("failed");
    load(a);
    a.jne32(R2, 0, failed);
    add_imm(a, lane::FADVISE_SUCCESS, 1);
    a.bind(failed);
}

fn fadvise_enter(
    advice: impl Fn() -> Result<Advice> + Send + Sync + 'static,
) -> impl Fn() -> Result<Program> + Send + Sync {
    move || {
        let advice = advice()?;
        program(move |a, out| {
            count_call(a, out, advice);
        })
    }
}

fn fadvise_exit(ret: impl Fn() -> Result<i16> + Send + Sync + 'static) -> impl Fn() -> Result<Program> + Send + Sync {
    move || {
        let at = ret()?;
        program(move |a, out| {
            counters(a, out);
            success_if_zero(a, |a| {
                a.ldx_dw(R2, R6, at);
            });
        })
    }
}

fn fadvise_tracepoints(syscall: &'static str) -> Alternative {
    let enter = format!("sys_enter_{syscall}");
    let exit = format!("sys_exit_{syscall}");
    let (e2, x2) = (enter.clone(), exit.clone());
    Alternative::new(
        AttachPoint::tracepoint("syscalls", &enter),
        fadvise_enter(move || Ok(Advice::InContext(tp_field("syscalls", &e2, "advice")?))),
    )
    .and(AttachPoint::tracepoint("syscalls", &exit), fadvise_exit(move || tp_field("syscalls", &x2, "ret")))
}

/// `r1 = *(u64 *)(*(char **)((char *)ctx + ptr_at) + at)`: a field of the kernel object whose
/// pointer the context holds, read with `bpf_probe_read_kernel` (a raw tracepoint's or a
/// kprobe's pointer argument cannot be dereferenced directly), or `goto out`.
fn read_through(a: &mut Asm, out: Label, ptr_at: i16, at: u32) {
    a.ldx_dw(R3, R6, ptr_at);
    a.add64(R3, at as i32);
    a.mov64(R1, R10);
    a.add64(R1, stack::READ_BUF as i32);
    a.mov64(R2, 8);
    a.call(Helper::ProbeReadKernel);
    a.jne(R0, 0, out);
    a.ldx_dw(R1, R10, stack::READ_BUF);
}

/// fadvise on raw `sys_enter`/`sys_exit`: the enter counts the call and its advice (read
/// from the saved registers) and claims a start slot tagged fadvise; the exit, at every
/// syscall's exit, counts a success only where it finds that slot.
fn fadvise_raw_enter() -> Result<Program> {
    let advice = Advice::in_saved_regs(0)?;
    program_after(syscall_is(nr::FADVISE64), move |a, out| {
        count_call(a, out, advice);
        latency_enter(a, out, tag::FADVISE);
    })
}

fn fadvise_raw_exit() -> Result<Program> {
    unscoped(|a, out| {
        take_start(a, out, tag::FADVISE);
        counters(a, out);
        success_if_zero(a, |a| {
            a.ldx_dw(R2, R6, 8);
        });
    })
}

/// fadvise on kprobe programs (`k`: kprobe_multi or classic) on the syscall function: the
/// advice read through its `struct pt_regs *` argument, the success from the return value.
fn fadvise_kprobes(k: fn(&str, bool) -> AttachPoint, func: &str) -> Alternative {
    Alternative::new(k(func, false), fadvise_enter(|| Advice::in_saved_regs(kprobe_regs()?.0[0])))
        .and(k(func, true), fadvise_exit(kretprobe_ret))
}

/// The helper under the fadvise syscall functions (one u64 per argument at fexit).
const KSYS_FADVISE: &str = "ksys_fadvise64_64";

fn fadvise() -> Plan {
    let func = syscall_fn(FADVISE);
    Plan {
        name: "ktm_fadvise".into(),
        alternatives: vec![
            Alternative::new(
                AttachPoint::fentry(&func, true),
                fadvise_fexit(func.clone(), || Advice::in_saved_regs(0)),
            ),
            Alternative::new(
                AttachPoint::fentry(KSYS_FADVISE, true),
                fadvise_fexit(KSYS_FADVISE.into(), || Ok(Advice::InContext(3 * 8))),
            ),
            // Same order as read/pread: where those use syscall tracepoints, every syscall
            // already pays their tax and two more add only their own runs.
            fadvise_tracepoints(FADVISE),
            fadvise_kprobes(KPROBES[0], &func),
            fadvise_kprobes(KPROBES[1], &func),
            Alternative::new(AttachPoint::raw_tracepoint("sys_enter"), fadvise_raw_enter)
                .and(AttachPoint::raw_tracepoint("sys_exit"), fadvise_raw_exit),
        ],
        exercise: Some(Exercise::new("fadvise", exercise::fadvise)),
    }
}

/// Pages added or removed (`event` is `mm_filemap_add_to_page_cache` or
/// `mm_filemap_delete_from_page_cache`, one event class): one per event, or 2^order where the
/// record says a folio's order.
///
/// ```c
/// counters[lane] += has_order_field ? 1UL << ctx->order : 1;
/// ```
fn page_cache_pages(event: &'static str, lane: usize) -> impl Fn() -> Result<Program> + Send + Sync {
    move || {
        let order = tracepoint_field("filemap", event, "order")?;
        program(move |a, out| {
            counters(a, out);
            match order {
                Some((at, _)) => {
                    a.ldx_b(R1, R6, at);
                    a.mov64(R2, 1);
                    a.lsh64(R2, R1);
                    add_reg(a, lane, R2);
                }
                None => add_imm(a, lane, 1),
            }
        })
    }
}

/// Pages added or removed, from the raw tracepoint's `struct folio *` (a `struct page *`
/// before folios, always one page then), with the flag bit and the order's place taken from
/// the running kernel's BTF.
///
/// ```c
/// struct folio *folio = (void *)ctx->args[0];
/// counters[lane] += folio_test_large(folio) ? 1UL << folio_order(folio) : 1;
/// ```
fn page_cache_pages_raw(lane: usize) -> impl Fn() -> Result<Program> + Send + Sync {
    move || {
        let layout = super::folio::FolioLayout::from_kernel()?;
        program(move |a, out| {
            counters(a, out);
            let Some(l) = layout else {
                add_imm(a, lane, 1);
                return;
            };
            let small = a.label("small_folio");
            let read = |a: &mut Asm, at: u32| read_through(a, out, 0, at);
            read(a, l.flags);
            a.rsh64(R1, l.head_bit as i32);
            a.and64(R1, 1);
            a.jeq(R1, 0, small);
            read(a, l.order);
            a.and64(R1, 0xff);
            a.mov64(R2, 1);
            a.lsh64(R2, R1);
            add_reg(a, lane, R2);
            a.ja(out);
            a.bind(small);
            add_imm(a, lane, 1);
        })
    }
}

/// A page-cache plan: the classic tracepoint (its record may carry the folio order), then,
/// without tracefs, the raw tracepoint reading the folio's order at offsets from BTF.
fn page_cache_plan(name: &str, event: &'static str, lane: usize) -> Plan {
    Plan {
        name: name.into(),
        alternatives: vec![
            Alternative::new(AttachPoint::tracepoint("filemap", event), page_cache_pages(event, lane)),
            Alternative::new(AttachPoint::raw_tracepoint(event), page_cache_pages_raw(lane)),
        ],
        exercise: None,
    }
}

/// Pages scanned and reclaimed by one shrink of an inactive LRU list; `args` gives the
/// offsets of nr_scanned and nr_reclaimed in the context.
fn lru_shrink(
    args: impl Fn() -> Result<(i16, i16)> + Send + Sync + 'static,
) -> impl Fn() -> Result<Program> + Send + Sync {
    move || {
        let (scanned, reclaimed) = args()?;
        program(move |a: &mut Asm, out: Label| {
            counters(a, out);
            a.ldx_dw(R2, R6, scanned);
            add_reg(a, lane::LRU_SCANNED, R2);
            a.ldx_dw(R2, R6, reclaimed);
            add_reg(a, lane::LRU_RECLAIMED, R2);
        })
    }
}

/// The name of the rename hook's plan ([`super::follow`]): it feeds no metric, it keeps
/// the scope on BanyanDB across restarts.
pub const RENAME_HOOK: &str = "ktm_follow";

/// The rename hook's plan: the raw tracepoint (no tracefs, no BTF), fentry on the function
/// it sits in, then kprobes there ([`KPROBES`]: kprobe_multi needs no perf event, so a
/// sidecar on a `perf_event_paranoid` 3 kernel without fentry keeps the hook); every one gives the task and the new name as the first
/// two arguments. `__set_task_comm` is exported and never inlined, so no self-test.
fn follow() -> Plan {
    const FUNC: &str = "__set_task_comm";
    Plan {
        name: RENAME_HOOK.into(),
        alternatives: vec![
            Alternative::new(AttachPoint::raw_tracepoint("task_rename"), || super::follow::rename_hook(0, 8)),
            Alternative::new(AttachPoint::fentry(FUNC, false), || super::follow::rename_hook(0, 8)),
        ]
        .into_iter()
        .chain(KPROBES.map(|k| {
            Alternative::new(k(FUNC, false), || {
                let (args, _) = kprobe_regs()?;
                super::follow::rename_hook(args[0], args[1])
            })
        }))
        .collect(),
        exercise: None,
    }
}

/// The name of the join hook's plan ([`super::follow::join_hook`]).
pub const JOIN_HOOK: &str = "ktm_follow_join";

/// The join hook's plan: the raw tracepoint `cgroup_attach_task` (after the move), else
/// fentry or kprobes ([`KPROBES`]) on `cgroup_attach_task` (before it); the destination cgroup is the
/// first argument of each.
fn follow_join() -> Plan {
    use super::follow::{join_hook, CgroupIdLayout};
    const FUNC: &str = "cgroup_attach_task";
    Plan {
        name: JOIN_HOOK.into(),
        alternatives: vec![
            Alternative::new(AttachPoint::raw_tracepoint("cgroup_attach_task"), || {
                join_hook(0, CgroupIdLayout::from_kernel()?)
            }),
            Alternative::new(AttachPoint::fentry(FUNC, false), || join_hook(0, CgroupIdLayout::from_kernel()?)),
        ]
        .into_iter()
        .chain(KPROBES.map(|k| {
            Alternative::new(k(FUNC, false), || join_hook(kprobe_regs()?.0[0], CgroupIdLayout::from_kernel()?))
        }))
        .collect(),
        exercise: None,
    }
}

/// The iomonitor's probes.
pub fn probes() -> Vec<Probe> {
    let tp = |c: &str, n: &str| AttachPoint::tracepoint(c, n);
    vec![
        Probe {
            plan: latency(
                "ktm_read",
                "read",
                nr::READ,
                lane::READ,
                tag::READ,
                lane::READ_BYTES,
                Exercise::new("read", exercise::read),
            ),
            metrics: &["ktm_sys_read_latency_seconds", "ktm_sys_read_bytes_total"],
        },
        Probe {
            plan: latency(
                "ktm_pread",
                "pread64",
                nr::PREAD64,
                lane::PREAD,
                tag::PREAD,
                lane::PREAD_BYTES,
                Exercise::new("pread", exercise::pread),
            ),
            metrics: &["ktm_sys_pread_latency_seconds", "ktm_sys_pread_bytes_total"],
        },
        Probe {
            plan: fadvise(),
            metrics: &["ktm_fadvise_calls_total", "ktm_fadvise_advice_total", "ktm_fadvise_success_total"],
        },
        Probe {
            // Every buffered read passes filemap_get_pages and the tracepoint in it.
            plan: counting_calls(
                "ktm_cache_look",
                "filemap_get_pages",
                ("filemap", "mm_filemap_get_pages"),
                lane::CACHE_ATTEMPTS,
                Exercise::new("cached_read", exercise::cached_read),
            ),
            metrics: &["ktm_cache_read_attempts_total"],
        },
        Probe {
            plan: counting_calls(
                "ktm_cache_miss",
                "page_cache_sync_ra",
                ("readahead", "page_cache_sync_ra"),
                lane::CACHE_MISSES,
                Exercise::new("cold_read", exercise::cold_read),
            ),
            metrics: &["ktm_cache_misses_total"],
        },
        Probe {
            plan: page_cache_plan("ktm_cache_add", "mm_filemap_add_to_page_cache", lane::PAGE_CACHE_ADDS),
            metrics: &["ktm_page_cache_adds_total"],
        },
        Probe {
            // Fires in the task that removes the folio: truncation, invalidation (fadvise
            // DONTNEED) and reclaim alike; only the target's own count (README).
            plan: page_cache_plan("ktm_cache_del", "mm_filemap_delete_from_page_cache", lane::PAGE_CACHE_DELETES),
            metrics: &["ktm_page_cache_deletes_total"],
        },
        Probe {
            plan: Plan {
                name: "ktm_lru_shrink".into(),
                alternatives: vec![
                    // TP_PROTO(int nid, unsigned long nr_scanned, unsigned long nr_reclaimed, ...)
                    Alternative::new(
                        AttachPoint::raw_tracepoint("mm_vmscan_lru_shrink_inactive"),
                        lru_shrink(|| Ok((8, 16))),
                    ),
                    Alternative::new(
                        tp("vmscan", "mm_vmscan_lru_shrink_inactive"),
                        lru_shrink(|| {
                            let f = |n| tp_field("vmscan", "mm_vmscan_lru_shrink_inactive", n);
                            Ok((f("nr_scanned")?, f("nr_reclaimed")?))
                        }),
                    ),
                ],
                exercise: None,
            },
            metrics: &["ktm_memory_lru_pages_scanned_total", "ktm_memory_lru_pages_reclaimed_total"],
        },
        Probe {
            plan: Plan {
                name: "ktm_direct_recl".into(),
                alternatives: vec![
                    counting(AttachPoint::raw_tracepoint("mm_vmscan_direct_reclaim_begin"), lane::DIRECT_RECLAIM),
                    counting(tp("vmscan", "mm_vmscan_direct_reclaim_begin"), lane::DIRECT_RECLAIM),
                ],
                exercise: None,
            },
            metrics: &["ktm_memory_direct_reclaim_begin_total"],
        },
        Probe { plan: follow(), metrics: &[] },
        Probe { plan: follow_join(), metrics: &[] },
    ]
}
