//! The `ktm` command's logger: one line per event on stderr, with a UTC timestamp and level,
//! and repeats of one log statement rate-limited and counted.
//!
//! A library logs through `log` and installs nothing; a program decides where its lines go.
//! This is the logger of `ktm run`, `demo` and `probe`, in the library so that a sidecar
//! written in Rust can install the same one. Its line format is
//! `2026-12-07T00:45:12.123Z WARN ktm::iomonitor::targeting: message`, readable by a human
//! in `kubectl logs` and split by any log shipper on its first three spaces.
//!
//! Rate limiting is per log statement (its file and line), not per message text: a read that
//! fails every interval logs the same statement with a changing errno or pid, which a text
//! key would not catch. A statement logs at most [`BURST`] lines per [`WINDOW`]; the lines it
//! holds back are counted, and the count is logged with its next line after the window
//! ("... (7 more like this were suppressed)"), so nothing is dropped without a trace.

use log::{LevelFilter, Log, Metadata, Record};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lines one log statement may write per [`WINDOW`].
pub const BURST: u32 = 5;
/// The rate-limiting window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Lines held back since the process started, over every statement.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Lines the rate limit held back since start (all statements).
pub fn suppressed_total() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

#[derive(Debug)]
struct Budget {
    window_start: Instant,
    written: u32,
    held_back: u64,
}

/// A logger writing to stderr.
#[derive(Debug)]
pub struct StderrLogger {
    level: LevelFilter,
    budgets: Mutex<HashMap<(String, u32), Budget>>,
}

impl StderrLogger {
    /// A logger that writes records at `level` and above.
    pub fn new(level: LevelFilter) -> StderrLogger {
        StderrLogger { level, budgets: Mutex::new(HashMap::new()) }
    }

    /// Whether `record` may be written now, and how many lines of its statement were held
    /// back before it.
    fn admit(&self, record: &Record<'_>, now: Instant) -> Option<u64> {
        let key = (record.file().unwrap_or(record.target()).to_string(), record.line().unwrap_or(0));
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let b = budgets.entry(key).or_insert(Budget { window_start: now, written: 0, held_back: 0 });
        if now.duration_since(b.window_start) >= WINDOW {
            b.window_start = now;
            b.written = 0;
        }
        if b.written >= BURST {
            b.held_back += 1;
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        b.written += 1;
        Some(std::mem::take(&mut b.held_back))
    }

    /// The line for `record` (without the newline).
    pub fn format(record: &Record<'_>, at: SystemTime, held_back: u64) -> String {
        let mut line = format!("{} {} {}: {}", timestamp(at), record.level(), record.target(), record.args());
        if held_back > 0 {
            line.push_str(&format!(" ({held_back} more like this were suppressed)"));
        }
        line
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Some(held_back) = self.admit(record, Instant::now()) else { return };
        let line = StderrLogger::format(record, SystemTime::now(), held_back);
        // One write per line, so lines of two threads never interleave.
        let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs a [`StderrLogger`] at `level` as the process's logger; an error if one was
/// installed before.
pub fn install(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    // Leaked once per process: the logger lives as long as the process (log needs a static).
    log::set_logger(Box::leak(Box::new(StderrLogger::new(level))))?;
    log::set_max_level(level);
    Ok(())
}

/// A `--log-level` value: `error`, `warn`, `info`, `debug`, `trace` or `off`.
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse::<LevelFilter>().map_err(|_| format!("`{s}` is not a log level (error, warn, info, debug, trace, off)"))
}

/// `at` as RFC 3339 UTC with milliseconds, e.g. `2026-12-07T00:45:12.123Z`.
pub fn timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, d.subsec_millis())
}

/// Days since 1970-01-01 as (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_millis(1_796_604_312_123)), "2026-12-07T00:45:12.123Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn repeats_of_one_statement_are_held_back_and_counted() {
        let logger = StderrLogger::new(LevelFilter::Info);
        let t0 = Instant::now();
        let mut admitted = Vec::new();
        for i in 0..12 {
            let args = format_args!("read failed {i}");
            let r = Record::builder().args(args).level(Level::Warn).file(Some("x.rs")).line(Some(7)).build();
            admitted.push(logger.admit(&r, t0));
        }
        assert_eq!(admitted.iter().filter(|a| a.is_some()).count(), BURST as usize);
        // Another statement has its own budget.
        let other = Record::builder().args(format_args!("x")).file(Some("x.rs")).line(Some(8)).build();
        assert_eq!(logger.admit(&other, t0), Some(0));
        // After the window the statement writes again and says how many were held back.
        let r = Record::builder().args(format_args!("again")).file(Some("x.rs")).line(Some(7)).build();
        assert_eq!(logger.admit(&r, t0 + WINDOW), Some(12 - u64::from(BURST)));
        let line = StderrLogger::format(&r, UNIX_EPOCH, 7);
        assert!(line.starts_with("1970-01-01T00:00:00.000Z INFO "), "{line}");
        assert!(line.ends_with("again (7 more like this were suppressed)"), "{line}");
    }

    #[test]
    fn levels_parse() {
        assert_eq!(parse_level("warn"), Ok(LevelFilter::Warn));
        assert_eq!(parse_level("DEBUG"), Ok(LevelFilter::Debug));
        assert!(parse_level("loud").is_err());
    }
}
