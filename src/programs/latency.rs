//! read(2) and pread64(2): latency from a start time the enter stores and the exit takes,
//! and the bytes the exit sees returned. One exit program for every mechanism.

use super::arch::{kretprobe_ret, syscall_fn};
use super::emit::{add_positive_ret, latency_enter, latency_exit, program, program_after, tracing_program, unscoped};
use super::layout::HistLanes;
use super::plan::{fexit_ret, syscall_is, tp_field, KPROBES};
use crate::attach::{Alternative, AttachPoint, Exercise, Plan};
use crate::insn::Program;
use crate::Result;

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
    h: HistLanes,
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

/// The plan of one syscall's latency and bytes: fentry/fexit, the syscall tracepoints,
/// kprobes ([`KPROBES`]), then raw `sys_enter`/`sys_exit` with the number test.
pub(super) fn plan(
    name: &str,
    syscall: &'static str,
    nr: i32,
    h: HistLanes,
    tag: u32,
    bytes: usize,
    exercise: Exercise,
) -> Plan {
    let func = syscall_fn(syscall);
    let enter = move || program(move |a, out| latency_enter(a, out, tag));
    let fentry_enter = move || tracing_program(move |a, out| latency_enter(a, out, tag));
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
            Alternative::new(AttachPoint::fentry(&func, false), fentry_enter)
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
