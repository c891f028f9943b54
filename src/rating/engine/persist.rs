//! Snapshots: the whole engine state as a stream (see `snapshot.rs` for the encoding).

use std::io::{Read, Write};

use super::*;
use crate::rating::ledger::Frozen;
use crate::rating::outcome::Alert;
use crate::rating::snapshot::{self as codec, ReadResult, Reader, Writer};

const MAGIC: &[u8] = b"daybook-engine-state-5";
/// Before each map's count (which sizes it when read).
const MAGIC_V4: &[u8] = b"daybook-engine-state-4";
const MAGIC_V3: &[u8] = b"daybook-engine-state-3";
/// Before meters, outcomes and corrections: read without them.
const MAGIC_V2: &[u8] = b"daybook-engine-state-2";
/// Event ids handed to the insert thread at a time.
const INSERT_CHUNK: usize = 4096;

fn prior_out<W: Write>(w: &mut Writer<W>, p: &Prior) -> std::io::Result<()> {
    match p {
        Prior::Interaction(None) => w.u8(0),
        Prior::Interaction(Some(e)) => {
            w.u8(1)?;
            codec::interaction_entry_out(w, e)
        }
        Prior::Functions(n) => {
            w.u8(2)?;
            w.u64(*n)
        }
        Prior::Cobrowse { counted } => w.u8(if *counted { 4 } else { 3 }),
    }
}

fn prior_in<R: Read>(r: &mut Reader<R>, remap: &dyn Fn(u32) -> Option<u32>) -> ReadResult<Prior> {
    Ok(match r.u8()? {
        0 => Prior::Interaction(None),
        1 => {
            let e = codec::interaction_entry_in(r)?;
            Prior::Interaction(Some(InteractionEntry { tenant: remap(e.tenant).unwrap_or(e.tenant), ..e }))
        }
        2 => Prior::Functions(r.u64()?),
        3 => Prior::Cobrowse { counted: false },
        4 => Prior::Cobrowse { counted: true },
        n => return Err(format!("unknown prior {n}")),
    })
}

/// What a shared store remembers of an event: what it met (its `Prior`).
pub(super) fn encode_prior(p: &Prior) -> Vec<u8> {
    let mut w = Writer::new(Vec::with_capacity(32));
    prior_out(&mut w, p).and_then(|_| w.finish()).expect("writing to memory")
}

/// The inverse of [`encode_prior`], for this replica's tenant index `tenant`.
pub(super) fn decode_prior(bytes: &[u8], tenant: u32) -> Option<Prior> {
    let mut r = Reader::new(bytes);
    let prior = prior_in(&mut r, &|_| Some(tenant)).ok()?;
    r.finish().ok()?;
    Some(prior)
}

/// Marks an encoded whole outcome, where a prior's first byte is its kind (0 to 3):
/// `WHOLE` in the encoding of version 3 (which replicas before origins wrote), `WHOLE_V4`
/// in this build's.
const WHOLE: u8 = 0xff;
const WHOLE_V4: u8 = 0xfe;

/// What a shared store remembers of an accepted event to answer its retries on any
/// replica (T-2): what it met, or its whole outcome where that cannot be derived again
/// from what it met (`keep_whole`: voids it was rated knowing, a DAR-5 charge).
pub(super) fn encode_stored(stored: &StoredOutcome) -> Vec<u8> {
    match stored {
        StoredOutcome::Prior(p) => encode_prior(p),
        StoredOutcome::Full(outcome) => {
            let mut w = Writer::new(vec![WHOLE_V4]);
            codec::outcome_out(&mut w, outcome).and_then(|_| w.finish()).expect("writing to memory")
        }
    }
}

/// The inverse of [`encode_stored`] (and of [`encode_prior`], which stores wrote before).
pub(super) fn decode_stored(bytes: &[u8], tenant: u32) -> Option<StoredOutcome> {
    match bytes.split_first() {
        Some((&marker @ (WHOLE | WHOLE_V4), rest)) => {
            let mut r = Reader::new(rest);
            r.version = if marker == WHOLE { 3 } else { codec::VERSION };
            let outcome = codec::outcome_in(&mut r).ok()?;
            r.finish().ok()?;
            Some(StoredOutcome::Full(Arc::new(outcome)))
        }
        _ => decode_prior(bytes, tenant).map(StoredOutcome::Prior),
    }
}

/// A copy of the engine's state at one moment, to be written while rating goes on.
#[derive(Default)]
pub struct StateImage {
    tenants: Vec<TenantImage>,
    events: Vec<(Fp, EventEntry)>,
    interactions: Vec<(HotKey, InteractionEntry)>,
    cobrowse: Vec<(Fp, CobrowseEntry)>,
    functions: Vec<(Fp, FunctionsEntry)>,
    users: Vec<(Fp, UsersEntry)>,
    pass_through: Vec<(Fp, PassThroughEntry)>,
    replies: Vec<(Fp, ReplyLog)>,
    units: Vec<(Fp, UnitsEntry)>,
    outcomes: Vec<(Fp, OutcomeState)>,
}

struct TenantImage {
    id: Arc<str>,
    alerts: Vec<Alert>,
    frozen: Frozen,
    closed_before: i64,
    voids: Arc<Vec<VoidRule>>,
    catalogue: Vec<Catalogued>,
    changed: Vec<(RecordId, Option<String>)>,
    seeded: bool,
}

/// Copies a map into `out`, reusing its allocation.
fn copy<K: Copy + Eq + std::hash::Hash, V: Clone>(map: &DashMap<K, V, FpBuildHasher>, out: &mut Vec<(K, V)>) {
    out.clear();
    out.reserve(map.len());
    out.extend(map.iter().map(|e| (*e.key(), e.value().clone())));
}

impl StateImage {
    pub fn events(&self) -> usize {
        self.events.len()
    }

    /// Entries of each map, in the order [`Engine::presize`] reads them.
    fn counts(&self) -> [usize; 9] {
        [
            self.events.len(),
            self.interactions.len(),
            self.cobrowse.len(),
            self.functions.len(),
            self.users.len(),
            self.pass_through.len(),
            self.replies.len(),
            self.units.len(),
            self.outcomes.len(),
        ]
    }

    /// Writes every map: entries each preceded by 1, then a 0.
    pub fn write<W: Write>(&self, w: &mut Writer<W>) -> std::io::Result<()> {
        w.bytes(MAGIC)?;
        w.u32(self.tenants.len() as u32)?;
        for t in &self.tenants {
            w.str(&t.id)?;
            w.u32(t.alerts.len() as u32)?;
            for a in &t.alerts {
                codec::alert_out(w, a)?;
            }
            codec::frozen_out(w, &t.frozen)?;
            w.i64(t.closed_before)?;
        }
        for count in self.counts() {
            w.u64(count as u64)?;
        }
        for (key, e) in &self.events {
            w.u8(1)?;
            w.fp(*key)?;
            w.u64(e.payload)?;
            w.u32(e.tenant)?;
            w.u32(e.day as u32)?;
            match &e.outcome {
                StoredOutcome::Prior(p) => {
                    w.u8(0)?;
                    prior_out(w, p)?;
                }
                StoredOutcome::Full(o) => {
                    w.u8(1)?;
                    codec::outcome_out(w, o)?;
                }
            }
        }
        w.u8(0)?;
        for (key, e) in &self.interactions {
            w.u8(1)?;
            w.fp(key.fp())?;
            codec::interaction_entry_out(w, e)?;
        }
        w.u8(0)?;
        for (key, e) in &self.cobrowse {
            w.u8(1)?;
            w.fp(*key)?;
            codec::cobrowse_out(w, e)?;
        }
        w.u8(0)?;
        for (key, e) in &self.functions {
            w.u8(1)?;
            w.fp(*key)?;
            codec::functions_out(w, e)?;
        }
        w.u8(0)?;
        for (key, e) in &self.users {
            w.u8(1)?;
            w.fp(*key)?;
            w.u32(e.tenant)?;
            w.u32(e.month_start as u32)?;
            w.u32(e.senders.len() as u32)?;
            for s in &e.senders {
                w.fp(*s)?;
            }
        }
        w.u8(0)?;
        for (key, e) in &self.pass_through {
            w.u8(1)?;
            w.fp(*key)?;
            codec::pass_through_out(w, e)?;
        }
        w.u8(0)?;
        for (key, e) in &self.replies {
            w.u8(1)?;
            w.fp(*key)?;
            codec::replies_out(w, e)?;
        }
        w.u8(0)?;
        for (key, e) in &self.units {
            w.u8(1)?;
            w.fp(*key)?;
            w.u32(e.tenant)?;
            w.u8(e.meter)?;
            w.u32(e.month_start as u32)?;
            w.u32(e.events.len() as u32)?;
            for fp in &e.events {
                w.u64(*fp)?;
            }
        }
        w.u8(0)?;
        for (key, e) in &self.outcomes {
            w.u8(1)?;
            w.fp(*key)?;
            codec::outcome_state_out(w, e)?;
        }
        w.u8(0)?;
        for t in &self.tenants {
            w.u32(t.voids.len() as u32)?;
            for v in t.voids.iter() {
                codec::void_rule_out(w, v)?;
            }
            w.u32(t.catalogue.len() as u32)?;
            for c in &t.catalogue {
                codec::catalogued_out(w, c)?;
            }
            w.u32(t.changed.len() as u32)?;
            for (id, void) in &t.changed {
                w.id(*id)?;
                w.opt_str(void.as_deref())?;
            }
            w.u8(u8::from(t.seeded))?;
        }
        Ok(())
    }
}

impl Engine {
    /// Copies the state. Call while nothing is being rated (the server holds its
    /// ordering stripes), so the image is exactly the state after one journal entry;
    /// copying compact entries is far quicker than encoding them, which
    /// [`StateImage::write`] then does with rating going on.
    pub fn image(&self) -> StateImage {
        let mut image = StateImage::default();
        self.image_into(&mut image);
        image
    }

    /// [`Engine::image`] into an image whose allocations are reused: a server that
    /// snapshots every million entries would otherwise allocate and free tens of MB
    /// each time, and the allocator's arenas keep what it frees (measured: a 256 MiB
    /// process grew by 50 MiB over 20 snapshots).
    pub fn image_into(&self, image: &mut StateImage) {
        let slots = self.by_index.read().unpoisoned().clone();
        image.tenants.clear();
        image.tenants.extend(slots.iter().map(|slot| {
            let ledger = slot.ledger.lock().unpoisoned();
            let corrections = slot.corrections.lock().unpoisoned();
            TenantImage {
                id: slot.config().id.clone(),
                alerts: ledger.alerts.clone(),
                frozen: ledger.frozen.clone(),
                closed_before: slot.closed_before.load(Ordering::Acquire),
                voids: corrections.voids.clone(),
                catalogue: corrections.catalogue.clone(),
                changed: corrections.changed.iter().map(|(k, v)| (*k, v.clone())).collect(),
                seeded: corrections.seeded,
            }
        }));
        copy(&self.events, &mut image.events);
        copy(&self.interactions, &mut image.interactions);
        copy(&self.cobrowse, &mut image.cobrowse);
        copy(&self.functions, &mut image.functions);
        copy(&self.users, &mut image.users);
        copy(&self.pass_through, &mut image.pass_through);
        copy(&self.replies, &mut image.replies);
        copy(&self.units, &mut image.units);
        copy(&self.outcomes, &mut image.outcomes);
    }

    /// Writes the state (see [`Engine::image`]).
    pub fn write_state<W: Write>(&self, w: &mut Writer<W>) -> std::io::Result<()> {
        self.image().write(w)
    }

    /// Sizes every map for the entries the snapshot announces (see [`crate::rating::ids::presize`]).
    fn presize<R: Read>(&self, r: &mut Reader<R>) -> ReadResult<()> {
        use crate::rating::ids::presize;
        // Every entry is at least its marker byte and a 16-byte key.
        const LEAST: u64 = 17;
        presize(&self.events, r.count(LEAST)?);
        presize(&self.interactions, r.count(LEAST)?);
        presize(&self.cobrowse, r.count(LEAST)?);
        presize(&self.functions, r.count(LEAST)?);
        presize(&self.users, r.count(LEAST)?);
        presize(&self.pass_through, r.count(LEAST)?);
        presize(&self.replies, r.count(LEAST)?);
        presize(&self.units, r.count(LEAST)?);
        presize(&self.outcomes, r.count(LEAST)?);
        Ok(())
    }

    /// The sections after the event ids: the hot state of each kind, then version 3's.
    fn read_hot_state<R: Read>(
        &self,
        r: &mut Reader<R>,
        remap: &dyn Fn(u32) -> Option<u32>,
        tenants: usize,
    ) -> ReadResult<Vec<Corrections>> {
        while r.u8()? == 1 {
            let key = r.fp()?;
            let e = codec::interaction_entry_in(r)?;
            if let Some(t) = remap(e.tenant) {
                self.interactions.insert(key.into(), InteractionEntry { tenant: t, ..e });
            }
        }
        while r.u8()? == 1 {
            let key = r.fp()?;
            let e = codec::cobrowse_in(r)?;
            if let Some(t) = remap(e.tenant) {
                self.cobrowse.insert(key, CobrowseEntry { tenant: t, ..e });
            }
        }
        while r.u8()? == 1 {
            let key = r.fp()?;
            let e = codec::functions_in(r)?;
            if let Some(t) = remap(e.tenant) {
                self.functions.insert(key, FunctionsEntry { tenant: t, ..e });
            }
        }
        while r.u8()? == 1 {
            let key = r.fp()?;
            let tenant = r.u32()?;
            let month_start = r.u32()? as i32;
            let mut senders = std::collections::HashSet::new();
            for _ in 0..r.u32()? {
                senders.insert(r.fp()?);
            }
            if let Some(tenant) = remap(tenant) {
                self.users.insert(key, UsersEntry { tenant, month_start, senders });
            }
        }
        while r.u8()? == 1 {
            let key = r.fp()?;
            let e = codec::pass_through_in(r)?;
            if let Some(t) = remap(e.tenant) {
                self.pass_through.insert(key, PassThroughEntry { tenant: t, ..e });
            }
        }
        while r.u8()? == 1 {
            let key = r.fp()?;
            let e = codec::replies_in(r)?;
            if let Some(t) = remap(e.tenant) {
                self.replies.insert(key, ReplyLog { tenant: t, ..e });
            }
        }
        if r.version >= 3 { self.read_part_two(r, remap, tenants) } else { Ok(Vec::new()) }
    }

    /// Version 3's sections: event meters' months, outcome states, and each tenant's
    /// voids and catalogue (in the order of the tenant table).
    fn read_part_two<R: Read>(
        &self,
        r: &mut Reader<R>,
        remap: &dyn Fn(u32) -> Option<u32>,
        tenants: usize,
    ) -> ReadResult<Vec<Corrections>> {
        let mut corrections = Vec::new();
        while r.u8()? == 1 {
            let key = r.fp()?;
            let (tenant, meter, month_start) = (r.u32()?, r.u8()?, r.u32()? as i32);
            let mut events = std::collections::HashSet::new();
            for _ in 0..r.u32()? {
                events.insert(r.u64()?);
            }
            let e = UnitsEntry { tenant, meter, month_start, events };
            if let Some(t) = remap(e.tenant) {
                self.units.insert(key, UnitsEntry { tenant: t, ..e });
            }
        }
        while r.u8()? == 1 {
            let key = r.fp()?;
            let e = codec::outcome_state_in(r)?;
            if let Some(t) = remap(e.tenant) {
                self.outcomes.insert(key, OutcomeState { tenant: t, ..e });
            }
        }
        for _ in 0..tenants {
            let mut voids = Vec::new();
            for _ in 0..r.u32()? {
                voids.push(codec::void_rule_in(r)?);
            }
            // Sized from its count (bounded: the count is not trusted before the checksum).
            let entries = r.u32()?;
            let mut catalogue = Vec::with_capacity((entries as usize).min(1 << 20));
            for _ in 0..entries {
                catalogue.push(codec::catalogued_in(r)?);
            }
            let mut changed = HashMap::new();
            for _ in 0..r.u32()? {
                let id = r.id()?;
                changed.insert(id, r.opt_str()?);
            }
            let seeded = r.u8()? == 1;
            corrections.push(Corrections { voids: Arc::new(voids), catalogue, changed, seeded });
        }
        Ok(corrections)
    }

    /// Reads what [`Engine::write_state`] wrote (and the checksum after it) into an
    /// engine whose tenants (with the same fingerprint key) are already defined, then
    /// rebuilds the aggregates. On an error the engine holds part of the state and must
    /// be discarded. State of a tenant that no longer exists is dropped, as a full
    /// replay would drop its events.
    pub fn read_state<R: Read>(&self, mut reader: Reader<R>) -> ReadResult<()> {
        let r = &mut reader;
        match r.bytes(MAGIC.len())?.as_slice() {
            m if m == MAGIC => r.version = codec::VERSION,
            m if m == MAGIC_V4 => r.version = 4,
            m if m == MAGIC_V3 => r.version = 3,
            m if m == MAGIC_V2 => r.version = 2,
            _ => return Err("not an engine state".into()),
        }
        let mut table = Vec::new();
        let mut saved = Vec::new();
        for _ in 0..r.u32()? {
            let id = r.str()?;
            let mut list = Vec::new();
            for _ in 0..r.u32()? {
                list.push(codec::alert_in(r)?);
            }
            let frozen = codec::frozen_in(r)?;
            let closed_before = r.i64()?;
            table.push(self.tenant(&id).map(|t| t.index));
            saved.push((id, list, frozen, closed_before));
        }
        let remap = |i: u32| table.get(i as usize).copied().flatten();
        if r.version >= 5 {
            self.presize(r)?;
        }
        // The remembered event ids are inserted on a second thread while this one reads
        // on (issue 19, P6: a start reads its snapshot on two cores).
        let corrections = std::thread::scope(|scope| {
            let (chunks, inserts) = std::sync::mpsc::sync_channel::<Vec<(Fp, EventEntry)>>(4);
            scope.spawn(move || {
                for chunk in inserts {
                    chunk.into_iter().for_each(|(key, entry)| drop(self.events.insert(key, entry)));
                }
            });
            let mut chunk = Vec::with_capacity(INSERT_CHUNK);
            while r.u8()? == 1 {
                let key = r.fp()?;
                let payload = r.u64()?;
                let tenant = r.u32()?;
                let day = r.u32()? as i32;
                let outcome = match r.u8()? {
                    0 => StoredOutcome::Prior(prior_in(r, &remap)?),
                    _ => StoredOutcome::Full(Arc::new(codec::outcome_in(r)?)),
                };
                if let Some(tenant) = remap(tenant) {
                    chunk.push((key, EventEntry { payload, tenant, day, outcome }));
                }
                if chunk.len() == INSERT_CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(INSERT_CHUNK));
                    chunks.send(full).map_err(|_| "the snapshot's insert thread stopped".to_string())?;
                }
            }
            chunks.send(chunk).map_err(|_| "the snapshot's insert thread stopped".to_string())?;
            drop(chunks);
            self.read_hot_state(r, &remap, saved.len())
        })?;
        // Nothing read is trusted until the checksum holds: rebuilding reads dates back.
        reader.finish()?;
        for ((id, ..), c) in saved.iter().zip(corrections) {
            if let Some(slot) = self.slot(id) {
                slot.has_voids.store(!c.voids.is_empty(), Ordering::Release);
                if c.seeded {
                    slot.cataloguing.store(true, Ordering::Release);
                }
                *slot.corrections.lock().unpoisoned() = c;
            }
        }
        for (id, alerts, frozen, closed_before) in saved {
            if let Some(slot) = self.slot(&id) {
                let mut ledger = slot.ledger.lock().unpoisoned();
                ledger.alerts = alerts;
                ledger.frozen = frozen;
                slot.closed_before.store(closed_before, Ordering::Release);
            }
        }
        self.rebuild_ledgers();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pb;

    fn engine_with_events(n: usize) -> Engine {
        let engine = Engine::new(EngineConfig::default());
        let toml = "[[tenant]]\nid = \"acme\"\ntime_zone = \"UTC\"\nmeter = \"dar\"\n";
        for spec in crate::tenants::parse_tenants_toml(toml).unwrap() {
            engine.put_tenant(spec).unwrap();
        }
        for i in 0..n {
            let event = pb::Event {
                tenant_id: "acme".into(),
                event_id: format!("e{i}"),
                event_time: "2025-06-10T10:00:00Z".into(),
                kind: Some(pb::event::Kind::Message(pb::MessageEvent {
                    consumer_id: format!("c{}", i % 50),
                    conversation_id: "conv".into(),
                    sender_role: pb::SenderRole::Consumer as i32,
                    channel: pb::Channel::Web as i32,
                    integration_id: "web-1".into(),
                    ..Default::default()
                })),
            };
            engine.ingest(event.into(), None, &mut Vec::new()).unwrap();
        }
        engine
    }

    fn snapshot(engine: &Engine) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut w = Writer::new(&mut bytes);
        engine.write_state(&mut w).unwrap();
        w.finish().unwrap();
        bytes
    }

    fn empty_engine() -> Engine {
        engine_with_events(0)
    }

    #[test]
    fn a_snapshot_announces_its_maps_sizes_and_reads_back_whole() {
        // The counts stand where a read takes them (a misplaced one would shift every
        // field after it); that a read uses them is the damaged-count test's.
        let original = engine_with_events(2000);
        let bytes = snapshot(&original);
        let restored = empty_engine();
        restored.read_state(Reader::sized(bytes.as_slice(), bytes.len() as u64)).unwrap();
        let (counts, restored_counts) = (original.image().counts(), restored.image().counts());
        assert_eq!(counts[0], 2000);
        assert!(counts[1] > 0, "interactions counted");
        assert_eq!(restored_counts, counts);
        assert_eq!(restored.usage("acme", None, None), original.usage("acme", None, None));
    }

    #[test]
    fn a_damaged_count_reserves_no_more_than_the_file_can_hold_and_is_refused() {
        let original = engine_with_events(300);
        let mut bytes = snapshot(&original);
        // The nine counts follow the tenant table: find them by their values.
        let counts: Vec<u8> = original.image().counts().iter().flat_map(|c| (*c as u64).to_le_bytes()).collect();
        let at = bytes.windows(counts.len()).position(|w| w == counts).expect("the counts are written");
        bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let target = empty_engine();
        let result = target.read_state(Reader::sized(bytes.as_slice(), bytes.len() as u64));
        assert!(result.is_err(), "a damaged snapshot is refused at its checksum");
        let reserved: usize = target.events.shards().iter().map(|s| s.read().capacity()).sum();
        // The announced count was used, bounded by the file's length (17 bytes at least per
        // entry); hashbrown rounds each shard up to a power of two of buckets.
        let (bound, shards) = (bytes.len() / 17, target.events.shards().len());
        assert!(reserved + shards >= bound, "reserved {reserved} for {bound}");
        assert!(reserved <= 2 * bound + 64 * shards, "reserved {reserved} for {bound}");
    }

    #[test]
    fn a_version_4_snapshot_without_counts_still_reads() {
        // Version 4 is version 5 without the counts: rebuild one from a version 5 stream.
        let original = engine_with_events(100);
        let bytes = snapshot(&original);
        let counts: Vec<u8> = original.image().counts().iter().flat_map(|c| (*c as u64).to_le_bytes()).collect();
        let at = bytes.windows(counts.len()).position(|w| w == counts).expect("the counts are written");
        let mut v4: Vec<u8> = [&bytes[..at], &bytes[at + counts.len()..bytes.len() - 4]].concat();
        v4[..MAGIC.len()].copy_from_slice(MAGIC_V4);
        let crc = crc32fast::hash(&v4);
        v4.extend_from_slice(&crc.to_le_bytes());
        let restored = empty_engine();
        restored.read_state(Reader::sized(v4.as_slice(), v4.len() as u64)).unwrap();
        assert_eq!(restored.events.len(), 100);
        assert_eq!(restored.usage("acme", None, None), original.usage("acme", None, None));
    }
}
