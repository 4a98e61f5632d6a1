//! The current task's cgroup id read by a BTF-typed program itself, without the helper.
//!
//! `bpf_get_current_cgroup_id()` is `task_dfl_cgroup(current)->kn->id` inside
//! `rcu_read_lock()`/`rcu_read_unlock()`, two function calls on Debian's `PREEMPT_RCU`
//! kernels. A fentry or fexit program already runs inside an RCU read section and may follow
//! BTF-typed pointers itself: `bpf_get_current_task_btf()->cgroups->dfl_cgrp->kn->id`, four
//! loads the JIT guards (a fault reads 0, which is no cgroup's id). Measured in the overhead
//! bench's `scope-test` group (Debian's 6.1 and 6.12 under TCG, BPF statistics): 0.58-0.82 of
//! the helper's time above an empty program, the same calls selected. Offsets come from the
//! running kernel's BTF; a kernel without `bpf_get_current_task_btf` (before 5.11) or without
//! one of the members keeps the helper.

use crate::btf::{Btf, Kind};
use crate::insn::{Asm, Helper, Reg, R0};
use crate::{Error, Result};
use std::sync::OnceLock;

/// Member `member` of struct `ty`: its byte offset, or why kernel BTF does not give one.
fn member_offset(btf: &Btf, ty: &str, member: &str) -> std::result::Result<u32, String> {
    btf.find_type(Kind::Struct, ty)
        .and_then(|t| btf.member_offset_bits(t, member))
        .filter(|bits| bits % 8 == 0)
        .map(|bits| bits / 8)
        .ok_or_else(|| format!("kernel BTF has no {ty}.{member}: a cgroup's id cannot be read"))
}

/// Where a cgroup's id is: `cgroup->kn` and `kernfs_node->id`, from the running kernel's BTF
/// (`cgroup_id()` is an inline function). The join hook reads them through a cgroup pointer
/// with `bpf_probe_read_kernel`; [`TaskCgroup`] loads them directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CgroupIdLayout {
    pub kn: u32,
    pub id: u32,
}

impl CgroupIdLayout {
    pub(crate) fn from_kernel() -> Result<CgroupIdLayout> {
        let btf = crate::btf::vmlinux()
            .map_err(|e| Error::Other(format!("a cgroup's id is read at offsets from kernel BTF: {e}")))?;
        Self::from_btf(&btf).map_err(Error::Other)
    }

    fn from_btf(btf: &Btf) -> std::result::Result<CgroupIdLayout, String> {
        Ok(CgroupIdLayout { kn: member_offset(btf, "cgroup", "kn")?, id: member_offset(btf, "kernfs_node", "id")? })
    }
}

/// Byte offsets of `task_struct.cgroups`, `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskCgroup {
    pub cgroups: i16,
    pub dfl_cgrp: i16,
    pub kn: i16,
    pub id: i16,
}

impl TaskCgroup {
    /// The running kernel's layout, once per process, or why the helper must be used.
    pub fn from_kernel() -> std::result::Result<TaskCgroup, String> {
        static LAYOUT: OnceLock<std::result::Result<TaskCgroup, String>> = OnceLock::new();
        LAYOUT
            .get_or_init(|| {
                let layout = crate::btf::vmlinux()
                    .map_err(|e| format!("no vmlinux BTF: {e}"))
                    .and_then(|btf| Self::from_btf(&btf));
                match &layout {
                    Ok(l) => log::debug!("scope test in fentry/fexit programs: {l:?}"),
                    Err(why) => log::debug!("scope test in fentry/fexit programs: bpf_get_current_cgroup_id() ({why})"),
                }
                layout
            })
            .clone()
    }

    /// [`TaskCgroup::from_kernel`] on given BTF.
    fn from_btf(btf: &Btf) -> std::result::Result<TaskCgroup, String> {
        let helper = btf.find_type(Kind::Enum, "bpf_func_id");
        if helper.and_then(|h| btf.enum_value(h, "BPF_FUNC_get_current_task_btf")).is_none() {
            return Err("this kernel has no bpf_get_current_task_btf() (5.11+)".into());
        }
        let load_offset = |bytes: u32, what: &str| {
            i16::try_from(bytes).map_err(|_| format!("{what} at byte {bytes} is beyond a load's offset"))
        };
        let at = |ty: &str, member: &str| load_offset(member_offset(btf, ty, member)?, &format!("{ty}.{member}"));
        let cgroup = CgroupIdLayout::from_btf(btf)?;
        Ok(TaskCgroup {
            cgroups: at("task_struct", "cgroups")?,
            dfl_cgrp: at("css_set", "dfl_cgrp")?,
            kn: load_offset(cgroup.kn, "cgroup.kn")?,
            id: load_offset(cgroup.id, "kernfs_node.id")?,
        })
    }

    /// `dst = bpf_get_current_task_btf()->cgroups->dfl_cgrp->kn->id` (clobbers r0-r5).
    pub fn load_id(self, a: &mut Asm, dst: Reg) {
        a.call(Helper::GetCurrentTaskBtf);
        a.ldx_dw(R0, R0, self.cgroups);
        a.ldx_dw(R0, R0, self.dfl_cgrp);
        a.ldx_dw(R0, R0, self.kn);
        a.ldx_dw(dst, R0, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the kernel has BTF and the helper, the four members are found, each chain link
    /// inside its struct; the loads assemble.
    #[test]
    fn layout_from_this_kernel() {
        let Ok(btf) = crate::btf::vmlinux() else {
            eprintln!("skipped: no vmlinux BTF here");
            return;
        };
        let Ok(l) = TaskCgroup::from_btf(&btf) else {
            let has_helper = btf
                .find_type(Kind::Enum, "bpf_func_id")
                .and_then(|e| btf.enum_value(e, "BPF_FUNC_get_current_task_btf"))
                .is_some();
            assert!(!has_helper, "the helper exists but a member was not found");
            return;
        };
        assert!(l.cgroups > 0 && l.dfl_cgrp > 0 && l.kn > 0 && l.id >= 0, "{l:?}");
        assert_eq!(Ok(l), TaskCgroup::from_kernel());
        let mut a = Asm::new();
        l.load_id(&mut a, crate::insn::R1);
        a.mov64(R0, 0);
        a.exit();
        assert_eq!(a.finish().unwrap().len(), 7);
    }
}
