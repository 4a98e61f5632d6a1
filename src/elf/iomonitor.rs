//! The iomonitor's programs and maps, as [`write_object`] takes them (`ktm emit-elf`).

use super::writer::{write_object, ElfProgram};
use crate::attach::AttachPoint;
use crate::maps::MapDef;
use crate::programs::layout;
use crate::Result;

/// The iomonitor's maps, with the parameters `IoMonitor::start` creates them with.
pub fn iomonitor_maps() -> Vec<MapDef> {
    layout::map_defs().to_vec()
}

/// The symbol for a program of `plan` at `point`: unique across the iomonitor because no
/// plan lists the same point twice.
pub fn program_symbol(plan: &str, point: &AttachPoint) -> String {
    let section: String =
        point.section().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    format!("{plan}__{section}")
}

/// Builds every program of every alternative of every iomonitor probe.
///
/// A builder that fails here (a tracepoint this kernel lacks, a field its format does not
/// have, an architecture without kprobe argument offsets) is skipped and reported in the
/// returned warnings, the same failure that would make the loader fall back to the next
/// alternative.
pub fn iomonitor_programs() -> (Vec<ElfProgram>, Vec<String>) {
    let mut programs = Vec::new();
    let mut warnings = Vec::new();
    let probes = crate::programs::probes();
    for (probe, point, build) in crate::inspect::programs(&probes) {
        match build() {
            Ok(p) => programs.push(ElfProgram::new(point, program_symbol(&probe.plan.name, point), p)),
            Err(e) => warnings.push(format!("{}: skipped {point}: {e}", probe.plan.name)),
        }
    }
    (programs, warnings)
}

/// The iomonitor's programs and maps as an ELF object, with a warning per program that
/// could not be built on this kernel.
pub fn iomonitor_object() -> Result<(Vec<u8>, Vec<String>)> {
    let (programs, warnings) = iomonitor_programs();
    Ok((write_object(&programs, &iomonitor_maps())?, warnings))
}
