//! Attaching loaded programs to kernel events, each attachment a handle that detaches on drop.
//!
//! Six mechanisms, from cheapest per event to most widely available: fentry/fexit (BTF
//! trampolines), raw tracepoints, classic tracepoints (perf events on tracefs ids),
//! kprobe_multi links (kprobe programs through fprobe, with no perf event), and kprobes (the
//! perf kprobe PMU, else tracefs `kprobe_events`). A BPF link is used where the kernel has one
//! for the attach type, else the older perf ioctl.

mod attachment;
mod chain;
pub mod features;
mod fires;
mod kprobe;
mod kprobe_multi;
mod point;
mod tracefs;

pub use attachment::{program, Attachment};
pub use chain::{attach_plan, Alternative, Attached, Build, Plan, PlanReport};
pub use features::Link;
pub use fires::Exercise;
pub use point::{AttachPoint, Mechanism, Policy};
pub use tracefs::{
    field as tracepoint_field, parse_field as parse_tracepoint_format, root as tracefs_root, tracepoint_id,
};

use crate::load::{self, ProgramSpec};
use crate::Result;
use once_cell::sync::OnceCell;

/// What this kernel lets KTM do, each mechanism tried for real.
#[derive(Clone, Debug)]
pub struct Features {
    pub results: Vec<(Mechanism, AttachPoint, std::result::Result<(), String>)>,
}

impl Features {
    /// Whether `m` worked, or why not.
    pub fn get(&self, m: Mechanism) -> std::result::Result<(), String> {
        self.results.iter().find(|(mm, _, _)| *mm == m).map_or(Err("not probed".into()), |(_, _, r)| r.clone())
    }
}

static FEATURES: OnceCell<Features> = OnceCell::new();

/// Probes each mechanism once per process.
pub fn mechanisms() -> &'static Features {
    FEATURES.get_or_init(|| {
        let points = [
            AttachPoint::fentry("vfs_read", false),
            AttachPoint::fentry("vfs_read", true),
            AttachPoint::kprobe("vfs_read", false),
            AttachPoint::kprobe("vfs_read", true),
            AttachPoint::kprobe_multi("vfs_read", false),
            AttachPoint::kprobe_multi("vfs_read", true),
            AttachPoint::raw_tracepoint("sys_enter"),
            AttachPoint::tracepoint("syscalls", "sys_enter_getppid"),
        ];
        let results =
            points.into_iter().map(|p| (p.mechanism(), p.clone(), try_point(&p).map_err(|e| e.to_string()))).collect();
        Features { results }
    })
}

fn try_point(point: &AttachPoint) -> Result<()> {
    let spec = ProgramSpec {
        name: format!("ktm_probe_{}", point.mechanism().name()),
        prog_type: point.prog_type(),
        program: features::empty_program()?,
        attach: point.load_target()?,
    };
    let prog = load::program(&spec, |_| None)?;
    let _attached = program(&prog, point)?;
    Ok(())
}
