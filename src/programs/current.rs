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

use crate::btf::Kind;
use crate::insn::{Asm, Helper, Reg, R0};
use std::sync::OnceLock;

/// Byte offsets of `task_struct.cgroups`, `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskCgroup {
    pub cgroups: i16,
    pub dfl_cgrp: i16,
    pub kn: i16,
    pub id: i16,
}

impl TaskCgroup {
    /// The running kernel's layout, once per process; `None` where the helper must be used.
    pub(crate) fn from_kernel() -> Option<TaskCgroup> {
        static LAYOUT: OnceLock<Option<TaskCgroup>> = OnceLock::new();
        *LAYOUT.get_or_init(|| {
            let layout = crate::btf::vmlinux().ok().and_then(|btf| Self::from_btf(&btf));
            log::debug!(
                "scope test in fentry/fexit programs: {}",
                layout.map_or("bpf_get_current_cgroup_id()".into(), |l| format!("{l:?}"))
            );
            layout
        })
    }

    /// [`TaskCgroup::from_kernel`] on given BTF.
    pub(crate) fn from_btf(btf: &crate::btf::Btf) -> Option<TaskCgroup> {
        let helper = btf.find_type(Kind::Enum, "bpf_func_id")?;
        btf.enum_value(helper, "BPF_FUNC_get_current_task_btf")?;
        let at = |ty: &str, member: &str| {
            let bits = btf.member_offset_bits(btf.find_type(Kind::Struct, ty)?, member)?;
            (bits % 8 == 0).then(|| i16::try_from(bits / 8).ok()).flatten()
        };
        Some(TaskCgroup {
            cgroups: at("task_struct", "cgroups")?,
            dfl_cgrp: at("css_set", "dfl_cgrp")?,
            kn: at("cgroup", "kn")?,
            id: at("kernfs_node", "id")?,
        })
    }

    /// `dst = bpf_get_current_task_btf()->cgroups->dfl_cgrp->kn->id` (clobbers r0-r5).
    pub(crate) fn load_id(self, a: &mut Asm, dst: Reg) {
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
        let Some(l) = TaskCgroup::from_btf(&btf) else {
            let has_helper = btf
                .find_type(Kind::Enum, "bpf_func_id")
                .and_then(|e| btf.enum_value(e, "BPF_FUNC_get_current_task_btf"))
                .is_some();
            assert!(!has_helper, "the helper exists but a member was not found");
            return;
        };
        assert!(l.cgroups > 0 && l.dfl_cgrp > 0 && l.kn > 0 && l.id >= 0, "{l:?}");
        assert_eq!(Some(l), TaskCgroup::from_kernel());
        let mut a = Asm::new();
        l.load_id(&mut a, crate::insn::R1);
        a.mov64(R0, 0);
        a.exit();
        assert_eq!(a.finish().unwrap().len(), 7);
    }
}
