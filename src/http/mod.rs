//! `ktm run --listen`: `/metrics` for a Prometheus server, and health paths for probes.
//!
//! **Served from the last collection**, not read on demand. The collector renders each batch
//! once ([`PublishRecorder`]) and the server hands out that text: a scrape costs a copy of a
//! few tens of KiB and never touches a BPF map, so no number of scrapers (or hostile
//! clients) can slow the collection or make two scrapes read counters at different moments,
//! and every scrape between two collections returns the same numbers. The price is age: a
//! scrape sees counters up to one collection interval old (10 s by default), which is the
//! resolution KTM counts at anyway.
//!
//! **One thread, `poll(2)`, non-blocking sockets** (std's `TcpListener`, no runtime crate):
//! no client can hold a thread. Every connection is bounded ([`Limits`]): the request head's
//! size and header count, a deadline to send a whole head (a slowloris client is cut off
//! however slowly it trickles bytes), one to take the response, an idle time between
//! keep-alive requests, and a cap on open connections; when the cap is reached the
//! connection that has been quiet longest is closed to make room, so a flood of idle
//! connections cannot lock a scraper out. Pipelined requests are answered in order, one
//! response buffered per connection at a time.
//!
//! Paths: `GET /metrics` (text format 0.0.4), `GET /healthz` (liveness: 200 while KTM runs,
//! whatever the modules' state; the body lists them), `GET /readyz` (startup: 503 until the
//! first collection, then 200 for good). Module state is never a reason for a non-200: a
//! sidecar that turned the pod unready because its monitor is disabled would take BanyanDB
//! out of its Service.

pub mod request;

use crate::metrics::Batch;
use crate::recorder::FlightRecorder;
use request::Parsed;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `Content-Type` of `/metrics`: Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Bounds on every connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request head (request line and headers) accepted; larger gets 431.
    pub max_request_bytes: usize,
    /// Most header fields accepted; more gets 431.
    pub max_headers: usize,
    /// Time from a request's first byte to its complete head; then the connection is closed.
    pub read_timeout: Duration,
    /// Time for the client to take a whole response; then the connection is closed.
    pub write_timeout: Duration,
    /// Time a keep-alive connection may sit between requests.
    pub idle_timeout: Duration,
    /// Open connections at most; the quietest is closed to admit a new one.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 8 KiB heads and 64 headers (what a Prometheus scrape sends is a few hundred bytes and
    /// six headers), 10 s to send a head and to take a response (Prometheus' default scrape
    /// timeout), 60 s idle (above the usual 15-30 s scrape interval, so a scraper keeps its
    /// connection), 128 connections (a handful of scrapers and probes; each costs at most a
    /// head and one response of memory).
    fn default() -> Self {
        Limits {
            max_request_bytes: 8 * 1024,
            max_headers: 64,
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 128,
        }
    }
}

/// What the server hands out: the last batch's text and the modules' state.
#[derive(Debug, Default)]
struct Snapshot {
    metrics: Arc<String>,
    health: Arc<String>,
    batches: u64,
}

/// The last collection, shared between the collector (through [`PublishRecorder`]) and
/// the server. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct Published(Arc<Mutex<Snapshot>>);

impl Published {
    /// Nothing collected yet.
    pub fn new() -> Published {
        Published::default()
    }

    /// Makes `batch` what the server hands out.
    pub fn publish(&self, batch: &Batch) {
        let metrics = Arc::new(crate::prometheus::render(batch));
        let mut health = String::new();
        for s in &batch.status {
            health.push_str(&format!("{} {}", s.module, s.state));
            if let Some(r) = &s.reason {
                health.push_str(&format!(": {r}"));
            }
            health.push('\n');
        }
        let mut snap = self.0.lock().unwrap_or_else(|p| p.into_inner());
        snap.metrics = metrics;
        snap.health = Arc::new(health);
        snap.batches += 1;
    }

    fn get(&self) -> (Arc<String>, Arc<String>, u64) {
        let snap = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (Arc::clone(&snap.metrics), Arc::clone(&snap.health), snap.batches)
    }
}

/// A recorder that publishes each batch for the server, then hands it to another recorder
/// (stdout, a file) if there is one.
pub struct PublishRecorder {
    published: Published,
    next: Option<Box<dyn FlightRecorder>>,
}

impl PublishRecorder {
    /// Publishes into `published` and forwards to `next`.
    pub fn new(published: Published, next: Option<Box<dyn FlightRecorder>>) -> PublishRecorder {
        PublishRecorder { published, next }
    }
}

impl FlightRecorder for PublishRecorder {
    fn record(&mut self, batch: Batch) {
        self.published.publish(&batch);
        if let Some(next) = &mut self.next {
            next.record(batch);
        }
    }
}

/// Resolves a `--listen` address: `host:port`, `[v6]:port`, or `:port` (every interface).
pub fn parse_listen(addr: &str) -> Result<SocketAddr, String> {
    let full = if addr.starts_with(':') { format!("0.0.0.0{addr}") } else { addr.to_string() };
    let mut resolved = full.to_socket_addrs().map_err(|e| format!("--listen {addr}: not host:port or :port ({e})"))?;
    resolved.next().ok_or_else(|| format!("--listen {addr}: resolves to no address"))
}

/// Counters of the server, exported with every scrape.
#[derive(Debug, Default)]
struct Counters {
    scrapes: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
}

/// The running server; [`Server::stop`] (or drop) closes it and joins its thread.
#[derive(Debug)]
#[must_use = "dropping the Server stops serving"]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves `published` on a thread of its own.
    pub fn start(addr: SocketAddr, published: Published, limits: Limits) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (wake_rx, wake_tx) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ktm-http".into())
            .spawn(move || serve(listener, wake_rx, published, limits, flag))?;
        Ok(Server { addr, stop, wake: Some(wake_tx), thread: Some(thread) })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection and the listener, and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Closing the pipe's write end wakes the poll with POLLHUP on its read end.
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// Bytes received and not yet answered.
    input: Vec<u8>,
    /// The response being sent, and how much of it is sent.
    output: Vec<u8>,
    sent: usize,
    /// Close once `output` is sent.
    close_after: bool,
    /// When this connection is closed unless it makes progress.
    deadline: Instant,
    last_active: Instant,
}

fn serve(listener: TcpListener, wake: OwnedFd, published: Published, limits: Limits, stop: Arc<AtomicBool>) {
    let counters = Counters::default();
    let mut conns: Vec<Conn> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let timeout = conns
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let mut fds = Vec::with_capacity(conns.len() + 2);
        fds.push(libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &conns {
            let events = if c.output.is_empty() { libc::POLLIN } else { libc::POLLOUT };
            fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
        }
        let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: fds is a valid array of fds.len() pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                log::error!("the metrics server's poll failed: {e}; it stops serving");
                return;
            }
            continue;
        }
        if fds[0].revents != 0 {
            return;
        }
        let now = Instant::now();
        // Connections first (their indices match fds[2..]), then new ones.
        let mut keep = Vec::with_capacity(conns.len());
        for (c, fd) in conns.drain(..).zip(&fds[2..]) {
            if let Some(c) = step(c, fd.revents, now, &mut chunk, &published, &limits, &counters) {
                keep.push(c);
            }
        }
        conns = keep;
        if fds[1].revents & libc::POLLIN != 0 {
            accept(&listener, &mut conns, &limits, &counters);
        }
    }
}

/// Accepts every pending connection, closing the quietest ones past the cap.
fn accept(listener: &TcpListener, conns: &mut Vec<Conn>, limits: &Limits, counters: &Counters) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                if conns.len() >= limits.max_connections.max(1) {
                    if let Some(i) = (0..conns.len()).min_by_key(|&i| conns[i].last_active) {
                        conns.swap_remove(i);
                        counters.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let now = Instant::now();
                conns.push(Conn {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    sent: 0,
                    close_after: false,
                    deadline: now + limits.read_timeout,
                    last_active: now,
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // EMFILE and the like: leave the rest in the backlog until a connection closes.
                log::warn!("the metrics server cannot accept a connection: {e}");
                return;
            }
        }
    }
}

/// Moves one connection along; `None` when it is closed.
fn step(
    mut c: Conn,
    revents: libc::c_short,
    now: Instant,
    chunk: &mut [u8],
    published: &Published,
    limits: &Limits,
    counters: &Counters,
) -> Option<Conn> {
    if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return None;
    }
    if !c.output.is_empty() {
        if revents & (libc::POLLOUT | libc::POLLHUP) != 0 {
            match c.stream.write(&c.output[c.sent..]) {
                Ok(n) => {
                    c.sent += n;
                    c.last_active = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
            if c.sent == c.output.len() {
                c.output = Vec::new();
                c.sent = 0;
                if c.close_after {
                    return None;
                }
                c.deadline = now + if c.input.is_empty() { limits.idle_timeout } else { limits.read_timeout };
                // A pipelined request may already be waiting in the buffer.
                answer(&mut c, now, published, limits, counters);
            }
        }
    } else if revents & (libc::POLLIN | libc::POLLHUP) != 0 {
        match c.stream.read(chunk) {
            Ok(0) => return None,
            Ok(n) => {
                if c.input.is_empty() {
                    // A new request's first byte: it has read_timeout to complete its head.
                    c.deadline = now + limits.read_timeout;
                }
                c.input.extend_from_slice(&chunk[..n]);
                c.last_active = now;
                answer(&mut c, now, published, limits, counters);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    (now < c.deadline).then_some(c)
}

/// Answers the first complete request in the connection's buffer, if there is one.
fn answer(c: &mut Conn, now: Instant, published: &Published, limits: &Limits, counters: &Counters) {
    let (status, ctype, body, keep_alive, head_only, used) =
        match request::parse(&c.input, limits.max_request_bytes, limits.max_headers) {
            Parsed::Incomplete => return,
            Parsed::Bad(status, why) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                (status, "text/plain; charset=utf-8", format!("{why}\n").into_bytes(), false, false, c.input.len())
            }
            Parsed::Request(r, used) => {
                let head_only = r.method == "HEAD";
                let (status, ctype, body) = if r.method != "GET" && !head_only {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    (405, "text/plain; charset=utf-8", b"only GET and HEAD\n".to_vec())
                } else {
                    route(&r.path, published, counters)
                };
                (status, ctype, body, r.keep_alive, head_only, used)
            }
        };
    c.input.drain(..used);
    c.output = request::response(status, ctype, &body, keep_alive, head_only);
    c.sent = 0;
    c.close_after = !keep_alive;
    c.deadline = now + limits.write_timeout;
}

fn route(path: &str, published: &Published, counters: &Counters) -> (u16, &'static str, Vec<u8>) {
    let (metrics, health, batches) = published.get();
    match path {
        "/metrics" => {
            let scrapes = counters.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
            let mut body = String::with_capacity(metrics.len() + 1024);
            body.push_str(&metrics);
            body.push_str(&server_metrics(scrapes, counters));
            (200, METRICS_CONTENT_TYPE, body.into_bytes())
        }
        "/healthz" => {
            let body = if batches == 0 { "ok\nno collection yet\n".to_string() } else { format!("ok\n{health}") };
            (200, "text/plain; charset=utf-8", body.into_bytes())
        }
        "/readyz" if batches == 0 => (503, "text/plain; charset=utf-8", b"no collection yet\n".to_vec()),
        "/readyz" => (200, "text/plain; charset=utf-8", b"ready\n".to_vec()),
        _ => (404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n".to_vec()),
    }
}

/// The server's own families, appended to every scrape.
fn server_metrics(scrapes: u64, counters: &Counters) -> String {
    use crate::catalogue::{self as c, MetricDef};
    let family = |d: &MetricDef, v: u64| {
        let (name, help) = (d.name, d.help);
        format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n")
    };
    [
        family(&c::SCRAPES, scrapes),
        family(&c::HTTP_REQUESTS_REFUSED, counters.refused.load(Ordering::Relaxed)),
        family(&c::HTTP_CONNECTIONS_EVICTED, counters.evicted.load(Ordering::Relaxed)),
        family(&c::LOG_LINES_SUPPRESSED, crate::logger::suppressed_total()),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metric, ModuleState, ModuleStatus};

    fn ask(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn serves_the_published_batch_and_health() {
        let published = Published::new();
        let server = Server::start("127.0.0.1:0".parse().unwrap(), published.clone(), Limits::default()).unwrap();
        let addr = server.local_addr();
        let r = ask(addr, "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        let r = ask(addr, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 ") && r.ends_with("ok\nno collection yet\n"), "{r}");
        let status = ModuleStatus::new("iomonitor", ModuleState::Disabled).with_reason("bpf() is refused");
        let mut rec = PublishRecorder::new(published, None);
        rec.record(Batch::new(vec![Metric::counter("x_total", "X.", 7)], vec![status]));
        let r = ask(addr, "GET /metrics HTTP/1.0\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"), "{r}");
        let (scrapes, state) = (crate::catalogue::SCRAPES.name, crate::catalogue::MODULE_STATE.name);
        assert!(r.contains("\nx_total 7\n") && r.contains(&format!("\n{scrapes} 1\n")), "{r}");
        assert!(
            r.contains(&format!("{state}{{module=\"iomonitor\",state=\"disabled\",reason=\"bpf() is refused\"}} 1"))
        );
        let r = ask(addr, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r.ends_with("ok\niomonitor disabled: bpf() is refused\n"), "{r}");
        assert!(ask(addr, "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200 "));
        assert!(ask(addr, "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(ask(addr, "DELETE /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 405 "));
        let two = ask(addr, "GET /readyz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!(two.matches("HTTP/1.1 200 ").count(), 2, "{two}");
        server.stop();
        assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    }

    #[test]
    fn a_slow_head_is_cut_off_at_its_deadline() {
        let limits = Limits { read_timeout: Duration::from_millis(300), ..Limits::default() };
        let server = Server::start("127.0.0.1:0".parse().unwrap(), Published::new(), limits).unwrap();
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t = Instant::now();
        for b in b"GET /metrics HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaa" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":9090"), Ok("0.0.0.0:9090".parse().unwrap()));
        assert_eq!(parse_listen("127.0.0.1:1"), Ok("127.0.0.1:1".parse().unwrap()));
        assert_eq!(parse_listen("[::1]:2"), Ok("[::1]:2".parse().unwrap()));
        assert!(parse_listen("nohost").is_err());
        assert!(parse_listen(":x").is_err());
    }
}
