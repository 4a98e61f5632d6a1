//! BPF maps with typed keys and values.
//!
//! A map is an [`OwnedFd`]: dropping the last handle (and every program using it) frees it
//! in the kernel. Keys and values are [`Pod`] types copied byte for byte, as the kernel does.

mod pod;

pub use pod::Pod;

use crate::insn::MapRef;
use crate::sys::bpf::{self, MapType};
use crate::sys::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use crate::{Error, Result};
use std::marker::PhantomData;
use std::mem::size_of;

/// What to create: the kernel's map parameters plus the symbolic name programs refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    pub name: MapRef,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// `BPF_F_NO_PREALLOC`: hash maps allocate entries on insert instead of at creation.
pub const F_NO_PREALLOC: u32 = 1;

/// An untyped map: the fd and the parameters it was created with.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    def: MapDef,
    id: u32,
    /// Bytes a lookup returns per value: one slot per possible CPU for per-CPU maps.
    value_buf: usize,
    cpus: usize,
}

impl Map {
    /// Creates the map in the kernel.
    pub fn create(def: MapDef) -> Result<Map> {
        let fd = bpf::map_create(def.map_type, def.key_size, def.value_size, def.max_entries, def.flags, def.name.0)?;
        let id = bpf::map_info(fd.as_fd())?.id;
        let cpus = if def.map_type.per_cpu() { crate::sys::possible_cpus()? } else { 1 };
        let value_buf =
            if def.map_type.per_cpu() { round8(def.value_size as usize) * cpus } else { def.value_size as usize };
        Ok(Map { fd, def, id, value_buf, cpus })
    }

    /// The parameters it was created with.
    pub fn def(&self) -> &MapDef {
        &self.def
    }

    /// The kernel's id for this map, stable while it exists.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Number of per-CPU slots in a value (1 for ordinary maps).
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// Looks `key` up; the result holds one value, or one 8-byte-aligned slot per possible CPU.
    pub fn lookup_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        let mut buf = vec![0u8; self.value_buf];
        // SAFETY: key and buf have the map's sizes (checked above and sized at creation).
        let found = unsafe { bpf::map_lookup(self.fd.as_fd(), key, &mut buf)? };
        Ok(found.then_some(buf))
    }

    /// Writes `value` (one value, or one slot per possible CPU for per-CPU maps).
    pub fn update_raw(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        if value.len() != self.value_buf {
            return Err(Error::Other(format!(
                "map `{}`: value of {} bytes, expected {}",
                self.def.name.0,
                value.len(),
                self.value_buf
            )));
        }
        // SAFETY: sizes checked.
        unsafe { bpf::map_update(self.fd.as_fd(), key, value) }
    }

    /// Deletes `key`; false when it was absent.
    pub fn delete_raw(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        // SAFETY: size checked.
        unsafe { bpf::map_delete(self.fd.as_fd(), key) }
    }

    /// All keys, in the kernel's order.
    pub fn keys_raw(&self) -> Result<Vec<Vec<u8>>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let ks = self.def.key_size as usize;
        loop {
            let mut next = vec![0u8; ks];
            // SAFETY: buffers have the key size.
            let more = unsafe { bpf::map_next_key(self.fd.as_fd(), out.last().map(|k| k.as_slice()), &mut next)? };
            if !more || out.len() > self.def.max_entries as usize {
                return Ok(out);
            }
            out.push(next);
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() != self.def.key_size as usize {
            return Err(Error::Other(format!(
                "map `{}`: key of {} bytes, expected {}",
                self.def.name.0,
                key.len(),
                self.def.key_size
            )));
        }
        Ok(())
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Map {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Checks that `map` has one of `types` and `value_size`-byte values before a typed wrapper
/// takes it.
fn check_wrap(map: &Map, types: &[MapType], value_size: usize) -> Result<()> {
    if !types.contains(&map.def.map_type) || map.def.value_size as usize != value_size {
        return Err(Error::Other(format!(
            "map `{}` is a {:?} of {}-byte values, not one of {types:?} of {value_size}",
            map.def.name.0, map.def.map_type, map.def.value_size
        )));
    }
    Ok(())
}

fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn def_for<K: Pod, V: Pod>(name: &'static str, map_type: MapType, max_entries: u32, flags: u32) -> MapDef {
    MapDef {
        name: MapRef(name),
        map_type,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries,
        flags,
    }
}

/// `BPF_MAP_TYPE_ARRAY` indexed by u32.
#[derive(Debug)]
pub struct Array<V: Pod> {
    map: Map,
    _v: PhantomData<V>,
}

impl<V: Pod> Array<V> {
    /// Creates an array of `len` zeroed values.
    pub fn create(name: &'static str, len: u32) -> Result<Self> {
        Ok(Array { map: Map::create(def_for::<u32, V>(name, MapType::Array, len, 0))?, _v: PhantomData })
    }

    /// Wraps an existing map created from a matching [`MapDef`].
    pub fn from_map(map: Map) -> Result<Self> {
        check_wrap(&map, &[MapType::Array], size_of::<V>())?;
        Ok(Array { map, _v: PhantomData })
    }

    /// The value at `index`.
    pub fn get(&self, index: u32) -> Result<V> {
        let raw = self.map.lookup_raw(&index.to_ne_bytes())?;
        raw.and_then(|b| V::from_bytes(&b))
            .ok_or_else(|| Error::Other(format!("array `{}`: no index {index}", self.map.def.name.0)))
    }

    /// Stores `value` at `index`.
    pub fn set(&self, index: u32, value: &V) -> Result<()> {
        self.map.update_raw(&index.to_ne_bytes(), value.as_bytes())
    }

    /// The untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }
}

/// One value per possible CPU, as a per-CPU lookup returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerCpu<V>(pub Vec<V>);

impl<V: Pod> PerCpu<V> {
    fn from_buf(buf: &[u8], cpus: usize) -> Option<Self> {
        let stride = round8(size_of::<V>());
        (0..cpus)
            .map(|c| buf.get(c * stride..c * stride + size_of::<V>()).and_then(V::from_bytes))
            .collect::<Option<Vec<V>>>()
            .map(PerCpu)
    }

    /// Sums the value's u64 lanes over CPUs (values made of u64 counters).
    pub fn sum_u64_lanes(&self) -> Vec<u64> {
        let lanes = size_of::<V>() / 8;
        let mut out = vec![0u64; lanes];
        for v in &self.0 {
            for (lane, chunk) in out.iter_mut().zip(v.as_bytes().chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                *lane = lane.wrapping_add(u64::from_ne_bytes(b));
            }
        }
        out
    }
}

impl PerCpu<u64> {
    /// The total over CPUs.
    pub fn sum(&self) -> u64 {
        self.0.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }
}

/// `BPF_MAP_TYPE_PERCPU_ARRAY` indexed by u32: lock-free counters, one copy per CPU.
#[derive(Debug)]
pub struct PerCpuArray<V: Pod> {
    map: Map,
    _v: PhantomData<V>,
}

impl<V: Pod> PerCpuArray<V> {
    /// Creates an array of `len` zeroed per-CPU values.
    pub fn create(name: &'static str, len: u32) -> Result<Self> {
        Ok(PerCpuArray { map: Map::create(def_for::<u32, V>(name, MapType::PercpuArray, len, 0))?, _v: PhantomData })
    }

    /// Wraps an existing map created from a matching [`MapDef`].
    pub fn from_map(map: Map) -> Result<Self> {
        if map.def.map_type != MapType::PercpuArray || map.def.value_size as usize != size_of::<V>() {
            return Err(Error::Other(format!(
                "map `{}` is not a per-CPU array of {} bytes",
                map.def.name.0,
                size_of::<V>()
            )));
        }
        Ok(PerCpuArray { map, _v: PhantomData })
    }

    /// The per-CPU values at `index`.
    pub fn get(&self, index: u32) -> Result<PerCpu<V>> {
        let raw = self.map.lookup_raw(&index.to_ne_bytes())?;
        raw.and_then(|b| PerCpu::from_buf(&b, self.map.cpus))
            .ok_or_else(|| Error::Other(format!("per-CPU array `{}`: no index {index}", self.map.def.name.0)))
    }

    /// Stores one value per possible CPU at `index`.
    pub fn set(&self, index: u32, values: &PerCpu<V>) -> Result<()> {
        let stride = round8(size_of::<V>());
        let mut buf = vec![0u8; stride * self.map.cpus];
        for (c, v) in values.0.iter().take(self.map.cpus).enumerate() {
            buf[c * stride..c * stride + size_of::<V>()].copy_from_slice(v.as_bytes());
        }
        self.map.update_raw(&index.to_ne_bytes(), &buf)
    }

    /// The untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }
}

/// A hash map (`BPF_MAP_TYPE_HASH` or `BPF_MAP_TYPE_LRU_HASH`) with typed keys and values.
#[derive(Debug)]
pub struct HashMap<K: Pod, V: Pod> {
    map: Map,
    _kv: PhantomData<(K, V)>,
}

impl<K: Pod, V: Pod> HashMap<K, V> {
    /// Creates a hash map; `lru` evicts the least recently used entry when full instead of
    /// failing the insert.
    pub fn create(name: &'static str, max_entries: u32, lru: bool) -> Result<Self> {
        let t = if lru { MapType::LruHash } else { MapType::Hash };
        Ok(HashMap { map: Map::create(def_for::<K, V>(name, t, max_entries, 0))?, _kv: PhantomData })
    }

    /// Wraps an existing hash map created from a matching [`MapDef`].
    pub fn from_map(map: Map) -> Result<Self> {
        check_wrap(&map, &[MapType::Hash, MapType::LruHash], size_of::<V>())?;
        if map.def.key_size as usize != size_of::<K>() {
            return Err(Error::Other(format!(
                "map `{}` has {}-byte keys, not {}",
                map.def.name.0,
                map.def.key_size,
                size_of::<K>()
            )));
        }
        Ok(HashMap { map, _kv: PhantomData })
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        Ok(self.map.lookup_raw(key.as_bytes())?.and_then(|b| V::from_bytes(&b)))
    }

    /// Inserts or replaces.
    pub fn insert(&self, key: &K, value: &V) -> Result<()> {
        self.map.update_raw(key.as_bytes(), value.as_bytes())
    }

    /// Removes `key`; false when absent.
    pub fn remove(&self, key: &K) -> Result<bool> {
        self.map.delete_raw(key.as_bytes())
    }

    /// All keys.
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(self.map.keys_raw()?.iter().filter_map(|k| K::from_bytes(k)).collect())
    }

    /// The untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }
}

/// `BPF_MAP_TYPE_PERCPU_HASH` with typed keys and per-CPU values.
#[derive(Debug)]
pub struct PerCpuHashMap<K: Pod, V: Pod> {
    map: Map,
    _kv: PhantomData<(K, V)>,
}

impl<K: Pod, V: Pod> PerCpuHashMap<K, V> {
    /// Creates a per-CPU hash map.
    pub fn create(name: &'static str, max_entries: u32) -> Result<Self> {
        Ok(PerCpuHashMap {
            map: Map::create(def_for::<K, V>(name, MapType::PercpuHash, max_entries, 0))?,
            _kv: PhantomData,
        })
    }

    /// The per-CPU values for `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<PerCpu<V>>> {
        Ok(self.map.lookup_raw(key.as_bytes())?.and_then(|b| PerCpu::from_buf(&b, self.map.cpus)))
    }

    /// The untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_values_are_strided_by_eight() {
        let mut buf = vec![0u8; 16 * 2];
        buf[0..4].copy_from_slice(&7u32.to_ne_bytes());
        buf[8..12].copy_from_slice(&9u32.to_ne_bytes());
        let v = PerCpu::<u32>::from_buf(&buf, 2).unwrap();
        assert_eq!(v.0, vec![7, 9]);
        let mut buf = vec![0u8; 16 * 2];
        buf[0..8].copy_from_slice(&1u64.to_ne_bytes());
        buf[8..16].copy_from_slice(&2u64.to_ne_bytes());
        buf[16..24].copy_from_slice(&10u64.to_ne_bytes());
        buf[24..32].copy_from_slice(&20u64.to_ne_bytes());
        assert_eq!(PerCpu::<[u64; 2]>::from_buf(&buf, 2).unwrap().sum_u64_lanes(), vec![11, 22]);
        assert_eq!(round8(12), 16);
    }
}
