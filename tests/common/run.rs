//! `ktm run` as a child writing its batches to a file (`--output`): the config written,
//! the child spawned, a wait for a batch, SIGTERM and its output.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `ktm run --output FILE` child, with its scratch directory (config and FILE).
pub struct KtmRun {
    pub child: Child,
    /// The `--output` file.
    pub out: PathBuf,
    _dir: tempfile::TempDir,
}

impl KtmRun {
    /// Spawns `ktm run` with `yaml` (if any) as its `--config`, then `args`, then `--output`;
    /// stderr piped.
    pub fn spawn(yaml: Option<&str>, args: &[&str]) -> KtmRun {
        KtmRun::spawn_with(yaml, args, None)
    }

    /// As [`KtmRun::spawn`], running `pre_exec` in the child before exec.
    pub fn spawn_with(yaml: Option<&str>, args: &[&str], pre_exec: Option<fn() -> std::io::Result<()>>) -> KtmRun {
        let dir = super::scratch();
        let out = dir.path().join("m.prom");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ktm"));
        cmd.arg("run");
        if let Some(yaml) = yaml {
            let cfg = dir.path().join("ktm.yaml");
            std::fs::write(&cfg, yaml).unwrap();
            cmd.arg("--config").arg(cfg);
        }
        cmd.args(args).arg("--output").arg(&out).stderr(Stdio::piped());
        if let Some(f) = pre_exec {
            // SAFETY: `f` is a plain function the test wrote for the child (prctl/capset calls).
            unsafe { cmd.pre_exec(f) };
        }
        KtmRun { child: cmd.spawn().unwrap(), out, _dir: dir }
    }

    /// Waits (20 s at most) until the output file exists and its text satisfies `ok`, and
    /// returns that text; fails naming `what` on timeout or if `ktm run` exits meanwhile.
    pub fn wait_for(&mut self, what: &str, mut ok: impl FnMut(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            assert!(self.child.try_wait().unwrap().is_none(), "ktm run exited while waiting: {what}");
            assert!(t.elapsed() < Duration::from_secs(20), "{what}");
            if let Ok(s) = std::fs::read_to_string(&self.out) {
                if ok(&s) {
                    return s;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then how the child ended and what it left in the output file.
    pub fn sigterm(self) -> Stopped {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let o = self.child.wait_with_output().unwrap();
        Stopped {
            status: o.status,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            written: std::fs::read_to_string(&self.out).ok(),
        }
    }
}

/// A `ktm run` child after [`KtmRun::sigterm`].
pub struct Stopped {
    pub status: std::process::ExitStatus,
    pub stderr: String,
    /// The output file's last batch, if it wrote one.
    pub written: Option<String>,
}
