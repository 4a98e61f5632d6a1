//! The iomonitor's programs as tools see them, outside a running monitor: every program of
//! every alternative of every plan, walked in one order ([`alternatives`], [`programs`]) by
//! `ktm dump` ([`dump`]), `ktm emit-elf` (`elf::iomonitor`) and the startup bench, and each
//! loaded once for the verifier's count ([`Verifier`]). The commands hold no BPF knowledge:
//! they call this.

use crate::attach::{Alternative, AttachPoint, Build};
use crate::programs::Probe;
use std::io::Write;

/// Every alternative of every plan of `probes`, in plan order, preferred first.
pub fn alternatives(probes: &[Probe]) -> impl Iterator<Item = (&Probe, &Alternative)> {
    probes.iter().flat_map(|probe| probe.plan.alternatives.iter().map(move |alt| (probe, alt)))
}

/// Every program (each part of each alternative) of `probe`'s plan, preferred first.
pub fn probe_programs(probe: &Probe) -> impl Iterator<Item = (&AttachPoint, &Build)> {
    probe.plan.alternatives.iter().flat_map(Alternative::parts)
}

/// Every program of every plan of `probes`, in plan order.
pub fn programs(probes: &[Probe]) -> impl Iterator<Item = (&Probe, &AttachPoint, &Build)> {
    probes.iter().flat_map(|probe| probe_programs(probe).map(move |(point, build)| (probe, point, build)))
}

/// The iomonitor's maps, created so that programs can be loaded for the verifier's count;
/// none when this process may not create them (no privileges), and then nothing is loaded.
#[derive(Debug)]
pub struct Verifier {
    maps: Vec<crate::maps::Map>,
}

impl Verifier {
    /// Creates the maps this process may create.
    pub fn new() -> Verifier {
        Verifier {
            maps: crate::programs::layout::map_defs()
                .into_iter()
                .filter_map(|d| crate::maps::Map::create(d).ok())
                .collect(),
        }
    }

    /// What the kernel says of `program` at `point` (loaded as `name`, then unloaded): the
    /// verifier's processed-instruction count, or why it does not load here. A mechanism the
    /// kernel refuses (lockdown refusing fentry) is named with the reason `ktm probe` gives,
    /// rather than the loader's error for a program that could not even be given its target.
    pub fn verdict(&self, name: &str, point: &AttachPoint, program: &crate::insn::Program) -> String {
        if self.maps.is_empty() {
            return "not loaded (no privileges)".to_string();
        }
        let fd_of = |m: crate::insn::MapRef| {
            use std::os::fd::AsRawFd;
            self.maps.iter().find(|x| x.def().name == m).map(|x| x.as_raw_fd())
        };
        match (crate::attach::mechanisms().get(point.mechanism()), point.load_target()) {
            (Err(why), _) => format!("not loadable here: {} refused: {why}", point.mechanism().name()),
            (Ok(()), Err(e)) => format!("not loadable here: {e}"),
            (Ok(()), Ok(attach)) => {
                let spec = crate::load::ProgramSpec {
                    name: name.to_string(),
                    prog_type: point.prog_type(),
                    program: program.clone(),
                    attach,
                };
                match crate::load::program(&spec, fd_of).and_then(|p| p.info()) {
                    Ok(info) if info.verified_insns > 0 => format!("verifier processed {}", info.verified_insns),
                    Ok(_) => "loaded (this kernel does not report the verifier's count)".to_string(),
                    Err(e) => format!("not loadable here: {e}"),
                }
            }
        }
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

/// `ktm dump`: every program of every plan (or of the plan named `only`), disassembled, with
/// its instruction count and the verifier's verdict ([`Verifier::verdict`]), written to
/// `out`. Returns how many programs were shown: 0 when `only` names no plan.
pub fn dump(only: Option<&str>, out: &mut dyn Write) -> std::io::Result<usize> {
    let verifier = Verifier::new();
    let probes = crate::programs::probes();
    let mut shown = 0;
    for probe in probes.iter().filter(|p| only.map_or(true, |n| n == p.plan.name)) {
        let name = probe.plan.name.as_str();
        if probe.metrics.is_empty() {
            writeln!(out, "== {name} (feeds no metric: it keeps the scope on BanyanDB)")?;
        } else {
            writeln!(out, "== {name} (feeds {})", probe.metric_names().join(", "))?;
        }
        for (point, build) in probe_programs(probe) {
            shown += 1;
            let program = match build() {
                Ok(p) => p,
                Err(e) => {
                    writeln!(out, "-- {point}: cannot build on this kernel: {e}")?;
                    continue;
                }
            };
            let verdict = verifier.verdict(name, point, &program);
            writeln!(out, "-- {point}: {} instructions; {verdict}", program.len())?;
            write!(out, "{}", crate::insn::disasm_program(&program))?;
        }
    }
    Ok(shown)
}
