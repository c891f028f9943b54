//! Bounded disk: journal segments that nothing needs any more are deleted.
//!
//! A segment may go when every entry in it is (1) covered by the latest snapshot (a start
//! replays only what follows it), (2) older than the record retention (the oldest cursor
//! a `WatchRecords` client may resume from) and (3) older than what an open period may
//! still need (a tenant's first void and `ExplainInteraction` read its records back).
//! "Older" is judged by the arrival instant of the first timed entry after the segment:
//! every entry of the segment arrived before it. Only a prefix of segments is deleted, so
//! the journal stays one contiguous run from its first remaining entry.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use prost::Message;

use super::{Entry, EntryKind, HEADER, first_seq_of, segments, sync_dir};

/// What a pruning pass removed, and where the journal now starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub segments: usize,
    pub bytes: u64,
    /// The first sequence number still in the journal (the oldest resumable cursor).
    pub oldest_seq: u64,
}

/// Deletes the oldest segments whose entries are all at or before `snapshot_seq` and
/// arrived before `keep_since` (Unix nanoseconds). The last segment is never deleted.
/// `announce` is told where the journal will start before any file goes, so that no
/// reader is sent into a segment being deleted.
pub fn prune(dir: &Path, snapshot_seq: u64, keep_since: i64, announce: impl FnOnce(u64)) -> std::io::Result<Pruned> {
    let files = segments(dir)?;
    let mut pruned = Pruned { oldest_seq: files.first().map(|f| first_seq_of(f)).unwrap_or(1), ..Pruned::default() };
    let mut doomed: Vec<&PathBuf> = Vec::new();
    for pair in files.windows(2) {
        let (segment, next) = (&pair[0], &pair[1]);
        let covered = first_seq_of(next).saturating_sub(1) <= snapshot_seq;
        if !covered || first_arrival(next)?.is_none_or(|at| at >= keep_since) {
            break;
        }
        doomed.push(segment);
        pruned.oldest_seq = first_seq_of(next);
    }
    announce(pruned.oldest_seq);
    for segment in doomed {
        pruned.bytes += segment.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(segment)?;
        pruned.segments += 1;
    }
    if pruned.segments > 0 {
        sync_dir(dir)?;
    }
    Ok(pruned)
}

/// The arrival instant (Unix nanoseconds) of the first entry of a segment that carries
/// one (an event judged at an arrival instant, or a closing of periods). `None` when no
/// entry of the segment does: its age is unknown, and it is kept.
fn first_arrival(path: &Path) -> std::io::Result<Option<i64>> {
    let mut reader = BufReader::new(File::open(path)?);
    loop {
        let mut header = [0u8; HEADER];
        if reader.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let mut payload = vec![0u8; len];
        if reader.read_exact(&mut payload).is_err() {
            return Ok(None);
        }
        let Ok(entry) = Entry::decode(payload.as_slice()) else { return Ok(None) };
        match entry.kind {
            Some(EntryKind::Event(e)) if e.now_nanos.is_some() => return Ok(e.now_nanos),
            Some(EntryKind::ClosePeriods(at)) => return Ok(Some(at)),
            _ => {}
        }
    }
}

/// The first sequence number still in the journal (1 when nothing was ever deleted).
pub fn oldest_seq(dir: &Path) -> std::io::Result<u64> {
    Ok(segments(dir)?.first().map(|f| first_seq_of(f)).unwrap_or(1))
}

/// What the data directory holds on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub journal_bytes: u64,
    pub segments: usize,
    pub snapshot_bytes: u64,
}

impl DiskUsage {
    pub fn total(&self) -> u64 {
        self.journal_bytes + self.snapshot_bytes
    }
}

/// The journal's segments and the snapshot, in bytes (a directory listing: cheap).
pub fn disk_usage(data_dir: &Path) -> DiskUsage {
    let files = segments(&data_dir.join("journal")).unwrap_or_default();
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    DiskUsage {
        journal_bytes: files.iter().map(|f| size(f)).sum(),
        segments: files.len(),
        snapshot_bytes: size(&data_dir.join("snapshot.bin")),
    }
}
