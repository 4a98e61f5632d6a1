//! The snapshot as the metrics the iomonitor exports, each named, described and typed by its
//! catalogue entry ([`crate::catalogue`]).

use super::monitor::{Latency, Snapshot};
use crate::catalogue as c;
use crate::metrics::{Histogram, Metric};

impl Snapshot {
    /// The snapshot as the design's metrics, in the catalogue's iomonitor order
    /// ([`c::IOMONITOR`]), the advice counter once per advice.
    pub fn metrics(&self) -> Vec<Metric> {
        let s = self;
        let mut out = vec![
            c::CACHE_READ_ATTEMPTS.counter(s.cache_read_attempts),
            c::CACHE_MISSES.counter(s.cache_misses),
            c::PAGE_CACHE_ADDS.counter(s.page_cache_adds),
            c::PAGE_CACHE_DELETES.counter(s.page_cache_deletes),
            c::SYS_READ_BYTES.counter(s.read_bytes),
            c::SYS_PREAD_BYTES.counter(s.pread_bytes),
            c::FADVISE_CALLS.counter(s.fadvise_calls),
            c::FADVISE_SUCCESS.counter(s.fadvise_success),
            c::MEMORY_LRU_PAGES_SCANNED.counter(s.lru_scanned),
            c::MEMORY_LRU_PAGES_RECLAIMED.counter(s.lru_reclaimed),
            c::MEMORY_DIRECT_RECLAIM_BEGIN.counter(s.direct_reclaim),
        ];
        for (label, v) in c::ADVICE.values.iter().zip(s.fadvise_advice) {
            out.push(c::FADVISE_ADVICE.counter(v).with_label(c::ADVICE.name, label));
        }
        out.push(c::SYS_READ_LATENCY.histogram(histogram(&s.read)));
        out.push(c::SYS_PREAD_LATENCY.histogram(histogram(&s.pread)));
        out
    }
}

/// Log2 slots as a Prometheus histogram (true upper bounds; the last slot only in `+Inf`).
fn histogram(l: &Latency) -> Histogram {
    Histogram::from_log2_ns(&l.slots, l.sum_ns)
}
