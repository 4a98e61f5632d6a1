//! What a program for an attach point must be loaded with: the one question about a point
//! that needs the feature table (and kernel BTF), so that `point` itself stays a description.

use super::features::{self, Link};
use super::point::AttachPoint;
use crate::error::Unsupported;
use crate::sys::bpf::AttachType;
use crate::Result;

impl AttachPoint {
    /// For fentry/fexit, the attach type and BTF id of the function, found in kernel BTF; for
    /// kprobe_multi, its attach type (a kprobe program loaded without it cannot take that
    /// link), or why this kernel has no such link.
    pub fn load_target(&self) -> Result<Option<(AttachType, u32)>> {
        match self {
            AttachPoint::Fentry { func, exit } => {
                features::tracing_programs().map_err(|u| u.context("tracing programs are refused"))?;
                let loc = crate::btf::find_kernel_func(func)
                    .map_err(|e| Unsupported::new(format!("no BTF for function {func}: {e}")))?;
                if let Some(module) = loc.module {
                    return Err(Unsupported::new(format!(
                        "function {func} is in module {module}; fentry on module functions is not supported"
                    ))
                    .into());
                }
                Ok(Some((if *exit { AttachType::TraceFexit } else { AttachType::TraceFentry }, loc.type_id)))
            }
            AttachPoint::KprobeMulti { .. } => {
                features::link(Link::KprobeMulti).map_err(|u| u.context("kprobe_multi links are unavailable"))?;
                Ok(Some((AttachType::TraceKprobeMulti, 0)))
            }
            _ => Ok(None),
        }
    }
}
