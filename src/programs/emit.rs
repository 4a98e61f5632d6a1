//! Snippets every iomonitor program shares.
//!
//! Register use across all programs: r6 = ctx, r7 = &config (in the scope test), then the
//! thread id; r8 = this CPU's counters or the start slot; r9 = a value kept across helper
//! calls. Stack slots are named in [`stack`].

use super::current::TaskCgroup;
use super::layout::{
    config, lane, slot, HistLanes, CONFIG, COUNTERS, HIST_SLOTS, LEARNED, START, START_SLOT, START_SLOTS, START_SPILLED,
};
use crate::insn::{Asm, Helper, Label, Program, Reg, R0, R1, R10, R2, R3, R4, R6, R7, R8, R9};
use crate::Result;

/// The programs' stack frame: offsets from r10, each slot used by one snippet.
pub(crate) mod stack {
    /// `char comm[16]` of the scope test.
    pub const COMM: i16 = -16;
    /// `struct bpf_pidns_info { u32 pid, tgid; }` of the scope test.
    pub const PIDNS_INFO: i16 = -24;
    /// Its `tgid` field.
    pub const PIDNS_TGID: i16 = PIDNS_INFO + 4;
    /// `u32` key of the counters lookup.
    pub const COUNTERS_KEY: i16 = -28;
    /// `u32` index of the start slot lookup.
    pub const SLOT_INDEX: i16 = -32;
    /// `u64` key of the start-time hash: `tag << 32 | tid`.
    pub const START_KEY: i16 = -40;
    /// `u64` start time stored into the hash.
    pub const TIMESTAMP: i16 = -48;
    /// `u64` read from kernel memory by `bpf_probe_read_kernel`.
    pub const READ_BUF: i16 = -56;
}

/// Builds `prologue; scope test; body; out: return 0`. Any `goto out` ends the program.
pub(crate) fn program(body: impl FnOnce(&mut Asm, Label)) -> Result<Program> {
    program_after(|_, _| {}, body)
}

/// As [`program`], for a BTF-typed program (fentry, fexit): the scope test reads the cgroup
/// id through the current task's BTF-typed pointers where the kernel allows it
/// ([`TaskCgroup`]), else with the helper.
pub(crate) fn tracing_program(body: impl FnOnce(&mut Asm, Label)) -> Result<Program> {
    let read = TaskCgroup::from_kernel().map_or(CgroupRead::Helper, CgroupRead::Btf);
    unscoped(|a, out| {
        scope(a, out, read);
        body(a, out);
    })
}

/// How the scope test reads the current task's cgroup id.
#[derive(Clone, Copy, Debug)]
enum CgroupRead {
    /// `bpf_get_current_cgroup_id()`: every program type.
    Helper,
    /// Through `bpf_get_current_task_btf()`: BTF-typed programs only.
    Btf(TaskCgroup),
}

/// As [`program`], with `test` first (r6 = ctx): a test cheaper than the scope test that
/// most events fail, such as a raw `sys_enter`'s syscall number.
pub(crate) fn program_after(test: impl FnOnce(&mut Asm, Label), body: impl FnOnce(&mut Asm, Label)) -> Result<Program> {
    unscoped(|a, out| {
        test(a, out);
        scope(a, out, CgroupRead::Helper);
        body(a, out);
    })
}

/// Builds `prologue; body; out: return 0` without the scope test, for a body that finds
/// its own state keyed by thread (the exit half of a latency pair).
pub(crate) fn unscoped(body: impl FnOnce(&mut Asm, Label)) -> Result<Program> {
    let mut a = Asm::new();
    let out = a.label("out");
    a.mov64(R6, R1);
    body(&mut a, out);
    a.bind(out);
    a.mov64(R0, 0);
    a.exit();
    Ok(a.finish()?)
}

/// The scoping prelude: leaves unless the current task is the target.
///
/// One load and compare pick the mode, so a neighbour pays one helper call and one compare
/// in cgroup mode; comm mode costs a `bpf_get_current_comm` and two masked compares. Only a
/// task whose comm matches goes on to the pid namespace test (one more helper), so a
/// neighbour of another name pays nothing for it.
///
/// ```c
/// if (cfg->mode == CGROUP) { if (bpf_get_current_cgroup_id() != cfg->cgroup_id) return 0; }
/// else if (cfg->mode == COMM) {
///     if (!comm_has_prefix(cfg)) return 0;
///     if (cfg->pidns_ino) {
///         struct bpf_pidns_info ns;
///         if (bpf_get_ns_current_pid_tgid(cfg->pidns_dev, cfg->pidns_ino, &ns, sizeof(ns))) {
///             if (cfg->narrow) return 0;
///         } else if (ns.tgid == cfg->learn_tgid) learned = bpf_get_current_cgroup_id();
///     }
/// } else return 0;
/// ```
fn scope(a: &mut Asm, out: Label, read: CgroupRead) {
    let comm = a.label("comm_mode");
    let pass = a.label("in_scope");
    a.ld_map_value(R7, CONFIG, 0);
    a.ldx_dw(R1, R7, off(config::MODE));
    a.jne(R1, config::MODE_CGROUP as i32, comm);
    match read {
        CgroupRead::Helper => {
            a.call(Helper::GetCurrentCgroupId);
        }
        CgroupRead::Btf(layout) => layout.load_id(a, R0),
    }
    a.ldx_dw(R1, R7, off(config::CGROUP_ID));
    a.jne(R0, R1, out);
    a.ja(pass);

    a.bind(comm);
    a.jne(R1, config::MODE_COMM as i32, out);
    a.stack_addr(R1, stack::COMM);
    a.mov64(R2, 16);
    a.call(Helper::GetCurrentComm);
    comm_has_prefix(a, out);
    pid_namespace(a, out, pass);
    a.bind(pass);
}

/// `goto mismatch` unless the comm at [`stack::COMM`] starts with the config's prefix (r7 =
/// &config): two masked 8-byte compares, no loop.
pub(crate) fn comm_has_prefix(a: &mut Asm, mismatch: Label) {
    for (word, prefix, mask) in
        [(stack::COMM, config::PREFIX_LO, config::MASK_LO), (stack::COMM + 8, config::PREFIX_HI, config::MASK_HI)]
    {
        a.ldx_dw(R1, R10, word);
        a.ldx_dw(R2, R7, off(mask));
        a.and64(R1, R2);
        a.ldx_dw(R2, R7, off(prefix));
        a.jne(R1, R2, mismatch);
    }
}

/// The pid namespace half of comm mode (see [`scope`]); falls through to `pass`.
fn pid_namespace(a: &mut Asm, out: Label, pass: Label) {
    let outside = a.label("outside_pidns");
    a.ldx_dw(R2, R7, off(config::PIDNS_INO));
    a.jeq(R2, 0, pass);
    a.ldx_dw(R1, R7, off(config::PIDNS_DEV));
    a.stack_addr(R3, stack::PIDNS_INFO);
    a.mov64(R4, 8);
    a.call(Helper::GetNsCurrentPidTgid);
    a.jne(R0, 0, outside);
    a.ldx_w(R1, R10, stack::PIDNS_TGID);
    a.ldx_dw(R2, R7, off(config::LEARN_TGID));
    a.jne(R1, R2, pass);
    a.call(Helper::GetCurrentCgroupId);
    a.ld_map_value(R1, LEARNED, 0);
    a.stx_dw(R1, 0, R0);
    a.ja(pass);

    a.bind(outside);
    a.ldx_dw(R1, R7, off(config::NARROW));
    a.jne(R1, 0, out);
}

/// Byte offset of a u64 word or lane.
pub(crate) fn off(word: usize) -> i16 {
    (word * 8) as i16
}

/// r8 = this CPU's counters, or `goto out`.
pub(crate) fn counters(a: &mut Asm, out: Label) {
    a.st_w(R10, stack::COUNTERS_KEY, 0);
    a.map_call(Helper::MapLookupElem, COUNTERS, stack::COUNTERS_KEY);
    a.jeq(R0, 0, out);
    a.mov64(R8, R0);
}

/// `counters[lane] += n`. Atomic although the slot is per-CPU: a preemptible tracepoint can
/// be interrupted by the same program on the same CPU, and a lost update is a wrong count.
pub(crate) fn add_imm(a: &mut Asm, lane: usize, n: i32) {
    a.mov64(R1, n);
    a.atomic_add64(R8, off(lane), R1);
}

/// `counters[lane] += reg` (reg must not be r1).
pub(crate) fn add_reg(a: &mut Asm, lane: usize, reg: Reg) {
    a.atomic_add64(R8, off(lane), reg);
}

/// `counters[base + min(index, limit)]++` with `index` in r1: bounded so the verifier can
/// prove the access stays inside the counters value.
pub(crate) fn add_indexed(a: &mut Asm, base: usize, limit: i32) {
    let ok = a.label("index_ok");
    a.jle(R1, limit, ok);
    a.mov64(R1, limit);
    a.bind(ok);
    a.lsh64(R1, 3);
    a.add64(R1, R8);
    a.mov64(R2, 1);
    a.atomic_add64(R1, off(base), R2);
}

/// Records the latency in r9 (ns) into histogram `h`: its sum and its log2 slot.
pub(crate) fn record_latency(a: &mut Asm, h: HistLanes) {
    add_reg(a, h.sum(), R9);
    // r1 = floor(log2(r9)) (0 for 0), by halving the search range six times.
    a.mov64(R1, 0);
    a.mov64(R2, R9);
    for shift in [32, 16, 8, 4, 2, 1] {
        let skip = a.label("log2_skip");
        a.mov64(R3, R2);
        a.rsh64(R3, shift);
        a.jeq(R3, 0, skip);
        a.mov64(R2, R3);
        a.add64(R1, shift);
        a.bind(skip);
    }
    add_indexed(a, h.slot0(), HIST_SLOTS as i32 - 1);
}

/// r0 = the start-time slot of thread r7, or `goto out` (never taken: the index is masked).
fn start_slot(a: &mut Asm, out: Label) {
    a.mov64(R1, R7);
    a.and64(R1, START_SLOTS as i32 - 1);
    a.stx_w(R10, stack::SLOT_INDEX, R1);
    a.map_call(Helper::MapLookupElem, START_SLOT, stack::SLOT_INDEX);
    a.jeq(R0, 0, out);
}

/// Records `bpf_ktime_get_ns()` as the current thread's start time of call `tag`.
///
/// ```c
/// u32 tid = bpf_get_current_pid_tgid();
/// struct slot *s = &slots[tid % START_SLOTS];
/// if (s->tid == 0 || s->tid == tid) { s->ts = bpf_ktime_get_ns(); s->tag = tag; s->tid = tid; }
/// else { u64 key = (u64)tag << 32 | tid, ts = bpf_ktime_get_ns();
///        if (bpf_map_update_elem(&start, &key, &ts, BPF_ANY) == 0) __sync_fetch_and_add(&spilled, 1); }
/// ```
///
/// A slot another thread holds is left alone: that thread is inside a call too, and the
/// hash keeps this one's time. Two threads claiming one free slot at the same instant can
/// still both write it; the loser's exit then finds neither and drops that one sample.
pub(crate) fn latency_enter(a: &mut Asm, out: Label, tag: u32) {
    let claim = a.label("claim_slot");
    a.call(Helper::GetCurrentPidTgid);
    a.mov32(R7, R0);
    start_slot(a, out);
    a.mov64(R8, R0);
    a.ldx_dw(R1, R8, off(slot::TID));
    a.jeq(R1, 0, claim);
    a.jeq(R1, R7, claim);

    start_key(a, tag);
    a.call(Helper::KtimeGetNs);
    a.stx_dw(R10, stack::TIMESTAMP, R0);
    a.stack_addr(R3, stack::TIMESTAMP);
    a.mov64(R4, 0);
    a.map_call(Helper::MapUpdateElem, START, stack::START_KEY);
    a.jne(R0, 0, out);
    spilled_add(a, 1);
    a.ja(out);

    a.bind(claim);
    a.call(Helper::KtimeGetNs);
    a.stx_dw(R8, off(slot::TS), R0);
    a.st_dw(R8, off(slot::TAG), tag as i32);
    a.stx_dw(R8, off(slot::TID), R7);
}

/// The hash key of thread r7's call `tag` at [`stack::START_KEY`].
fn start_key(a: &mut Asm, tag: u32) {
    a.mov64(R1, tag as i32);
    a.lsh64(R1, 32);
    a.or64(R1, R7);
    a.stx_dw(R10, stack::START_KEY, R1);
}

/// `spilled += n`.
fn spilled_add(a: &mut Asm, n: i32) {
    a.ld_map_value(R1, START_SPILLED, 0);
    a.mov64(R2, n);
    a.atomic_add64(R1, 0, R2);
}

/// Takes the current thread's start time of call `tag` into r9 (from its slot, else from
/// the hash), or `goto out` when it has none. Runs without the scope test: only a target
/// thread's enter stores a start time, so a neighbour leaves at the slot compare (and the
/// spilled count).
///
/// ```c
/// u32 tid = bpf_get_current_pid_tgid();
/// struct slot *s = &slots[tid % START_SLOTS];
/// if (s->tid == tid && s->tag == tag) { start = s->ts; s->tid = 0; }
/// else if (spilled && (p = bpf_map_lookup_elem(&start, &key))) {  // key = tag << 32 | tid
///     start = *p;
///     if (bpf_map_delete_elem(&start, &key) == 0) __sync_fetch_and_add(&spilled, -1);
/// } else return 0;
/// ```
pub(crate) fn take_start(a: &mut Asm, out: Label, tag: u32) {
    let from_hash = a.label("start_in_hash");
    let have = a.label("have_start");
    a.call(Helper::GetCurrentPidTgid);
    a.mov32(R7, R0);
    start_slot(a, out);
    a.ldx_dw(R1, R0, off(slot::TID));
    a.jne(R1, R7, from_hash);
    a.ldx_dw(R1, R0, off(slot::TAG));
    a.jne(R1, tag as i32, from_hash);
    a.ldx_dw(R9, R0, off(slot::TS));
    a.st_dw(R0, off(slot::TID), 0);
    a.ja(have);

    a.bind(from_hash);
    a.ld_map_value(R1, START_SPILLED, 0);
    a.ldx_dw(R1, R1, 0);
    a.jeq(R1, 0, out);
    start_key(a, tag);
    a.map_call(Helper::MapLookupElem, START, stack::START_KEY);
    a.jeq(R0, 0, out);
    a.ldx_dw(R9, R0, 0);
    a.map_call(Helper::MapDeleteElem, START, stack::START_KEY);
    a.jne(R0, 0, have);
    spilled_add(a, -1);

    a.bind(have);
}

/// Takes the start time of call `tag` ([`take_start`]) and records the elapsed time in
/// histogram `h`.
pub(crate) fn latency_exit(a: &mut Asm, out: Label, h: HistLanes, tag: u32) {
    take_start(a, out, tag);
    a.call(Helper::KtimeGetNs);
    a.sub64(R0, R9);
    a.mov64(R9, R0);
    counters(a, out);
    record_latency(a, h);
}

/// Adds a syscall's return value to `lane` when it is positive (bytes transferred; an error
/// or end of file adds nothing). `ret_at` is where the mechanism's context keeps the return
/// value; r6 = ctx, r8 = this CPU's counters.
///
/// ```c
/// long ret = *(long *)((char *)ctx + ret_at);
/// if (ret > 0) __sync_fetch_and_add(&counters[lane], ret);
/// ```
pub(crate) fn add_positive_ret(a: &mut Asm, out: Label, lane: usize, ret_at: i16) {
    a.ldx_dw(R2, R6, ret_at);
    a.jsle(R2, 0, out);
    add_reg(a, lane, R2);
}

/// The fadvise advice in r1 (any int) counted in its lane, "other" beyond noreuse.
pub(crate) fn count_advice(a: &mut Asm) {
    a.mov32(R1, R1); // the advice is an int: only the low 32 bits mean anything
    add_indexed(a, lane::FADVISE_ADVICE, lane::FADVISE_ADVICE_LANES as i32 - 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snippet_assembles() {
        program(|a, out| {
            latency_enter(a, out, super::super::layout::tag::READ);
            latency_exit(a, out, lane::READ, super::super::layout::tag::READ);
            add_positive_ret(a, out, lane::READ_BYTES, 8);
            a.mov64(R1, 3);
            count_advice(a);
        })
        .unwrap();
        // The scope test of a BTF-typed program, with a made-up layout.
        let layout = TaskCgroup { cgroups: 2000, dfl_cgrp: 80, kn: 256, id: 96 };
        unscoped(|a, out| scope(a, out, CgroupRead::Btf(layout))).unwrap();
    }
}
