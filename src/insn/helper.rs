//! Kernel helper functions callable from BPF programs.
//!
//! Only the helpers KTM needs (and a few neighbours a reader would expect) are named; the
//! numbers are the kernel's ABI (`__BPF_FUNC_MAPPER` in `linux/bpf.h`) and never change.

use std::fmt;

/// A BPF helper, identified by its stable number in the kernel's ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Helper {
    MapLookupElem,
    MapUpdateElem,
    MapDeleteElem,
    ProbeRead,
    KtimeGetNs,
    TracePrintk,
    GetSmpProcessorId,
    GetCurrentPidTgid,
    GetCurrentUidGid,
    GetCurrentComm,
    PerfEventOutput,
    GetCurrentTask,
    ProbeReadStr,
    GetCurrentCgroupId,
    ProbeReadUser,
    ProbeReadKernel,
    ProbeReadUserStr,
    ProbeReadKernelStr,
    GetNsCurrentPidTgid,
    GetCurrentAncestorCgroupId,
    KtimeGetBootNs,
    GetCurrentTaskBtf,
    GetAttachCookie,
    GetFuncArg,
    GetFuncRet,
    GetFuncArgCnt,
    /// A helper this enum does not name, by number (kept so decoding never fails on it).
    Other(u32),
}

const NAMED: &[(Helper, u32, &str)] = &[
    (Helper::MapLookupElem, 1, "map_lookup_elem"),
    (Helper::MapUpdateElem, 2, "map_update_elem"),
    (Helper::MapDeleteElem, 3, "map_delete_elem"),
    (Helper::ProbeRead, 4, "probe_read"),
    (Helper::KtimeGetNs, 5, "ktime_get_ns"),
    (Helper::TracePrintk, 6, "trace_printk"),
    (Helper::GetSmpProcessorId, 8, "get_smp_processor_id"),
    (Helper::GetCurrentPidTgid, 14, "get_current_pid_tgid"),
    (Helper::GetCurrentUidGid, 15, "get_current_uid_gid"),
    (Helper::GetCurrentComm, 16, "get_current_comm"),
    (Helper::PerfEventOutput, 25, "perf_event_output"),
    (Helper::GetCurrentTask, 35, "get_current_task"),
    (Helper::ProbeReadStr, 45, "probe_read_str"),
    (Helper::GetCurrentCgroupId, 80, "get_current_cgroup_id"),
    (Helper::ProbeReadUser, 112, "probe_read_user"),
    (Helper::ProbeReadKernel, 113, "probe_read_kernel"),
    (Helper::ProbeReadUserStr, 114, "probe_read_user_str"),
    (Helper::ProbeReadKernelStr, 115, "probe_read_kernel_str"),
    (Helper::GetNsCurrentPidTgid, 120, "get_ns_current_pid_tgid"),
    (Helper::GetCurrentAncestorCgroupId, 123, "get_current_ancestor_cgroup_id"),
    (Helper::KtimeGetBootNs, 125, "ktime_get_boot_ns"),
    (Helper::GetCurrentTaskBtf, 158, "get_current_task_btf"),
    (Helper::GetAttachCookie, 174, "get_attach_cookie"),
    (Helper::GetFuncArg, 183, "get_func_arg"),
    (Helper::GetFuncRet, 184, "get_func_ret"),
    (Helper::GetFuncArgCnt, 185, "get_func_arg_cnt"),
];

impl Helper {
    /// The helper's number in the kernel ABI.
    pub fn id(self) -> u32 {
        if let Helper::Other(n) = self {
            return n;
        }
        NAMED.iter().find(|(h, _, _)| *h == self).map_or(0, |(_, id, _)| *id)
    }

    /// The helper for an ABI number; unknown numbers become [`Helper::Other`].
    pub fn from_id(id: u32) -> Helper {
        NAMED.iter().find(|(_, n, _)| *n == id).map_or(Helper::Other(id), |(h, _, _)| *h)
    }

    /// The name without the `bpf_` prefix, as in `linux/bpf.h`, if the helper is named here.
    pub fn name(self) -> Option<&'static str> {
        let id = self.id();
        NAMED.iter().find(|(_, n, _)| *n == id).map(|(_, _, name)| *name)
    }
}

impl fmt::Display for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "bpf_{name}#{}", self.id()),
            None => write!(f, "helper#{}", self.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for (h, id, _) in NAMED {
            assert_eq!(h.id(), *id);
            assert_eq!(Helper::from_id(*id), *h);
        }
        assert_eq!(Helper::from_id(9999), Helper::Other(9999));
        assert_eq!(Helper::Other(9999).id(), 9999);
    }
}
