//! Emitted records on their way downstream: cursors, the live broadcast, and following
//! the stream from any cursor (catching up from the journal, then live). The watch RPC
//! and the JSONL file sink are both followers.

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use tokio::sync::broadcast;

use crate::api::pb;

/// A position in the record stream: the journal entry and the record's index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub seq: u64,
    pub index: u32,
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let (seq, index) = text.split_once(':')?;
        Some(Cursor { seq: seq.parse().ok()?, index: index.parse().ok()? })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.index)
    }
}

/// A record with its cursor.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub cursor: Cursor,
    pub tenant: Arc<str>,
    pub record: pb::Record,
}

/// Stamps the records of journal entry `seq` with their cursors.
pub fn stamp(seq: u64, records: Vec<pb::Record>) -> Vec<Stamped> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, mut record)| {
            let cursor = Cursor { seq, index: i as u32 };
            record.cursor = cursor.to_string();
            Stamped { cursor, tenant: Arc::from(record.tenant_id.as_str()), record }
        })
        .collect()
}

/// The live side: records of durable entries, in cursor order.
pub struct Hub {
    live: broadcast::Sender<Arc<Vec<Stamped>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { live: broadcast::channel(4096).0 }
    }
}

/// What a journal entry carries until it is written: its records, stamped with their
/// cursors; published to the live stream once the entry is durable.
pub type Published = Arc<Vec<Stamped>>;

impl Hub {
    /// Called by the journal flusher once entry `seq` is written.
    pub fn publish(&self, records: Arc<Vec<Stamped>>) {
        let _ = self.live.send(records);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Stamped>>> {
        self.live.subscribe()
    }
}

/// Follows the stream after `after`: first from the journal up to what is durable, then
/// live; if the live side laps the follower, it catches up from the journal again. Calls
/// `deliver` with each record in order; stops when `deliver` returns false.
pub async fn follow(
    hub: &Hub,
    journal: &super::journal::Journal<Published>,
    mut after: Cursor,
    mut deliver: impl FnMut(&Stamped) -> bool,
) {
    const CHUNK: u64 = 512;
    loop {
        let mut live = hub.subscribe();
        // Catch up from disk to what is durable now; the subscription above buffers what
        // is published meanwhile.
        loop {
            let durable = journal.durable();
            if after.seq >= durable {
                break;
            }
            let until = durable.min(after.seq.max(1) + CHUNK);
            let dir = journal.dir().to_path_buf();
            let from = after.seq.max(1);
            let entries = match tokio::task::spawn_blocking(move || super::journal::read_from(&dir, from, until)).await
            {
                Ok(Ok(entries)) => entries,
                _ => return,
            };
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                for (i, bytes) in entry.records.iter().enumerate() {
                    let cursor = Cursor { seq: entry.seq, index: i as u32 };
                    if cursor <= after {
                        continue;
                    }
                    let Ok(mut record) = pb::Record::decode(bytes.as_ref()) else { continue };
                    record.cursor = cursor.to_string();
                    let stamped = Stamped { cursor, tenant: Arc::from(record.tenant_id.as_str()), record };
                    if !deliver(&stamped) {
                        return;
                    }
                    after = cursor;
                }
                after = after.max(Cursor { seq: entry.seq, index: u32::MAX });
            }
        }
        loop {
            match live.recv().await {
                Ok(batch) => {
                    for stamped in batch.iter() {
                        if stamped.cursor <= after {
                            continue;
                        }
                        if !deliver(stamped) {
                            return;
                        }
                        after = stamped.cursor;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// The cursor of the last record in a JSONL sink file, to resume after a restart.
pub fn last_cursor_in(path: &Path) -> Option<Cursor> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Cursor::parse(value.get("cursor")?.as_str()?)
}
