//! Reclaim the target's own threads run: inactive-LRU pages scanned and reclaimed, entries
//! into direct reclaim.

use super::emit::{add_reg, counters, program};
use super::layout::lane;
use super::plan::{counting, tp_field};
use crate::attach::{Alternative, AttachPoint, Plan};
use crate::insn::{Asm, Label, Program, R2, R6};
use crate::Result;

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

/// Inactive-LRU shrinks: the raw tracepoint (arguments at fixed places), then the classic one
/// (fields at the offsets its format gives).
pub(super) fn lru_shrink_plan() -> Plan {
    Plan {
        name: "ktm_lru_shrink".into(),
        alternatives: vec![
            // TP_PROTO(int nid, unsigned long nr_scanned, unsigned long nr_reclaimed, ...)
            Alternative::new(AttachPoint::raw_tracepoint("mm_vmscan_lru_shrink_inactive"), lru_shrink(|| Ok((8, 16)))),
            Alternative::new(
                AttachPoint::tracepoint("vmscan", "mm_vmscan_lru_shrink_inactive"),
                lru_shrink(|| {
                    let f = |n| tp_field("vmscan", "mm_vmscan_lru_shrink_inactive", n);
                    Ok((f("nr_scanned")?, f("nr_reclaimed")?))
                }),
            ),
        ],
        exercise: None,
    }
}

/// Entries into direct reclaim: one per event, raw tracepoint first.
pub(super) fn direct_reclaim_plan() -> Plan {
    Plan {
        name: "ktm_direct_recl".into(),
        alternatives: vec![
            counting(AttachPoint::raw_tracepoint("mm_vmscan_direct_reclaim_begin"), lane::DIRECT_RECLAIM),
            counting(AttachPoint::tracepoint("vmscan", "mm_vmscan_direct_reclaim_begin"), lane::DIRECT_RECLAIM),
        ],
        exercise: None,
    }
}
