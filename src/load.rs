//! Loading programs into the kernel.
//!
//! A first attempt loads without a verifier log, which is the fast path (the log costs time
//! and memory in the kernel). Only when the kernel refuses does the loader retry with a log,
//! growing it until the verifier's whole story fits, so the error can quote it.

use crate::error::VerifierError;
use crate::insn::{self, Program};
use crate::sys::bpf::{self, AttachType, ProgLoad, ProgType};
use crate::sys::{AsFd, BorrowedFd, OwnedFd};
use crate::{Error, Result};

/// Everything needed to load one program.
#[derive(Clone, Debug)]
pub struct ProgramSpec {
    /// Up to 15 bytes show in `bpftool prog`.
    pub name: String,
    pub prog_type: ProgType,
    pub program: Program,
    /// Set for fentry/fexit: the attach type and the BTF id of the traced function.
    pub attach: Option<(AttachType, u32)>,
}

/// License string the programs are loaded under; GPL is required for the tracing helpers.
pub const LICENSE: &str = "GPL";

/// A program the kernel accepted. Dropping it closes the fd; the kernel frees the program
/// once no attachment holds it either.
#[derive(Debug)]
pub struct LoadedProgram {
    fd: OwnedFd,
    name: String,
    prog_type: ProgType,
    id: u32,
    tag: [u8; 8],
    insn_count: usize,
}

impl LoadedProgram {
    /// The kernel's program id (what `bpftool prog show id N` takes).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program type.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// The kernel's tag (a hash of the instructions), as hex.
    pub fn tag(&self) -> String {
        self.tag.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Instruction slots loaded.
    pub fn insn_count(&self) -> usize {
        self.insn_count
    }

    /// Current kernel-side facts: run counters (with stats enabled), verified instructions.
    pub fn info(&self) -> Result<bpf::ProgInfo> {
        bpf::prog_info(self.fd.as_fd())
    }
}

impl AsFd for LoadedProgram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

const LOG_START: usize = 64 * 1024;
const LOG_MAX: usize = 16 * 1024 * 1024;

/// Loads `spec` with its map references resolved by `fd_of`.
pub fn program(spec: &ProgramSpec, fd_of: impl Fn(insn::MapRef) -> Option<i32>) -> Result<LoadedProgram> {
    let raw = spec.program.resolve(fd_of)?;
    let bytes = insn::to_bytes(&raw);
    let p = ProgLoad {
        prog_type: spec.prog_type,
        name: &spec.name,
        license: LICENSE,
        expected_attach_type: spec.attach.map(|(t, _)| t),
        attach_btf_id: spec.attach.map_or(0, |(_, id)| id),
    };
    let fd = match bpf::prog_load(&p, &bytes, 0, &mut []) {
        Ok(fd) => fd,
        Err(first) => match first.errno() {
            // Only these come from verification; others (EPERM, E2BIG, ENOENT...) have no log to add.
            Some(libc::EACCES) | Some(libc::EINVAL) => return Err(explain(spec, &p, &bytes, first)),
            _ => return Err(first),
        },
    };
    let info = bpf::prog_info(fd.as_fd())?;
    Ok(LoadedProgram {
        fd,
        name: spec.name.clone(),
        prog_type: spec.prog_type,
        id: info.id,
        tag: info.tag,
        insn_count: raw.len(),
    })
}

/// Reloads with a growing verifier log and turns the refusal into a [`VerifierError`].
fn explain(spec: &ProgramSpec, p: &ProgLoad<'_>, bytes: &[u8], first: Error) -> Error {
    let mut size = LOG_START;
    loop {
        let mut log = vec![0u8; size];
        match bpf::prog_load(p, bytes, 1, &mut log) {
            // Accepted on the second try: a transient failure; report the first.
            Ok(_) => return first,
            Err(e) if e.errno() == Some(libc::ENOSPC) && size < LOG_MAX => size *= 4,
            Err(e) => {
                let errno = e.errno().unwrap_or(libc::EINVAL);
                let log = bpf::name_str(&log);
                if log.trim().is_empty() {
                    return e;
                }
                if errno == libc::EPERM {
                    if let Some(done) = log.lines().find(|l| l.starts_with("processed ")) {
                        return Error::Unsupported(crate::Unsupported {
                            why: format!(
                                "the kernel verified program `{}` ({done}) and then refused to load it: {} \
                                 (a policy of this kernel, not a fault in the program)",
                                spec.name,
                                std::io::Error::from_raw_os_error(errno)
                            ),
                            errno: Some(errno),
                        });
                    }
                }
                let insn_index = log.lines().rev().find_map(VerifierError::traced_insn);
                let insn_text = insn_index.and_then(|i| insn::disasm_at(&spec.program, i));
                let site = insn_index.and_then(|i| spec.program.site(i));
                return Error::Verifier(Box::new(VerifierError {
                    program: spec.name.clone(),
                    errno,
                    log,
                    insn_index,
                    insn_text,
                    site,
                }));
            }
        }
    }
}
