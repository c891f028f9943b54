//! How the sinks are doing: each one's position (the journal keeps what the slowest has
//! not passed), deliveries and last error, for `/ready` and the metrics; and the
//! operational events webhooks carry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;

use super::spec::SinkSpec;
use crate::server::records::Cursor;
use crate::sync::Unpoisoned;

/// An event about the process rather than a tenant's usage (Redis degraded mode and
/// its end), for webhooks. Its id is fixed when it happens: a retry sends the same one.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationalEvent {
    pub id: String,
    /// `redis_degraded` or `redis_recovered`.
    pub kind: &'static str,
    pub at: chrono::DateTime<chrono::Utc>,
    pub data: Value,
}

impl OperationalEvent {
    pub fn new(kind: &'static str, at: chrono::DateTime<chrono::Utc>, data: Value) -> OperationalEvent {
        let nonce: u64 = fastrand::u64(..);
        let id = blake3::hash(format!("{kind}/{}/{nonce}", at.timestamp_nanos_opt().unwrap_or(0)).as_bytes());
        OperationalEvent { id: id.to_hex()[..32].to_string(), kind, at, data }
    }
}

/// How one sink is doing, for `/ready`, the metrics and the journal's pruning.
#[derive(Debug)]
pub struct SinkStatus {
    pub name: String,
    pub kind: &'static str,
    /// Every journal entry up to this one is delivered (or carries nothing for the sink).
    settled: AtomicU64,
    pub(super) delivered: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A moment's view of one sink.
#[derive(Debug, Clone)]
pub struct SinkReport {
    pub name: String,
    pub kind: &'static str,
    pub settled: u64,
    pub delivered: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

impl SinkStatus {
    pub(super) fn settle(&self, through: Cursor) {
        // A record's entry is settled once its last record is; an entry's first records
        // delivered leave it open (one entry short is safe).
        let seq = if through.index == u32::MAX { through.seq } else { through.seq.saturating_sub(1) };
        self.settled.fetch_max(seq, Ordering::AcqRel);
    }

    pub(super) fn failed(&self, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unpoisoned() = Some(error.to_string());
    }
}

/// Every sink of this process, and the operational events webhooks carry.
pub struct SinkBoard {
    sinks: Mutex<Vec<Arc<SinkStatus>>>,
    operational: broadcast::Sender<OperationalEvent>,
}

impl Default for SinkBoard {
    fn default() -> Self {
        SinkBoard { sinks: Mutex::default(), operational: broadcast::channel(64).0 }
    }
}

impl SinkBoard {
    pub(super) fn register(&self, spec: &SinkSpec) -> Arc<SinkStatus> {
        let status = Arc::new(SinkStatus {
            name: spec.name.clone(),
            kind: spec.destination.kind(),
            settled: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        self.sinks.lock().unpoisoned().push(status.clone());
        status
    }

    /// The journal position every sink has passed: segments after it are kept.
    /// `None` without sinks.
    pub fn floor(&self) -> Option<u64> {
        self.sinks.lock().unpoisoned().iter().map(|s| s.settled.load(Ordering::Acquire)).min()
    }

    pub fn reports(&self) -> Vec<SinkReport> {
        self.sinks
            .lock()
            .unpoisoned()
            .iter()
            .map(|s| SinkReport {
                name: s.name.clone(),
                kind: s.kind,
                settled: s.settled.load(Ordering::Acquire),
                delivered: s.delivered.load(Ordering::Relaxed),
                failures: s.failures.load(Ordering::Relaxed),
                last_error: s.last_error.lock().unpoisoned().clone(),
            })
            .collect()
    }

    pub(super) fn operational(&self) -> broadcast::Receiver<OperationalEvent> {
        self.operational.subscribe()
    }

    /// Tells every webhook of an operational event (Redis degraded mode and its end).
    pub fn announce(&self, event: OperationalEvent) {
        let _ = self.operational.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_settles_the_entries_before_it_and_through_settles_its_own() {
        let board = SinkBoard::default();
        let spec = SinkSpec::jsonl("x".into());
        let status = board.register(&spec);
        status.settle(Cursor { seq: 10, index: 2 });
        assert_eq!(board.floor(), Some(9));
        status.settle(Cursor { seq: 12, index: u32::MAX });
        assert_eq!(board.floor(), Some(12));
        status.settle(Cursor { seq: 11, index: 0 });
        assert_eq!(board.floor(), Some(12), "never backwards");
    }
}
