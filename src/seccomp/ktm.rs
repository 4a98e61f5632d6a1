//! KTM's own filter: the calls a running sidecar makes once its programs are attached, and
//! nothing that loads, attaches or opens perf events.
//!
//! The list was measured, not guessed: `ktm run` (textfile and stdout recorders) and
//! `ktm demo` under `strace -f`, every call after the filter's installation that answered
//! EPERM added (fchmod for the textfile; fadvise64, rmdir, kill, wait4 for the demo), and
//! `tests/lockdown.rs` runs the steady state under it. `ktm run --seccomp log` (default
//! [`Action::Log`]) redoes it on a new libc or kernel: the kernel logs each call the list
//! misses. It covers the collector (discovery in `/proc`
//! and cgroupfs, map reads and the scope map's updates through `bpf()`, the textfile's
//! write and rename; fsync for the demo's cold file), logging to stderr, signal waiting, thread creation and the
//! calls a std `TcpListener` HTTP server makes per connection.

use super::cbpf::Action;
use super::policy::{ArgCheck, Policy, Rule};
use crate::sys::bpf::cmd;

/// The `bpf()` commands allowed after lock-down: map reads, updates (the scope map),
/// deletes and key walks, and object info (program run counts in the status). Everything
/// else (`BPF_PROG_LOAD`, `BPF_MAP_CREATE`, `BPF_LINK_CREATE`, `BPF_RAW_TRACEPOINT_OPEN`,
/// `BPF_*_GET_FD_BY_ID`, `BPF_ENABLE_STATS`, ...) answers EPERM.
pub const BPF_ALLOWED: [u32; 5] =
    [cmd::MAP_LOOKUP_ELEM, cmd::MAP_UPDATE_ELEM, cmd::MAP_DELETE_ELEM, cmd::MAP_GET_NEXT_KEY, cmd::OBJ_GET_INFO_BY_FD];

macro_rules! calls {
    ($($name:ident),* $(,)?) => { &[$((stringify!($name), libc::$name)),*] };
}

/// The calls allowed whatever their arguments.
pub const STEADY_STATE_SYSCALLS: &[(&str, libc::c_long)] = calls![
    // files: /proc, cgroupfs, the textfile (written beside, renamed over), the demo's files
    SYS_read,
    SYS_write,
    SYS_readv,
    SYS_writev,
    SYS_pread64,
    SYS_pwrite64,
    SYS_openat,
    SYS_close,
    SYS_lseek,
    SYS_fstat,
    SYS_newfstatat,
    SYS_statx,
    SYS_getdents64,
    SYS_readlinkat,
    SYS_fsync,
    SYS_fdatasync,
    SYS_renameat2,
    SYS_unlinkat,
    SYS_mkdirat,
    SYS_ftruncate,
    SYS_fcntl,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_getcwd,
    SYS_dup,
    SYS_dup3,
    SYS_pipe2,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fstatfs,
    SYS_statfs,
    SYS_fadvise64,
    // memory (mmap and mprotect without PROT_EXEC: see below)
    SYS_munmap,
    SYS_mremap,
    SYS_madvise,
    SYS_brk,
    // time, sleeping, waiting
    SYS_futex,
    SYS_sched_yield,
    SYS_nanosleep,
    SYS_clock_nanosleep,
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_gettimeofday,
    SYS_getrandom,
    SYS_ppoll,
    SYS_pselect6,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_eventfd2,
    // signals (SIGTERM/SIGINT waited for with sigtimedwait)
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_rt_sigtimedwait,
    SYS_sigaltstack,
    SYS_tgkill,
    SYS_restart_syscall,
    // the demo's workload child, killed and reaped at its end (signals obey the uid, not
    // a capability)
    SYS_kill,
    SYS_wait4,
    SYS_waitid,
    // threads: the collector's, the HTTP server's per connection
    SYS_clone,
    SYS_set_robust_list,
    SYS_rseq,
    SYS_set_tid_address,
    SYS_exit,
    SYS_exit_group,
    SYS_gettid,
    SYS_getpid,
    SYS_getppid,
    SYS_sched_getaffinity,
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_uname,
    SYS_prlimit64,
    SYS_sysinfo,
    SYS_membarrier,
    // sockets: accept, read, write, options, shutdown of an HTTP server's connections
    SYS_socket,
    SYS_bind,
    SYS_listen,
    SYS_accept,
    SYS_accept4,
    SYS_connect,
    SYS_recvfrom,
    SYS_recvmsg,
    SYS_sendto,
    SYS_sendmsg,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_shutdown,
    SYS_getsockname,
    SYS_getpeername,
    SYS_socketpair,
];

/// The legacy calls only x86-64 has (aarch64 has the `*at` and `p*` forms above only).
#[cfg(target_arch = "x86_64")]
const LEGACY: &[(&str, libc::c_long)] = calls![
    SYS_open,
    SYS_stat,
    SYS_lstat,
    SYS_access,
    SYS_readlink,
    SYS_rename,
    SYS_unlink,
    SYS_mkdir,
    SYS_rmdir,
    SYS_renameat,
    SYS_getrlimit,
    SYS_poll,
    SYS_select,
    SYS_epoll_wait,
    SYS_pipe,
    SYS_dup2,
    SYS_arch_prctl,
    SYS_time,
];
#[cfg(not(target_arch = "x86_64"))]
const LEGACY: &[(&str, libc::c_long)] = &[];

const EPERM: u16 = libc::EPERM as u16;
const ENOSYS: u16 = libc::ENOSYS as u16;

/// KTM's steady-state policy: the list above, `bpf()` with [`BPF_ALLOWED`] commands only,
/// `ioctl()` for terminal and non-blocking queries only (so no `PERF_EVENT_IOC_SET_BPF`),
/// `prctl()` for thread names and reading back the lock-down only, `mmap`/`mprotect` never
/// executable; `clone3` answers ENOSYS, so the C library falls back to `clone` (whose
/// flags are in a register the filter can see); every other call EPERM, or whatever
/// `default` says (`Action::Log` to measure the list).
pub fn steady_state(default: Action) -> Policy {
    let mut rules: Vec<Rule> =
        STEADY_STATE_SYSCALLS.iter().chain(LEGACY).map(|&(name, nr)| Rule::allow(name, nr)).collect();
    let checked = |name, nr, check| Rule { name, nr, check: Some(check), action: Action::Allow };
    rules.push(checked("bpf", libc::SYS_bpf, ArgCheck::OneOf { arg: 0, values: BPF_ALLOWED.to_vec() }));
    rules.push(checked(
        "ioctl",
        libc::SYS_ioctl,
        ArgCheck::OneOf {
            arg: 1,
            values: [libc::TCGETS, libc::TIOCGWINSZ, libc::FIONBIO, libc::FIOCLEX, libc::FIONCLEX]
                .map(|c| c as u32)
                .to_vec(),
        },
    ));
    rules.push(checked(
        "prctl",
        libc::SYS_prctl,
        ArgCheck::OneOf {
            arg: 0,
            values: [libc::PR_SET_NAME, libc::PR_GET_NAME, libc::PR_CAPBSET_READ, libc::PR_GET_NO_NEW_PRIVS]
                .map(|c| c as u32)
                .to_vec(),
        },
    ));
    for (name, nr) in [("mmap", libc::SYS_mmap), ("mprotect", libc::SYS_mprotect)] {
        rules.push(checked(name, nr, ArgCheck::Clear { arg: 2, mask: libc::PROT_EXEC as u64 }));
    }
    rules.push(Rule { name: "clone3", nr: libc::SYS_clone3, check: None, action: Action::Errno(ENOSYS) });
    let default = match default {
        Action::Allow => Action::Errno(EPERM), // an allow-all default would be no filter at all
        d => d,
    };
    Policy { rules, default }
}

#[cfg(test)]
mod tests {
    use super::super::{disassemble, run, SeccompData};
    use super::*;

    fn ask(nr: libc::c_long, args: &[u64]) -> Action {
        let p = steady_state(Action::Errno(EPERM)).build().expect("the policy assembles");
        run(&p, &SeccompData::call(nr, args)).expect("the filter runs to a return")
    }

    #[test]
    fn loads_attaches_and_perf_events_are_refused() {
        for c in [cmd::MAP_CREATE, cmd::PROG_LOAD, cmd::LINK_CREATE, cmd::RAW_TRACEPOINT_OPEN, cmd::ENABLE_STATS] {
            assert_eq!(ask(libc::SYS_bpf, &[u64::from(c)]), Action::Errno(EPERM), "bpf cmd {c}");
        }
        for c in [
            cmd::PROG_GET_FD_BY_ID,
            cmd::MAP_GET_FD_BY_ID,
            6,  /* OBJ_PIN */
            7,  /* OBJ_GET */
            18, /* BTF_LOAD */
        ] {
            assert_eq!(ask(libc::SYS_bpf, &[u64::from(c)]), Action::Errno(EPERM), "bpf cmd {c}");
        }
        for c in BPF_ALLOWED {
            assert_eq!(ask(libc::SYS_bpf, &[u64::from(c)]), Action::Allow, "bpf cmd {c}");
        }
        assert_eq!(ask(libc::SYS_perf_event_open, &[]), Action::Errno(EPERM));
        const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;
        assert_eq!(ask(libc::SYS_ioctl, &[3, PERF_EVENT_IOC_SET_BPF, 4]), Action::Errno(EPERM));
        assert_eq!(ask(libc::SYS_ioctl, &[1, libc::TCGETS]), Action::Allow);
        for (name, nr) in [
            ("init_module", libc::SYS_init_module),
            ("finit_module", libc::SYS_finit_module),
            ("ptrace", libc::SYS_ptrace),
            ("execve", libc::SYS_execve),
            ("mount", libc::SYS_mount),
            ("unshare", libc::SYS_unshare),
            ("setns", libc::SYS_setns),
            ("capset", libc::SYS_capset),
            ("kexec_load", libc::SYS_kexec_load),
        ] {
            assert_eq!(ask(nr, &[]), Action::Errno(EPERM), "{name}");
        }
        assert_eq!(ask(libc::SYS_prctl, &[libc::PR_SET_SECCOMP as u64]), Action::Errno(EPERM));
        assert_eq!(ask(libc::SYS_prctl, &[libc::PR_SET_NAME as u64]), Action::Allow);
        assert_eq!(ask(libc::SYS_clone3, &[]), Action::Errno(ENOSYS), "glibc falls back to clone");
        let rwx = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        assert_eq!(ask(libc::SYS_mmap, &[0, 4096, rwx]), Action::Errno(EPERM));
        assert_eq!(ask(libc::SYS_mprotect, &[0, 4096, libc::PROT_EXEC as u64]), Action::Errno(EPERM));
        assert_eq!(ask(libc::SYS_mmap, &[0, 4096, (libc::PROT_READ | libc::PROT_WRITE) as u64]), Action::Allow);
    }

    #[test]
    fn the_steady_state_is_allowed() {
        for &(name, nr) in STEADY_STATE_SYSCALLS.iter().chain(LEGACY) {
            assert_eq!(ask(nr, &[]), Action::Allow, "{name}");
        }
    }

    #[test]
    fn the_filter_is_small_and_disassembles() {
        let p = steady_state(Action::Log).build().unwrap();
        assert!(p.len() < 400, "{} instructions", p.len());
        let text = disassemble(&p);
        assert!(!text.contains("raw"), "{text}");
        assert!(text.lines().last().unwrap().ends_with("ret LOG"), "{text}");
        assert_eq!(run(&p, &SeccompData::call(libc::SYS_perf_event_open, &[])), Some(Action::Log));
    }
}
