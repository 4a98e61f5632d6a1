//! A workload child that performs exactly the I/O it is told to.
//!
//! Tests and the demo need a target process whose syscalls are known to the call. The child
//! takes commands over a Unix socket, which it reads with recv(2): reading them with read(2)
//! would add reads of its own to the very counters being checked.

use crate::{Error, Result};
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// `posix_fadvise` advice values, in the kernel's numbering, named as the metric catalogue's
/// `advice` label names them (value i is the catalogue's i-th; its last, "other", is no
/// advice of the kernel's).
pub const ADVICE: [(&str, i32); 6] = {
    let v = crate::catalogue::ADVICE_VALUES;
    [(v[0], 0), (v[1], 1), (v[2], 2), (v[3], 3), (v[4], 4), (v[5], 5)]
};

/// A running workload child. Dropping it kills the child.
#[derive(Debug)]
pub struct Workload {
    child: Child,
    sock: UnixStream,
    out: BufReader<ChildStdout>,
}

impl Workload {
    /// Starts `bin workload --comm COMM` and, when `cgroup` is given, moves it into that cgroup
    /// v2 directory once it has answered its first command, and so before it does anything it
    /// is told. Not earlier: the dynamic loader's and the runtime's own start-up I/O (glibc's
    /// ld.so preads libc's program headers twice; Rust's runtime reads /proc/self/maps) would
    /// race the move and land in a monitored cgroup on some runs and not on others.
    pub fn spawn(bin: &Path, comm: &str, cgroup: Option<&Path>) -> Result<Workload> {
        let mut cmd = Command::new(bin);
        cmd.args(["workload", "--comm", comm]);
        let mut w = Self::start(&mut cmd)?;
        w.run("ping")?;
        if let Some(cg) = cgroup {
            w.move_to(cg)?;
        }
        Ok(w)
    }

    /// Starts a child from a prepared command that runs `ktm workload --comm COMM` (a test
    /// that places the child in namespaces of its own sets them up in `cmd`), and waits for
    /// its first reply.
    pub fn spawn_prepared(mut cmd: Command) -> Result<Workload> {
        let mut w = Self::start(&mut cmd)?;
        w.run("ping")?;
        Ok(w)
    }

    fn start(cmd: &mut Command) -> Result<Workload> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
        let mut child = cmd
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("spawn {} workload", Path::new(cmd.get_program()).display()), e))?;
        let out = BufReader::new(child.stdout.take().ok_or_else(|| Error::Other("workload has no stdout".into()))?);
        Ok(Workload { child, sock: ours, out })
    }

    /// The child's pid (also its thread id: it is single-threaded).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Moves the child into another cgroup v2 directory.
    pub fn move_to(&mut self, cgroup: &Path) -> Result<()> {
        let procs = cgroup.join("cgroup.procs");
        std::fs::write(&procs, self.pid().to_string()).map_err(|e| Error::io(format!("write {}", procs.display()), e))
    }

    /// Sends one command line and waits for its reply; returns the reply's value.
    pub fn run(&mut self, command: &str) -> Result<String> {
        self.sock.write_all(format!("{command}\n").as_bytes()).map_err(|e| Error::io("send to workload", e))?;
        let mut line = String::new();
        self.out.read_line(&mut line).map_err(|e| Error::io("read from workload", e))?;
        match line.trim_end().split_once(' ').unwrap_or((line.trim_end(), "")) {
            ("ok", v) => Ok(v.to_string()),
            ("err", why) => Err(Error::Other(format!("workload `{command}`: {why}"))),
            _ => Err(Error::Other(format!("workload `{command}`: died or answered {line:?}"))),
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the calling thread's comm (what `/proc/PID/comm` and `bpf_get_current_comm` show).
pub fn set_comm(comm: &str) -> Result<()> {
    let c = CString::new(comm).map_err(|_| Error::Other("comm contains NUL".into()))?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of up to 16 bytes.
    if unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(Error::last_os("prctl(PR_SET_NAME)"));
    }
    Ok(())
}

/// The child's main loop: `ktm workload --comm NAME`, commands on fd 0 (a socket).
pub fn child_main(comm: &str) -> i32 {
    if let Err(e) = set_comm(comm) {
        eprintln!("workload: {e}");
        return 1;
    }
    // SAFETY: fd 0 is the socket the parent passed and nothing else in this process uses it.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) });
    let mut commands = BufReader::new(sock);
    let stdout = std::io::stdout();
    let mut line = String::new();
    loop {
        line.clear();
        match commands.read_line(&mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        let reply = match execute(line.trim()) {
            Ok(Some(v)) => format!("ok {v}\n"),
            Ok(None) => return 0,
            Err(e) => format!("err {e}\n"),
        };
        let mut out = stdout.lock();
        if out.write_all(reply.as_bytes()).and_then(|_| out.flush()).is_err() {
            return 0;
        }
    }
}

fn num<T: std::str::FromStr>(args: &[&str], i: usize, what: &str) -> Result<T> {
    args.get(i).and_then(|s| s.parse().ok()).ok_or_else(|| Error::Other(format!("missing or bad {what}")))
}

fn open(path: &str, flags: libc::c_int) -> Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| Error::Other("path contains NUL".into()))?;
    // SAFETY: c is NUL-terminated.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(Error::last_os(format!("open {path}")));
    }
    // SAFETY: open just returned this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn advice(name: &str) -> Result<i32> {
    ADVICE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .or_else(|| name.parse().ok())
        .ok_or_else(|| Error::Other(format!("unknown advice {name}")))
}

/// Runs one command. `Ok(None)` means exit.
fn execute(line: &str) -> Result<Option<String>> {
    let args: Vec<&str> = line.split_whitespace().collect();
    let Some((&cmd, rest)) = args.split_first() else {
        return Ok(Some(String::new()));
    };
    let path = || rest.first().copied().ok_or_else(|| Error::Other("missing path".into()));
    match cmd {
        "ping" => Ok(Some(std::process::id().to_string())),
        "exit" => Ok(None),
        // pread PATH COUNT SIZE [OFFSET]: COUNT pread64 calls of SIZE bytes at OFFSET (default
        // 0); replies the bytes returned. PATH "-" uses a bad fd (-1): every call fails (EBADF).
        "pread" => {
            let (count, size): (u64, usize) = (num(rest, 1, "count")?, num(rest, 2, "size")?);
            let offset: i64 = if rest.len() > 3 { num(rest, 3, "offset")? } else { 0 };
            let fd = if path()? == "-" { None } else { Some(open(path()?, libc::O_RDONLY)?) };
            let raw = fd.as_ref().map_or(-1, |f| f.as_raw_fd());
            let mut buf = vec![0u8; size];
            let mut bytes = 0i64;
            for _ in 0..count {
                // SAFETY: buf is writable for size bytes.
                let n = unsafe { libc::pread(raw, buf.as_mut_ptr().cast(), size, offset) };
                bytes += n.max(0) as i64;
            }
            Ok(Some(bytes.to_string()))
        }
        // threads PATH N COUNT SIZE: N short-lived threads, all started before any reads, each
        // doing COUNT pread64 calls of SIZE bytes at offset 0; replies the preads made. Thread
        // ids more than the start-time slots apart collide in a slot while both are reading.
        "threads" => {
            let (n, count, size): (usize, u64, usize) =
                (num(rest, 1, "thread count")?, num(rest, 2, "count")?, num(rest, 3, "size")?);
            let fd = std::sync::Arc::new(open(path()?, libc::O_RDONLY)?);
            // The threads wait at this gate until all of them exist.
            let gate = std::sync::Arc::new(std::sync::RwLock::new(()));
            let closed = gate.write().map_err(|_| Error::Other("thread gate poisoned".into()))?;
            let mut handles = Vec::with_capacity(n);
            let mut failed = None;
            for _ in 0..n {
                let (tfd, tgate) = (std::sync::Arc::clone(&fd), std::sync::Arc::clone(&gate));
                let spawned = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || {
                    let mut buf = vec![0u8; size];
                    drop(tgate.read());
                    let mut made = 0u64;
                    for _ in 0..count {
                        // SAFETY: buf is writable for size bytes.
                        if unsafe { libc::pread(tfd.as_raw_fd(), buf.as_mut_ptr().cast(), size, 0) } >= 0 {
                            made += 1;
                        }
                    }
                    made
                });
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            drop(closed);
            let made: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
            match failed {
                Some(e) => Err(Error::io(format!("spawn a thread after {made} preads"), e)),
                None => Ok(Some(made.to_string())),
            }
        }
        // read PATH COUNT SIZE: COUNT read calls, rewinding with lseek at end of file.
        "read" => {
            let (count, size): (u64, usize) = (num(rest, 1, "count")?, num(rest, 2, "size")?);
            let fd = open(path()?, libc::O_RDONLY)?;
            let mut buf = vec![0u8; size];
            let mut bytes = 0i64;
            for _ in 0..count {
                // SAFETY: buf is writable for size bytes.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), size) };
                if n == 0 {
                    // SAFETY: plain lseek on our fd.
                    unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_SET) };
                }
                bytes += n as i64;
            }
            Ok(Some(bytes.to_string()))
        }
        // readall PATH SIZE: read the file to its end in SIZE chunks; replies the read() count.
        "readall" => {
            let size: usize = num(rest, 1, "size")?;
            let fd = open(path()?, libc::O_RDONLY)?;
            let mut buf = vec![0u8; size];
            let mut calls = 0u64;
            loop {
                calls += 1;
                // SAFETY: buf is writable for size bytes.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), size) };
                if n <= 0 {
                    break;
                }
            }
            Ok(Some(calls.to_string()))
        }
        // fadvise PATH ADVICE COUNT [OFFSET LEN]: over the whole file unless a range is given;
        // PATH "-" uses a bad fd (-1), so every call fails with EBADF.
        "fadvise" => {
            let (adv, count): (i32, u64) = (advice(rest.get(1).copied().unwrap_or(""))?, num(rest, 2, "count")?);
            let (offset, len): (i64, i64) =
                if rest.len() > 3 { (num(rest, 3, "offset")?, num(rest, 4, "length")?) } else { (0, 0) };
            let fd = if path()? == "-" { None } else { Some(open(path()?, libc::O_RDONLY)?) };
            let raw = fd.as_ref().map_or(-1, |f| f.as_raw_fd());
            let mut ok = 0u64;
            for _ in 0..count {
                // SAFETY: fadvise on an fd (possibly invalid, which the kernel rejects).
                if unsafe { libc::posix_fadvise(raw, offset, len, adv) } == 0 {
                    ok += 1;
                }
            }
            Ok(Some(ok.to_string()))
        }
        // truncate PATH BYTES: ftruncate(2) the file to BYTES.
        "truncate" => {
            let bytes: i64 = num(rest, 1, "bytes")?;
            let fd = open(path()?, libc::O_WRONLY)?;
            // SAFETY: ftruncate on our fd.
            if unsafe { libc::ftruncate(fd.as_raw_fd(), bytes) } != 0 {
                return Err(Error::last_os(format!("ftruncate {}", path()?)));
            }
            Ok(Some(bytes.to_string()))
        }
        // write PATH BYTES: buffered writes of BYTES in 64 KiB chunks, no fsync.
        "write" => {
            let bytes: usize = num(rest, 1, "bytes")?;
            let fd = open(path()?, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?;
            let buf = vec![0x5au8; 64 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(buf.len());
                // SAFETY: buf is readable for n bytes.
                let w = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), n) };
                if w <= 0 {
                    return Err(Error::last_os(format!("write {}", path()?)));
                }
                left -= w as usize;
            }
            Ok(Some(bytes.to_string()))
        }
        // alloc MIB: MIB of fresh anonymous memory populated by the kernel in one call (faster
        // than kswapd can free memory, so the allocation itself must reclaim), then freed.
        "alloc" => {
            let mib: usize = num(rest, 0, "MiB")?;
            let len = mib << 20;
            // SAFETY: a fresh private anonymous mapping, unmapped before returning.
            unsafe {
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
                let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0);
                if p == libc::MAP_FAILED {
                    return Err(Error::last_os("mmap"));
                }
                libc::munmap(p, len);
            }
            Ok(Some(mib.to_string()))
        }
        // hold MIB: populate MIB of anonymous memory and keep it until the process exits
        // (fills memory with what no reclaim can free without swap).
        "hold" => {
            let mib: usize = num(rest, 0, "MiB")?;
            // SAFETY: a fresh private anonymous mapping, deliberately never unmapped.
            let p = unsafe {
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
                libc::mmap(std::ptr::null_mut(), mib << 20, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0)
            };
            if p == libc::MAP_FAILED {
                return Err(Error::last_os("mmap"));
            }
            Ok(Some(mib.to_string()))
        }
        // getppid COUNT: an unrelated syscall.
        "getppid" => {
            let count: u64 = num(rest, 0, "count")?;
            for _ in 0..count {
                // SAFETY: no arguments.
                unsafe { libc::getppid() };
            }
            Ok(Some(count.to_string()))
        }
        _ => Err(Error::Other(format!("unknown command {cmd}"))),
    }
}

/// Path of the `ktm` binary for spawning workloads: `KTM_BIN` if set (the QEMU guests set
/// it), else `default`.
pub fn ktm_bin(default: &str) -> PathBuf {
    std::env::var_os("KTM_BIN").map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The I/O of one burst of the stand-in BanyanDB at scale 1: preads of 4096 bytes, then
/// `posix_fadvise` calls cycling through [`ADVICE`].
pub const STANDIN_PREADS: u64 = 1000;
/// See [`STANDIN_PREADS`].
pub const STANDIN_FADVISES: u64 = 7;

/// The stand-in BanyanDB of the container tests (`.ci/podman`): the `ktm` binary installed as
/// `banyand`, so its comm is `banyand` from its first instruction, as the real one's is.
/// It does one burst of I/O at once when it starts (a restarted BanyanDB reads at once) and
/// one more on every SIGUSR1 (so a test can make I/O happen after KTM is attached), each
/// [`STANDIN_PREADS`] × `scale` preads and [`STANDIN_FADVISES`] × `scale` fadvise calls on its
/// own executable (nothing to write: its root may be read-only), and prints one line per burst
/// on stdout. Exits 0 on SIGTERM or SIGINT. Arguments (`standalone`) are ignored.
pub fn standin_main(scale: u64) -> i32 {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    for s in [Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("banyand stand-in: cannot block signals: {e}");
        return 1;
    }
    let exe = match std::fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("banyand stand-in: open /proc/self/exe: {e}");
            return 1;
        }
    };
    let pages = exe.metadata().map_or(1, |m| (m.len() / 4096).max(1));
    let mut buf = vec![0u8; 4096];
    for burst in 1.. {
        let (mut preads, mut fadvises) = (0u64, 0u64);
        for i in 0..STANDIN_PREADS * scale {
            let offset = ((i % pages) * 4096) as libc::off_t;
            // SAFETY: buf is 4096 bytes long; the fd is open for the whole loop.
            if unsafe { libc::pread(exe.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) } >= 0 {
                preads += 1;
            }
        }
        for i in 0..STANDIN_FADVISES * scale {
            let advice = ADVICE[(i % ADVICE.len() as u64) as usize].1;
            // SAFETY: fadvise on an open fd, whole file.
            if unsafe { libc::posix_fadvise(exe.as_raw_fd(), 0, 0, advice) } == 0 {
                fadvises += 1;
            }
        }
        println!("banyand stand-in: burst {burst}: {preads} preads, {fadvises} fadvise");
        let _ = std::io::stdout().flush();
        match signals.wait() {
            Ok(Signal::SIGUSR1) => continue,
            Ok(_) => return 0,
            Err(e) => {
                eprintln!("banyand stand-in: sigwait: {e}");
                return 1;
            }
        }
    }
    0
}
