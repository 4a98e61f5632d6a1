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
mod mechanisms;
mod point;
mod target;
mod tracefs;

pub use attachment::{attach_program, Attachment};
pub use chain::{attach_plan, Alternative, Attached, Build, Plan, PlanReport};
pub use features::{Feature, Link, Needs};
pub use fires::{account as account_self_tests, needs_check, silent_reason, spent as self_test_time, Exercise};
pub use mechanisms::{mechanisms, probe, MechanismTable};
pub use point::{AttachPoint, Mechanism, Policy};
pub use tracefs::{
    field as tracepoint_field, parse_field as parse_tracepoint_format, root as tracefs_root, tracepoint_id,
};
