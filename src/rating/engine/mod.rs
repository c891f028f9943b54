//! The rating engine: decides, for one event, what it makes billable, and emits records.
//!
//! Sans-IO: no clock (the caller passes `now`), no files, no network. Safe to call from
//! many threads at once: every map is sharded, the only per-tenant lock guards the
//! aggregates, and only first touches and new lines take it.

use crate::sync::Unpoisoned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{NaiveDate, TimeDelta};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use rust_decimal::Decimal;

use super::credits::{self, LineKind, LineSet, interaction_lines};
use super::event::{self, Body, Channel, Event, RawBody, RawEvent, SenderRole};
use super::ids::{Fingerprinter, Fp, FpBuildHasher, HotKey, RecordId, domain};
use super::ledger::{
    self, COBROWSE_BUCKET, Entry, FUNCTIONS_BUCKET, Ledger, OUTCOME_BUCKET, Statement, StatementPeriod, Totals,
    UNITS_BUCKET,
};
use super::meter::{EventType, KeyField, Meter, MeterKind, ProactivePolicy, Seen, Window};
use super::money::Money;
use super::outcome::{
    Alert, Code, CreditLine, DeadLetter, Disposition, Interaction, InteractionKey, NotBillableReason, Origin, Outcome,
    PassThroughCharge, PeriodInfo, Record, RecordBody, Refusal, VoidRecord, Withdrawal,
};
use super::settings::{
    FeatureAttribution, Features, Period, ProactiveOutboundDay, Relationship, Settings, Structure, Tenant, TenantError,
    TenantSpec,
};
use super::shared::{Claim, LocalCommit, Place, Shared};
use super::state::{
    CobrowseEntry, FunctionsEntry, InteractionEntry, Outbound, OutcomeState, PassThroughEntry, ReplyLog, UnitsEntry,
    UsersEntry,
};
use super::time::{self, Instant};

/// Engine configuration.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Key of the hot-state fingerprints. Replicas that share state share it.
    pub fingerprint_key: [u8; 16],
    /// Keep no catalogue of interactions for voids (COR) until a tenant's first void,
    /// whose caller then builds it from the tenant's records
    /// ([`Engine::seed_catalogue`]): the server, whose journal holds every record, so
    /// that tenants that never void pay nothing for voids. Off: every interaction is
    /// catalogued from the start (the scenario runner, replay, tests).
    pub catalogue_on_first_void: bool,
    /// Under a shared store: which tenants follow a tenant log (see
    /// [`Engine::follows_log`]).
    pub follow_logs: LogPolicy,
}

/// Which tenants are rated in the order of a tenant log shared by replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogPolicy {
    /// None: one engine holds every tenant's whole state (embedded mode, tests).
    #[default]
    None,
    /// Those whose events must be rated in one order across replicas
    /// ([`TenantSpec::needs_log`]); the others are metered by claims.
    WhenNeeded,
    /// Every tenant (so that any may void, at the cost of one order per tenant).
    EveryTenant,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            fingerprint_key: *b"daybook-default!",
            catalogue_on_first_void: false,
            follow_logs: LogPolicy::None,
        }
    }
}

/// A tenant's compiled settings and its aggregates.
#[derive(Debug)]
pub struct TenantSlot {
    /// Replaced whole when settings change; readers clone the `Arc` and never block writers
    /// for longer than that clone.
    config: RwLock<Arc<Tenant>>,
    /// Aggregates behind usage and statements. A std mutex: held for a few additions,
    /// never across an await.
    ledger: Mutex<Ledger>,
    /// Unix milliseconds before which every period has been closed and its state pruned
    /// ([`Engine::close_periods`]); `i64::MIN` while nothing is. Events of a closed
    /// period are refused as too late (T-3), whatever the horizon says since.
    closed_before: AtomicI64,
    /// Voids and the interactions they may select (COR). Events read the voids only once
    /// the tenant has any.
    corrections: Mutex<Corrections>,
    has_voids: std::sync::atomic::AtomicBool,
    /// Some month's total is past half a limit: from then on each event is checked
    /// against the limits under the ledger lock (`Engine::check_limits`); until then no
    /// event can reach one, and none pays for the check.
    near_limit: std::sync::atomic::AtomicBool,
    /// Whether new interactions are catalogued for voids: from the start, or once the
    /// catalogue was seeded ([`EngineConfig::catalogue_on_first_void`]).
    cataloguing: std::sync::atomic::AtomicBool,
    /// Its events are rated in the order of a tenant log shared by replicas
    /// ([`Engine::follow_log`]): this engine holds its whole state, so nothing of it is
    /// evicted, and its periods close only where the log says.
    logged: std::sync::atomic::AtomicBool,
}

impl TenantSlot {
    pub fn config(&self) -> Arc<Tenant> {
        self.config.read().unpoisoned().clone()
    }
}

/// What is remembered of an accepted event, to answer its retries (T-2).
#[derive(Debug, Clone)]
struct EventEntry {
    payload: u64,
    /// The tenant's index, and the event's UTC date (days from the common era): when its
    /// id may be forgotten.
    tenant: u32,
    day: i32,
    outcome: StoredOutcome,
}

/// The original outcome of an event, kept compact: a retry re-runs the same rating code,
/// without changing anything, against the state as it was just before the event (its
/// `Prior`), which reproduces the original outcome exactly. Only an event that also
/// charged a proactive outbound's day (DAR-5) keeps its outcome whole.
#[derive(Debug, Clone)]
enum StoredOutcome {
    Prior(Prior),
    Full(Arc<Outcome>),
}

/// The state an event met, as far as its outcome depends on it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prior {
    /// Messages and conversations opened: the event's own interaction before it (`None`:
    /// it created it, or touched none).
    Interaction(Option<InteractionEntry>),
    /// CR-8: the month's invocations before it.
    Functions(u64),
    /// CR-7: whether the session was already charged by an earlier event. (An event that
    /// moves the session's first event earlier keeps its outcome whole.)
    Cobrowse { counted: bool },
}

/// The result of rating one event under a shared store.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per event and taken apart at once, as Result<Outcome, _> is"
)]
pub enum Rated {
    /// Answered here: committed, a retry, or refused.
    Done(Result<Outcome, Refusal>),
    /// The event would change its shared entry: nothing is committed until the store
    /// applies the claim.
    Claim(Box<Claim>),
    /// A void of a tenant metered by claims: the server publishes it to the store and
    /// withdraws what it selects (`shared_voids`).
    Void(Box<SharedVoid>),
}

impl Default for NearCache {
    fn default() -> Self {
        NearCache {
            // A placeholder until the event is rated; built on every event, so it must
            // not allocate (an empty reason and no violations do not).
            rated: Rated::Done(Err(Refusal::new(Code::NotFound, "T-6", String::new()))),
            entry: None,
            ledger: Vec::new(),
            event: None,
            prior: Vec::new(),
            ask_store: false,
        }
    }
}

impl Rated {
    /// The answer of a mode that never claims.
    fn done(self) -> Result<Outcome, Refusal> {
        match self {
            Rated::Done(result) => result,
            Rated::Claim(_) | Rated::Void(_) => unreachable!("only shared modes claim"),
        }
    }
}

/// An event answered from the near cache, and the shared entry it belongs to (for the
/// shard its emitted records go to).
#[derive(Debug)]
pub struct NearCache {
    pub rated: Rated,
    pub entry: Option<Fp>,
    /// What a committed event added to the aggregates (for the shared store's).
    pub ledger: Vec<(NaiveDate, Entry)>,
    /// The event's fingerprint, payload fingerprint and time, once it was validated.
    pub event: Option<(Fp, u64, Instant)>,
    /// What a committed event met (its encoded `Prior`), for the store to answer its
    /// retries on other replicas.
    pub prior: Vec<u8>,
    /// Given by the caller: claim the event even if it changes nothing here (the store
    /// may remember it).
    pub ask_store: bool,
}

/// An event as the shared store reserves its id ([`Engine::admit`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Identity {
    /// The fingerprint of (tenant, event id).
    pub event: Fp,
    /// The fingerprint of its payload: equal for a retry, different for a reuse.
    pub payload: u64,
    /// Until when a retry of it can still be accepted: its id is remembered that long.
    pub remember_until: Instant,
    /// Whether this replica remembers the id already (it answers retries itself).
    pub known_here: bool,
}

/// The rating engine.
pub struct Engine {
    fingerprinter: Fingerprinter,
    /// Tenants by id: read on every event, written only when a tenant is added. A read
    /// lock is one atomic operation; tenant ids are configuration, not attacker-chosen
    /// keys, so the cheap hasher is safe.
    tenants: RwLock<HashMap<Arc<str>, Arc<TenantSlot>, FpBuildHasher>>,
    /// Tenants by dense index, for turning compact entries back into tenants.
    by_index: RwLock<Vec<Arc<TenantSlot>>>,
    /// (tenant, event_id) -> payload and outcome. Holding an entry's shard while an event is
    /// rated makes concurrent retries of one id wait for the first.
    events: DashMap<Fp, EventEntry, FpBuildHasher>,
    /// (tenant, key, period) -> features seen: the hot map of relationships.
    interactions: DashMap<HotKey, InteractionEntry, FpBuildHasher>,
    /// (tenant, session) -> first established event (CR-7).
    cobrowse: DashMap<Fp, CobrowseEntry, FpBuildHasher>,
    /// (tenant, local month) -> invocation counts per event (CR-8).
    functions: DashMap<Fp, FunctionsEntry, FpBuildHasher>,
    /// (tenant, local month) -> distinct agent and bot ids (PL-1).
    users: DashMap<Fp, UsersEntry, FpBuildHasher>,
    /// event -> pass-through charge (CR-9), for rebuilding aggregates after a merge.
    pass_through: DashMap<Fp, PassThroughEntry, FpBuildHasher>,
    /// (tenant, consumer) -> outbounds and replies, only for retroactive tenants (DAR-5).
    replies: DashMap<Fp, ReplyLog, FpBuildHasher>,
    /// (tenant, event meter, local month) -> units (EV-1).
    units: DashMap<Fp, UnitsEntry, FpBuildHasher>,
    /// (tenant, outcome meter, conversation, outcome type) -> occurrences, revocations and
    /// the billed one (OUT-1..OUT-4).
    outcomes: DashMap<Fp, OutcomeState, FpBuildHasher>,
    /// Under a shared store: platform users (tenant, local month, sender) this replica saw
    /// first, for the store's sets (PL-1). Drained by [`Engine::take_new_users`].
    new_users: Mutex<Vec<(Arc<str>, NaiveDate, Fp)>>,
    /// Whether `new_users` holds any: read on every event under a shared store, so an
    /// atomic rather than the mutex. Set and cleared with the mutex held.
    new_users_waiting: std::sync::atomic::AtomicBool,
    collect_users: std::sync::atomic::AtomicBool,
    /// Whether the near cache may forget entries (a memory ceiling under a shared store).
    /// A retry of a forgotten event is still answered right: its id is not known here,
    /// so the shared store's reservation finds it and the store answers it.
    evictable: bool,
    catalogue_on_first_void: bool,
    follow_logs: LogPolicy,
}

/// The key fields and period of one interaction, before it is fingerprinted.
struct Touch<'a> {
    tenant: &'a Tenant,
    meter: &'a Meter,
    consumer: &'a str,
    conversation: Option<&'a str>,
    integration: Option<&'a str>,
    /// The channel of the message or conversation that touches it (`None`: a DAR-5
    /// charge of a proactive day, whose outbound keeps no channel).
    channel: Option<Channel>,
    at: Instant,
    tie: u32,
    /// The settings in force at `at`, looked up once: its features and lateness horizon.
    features: Features,
    horizon: TimeDelta,
    rule: &'static str,
    event_id: &'a str,
}

/// An interaction's key fields, borrowed from the event.
struct KeyRef<'a> {
    consumer: &'a str,
    conversation: Option<&'a str>,
    integration: Option<&'a str>,
}

impl KeyRef<'_> {
    fn to_owned(&self) -> InteractionKey {
        InteractionKey {
            consumer: self.consumer.to_string(),
            conversation: self.conversation.map(str::to_string),
            integration: self.integration.map(str::to_string),
        }
    }
}

/// What one event did, gathered while rating it.
#[derive(Default)]
struct Effects {
    mode: Mode,
    shared: Option<SharedTouch>,
    /// Order-free set insertions, made only when the event is committed: the platform
    /// user (month key, sender) and the pass-through charge.
    user: Option<(Fp, i32, Fp)>,
    pass_through_entry: Option<(Fp, PassThroughEntry)>,
    /// The arrival instant lateness is judged at, and the tenant's closed-period watermark:
    /// an effect on another period (a DAR-5 outbound's day) is made only while that period
    /// is open (T-3).
    now: Option<Instant>,
    closed_before: Option<i64>,
    /// What the event met, for its stored outcome.
    prior: Option<Prior>,
    /// The outcome cannot be re-derived from `prior` (a DAR-5 outbound was charged, or a
    /// co-browse session's first event moved).
    keep_whole: bool,
    interactions: Vec<Interaction>,
    counted_in: Vec<RecordId>,
    lines: Vec<CreditLine>,
    pass_through: Option<PassThroughCharge>,
    ledger: Vec<(NaiveDate, Entry)>,
    records: Vec<Record>,
    /// Records are not wanted: a replay discards them (they were emitted when the event
    /// was first rated), and a retry answers from its outcome alone.
    silent: bool,
    /// The tenant's voids while it has any (COR-1), read once per event.
    voids: Option<Arc<Vec<VoidRule>>>,
    /// Whether the tenant's new interactions are catalogued for voids.
    cataloguing: bool,
    /// Interactions this event started, and states whose interaction it withdrew, for
    /// the catalogue voids select from.
    catalogued: Vec<(Catalogued, Option<String>)>,
    uncatalogued: Vec<RecordId>,
}

/// A map keyed by fingerprints, its shards staggered ([`crate::rating::ids::stagger`]).
fn fingerprint_map<K: Eq + std::hash::Hash, V>() -> DashMap<K, V, FpBuildHasher> {
    DashMap::with_hasher_and_shard_amount(FpBuildHasher::default(), crate::rating::ids::shard_amount())
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            fingerprinter: Fingerprinter::new(config.fingerprint_key),
            tenants: RwLock::new(HashMap::default()),
            by_index: RwLock::new(Vec::new()),
            events: fingerprint_map(),
            interactions: fingerprint_map(),
            cobrowse: fingerprint_map(),
            functions: fingerprint_map(),
            users: fingerprint_map(),
            pass_through: fingerprint_map(),
            replies: fingerprint_map(),
            units: fingerprint_map(),
            outcomes: fingerprint_map(),
            new_users: Mutex::new(Vec::new()),
            new_users_waiting: std::sync::atomic::AtomicBool::new(false),
            collect_users: std::sync::atomic::AtomicBool::new(false),
            evictable: false,
            catalogue_on_first_void: config.catalogue_on_first_void,
            follow_logs: config.follow_logs,
        }
    }

    /// An engine whose near cache may be evicted ([`Engine::evict`]).
    pub fn with_eviction(config: EngineConfig) -> Self {
        Engine { evictable: true, ..Engine::new(config) }
    }

    /// Whether platform users first seen here wait to be taken.
    pub fn has_new_users(&self) -> bool {
        self.new_users_waiting.load(Ordering::Acquire)
    }

    /// Gives back platform users a shared store did not take.
    pub fn requeue_new_users(&self, users: Vec<(Arc<str>, NaiveDate, Fp)>) {
        let mut waiting = self.new_users.lock().unpoisoned();
        waiting.extend(users);
        self.new_users_waiting.store(!waiting.is_empty(), Ordering::Release);
    }

    /// Under a shared store: collect platform users first seen here, in every mode
    /// (degraded decisions included), for [`Engine::take_new_users`].
    pub fn collect_new_users(&self) {
        self.collect_users.store(true, Ordering::Release);
    }

    /// Platform users first seen here under a shared store, since the last call.
    pub fn take_new_users(&self) -> Vec<(Arc<str>, NaiveDate, Fp)> {
        let mut waiting = self.new_users.lock().unpoisoned();
        self.new_users_waiting.store(false, Ordering::Release);
        std::mem::take(&mut *waiting)
    }

    /// Creates or replaces a tenant. A replaced tenant keeps its state and aggregates; a
    /// tenant's meter never changes (T-5).
    pub fn put_tenant(&self, spec: TenantSpec) -> Result<Arc<Tenant>, TenantError> {
        let existing = self.tenants.read().unpoisoned().get(spec.id.as_str()).cloned();
        if let Some(slot) = existing {
            let old = slot.config();
            if old.meter.kind != spec.meter {
                return Err(TenantError::Setting(super::settings::SettingError::new(
                    "meter",
                    "a tenant's meter never changes (T-5)",
                )));
            }
            let compiled = Arc::new(Tenant::compile(spec, old.index)?);
            *slot.config.write().unpoisoned() = compiled.clone();
            return Ok(compiled);
        }
        let mut by_index = self.by_index.write().unpoisoned();
        let index = by_index.len() as u32;
        // Decided once, with the tenant: its state is whole here or a cache of the store's.
        let logged = self.would_follow_log(&spec);
        let compiled = Arc::new(Tenant::compile(spec, index)?);
        let slot = Arc::new(TenantSlot {
            config: RwLock::new(compiled.clone()),
            ledger: Mutex::new(Ledger::default()),
            closed_before: AtomicI64::new(i64::MIN),
            corrections: Mutex::new(Corrections::default()),
            has_voids: std::sync::atomic::AtomicBool::new(false),
            near_limit: std::sync::atomic::AtomicBool::new(false),
            cataloguing: std::sync::atomic::AtomicBool::new(!self.catalogue_on_first_void || logged),
            logged: std::sync::atomic::AtomicBool::new(logged),
        });
        by_index.push(slot.clone());
        self.tenants.write().unpoisoned().insert(compiled.id.clone(), slot);
        Ok(compiled)
    }

    fn slot(&self, id: &str) -> Option<Arc<TenantSlot>> {
        self.tenants.read().unpoisoned().get(id).cloned()
    }

    pub fn tenant(&self, id: &str) -> Option<Arc<Tenant>> {
        self.slot(id).map(|s| s.config())
    }

    pub fn tenant_ids(&self) -> Vec<Arc<str>> {
        let mut ids: Vec<_> = self.tenants.read().unpoisoned().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fingerprinter
    }
}

impl Effects {
    /// The event's outcome, taking what rating gathered for it.
    pub(super) fn outcome(&mut self, event_id: String, disposition: Disposition) -> Outcome {
        Outcome {
            event_id,
            disposition,
            retry: false,
            interactions: std::mem::take(&mut self.interactions),
            counted_in: std::mem::take(&mut self.counted_in),
            lines: std::mem::take(&mut self.lines),
            pass_through: self.pass_through.take(),
        }
    }

    pub(super) fn add_line(&mut self, tenant: &Tenant, date: NaiveDate, bucket: usize, line: CreditLine) {
        self.ledger.push((date, Entry::Credits(bucket, line.credits)));
        self.emit(|| Record { tenant: tenant.id.clone(), rule: line.rule, body: RecordBody::Line(line.clone()) });
        self.lines.push(line);
    }

    /// Emits a record, built only when records are wanted.
    pub(super) fn emit(&mut self, record: impl FnOnce() -> Record) {
        if !self.silent {
            self.records.push(record());
        }
    }
}

mod admitted;
mod books;
mod charges;
mod corrections;
mod ingest;
mod interactions;
mod merge;
mod meters;
mod persist;
mod shared_voids;
mod source;
mod upkeep;

pub use corrections::{Catalogued, Corrections, Source, Standing, VoidRule};

pub use admitted::Admitted;
pub use persist::StateImage;
pub use shared_voids::{SharedVoid, Withdrawn};
pub use upkeep::Pruned;

use books::raise_alerts;
use charges::cobrowse_line;
use corrections::{Listed, Selected};
use ingest::dead_letter;
use source::{Mode, SessionBefore, SharedTouch};
use upkeep::{PERIOD_SLACK_DAYS, utc_day};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_events_are_compact() {
        // Payload fingerprint and a re-derivable outcome: no allocation per event.
        assert!(std::mem::size_of::<EventEntry>() <= 48, "{}", std::mem::size_of::<EventEntry>());
        assert!(std::mem::size_of::<(Fp, EventEntry)>() <= 64);
    }
}
