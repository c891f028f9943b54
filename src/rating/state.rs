//! Compact, mergeable state entries. Each entry is a join-semilattice value: merging two
//! replicas' entries is commutative, associative and idempotent, so a result does not
//! depend on arrival order, duplicates or how events were split (T-1).

use std::collections::{HashMap, HashSet};

use chrono::{NaiveDate, TimeDelta};

use super::ids::Fp;
use super::money::Currency;
use super::settings::Features;
use super::time::{self, Instant};
use rust_decimal::Decimal;

/// One interaction: (tenant, key, period) -> features seen. 20 bytes; with its 12-byte
/// key ([`super::ids::HotKey`]), 32 bytes per relationship-day before map overhead (P4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InteractionEntry {
    pub tenant: u32,
    /// The period's first local date, as days from the common era.
    pub period_start: i32,
    /// The first qualifying event: milliseconds from [`InteractionEntry::epoch`], and a
    /// tie-break from the event's fingerprint. Decides `feature_attribution = first_event`.
    pub first_ms: u32,
    pub first_tie: u32,
    /// Union of the features of every qualifying event (CR-6, any_event).
    pub any: Features,
    /// Features of the first qualifying event (CR-6, first_event).
    pub first: Features,
    /// Bumped when first-event lines are replaced, so that replacement line ids are new.
    pub generation: u8,
    /// The meter's dense index within its tenant (MS-1): 0 for a single-meter tenant.
    pub meter: u8,
}

impl InteractionEntry {
    /// Offsets are counted from the day before the period's first date at 00:00 UTC, so
    /// every instant of the period (any zone, months up to 31 days) fits in a u32.
    pub fn epoch(period_start: NaiveDate) -> Instant {
        (period_start - TimeDelta::days(1)).and_hms_opt(0, 0, 0).expect("midnight").and_utc()
    }

    pub fn contribution(
        tenant: u32,
        meter: u8,
        period_start: NaiveDate,
        at: Instant,
        tie: u32,
        features: Features,
    ) -> Self {
        let offset = (time::to_millis(at) - time::to_millis(Self::epoch(period_start))).clamp(0, i64::from(u32::MAX));
        InteractionEntry {
            tenant,
            period_start: time::date_to_days(period_start),
            first_ms: offset as u32,
            first_tie: tie,
            any: features,
            first: features,
            generation: 0,
            meter,
        }
    }

    /// The least upper bound of two entries of the same interaction.
    pub fn join(self, other: Self) -> Self {
        let first_is_other = (other.first_ms, other.first_tie) < (self.first_ms, self.first_tie);
        InteractionEntry {
            any: self.any.union(other.any),
            first: if first_is_other { other.first } else { self.first },
            first_ms: if first_is_other { other.first_ms } else { self.first_ms },
            first_tie: if first_is_other { other.first_tie } else { self.first_tie },
            generation: self.generation.max(other.generation),
            ..self
        }
    }

    pub fn period_start_date(&self) -> NaiveDate {
        time::days_to_date(self.period_start)
    }
}

/// A co-browse session: its first established event decides price and date (CR-7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CobrowseEntry {
    pub tenant: u32,
    pub session: String,
    pub first_at: Instant,
    pub first_tie: u32,
    pub first_event_id: String,
}

impl CobrowseEntry {
    pub fn join(self, other: Self) -> Self {
        if (other.first_at, other.first_tie) < (self.first_at, self.first_tie) { other } else { self }
    }
}

/// A tenant's Functions invocations in one local month (CR-8): a set of per-event counts,
/// so a retried event counted on two replicas is counted once after the merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionsEntry {
    pub tenant: u32,
    pub month_start: i32,
    pub counts: HashMap<Fp, u64>,
    /// Under a shared store: the month's total the store last held (every replica's
    /// events), this replica's best guess of what the next event meets. Not persisted:
    /// a guess that is low costs one more round trip.
    pub shared_total: u64,
}

impl FunctionsEntry {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Distinct agent and bot ids of a tenant in one local month (PL-1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersEntry {
    pub tenant: u32,
    pub month_start: i32,
    pub senders: HashSet<Fp>,
}

/// A pass-through charge, kept so aggregates can be rebuilt after a merge (CR-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassThroughEntry {
    pub tenant: u32,
    pub date: i32,
    pub currency: Currency,
    pub charge: Decimal,
}

/// A proactive outbound waiting for a reply under `proactive_outbound_day = retroactive`
/// (DAR-5), with what is needed to charge its day later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub at: Instant,
    pub tie: u32,
    pub event_id: String,
    pub conversation: Option<String>,
    pub integration: Option<String>,
    /// `proactive_reply_window` in force at the outbound (DAR-5).
    pub window: TimeDelta,
    /// Set once its day is charged, with the conversation it was charged to.
    pub charged_to: Option<Option<String>>,
}

/// A consumer's proactive outbounds and replies, for tenants that ever use
/// `proactive_outbound_day = retroactive`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyLog {
    pub tenant: u32,
    /// The meter whose outbounds and replies these are (MS-3).
    pub meter: u8,
    pub consumer: String,
    pub outbounds: Vec<Outbound>,
    /// Consumer messages: instant and conversation, sorted by instant.
    pub replies: Vec<(Instant, String)>,
}

impl ReplyLog {
    /// The earliest reply in `[from, from + window]`, inclusive (DAR-5).
    pub fn first_reply_within(&self, from: Instant, window: TimeDelta) -> Option<&(Instant, String)> {
        let i = self.replies.partition_point(|(t, _)| *t < from);
        self.replies.get(i).filter(|(t, _)| *t <= from + window)
    }

    pub fn add_reply(&mut self, at: Instant, conversation: String) {
        let i = self.replies.partition_point(|(t, _)| *t <= at);
        self.replies.insert(i, (at, conversation));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_entry_is_compact() {
        // Key and value of one relationship-day in the hot map: 12 + 20 bytes with no
        // padding; hashbrown adds one control byte and its load-factor slack (P4).
        assert_eq!(std::mem::size_of::<InteractionEntry>(), 20);
        assert_eq!(std::mem::size_of::<(crate::rating::ids::HotKey, InteractionEntry)>(), 32);
    }

    #[test]
    fn t_1_interaction_join_is_a_semilattice() {
        let d: NaiveDate = "2025-06-10".parse().unwrap();
        let at = |s: &str| time::parse_instant(s).unwrap();
        let a = InteractionEntry::contribution(0, 0, d, at("2025-06-10T10:00:00Z"), 5, Features(1));
        let b = InteractionEntry::contribution(0, 0, d, at("2025-06-10T09:00:00Z"), 9, Features(2));
        let c = InteractionEntry::contribution(0, 0, d, at("2025-06-10T09:00:00Z"), 3, Features(4));
        assert_eq!(a.join(b), b.join(a));
        assert_eq!(a.join(b).join(c), a.join(b.join(c)));
        assert_eq!(a.join(a), a);
        let all = a.join(b).join(c);
        assert_eq!(all.any, Features(7));
        assert_eq!(all.first, Features(4), "earliest instant, then lowest tie-break");
    }
}

/// An event meter's units in one local month (EV-1): a set of events (by fingerprint), so
/// that an event counted on two replicas is counted once after a merge. Credits are a
/// pure function of the count (EV-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitsEntry {
    pub tenant: u32,
    pub meter: u8,
    pub month_start: i32,
    pub events: HashSet<u64>,
}

impl UnitsEntry {
    pub fn count(&self) -> u64 {
        self.events.len() as u64
    }
}

/// One outcome event of a (meter, conversation, outcome type) (OUT-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub at: Instant,
    pub event_id: String,
    pub consumer: String,
    /// Cancelled by a revocation (OUT-3); never undone.
    pub cancelled: bool,
}

impl Occurrence {
    /// OUT-1: earliest by event time, equal instants by the smaller event id as bytes.
    pub fn order_key(&self) -> (Instant, &[u8]) {
        (self.at, self.event_id.as_bytes())
    }
}

/// The occurrence an outcome meter bills, and its line (OUT-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Billed {
    pub event_id: String,
    pub consumer: String,
    pub at: Instant,
    pub interaction: super::ids::RecordId,
    /// Its line, while it stands: `None` once withdrawn by a void (or never added, when a
    /// void selected it from the start).
    pub line: Option<super::ids::RecordId>,
    pub credits: Decimal,
}

/// An outcome meter's state for one (conversation, outcome type): every occurrence and
/// revocation seen, and the occurrence billed (OUT-1..OUT-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeState {
    pub tenant: u32,
    pub meter: u8,
    pub conversation: String,
    pub outcome_type: String,
    pub occurrences: Vec<Occurrence>,
    /// Revocation instants (OUT-3).
    pub revocations: Vec<Instant>,
    pub billed: Option<Billed>,
    /// Bumped on every change of the billed occurrence, so that each billing's line id
    /// is new (a withdrawn line is never billed again under its id).
    pub generation: u32,
}
