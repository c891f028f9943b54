//! The local append-only journal: the embedded default's durable state.
//!
//! Every accepted event (with its original outcome and the records it emitted), every
//! dead letter and every tenant change is appended as one frame, in the order the engine
//! saw them, so replaying the journal rebuilds exactly the same state, outcomes and
//! record cursors. Frames are `[len u32][crc32 u32][payload]`; a torn tail (a crash in
//! the middle of a write) is truncated to the last whole frame on open, and damage in
//! the middle of a segment stops start-up: an acknowledged event is never skipped
//! silently.
//!
//! Writes are group-committed by one flusher thread: callers append to a shared buffer
//! and wait until the flusher has written (and, with `Durability::Fsync`, fdatasync'ed)
//! past their frame. An RPC answers only then.

use crate::sync::Unpoisoned;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use prost::Message;

/// When an answer may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the file (survives a crash of the process).
    Write,
    /// Also flushed to disk (survives a crash of the machine). Batched: one fdatasync
    /// covers every frame appended while the previous one ran.
    Fsync,
}

/// One journal frame.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(oneof = "EntryKind", tags = "2, 3, 4, 6, 7, 8")]
    pub kind: Option<EntryKind>,
    /// The records this entry emitted (`daybook.v1.Record`, cursor unset), in order.
    /// Slices of the segment read, not copies: replay reads millions of them.
    #[prost(bytes = "bytes", repeated, tag = "5")]
    pub records: Vec<bytes::Bytes>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EntryKind {
    /// An accepted event (`daybook.v1.Event`) and the arrival instant it was judged at.
    #[prost(message, tag = "2")]
    Event(EventEntry),
    /// An event refused as too late (T-3): only its dead-letter record.
    #[prost(message, tag = "3")]
    DeadLetter(DeadLetterEntry),
    /// A tenant created or changed through the API (`daybook.v1.Tenant`, whole).
    #[prost(bytes, tag = "4")]
    Tenant(Vec<u8>),
    /// Periods closed past the lateness horizon and their state pruned, at this arrival
    /// instant (Unix nanoseconds): replayed at the same point, it prunes the same state.
    #[prost(int64, tag = "6")]
    ClosePeriods(i64),
    /// Under a shared store: every entry up to this position has its shared effects in
    /// the store. Entries after it that are `pending` are sent again after a restart.
    #[prost(uint64, tag = "7")]
    Shipped(u64),
    /// Under a shared store: records this replica emitted to the store that no event
    /// carries (usage alerts judged on the shared aggregates), journaled so that this
    /// replica's watch stream and record sink carry them too. Replay changes nothing.
    #[prost(bool, tag = "8")]
    SharedRecords(bool),
}

#[derive(Clone, PartialEq, Message)]
pub struct EventEntry {
    #[prost(bytes = "vec", tag = "1")]
    pub event: Vec<u8>,
    /// Unix nanoseconds; absent when lateness was not judged.
    #[prost(int64, optional, tag = "2")]
    pub now_nanos: Option<i64>,
    /// Under a shared store: the value of the event's shared entry it was rated against,
    /// the store's (`Shared::encode_tagged`). Absent: rated against local state alone.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub claimed: Option<Vec<u8>>,
    /// Under a shared store: its shared effects were not in the store when it was
    /// journaled (decided in degraded mode, or records still to emit).
    #[prost(bool, tag = "4")]
    pub pending: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct DeadLetterEntry {
    #[prost(string, tag = "1")]
    pub event_id: String,
}

/// When an entry was decided (Unix nanoseconds), if it says: the arrival instant an
/// event was judged at, or the instant periods were closed.
pub fn decided_at(entry: &Entry) -> Option<i64> {
    match &entry.kind {
        Some(EntryKind::Event(e)) => e.now_nanos,
        Some(EntryKind::ClosePeriods(at)) => Some(*at),
        _ => None,
    }
}

/// Errors reading the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "journal segment {segment} is damaged at byte {offset}: {reason}; run `daybook journal verify` and `daybook journal repair`"
    )]
    Damaged { segment: PathBuf, offset: u64, reason: String },
}

/// How the journal writes: its durability and the size of its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    pub durability: Durability,
    pub segment_bytes: u64,
}

impl From<Durability> for JournalOptions {
    fn from(durability: Durability) -> Self {
        JournalOptions { durability, segment_bytes: SEGMENT_BYTES }
    }
}

/// The default size at which a segment is closed and the next begun
/// (`journal_segment_bytes`).
pub const SEGMENT_BYTES: u64 = 64 << 20;
const HEADER: usize = 8;
/// A frame larger than this is damage, not data.
const MAX_FRAME: u32 = 64 << 20;

/// Encodes one frame.
pub fn frame(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    frame_into(entry, &mut out);
    out
}

/// Appends `entry`'s frame to `out`, encoding it in place.
pub fn frame_into(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve(HEADER + entry.encoded_len());
    out.extend_from_slice(&[0; HEADER]);
    entry.encode_raw(out);
    let payload = &out[start + HEADER..];
    let (len, crc) = ((payload.len() as u32).to_le_bytes(), crc32fast::hash(payload).to_le_bytes());
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + HEADER].copy_from_slice(&crc);
}

/// What scanning a segment gives: its whole entries, the offset after the last of them,
/// and what stopped the scan if it was not the end of the file.
type Scanned = Result<(Vec<Entry>, u64, Option<String>), std::io::Error>;

/// Reads every whole frame of one segment. Returns the entries, the offset after the
/// last whole frame, and what stopped the scan if it was not the end of the file.
pub fn scan_segment(path: &Path) -> Result<(Vec<Entry>, u64, Option<String>), std::io::Error> {
    Ok(scan_bytes(bytes::Bytes::from(std::fs::read(path)?)))
}

/// [`scan_segment`] of bytes already read. Any bytes at all: a damaged or hostile
/// segment ends the scan with a reason, never a panic (fuzzed).
pub fn scan_bytes(bytes: bytes::Bytes) -> (Vec<Entry>, u64, Option<String>) {
    let mut entries = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        if bytes.len() - offset < HEADER {
            return (entries, offset as u64, Some("truncated frame header".into()));
        }
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
        if len > MAX_FRAME {
            return (entries, offset as u64, Some(format!("frame length {len} is not plausible")));
        }
        let end = offset + HEADER + len as usize;
        if end > bytes.len() {
            return (entries, offset as u64, Some("truncated frame".into()));
        }
        let payload = bytes.slice(offset + HEADER..end);
        if crc32fast::hash(&payload) != crc {
            return (entries, offset as u64, Some("checksum mismatch".into()));
        }
        match Entry::decode(payload) {
            Ok(entry) => entries.push(entry),
            Err(e) => return (entries, offset as u64, Some(format!("undecodable frame: {e}"))),
        }
        offset = end;
    }
    (entries, offset as u64, None)
}

/// The journal's segment files, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .filter(|p| {
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

/// A segment's first sequence number, which is its name (0 if the name is not one).
fn first_seq_of(path: &Path) -> u64 {
    path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn segment_name(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

/// Replays the journal after sequence number `after` into `apply`, one segment at a time (memory stays bounded by a
/// segment, whatever the journal's size). A torn tail of the *last* segment is truncated
/// (that frame was never acknowledged); damage anywhere else, or a gap in the sequence, is
/// an error, and the caller must not start. Returns the last sequence number.
pub fn recover(dir: &Path, after: u64, mut apply: impl FnMut(Entry)) -> Result<u64, JournalError> {
    let all_files = segments(dir)?;
    // Segments whose entries all precede `after + 1` (a snapshot covers them) are skipped
    // whole: a segment's name is its first sequence number.
    let start = all_files.iter().rposition(|p| first_seq_of(p) <= after + 1).unwrap_or(0);
    let files = &all_files[start..];
    // After `daybook journal repair` the operator has accepted the dropped records, and
    // the gaps they leave are expected; otherwise a gap is damage.
    let repaired = dir.join("repairs.log").exists();
    // A segment's name is its first sequence number: the first segment read must begin
    // there (an emptied first segment, or one missing, would otherwise lose its entries
    // unnoticed; found by the damaged-journal property test).
    let mut last: Option<u64> = files.first().map(|p| first_seq_of(p).saturating_sub(1));
    if after == 0
        && !repaired
        && let Some(first) = files.first()
        && first_seq_of(first) != 1
    {
        return Err(JournalError::Damaged {
            segment: first.clone(),
            offset: 0,
            reason: format!("the journal starts at entry {}: entries before it are missing", first_seq_of(first)),
        });
    }
    let mut apply_segment = |i: usize, path: &PathBuf, scanned: Scanned| -> Result<(), JournalError> {
        let (entries, good, problem) = scanned?;
        if let Some(reason) = problem {
            let is_last = i + 1 == files.len();
            let len = std::fs::metadata(path)?.len();
            // A torn tail is an incomplete last frame: nothing whole may follow it.
            if is_last && is_torn_tail(path, good, len)? {
                OpenOptions::new().write(true).open(path)?.set_len(good)?;
            } else {
                return Err(JournalError::Damaged { segment: path.clone(), offset: good, reason });
            }
        }
        for entry in entries {
            if let Some(previous) = last
                && entry.seq != previous + 1
                && !(repaired && entry.seq > previous)
            {
                return Err(JournalError::Damaged {
                    segment: path.clone(),
                    offset: 0,
                    reason: format!("sequence jumps from {previous} to {}", entry.seq),
                });
            }
            last = Some(entry.seq);
            if entry.seq > after {
                apply(entry);
            }
        }
        Ok(())
    };
    // Segments are read and decoded on a thread of their own, one ahead of the one being
    // applied: on two cores, reading overlaps rating. Memory stays bounded by two segments.
    std::thread::scope(|scope| -> Result<(), JournalError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Scanned>(1);
        scope.spawn(move || {
            for path in files {
                if tx.send(scan_segment(path)).is_err() {
                    return;
                }
            }
        });
        for (i, (path, scanned)) in files.iter().zip(rx).enumerate() {
            apply_segment(i, path, scanned)?;
        }
        Ok(())
    })?;
    let last = last.unwrap_or(0);
    if last < after {
        return Err(JournalError::Damaged {
            segment: dir.to_path_buf(),
            offset: 0,
            reason: format!("the journal ends at {last}, before the snapshot's {after}: journal segments are missing"),
        });
    }
    Ok(last)
}

/// Whether the bytes from `good` to the end are a single incomplete frame (a write cut
/// short), rather than damage with whole frames after it.
fn is_torn_tail(path: &Path, good: u64, len: u64) -> Result<bool, std::io::Error> {
    let rest = len - good;
    if rest < HEADER as u64 {
        return Ok(true);
    }
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(good))?;
    let mut header = [0u8; HEADER];
    f.read_exact(&mut header)?;
    let frame_len = u64::from(u32::from_le_bytes(header[..4].try_into().expect("4 bytes")));
    // An incomplete frame claims more bytes than remain...
    if !(frame_len <= u64::from(MAX_FRAME) && HEADER as u64 + frame_len > rest) {
        return Ok(false);
    }
    // ...and nothing whole follows it. Garbage can also claim a length past the end;
    // truncating there would drop the acknowledged frames after it (found by the
    // damaged-journal property test).
    let mut after = Vec::new();
    f.seek(SeekFrom::Start(good + 1))?;
    f.read_to_end(&mut after)?;
    if !intact_frames(&after).0.is_empty() {
        return Ok(false);
    }
    // A whole frame whose length field was damaged also claims too much: its payload, all
    // there, still matches its checksum. A torn write's part of a payload does not.
    let payload = &after[HEADER - 1..];
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    Ok(crc32fast::hash(payload) != crc)
}

/// Shared state between appenders and the flusher.
struct Pending<P> {
    buf: Vec<u8>,
    /// Sequence number of the last frame appended.
    appended: u64,
    /// What rides with appended frames (the server's records), published once written.
    publish: Vec<(u64, P)>,
    closed: bool,
}

/// The segment file and where written records go. Whoever holds it writes: under
/// `write` durability the caller that is about to wait (no thread switch: the latency of
/// a call at low concurrency), under `fsync` the flusher thread (an fdatasync must not
/// block a runtime thread). Frames are taken from `Pending` only while it is held, so
/// they are written, and records published, in sequence order.
struct Output<P> {
    segment: SegmentWriter,
    publish: Box<dyn Fn(u64, P) + Send>,
}

/// Told of every group-commit write: how long it took, and whether it was synced. The
/// journal knows nothing of metrics; the server passes a function that records them.
pub type WriteObserver = Box<dyn Fn(std::time::Duration, bool) + Send + Sync>;

/// The writing side. `P` is what an entry carries until it is written (the server's
/// stamped records): the journal only hands it back, in sequence order, once durable.
pub struct Journal<P> {
    pending: Mutex<Pending<P>>,
    wake: Condvar,
    output: Mutex<Output<P>>,
    durability: Durability,
    durable: tokio::sync::watch::Sender<u64>,
    dir: PathBuf,
    /// Set when the journal can no longer be written: nothing more is acknowledged, and
    /// readiness fails.
    failed: AtomicBool,
    observe_write: WriteObserver,
}

impl<P: Send + 'static> Journal<P> {
    /// Opens the journal for appending after `last_seq`, and starts the flusher thread.
    /// What written frames carry is handed to `publish` in sequence order.
    pub fn open(
        dir: &Path,
        last_seq: u64,
        options: JournalOptions,
        publish: impl Fn(u64, P) + Send + 'static,
        observe_write: WriteObserver,
    ) -> Result<Arc<Journal<P>>, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        let (durable, _) = tokio::sync::watch::channel(last_seq);
        let JournalOptions { durability, segment_bytes } = options;
        let segment = SegmentWriter::open(dir, last_seq, segment_bytes)?;
        let journal = Arc::new(Journal {
            pending: Mutex::new(Pending { buf: Vec::new(), appended: last_seq, publish: Vec::new(), closed: false }),
            wake: Condvar::new(),
            output: Mutex::new(Output { segment, publish: Box::new(publish) }),
            durability,
            durable,
            dir: dir.to_path_buf(),
            failed: AtomicBool::new(false),
            observe_write,
        });
        let flusher = journal.clone();
        std::thread::Builder::new().name("journal-flusher".into()).spawn(move || flusher.flush_loop())?;
        Ok(journal)
    }

    /// Appends an entry; its `seq` is assigned here, and `carried` makes what the entry
    /// carries until written (e.g. its records stamped with `seq`). Call under the
    /// ordering stripe of what the entry changes, so that journal order is rating order
    /// for every key.
    pub fn append(&self, mut entry: Entry, carried: impl FnOnce(u64) -> Option<P>) -> u64 {
        let mut p = self.pending.lock().unpoisoned();
        p.appended += 1;
        entry.seq = p.appended;
        frame_into(&entry, &mut p.buf);
        let seq = p.appended;
        if let Some(carried) = carried(seq) {
            p.publish.push((seq, carried));
        }
        drop(p);
        if self.durability == Durability::Fsync {
            self.wake.notify_one();
        }
        seq
    }

    /// Under `write` durability, writes what is pending on this thread unless another
    /// thread is writing (it writes ours too, or the last to finish does). Called by
    /// whoever needs entries durable: `wait`, and the snapshot. Under `fsync`, the
    /// flusher thread writes.
    pub fn flush_here(&self) {
        if self.durability == Durability::Fsync {
            return;
        }
        // Whoever releases the output checks again: an entry appended while another
        // thread held it is written by that thread's next turn or by ours.
        while let Ok(mut output) = self.output.try_lock() {
            if !self.write_pending(&mut output) {
                return;
            }
            drop(output);
            if self.pending.lock().unpoisoned().buf.is_empty() {
                return;
            }
        }
    }

    /// Writes the pending frames (and syncs under `fsync`), then marks them durable and
    /// publishes their records. False when nothing was pending or the journal failed.
    fn write_pending(&self, output: &mut Output<P>) -> bool {
        if self.failed() {
            return false;
        }
        let (buf, upto, records) = {
            let mut p = self.pending.lock().unpoisoned();
            if p.buf.is_empty() {
                return false;
            }
            (std::mem::take(&mut p.buf), p.appended, std::mem::take(&mut p.publish))
        };
        let started = Instant::now();
        let result = output.segment.write(&buf, upto).and_then(|_| match self.durability {
            Durability::Write => Ok(()),
            Durability::Fsync => output.segment.sync(),
        });
        if let Err(e) = result {
            // Nothing more can be acknowledged; waiters stay blocked and the process
            // must be restarted (the journal replays what was written).
            tracing::error!("journal write failed, no further event can be acknowledged: {e}");
            self.failed.store(true, Ordering::Release);
            return false;
        }
        (self.observe_write)(started.elapsed(), self.durability == Durability::Fsync);
        // Records are published before their entries are marked durable, so that a
        // follower that sees a position durable and no record waiting has seen them all.
        for (seq, records) in records {
            (output.publish)(seq, records);
        }
        self.durable.send_replace(upto);
        true
    }

    /// The sequence number of the last appended entry.
    pub fn appended(&self) -> u64 {
        self.pending.lock().unpoisoned().appended
    }

    /// Waits until every entry up to `seq` is durable.
    pub async fn wait(&self, seq: u64) {
        self.wait_among(seq, false).await;
    }

    /// [`Journal::wait`] for a caller that knows whether other calls are in flight. When
    /// they are, it first lets those its thread already has ready append their entries,
    /// so that one write carries them all: writing at once was one write system call per
    /// call at 64 calls in flight (issue 19). A call alone writes at once: the yield
    /// would cost it a trip through the scheduler's driver.
    pub async fn wait_among(&self, seq: u64, others_in_flight: bool) {
        if self.durable() >= seq {
            return;
        }
        if others_in_flight && self.durability == Durability::Write {
            tokio::task::yield_now().await;
            if self.durable() >= seq {
                return;
            }
        }
        self.flush_here();
        let mut rx = self.durable.subscribe();
        let _ = rx.wait_for(|d| *d >= seq).await;
    }

    pub fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// True once a write failed: the process must be restarted.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes what is pending and stops the flusher.
    pub async fn close(&self) {
        let last = self.appended();
        self.wait(last).await;
        self.pending.lock().unpoisoned().closed = true;
        self.wake.notify_one();
    }

    /// The flusher thread: writes under `fsync` durability, and under `write` whatever no
    /// caller has written within a moment (entries nobody waits for).
    fn flush_loop(&self) {
        loop {
            {
                let mut p = self.pending.lock().unpoisoned();
                while p.buf.is_empty() && !p.closed {
                    p = self.wake.wait_timeout(p, Duration::from_millis(50)).expect("journal lock").0;
                }
                if p.buf.is_empty() && p.closed {
                    return;
                }
            }
            let mut output = self.output.lock().unpoisoned();
            self.write_pending(&mut output);
            if self.failed() {
                return;
            }
        }
    }
}

/// Appends frames to the current segment, rotating at a size.
struct SegmentWriter {
    dir: PathBuf,
    file: File,
    len: u64,
    segment_bytes: u64,
}

impl SegmentWriter {
    fn open(dir: &Path, last_seq: u64, segment_bytes: u64) -> Result<Self, std::io::Error> {
        let path = match segments(dir)?.pop() {
            Some(path) => path,
            None => segment_name(dir, last_seq + 1),
        };
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            sync_dir(dir)?;
        }
        Ok(SegmentWriter { dir: dir.to_path_buf(), file, len, segment_bytes })
    }

    fn write(&mut self, buf: &[u8], upto: u64) -> Result<(), std::io::Error> {
        self.file.write_all(buf)?;
        self.len += buf.len() as u64;
        if self.len >= self.segment_bytes {
            self.file.sync_data()?;
            let path = segment_name(&self.dir, upto + 1);
            self.file = OpenOptions::new().create(true).append(true).open(&path)?;
            self.len = 0;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), std::io::Error> {
        self.file.sync_data()
    }
}

fn sync_dir(dir: &Path) -> Result<(), std::io::Error> {
    File::open(dir)?.sync_all()
}

/// Reads entries with `seq >= from` from the segments, oldest first, up to `until`.
pub fn read_from(dir: &Path, from: u64, until: u64) -> Result<Vec<Entry>, std::io::Error> {
    let files = segments(dir)?;
    let mut out = Vec::new();
    // Segment names carry their first seq: skip whole segments before `from`.
    let first_seqs: Vec<u64> = files.iter().map(|p| first_seq_of(p)).collect();
    for (i, path) in files.iter().enumerate() {
        if let Some(next) = first_seqs.get(i + 1)
            && *next <= from
        {
            continue;
        }
        if first_seqs[i] > until {
            break;
        }
        let file = File::open(path)?;
        let mut reader = BufReader::new(file);
        loop {
            let mut header = [0u8; HEADER];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let mut payload = vec![0u8; len];
            if reader.read_exact(&mut payload).is_err() {
                break;
            }
            let Ok(entry) = Entry::decode(payload.as_slice()) else { break };
            if entry.seq > until {
                return Ok(out);
            }
            if entry.seq >= from {
                out.push(entry);
            }
        }
    }
    Ok(out)
}

mod repair;
pub mod retention;

use repair::intact_frames;
pub use repair::{Damage, Report, repair, verify};

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            kind: Some(EntryKind::DeadLetter(DeadLetterEntry { event_id: format!("event-{seq}") })),
            records: vec![bytes::Bytes::from(vec![seq as u8; 40])],
        }
    }

    fn collect(dir: &Path) -> Result<Vec<Entry>, JournalError> {
        let mut out = Vec::new();
        recover(dir, 0, |e| out.push(e))?;
        Ok(out)
    }

    fn write_segment(dir: &Path, seqs: std::ops::RangeInclusive<u64>) -> PathBuf {
        let path = segment_name(dir, *seqs.start());
        let bytes: Vec<u8> = seqs.flat_map(|s| frame(&entry(s))).collect();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_torn_tail_is_truncated_to_the_last_whole_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 1..=10);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 7).unwrap();
        let entries = collect(dir.path()).unwrap();
        assert_eq!(entries.len(), 9);
        assert!(verify(dir.path()).unwrap().damage.is_empty(), "truncated on recovery");
    }

    #[test]
    fn damage_in_the_middle_stops_recovery_and_repair_keeps_every_intact_record() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1..=10);
        let path = write_segment(dir.path(), 11..=20);
        let mut bytes = std::fs::read(&path).unwrap();
        let frame_len = frame(&entry(11)).len();
        bytes[frame_len * 3 + 12] ^= 0xff; // inside the 4th frame's payload (seq 14)
        std::fs::write(&path, &bytes).unwrap();
        let error = collect(dir.path()).unwrap_err();
        assert!(error.to_string().contains("daybook journal verify"), "{error}");
        let report = verify(dir.path()).unwrap();
        assert_eq!(report.frames, 19);
        assert_eq!(report.damage.len(), 2, "the bad frame and the gap it leaves: {:?}", report.damage);
        let (kept, dropped) = repair(dir.path()).unwrap();
        assert_eq!((kept, dropped), (19, 1));
        let seqs: Vec<u64> = collect(dir.path()).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=20).filter(|s| *s != 14).collect::<Vec<_>>());
        assert!(path.with_extension("log.damaged").exists());
    }

    #[test]
    fn a_duplicated_frame_is_reported_as_a_sequence_gap() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 1..=3);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&frame(&entry(2)));
        std::fs::write(&path, bytes).unwrap();
        assert!(collect(dir.path()).is_err());
        assert_eq!(verify(dir.path()).unwrap().damage.len(), 1);
        // Repair drops the repeat, and start-up then recovers every entry once.
        assert_eq!(repair(dir.path()).unwrap(), (3, 1));
        let seqs: Vec<u64> = collect(dir.path()).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
    }
}

#[cfg(test)]
mod entry_kind_tests {
    use super::*;

    #[test]
    fn every_entry_kind_survives_its_encoding() {
        // `Shipped` was left out of the oneof's tags once: written, then never read back.
        let kinds = [
            EntryKind::Shipped(5),
            EntryKind::ClosePeriods(7),
            EntryKind::Tenant(vec![1, 2]),
            EntryKind::SharedRecords(true),
            EntryKind::DeadLetter(DeadLetterEntry { event_id: "e".into() }),
            EntryKind::Event(EventEntry { event: vec![1], now_nanos: Some(2), claimed: None, pending: true }),
        ];
        for kind in kinds {
            let entry = Entry { seq: 3, kind: Some(kind), records: Vec::new() };
            let back = Entry::decode(prost::Message::encode_to_vec(&entry).as_slice()).unwrap();
            assert_eq!(back, entry);
        }
    }
}
