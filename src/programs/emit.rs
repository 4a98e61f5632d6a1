//! Snippets every iomonitor program shares.
//!
//! Register use across all programs: r6 = ctx, r7 = &config (in the scope test), then the
//! thread id; r8 = this CPU's counters or the start slot; r9 = a value kept across helper
//! calls. Stack: [-16, 0) comm, -20 counters key, -24 thread id key, -32 timestamp, -40
//! start slot index.

use super::layout::{
    config, lane, slot, HistLanes, CONFIG, COUNTERS, HIST_SLOTS, START, START_SLOT, START_SLOTS, START_SPILLED,
};
use crate::insn::{Asm, Helper, Label, Program, Reg, R0, R1, R10, R2, R3, R4, R6, R7, R8, R9};
use crate::Result;

/// Builds `prologue; body; out: return 0`.
///
/// `pre` runs first with r6 = ctx (for a test cheaper than the scope test, such as a syscall
/// number); then the scope test; then `body`. Any `goto out` ends the program.
pub(crate) fn program(pre: impl FnOnce(&mut Asm, Label), body: impl FnOnce(&mut Asm, Label)) -> Result<Program> {
    unscoped(|a, out| {
        pre(a, out);
        scope(a, out);
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
/// in cgroup mode; comm mode costs a `bpf_get_current_comm` and two masked compares.
fn scope(a: &mut Asm, out: Label) {
    let comm = a.label("comm_mode");
    let pass = a.label("in_scope");
    a.ld_map_value(R7, CONFIG, 0);
    a.ldx_dw(R1, R7, off(config::MODE));
    a.jne(R1, config::MODE_CGROUP as i32, comm);
    a.call(Helper::GetCurrentCgroupId);
    a.ldx_dw(R1, R7, off(config::CGROUP_ID));
    a.jne(R0, R1, out);
    a.ja(pass);

    a.bind(comm);
    a.jne(R1, config::MODE_COMM as i32, out);
    a.mov64(R1, R10);
    a.add64(R1, -16);
    a.mov64(R2, 16);
    a.call(Helper::GetCurrentComm);
    for (word, prefix, mask) in [(-16, config::PREFIX_LO, config::MASK_LO), (-8, config::PREFIX_HI, config::MASK_HI)] {
        a.ldx_dw(R1, R10, word);
        a.ldx_dw(R2, R7, off(mask));
        a.and64(R1, R2);
        a.ldx_dw(R2, R7, off(prefix));
        a.jne(R1, R2, out);
    }
    a.bind(pass);
}

/// Byte offset of a u64 word or lane.
pub(crate) fn off(word: usize) -> i16 {
    (word * 8) as i16
}

/// r8 = this CPU's counters, or `goto out`.
pub(crate) fn counters(a: &mut Asm, out: Label) {
    a.st_w(R10, -20, 0);
    a.map_call(Helper::MapLookupElem, COUNTERS, -20);
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
    a.stx_w(R10, -40, R1);
    a.map_call(Helper::MapLookupElem, START_SLOT, -40);
    a.jeq(R0, 0, out);
}

/// Records `bpf_ktime_get_ns()` as the current thread's start time.
///
/// ```c
/// u32 tid = bpf_get_current_pid_tgid();
/// struct slot *s = &slots[tid % START_SLOTS];
/// if (s->tid == 0 || s->tid == tid) { s->ts = bpf_ktime_get_ns(); s->tid = tid; }
/// else { u64 ts = bpf_ktime_get_ns();
///        if (bpf_map_update_elem(&start, &tid, &ts, BPF_ANY) == 0) __sync_fetch_and_add(&spilled, 1); }
/// ```
///
/// A slot another thread holds is left alone: that thread is inside a read too, and the
/// hash keeps this one's time. Two threads claiming one free slot at the same instant can
/// still both write it; the loser's exit then finds neither and drops that one sample.
pub(crate) fn latency_enter(a: &mut Asm, out: Label) {
    let claim = a.label("claim_slot");
    a.call(Helper::GetCurrentPidTgid);
    a.mov32(R7, R0);
    start_slot(a, out);
    a.mov64(R8, R0);
    a.ldx_dw(R1, R8, off(slot::TID));
    a.jeq(R1, 0, claim);
    a.jeq(R1, R7, claim);

    a.stx_w(R10, -24, R7);
    a.call(Helper::KtimeGetNs);
    a.stx_dw(R10, -32, R0);
    a.mov64(R3, R10);
    a.add64(R3, -32);
    a.mov64(R4, 0);
    a.map_call(Helper::MapUpdateElem, START, -24);
    a.jne(R0, 0, out);
    spilled_add(a, 1);
    a.ja(out);

    a.bind(claim);
    a.call(Helper::KtimeGetNs);
    a.stx_dw(R8, off(slot::TS), R0);
    a.stx_dw(R8, off(slot::TID), R7);
}

/// `spilled += n`.
fn spilled_add(a: &mut Asm, n: i32) {
    a.ld_map_value(R1, START_SPILLED, 0);
    a.mov64(R2, n);
    a.atomic_add64(R1, 0, R2);
}

/// Takes the current thread's start time (from its slot, else from the hash) and records
/// the elapsed time. Runs without the scope test: only a target thread's enter stores a
/// start time, so a neighbour leaves at the slot compare (and the spilled count).
///
/// ```c
/// u32 tid = bpf_get_current_pid_tgid();
/// struct slot *s = &slots[tid % START_SLOTS];
/// if (s->tid == tid) { start = s->ts; s->tid = 0; }
/// else if (spilled && (p = bpf_map_lookup_elem(&start, &tid))) {
///     start = *p;
///     if (bpf_map_delete_elem(&start, &tid) == 0) __sync_fetch_and_add(&spilled, -1);
/// } else return 0;
/// record(h, bpf_ktime_get_ns() - start);
/// ```
pub(crate) fn latency_exit(a: &mut Asm, out: Label, h: HistLanes) {
    let from_hash = a.label("start_in_hash");
    let have = a.label("have_start");
    a.call(Helper::GetCurrentPidTgid);
    a.mov32(R7, R0);
    start_slot(a, out);
    a.ldx_dw(R1, R0, off(slot::TID));
    a.jne(R1, R7, from_hash);
    a.ldx_dw(R9, R0, off(slot::TS));
    a.st_dw(R0, off(slot::TID), 0);
    a.ja(have);

    a.bind(from_hash);
    a.ld_map_value(R1, START_SPILLED, 0);
    a.ldx_dw(R1, R1, 0);
    a.jeq(R1, 0, out);
    a.stx_w(R10, -24, R7);
    a.map_call(Helper::MapLookupElem, START, -24);
    a.jeq(R0, 0, out);
    a.ldx_dw(R9, R0, 0);
    a.map_call(Helper::MapDeleteElem, START, -24);
    a.jne(R0, 0, have);
    spilled_add(a, -1);

    a.bind(have);
    a.call(Helper::KtimeGetNs);
    a.sub64(R0, R9);
    a.mov64(R9, R0);
    counters(a, out);
    record_latency(a, h);
}

/// The fadvise advice in r1 (any int) counted in its lane, "other" beyond noreuse.
pub(crate) fn count_advice(a: &mut Asm) {
    a.mov32(R1, R1); // the advice is an int: only the low 32 bits mean anything
    add_indexed(a, lane::FADVISE_ADVICE, lane::FADVISE_ADVICE_LANES as i32 - 1);
}

/// No test before the scope test.
pub(crate) fn no_pre(_: &mut Asm, _: Label) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snippet_assembles() {
        program(no_pre, |a, out| {
            latency_enter(a, out);
            latency_exit(a, out, lane::READ);
            a.mov64(R1, 3);
            count_advice(a);
        })
        .unwrap();
        let _ = R6;
    }
}
