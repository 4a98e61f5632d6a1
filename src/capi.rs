//! The C ABI: KTM for hosts that are not Rust, above all the FODC agent through its Go
//! package (`go/ktm`). The prototypes are in `include/ktm.h`; `tests/capi_header.rs` fails
//! when the header and this file disagree.
//!
//! Design, and why:
//! - **Opaque handle, plain C structs out.** A `ktm_t` is created from YAML text, so the
//!   config keeps one parser and one set of error messages (naming the dotted key) for every
//!   host. A collection comes back as one `ktm_batch_t` of `#[repr(C)]` structs that
//!   point into a single allocation owned by the batch, freed by one `ktm_batch_free`: the
//!   host walks it without a parser (Go's standard library has no YAML, and a JSON
//!   dependency is not allowed here), and histograms stay histograms, so the host decides
//!   how to flatten them.
//! - **Pull, not push.** `ktm_collect` reads the counters when the host asks, on the host's
//!   thread. The agent already runs its own ticker that pushes `GetMetrics()` to its Flight
//!   Recorder, so a second timer thread inside would only add a copy and a lag.
//! - **Any thread, any order.** The modules sit behind a mutex in the handle; every call
//!   locks it, so collections from several threads serialize, and stop is idempotent.
//!   Only `ktm_free` must be the last call on a handle.
//! - **No unwinding across the boundary.** Every entry point runs inside `catch_unwind`;
//!   a panic becomes an error string (or a neutral return value), and a mutex poisoned by
//!   it is recovered, because every state change under the lock is a whole-value store.
//! - **Logs without callbacks.** Rust `log` records go to a bounded queue the host drains
//!   with `ktm_take_log` after its calls, so no foreign code runs inside the crate and no
//!   Rust code runs on a thread the host does not know about.
//! - **No lock-down of the host.** `ktm run` drops its capabilities and installs its own
//!   seccomp filter once attached ([`crate::lockdown`]); through this ABI KTM is a library
//!   inside the host's process, and that is the host's to do, not KTM's. Capabilities are per
//!   thread and a filter installed with TSYNC confines every thread of the host: a list that
//!   knows KTM's calls but not the host's (a Go runtime's, the agent's HTTP servers and gRPC
//!   client, whatever it forks) would turn the host's own calls into EPERM. So no filter is
//!   offered here. The host should, after `ktm_start` succeeded: drop `CAP_BPF`,
//!   `CAP_PERFMON` (and `CAP_SYS_ADMIN`) from every thread (Go with cgo: libcap's `cap` package
//!   with psx, since `syscall.AllThreadsSyscall` refuses under cgo) and set no_new_privs;
//!   keep `CAP_BPF` where `kernel.unprivileged_bpf_disabled` is set on a kernel before 6.5
//!   (map reads need it there; `ktm probe` says which); and, for a filter, allow `bpf()` with
//!   commands 1-4 and 15 (map lookup, update, delete, next key, object info) in its own.

use crate::collector::modules_from_config;
use crate::config::Config;
use crate::driver::{Driven, Retry};
use crate::metrics::{Metric, MetricValue, ModuleStatus};
use std::collections::VecDeque;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bumped on any incompatible change of the structs or prototypes (`KTM_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;

/// `ktm_metric_t.type` of a counter.
pub const KTM_COUNTER: u32 = 0;
/// `ktm_metric_t.type` of a gauge.
pub const KTM_GAUGE: u32 = 1;
/// `ktm_metric_t.type` of a histogram.
pub const KTM_HISTOGRAM: u32 = 2;

/// The opaque `ktm_t`.
pub struct Ktm {
    slots: Mutex<Vec<Driven>>,
    /// Module names, fixed at creation, lent out by `ktm_module_name`.
    names: Vec<CString>,
    interval_ns: i64,
}

impl Ktm {
    fn lock(&self) -> MutexGuard<'_, Vec<Driven>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `ktm_label_t`.
#[repr(C)]
pub struct KtmLabel {
    pub name: *const c_char,
    pub value: *const c_char,
}

/// `ktm_bucket_t`.
#[repr(C)]
pub struct KtmBucket {
    pub upper_bound: f64,
    pub cumulative_count: u64,
}

/// `ktm_metric_t`.
#[repr(C)]
pub struct KtmMetric {
    pub name: *const c_char,
    pub help: *const c_char,
    pub r#type: u32,
    pub labels: *const KtmLabel,
    pub n_labels: usize,
    pub counter: u64,
    pub gauge: f64,
    pub buckets: *const KtmBucket,
    pub n_buckets: usize,
    pub sum: f64,
    pub count: u64,
}

/// `ktm_source_t`.
#[repr(C)]
pub struct KtmSource {
    pub metric: *const c_char,
    pub mechanism: *const c_char,
    pub detail: *const c_char,
}

/// `ktm_module_status_t`.
#[repr(C)]
pub struct KtmModuleStatus {
    pub module: *const c_char,
    pub state: *const c_char,
    pub reason: *const c_char,
    pub scope: *const c_char,
    pub sources: *const KtmSource,
    pub n_sources: usize,
}

/// `ktm_batch_t`.
#[repr(C)]
pub struct KtmBatch {
    pub timestamp_unix_ns: i64,
    pub metrics: *const KtmMetric,
    pub n_metrics: usize,
    pub modules: *const KtmModuleStatus,
    pub n_modules: usize,
}

/// A batch and everything its pointers point into. `batch` comes first so that the pointer
/// handed out is also the pointer to the whole allocation. The vectors are only pushed to
/// before the raw pointers into their elements are taken, and a `CString`'s bytes do not
/// move when the `CString` itself does.
#[repr(C)]
struct OwnedBatch {
    batch: KtmBatch,
    strings: Vec<CString>,
    labels: Vec<Vec<KtmLabel>>,
    buckets: Vec<Vec<KtmBucket>>,
    sources: Vec<Vec<KtmSource>>,
    metrics: Vec<KtmMetric>,
    modules: Vec<KtmModuleStatus>,
}

impl OwnedBatch {
    fn str(&mut self, s: &str) -> *const c_char {
        let c = cstring(s);
        let p = c.as_ptr();
        self.strings.push(c);
        p
    }

    fn build(metrics: &[Metric], status: &[ModuleStatus]) -> Box<OwnedBatch> {
        let timestamp_unix_ns =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let mut b = Box::new(OwnedBatch {
            batch: KtmBatch {
                timestamp_unix_ns,
                metrics: std::ptr::null(),
                n_metrics: 0,
                modules: std::ptr::null(),
                n_modules: 0,
            },
            strings: Vec::new(),
            labels: Vec::new(),
            buckets: Vec::new(),
            sources: Vec::new(),
            metrics: Vec::with_capacity(metrics.len()),
            modules: Vec::with_capacity(status.len()),
        });
        for m in metrics {
            let labels: Vec<KtmLabel> =
                m.labels.iter().map(|(k, v)| KtmLabel { name: b.str(k), value: b.str(v) }).collect();
            let mut out = KtmMetric {
                name: b.str(&m.name),
                help: b.str(&m.help),
                r#type: KTM_COUNTER,
                labels: array(&labels),
                n_labels: labels.len(),
                counter: 0,
                gauge: 0.0,
                buckets: std::ptr::null(),
                n_buckets: 0,
                sum: 0.0,
                count: 0,
            };
            b.labels.push(labels);
            match &m.value {
                MetricValue::Counter(v) => out.counter = *v,
                MetricValue::FloatCounter(v) => {
                    // Seconds of run time: the whole part where C hosts read a counter, the
                    // exact value beside it.
                    out.counter = *v as u64;
                    out.gauge = *v;
                }
                MetricValue::Gauge(v) => {
                    out.r#type = KTM_GAUGE;
                    out.gauge = *v;
                }
                MetricValue::Histogram(h) => {
                    let buckets: Vec<KtmBucket> = h
                        .buckets
                        .iter()
                        .map(|x| KtmBucket { upper_bound: x.upper_bound, cumulative_count: x.cumulative_count })
                        .collect();
                    out.r#type = KTM_HISTOGRAM;
                    out.buckets = array(&buckets);
                    out.n_buckets = buckets.len();
                    out.sum = h.sum;
                    out.count = h.count;
                    b.buckets.push(buckets);
                }
            }
            b.metrics.push(out);
        }
        for s in status {
            let sources: Vec<KtmSource> = s
                .sources
                .iter()
                .map(|x| KtmSource {
                    metric: b.str(&x.metric),
                    mechanism: x.mechanism.as_deref().map_or(std::ptr::null(), |m| b.str(m)),
                    detail: b.str(&x.detail),
                })
                .collect();
            let out = KtmModuleStatus {
                module: b.str(&s.module),
                state: b.str(s.state.as_str()),
                reason: s.reason.as_deref().map_or(std::ptr::null(), |r| b.str(r)),
                scope: b.str(&s.scope),
                sources: array(&sources),
                n_sources: sources.len(),
            };
            b.sources.push(sources);
            b.modules.push(out);
        }
        b.batch.metrics = array(&b.metrics);
        b.batch.n_metrics = b.metrics.len();
        b.batch.modules = array(&b.modules);
        b.batch.n_modules = b.modules.len();
        b
    }
}

/// An array for C: NULL when empty. A Rust empty slice points at a dangling, non-null
/// address (its alignment, e.g. 0x8), which C code may take for an array and Go's garbage
/// collector rejects as an invalid pointer when it finds it in a struct on a goroutine's
/// stack ("invalid pointer found on stack").
fn array<T>(v: &[T]) -> *const T {
    if v.is_empty() {
        std::ptr::null()
    } else {
        v.as_ptr()
    }
}

/// A C string of `s`; interior NULs (a kernel message could carry one) become U+FFFD
/// rather than truncating the text or failing the whole call.
fn cstring(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\u{fffd}")).unwrap_or_default())
}

/// Stores `msg` in `*error` when the caller asked for it.
///
/// # Safety
/// `error` is null or valid for one pointer write.
unsafe fn set_error(error: *mut *mut c_char, msg: &str) {
    if !error.is_null() {
        *error = cstring(msg).into_raw();
    }
}

/// Clears `*error` so that a caller may test it after success too.
///
/// # Safety
/// `error` is null or valid for one pointer write.
unsafe fn clear_error(error: *mut *mut c_char) {
    if !error.is_null() {
        *error = std::ptr::null_mut();
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("internal error in ktm (a panic, caught at the C boundary): {}", what.unwrap_or_default())
}

/// Runs `f`, turning an error or a panic into `-1` and the text in `*error`.
///
/// # Safety
/// `error` is null or valid for one pointer write.
unsafe fn guarded(error: *mut *mut c_char, f: impl FnOnce() -> Result<(), String>) -> c_int {
    clear_error(error);
    let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_message(&*p)));
    match r {
        Ok(()) => 0,
        Err(msg) => {
            set_error(error, &msg);
            -1
        }
    }
}

/// Runs `f` where there is no error channel: a panic gives `fallback`.
fn quiet<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The handle behind a pointer, or an error naming the call.
///
/// # Safety
/// `ktm` is null or a live handle from `ktm_new`.
unsafe fn handle<'a>(ktm: *const Ktm, call: &str) -> Result<&'a Ktm, String> {
    ktm.as_ref().ok_or_else(|| format!("{call}: the ktm handle is NULL"))
}

/// The module name argument: `None` (all modules) for NULL.
///
/// # Safety
/// `module` is null or a NUL-terminated string.
unsafe fn module_arg<'a>(module: *const c_char) -> Result<Option<&'a str>, String> {
    if module.is_null() {
        return Ok(None);
    }
    CStr::from_ptr(module).to_str().map(Some).map_err(|_| "the module name is not UTF-8".to_string())
}

/// The modules a call applies to: all, or the one named (an error if there is none).
fn select<'s>(slots: &'s mut [Driven], module: Option<&str>) -> Result<Vec<&'s mut Driven>, String> {
    let chosen: Vec<&mut Driven> = slots.iter_mut().filter(|s| module.map_or(true, |m| s.name() == m)).collect();
    match module {
        Some(m) if chosen.is_empty() => Err(format!("no module `{m}` in this KTM (see collector.modules)")),
        _ => Ok(chosen),
    }
}

/// The ABI version this library implements; a host compares it with `KTM_ABI_VERSION`.
#[no_mangle]
pub extern "C" fn ktm_abi_version() -> u32 {
    ABI_VERSION
}

/// Creates a KTM from the YAML config text (NULL or "" for the defaults); nothing is
/// loaded yet. On error returns NULL with the message (naming the key) in `*error`.
///
/// # Safety
/// `config_yaml` is null or NUL-terminated; `error` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn ktm_new(config_yaml: *const c_char, error: *mut *mut c_char) -> *mut Ktm {
    let mut out: *mut Ktm = std::ptr::null_mut();
    guarded(error, || {
        install_logger();
        let text = if config_yaml.is_null() {
            ""
        } else {
            CStr::from_ptr(config_yaml).to_str().map_err(|_| "the config is not UTF-8".to_string())?
        };
        let config = Config::from_yaml_str(text).map_err(|e| e.to_string())?;
        let modules = modules_from_config(&config).map_err(|e| e.to_string())?;
        let names = modules.iter().map(|m| cstring(m.name())).collect();
        let slots = modules.into_iter().map(Driven::new).collect();
        let interval_ns = i64::try_from(config.collector.interval.as_nanos()).unwrap_or(i64::MAX);
        out = Box::into_raw(Box::new(Ktm { slots: Mutex::new(slots), names, interval_ns }));
        Ok(())
    });
    out
}

/// Stops every module and frees the handle. NULL is ignored.
///
/// # Safety
/// `ktm` is null or a live handle, and no other call on it runs or follows.
#[no_mangle]
pub unsafe extern "C" fn ktm_free(ktm: *mut Ktm) {
    if ktm.is_null() {
        return;
    }
    quiet((), || {
        let k = Box::from_raw(ktm);
        for slot in k.lock().iter_mut() {
            slot.stop();
        }
    })
}

/// Starts `module`, or every module for NULL: loads and attaches the programs. A module
/// already running is left alone. Returns 0, or -1 with every failure in `*error`; failed
/// modules are then disabled with that reason and the KTM is degraded.
///
/// # Safety
/// `ktm` is a live handle; `module` is null or NUL-terminated; `error` is null or valid
/// for one write.
#[no_mangle]
pub unsafe extern "C" fn ktm_start(ktm: *mut Ktm, module: *const c_char, error: *mut *mut c_char) -> c_int {
    guarded(error, || {
        let k = handle(ktm, "ktm_start")?;
        let module = module_arg(module)?;
        let mut slots = k.lock();
        let mut failures = Vec::new();
        for slot in select(&mut slots, module)? {
            if let Err(why) = slot.start(Retry::OnRequest) {
                failures.push(format!("{}: {why}", slot.name()));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    })
}

/// Stops `module`, or every module for NULL: detaches and unloads every program. Stopping
/// what is not running does nothing, so it is safe to call twice. A stopped module may be
/// started again (its counters then start from zero).
///
/// # Safety
/// As `ktm_start`.
#[no_mangle]
pub unsafe extern "C" fn ktm_stop(ktm: *mut Ktm, module: *const c_char, error: *mut *mut c_char) -> c_int {
    guarded(error, || {
        let k = handle(ktm, "ktm_stop")?;
        let module = module_arg(module)?;
        let mut slots = k.lock();
        for slot in select(&mut slots, module)? {
            slot.stop();
        }
        Ok(())
    })
}

/// One collection of `module`, or of every module for NULL: reads the counters now, runs
/// the health check (re-targeting) and returns the metrics and every selected module's
/// status in `*batch`, to be freed with `ktm_batch_free`. A module that is not running
/// contributes only its status (`disabled`, with the reason).
///
/// # Safety
/// As `ktm_start`; `batch` is valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn ktm_collect(
    ktm: *mut Ktm,
    module: *const c_char,
    batch: *mut *mut KtmBatch,
    error: *mut *mut c_char,
) -> c_int {
    if !batch.is_null() {
        *batch = std::ptr::null_mut();
    }
    guarded(error, || {
        if batch.is_null() {
            return Err("ktm_collect: the batch out-pointer is NULL".into());
        }
        let (metrics, status) = collect(handle(ktm, "ktm_collect")?, module_arg(module)?)?;
        let owned = OwnedBatch::build(&metrics, &status);
        *batch = Box::into_raw(owned).cast::<KtmBatch>();
        Ok(())
    })
}

/// One collection of `module`, or of every module for `None`: each module's metrics and status.
fn collect(k: &Ktm, module: Option<&str>) -> Result<(Vec<Metric>, Vec<ModuleStatus>), String> {
    let mut slots = k.lock();
    let mut metrics = Vec::new();
    let mut status = Vec::new();
    for slot in select(&mut slots, module)? {
        // No self-metrics: the C ABI's batch has never carried them (nor the collector's
        // own), and adding series is a change every host would see.
        status.push(slot.collect(&mut metrics, false));
    }
    Ok((metrics, status))
}

/// One collection as `ktm_collect` makes it, written to `path` as Prometheus text the way
/// `ktm run --output` writes it (`textfile::FileRecorder`: a temporary file beside it, mode
/// 0644, renamed over it), so a C or Go host feeds node-exporter's textfile
/// collector without a renderer of its own.
///
/// # Safety
/// As `ktm_start`; `path` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ktm_write_textfile(
    ktm: *mut Ktm,
    module: *const c_char,
    path: *const c_char,
    error: *mut *mut c_char,
) -> c_int {
    guarded(error, || {
        let k = handle(ktm, "ktm_write_textfile")?;
        if path.is_null() {
            return Err("ktm_write_textfile: the path is NULL".into());
        }
        let path = CStr::from_ptr(path).to_str().map_err(|_| "the path is not UTF-8".to_string())?;
        // FileRecorder's messages name `ktm run`'s flag.
        let file = crate::textfile::FileRecorder::new(path)
            .map_err(|e| format!("ktm_write_textfile: {}", e.strip_prefix("--output ").unwrap_or(&e)))?;
        let (metrics, status) = collect(k, module_arg(module)?)?;
        file.write(&crate::metrics::Batch::new(metrics, status))
            .map_err(|e| format!("ktm_write_textfile: cannot write {path}: {e}"))
    })
}

/// Frees a batch from `ktm_collect`, with every string and array it points to. NULL is
/// ignored.
///
/// # Safety
/// `batch` is null or from `ktm_collect` and not freed before.
#[no_mangle]
pub unsafe extern "C" fn ktm_batch_free(batch: *mut KtmBatch) {
    if !batch.is_null() {
        quiet((), || drop(Box::from_raw(batch.cast::<OwnedBatch>())));
    }
}

/// 1 when a module failed to start, or when the last start or collection found a running
/// module `degraded` or `disabled`; else 0. -1 for a NULL handle.
///
/// # Safety
/// `ktm` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn ktm_is_degraded(ktm: *const Ktm) -> c_int {
    quiet(-1, || match ktm.as_ref() {
        None => -1,
        Some(k) => c_int::from(k.lock().iter().any(Driven::is_degraded)),
    })
}

/// The number of modules the config enabled (0 for NULL).
///
/// # Safety
/// `ktm` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn ktm_module_count(ktm: *const Ktm) -> usize {
    ktm.as_ref().map_or(0, |k| k.names.len())
}

/// The name of module `index`, owned by the handle (valid until `ktm_free`); NULL when out
/// of range.
///
/// # Safety
/// `ktm` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn ktm_module_name(ktm: *const Ktm, index: usize) -> *const c_char {
    ktm.as_ref().and_then(|k| k.names.get(index)).map_or(std::ptr::null(), |n| n.as_ptr())
}

/// `collector.interval` in nanoseconds: how often the host should collect (0 for NULL).
///
/// # Safety
/// `ktm` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn ktm_interval_ns(ktm: *const Ktm) -> i64 {
    ktm.as_ref().map_or(0, |k| k.interval_ns)
}

/// The oldest queued log record, or NULL when there is none. `*level` (when not NULL) gets
/// 1 error, 2 warn, 3 info, 4 debug, 5 trace. Free the text with `ktm_string_free`.
///
/// # Safety
/// `level` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn ktm_take_log(level: *mut c_int) -> *mut c_char {
    let next = quiet(None, || LOGS.lock().unwrap_or_else(|p| p.into_inner()).queue.pop_front());
    match next {
        None => std::ptr::null_mut(),
        Some((l, text)) => {
            if !level.is_null() {
                *level = l;
            }
            cstring(&text).into_raw()
        }
    }
}

/// Frees a string this library returned (`*error`, `ktm_take_log`). NULL is ignored.
///
/// # Safety
/// `s` is null or such a string, not freed before.
#[no_mangle]
pub unsafe extern "C" fn ktm_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}

/// Log records kept for the host; the oldest are dropped past this many, so a host that
/// never drains them does not grow without limit.
const LOG_CAPACITY: usize = 1024;

struct LogQueue {
    queue: VecDeque<(c_int, String)>,
    dropped: u64,
}

static LOGS: Mutex<LogQueue> = Mutex::new(LogQueue { queue: VecDeque::new(), dropped: 0 });

struct QueueLogger;

impl log::Log for QueueLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut q = LOGS.lock().unwrap_or_else(|p| p.into_inner());
        if q.queue.len() >= LOG_CAPACITY {
            q.queue.pop_front();
            q.dropped += 1;
            let note = format!("ktm: {} log records dropped (the host does not drain ktm_take_log)", q.dropped);
            if let Some(front) = q.queue.front_mut() {
                *front = (log::Level::Warn as c_int, note);
            }
        }
        q.queue.push_back((record.level() as c_int, record.args().to_string()));
    }

    fn flush(&self) {}
}

/// Routes the crate's `log` records to the queue, unless the process (a Rust host) has its
/// own logger already, which then keeps them.
fn install_logger() {
    static LOGGER: QueueLogger = QueueLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ModuleState;

    fn text(p: *const c_char) -> String {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let mut err: *mut c_char = std::ptr::null_mut();
        let rc = unsafe { guarded(&mut err, || panic!("boom")) };
        assert_eq!(rc, -1);
        assert!(text(err).contains("boom"), "{}", text(err));
        unsafe { ktm_string_free(err) };
        assert_eq!(quiet(7, || panic!("x")), 7);
    }

    #[test]
    fn bad_config_names_the_key_and_null_is_safe() {
        let mut err: *mut c_char = std::ptr::null_mut();
        let yaml = CString::new("collector:\n  interval: 10x\n").unwrap();
        let k = unsafe { ktm_new(yaml.as_ptr(), &mut err) };
        assert!(k.is_null());
        assert!(text(err).contains("collector.interval"), "{}", text(err));
        unsafe { ktm_string_free(err) };
        unsafe {
            assert_eq!(ktm_start(std::ptr::null_mut(), std::ptr::null(), &mut err), -1);
            assert!(text(err).contains("NULL"));
            ktm_string_free(err);
            assert_eq!(ktm_is_degraded(std::ptr::null()), -1);
            ktm_free(std::ptr::null_mut());
            ktm_batch_free(std::ptr::null_mut());
        }
    }

    #[test]
    fn unstarted_ktm_collects_its_status_and_stops_twice() {
        let mut err: *mut c_char = std::ptr::null_mut();
        let k = unsafe { ktm_new(std::ptr::null(), &mut err) };
        assert!(!k.is_null() && err.is_null());
        unsafe {
            assert_eq!(ktm_module_count(k), 1);
            assert_eq!(text(ktm_module_name(k, 0)), "iomonitor");
            assert!(ktm_module_name(k, 1).is_null());
            assert_eq!(ktm_interval_ns(k), 10_000_000_000);
            let mut b: *mut KtmBatch = std::ptr::null_mut();
            assert_eq!(ktm_collect(k, std::ptr::null(), &mut b, &mut err), 0);
            let batch = &*b;
            assert_eq!((batch.n_metrics, batch.n_modules), (0, 1));
            let m = &*batch.modules;
            assert_eq!(
                (text(m.module), text(m.state), text(m.reason)),
                ("iomonitor".into(), "disabled".into(), "not started".into())
            );
            ktm_batch_free(b);
            let name = CString::new("nope").unwrap();
            assert_eq!(ktm_collect(k, name.as_ptr(), &mut b, &mut err), -1);
            assert!(b.is_null());
            assert!(text(err).contains("nope"));
            ktm_string_free(err);
            assert_eq!(ktm_stop(k, std::ptr::null(), &mut err), 0);
            assert_eq!(ktm_stop(k, std::ptr::null(), &mut err), 0);
            assert_eq!(ktm_is_degraded(k), 0);
            ktm_free(k);
        }
    }

    #[test]
    fn a_textfile_holds_one_collection_as_prometheus_text() {
        let dir = std::env::temp_dir().join(format!("ktm-capi-textfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ktm.prom");
        let path = CString::new(file.to_str().unwrap()).unwrap();
        let mut err: *mut c_char = std::ptr::null_mut();
        unsafe {
            let k = ktm_new(std::ptr::null(), &mut err);
            assert_eq!(ktm_write_textfile(k, std::ptr::null(), path.as_ptr(), &mut err), 0);
            assert!(err.is_null());
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.starts_with("# batch at unix time "), "{text}");
            let families = crate::prometheus::parse(&text).unwrap();
            let state = families.iter().find(|f| f.name == crate::catalogue::MODULE_STATE.name).unwrap();
            assert_eq!(state.samples.len(), 1, "{text}");
            assert_eq!(state.samples[0].labels["reason"], "not started");
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
            // A directory is refused with the path named, not `ktm run`'s flag.
            let bad = CString::new(dir.to_str().unwrap()).unwrap();
            assert_eq!(ktm_write_textfile(k, std::ptr::null(), bad.as_ptr(), &mut err), -1);
            assert_eq!(text_of_error(err), format!("ktm_write_textfile: {}: is a directory", dir.display()));
            assert_eq!(ktm_write_textfile(k, std::ptr::null(), std::ptr::null(), &mut err), -1);
            assert!(text_of_error(err).contains("NULL"));
            ktm_free(k);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The text of an error string, freed.
    unsafe fn text_of_error(err: *mut c_char) -> String {
        let t = text(err);
        ktm_string_free(err);
        t
    }

    #[test]
    fn batch_carries_every_kind() {
        let h = crate::metrics::Histogram::from_log2_ns(&[1, 2, 3], 10);
        let metrics = vec![
            Metric::counter("c_total", "C.", 5).with_label("advice", "random"),
            Metric::gauge("g", "G.", 0.5),
            Metric::histogram("h_seconds", "H.", h),
        ];
        let status = vec![ModuleStatus::new("iomonitor", ModuleState::Degraded)
            .with_reason("why\0nul")
            .with_source(crate::metrics::MetricSource::unavailable("x_total", "none"))];
        let owned = OwnedBatch::build(&metrics, &status);
        let p = Box::into_raw(owned).cast::<KtmBatch>();
        unsafe {
            let b = &*p;
            let ms = std::slice::from_raw_parts(b.metrics, b.n_metrics);
            assert_eq!((ms[0].r#type, ms[0].counter, ms[0].n_labels), (KTM_COUNTER, 5, 1));
            assert_eq!(text((*ms[0].labels).value), "random");
            assert_eq!((ms[1].r#type, ms[1].gauge), (KTM_GAUGE, 0.5));
            assert_eq!((ms[2].r#type, ms[2].n_buckets, ms[2].count), (KTM_HISTOGRAM, 2, 6));
            assert_eq!((*ms[2].buckets.add(1)).cumulative_count, 3);
            let s = &*b.modules;
            assert_eq!(text(s.reason), "why\u{fffd}nul");
            assert!((*s.sources).mechanism.is_null());
            ktm_batch_free(p);
        }
    }
}

// ---- The metric catalogue (`ktm_catalogue`): self-contained, kept last in this file. ----

/// `ktm_metric_def_t`: one entry of the metric catalogue ([`crate::catalogue`]).
#[repr(C)]
pub struct KtmMetricDef {
    pub key: *const c_char,
    pub name: *const c_char,
    pub help: *const c_char,
    pub r#type: u32,
    pub unit: *const c_char,
    pub labels: *const c_char,
}

/// The catalogue as C structs, built once and never freed: its pointers lead into `_text`,
/// whose heap buffers never move.
struct CatalogueTable {
    _text: Vec<CString>,
    defs: Vec<KtmMetricDef>,
}

// SAFETY: the table is immutable once built and its pointers only lead into its own
// strings, which live as long as the process.
unsafe impl Send for CatalogueTable {}
// SAFETY: as above: shared reads only.
unsafe impl Sync for CatalogueTable {}

/// A catalogue entry's labels as `ktm_metric_def_t.labels` spells them: comma-separated
/// names, a closed label followed by `:` and its values joined by `|` in lane order
/// (`advice:normal|random|...|other`).
fn catalogue_labels(d: &crate::catalogue::MetricDef) -> String {
    let label = |l: &crate::catalogue::Label| match l.values {
        [] => l.name.to_string(),
        values => format!("{}:{}", l.name, values.join("|")),
    };
    d.labels.iter().map(label).collect::<Vec<_>>().join(",")
}

fn catalogue_table() -> &'static CatalogueTable {
    static TABLE: std::sync::OnceLock<CatalogueTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        use crate::catalogue::{Kind, ALL};
        let mut text = Vec::new();
        let mut c = |s: &str| {
            // Catalogue text has no NUL (its tests check the help); an empty string if it did.
            let s = CString::new(s).unwrap_or_default();
            let p = s.as_ptr();
            text.push(s);
            p
        };
        let defs = ALL
            .iter()
            .map(|d| KtmMetricDef {
                key: c(d.key),
                name: c(d.name),
                help: c(d.help),
                r#type: match d.kind {
                    Kind::Counter => KTM_COUNTER,
                    Kind::Gauge => KTM_GAUGE,
                    Kind::Histogram => KTM_HISTOGRAM,
                },
                unit: c(d.unit.as_str()),
                labels: c(&catalogue_labels(d)),
            })
            .collect();
        CatalogueTable { _text: text, defs }
    })
}

/// Every metric the library exports: `*defs` receives the catalogue's entries (static,
/// never freed), the return value their number. A NULL `defs` only counts them.
///
/// # Safety
/// `defs` is NULL or points to writable storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn ktm_catalogue(defs: *mut *const KtmMetricDef) -> usize {
    let table = catalogue_table();
    if !defs.is_null() {
        // SAFETY: the caller passes storage for one pointer.
        unsafe { *defs = table.defs.as_ptr() };
    }
    table.defs.len()
}

#[cfg(test)]
mod catalogue_abi_tests {
    use super::*;

    #[test]
    fn the_catalogue_crosses_the_abi_whole() {
        let mut p: *const KtmMetricDef = std::ptr::null();
        let n = unsafe { ktm_catalogue(&mut p) };
        assert_eq!(n, crate::catalogue::ALL.len());
        assert_eq!(unsafe { ktm_catalogue(std::ptr::null_mut()) }, n);
        let defs = unsafe { std::slice::from_raw_parts(p, n) };
        let s = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
        for (c, d) in defs.iter().zip(crate::catalogue::ALL) {
            assert_eq!(
                (s(c.key), s(c.name), s(c.help), s(c.unit)),
                (d.key.into(), d.name.into(), d.help.into(), d.unit.as_str().into())
            );
        }
        let advice = defs.iter().find(|c| s(c.key) == "FADVISE_ADVICE").unwrap();
        assert_eq!(s(advice.labels), "advice:normal|random|sequential|willneed|dontneed|noreuse|other");
        assert_eq!(advice.r#type, KTM_COUNTER);
        let runs = defs.iter().find(|c| s(c.key) == "BPF_PROGRAM_RUNS").unwrap();
        assert_eq!(s(runs.labels), "module,program,attach");
        let latency = defs.iter().find(|c| s(c.key) == "SYS_PREAD_LATENCY").unwrap();
        assert_eq!((latency.r#type, s(latency.labels)), (KTM_HISTOGRAM, String::new()));
    }
}
