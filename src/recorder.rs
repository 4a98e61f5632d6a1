//! The Flight Recorder side: where batches go.
//!
//! KTM pushes; it never serves. The sidecar plugs its own recorder in through
//! [`FlightRecorder`]; [`MemoryRecorder`] is a bounded in-memory store for tests, the demo
//! and sidecars that only need the recent past; [`FnRecorder`] adapts a closure.

use crate::metrics::Batch;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The sidecar's receiver of KTM batches.
///
/// `record` takes the batch by value because the collector has no further use for it: the
/// recorder can keep, forward or drop it without a copy, and nothing borrowed has to outlive
/// the call. It is called from the collector's thread, hence `Send`; it should return quickly,
/// since a slow recorder delays the next collection.
pub trait FlightRecorder: Send {
    /// Takes one batch.
    fn record(&mut self, batch: Batch);
}

impl<R: FlightRecorder + ?Sized> FlightRecorder for Box<R> {
    fn record(&mut self, batch: Batch) {
        (**self).record(batch)
    }
}

impl<R: FlightRecorder + ?Sized> FlightRecorder for &mut R {
    fn record(&mut self, batch: Batch) {
        (**self).record(batch)
    }
}

/// A closure as a recorder, for sidecars that only want a callback.
///
/// A wrapper rather than a blanket impl for closures, which would overlap with the impl for
/// `Box<R>` (a boxed closure is itself a closure).
pub struct FnRecorder<F>(pub F);

impl<F: FnMut(Batch) + Send> FnRecorder<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        FnRecorder(f)
    }
}

impl<F: FnMut(Batch) + Send> FlightRecorder for FnRecorder<F> {
    fn record(&mut self, batch: Batch) {
        (self.0)(batch)
    }
}

impl<F> std::fmt::Debug for FnRecorder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnRecorder")
    }
}

/// Batches kept by default: at the default 10 s interval, the last ~10 minutes.
pub const DEFAULT_CAPACITY: usize = 64;

#[derive(Debug)]
struct History {
    kept: VecDeque<Batch>,
    /// Batches recorded since creation, dropped ones included, so waiters can tell "a new
    /// batch arrived" from "the history is full".
    total: u64,
}

#[derive(Debug)]
struct Shared {
    history: Mutex<History>,
    arrived: Condvar,
    capacity: usize,
}

/// An in-memory recorder with bounded history.
///
/// Clones are handles to the same history, so one can be boxed into the collector while
/// another is read. The history is bounded because the collector pushes forever and the
/// sidecar must not grow without limit; the oldest batch is dropped first.
///
/// A panic on another thread while it held the lock does not make these methods panic: the
/// history is only ever modified by whole-batch push/pop, so it is consistent even then.
#[derive(Clone, Debug)]
pub struct MemoryRecorder {
    shared: Arc<Shared>,
}

impl Default for MemoryRecorder {
    fn default() -> Self {
        MemoryRecorder::new(DEFAULT_CAPACITY)
    }
}

impl MemoryRecorder {
    /// Keeps at most `capacity` batches (at least one, so `latest` always has the newest).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        MemoryRecorder {
            shared: Arc::new(Shared {
                history: Mutex::new(History { kept: VecDeque::with_capacity(capacity), total: 0 }),
                arrived: Condvar::new(),
                capacity,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        self.shared.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recent batch.
    pub fn latest(&self) -> Option<Batch> {
        self.lock().kept.back().cloned()
    }

    /// The kept batches, oldest first.
    pub fn history(&self) -> Vec<Batch> {
        self.lock().kept.iter().cloned().collect()
    }

    /// Number of batches kept (at most the capacity).
    pub fn len(&self) -> usize {
        self.lock().kept.len()
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.lock().kept.is_empty()
    }

    /// Batches recorded since creation, including those dropped from the history.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// The maximum number of batches kept.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Waits until `n_total_batches` have been recorded since creation; false on timeout.
    ///
    /// Counted in total rather than kept batches, so that "one more than I have seen"
    /// (`wait_for(total() + 1, ..)`) works even once the history is full.
    pub fn wait_for(&self, n_total_batches: u64, timeout: Duration) -> bool {
        // A timeout too large for an Instant means "no deadline", not a panic.
        let deadline = Instant::now().checked_add(timeout);
        let mut history = self.lock();
        while history.total < n_total_batches {
            history = match deadline {
                None => self.shared.arrived.wait(history).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.shared.arrived.wait_timeout(history, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
        true
    }

    /// Waits for a batch recorded after this call and returns the newest; `None` on timeout.
    pub fn wait_next(&self, timeout: Duration) -> Option<Batch> {
        let seen = self.total();
        if self.wait_for(seen.saturating_add(1), timeout) {
            self.latest()
        } else {
            None
        }
    }
}

impl FlightRecorder for MemoryRecorder {
    fn record(&mut self, batch: Batch) {
        {
            let mut history = self.lock();
            while history.kept.len() >= self.shared.capacity {
                history.kept.pop_front();
            }
            history.kept.push_back(batch);
            history.total = history.total.saturating_add(1);
        }
        self.shared.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metric;

    fn batch(v: u64) -> Batch {
        Batch::new(vec![Metric::counter("n_total", "n", v)], vec![])
    }

    fn value(b: &Batch) -> u64 {
        match b.metrics[0].value {
            crate::metrics::MetricValue::Counter(v) => v,
            _ => unreachable!(),
        }
    }

    #[test]
    fn history_is_bounded_and_drops_the_oldest() {
        let mut r = MemoryRecorder::new(3);
        assert!(r.is_empty() && r.latest().is_none() && r.history().is_empty());
        for v in 1..=5 {
            r.record(batch(v));
        }
        assert_eq!(r.history().iter().map(value).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(r.latest().map(|b| value(&b)), Some(5));
        assert_eq!((r.len(), r.total(), r.capacity()), (3, 5, 3));
        assert_eq!(MemoryRecorder::default().capacity(), DEFAULT_CAPACITY);
    }

    #[test]
    fn clones_share_one_history() {
        let r = MemoryRecorder::new(8);
        let mut writer = r.clone();
        writer.record(batch(7));
        assert_eq!(r.latest().map(|b| value(&b)), Some(7));
    }

    #[test]
    fn wait_for_times_out_without_a_batch() {
        let r = MemoryRecorder::new(2);
        let start = Instant::now();
        assert!(!r.wait_for(1, Duration::from_millis(100)));
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(r.wait_next(Duration::from_millis(10)).is_none());
        // Already reached: returns at once, even with a zero timeout.
        let mut w = r.clone();
        w.record(batch(1));
        assert!(r.wait_for(1, Duration::ZERO));
        assert!(r.wait_for(0, Duration::ZERO));
    }

    #[test]
    fn wait_for_wakes_up_when_another_thread_records() {
        let r = MemoryRecorder::new(1);
        let mut w = r.clone();
        let writer = std::thread::spawn(move || {
            for v in 1..=3 {
                std::thread::sleep(Duration::from_millis(30));
                w.record(batch(v));
            }
        });
        let start = Instant::now();
        // The history holds one batch, yet waiting counts every batch recorded.
        assert!(r.wait_for(3, Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(10), "woken by the record, not by the timeout");
        assert_eq!(r.latest().map(|b| value(&b)), Some(3));
        writer.join().unwrap();

        let mut w = r.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            w.record(batch(4));
        });
        assert_eq!(r.wait_next(Duration::from_secs(30)).map(|b| value(&b)), Some(4));
        writer.join().unwrap();
    }

    #[test]
    fn closures_record() {
        let mut seen = Vec::new();
        {
            let mut f = FnRecorder::new(|b: Batch| seen.push(value(&b)));
            f.record(batch(1));
            f.record(batch(2));
        }
        assert_eq!(seen, [1, 2]);
        let r = MemoryRecorder::new(4);
        let mut forward = r.clone();
        let mut boxed: Box<dyn FlightRecorder> = Box::new(FnRecorder::new(move |b| forward.record(b)));
        boxed.record(batch(3));
        assert_eq!(r.total(), 1);
    }

    #[test]
    fn poisoned_lock_does_not_panic_readers_or_writers() {
        let mut r = MemoryRecorder::new(2);
        r.record(batch(1));
        let handle = r.clone();
        let poisoner = std::thread::spawn(move || {
            let _guard = handle.shared.history.lock().unwrap();
            panic!("poison the history on purpose");
        });
        assert!(poisoner.join().is_err());
        assert!(r.shared.history.is_poisoned());
        assert_eq!(r.latest().map(|b| value(&b)), Some(1));
        r.record(batch(2));
        assert_eq!(r.history().iter().map(value).collect::<Vec<_>>(), [1, 2]);
        assert!(r.wait_for(2, Duration::from_millis(1)));
        assert_eq!((r.len(), r.total()), (2, 2));
    }

    #[test]
    fn zero_capacity_keeps_the_latest() {
        let mut r = MemoryRecorder::new(0);
        assert_eq!(r.capacity(), 1);
        r.record(batch(1));
        r.record(batch(2));
        assert_eq!(r.history().iter().map(value).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn huge_timeout_is_no_deadline() {
        let r = MemoryRecorder::default();
        let mut w = r.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.record(batch(1));
        });
        assert!(r.wait_for(1, Duration::MAX));
        t.join().unwrap();
    }

    #[test]
    fn boxed_and_borrowed_recorders_forward() {
        let r = MemoryRecorder::new(4);
        let mut boxed: Box<dyn FlightRecorder> = Box::new(r.clone());
        boxed.record(batch(1));
        let mut inner = r.clone();
        {
            let mut borrowed: &mut MemoryRecorder = &mut inner;
            FlightRecorder::record(&mut borrowed, batch(2));
        }
        assert_eq!(r.total(), 2);
    }
}
