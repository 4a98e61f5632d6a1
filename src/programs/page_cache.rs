//! Pages added to and removed from the page cache by the target: one per event, or 2^order
//! for a large folio.

use super::emit::{add_imm, add_reg, counters, program};
use super::plan::read_through;
use crate::attach::{tracepoint_field, Alternative, AttachPoint, Plan};
use crate::insn::{Asm, Program, R1, R2, R6};
use crate::Result;

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
pub(super) fn plan(name: &str, event: &'static str, lane: usize) -> Plan {
    Plan {
        name: name.into(),
        alternatives: vec![
            Alternative::new(AttachPoint::tracepoint("filemap", event), page_cache_pages(event, lane)),
            Alternative::new(AttachPoint::raw_tracepoint(event), page_cache_pages_raw(lane)),
        ],
        exercise: None,
    }
}
