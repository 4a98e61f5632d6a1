//! Whom the iomonitor counts in the workload rows: the bench thread (its comm, its cgroup,
//! its pid namespace) as the target, and neighbours (another comm, another cgroup, another
//! pod's pid namespace).

use super::harness::R;
use ktm::iomonitor::Scope;

/// The comm of the measuring thread (target in comm mode).
pub const COMM: &str = "ktmbench";

/// A comm prefix no process here has (neighbour in comm mode).
pub const OTHER_COMM: &str = "banyand";

/// The target's and a neighbour's cgroup ids and pid namespaces.
pub struct Ids {
    pub mine: u64,
    pub other: u64,
    /// The bench's own pid namespace (the pod of the target rows).
    pub own_pidns: ktm::discovery::PidNs,
    /// A pid namespace the bench is not in (another pod's, for the neighbour rows).
    pub other_pidns: ktm::discovery::PidNs,
}

/// A child holding a pid namespace of its own (it unshared one and sleeps), and that
/// namespace. The bench thread is never in it: a same-comm neighbour of another pod.
pub fn other_pid_namespace() -> R<(HeldNs, ktm::discovery::PidNs)> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("3600");
    // The namespace is named through /proc only once a process lives in it: the child
    // forks its init (the sleep) and waits, outside it, letting go of every fd but stdio.
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let init = libc::fork();
            if init < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if init > 0 {
                for fd in 3..1024 {
                    libc::close(fd);
                }
                let mut status = 0;
                libc::waitpid(init, &mut status, 0);
                libc::_exit(0);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let meta = std::fs::metadata(format!("/proc/{}/ns/pid_for_children", child.id()))?;
    let dev = meta.dev();
    let ns = ktm::discovery::PidNs {
        dev: (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev)),
        ino: meta.ino(),
    };
    Ok((HeldNs(child), ns))
}

/// The child holding a namespace, killed with the bench.
pub struct HeldNs(std::process::Child);

impl Drop for HeldNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn variants(ids: &Ids) -> Vec<(&'static str, Scope)> {
    vec![
        ("ktm nbr off", Scope::Off),
        ("ktm nbr cgroup", Scope::Cgroup(ids.other)),
        ("ktm nbr comm", Scope::Comm(OTHER_COMM.into())),
        ("ktm tgt cgroup", Scope::Cgroup(ids.mine)),
        ("ktm tgt comm", Scope::Comm(COMM.into())),
        // The pod: a BanyanDB of another pod has the target's comm and fails the pid
        // namespace test; the target passes it while its cgroup id is being learned.
        (
            "ktm nbr pod comm",
            Scope::CommInPidNs { prefix: COMM.into(), pidns: ids.other_pidns, narrow: true, learn: None },
        ),
        (
            "ktm tgt pod comm",
            Scope::CommInPidNs { prefix: COMM.into(), pidns: ids.own_pidns, narrow: true, learn: Some(1) },
        ),
    ]
}
