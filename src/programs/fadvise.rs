//! fadvise64: calls, each call's advice, and the calls that returned 0. The advice is read
//! where each mechanism keeps it (a record field, the saved user registers).

use super::arch::{kprobe_regs, kretprobe_ret, nr, syscall_arg3, syscall_fn, FADVISE};
use super::emit::{
    add_imm, count_advice, counters, latency_enter, program, program_after, take_start, tracing_program, unscoped,
};
use super::exercise;
use super::layout::{lane, tag};
use super::plan::{fexit_ret, read_through, syscall_is, tp_field, KPROBES};
use crate::attach::{Alternative, AttachPoint, Exercise, Plan};
use crate::insn::{Asm, Label, Program, R1, R2, R6};
use crate::Result;

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
        tracing_program(move |a, out| {
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

/// The fadvise plan, preferred first.
pub(super) fn plan() -> Plan {
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
