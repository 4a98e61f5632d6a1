//! The comparison programs, written with `ktm::insn::Asm`, and sets of them attached.

use super::harness::R;
use ktm::attach::{self, AttachPoint, Attachment};
use ktm::insn::{Asm, Helper, MapRef, Program, R0, R1, R10, R2, R3, R4, R6, R7, R8};
use ktm::load::{self, LoadedProgram, ProgramSpec};
use ktm::maps::{Map, MapDef, F_NO_PREALLOC};
use ktm::sys::bpf::MapType;
use ktm::sys::AsRawFd;

/// The counter map of the counting programs (slot 0, one u64).
pub const CNT: MapRef = MapRef("bench_cnt");
/// The config of the cgroup test: word 0 is the target cgroup id.
pub const CFG: MapRef = MapRef("bench_cfg");
/// Start timestamps by thread id.
pub const TS: MapRef = MapRef("bench_ts");

/// `offsetof(struct pt_regs, orig_ax)` on x86-64: the syscall number at sys_exit.
#[cfg(target_arch = "x86_64")]
pub const ORIG_AX: Option<i32> = Some(15 * 8);
#[cfg(not(target_arch = "x86_64"))]
pub const ORIG_AX: Option<i32> = None;

/// A test a program makes before counting; a mismatch ends the program.
#[derive(Clone, Copy, Debug)]
pub enum Test {
    /// Raw `sys_enter`: `ctx->args[1]` (the syscall number) is read or pread64.
    EnterNr,
    /// Raw `sys_exit`: the syscall number, read from `regs->orig_ax` with
    /// `bpf_probe_read_kernel` (a raw tracepoint may not dereference the regs pointer), is
    /// read or pread64.
    ExitNr,
    /// `bpf_get_current_cgroup_id() == cfg[0]`.
    Cgroup,
    /// The same id read through BTF-typed pointers, no cgroup helper (tracing programs only):
    /// `bpf_get_current_task_btf()->cgroups->dfl_cgrp->kn->id == cfg[0]`, as KTM's fentry
    /// and fexit programs read it.
    TaskCgroup(ktm::programs::TaskCgroup),
}

/// How a program counts once its tests pass.
#[derive(Clone, Copy, Debug)]
pub enum Count {
    /// `lock *slot += 1`.
    Atomic,
    /// `*slot = *slot + 1` (may lose updates where the program can be interrupted by itself).
    Plain,
}

/// A program body.
#[derive(Clone, Debug)]
pub enum Body {
    /// `r0 = 0; exit`.
    Empty,
    Filter(Vec<Test>, Count),
    /// Start map update: `ts[tid] = ktime`.
    TsEnter,
    /// Start map lookup and delete, then the elapsed time.
    TsExit,
    /// Start slot in an array indexed by `tid & (entries - 1)`: `slot = {tid, ktime}` (slots
    /// 128 bytes apart, so no two threads' slots share a cache line).
    SlotEnter,
    /// The slot, if it holds this thread's id: its time taken and the slot cleared.
    SlotExit,
    /// `bpf_get_current_pid_tgid()` and `bpf_ktime_get_ns()`, no map: the slot bodies
    /// without the slot (benches/pg.rs only).
    #[allow(dead_code)]
    Clock,
    /// `bpf_get_current_pid_tgid()` alone (benches/pg.rs only).
    #[allow(dead_code)]
    Pid,
}

/// Slots of the array variant of the start map (a power of two).
pub const SLOTS: u32 = 16384;

fn nr_test(a: &mut Asm, out: ktm::insn::Label) {
    let hit = a.label("nr_hit");
    a.jeq(R1, libc::SYS_read as i32, hit);
    a.jne(R1, libc::SYS_pread64 as i32, out);
    a.bind(hit);
}

/// Assembles a body.
pub fn program(body: &Body) -> R<Program> {
    let mut a = Asm::new();
    let out = a.label("out");
    a.mov64(R6, R1);
    match body {
        Body::Empty => {}
        Body::Filter(tests, count) => {
            for t in tests {
                match t {
                    Test::EnterNr => {
                        a.ldx_dw(R1, R6, 8);
                        nr_test(&mut a, out);
                    }
                    Test::ExitNr => {
                        let off = ORIG_AX.ok_or("the sys_exit syscall-number test is written for x86-64 only")?;
                        a.mov64(R1, R10);
                        a.add64(R1, -8);
                        a.mov64(R2, 8);
                        a.ldx_dw(R3, R6, 0);
                        a.add64(R3, off);
                        a.call(Helper::ProbeReadKernel);
                        a.ldx_dw(R1, R10, -8);
                        nr_test(&mut a, out);
                    }
                    Test::Cgroup => {
                        a.call(Helper::GetCurrentCgroupId);
                        a.ld_map_value(R1, CFG, 0);
                        a.ldx_dw(R1, R1, 0);
                        a.jne(R0, R1, out);
                    }
                    Test::TaskCgroup(layout) => {
                        layout.load_id(&mut a, R0);
                        a.ld_map_value(R1, CFG, 0);
                        a.ldx_dw(R1, R1, 0);
                        a.jne(R0, R1, out);
                    }
                }
            }
            {
                a.st_w(R10, -12, 0);
                a.map_call(Helper::MapLookupElem, CNT, -12);
                a.jeq(R0, 0, out);
                if matches!(count, Count::Atomic) {
                    a.mov64(R1, 1);
                    a.atomic_add64(R0, 0, R1);
                } else {
                    a.ldx_dw(R1, R0, 0);
                    a.add64(R1, 1);
                    a.stx_dw(R0, 0, R1);
                }
            }
        }
        Body::TsEnter => {
            a.call(Helper::GetCurrentPidTgid);
            a.stx_w(R10, -4, R0);
            a.call(Helper::KtimeGetNs);
            a.stx_dw(R10, -16, R0);
            a.mov64(R3, R10);
            a.add64(R3, -16);
            a.mov64(R4, 0);
            a.map_call(Helper::MapUpdateElem, TS, -4);
        }
        Body::TsExit => {
            a.call(Helper::GetCurrentPidTgid);
            a.stx_w(R10, -4, R0);
            a.map_call(Helper::MapLookupElem, TS, -4);
            a.jeq(R0, 0, out);
            a.ldx_dw(R6, R0, 0);
            a.map_call(Helper::MapDeleteElem, TS, -4);
            a.call(Helper::KtimeGetNs);
            a.sub64(R0, R6);
        }
        Body::Pid => {
            a.call(Helper::GetCurrentPidTgid);
        }
        Body::Clock => {
            a.call(Helper::GetCurrentPidTgid);
            a.call(Helper::KtimeGetNs);
        }
        Body::SlotEnter | Body::SlotExit => {
            a.call(Helper::GetCurrentPidTgid);
            a.mov32(R7, R0);
            a.mov64(R1, R7);
            a.and64(R1, SLOTS as i32 - 1);
            a.stx_w(R10, -4, R1);
            a.map_call(Helper::MapLookupElem, TS, -4);
            a.jeq(R0, 0, out);
            a.mov64(R8, R0);
            if matches!(body, Body::SlotEnter) {
                a.call(Helper::KtimeGetNs);
                a.stx_dw(R8, 8, R0);
                a.stx_dw(R8, 0, R7);
            } else {
                a.ldx_dw(R1, R8, 0);
                a.jne(R1, R7, out);
                a.ldx_dw(R6, R8, 8);
                a.st_dw(R8, 0, 0);
                a.call(Helper::KtimeGetNs);
                a.sub64(R0, R6);
            }
        }
    }
    a.bind(out);
    a.mov64(R0, 0);
    a.exit();
    Ok(a.finish()?)
}

/// A map definition for the comparison programs.
pub fn map_def(name: MapRef, map_type: MapType, value_size: u32, max_entries: u32, flags: u32) -> MapDef {
    MapDef { name, map_type, key_size: 4, value_size, max_entries, flags }
}

/// The counter: one u64, per-CPU or shared.
pub fn cnt(per_cpu: bool) -> MapDef {
    map_def(CNT, if per_cpu { MapType::PercpuArray } else { MapType::Array }, 8, 1, 0)
}

/// The cgroup-test config.
pub fn cfg() -> MapDef {
    map_def(CFG, MapType::Array, 8, 1, 0)
}

/// The start-timestamp map, as the iomonitor sizes it.
pub fn ts(kind: &str) -> MapDef {
    let entries = ktm::programs::layout::START_ENTRIES;
    match kind {
        "lru" => map_def(TS, MapType::LruHash, 8, entries, 0),
        "hash_noprealloc" => map_def(TS, MapType::Hash, 8, entries, F_NO_PREALLOC),
        // 128-byte slots: the used 16 bytes of neighbouring thread ids' slots never share a
        // cache line, wherever the kernel puts the array's first value (64-byte slots did,
        // and cost 70 ns per exit under two threads).
        "array" => map_def(TS, MapType::Array, 128, SLOTS, 0),
        _ => map_def(TS, MapType::Hash, 8, entries, 0),
    }
}

/// What to attach: maps, then one program per part.
#[derive(Clone, Debug)]
pub struct Design {
    pub maps: Vec<MapDef>,
    /// Value of cfg[0] (the cgroup id the test compares with).
    pub cgroup: Option<u64>,
    /// (label, point, body).
    pub parts: Vec<(String, AttachPoint, Body)>,
}

impl Design {
    pub fn new(maps: Vec<MapDef>) -> Design {
        Design { maps, cgroup: None, parts: Vec::new() }
    }

    pub fn part(mut self, label: &str, point: AttachPoint, body: Body) -> Design {
        self.parts.push((label.to_string(), point, body));
        self
    }
}

/// One attached program.
pub struct Part {
    pub label: String,
    pub point: AttachPoint,
    // Field order is drop order: detach, then close the program.
    _att: Attachment,
    pub prog: LoadedProgram,
}

/// A design, loaded and attached. Dropping it detaches everything.
pub struct Set {
    pub parts: Vec<Part>,
    _maps: Vec<Map>,
}

impl Set {
    pub fn build(d: &Design) -> R<Set> {
        let maps = d.maps.iter().map(|m| Map::create(*m)).collect::<Result<Vec<_>, _>>()?;
        if let (Some(id), Some(m)) = (d.cgroup, maps.iter().find(|m| m.def().name == CFG)) {
            m.update_raw(&0u32.to_ne_bytes(), &id.to_ne_bytes())?;
        }
        let fd_of = |r: MapRef| maps.iter().find(|m| m.def().name == r).map(|m| m.as_raw_fd());
        let mut parts = Vec::new();
        for (label, point, body) in &d.parts {
            let spec = ProgramSpec {
                name: format!("b_{label}"),
                prog_type: point.prog_type(),
                program: program(body)?,
                attach: point.load_target()?,
            };
            let prog = load::program(&spec, fd_of).map_err(|e| format!("load {label} for {point}: {e}"))?;
            let att = attach::attach_program(&prog, point).map_err(|e| format!("attach {label} at {point}: {e}"))?;
            parts.push(Part { label: label.clone(), point: point.clone(), _att: att, prog });
        }
        Ok(Set { parts, _maps: maps })
    }

    /// Sum over CPUs of counter slot 0, when the design has a counter.
    pub fn count(&self) -> Option<u64> {
        let m = self._maps.iter().find(|m| m.def().name == CNT)?;
        let raw = m.lookup_raw(&0u32.to_ne_bytes()).ok()??;
        Some(raw.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]))).sum())
    }

    /// (label, point, program) of each part.
    pub fn programs(&self) -> Vec<(String, String, &LoadedProgram)> {
        self.parts.iter().map(|p| (p.label.clone(), p.point.to_string(), &p.prog)).collect()
    }
}

impl Drop for Set {
    /// Detaches the parts in parallel: closing a classic tracepoint's perf event waits for
    /// `tracepoint_synchronize_unregister` (about 70 ms here), one after another otherwise.
    fn drop(&mut self) {
        let parts = std::mem::take(&mut self.parts);
        if parts.len() < 2 {
            return;
        }
        std::thread::scope(|s| {
            for p in parts {
                s.spawn(move || drop(p));
            }
        });
    }
}

/// Program statistics over one workload: ns per run and runs.
#[derive(Clone, Debug)]
pub struct ProgStat {
    pub label: String,
    pub point: String,
    pub runs: u64,
    pub ns_per_run: f64,
}

/// (run_time_ns, run_cnt) of each program now.
pub fn stats_now(progs: &[(String, String, &LoadedProgram)]) -> R<Vec<(u64, u64)>> {
    progs.iter().map(|(_, _, p)| Ok(p.info().map(|i| (i.run_time_ns, i.run_cnt))?)).collect()
}

/// The difference of two [`stats_now`] readings.
pub fn stats_delta(progs: &[(String, String, &LoadedProgram)], a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<ProgStat> {
    progs
        .iter()
        .zip(a.iter().zip(b))
        .map(|((label, point, _), (x, y))| {
            let runs = y.1.saturating_sub(x.1);
            let ns = y.0.saturating_sub(x.0);
            ProgStat {
                label: label.clone(),
                point: point.clone(),
                runs,
                ns_per_run: if runs == 0 { f64::NAN } else { ns as f64 / runs as f64 },
            }
        })
        .collect()
}

/// Empty programs on the given points (the iomonitor's: the floor of the workload rows).
pub fn floor_design(points: &[(String, AttachPoint)]) -> Design {
    let mut d = Design::new(Vec::new());
    for (name, p) in points {
        d = d.part(name, p.clone(), Body::Empty);
    }
    d
}
