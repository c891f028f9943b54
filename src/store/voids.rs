//! Voids (COR) of tenants metered by claims, in the shared store: published once under
//! the tenant's first shard and counted in every shard (a claim rated knowing fewer is
//! stale there), and each voided interaction marked once in its shard, in the step that
//! withdraws its lines (`rating::engine::shared_voids` says why that is enough).

use chrono::NaiveDate;

use super::keys::{SHARDS, ShardKeys, field};
use super::redis::{RedisStore, StoreError};
use super::rollup;
use crate::rating::ids::Fp;
use crate::rating::ledger::Entry;
use crate::rating::outcome::Record;
use crate::rating::shared::Place;
use crate::rating::time::Instant;

/// Adds a void under its event id if no call did (KEYS[1], the tenant's voids) and
/// returns how many voids the tenant has.
const PUBLISH: &str = r#"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HLEN', KEYS[1])
"#;

/// Raises a shard's void count (KEYS[1]) to ARGV[1]; never lowers it.
const COUNT: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > n then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"#;

/// Withdraws a voided interaction's lines once: marks it with the void (ARGV[2]) unless
/// a void already has it, and in the same step adds the withdrawal to the rollups and
/// appends its records. KEYS: the shard's withdrawn hash, record stream, rollup index,
/// then the rollup hashes. ARGV: interaction id, void id, then the rollup operations,
/// then (record id, record) pairs. Returns `withdrew`, or `held` and the void that did.
const WITHDRAW: &str = concat!(
    rollup::rollup_lua!(),
    r#"
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then return {'held', held} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local records = rollup(3, 3)
for i = records, #ARGV, 2 do
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[i], 'record', ARGV[i + 1])
end
return {'withdrew'}
"#
);

// The scripts, hashed once.
static PUBLISH_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| redis::Script::new(PUBLISH));
static COUNT_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| redis::Script::new(COUNT));
static WITHDRAW_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| redis::Script::new(WITHDRAW));

/// One withdrawal of a voided interaction, as [`RedisStore::withdraw`] applies it.
pub struct Withdrawal<'a> {
    pub tenant: &'a str,
    /// The interaction's entry: its shard.
    pub entry: Fp,
    pub interaction_id: &'a str,
    pub void_id: &'a str,
    pub records: &'a [Record],
    pub ledger: &'a [(NaiveDate, Entry)],
}

impl RedisStore {
    /// Publishes a void (its encoded event, under its id) and raises every shard's count
    /// to the tenant's number of voids. Idempotent: a void published again changes
    /// nothing, and counts only rise.
    pub async fn publish_void(&self, tenant: &str, event_id: &str, void: &[u8]) -> Result<(), StoreError> {
        let mut invocation = PUBLISH_SCRIPT.prepare_invoke();
        invocation.key(ShardKeys::new(tenant, 0).voids()).arg(event_id).arg(void);
        let count: u64 = self.invoke(invocation).await?;
        let raises = (0..SHARDS).map(|shard| {
            let mut invocation = COUNT_SCRIPT.prepare_invoke();
            invocation.key(ShardKeys::new(tenant, shard).void_count()).arg(count);
            async move { self.invoke::<i64>(invocation).await }
        });
        for raised in futures_util::future::join_all(raises).await {
            raised?;
        }
        Ok(())
    }

    /// Every void published for a tenant, encoded as [`RedisStore::publish_void`] got it.
    pub async fn voids(&self, tenant: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("HVALS");
        cmd.arg(ShardKeys::new(tenant, 0).voids());
        self.query(cmd).await
    }

    /// The value of one shared entry (empty: absent).
    pub async fn entry(&self, tenant: &str, place: Place, entry: Fp) -> Result<Vec<u8>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(ShardKeys::of(tenant, entry).state(place)).arg(&field(entry)[..]);
        let value: Option<Vec<u8>> = self.query(cmd).await?;
        Ok(value.unwrap_or_default())
    }

    /// Withdraws a voided interaction's lines unless a void already did ([`WITHDRAW`]).
    /// Returns `None` when this call withdrew them, else the void that did.
    pub async fn withdraw(&self, w: &Withdrawal<'_>) -> Result<Option<String>, StoreError> {
        let keys = ShardKeys::of(w.tenant, w.entry);
        let (rollup_keys, rollup_args) = rollup::operations(&keys, 4, w.ledger);
        let mut invocation = WITHDRAW_SCRIPT.prepare_invoke();
        invocation
            .key(keys.withdrawn())
            .key(keys.records())
            .key(keys.rollup_index())
            .key(rollup_keys)
            .arg(w.interaction_id)
            .arg(w.void_id)
            .arg(rollup_args);
        for record in w.records {
            let (id, bytes) = super::redis::record_args(record);
            invocation.arg(id).arg(bytes);
        }
        let answer: Vec<String> = self.invoke(invocation).await?;
        match answer.as_slice() {
            [withdrew] if withdrew == "withdrew" => Ok(None),
            [held, void] if held == "held" => Ok(Some(void.clone())),
            _ => Err(StoreError::Unexpected(format!("a withdrawal answered {answer:?}"))),
        }
    }

    /// The voids that withdrew these interactions of one shard, where any did.
    pub async fn withdrawn(&self, tenant: &str, shard: u32, ids: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(ShardKeys::new(tenant, shard).withdrawn()).arg(ids);
        self.query(cmd).await
    }
}

/// A void as published: the instant it arrived (Unix nanoseconds, `i64::MIN` when not
/// judged) and its event (`daybook.v1.Event`).
pub fn encode_void(arrived: Option<Instant>, event: &[u8]) -> Vec<u8> {
    let nanos = arrived.and_then(|a| a.timestamp_nanos_opt()).unwrap_or(i64::MIN);
    let mut out = nanos.to_le_bytes().to_vec();
    out.extend_from_slice(event);
    out
}

/// The inverse of [`encode_void`].
pub fn decode_void(bytes: &[u8]) -> Option<(Option<Instant>, &[u8])> {
    let nanos = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let arrived = (nanos != i64::MIN).then(|| chrono::DateTime::from_timestamp_nanos(nanos));
    Some((arrived, &bytes[8..]))
}
