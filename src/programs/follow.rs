//! The rename hook: follows BanyanDB's restarts in the kernel, at the moment they happen.
//!
//! Every exec and every `prctl(PR_SET_NAME)` passes `__set_task_comm`, and the `task_rename`
//! tracepoint in it, with the new name as an argument (the task's comm is still the old
//! one there). A new BanyanDB is born at that moment (a runtime execs `banyand`), and so is
//! a shell exec'd into BanyanDB's container. Catching those moments here, rather than at
//! the next collection, costs nothing on the counting programs' hot paths: renames are rare.

use super::arch::kprobe_regs;
use super::current::CgroupIdLayout;
use super::emit::{comm_has_prefix, off, stack};
use super::layout::{config, renamed, CONFIG, RENAMED};
use super::plan::{probe_read_through, KPROBES};
use crate::attach::{Alternative, AttachPoint, Plan};
use crate::insn::{Asm, Helper, Program, R0, R1, R10, R2, R3, R4, R6, R7, R8, R9};
use crate::Result;

/// The hook, for a context holding the renamed task at `task_at` and the new name's pointer
/// at `comm_at` (a raw tracepoint's or fentry's `args[0]`, `args[1]`; a kprobe's registers).
///
/// ```c
/// struct config *cfg = &config[0];
/// if (!cfg->watch) return 0;                    // comm mode is not narrowed to the pod
/// if (task != bpf_get_current_task()) return 0; // /proc/PID/comm of another thread
/// char comm[16] = {};
/// bpf_probe_read_kernel_str(comm, sizeof(comm), new_name);
/// struct bpf_pidns_info ns;
/// if (bpf_get_ns_current_pid_tgid(cfg->pidns_dev, cfg->pidns_ino, &ns, sizeof(ns)))
///     return 0;                                 // not in the pod
/// u64 cgroup = bpf_get_current_cgroup_id();
/// bool in_target = cfg->mode == CGROUP && cgroup == cfg->cgroup_id;
/// if (has_prefix(comm, cfg)) {                  // a BanyanDB appears
///     if (in_target && ns.tgid == cfg->target_tgid) return 0;  // the target names a thread
///     renamed->cgroup_id = cgroup; renamed->tgid = ns.tgid;
///     __sync_fetch_and_add(&renamed->generation, 1);
///     if (cfg->mode == CGROUP && !in_target) cfg->mode = COMM;  // count it from now on
/// } else if (in_target && ns.tgid != cfg->target_tgid) {     // a stranger in the cgroup
///     __sync_fetch_and_add(&renamed->generation, 1);
///     cfg->mode = COMM;                         // its I/O is not BanyanDB's
/// }
/// ```
///
/// The generation moves before the mode, so a collector that re-programs the scope and
/// then sees the generation unchanged knows no switch of this hook was overwritten.
pub(crate) fn rename_hook(task_at: i16, comm_at: i16) -> Result<Program> {
    let mut a = Asm::new();
    let out = a.label("out");
    let stranger = a.label("stranger");
    let appeared = a.label("appeared");
    a.mov64(R6, R1);
    a.ld_map_value(R7, CONFIG, 0);
    a.ldx_dw(R1, R7, off(config::WATCH));
    a.jeq(R1, 0, out);
    a.call(Helper::GetCurrentTask);
    a.ldx_dw(R1, R6, task_at);
    a.jne(R0, R1, out);

    a.st_dw(R10, stack::COMM, 0);
    a.st_dw(R10, stack::COMM + 8, 0);
    a.stack_addr(R1, stack::COMM);
    a.mov64(R2, 16);
    a.ldx_dw(R3, R6, comm_at);
    a.call(Helper::ProbeReadKernelStr);
    a.jsle(R0, 0, out);

    a.ldx_dw(R1, R7, off(config::PIDNS_DEV));
    a.ldx_dw(R2, R7, off(config::PIDNS_INO));
    a.stack_addr(R3, stack::PIDNS_INFO);
    a.mov64(R4, 8);
    a.call(Helper::GetNsCurrentPidTgid);
    a.jne(R0, 0, out);
    a.call(Helper::GetCurrentCgroupId);
    a.mov64(R9, R0);
    a.ld_map_value(R8, RENAMED, 0);

    comm_has_prefix(&mut a, stranger);
    // A BanyanDB appears: in the target's cgroup (counted already) or elsewhere.
    a.ldx_dw(R1, R7, off(config::MODE));
    a.jne(R1, config::MODE_CGROUP as i32, appeared);
    a.ldx_dw(R1, R7, off(config::CGROUP_ID));
    a.jne(R9, R1, appeared);
    a.ldx_w(R1, R10, stack::PIDNS_TGID);
    a.ldx_dw(R2, R7, off(config::TARGET_TGID));
    a.jeq(R1, R2, out);
    a.bind(appeared);
    a.stx_dw(R8, off(renamed::CGROUP_ID), R9);
    a.ldx_w(R1, R10, stack::PIDNS_TGID);
    a.stx_dw(R8, off(renamed::TGID), R1);
    a.mov64(R1, 1);
    a.atomic_add64(R8, off(renamed::GENERATION), R1);
    a.ldx_dw(R1, R7, off(config::MODE));
    a.jne(R1, config::MODE_CGROUP as i32, out);
    a.ldx_dw(R1, R7, off(config::CGROUP_ID));
    a.jeq(R9, R1, out);
    a.st_dw(R7, off(config::MODE), config::MODE_COMM as i32);
    a.ja(out);

    // A task of another name: a stranger only in the target's cgroup, and not the target.
    a.bind(stranger);
    a.ldx_dw(R1, R7, off(config::MODE));
    a.jne(R1, config::MODE_CGROUP as i32, out);
    a.ldx_dw(R1, R7, off(config::CGROUP_ID));
    a.jne(R9, R1, out);
    a.ldx_w(R1, R10, stack::PIDNS_TGID);
    a.ldx_dw(R2, R7, off(config::TARGET_TGID));
    a.jeq(R1, R2, out);
    switch_to_comm(&mut a);

    a.bind(out);
    a.mov64(R0, 0);
    a.exit();
    Ok(a.finish()?)
}

/// `renamed->generation++; cfg->mode = COMM;` (r8 = the renamed record, r7 = &config): the
/// generation first, so a collector that re-programs the scope sees that it moved.
fn switch_to_comm(a: &mut Asm) {
    a.mov64(R1, 1);
    a.atomic_add64(R8, off(renamed::GENERATION), R1);
    a.st_dw(R7, off(config::MODE), config::MODE_COMM as i32);
}

/// The name of the rename hook's plan (`rename_hook`): it feeds no metric, it keeps
/// the scope on BanyanDB across restarts.
pub const RENAME_HOOK: &str = "ktm_follow";

/// The rename hook's plan: the raw tracepoint (no tracefs, no BTF), fentry on the function
/// it sits in, then kprobes there ([`KPROBES`]: kprobe_multi needs no perf event, so a
/// sidecar on a `perf_event_paranoid` 3 kernel without fentry keeps the hook); every one gives the task and the new name as the first
/// two arguments. `__set_task_comm` is exported and never inlined, so no self-test.
pub(super) fn rename_plan() -> Plan {
    const FUNC: &str = "__set_task_comm";
    Plan {
        name: RENAME_HOOK.into(),
        alternatives: vec![
            Alternative::new(AttachPoint::raw_tracepoint("task_rename"), || rename_hook(0, 8)),
            Alternative::new(AttachPoint::fentry(FUNC, false), || rename_hook(0, 8)),
        ]
        .into_iter()
        .chain(KPROBES.map(|k| {
            Alternative::new(k(FUNC, false), || {
                let (args, _) = kprobe_regs()?;
                rename_hook(args[0], args[1])
            })
        }))
        .collect(),
        exercise: None,
    }
}

/// The name of the join hook's plan (`join_hook`).
pub const JOIN_HOOK: &str = "ktm_follow_join";

/// The join hook's plan: the raw tracepoint `cgroup_attach_task` (after the move), else
/// fentry or kprobes ([`KPROBES`]) on `cgroup_attach_task` (before it); the destination cgroup is the
/// first argument of each.
pub(super) fn join_plan() -> Plan {
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

/// The join hook: a task moved into the programmed cgroup (`cgroup_attach_task(struct
/// cgroup *dst_cgrp, ...)`; the cgroup pointer at `cgroup_at` of the context) is a stranger
/// until it execs under BanyanDB's name: `runc exec`'s init joins the container's cgroup and
/// reads its bootstrap data before it execs the shell, and a restarted BanyanDB joins before
/// its exec too. Comm mode, at once; the rename hook takes over at the exec.
///
/// ```c
/// if (!cfg->watch || cfg->mode != CGROUP) return 0;
/// struct kernfs_node *kn; u64 id;
/// bpf_probe_read_kernel(&kn, 8, &dst_cgrp->kn);
/// bpf_probe_read_kernel(&id, 8, &kn->id);
/// if (id != cfg->cgroup_id) return 0;          // (another hierarchy's equal id: a harmless switch)
/// __sync_fetch_and_add(&renamed->generation, 1);
/// cfg->mode = COMM;
/// ```
pub(crate) fn join_hook(cgroup_at: i16, layout: CgroupIdLayout) -> Result<Program> {
    let mut a = Asm::new();
    let out = a.label("out");
    a.mov64(R6, R1);
    a.ld_map_value(R7, CONFIG, 0);
    a.ldx_dw(R1, R7, off(config::WATCH));
    a.jeq(R1, 0, out);
    a.ldx_dw(R1, R7, off(config::MODE));
    a.jne(R1, config::MODE_CGROUP as i32, out);
    probe_read_through(&mut a, out, R6, cgroup_at, layout.kn); // cgrp->kn
    probe_read_through(&mut a, out, R10, stack::READ_BUF, layout.id); // kn->id
    a.ldx_dw(R1, R10, stack::READ_BUF);
    a.ldx_dw(R2, R7, off(config::CGROUP_ID));
    a.jne(R1, R2, out);
    a.ld_map_value(R8, RENAMED, 0);
    switch_to_comm(&mut a);
    a.bind(out);
    a.mov64(R0, 0);
    a.exit();
    Ok(a.finish()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn assembles() {
        super::rename_hook(0, 8).unwrap();
        super::join_hook(0, super::CgroupIdLayout { kn: 256, id: 96 }).unwrap();
    }
}
