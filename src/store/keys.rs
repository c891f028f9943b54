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

use crate::rating::ids::Fp;

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

fn hex(fp: Fp) -> String {
    format!("{:016x}{:016x}", fp.0, fp.1)
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

    /// The shard of the relationship `interaction` belongs to.
    pub fn of(tenant: &str, interaction: Fp) -> Self {
        ShardKeys::new(tenant, shard_of(interaction))
    }

    /// An interaction's joined entry: (tenant, key fields, period) -> features seen.
    pub fn interaction(&self, fp: Fp) -> String {
        format!("{PREFIX}:{}:i:{}", self.tag, hex(fp))
    }

    /// An event id's idempotency entry (T-2), in the shard of the relationship the event
    /// touched, so that its claim and its id are written in one step.
    pub fn event(&self, fp: Fp) -> String {
        format!("{PREFIX}:{}:e:{}", self.tag, hex(fp))
    }

    /// The shard's record stream (billing pipelines read it with consumer groups).
    pub fn records(&self) -> String {
        format!("{PREFIX}:{}:records", self.tag)
    }
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
        let i = keys.interaction(Fp(1, 2));
        assert_eq!(tag(&i), tag(&keys.event(Fp(3, 4))));
        assert_eq!(tag(&i), tag(&keys.records()));
        assert_eq!(i, format!("dbk:{{acme|{}}}:i:00000000000000010000000000000002", 0x1234_5678_9abc_def1u64 % 16));
    }

    #[test]
    fn a_tenant_spreads_over_every_shard() {
        let shards: std::collections::HashSet<u32> = (0..1000u64).map(|i| shard_of(Fp(i * 7919, i))).collect();
        assert_eq!(shards.len() as u32, SHARDS);
    }
}
