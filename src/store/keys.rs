//! Redis key names. One scheme serves a single node and a Redis Cluster.
//!
//! Every key carries a hash tag `{<tenant>|<shard>}`. Redis Cluster places keys by
//! their hash tag, so a claim, the idempotency key of the event that made it, and the
//! stream entry it appends share a slot: one Lua script can touch all three. A tenant's
//! keys are spread over [`SHARDS`] tags, chosen by the relationship's fingerprint, so a
//! large tenant is not pinned to one node. The price: a tenant's records are in
//! [`SHARDS`] streams, and a billing pipeline reads each of them (one consumer group
//! per stream).
//!
//! Tenant ids are the caller's text. `{`, `}` and `%` are percent-encoded, so a tenant id
//! can never end a hash tag early or collide with another tenant's keys.

use chrono::NaiveDate;

use crate::rating::ids::Fp;
use crate::rating::shared::Place;

/// Shards per tenant: how many hash tags, and so cluster slots, a tenant's keys spread
/// over.
pub const SHARDS: u32 = 16;

/// The prefix of every daybook key, so that daybook can share a Redis with others.
pub const PREFIX: &str = "dbk";

/// A tenant's id, made safe inside a hash tag.
pub fn tenant_tag(tenant: &str) -> String {
    let mut out = String::with_capacity(tenant.len());
    for c in tenant.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// The shard of a relationship (or of anything keyed by a fingerprint).
pub fn shard_of(fp: Fp) -> u32 {
    (fp.0 % u64::from(SHARDS)) as u32
}

/// The keys of one (tenant, shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKeys {
    tag: String,
}

impl ShardKeys {
    pub fn new(tenant: &str, shard: u32) -> Self {
        ShardKeys { tag: format!("{{{}|{shard}}}", tenant_tag(tenant)) }
    }

    /// The shard of a shared entry (an interaction, a co-browse session, a Functions
    /// month): its idempotency entries and records go with it.
    pub fn of(tenant: &str, entry: Fp) -> Self {
        ShardKeys::new(tenant, shard_of(entry))
    }

    /// The hash holding the shared entries of one map and period (`rating::shared`): an
    /// interaction's entry under its fingerprint, in a hash per period so that a period
    /// expires as a whole, and a restarted replica loads the current ones.
    pub fn state(&self, place: Place) -> String {
        match place {
            Place::Interaction { period_start } => format!("{PREFIX}:{}:i:{}", self.tag, days(period_start)),
            Place::Cobrowse => format!("{PREFIX}:{}:c", self.tag),
            Place::Functions { month_start } => format!("{PREFIX}:{}:f:{}", self.tag, days(month_start)),
        }
    }

    /// The tenant log (`store::log`): every event of a tenant metered in log order, in
    /// one stream under the tenant's first shard.
    pub fn log(&self) -> String {
        format!("{PREFIX}:{}:log", self.tag)
    }

    /// A tenant's voids (COR) published under a shared store: the void event with the
    /// instant it arrived, under its event id. Kept under shard 0.
    pub fn voids(&self) -> String {
        format!("{PREFIX}:{}:v", self.tag)
    }

    /// How many voids were published to this shard: a claim rated knowing fewer is stale
    /// (`rating::engine::shared_voids`).
    pub fn void_count(&self) -> String {
        format!("{PREFIX}:{}:vn", self.tag)
    }

    /// The shard's interactions voided after they started, under their ids: the void
    /// that withdrew each (COR-2). Marking one is what withdraws its lines once.
    pub fn withdrawn(&self) -> String {
        format!("{PREFIX}:{}:w", self.tag)
    }

    /// The idempotency entries (T-2) of the events of one UTC day whose effects reached
    /// this shard, so that a claim and its event id are written in one step.
    pub fn events(&self, utc_day: i32) -> String {
        format!("{PREFIX}:{}:e:{utc_day}", self.tag)
    }

    /// The reservation of one event id (T-2 across replicas): its payload's fingerprint,
    /// under the shard of the event id itself, so that every replica finds it whatever
    /// the event touches. One key per id, expiring when a retry could no longer be
    /// accepted.
    pub fn event_id(&self, event: Fp) -> String {
        format!("{PREFIX}:{}:id:{:016x}{:016x}", self.tag, event.0, event.1)
    }

    /// The shard's record stream (billing pipelines read it with consumer groups).
    pub fn records(&self) -> String {
        format!("{PREFIX}:{}:records", self.tag)
    }

    /// What each event of one month (by its UTC date) added to the aggregates, under the
    /// event's fingerprint, as versions before rollups wrote it: still read, so that a
    /// store they wrote keeps its totals; no longer written.
    pub fn ledger(&self, month_start: NaiveDate) -> String {
        format!("{PREFIX}:{}:l:{}", self.tag, days(month_start))
    }

    /// The rollup of one local date: what the shard's events added to usage on it, summed
    /// (`store::rollup`).
    pub fn rollup(&self, date: NaiveDate) -> String {
        format!("{}{}", self.rollup_prefix(), days(date))
    }

    /// A rollup key without its date.
    pub fn rollup_prefix(&self) -> String {
        format!("{PREFIX}:{}:r:", self.tag)
    }

    /// The local dates (as days from the common era) the shard has rollups for.
    pub fn rollup_index(&self) -> String {
        format!("{PREFIX}:{}:r", self.tag)
    }

    /// The months (as days from the common era) the shard has ledger hashes for.
    pub fn ledger_index(&self) -> String {
        format!("{PREFIX}:{}:l", self.tag)
    }

    /// A tenant's distinct platform users of one local month (PL-1). Kept under shard 0.
    pub fn users(&self, month_start: NaiveDate) -> String {
        format!("{PREFIX}:{}:u:{}", self.tag, days(month_start))
    }
}

/// A fingerprint as a hash field: its 16 bytes.
pub fn field(fp: Fp) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&fp.0.to_le_bytes());
    out[8..].copy_from_slice(&fp.1.to_le_bytes());
    out
}

/// The inverse of [`field`].
pub fn fp_of_field(bytes: [u8; 16]) -> Fp {
    Fp(
        u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes")),
    )
}

fn days(date: NaiveDate) -> i32 {
    crate::rating::time::date_to_days(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_in_a_tenant_id_cannot_break_the_hash_tag() {
        let keys = ShardKeys::new("ac}me{x%7D", 3);
        let key = keys.records();
        // The first `{` and the first `}` after it delimit the tag Redis hashes.
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        assert_eq!(&key[open + 1..close], "ac%7Dme%7Bx%257D|3");
        assert_ne!(tenant_tag("a}"), tenant_tag("a%7D"), "encoding is one to one");
    }

    #[test]
    fn a_claim_its_event_and_its_stream_share_the_tag() {
        let keys = ShardKeys::of("acme", Fp(0x1234_5678_9abc_def1, 7));
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_string();
        let d: NaiveDate = "2025-06-10".parse().unwrap();
        let i = keys.state(Place::Interaction { period_start: d });
        assert_eq!(tag(&i), tag(&keys.events(739_000)));
        assert_eq!(tag(&i), tag(&keys.records()));
        assert_eq!(tag(&i), tag(&keys.ledger(d)));
        assert_eq!(i, format!("dbk:{{acme|{}}}:i:{}", 0x1234_5678_9abc_def1u64 % 16, days(d)));
    }

    #[test]
    fn a_tenant_spreads_over_every_shard() {
        let shards: std::collections::HashSet<u32> = (0..1000u64).map(|i| shard_of(Fp(i * 7919, i))).collect();
        assert_eq!(shards.len() as u32, SHARDS);
    }
}
