//! Every iomonitor probe: what it feeds and its attach plan, preferred mechanism first.
//!
//! Each alternative of a plan measures the same thing; where a mechanism would change a
//! metric's meaning it is left out of the plan, and a kernel with no alternative left
//! reports the metric unavailable.

use super::exercise;
use super::layout::{lane, tag};
use super::plan::counting_calls;
use super::{arch, fadvise, follow, latency, page_cache, reclaim};
use crate::attach::{Exercise, Plan};
use crate::catalogue::{self as metric, MetricDef};

/// A probe: its plan and the metrics it feeds (catalogue entries, so a misspelt metric does
/// not compile).
#[derive(Debug)]
pub struct Probe {
    pub plan: Plan,
    pub metrics: &'static [&'static MetricDef],
}

impl Probe {
    /// The exported names of the metrics it feeds.
    pub fn metric_names(&self) -> Vec<&'static str> {
        self.metrics.iter().map(|m| m.name).collect()
    }
}

/// The iomonitor's probes.
pub fn probes() -> Vec<Probe> {
    vec![
        Probe {
            plan: latency::plan(
                "ktm_read",
                "read",
                arch::nr::READ,
                lane::READ,
                tag::READ,
                lane::READ_BYTES,
                Exercise::new("read", exercise::read),
            ),
            metrics: &[&metric::SYS_READ_LATENCY, &metric::SYS_READ_BYTES],
        },
        Probe {
            plan: latency::plan(
                "ktm_pread",
                "pread64",
                arch::nr::PREAD64,
                lane::PREAD,
                tag::PREAD,
                lane::PREAD_BYTES,
                Exercise::new("pread", exercise::pread),
            ),
            metrics: &[&metric::SYS_PREAD_LATENCY, &metric::SYS_PREAD_BYTES],
        },
        Probe {
            plan: fadvise::plan(),
            metrics: &[&metric::FADVISE_CALLS, &metric::FADVISE_ADVICE, &metric::FADVISE_SUCCESS],
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
            metrics: &[&metric::CACHE_READ_ATTEMPTS],
        },
        Probe {
            plan: counting_calls(
                "ktm_cache_miss",
                "page_cache_sync_ra",
                ("readahead", "page_cache_sync_ra"),
                lane::CACHE_MISSES,
                Exercise::new("cold_read", exercise::cold_read),
            ),
            metrics: &[&metric::CACHE_MISSES],
        },
        Probe {
            plan: page_cache::plan("ktm_cache_add", "mm_filemap_add_to_page_cache", lane::PAGE_CACHE_ADDS),
            metrics: &[&metric::PAGE_CACHE_ADDS],
        },
        Probe {
            // Fires in the task that removes the folio: truncation, invalidation (fadvise
            // DONTNEED) and reclaim alike; only the target's own count (README).
            plan: page_cache::plan("ktm_cache_del", "mm_filemap_delete_from_page_cache", lane::PAGE_CACHE_DELETES),
            metrics: &[&metric::PAGE_CACHE_DELETES],
        },
        Probe {
            plan: reclaim::lru_shrink_plan(),
            metrics: &[&metric::MEMORY_LRU_PAGES_SCANNED, &metric::MEMORY_LRU_PAGES_RECLAIMED],
        },
        Probe { plan: reclaim::direct_reclaim_plan(), metrics: &[&metric::MEMORY_DIRECT_RECLAIM_BEGIN] },
        Probe { plan: follow::rename_plan(), metrics: &[] },
        Probe { plan: follow::join_plan(), metrics: &[] },
    ]
}
