//! Which tasks the programs count ([`Scope`]), as the config record they read.

use crate::discovery::PidNs;
use crate::programs::layout::{self, config, ConfigRecord};

/// Which tasks count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Nothing counts (no target known).
    Off,
    /// Tasks whose cgroup v2 id is this.
    Cgroup(u64),
    /// Tasks whose comm starts with this prefix (at most 15 bytes).
    Comm(String),
    /// Comm mode inside a pid namespace: a sidecar sharing its pod's pid namespace counts
    /// only that pod's tasks with the prefix (`narrow`), and learns the cgroup id of thread
    /// group `learn` (as numbered in `pidns`) from its first event ([`IoMonitor::learned_cgroup`](super::IoMonitor::learned_cgroup)).
    CommInPidNs { prefix: String, pidns: PidNs, narrow: bool, learn: Option<u32> },
    /// Cgroup mode on `id`, whose one process is thread group `target` (as numbered in
    /// `pidns`, the pod's), guarded by the rename hook: when a task of the pod takes a name
    /// with `prefix` in another cgroup (BanyanDB restarted or recreated), or a task of
    /// another name execs in this cgroup (a shell exec'd into BanyanDB's container), the
    /// hook switches to comm mode narrowed to the pod at once, and the collector
    /// re-discovers ([`IoMonitor::renamed`](super::IoMonitor::renamed)).
    Guarded { id: u64, target: u32, prefix: String, pidns: PidNs },
}

impl Scope {
    pub(super) fn record(&self) -> ConfigRecord {
        let mut r = [0u64; config::WORDS];
        match self {
            Scope::Off => r[config::MODE] = config::MODE_OFF,
            Scope::Cgroup(id) => {
                r[config::MODE] = config::MODE_CGROUP;
                r[config::CGROUP_ID] = *id;
            }
            Scope::Comm(prefix) => comm(&mut r, prefix),
            Scope::CommInPidNs { prefix, pidns, narrow, learn } => {
                comm(&mut r, prefix);
                r[config::PIDNS_DEV] = pidns.dev;
                r[config::PIDNS_INO] = pidns.ino;
                r[config::NARROW] = u64::from(*narrow);
                r[config::LEARN_TGID] = learn.map_or(0, u64::from);
                // Narrowed comm mode is what the hook switches to: it may act.
                r[config::WATCH] = u64::from(*narrow);
            }
            Scope::Guarded { id, target, prefix, pidns } => {
                comm(&mut r, prefix);
                r[config::PIDNS_DEV] = pidns.dev;
                r[config::PIDNS_INO] = pidns.ino;
                r[config::NARROW] = 1;
                r[config::WATCH] = 1;
                r[config::TARGET_TGID] = u64::from(*target);
                r[config::MODE] = config::MODE_CGROUP;
                r[config::CGROUP_ID] = *id;
            }
        }
        return r;

        fn comm(r: &mut ConfigRecord, prefix: &str) {
            let (p, m) = layout::comm_words(prefix);
            r[config::MODE] = config::MODE_COMM;
            r[config::PREFIX_LO] = p[0];
            r[config::PREFIX_HI] = p[1];
            r[config::MASK_LO] = m[0];
            r[config::MASK_HI] = m[1];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_cgroup_mode_carries_what_the_rename_hook_switches_to() {
        let pidns = PidNs { dev: 4, ino: 4026532000 };
        let g = Scope::Guarded { id: 77, target: 12, prefix: "banyand".into(), pidns }.record();
        let c = Scope::CommInPidNs { prefix: "banyand".into(), pidns, narrow: true, learn: None }.record();
        assert_eq!((g[config::MODE], g[config::CGROUP_ID], g[config::TARGET_TGID]), (config::MODE_CGROUP, 77, 12));
        assert_eq!(g[config::WATCH], 1);
        // Switching MODE alone turns it into narrowed comm mode.
        let mut switched = g;
        switched[config::MODE] = config::MODE_COMM;
        for w in [config::PREFIX_LO, config::PREFIX_HI, config::MASK_LO, config::MASK_HI, config::NARROW] {
            assert_eq!(switched[w], c[w], "word {w}");
        }
        assert_eq!((switched[config::PIDNS_DEV], switched[config::PIDNS_INO]), (4, 4026532000));
        // The hook never acts where comm mode is not narrowed (hostPID), nor in plain cgroup mode.
        let wide = Scope::CommInPidNs { prefix: "banyand".into(), pidns, narrow: false, learn: None }.record();
        assert_eq!(wide[config::WATCH], 0);
        assert_eq!(Scope::Cgroup(77).record()[config::WATCH], 0);
    }
}
