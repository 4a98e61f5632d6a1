//! Writes the generated programs as an eBPF ELF relocatable object (`ktm emit-elf`).
//!
//! KTM never needs an object file to run: it loads its programs straight from the
//! assembler. The object exists so that independent tools (`llvm-objdump -d`, `readelf`,
//! `bpftool`) can read exactly the instructions the crate hands to `BPF_PROG_LOAD`, which is
//! how a reviewer or a test checks the assembler against something it did not write.
//!
//! Layout, following what clang emits for a C BPF program:
//! - one `SHF_ALLOC | SHF_EXECINSTR` section per attach point, named as libbpf's `SEC()`
//!   would name it ([`AttachPoint::section`](crate::attach::AttachPoint::section)), holding each program's slots as
//!   [`Program::insns`](crate::insn::Program::insns) returns them (map references still zero), with a global `STT_FUNC`
//!   symbol per program;
//! - a `.rel<section>` section with one `R_BPF_64_64` relocation per map reference, against
//!   the map's symbol, at the first slot of the 64-bit immediate load;
//! - a legacy `maps` section of `struct bpf_map_def` records with one `STT_OBJECT` symbol per
//!   map, because BTF-defined `.maps` need a `.BTF` section that KTM does not generate (it
//!   builds programs without BTF so that no toolchain is needed);
//! - a `license` section holding `"GPL\0"` with its `_license` symbol, because the helpers the
//!   programs call are GPL-only and a loader reads the license from there.
//!
//! There is no `version` section: it only fed `kern_version` for kprobes on kernels before
//! 5.0, and KTM targets 5.10 and later.
//!
//! The object is for inspection, not for loading with libbpf 1.x: libbpf 1.0 dropped the
//! legacy `maps` section, and even older libbpf would mis-load direct value references (see
//! [`write_object`]). Making it loadable would take generated BTF for `.maps` and turning
//! the config map into a `.bss`-style data section, which changes the map's name and how
//! userspace reaches it.
//!
//! [`writer`] is the generic part (any programs, any maps); [`iomonitor`] picks the
//! iomonitor's programs and maps and names their symbols.

pub mod iomonitor;
pub mod writer;

pub use iomonitor::{iomonitor_maps, iomonitor_object, iomonitor_programs, program_symbol};
pub use writer::{write_object, ElfProgram, LICENSE_SECTION, LICENSE_SYMBOL, MAPS_SECTION, MAP_DEF_SIZE};
