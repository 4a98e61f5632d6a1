//! What the running system tells a process about itself through procfs, that the toolkit's
//! syscall and attach layers need and the application reuses: the mount table (`mounts`: where
//! tracefs, securityfs and cgroup2 are) and the pid namespace (`pidns`: how a BPF program names it).

pub mod mounts;
pub mod pidns;

pub use pidns::PidNs;
