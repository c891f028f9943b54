//! Recovery at start: the snapshot, the journal after it, and the fingerprint key of the
//! data directory. Replay rates every journaled event again in journal order, which is
//! rating order for every key, so outcomes, records and cursors come back as they were.

use std::collections::{BTreeMap, HashSet};

use prost::Message;

use super::journal::{self, EntryKind, JournalError};
use super::shared::state::Pending;
use crate::api::{self, pb};
use crate::rating::shared::Shared;
use crate::rating::{Engine, RawEvent};

pub(super) const SNAPSHOT_MAGIC: &[u8] = b"daybook-snapshot-2";

/// Loads `snapshot.bin` into `engine` (which holds the file's tenants): the API tenants it
/// names, then the engine state. Returns the engine and the journal position it covers.
pub(super) fn read_snapshot(
    data_dir: &std::path::Path,
    engine: Engine,
    file_tenants: &HashSet<String>,
) -> Result<Option<(Engine, u64)>, String> {
    let path = data_dir.join("snapshot.bin");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let length = file.metadata().map_err(|e| e.to_string())?.len();
    let mut r = crate::rating::snapshot::Reader::sized(file, length);
    if r.bytes(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC {
        return Err("not a daybook snapshot".into());
    }
    let seq = r.u64()?;
    for _ in 0..r.u32()? {
        let bytes = r.blob()?;
        let t = pb::Tenant::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
        let spec = api::tenant_in(&t).map_err(|_| "invalid tenant in the snapshot".to_string())?;
        if !file_tenants.contains(&spec.id) {
            engine.put_tenant(spec).map_err(|e| e.to_string())?;
        }
    }
    engine.read_state(r)?;
    Ok(Some((engine, seq)))
}

/// What replaying the journal found beside the state it rebuilt.
pub(super) struct Replayed {
    /// The last journal entry.
    pub last_seq: u64,
    /// Under a shared store: the last position known shipped, and the events after it
    /// whose shared effects may not have reached the store.
    pub shipped: u64,
    pub pending: BTreeMap<u64, Pending>,
}

/// Replays the journal after `snapshot_seq` into `engine`. `file_tenants` are the config
/// file's (journaled API changes never replace them); `budget_entries` holds the near
/// cache to the memory ceiling while replaying, as serving does.
pub(super) fn replay_journal(
    dir: &std::path::Path,
    engine: &Engine,
    snapshot_seq: u64,
    file_tenants: &HashSet<String>,
    budget_entries: Option<usize>,
) -> Result<Replayed, JournalError> {
    let names = file_tenants;
    let mut discard = Vec::new();
    let mut shipped = 0;
    let mut pending = std::collections::BTreeMap::new();
    // Replay holds the near cache to its budget too: a start must not need more memory
    // than serving does.
    let (mut replayed, mut round) = (0u64, 0u64);
    let last_seq = journal::recover(dir, snapshot_seq, |entry| {
        replayed += 1;
        if let Some(budget) = budget_entries
            && replayed % 65_536 == 0
        {
            while engine.evictable_entries() > budget {
                engine.evict(round);
                round += 1;
            }
        }
        match entry.kind {
            Some(EntryKind::Shipped(seq)) => {
                shipped = shipped.max(seq);
                pending.retain(|s, _| *s > seq);
            }
            Some(EntryKind::Tenant(bytes)) => {
                if let Ok(t) = pb::Tenant::decode(bytes.as_slice())
                    && let Ok(spec) = api::tenant_in(&t)
                    && !names.contains(&spec.id)
                {
                    // As `set_plan` did: a new plan re-judges the aggregates' alerts.
                    let plan_changed = engine.tenant(&spec.id).is_some_and(|old| old.spec.plan != spec.plan);
                    let _ = engine.put_tenant(spec);
                    if plan_changed {
                        engine.rebuild_ledgers();
                    }
                }
            }
            Some(EntryKind::Event(e)) => {
                let Ok(event) = pb::Event::decode(e.event.as_slice()) else { return };
                // A tenant's first void found its catalogue built from the journal before
                // it: build it again, from the entries before this one.
                if let Some(pb::event::Kind::Void(_)) = event.kind
                    && engine.needs_catalogue(&event.tenant_id)
                {
                    match super::standing::from_journal(dir, &event.tenant_id, entry.seq.saturating_sub(1)) {
                        Ok(standing) => engine.seed_catalogue(&event.tenant_id, standing),
                        Err(e) => tracing::error!("replaying a void: cannot read the journal: {e}"),
                    }
                }
                let now = e.now_nanos.map(chrono::DateTime::from_timestamp_nanos);
                // Which event raised an alert depends on the order of events of other
                // keys, which only the journal's records remember: restore them as raised.
                let alerts = entry
                    .records
                    .iter()
                    .filter(|bytes| api::is_alert_record(bytes))
                    .filter_map(|bytes| pb::Record::decode(bytes.as_ref()).ok())
                    .filter_map(|r| match r.body {
                        Some(pb::record::Body::Alert(a)) => api::alert_in(&a),
                        _ => None,
                    })
                    .collect();
                if e.pending {
                    pending.insert(entry.seq, Pending { event: event.clone(), now });
                }
                let claimed = e.claimed.as_deref().and_then(|bytes| {
                    let tenant = engine.tenant(&event.tenant_id)?;
                    Shared::decode_tagged(bytes, tenant.index, api::cobrowse_session(&event))
                });
                let raw = RawEvent::from(event);
                let _ = match claimed {
                    Some(value) => engine.ingest_claimed(raw, now, value, Some(alerts), &mut discard),
                    None => engine.replay(raw, now, alerts, &mut discard),
                };
                discard.clear();
            }
            Some(EntryKind::ClosePeriods(nanos)) => {
                engine.close_periods(chrono::DateTime::from_timestamp_nanos(nanos));
            }
            Some(EntryKind::DeadLetter(_) | EntryKind::SharedRecords(_)) | None => {}
        }
    })?;
    Ok(Replayed { last_seq, shipped, pending })
}

/// Under a shared store, every replica fingerprints with the store's key. A data
/// directory that held another key (it metered alone before) starts over from its journal:
/// its snapshot is keyed by the old one.
pub(super) fn adopt_fingerprint_key(data_dir: &std::path::Path, key: [u8; 16]) -> Result<[u8; 16], std::io::Error> {
    let local = fingerprint_key(data_dir)?;
    let marker = data_dir.join("fingerprint.shared");
    if local != key {
        // Without the marker until the new key is in place: a crash between the two
        // leaves a replica that waits for Redis at its next start, never one that uses
        // the wrong key.
        let _ = std::fs::remove_file(&marker);
        let path = data_dir.join("fingerprint.key");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, key)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        match std::fs::remove_file(data_dir.join("snapshot.bin")) {
            Ok(()) => tracing::info!("adopted the shared store's fingerprint key; the snapshot is dropped"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !marker.exists() {
        // The key is the shared store's: a restart while Redis is away may use it.
        std::fs::write(&marker, b"the fingerprint key is the shared store's\n")?;
        std::fs::File::open(data_dir)?.sync_all()?;
    }
    Ok(key)
}

/// The fingerprint key this data directory adopted from a shared store, if it did.
pub fn store_fingerprint_key(data_dir: &std::path::Path) -> Option<[u8; 16]> {
    if !data_dir.join("fingerprint.shared").exists() {
        return None;
    }
    let bytes = std::fs::read(data_dir.join("fingerprint.key")).ok()?;
    <[u8; 16]>::try_from(bytes.as_slice()).ok()
}

/// The data directory's own fingerprint key (created if it has none).
pub fn local_fingerprint_key(data_dir: &std::path::Path) -> Result<[u8; 16], std::io::Error> {
    fingerprint_key(data_dir)
}

/// The deployment's fingerprint key, created once per data directory.
pub(super) fn fingerprint_key(data_dir: &std::path::Path) -> Result<[u8; 16], std::io::Error> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("fingerprint.key");
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(key) = <[u8; 16]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let mut key = [0u8; 16];
    // Entropy from the OS through the std hasher's random keys, mixed with the clock.
    for chunk in key.chunks_mut(8) {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, key)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(key)
}
