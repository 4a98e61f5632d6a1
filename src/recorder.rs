//! The Flight Recorder side: where batches go.

use crate::metrics::Batch;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The sidecar's receiver of KTM batches. It takes ownership so it can keep, forward or
/// drop the batch without a copy.
pub trait FlightRecorder: Send {
    fn record(&mut self, batch: Batch);
}

/// Kept batches and the number ever recorded.
type History = (VecDeque<Batch>, u64);

/// An in-memory recorder with bounded history; clones share the same history.
#[derive(Clone, Debug)]
pub struct MemoryRecorder {
    inner: Arc<(Mutex<History>, Condvar)>,
    capacity: usize,
}

impl Default for MemoryRecorder {
    fn default() -> Self {
        MemoryRecorder::new(64)
    }
}

impl MemoryRecorder {
    /// Keeps at most `capacity` batches, dropping the oldest.
    pub fn new(capacity: usize) -> Self {
        MemoryRecorder {
            inner: Arc::new((Mutex::new((VecDeque::new(), 0)), Condvar::new())),
            capacity: capacity.max(1),
        }
    }

    /// The newest batch.
    pub fn latest(&self) -> Option<Batch> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner()).0.back().cloned()
    }

    /// Batches kept, oldest first.
    pub fn history(&self) -> Vec<Batch> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner()).0.iter().cloned().collect()
    }

    /// Batches recorded since creation (including dropped ones).
    pub fn total(&self) -> u64 {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Waits until `n` batches have been recorded in all; false on timeout.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.inner;
        let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
        while g.1 < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

impl FlightRecorder for MemoryRecorder {
    fn record(&mut self, batch: Batch) {
        let (lock, cv) = &*self.inner;
        let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() == self.capacity {
            g.0.pop_front();
        }
        g.0.push_back(batch);
        g.1 += 1;
        cv.notify_all();
    }
}

impl FlightRecorder for Box<dyn FlightRecorder> {
    fn record(&mut self, batch: Batch) {
        (**self).record(batch)
    }
}
