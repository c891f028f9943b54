//! The shared store on Redis: a single node (`redis://host:port`) or a Redis Cluster
//! (`redis+cluster://host:port,host:port,...`, any seed nodes).
//!
//! Every call has a deadline ([`RedisConfig::timeout`], tens of milliseconds) and goes
//! through a circuit breaker: after a failure, calls fail at once for a cool-down, then one
//! call tries again. A caller never waits on an unreachable Redis for longer than the
//! deadline; the server decides from its near cache meanwhile (degraded mode).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use prost::Message;

use super::keys::{ShardKeys, field};
use super::rollup;
use crate::api;
use crate::rating::ids::Fp;
use crate::rating::ledger::{Ledger, Totals};
use crate::rating::outcome::Record;
use crate::rating::shared::{self, Claim, Place};
use crate::rating::time::{self, Instant};

/// How to reach Redis. Its `Debug` shows the URL without its password.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    /// The deadline of one call (a script, a read).
    pub timeout: Duration,
    /// How long calls fail at once after a failure, before one tries again.
    pub cool_down: Duration,
    /// Files for `rediss://`: the CA that signed Redis's certificate (default: the
    /// system's roots) and a client certificate, for a Redis with `tls-auth-clients yes`.
    pub tls: RedisTls,
}

/// The TLS files of a `rediss://` connection (PEM). Read at connect time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    pub ca_file: Option<std::path::PathBuf>,
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
}

impl RedisTls {
    /// Reads the files, as a connection would (`serve --check-config`).
    pub fn check(&self) -> Result<(), String> {
        self.certificates().map(|_| ())
    }

    fn certificates(&self) -> Result<Option<redis::TlsCertificates>, String> {
        if *self == RedisTls::default() {
            return Ok(None);
        }
        let read = |p: &std::path::PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let client_tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                Some(redis::ClientTlsConfig { client_cert: read(cert)?, client_key: read(key)? })
            }
            _ => None,
        };
        let root_cert = self.ca_file.as_ref().map(read).transpose()?;
        Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("cool_down", &self.cool_down)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A Redis URL as it may be logged or shown: a password in its user information (or a
/// `password=` parameter) is replaced by `***`; the user name, hosts and ports stay.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    // The user information ends at the last `@` (a password may itself hold an `@`).
    let mut shown = match authority_and_path.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map(|(user, _)| format!("{user}:***")).unwrap_or("***".into());
            format!("{scheme}://{user}@{hosts}")
        }
        None => format!("{scheme}://{authority_and_path}"),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => p.to_string(),
            })
            .collect();
        shown = format!("{shown}?{}", params.join("&"));
    }
    shown
}

impl RedisConfig {
    /// The URL without its password, for logs and errors.
    pub fn shown_url(&self) -> String {
        redact_url(&self.url)
    }

    pub fn new(url: &str) -> Self {
        RedisConfig {
            url: url.to_string(),
            timeout: Duration::from_millis(50),
            cool_down: Duration::from_millis(500),
            tls: RedisTls::default(),
        }
    }

    /// Checks the URL's form without connecting.
    pub fn validate(&self) -> Result<(), String> {
        let nodes = self.nodes()?;
        for node in &nodes {
            redis::Client::open(node.as_str())
                .map_err(|e| format!("redis URL `{}`: {}", redact_url(node), redact_url(&e.to_string())))?;
        }
        Ok(())
    }

    /// The node URLs, and whether they are a cluster's seeds.
    fn nodes(&self) -> Result<Vec<String>, String> {
        let cluster = [("redis+cluster://", "redis://"), ("rediss+cluster://", "rediss://")]
            .into_iter()
            .find_map(|(prefix, scheme)| self.url.strip_prefix(prefix).map(|rest| (rest, scheme)));
        if let Some((rest, scheme)) = cluster {
            // Credentials before the first node apply to every node.
            let (auth, rest) = match rest.rsplit_once('@') {
                Some((auth, rest)) => (format!("{auth}@"), rest),
                None => (String::new(), rest),
            };
            let nodes: Vec<String> =
                rest.split(',').filter(|s| !s.is_empty()).map(|s| format!("{scheme}{auth}{s}")).collect();
            if nodes.is_empty() {
                return Err("redis+cluster:// needs at least one host:port".into());
            }
            Ok(nodes)
        } else if self.url.starts_with("redis://") || self.url.starts_with("rediss://") {
            Ok(vec![self.url.clone()])
        } else {
            Err(format!(
                "redis URL `{}`: expected redis://host:port (rediss:// for TLS) or redis+cluster://host:port,...",
                self.shown_url()
            ))
        }
    }

    fn is_cluster(&self) -> bool {
        self.url.starts_with("redis+cluster://") || self.url.starts_with("rediss+cluster://")
    }

    fn client(&self, node: &str) -> Result<redis::Client, StoreError> {
        match self.tls.certificates().map_err(StoreError::Unexpected)? {
            Some(certificates) => Ok(redis::Client::build_with_tls(node, certificates)?),
            None => Ok(redis::Client::open(node)?),
        }
    }
}

/// Why a call to the store did not complete. Either way the caller cannot know whether
/// it was applied: what it asked must be idempotent.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis is unavailable (circuit open after a failure)")]
    Open,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis answered something this version did not write: {0}")]
    Unexpected(String),
}

/// What the store did with a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// Applied: the entry moved, the event is remembered and its records emitted.
    Applied,
    /// The entry no longer holds the claim's `before`: its current value (empty: absent).
    Stale(Vec<u8>),
    /// A void the claim was not rated knowing was published to the entry's shard: the
    /// entry's current value, to rate against once the voids are known.
    Voids(Vec<u8>),
    /// Another call already accepted this event id: its payload and what it met.
    Seen { payload: u64, prior: Vec<u8> },
}

/// What the store answered a reservation of an event id ([`RedisStore::reserve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// No replica had it: this call reserved it.
    New,
    /// Reserved before with the same payload: a retry (its original may be on another
    /// replica).
    Same,
    /// Reserved before with another payload: a reuse, refused (T-2).
    Conflict,
}

#[derive(Clone)]
enum Connection {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Moves one shared entry from `before` to `after` only if it holds `before`, remembers
/// the event, adds its aggregate entries to the rollups and appends its records, in one
/// step. An event id already remembered wins over everything: the call is a retry.
///
/// A claim rated knowing fewer of its tenant's voids than were published to the shard
/// is answered with the entry's value and rated again once the voids are known.
///
/// KEYS: state hash, events hash, record stream, rollup index, the shard's void count,
/// then the rollup hashes. ARGV: entry field, before, after, event field, event value,
/// entry expiry (Unix ms), event expiry (Unix ms), voids known, then the rollup
/// operations (`store::rollup`), then (record id, record) pairs.
const CLAIM: &str = concat!(
    rollup::rollup_lua!(),
    r#"
local seen = redis.call('HGET', KEYS[2], ARGV[4])
if seen then return {'seen', seen} end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then current = '' end
local voids = redis.call('GET', KEYS[5])
if voids and tonumber(voids) > tonumber(ARGV[8]) then return {'voids', current} end
if current ~= ARGV[2] then return {'stale', current} end
if ARGV[3] ~= ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('PEXPIREAT', KEYS[1], ARGV[6], 'NX')
  redis.call('PEXPIREAT', KEYS[1], ARGV[6], 'GT')
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
redis.call('PEXPIREAT', KEYS[2], ARGV[7], 'NX')
redis.call('PEXPIREAT', KEYS[2], ARGV[7], 'GT')
local records = rollup(4, 9)
for i = records, #ARGV, 2 do
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[i], 'record', ARGV[i + 1])
end
return {'applied'}
"#
);

/// Emits what an event did without changing any shared entry (a pass-through charge on a
/// repeat message, a dead letter): once per event id, whichever replica sends it, however
/// often. KEYS: events hash, record stream, rollup index, then the rollup hashes. ARGV:
/// event field, event value, event expiry (Unix ms), then the rollup operations, then
/// (record id, record) pairs. Returns 1 when this call emitted them.
const EMIT: &str = concat!(
    rollup::rollup_lua!(),
    r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('PEXPIREAT', KEYS[1], ARGV[3], 'NX')
redis.call('PEXPIREAT', KEYS[1], ARGV[3], 'GT')
local records = rollup(3, 4)
for i = records, #ARGV, 2 do
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[i], 'record', ARGV[i + 1])
end
return 1
"#
);

/// Replaces a tenant definition if the store holds the expected one (compare-and-set).
/// KEYS: the tenants hash. ARGV: tenant id, expected definition ('' = none), new one.
const PUT_TENANT: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then current = '' end
if current ~= ARGV[2] then return {'held', current} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {'ok'}
"#;

/// Tenants defined through the API, shared by every replica (one hash, one slot: a few
/// hundred definitions at most).
fn tenants_key() -> String {
    format!("{}:tenants", super::keys::PREFIX)
}

/// A stream entry: its id, the record's id, the record (`daybook.v1.Record`).
pub type StreamRecord = (String, String, Vec<u8>);

/// A hash field and its value, as HSCAN pages them.
type FieldValue = (Vec<u8>, Vec<u8>);

/// The shared store.
pub struct RedisStore {
    config: RedisConfig,
    connection: Connection,
    claim: redis::Script,
    emit: redis::Script,
    read_rollups: redis::Script,
    put_tenant: redis::Script,
    /// Unix ms until which calls fail at once; 0 when closed.
    open_until: AtomicU64,
    /// Set while the one call after a cool-down is in flight.
    probing: AtomicBool,
}

/// An event's effects that change nothing shared, for [`RedisStore::emit`].
pub struct Emission<'a> {
    pub tenant: &'a str,
    /// The shared entry whose shard the event belongs to.
    pub entry: Fp,
    pub event: Fp,
    pub payload: u64,
    pub prior: &'a [u8],
    pub at: Instant,
    pub records: &'a [Record],
    pub ledger: &'a [(NaiveDate, crate::rating::ledger::Entry)],
    pub event_expires: Instant,
}

impl RedisStore {
    /// Connects (within the deadline, a few times over: start-up may wait for Redis).
    pub async fn connect(config: RedisConfig) -> Result<Arc<RedisStore>, StoreError> {
        RedisStore::open(config, false).await
    }

    /// A store whose connection is made on first use (a single node only; a cluster's
    /// topology must be read first): for a replica that starts while Redis is away and
    /// goes on in degraded mode.
    pub async fn connect_later(config: RedisConfig) -> Result<Arc<RedisStore>, StoreError> {
        if config.is_cluster() {
            return Err(StoreError::Unexpected("a Redis Cluster must answer at start".into()));
        }
        RedisStore::open(config, true).await
    }

    async fn open(config: RedisConfig, lazy: bool) -> Result<Arc<RedisStore>, StoreError> {
        let nodes = config.nodes().map_err(StoreError::Unexpected)?;
        let connect_timeout = (config.timeout * 20).max(Duration::from_secs(1));
        let connection = if config.is_cluster() {
            let mut builder = redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(connect_timeout)
                .response_timeout(config.timeout * 4);
            if let Some(certificates) = config.tls.certificates().map_err(StoreError::Unexpected)? {
                builder = builder.certs(certificates);
            }
            let client = builder.build()?;
            Connection::Cluster(client.get_async_connection().await?)
        } else {
            let client = config.client(&nodes[0])?;
            let manager_config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(config.timeout * 4))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            Connection::Single(if lazy {
                redis::aio::ConnectionManager::new_lazy_with_config(client, manager_config)?
            } else {
                redis::aio::ConnectionManager::new_with_config(client, manager_config).await?
            })
        };
        Ok(Arc::new(RedisStore {
            config,
            connection,
            claim: redis::Script::new(CLAIM),
            emit: redis::Script::new(EMIT),
            read_rollups: redis::Script::new(rollup::READ),
            put_tenant: redis::Script::new(PUT_TENANT),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }))
    }

    /// Whether calls currently fail at once (degraded mode).
    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) > now_ms()
    }

    /// Runs `call` under the deadline and the breaker.
    async fn guarded<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let open_until = self.open_until.load(Ordering::Acquire);
        let probe = open_until != 0;
        if probe {
            // After the cool-down, one call at a time finds out whether Redis is back.
            if open_until > now_ms() || self.probing.swap(true, Ordering::AcqRel) {
                return Err(StoreError::Open);
            }
        }
        let result = match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(self.config.timeout)),
        };
        match &result {
            Ok(_) => self.open_until.store(0, Ordering::Release),
            Err(_) => self.open_until.store(now_ms() + self.config.cool_down.as_millis() as u64, Ordering::Release),
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        result
    }

    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        match self.connection.clone() {
            Connection::Single(mut c) => self.guarded(async move { invocation.invoke_async(&mut c).await }).await,
            Connection::Cluster(mut c) => self.guarded(async move { invocation.invoke_async(&mut c).await }).await,
        }
    }

    pub(super) async fn query<T: redis::FromRedisValue + Send>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        match self.connection.clone() {
            Connection::Single(mut c) => self.guarded(async move { cmd.query_async(&mut c).await }).await,
            Connection::Cluster(mut c) => self.guarded(async move { cmd.query_async(&mut c).await }).await,
        }
    }

    /// Applies a claim ([`CLAIM`]).
    pub async fn claim(&self, claim: &Claim) -> Result<ClaimAnswer, StoreError> {
        let keys = ShardKeys::of(&claim.tenant, claim.entry);
        let (rollup_keys, rollup_args) = rollup::operations(&keys, 6, &claim.ledger);
        let mut invocation = self.claim.prepare_invoke();
        invocation
            .key(keys.state(claim.place))
            .key(keys.events(utc_day(claim.at)))
            .key(keys.records())
            .key(keys.rollup_index())
            .key(keys.void_count())
            .key(rollup_keys)
            .arg(&field(claim.entry)[..])
            .arg(claim.before.encode())
            .arg(claim.after.encode())
            .arg(&field(claim.event)[..])
            .arg(event_value(claim.payload, &claim.prior))
            .arg(time::to_millis(claim.entry_expires))
            .arg(time::to_millis(claim.event_expires))
            .arg(claim.voids)
            .arg(rollup_args);
        for record in &claim.records {
            let (id, bytes) = record_args(record);
            invocation.arg(id).arg(bytes);
        }
        let answer: Vec<Vec<u8>> = self.invoke(invocation).await?;
        match answer.first().map(Vec::as_slice) {
            Some(b"applied") => Ok(ClaimAnswer::Applied),
            Some(b"stale") => Ok(ClaimAnswer::Stale(answer.get(1).cloned().unwrap_or_default())),
            Some(b"voids") => Ok(ClaimAnswer::Voids(answer.get(1).cloned().unwrap_or_default())),
            Some(b"seen") => {
                let value = answer.get(1).cloned().unwrap_or_default();
                let payload = value.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
                match payload {
                    Some(payload) => Ok(ClaimAnswer::Seen { payload, prior: value[8..].to_vec() }),
                    None => Err(StoreError::Unexpected("an event entry shorter than its payload".into())),
                }
            }
            _ => Err(StoreError::Unexpected(format!("claim answered {answer:?}"))),
        }
    }

    /// Reserves an event id for its payload until `until` (T-2 across replicas): one
    /// `SET NX GET` under the id's own shard, so that a reuse of the id is refused and a
    /// retry recognised on every replica, whatever entry the event touches.
    pub async fn reserve(
        &self,
        tenant: &str,
        event: Fp,
        payload: u64,
        until: Instant,
    ) -> Result<Reservation, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(ShardKeys::of(tenant, event).event_id(event))
            .arg(&payload.to_le_bytes()[..])
            .arg("NX")
            .arg("GET")
            .arg("PXAT")
            .arg(time::to_millis(until).max(1));
        let held: Option<Vec<u8>> = self.query(cmd).await?;
        Ok(match held {
            None => Reservation::New,
            Some(bytes) if bytes == payload.to_le_bytes() => Reservation::Same,
            Some(_) => Reservation::Conflict,
        })
    }

    /// Emits an event's effects that change nothing shared ([`EMIT`]). Returns whether
    /// this call emitted them (false: some call already had).
    pub async fn emit(&self, e: &Emission<'_>) -> Result<bool, StoreError> {
        let keys = ShardKeys::of(e.tenant, e.entry);
        let (rollup_keys, rollup_args) = rollup::operations(&keys, 4, e.ledger);
        let mut invocation = self.emit.prepare_invoke();
        invocation
            .key(keys.events(utc_day(e.at)))
            .key(keys.records())
            .key(keys.rollup_index())
            .key(rollup_keys)
            .arg(&field(e.event)[..])
            .arg(event_value(e.payload, e.prior))
            .arg(time::to_millis(e.event_expires))
            .arg(rollup_args);
        for record in e.records {
            let (id, bytes) = record_args(record);
            invocation.arg(id).arg(bytes);
        }
        let emitted: i64 = self.invoke(invocation).await?;
        Ok(emitted == 1)
    }

    /// Adds a platform user of a tenant's local month (PL-1).
    pub async fn add_user(&self, tenant: &str, month_start: NaiveDate, sender: Fp) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(ShardKeys::new(tenant, 0).users(month_start)).arg(&field(sender)[..]);
        let _: i64 = self.query(cmd).await?;
        Ok(())
    }

    /// Distinct platform users of a tenant's local month (PL-1).
    pub async fn users(&self, tenant: &str, month_start: NaiveDate) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("SCARD");
        cmd.arg(ShardKeys::new(tenant, 0).users(month_start));
        self.query(cmd).await
    }

    /// The tenant's aggregates over local dates `from..=to` (all when open): the rollups
    /// of every shard, one hash per date with usage (O(dates), whatever the number of
    /// events), plus what versions before rollups wrote per event.
    pub async fn ledger(
        &self,
        tenant: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Ledger, StoreError> {
        let bound = |d: Option<NaiveDate>| d.map(|d| time::date_to_days(d).to_string()).unwrap_or_default();
        let reads = (0..super::keys::SHARDS).map(|shard| {
            let keys = ShardKeys::new(tenant, shard);
            let mut invocation = self.read_rollups.prepare_invoke();
            invocation.key(keys.rollup_index()).arg(keys.rollup_prefix()).arg(bound(from)).arg(bound(to));
            async move { self.invoke::<Vec<(i32, Vec<(String, String)>)>>(invocation).await }
        });
        let (legacy, shards) =
            futures_util::join!(self.legacy_ledger(tenant, from, to), futures_util::future::join_all(reads));
        let mut ledger = legacy?;
        for shard in shards {
            for (days, fields) in shard? {
                let date = NaiveDate::from_num_days_from_ce_opt(days)
                    .ok_or_else(|| StoreError::Unexpected(format!("a rollup date {days}")))?;
                let totals = rollup::totals_of(&fields)
                    .ok_or_else(|| StoreError::Unexpected(format!("an unreadable rollup of {tenant} on {date}")))?;
                ledger.add_totals(date, &totals);
            }
        }
        Ok(ledger)
    }

    /// What versions before rollups wrote: every event's aggregate entries, in a hash per
    /// month of the event's UTC date (empty in a store written by this version).
    async fn legacy_ledger(
        &self,
        tenant: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Ledger, StoreError> {
        // An event adds entries dated from a month before its own date (a billing cycle's
        // start) to a day after it (zones ahead of UTC): read the months that can hold them.
        let first = from.map(|d| time::first_of_month(d - chrono::TimeDelta::days(1)));
        let last = to.map(|d| time::first_of_month(d + chrono::TimeDelta::days(32)));
        // Every month each shard's index names (none in a store this version wrote),
        // asked of all shards at once: one round trip's wait, not sixteen.
        let indexes = (0..super::keys::SHARDS).map(|shard| async move {
            let keys = ShardKeys::new(tenant, shard);
            let mut cmd = redis::cmd("SMEMBERS");
            cmd.arg(keys.ledger_index());
            self.query::<Vec<i32>>(cmd).await.map(|found| (keys, found))
        });
        let mut months = Vec::new();
        for index in futures_util::future::join_all(indexes).await {
            let (keys, found) = index?;
            for days in found {
                let month = chrono::NaiveDate::from_num_days_from_ce_opt(days)
                    .ok_or_else(|| StoreError::Unexpected(format!("a ledger month {days}")))?;
                if first.is_none_or(|f| month >= f) && last.is_none_or(|l| month <= l) {
                    months.push(keys.ledger(month));
                }
            }
        }
        let mut ledger = Ledger::default();
        for key in months {
            let mut cmd = redis::cmd("HVALS");
            cmd.arg(&key);
            let values: Vec<Vec<u8>> = self.query(cmd).await?;
            for value in values {
                let entries = shared::decode_ledger(&value)
                    .ok_or_else(|| StoreError::Unexpected(format!("an unreadable ledger entry in {key}")))?;
                for (date, entry) in entries {
                    ledger.add(date, entry);
                }
            }
        }
        Ok(ledger)
    }

    /// Usage over local dates `from..=to`.
    pub async fn usage(
        &self,
        tenant: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Totals, StoreError> {
        Ok(self.ledger(tenant, from, to).await?.usage(from, to))
    }

    /// Each local date's usage from `from` to `to`, for dates with any.
    pub async fn usage_by_day(
        &self,
        tenant: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, Totals)>, StoreError> {
        Ok(self.ledger(tenant, Some(from), Some(to)).await?.days_in(from, to))
    }

    /// The fingerprint key every replica of this store uses: the first replica's
    /// `proposal` (its own key, so that a replica that metered alone keeps its state).
    pub async fn fingerprint_key(&self, proposal: [u8; 16]) -> Result<[u8; 16], StoreError> {
        let key = format!("{}:fingerprint-key", super::keys::PREFIX);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&proposal[..]).arg("NX");
        let _: Option<String> = self.query(set).await?;
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let stored: Vec<u8> = self.query(get).await?;
        <[u8; 16]>::try_from(stored.as_slice())
            .map_err(|_| StoreError::Unexpected(format!("{key} holds {} bytes, not 16", stored.len())))
    }

    /// Replaces a tenant's definition (`daybook.v1.Tenant`) only if the store holds
    /// `expected` (empty: no tenant of that id). Returns `None` when replaced, or the
    /// definition the store holds instead (empty: none).
    pub async fn put_tenant(&self, id: &str, expected: &[u8], new: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut invocation = self.put_tenant.prepare_invoke();
        invocation.key(tenants_key()).arg(id).arg(expected).arg(new);
        let answer: Vec<Vec<u8>> = self.invoke(invocation).await?;
        match answer.first().map(Vec::as_slice) {
            Some(b"ok") => Ok(None),
            Some(b"held") => Ok(Some(answer.get(1).cloned().unwrap_or_default())),
            _ => Err(StoreError::Unexpected(format!("put_tenant answered {answer:?}"))),
        }
    }

    /// One tenant's definition, if the store has it.
    pub async fn tenant(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(tenants_key()).arg(id);
        self.query(cmd).await
    }

    /// Every tenant definition the store has.
    pub async fn tenants(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(tenants_key());
        self.query(cmd).await
    }

    /// Every entry of one shared map of one shard: (fingerprint, value), read in pages.
    pub async fn entries(&self, keys: &ShardKeys, place: Place) -> Result<Vec<(Fp, Vec<u8>)>, StoreError> {
        let key = keys.state(place);
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut cmd = redis::cmd("HSCAN");
            cmd.arg(&key).arg(cursor).arg("COUNT").arg(10_000);
            let (next, page): (u64, Vec<FieldValue>) = self.query(cmd).await?;
            for (field, value) in page {
                if let Ok(bytes) = <[u8; 16]>::try_from(field.as_slice()) {
                    out.push((super::keys::fp_of_field(bytes), value));
                }
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Up to `count` entries of a shard's record stream after the entry id `after` (from
    /// the start when `None`): (stream entry id, record id, record bytes).
    pub async fn records_after(
        &self,
        tenant: &str,
        shard: u32,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let mut cmd = redis::cmd("XRANGE");
        let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        cmd.arg(ShardKeys::new(tenant, shard).records()).arg(start).arg("+").arg("COUNT").arg(count);
        let entries: Vec<(String, Vec<Vec<u8>>)> = self.query(cmd).await?;
        Ok(entries
            .into_iter()
            .map(|(entry, fields)| {
                let field = |name: &[u8]| {
                    fields.chunks(2).find(|kv| kv[0] == name).and_then(|kv| kv.get(1)).cloned().unwrap_or_default()
                };
                (entry, String::from_utf8_lossy(&field(b"id")).into_owned(), field(b"record"))
            })
            .collect())
    }

    /// Appends a record that belongs to no event (an audit record) to the tenant's first
    /// shard's stream.
    pub async fn add_record(&self, tenant: &str, record: &crate::api::pb::Record) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(ShardKeys::new(tenant, 0).records())
            .arg("*")
            .arg("id")
            .arg(&record.record_id)
            .arg("record")
            .arg(prost::Message::encode_to_vec(record));
        let _: String = self.query(cmd).await?;
        Ok(())
    }

    /// Round trip, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(redis::cmd("PING")).await?;
        Ok(())
    }
}

fn event_value(payload: u64, prior: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + prior.len());
    out.extend_from_slice(&payload.to_le_bytes());
    out.extend_from_slice(prior);
    out
}

pub(super) fn record_args(record: &Record) -> (String, Vec<u8>) {
    let proto = api::record_out(record, String::new());
    (proto.record_id.clone(), proto.encode_to_vec())
}

fn utc_day(at: Instant) -> i32 {
    time::date_to_days(at.date_naive())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_password_is_never_shown() {
        for (url, shown) in [
            ("redis://:s3cret@cache:6379", "redis://:***@cache:6379"),
            ("rediss://billing:s3cret@cache:6380/0", "rediss://billing:***@cache:6380/0"),
            ("redis+cluster://u:s3c@ret@a:1,b:2", "redis+cluster://u:***@a:1,b:2"),
            ("redis://s3cret@cache:6379", "redis://***@cache:6379"),
            ("redis://cache:6379?password=s3cret&db=1", "redis://cache:6379?password=***&db=1"),
            ("redis://cache:6379", "redis://cache:6379"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        let config = RedisConfig::new("redis://:s3cret@cache:6379");
        assert!(!format!("{config:?}").contains("s3cret"));
        let bad = RedisConfig::new("redis+cluster://:s3cret@").validate().unwrap_err();
        assert!(!bad.contains("s3cret"), "{bad}");
    }
}
