//! What the engine needs from a shared store when several replicas meter as one.
//!
//! An event's outcome depends on one entry of state shared across replicas: its own
//! interaction (messages, conversations opened), its co-browse session, or its tenant's
//! Functions month. Every other effect is per event (pass-through, platform users) and
//! order-free. So a replica that shares state asks the store for one thing per event,
//! and only when the event would change that entry: a [`Claim`], which moves the entry
//! from the value the replica rated against (`before`) to the value after the event
//! (`after`). The store applies it only if it still holds `before` (compare-and-set), so
//! of all the events racing for an entry, on any replica, exactly one moves it each time,
//! and each move's records are emitted once. A replica whose `before` was stale gets the
//! current value and rates again against it.
//!
//! Values are encoded without the replica's tenant index (which is local): a few bytes,
//! the same on every replica.

use chrono::NaiveDate;

use super::ids::Fp;
use super::ledger::Entry;
use super::outcome::{Outcome, Record};
use super::settings::Features;
use super::state::{CobrowseEntry, InteractionEntry};
use super::time::{self, Instant};

/// The value of a shared entry, as an event met it or left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// An interaction (absent before its first qualifying event).
    Interaction(Option<InteractionEntry>),
    /// A co-browse session's first established event (CR-7).
    Cobrowse(Option<CobrowseEntry>),
    /// A tenant's Functions invocations in one local month (CR-8).
    Functions(u64),
}

/// Which shared map an entry lives in, and the period its key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Interactions of the period starting on this local date.
    Interaction { period_start: NaiveDate },
    /// Co-browse sessions.
    Cobrowse,
    /// The Functions total of the local month starting on this date.
    Functions { month_start: NaiveDate },
}

/// What an event asks of the shared store: move `entry` from `before` to `after`, and, in
/// the same step, remember the event (its payload and what it met) and emit its records
/// and aggregate entries.
#[derive(Debug, Clone)]
pub struct Claim {
    pub tenant: std::sync::Arc<str>,
    pub place: Place,
    /// The shared entry's fingerprint (also chooses its shard).
    pub entry: Fp,
    pub before: Shared,
    pub after: Shared,
    /// The event's own time: its effects are filed under its UTC date.
    pub at: Instant,
    /// The event's fingerprint and payload fingerprint (T-2 across replicas).
    pub event: Fp,
    pub payload: u64,
    /// What the store remembers with the event's id: what it met, to answer its retries
    /// on any replica (T-2).
    pub prior: Vec<u8>,
    /// The outcome the event gets if the claim succeeds.
    pub outcome: Outcome,
    pub records: Vec<Record>,
    /// What the event adds to the tenant's aggregates, by local date.
    pub ledger: Vec<(NaiveDate, Entry)>,
    /// Until when the shared entry, and the event's id, must be remembered: its period's
    /// end plus the lateness horizon, with a day's margin (T-3).
    pub entry_expires: Instant,
    pub event_expires: Instant,
    /// The near cache may have forgotten this event's id: the store must be asked even if
    /// the claim changes nothing (it may be a retry of the event that made the entry).
    pub ask_store: bool,
    /// How many of its tenant's voids the event was rated knowing: the store applies the
    /// claim only if no other void was published to the entry's shard (COR-2).
    pub voids: usize,
    /// What committing the event here adds besides its entry, so that an applied claim is
    /// committed as rated, without rating the event again.
    pub local: LocalCommit,
}

/// The part of a claimed event's effects that stays on this replica: its order-free set
/// insertions (a platform user, PL-1; a pass-through charge, CR-9).
#[derive(Debug, Clone, Default)]
pub struct LocalCommit {
    pub(crate) user: Option<(Fp, i32, Fp)>,
    pub(crate) pass_through: Option<(Fp, super::state::PassThroughEntry)>,
}

impl Claim {
    /// The event would change nothing shared: rating it against `before` is enough.
    /// Whether the claim can be settled without the store: it changes nothing, and the
    /// event is not one whose id the near cache may have forgotten.
    pub fn changes_nothing(&self) -> bool {
        self.before == self.after && !self.ask_store
    }
}

impl Shared {
    /// The encoding kept in the shared store: empty for an absent entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Shared::Interaction(None) | Shared::Cobrowse(None) => {}
            Shared::Interaction(Some(e)) => {
                out.push(1);
                out.extend_from_slice(&e.period_start.to_le_bytes());
                out.extend_from_slice(&e.first_ms.to_le_bytes());
                out.extend_from_slice(&e.first_tie.to_le_bytes());
                out.push(e.any.0);
                out.push(e.first.0);
                out.extend_from_slice(&(u16::from(e.generation) | u16::from(e.meter) << 8).to_le_bytes());
            }
            Shared::Cobrowse(Some(c)) => {
                out.push(2);
                out.extend_from_slice(&time::to_millis(c.first_at).to_le_bytes());
                out.extend_from_slice(&c.first_tie.to_le_bytes());
                out.extend_from_slice(c.first_event_id.as_bytes());
            }
            Shared::Functions(0) => {}
            Shared::Functions(n) => {
                out.push(3);
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        out
    }

    /// The encoding with its kind first, readable without knowing the place (journal).
    pub fn encode_tagged(&self) -> Vec<u8> {
        let kind = match self {
            Shared::Interaction(_) => 1,
            Shared::Cobrowse(_) => 2,
            Shared::Functions(_) => 3,
        };
        let mut out = vec![kind];
        out.extend(self.encode());
        out
    }

    /// The inverse of [`Shared::encode_tagged`].
    pub fn decode_tagged(bytes: &[u8], tenant: u32, session: &str) -> Option<Shared> {
        let epoch = NaiveDate::MIN;
        let place = match bytes.first()? {
            1 => Place::Interaction { period_start: epoch },
            2 => Place::Cobrowse,
            3 => Place::Functions { month_start: epoch },
            _ => return None,
        };
        Shared::decode(place, &bytes[1..], tenant, session)
    }

    /// Decodes a value of the map `place` names; `tenant` is this replica's index of the
    /// tenant and `session` the co-browse session the entry belongs to. `None`: not a
    /// value this version wrote.
    pub fn decode(place: Place, bytes: &[u8], tenant: u32, session: &str) -> Option<Shared> {
        let take = |at: usize, n: usize| bytes.get(at..at + n);
        let u32_at = |at| take(at, 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        match place {
            Place::Interaction { .. } if bytes.is_empty() => Some(Shared::Interaction(None)),
            Place::Cobrowse if bytes.is_empty() => Some(Shared::Cobrowse(None)),
            Place::Functions { .. } if bytes.is_empty() => Some(Shared::Functions(0)),
            Place::Interaction { .. } if bytes.len() == 17 && bytes[0] == 1 => {
                Some(Shared::Interaction(Some(InteractionEntry {
                    tenant,
                    period_start: u32_at(1)? as i32,
                    first_ms: u32_at(5)?,
                    first_tie: u32_at(9)?,
                    any: Features(bytes[13]),
                    first: Features(bytes[14]),
                    generation: bytes[15],
                    meter: bytes[16],
                })))
            }
            Place::Cobrowse if bytes.len() >= 13 && bytes[0] == 2 => {
                let ms = i64::from_le_bytes(take(1, 8)?.try_into().ok()?);
                Some(Shared::Cobrowse(Some(CobrowseEntry {
                    tenant,
                    session: session.to_string(),
                    first_at: chrono::DateTime::from_timestamp_millis(ms)?,
                    first_tie: u32_at(9)?,
                    first_event_id: String::from_utf8(bytes[13..].to_vec()).ok()?,
                })))
            }
            Place::Functions { .. } if bytes.len() == 9 && bytes[0] == 3 => {
                Some(Shared::Functions(u64::from_le_bytes(take(1, 8)?.try_into().ok()?)))
            }
            _ => None,
        }
    }
}

/// The aggregate entries an event adds, encoded for the shared store (the tenant's usage
/// is the sum over every event's entries, each event's once).
pub fn encode_ledger(entries: &[(NaiveDate, Entry)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 24);
    for (date, entry) in entries {
        out.extend_from_slice(&time::date_to_days(*date).to_le_bytes());
        match entry {
            Entry::Interaction => out.push(0),
            // Never under a shared store: tenants with several meters, outcomes or voids
            // are refused there (`server::core::shareable`).
            Entry::Uncount | Entry::Meter(..) => {
                out.truncate(out.len() - 4);
            }
            Entry::Credits(bucket, amount) => {
                out.push(1);
                out.push(*bucket as u8);
                out.extend_from_slice(&amount.serialize());
            }
            Entry::PassThrough(currency, amount) => {
                out.push(2);
                out.extend_from_slice(currency.as_str().as_bytes());
                out.extend_from_slice(&amount.serialize());
            }
        }
    }
    out
}

/// The inverse of [`encode_ledger`]; `None` for bytes it did not write.
pub fn decode_ledger(mut bytes: &[u8]) -> Option<Vec<(NaiveDate, Entry)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let days = i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        let date = NaiveDate::from_num_days_from_ce_opt(days)?;
        let (entry, used) = match *bytes.get(4)? {
            0 => (Entry::Interaction, 5),
            1 => {
                let bucket = *bytes.get(5)? as usize;
                if bucket >= super::ledger::BUCKETS {
                    return None;
                }
                let amount = rust_decimal::Decimal::deserialize(bytes.get(6..22)?.try_into().ok()?);
                (Entry::Credits(bucket, amount), 22)
            }
            2 => {
                let code = std::str::from_utf8(bytes.get(5..8)?).ok()?;
                let currency = super::money::Currency::parse(code)?;
                let amount = rust_decimal::Decimal::deserialize(bytes.get(8..24)?.try_into().ok()?);
                (Entry::PassThrough(currency, amount), 24)
            }
            _ => return None,
        };
        out.push((date, entry));
        bytes = &bytes[used..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn values_round_trip_without_the_tenant_index() {
        let d: NaiveDate = "2025-06-10".parse().unwrap();
        let at = time::parse_instant("2025-06-10T10:00:00.123Z").unwrap();
        let e = InteractionEntry { generation: 3, ..InteractionEntry::contribution(7, 0, d, at, 99, Features(5)) };
        let place = Place::Interaction { period_start: d };
        let bytes = Shared::Interaction(Some(e)).encode();
        assert_eq!(Shared::decode(place, &bytes, 7, ""), Some(Shared::Interaction(Some(e))));
        assert_eq!(Shared::decode(place, &[], 7, ""), Some(Shared::Interaction(None)));
        assert_eq!(Shared::decode(place, &bytes[..10], 7, ""), None, "truncated");

        let c = CobrowseEntry {
            tenant: 2,
            session: "s-1".into(),
            first_at: at,
            first_tie: 4,
            first_event_id: "é-1".into(),
        };
        let bytes = Shared::Cobrowse(Some(c.clone())).encode();
        assert_eq!(Shared::decode(Place::Cobrowse, &bytes, 2, "s-1"), Some(Shared::Cobrowse(Some(c))));

        let f = Place::Functions { month_start: d };
        assert_eq!(Shared::decode(f, &Shared::Functions(12_345).encode(), 0, ""), Some(Shared::Functions(12_345)));
        assert_eq!(Shared::decode(f, &Shared::Functions(0).encode(), 0, ""), Some(Shared::Functions(0)));
        for v in [Shared::Interaction(Some(e)), Shared::Interaction(None), Shared::Functions(0), Shared::Cobrowse(None)]
        {
            assert_eq!(Shared::decode_tagged(&v.encode_tagged(), 7, ""), Some(v));
        }
    }

    #[test]
    fn ledger_entries_round_trip_exactly() {
        let d: NaiveDate = "2025-06-10".parse().unwrap();
        let eur = super::super::money::Currency::parse("EUR").unwrap();
        let entries = vec![
            (d, Entry::Interaction),
            (d, Entry::Credits(1, Decimal::new(15, 1))),
            (d, Entry::PassThrough(eur, Decimal::new(-123_456_789, 7))),
        ];
        let decoded = decode_ledger(&encode_ledger(&entries)).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{entries:?}"));
        assert!(decode_ledger(&[1, 2, 3]).is_none());
    }
}
