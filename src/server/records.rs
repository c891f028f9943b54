//! Emitted records on their way downstream: cursors, the live broadcast, and following
//! the stream from any cursor (catching up from the journal, then live). The watch RPC
//! and the JSONL file sink are both followers.

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
    /// When its journal entry was decided (Unix nanoseconds), if the entry says.
    pub at: Option<i64>,
}

/// Stamps the records of journal entry `seq`, decided at `at`, with their cursors.
pub fn stamp(seq: u64, at: Option<i64>, records: Vec<pb::Record>) -> Vec<Stamped> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, mut record)| {
            let cursor = Cursor { seq, index: i as u32 };
            record.cursor = cursor.to_string();
            Stamped { cursor, tenant: Arc::from(record.tenant_id.as_str()), record, at }
        })
        .collect()
}

/// What a follower is told, in order: each record, and how far the journal has been read
/// (every entry up to `Through(seq)` was seen; those without records carry nothing), so
/// that a follower whose records are rare still lets the journal's old segments go.
#[derive(Debug, Clone, Copy)]
pub enum Followed<'a> {
    Record(&'a Stamped),
    Through(u64),
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

/// Who follows the record stream: told each record and position in order.
pub trait Follower: Send {
    /// Takes the next record or position; false ends the following.
    fn take(&mut self, followed: Followed<'_>) -> impl Future<Output = bool> + Send;
}

/// Tells the follower how far the journal is passed, when it can know: an entry's
/// records are published before it is marked durable, so once the durable position is
/// read and then no batch waits in the live queue, every entry up to that position has
/// been seen. (Read in the other order, a batch published in between would be skipped.)
/// False when the follower stops.
async fn passed(
    marked: &mut tokio::sync::watch::Receiver<u64>,
    live: &broadcast::Receiver<Arc<Vec<Stamped>>>,
    after: &mut Cursor,
    follower: &mut impl Follower,
) -> bool {
    let seq = *marked.borrow_and_update();
    if !live.is_empty() || seq <= after.seq {
        return true;
    }
    *after = Cursor { seq, index: u32::MAX };
    follower.take(Followed::Through(seq)).await
}

/// Follows the stream after `after`: first from the journal up to what is durable, then
/// live; if the live side laps the follower, it catches up from the journal again. Calls
/// the follower with each record in order, and with how far the journal was read; stops
/// when it returns false.
pub async fn follow(
    hub: &Hub,
    journal: &super::journal::Journal<Published>,
    mut after: Cursor,
    follower: &mut impl Follower,
) {
    const CHUNK: u64 = 512;
    let mut marked = journal.subscribe();
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
            let last = entries.last().map(|e| e.seq);
            for entry in entries {
                let at = super::journal::decided_at(&entry);
                for (i, bytes) in entry.records.iter().enumerate() {
                    let cursor = Cursor { seq: entry.seq, index: i as u32 };
                    if cursor <= after {
                        continue;
                    }
                    let Ok(mut record) = pb::Record::decode(bytes.as_ref()) else { continue };
                    record.cursor = cursor.to_string();
                    let stamped = Stamped { cursor, tenant: Arc::from(record.tenant_id.as_str()), record, at };
                    if !follower.take(Followed::Record(&stamped)).await {
                        return;
                    }
                    after = cursor;
                }
                after = after.max(Cursor { seq: entry.seq, index: u32::MAX });
            }
            if let Some(last) = last
                && !follower.take(Followed::Through(last)).await
            {
                return;
            }
        }
        loop {
            tokio::select! {
                biased;
                received = live.recv() => match received {
                    Ok(batch) => {
                        for stamped in batch.iter() {
                            if stamped.cursor <= after {
                                continue;
                            }
                            if !follower.take(Followed::Record(stamped)).await {
                                return;
                            }
                            after = stamped.cursor;
                        }
                        // Entries without records after this batch may already be durable,
                        // and no later change of the durable position may come to say so.
                        if !passed(&mut marked, &live, &mut after, follower).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = marked.changed() => {
                    if changed.is_err() || !passed(&mut marked, &live, &mut after, follower).await {
                        return;
                    }
                }
            }
        }
    }
}
