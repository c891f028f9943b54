//! `daybook journal verify` and `repair`: every damaged region named, and a repair that
//! keeps every intact frame, drops repeats, and logs the losses it accepted.

use super::*;

/// One damaged region found by [`verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Report {
    pub segments: usize,
    pub frames: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub damage: Vec<Damage>,
}

/// Reads every segment and reports every damaged region (a frame that does not check
/// out, bytes that are no frame) and every gap in the sequence, without changing
/// anything.
pub fn verify(dir: &Path) -> Result<Report, std::io::Error> {
    let mut report = Report::default();
    let files = segments(dir)?;
    // Segments are named by their first sequence number: the first must begin there.
    let mut previous: Option<u64> = files.first().map(|p| first_seq_of(p).saturating_sub(1));
    for path in files {
        report.segments += 1;
        let bytes = std::fs::read(&path)?;
        let (frames, damage) = intact_frames(&bytes);
        for (offset, reason) in damage {
            report.damage.push(Damage { segment: path.clone(), offset, reason });
        }
        for (_, entry) in frames {
            let last = previous.replace(entry.seq);
            if let Some(last) = last
                && entry.seq != last + 1
            {
                report.damage.push(Damage {
                    segment: path.clone(),
                    offset: 0,
                    reason: format!("sequence jumps from {last} to {}", entry.seq),
                });
            }
            report.first_seq.get_or_insert(entry.seq);
            report.last_seq = Some(entry.seq);
            report.frames += 1;
        }
    }
    Ok(report)
}

/// Rewrites each damaged segment with every intact frame it holds (resynchronising after
/// damage at the next frame that checks out). The original is kept beside it as
/// `*.log.damaged`. Returns how many frames were kept and how many damaged regions were
/// dropped.
pub fn repair(dir: &Path) -> Result<(u64, usize), std::io::Error> {
    let (mut kept, mut dropped) = (0, 0);
    // The last sequence number kept: a frame that does not come after it (a duplicated or
    // replayed frame) is dropped, keeping the first, which was acknowledged first.
    let files = segments(dir)?;
    let mut last: Option<u64> = files.first().map(|p| first_seq_of(p).saturating_sub(1));
    // Entries missing without damaged bytes (a segment cut at a frame boundary): nothing
    // to drop, but the loss is accepted here, so that start-up no longer refuses it.
    let mut gaps: Vec<String> = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path)?;
        let (intact, mut damage) = intact_frames(&bytes);
        let mut frames = Vec::with_capacity(intact.len());
        for (offset, entry) in intact {
            if last.is_some_and(|l| entry.seq <= l) {
                damage.push((offset, format!("frame {} repeats an earlier sequence number", entry.seq)));
                continue;
            }
            if let Some(l) = last
                && entry.seq > l + 1
            {
                gaps.push(format!("{}: entries {} to {} are missing", path.display(), l + 1, entry.seq - 1));
            }
            last = Some(entry.seq);
            frames.push((offset, entry));
        }
        kept += frames.len() as u64;
        if damage.is_empty() {
            continue;
        }
        dropped += damage.len();
        let mut repaired = Vec::with_capacity(bytes.len());
        for (_, entry) in &frames {
            repaired.extend_from_slice(&frame(entry));
        }
        std::fs::copy(&path, path.with_extension("log.damaged"))?;
        let tmp = path.with_extension("log.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&repaired)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        let mut log = OpenOptions::new().create(true).append(true).open(dir.join("repairs.log"))?;
        for (offset, reason) in &damage {
            writeln!(log, "{}: dropped damaged region at byte {offset}: {reason}", path.display())?;
        }
        log.sync_all()?;
        sync_dir(dir)?;
    }
    if !gaps.is_empty() {
        let mut log = OpenOptions::new().create(true).append(true).open(dir.join("repairs.log"))?;
        for gap in &gaps {
            writeln!(log, "{gap}: accepted")?;
        }
        log.sync_all()?;
        sync_dir(dir)?;
    }
    Ok((kept, dropped))
}

/// A frame that checks out, at its byte offset.
type Located = (u64, Entry);
/// A damaged region: its byte offset and what is wrong there.
type Region = (u64, String);

/// Every frame of a segment that checks out, and the damaged regions between them.
pub(super) fn intact_frames(bytes: &[u8]) -> (Vec<Located>, Vec<Region>) {
    let mut frames = Vec::new();
    let mut damage = Vec::new();
    let mut offset = 0usize;
    let mut damaged_since: Option<(usize, String)> = None;
    while offset + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
        let end = offset + HEADER + len as usize;
        let whole = len <= MAX_FRAME && end <= bytes.len();
        let checked = whole && crc32fast::hash(&bytes[offset + HEADER..end]) == crc;
        let entry = if checked { Entry::decode(&bytes[offset + HEADER..end]).ok() } else { None };
        match entry {
            Some(entry) => {
                if let Some((at, reason)) = damaged_since.take() {
                    damage.push((at as u64, reason));
                }
                frames.push((offset as u64, entry));
                offset = end;
            }
            None => {
                if damaged_since.is_none() {
                    let reason = if !whole { "truncated or implausible frame" } else { "checksum mismatch" };
                    damaged_since = Some((offset, reason.to_string()));
                }
                offset += 1;
            }
        }
    }
    if offset < bytes.len() && damaged_since.is_none() {
        damaged_since = Some((offset, "truncated frame header".to_string()));
    }
    if let Some((at, reason)) = damaged_since {
        damage.push((at as u64, reason));
    }
    (frames, damage)
}
