//! What the probe families' plans share: tracepoint fields, the one counting program, the
//! kprobe mechanisms in order, the raw `sys_enter` number test, where fexit finds a return
//! value, and reading through a pointer the context holds.

use super::emit::{add_imm, counters, program, stack, tracing_program};
use crate::attach::{tracepoint_field, Alternative, AttachPoint, Exercise, Mechanism, Plan};
use crate::insn::{Asm, Helper, Label, Program, Reg, R0, R1, R10, R2, R3, R6};
use crate::{Error, Result};

/// The offset of a tracepoint record field, or an error naming it.
pub(super) fn tp_field(category: &str, name: &str, field: &str) -> Result<i16> {
    tracepoint_field(category, name, field)?
        .map(|(o, _)| o)
        .ok_or_else(|| Error::Other(format!("tracepoint {category}/{name} has no field `{field}` on this kernel")))
}

/// A program that adds one to `lane` for each target event.
pub(super) fn count_one(lane: usize) -> Result<Program> {
    program(move |a, out| count(a, out, lane))
}

fn count(a: &mut Asm, out: Label, lane: usize) {
    counters(a, out);
    add_imm(a, lane, 1);
}

/// An alternative counting one per event at `point` (a BTF-typed program at fentry).
pub(super) fn counting(point: AttachPoint, lane: usize) -> Alternative {
    if point.mechanism() == Mechanism::Fentry {
        return Alternative::new(point, move || tracing_program(move |a, out| count(a, out, lane)));
    }
    Alternative::new(point, move || count_one(lane))
}

/// The two ways to run a kprobe program on a function, preferred first: a kprobe_multi link,
/// then a classic kprobe. The program and its `pt_regs` context are the same; kprobe_multi
/// goes first because it needs only `bpf()`: no `perf_event_open` (which Debian's
/// `perf_event_paranoid` 3 reserves to `CAP_SYS_ADMIN`, and which a seccomp profile may deny),
/// no kprobe PMU or tracefs. Where both work, both enter through ftrace on these functions.
/// A kernel without it (before 5.18, or without `CONFIG_FPROBE`: Debian's 6.1, arm64 up to
/// 6.12) goes on to the classic kprobe.
pub(super) const KPROBES: [fn(&str, bool) -> AttachPoint; 2] = [AttachPoint::kprobe_multi, AttachPoint::kprobe];

/// A plan counting one per call of kernel function `func`, in which tracepoint
/// `category/event` sits: fentry, the raw tracepoint (it skips building the record nobody
/// reads, about 10 ns), the classic one, then kprobes ([`KPROBES`]). `exercise` calls `func`.
pub(super) fn counting_calls(
    name: &str,
    func: &str,
    (category, event): (&str, &str),
    lane: usize,
    exercise: Exercise,
) -> Plan {
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

/// Raw `sys_enter` gives `(struct pt_regs *regs, long id)` and runs for every syscall: the
/// number test comes before anything else, so other syscalls leave after one compare.
pub(super) fn syscall_is(nr: i32) -> impl Fn(&mut Asm, Label) + Copy {
    move |a, out| {
        a.ldx_dw(R1, R6, 8);
        a.jne(R1, nr, out);
    }
}

/// Where fexit finds `func`'s return value: after its arguments, one u64 each. The count
/// comes from the function's BTF prototype; a syscall wrapper (`__x64_sys_read`) takes one
/// `const struct pt_regs *`, which is the layout assumed when BTF names no prototype.
pub(super) fn fexit_ret(func: &str) -> i16 {
    let params = crate::btf::find_kernel_func(func).ok().and_then(|f| f.params).unwrap_or(1);
    (params.min(12) * 8) as i16
}

/// `r1 = *(u64 *)(*(char **)((char *)ctx + ptr_at) + at)`: a field of the kernel object whose
/// pointer the context holds, read with `bpf_probe_read_kernel` (a raw tracepoint's or a
/// kprobe's pointer argument cannot be dereferenced directly), or `goto out`.
pub(super) fn read_through(a: &mut Asm, out: Label, ptr_at: i16, at: u32) {
    probe_read_through(a, out, R6, ptr_at, at);
    a.ldx_dw(R1, R10, stack::READ_BUF);
}

/// `stack::READ_BUF = *(u64 *)(*(char **)(base + ptr_at) + at)`, or `goto out`: one link of a
/// pointer chase, the pointer taken from the context (`base` R6) or from the previous link's
/// read (`base` R10, `ptr_at` `stack::READ_BUF`).
pub(super) fn probe_read_through(a: &mut Asm, out: Label, base: Reg, ptr_at: i16, at: u32) {
    a.ldx_dw(R3, base, ptr_at);
    a.add64(R3, at as i32);
    a.stack_addr(R1, stack::READ_BUF);
    a.mov64(R2, 8);
    a.call(Helper::ProbeReadKernel);
    a.jne(R0, 0, out);
}
