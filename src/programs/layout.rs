//! What the programs and the collector agree on: map names, counter lanes, the config record.
//!
//! All counters of the module live in one per-CPU array slot: a single map lookup per event,
//! no per-pid keys, and no cache line shared between CPUs.

use crate::insn::MapRef;

/// The config record (an array of one): scope mode and its parameters.
pub const CONFIG: MapRef = MapRef("ktm_config");
/// The counters (a per-CPU array of one).
pub const COUNTERS: MapRef = MapRef("ktm_counters");
/// read/pread start timestamps: one slot per `tid % START_SLOTS`, owned by the thread whose
/// id it holds. An array lookup is inlined by the verifier and needs no allocation, so the
/// common case costs a load and two stores instead of a hash update and delete.
pub const START_SLOT: MapRef = MapRef("ktm_io_slot");
/// Slots in [`START_SLOT`] (a power of two: the index is `tid & (START_SLOTS - 1)`).
pub const START_SLOTS: u32 = 4096;
/// Bytes per slot: 16 used, the rest keeps two threads' slots off one cache line wherever
/// the kernel places the array's values (64-byte slots were measured to share lines).
pub const START_SLOT_SIZE: usize = 128;
/// Slot words: the owning thread id (0 = free), its start time in ns, and the tag of the
/// call it entered.
pub mod slot {
    pub const TID: usize = 0;
    pub const TS: usize = 1;
    pub const TAG: usize = 2;
}
const _: () = assert!(START_SLOTS.is_power_of_two() && START_SLOT_SIZE >= 8 * (slot::TAG + 1));
/// Which call a start slot (or hash entry) belongs to. Raw `sys_exit` programs run at every
/// syscall's exit, and the read, pread and fadvise exits all run there: each takes only a
/// start its own enter stored.
pub mod tag {
    pub const READ: u32 = 1;
    pub const PREAD: u32 = 2;
    pub const FADVISE: u32 = 3;
}
/// Start timestamps keyed by `tag << 32 | thread id`, for a thread whose slot another thread
/// of the target holds at the same moment (two calls in flight whose thread ids collide).
pub const START: MapRef = MapRef("ktm_io_start");
/// Capacity of [`START`]: colliding threads of the target inside a read at the same time.
pub const START_ENTRIES: u32 = 4096;
/// How many start times [`START`] holds now (one u64): an exit whose slot is not its own
/// looks in the hash only when this is non-zero, so the exit programs need no scope test
/// (a neighbour's exit costs an inlined array load instead of a helper call).
pub const START_SPILLED: MapRef = MapRef("ktm_io_spilled");

/// The cgroup id learned from the target's first event in comm mode (an array of one u64):
/// a sidecar in its own cgroup namespace cannot see the target's cgroup directory, so the
/// kernel tells it the id instead (see `config::LEARN_TGID`).
pub const LEARNED: MapRef = MapRef("ktm_learned");

/// What the rename hook saw (an array of one [`Renamed`] record, written only by the
/// kernel): a BanyanDB that appeared in the pod, or a stranger that exec'd in the target's
/// cgroup. The collector re-discovers whenever the generation moved.
pub const RENAMED: MapRef = MapRef("ktm_renamed");
/// Words of the [`RENAMED`] record.
pub mod renamed {
    /// Bumped by every rename the hook acted on (before it switches the mode).
    pub const GENERATION: usize = 0;
    /// The cgroup id of the last task with the prefix that the hook saw.
    pub const CGROUP_ID: usize = 1;
    /// Its thread-group id in the config's pid namespace.
    pub const TGID: usize = 2;
    pub const WORDS: usize = 3;
}
/// The [`RENAMED`] record.
pub type Renamed = [u64; renamed::WORDS];

/// Config words (u64 each).
pub mod config {
    pub const MODE: usize = 0;
    pub const CGROUP_ID: usize = 1;
    pub const PREFIX_LO: usize = 2;
    pub const PREFIX_HI: usize = 3;
    pub const MASK_LO: usize = 4;
    pub const MASK_HI: usize = 5;
    /// The pid namespace (nsfs device in the kernel's encoding, and inode) whose tasks comm
    /// mode may count and whose thread-group ids `LEARN_TGID` is in; 0 = no pid namespace
    /// test.
    pub const PIDNS_DEV: usize = 6;
    pub const PIDNS_INO: usize = 7;
    /// Non-zero: in comm mode, a task outside `PIDNS_*` never counts (a BanyanDB of
    /// another pod has the same comm).
    pub const NARROW: usize = 8;
    /// Non-zero: the comm-mode event of this thread group (as numbered in `PIDNS_*`) stores
    /// its cgroup id in [`super::LEARNED`].
    pub const LEARN_TGID: usize = 9;
    /// Non-zero: the rename hook may act (comm mode is narrowed to the pod, so switching to
    /// it at once counts no other pod's BanyanDB). Its `PREFIX_*`, `MASK_*` and `PIDNS_*`
    /// are filled in cgroup mode too, for the switch.
    pub const WATCH: usize = 10;
    /// In cgroup mode: the target's thread-group id in `PIDNS_*`. Another task that execs
    /// in the programmed cgroup is a stranger (a shell exec'd into the container).
    pub const TARGET_TGID: usize = 11;
    pub const WORDS: usize = 12;

    /// Count nothing (no target known yet).
    pub const MODE_OFF: u64 = 0;
    /// Count iff the task's cgroup id equals `CGROUP_ID`.
    pub const MODE_CGROUP: u64 = 1;
    /// Count iff the task's comm starts with the prefix (`comm & MASK == PREFIX`).
    pub const MODE_COMM: u64 = 2;
}

/// The config record as stored in the map.
pub type ConfigRecord = [u64; config::WORDS];

/// Log2 latency slots: slot i holds [2^i, 2^(i+1)) ns (slot 0 also 0 ns); the last slot
/// holds everything from 2^36 ns (68.7 s) up and is exported only in `+Inf`.
pub const HIST_SLOTS: usize = crate::metrics::LOG2_NS_SLOTS;

/// A latency histogram's lanes: the sum of ns, then the slots. There is no count lane: the
/// count is the sum of the slots, which saves an atomic add on every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistLanes {
    pub base: usize,
}

impl HistLanes {
    pub const fn sum(self) -> usize {
        self.base
    }
    pub const fn slot0(self) -> usize {
        self.base + 1
    }
}

/// Counter lanes (u64 each) of the per-CPU counters value, as the metric catalogue assigns
/// them ([`crate::catalogue::Lanes`]).
pub mod lane {
    use super::HistLanes;
    use crate::catalogue as c;
    pub const CACHE_ATTEMPTS: usize = c::CACHE_READ_ATTEMPTS.lanes.base();
    pub const CACHE_MISSES: usize = c::CACHE_MISSES.lanes.base();
    pub const PAGE_CACHE_ADDS: usize = c::PAGE_CACHE_ADDS.lanes.base();
    pub const FADVISE_CALLS: usize = c::FADVISE_CALLS.lanes.base();
    pub const FADVISE_SUCCESS: usize = c::FADVISE_SUCCESS.lanes.base();
    /// Seven lanes: advice 0..=5 (normal .. noreuse), then "other".
    pub const FADVISE_ADVICE: usize = c::FADVISE_ADVICE.lanes.base();
    pub const FADVISE_ADVICE_LANES: usize = c::FADVISE_ADVICE.lane_count();
    pub const LRU_SCANNED: usize = c::MEMORY_LRU_PAGES_SCANNED.lanes.base();
    pub const LRU_RECLAIMED: usize = c::MEMORY_LRU_PAGES_RECLAIMED.lanes.base();
    pub const DIRECT_RECLAIM: usize = c::MEMORY_DIRECT_RECLAIM_BEGIN.lanes.base();
    pub const READ: HistLanes = HistLanes { base: c::SYS_READ_LATENCY.lanes.base() };
    pub const PREAD: HistLanes = HistLanes { base: c::SYS_PREAD_LATENCY.lanes.base() };
    /// Pages removed from the page cache while a target task ran.
    pub const PAGE_CACHE_DELETES: usize = c::PAGE_CACHE_DELETES.lanes.base();
    /// Bytes returned by read(2) and pread64(2) (positive returns only).
    pub const READ_BYTES: usize = c::SYS_READ_BYTES.lanes.base();
    pub const PREAD_BYTES: usize = c::SYS_PREAD_BYTES.lanes.base();
    pub const LANES: usize = c::LANES;
}

/// The counters value.
pub type Counters = [u64; lane::LANES];

/// The module's maps: the one definition both the loader and the ELF writer use.
pub fn map_defs() -> [crate::maps::MapDef; 7] {
    use crate::maps::MapDef;
    use crate::sys::bpf::MapType;
    use std::mem::size_of;
    let def = |name, map_type, value_size: usize, max_entries| MapDef {
        name,
        map_type,
        key_size: if name == START { size_of::<u64>() } else { size_of::<u32>() } as u32,
        value_size: value_size as u32,
        max_entries,
        flags: 0,
    };
    [
        def(CONFIG, MapType::Array, size_of::<ConfigRecord>(), 1),
        def(COUNTERS, MapType::PercpuArray, size_of::<Counters>(), 1),
        def(START_SLOT, MapType::Array, START_SLOT_SIZE, START_SLOTS),
        def(START, MapType::Hash, size_of::<u64>(), START_ENTRIES),
        def(START_SPILLED, MapType::Array, size_of::<u64>(), 1),
        def(LEARNED, MapType::Array, size_of::<u64>(), 1),
        def(RENAMED, MapType::Array, size_of::<Renamed>(), 1),
    ]
}

/// Encodes a comm prefix as the two masked words the programs compare.
pub fn comm_words(prefix: &str) -> ([u64; 2], [u64; 2]) {
    let mut bytes = [0u8; 16];
    let mut mask = [0u8; 16];
    for (i, b) in prefix.bytes().take(15).enumerate() {
        bytes[i] = b;
        mask[i] = 0xff;
    }
    let w = |b: &[u8; 16], i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(x)
    };
    ([w(&bytes, 0), w(&bytes, 1)], [w(&mask, 0), w(&mask, 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_do_not_overlap() {
        assert_eq!(lane::FADVISE_ADVICE + lane::FADVISE_ADVICE_LANES, lane::LRU_SCANNED);
        assert_eq!(lane::READ.slot0() + HIST_SLOTS, lane::PREAD.base);
        assert_eq!(lane::PREAD.slot0() + HIST_SLOTS, lane::PAGE_CACHE_DELETES);
        assert_eq!(lane::PAGE_CACHE_DELETES + 1, lane::READ_BYTES);
        assert_eq!(lane::READ_BYTES + 1, lane::PREAD_BYTES);
        assert_eq!(lane::PREAD_BYTES + 1, lane::LANES);
    }

    #[test]
    fn comm_prefix_words() {
        let (p, m) = comm_words("banyand");
        assert_eq!(p[0].to_ne_bytes(), *b"banyand\0");
        assert_eq!(m[0].to_ne_bytes(), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        assert_eq!((p[1], m[1]), (0, 0));
    }
}
