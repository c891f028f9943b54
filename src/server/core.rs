//! The sidecar's state: the engine, the journal in front of it, and the record hub.
//!
//! Every call that changes state goes through [`Daybook`]. An event is rated under the
//! ordering stripe of the state it touches (its tenant and consumer, co-browse session, or
//! the tenant's Functions month) and appended to the journal before the stripe is
//! released: for every key, journal order is rating order, so replaying the journal
//! reproduces the same outcomes, records and cursors, while events of other keys are
//! rated in parallel. Tenant changes, pruning and snapshots take every stripe. The caller
//! waits for the journal to be durable before it answers.

use crate::sync::Unpoisoned;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message;

use super::direct_file;
use super::journal::{DeadLetterEntry, Entry, EntryKind, EventEntry, Journal, JournalError, JournalOptions};
use super::records::{Hub, Published, stamp};
use super::telemetry::Telemetry;
use crate::api::{self, pb};
use crate::rating::event::FieldViolation;
use crate::rating::outcome::{Code, Outcome, RecordBody, Refusal};
use crate::rating::settings::{Tenant, TenantSpec};
use crate::rating::time;
use crate::rating::time::Instant;
use crate::rating::{Engine, EngineConfig, LogPolicy, RawEvent, Record};

/// Where the time comes from: the system clock in production; tests may pin it.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(chrono::Utc::now)
}

/// Why a tenant call was refused.
#[derive(Debug)]
pub enum TenantRefusal {
    Invalid(Vec<FieldViolation>),
    NotFound(String),
    AlreadyExists(String),
    FailedPrecondition(String),
    /// The shared store did not answer: nothing changed.
    Unavailable(String),
}

/// A change to a tenant through the API.
pub enum TenantOp<'a> {
    Create(&'a pb::Tenant),
    Change(&'a str, &'a pb::SettingsChange),
    Plan(&'a str, &'a pb::Plan),
}

impl TenantOp<'_> {
    pub fn tenant_id(&self) -> &str {
        match self {
            TenantOp::Create(t) => &t.tenant_id,
            TenantOp::Change(id, _) | TenantOp::Plan(id, _) => id,
        }
    }
}

/// What a tenant operation makes of the tenant.
pub enum NextSpec {
    Unchanged(Arc<Tenant>),
    /// The tenant's definition after the operation.
    Spec(Box<TenantSpec>),
}

/// An audit record (T-5) of a tenant change; its id is deterministic in all it says.
fn audit_record(tenant_id: &str, audit: pb::SettingsChangeAudit) -> pb::Record {
    let body = audit.encode_to_vec();
    let id = crate::rating::ids::RecordId::of(&[b"audit", tenant_id.as_bytes(), &body]);
    pb::Record {
        cursor: String::new(),
        record_id: String::from_utf8_lossy(&id.hex()).into_owned(),
        tenant_id: tenant_id.to_string(),
        rule: "T-5".into(),
        body: Some(pb::record::Body::SettingsChange(audit)),
    }
}

/// Ordering stripes: enough that concurrent calls rarely share one on two cores or many.
pub(super) const STRIPES: usize = 64;

pub struct Daybook {
    engine: Engine,
    /// Rating order == journal order, per stripe of keys. Std mutexes: each held for one
    /// rating and its journal append, never across an await.
    stripes: Vec<Mutex<()>>,
    journal: Arc<Journal<Published>>,
    hub: Arc<Hub>,
    clock: Clock,
    /// Tenants defined by the config file: changed by editing the file, not by the API.
    file_tenants: Mutex<HashSet<String>>,
    /// The journal position of the last snapshot; held while one is written.
    last_snapshot: Mutex<u64>,
    /// The first entry still in the journal: records before it were deleted with their
    /// segments (`record_retention`), and a cursor before it cannot be resumed.
    oldest_seq: std::sync::atomic::AtomicU64,
    /// Set once replay has finished and the listeners are up.
    ready: AtomicBool,
    /// Set when shutdown begins.
    draining: AtomicBool,
    /// Tells long-lived streams (watch, batch ingest) to end when shutdown begins.
    stopping: tokio::sync::watch::Sender<bool>,
    telemetry: Arc<Telemetry>,
    /// The shared store, when replicas meter as one (`redis_url`).
    pub(super) shared: Option<super::shared::state::SharedState>,
    /// The near cache's bound, under a shared store with `memory_ceiling`.
    budget: Option<MemoryBudget>,
    /// The copy of the state a snapshot writes, kept between snapshots (its allocations
    /// are reused).
    snapshot_image: Mutex<crate::rating::engine::StateImage>,
    /// The record sinks: how far each is, and what webhooks are told of the process.
    sinks: super::sinks::board::SinkBoard,
}

/// How a memory ceiling is spent. A fifth goes to the near cache's entries, at a
/// conservative 128 bytes each (measured: 52 to 98 bytes per entry, hash table
/// included; BENCHMARKS.md, P4). The rest is the process itself (runtime, buffers), the
/// snapshot's copy of the near cache, and what the allocator keeps of memory it was given
/// back. (Measured with half for entries: a 256 MiB ceiling peaked at 312 MiB after 10M
/// first touches. With a quarter, 1M first touches under 128 MiB peaked at 113-116 MiB
/// until session 13, then at 120-134 MiB once the journal's writes were shared by the
/// calls in flight and the shards staggered; with a fifth, 114-118 MiB.)
#[derive(Debug, Clone, Copy)]
pub struct MemoryBudget {
    pub ceiling: u64,
    pub entries: usize,
}

impl MemoryBudget {
    pub fn of(ceiling: u64) -> MemoryBudget {
        MemoryBudget { ceiling, entries: (ceiling / 5) as usize / 128 }
    }
}

impl Daybook {
    /// Opens the data directory: replays the journal (after loading the file's tenants),
    /// then opens it for appending.
    pub fn open(
        data_dir: &std::path::Path,
        journal: JournalOptions,
        file_tenants: Vec<TenantSpec>,
        clock: Clock,
        telemetry: Arc<Telemetry>,
    ) -> Result<Arc<Daybook>, JournalError> {
        Daybook::open_shared(data_dir, journal, file_tenants, clock, telemetry, None, None)
    }

    /// [`Daybook::open`], sharing state through `shared` (the store, the fingerprint key
    /// every replica of it uses, and which tenants follow a tenant log). With a shared
    /// store, `memory_ceiling` bounds the near cache (see [`MemoryBudget`]).
    pub fn open_shared(
        data_dir: &std::path::Path,
        journal_options: JournalOptions,
        file_tenants: Vec<TenantSpec>,
        clock: Clock,
        telemetry: Arc<Telemetry>,
        shared: Option<SharedStore>,
        memory_ceiling: Option<u64>,
    ) -> Result<Arc<Daybook>, JournalError> {
        let budget = memory_ceiling.filter(|_| shared.is_some()).map(MemoryBudget::of);
        let dir = data_dir.join("journal");
        let key = match &shared {
            Some(s) => super::recovery::adopt_fingerprint_key(data_dir, s.fingerprint_key)?,
            None => super::recovery::fingerprint_key(data_dir)?,
        };
        let names: HashSet<String> = file_tenants.iter().map(|t| t.id.clone()).collect();
        let fresh = || -> Result<Engine, JournalError> {
            // The journal holds every record: a tenant's catalogue for voids is built from
            // it at its first void (`Daybook::prepare_void`), not kept for every tenant.
            let follow_logs = shared.as_ref().map_or(LogPolicy::None, |s| s.tenant_log);
            let config = EngineConfig { fingerprint_key: key, catalogue_on_first_void: true, follow_logs };
            let engine = match &budget {
                Some(_) => Engine::with_eviction(config),
                None => Engine::new(config),
            };
            if shared.is_some() {
                // Replay collects them again: the store's sets are unions.
                engine.collect_new_users();
            }
            for spec in file_tenants.clone() {
                let id = spec.id.clone();
                engine.put_tenant(spec).map_err(|e| JournalError::Damaged {
                    segment: data_dir.to_path_buf(),
                    offset: 0,
                    reason: format!("tenant {id}: {e}"),
                })?;
            }
            Ok(engine)
        };
        // How long each half of a start takes is logged: an operator sizing snapshots
        // against start time (issue 19, P6) needs both.
        let started = std::time::Instant::now();
        // The snapshot when there is a readable one (then only the journal after it is
        // replayed); otherwise the whole journal.
        let (engine, snapshot_seq) = match super::recovery::read_snapshot(data_dir, fresh()?, &names) {
            Ok(Some(loaded)) => {
                tracing::info!(
                    "loaded the snapshot at journal entry {} in {:.2} s; replaying the journal after it",
                    loaded.1,
                    started.elapsed().as_secs_f64()
                );
                loaded
            }
            Ok(None) => (fresh()?, 0),
            Err(e) => {
                tracing::warn!("snapshot not used ({e}); replaying the whole journal");
                (fresh()?, 0)
            }
        };
        let replayed =
            super::recovery::replay_journal(&dir, &engine, snapshot_seq, &names, budget.as_ref().map(|b| b.entries))?;
        let (last_seq, shipped, pending) = (replayed.last_seq, replayed.shipped, replayed.pending);
        tracing::info!(
            "replayed journal entries {} to {last_seq}; recovered in {:.2} s",
            snapshot_seq + 1,
            started.elapsed().as_secs_f64()
        );
        let hub = Arc::new(Hub::default());
        let publisher = hub.clone();
        let observer = telemetry.clone();
        let journal = Journal::open(
            &dir,
            last_seq,
            journal_options,
            move |_, records| publisher.publish(records),
            Box::new(move |took, synced| observer.journal_flushed(took, synced)),
        )?;
        Ok(Arc::new(Daybook {
            engine,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            journal,
            hub,
            clock,
            file_tenants: Mutex::new(names),
            last_snapshot: Mutex::new(snapshot_seq),
            oldest_seq: std::sync::atomic::AtomicU64::new(super::journal::retention::oldest_seq(&dir)?),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stopping: tokio::sync::watch::channel(false).0,
            telemetry,
            shared: shared.map(|s| super::shared::state::SharedState::new(s.store, STRIPES, shipped, pending)),
            budget,
            snapshot_image: Mutex::default(),
            sinks: Default::default(),
        }))
    }

    /// The journal: every accepted event and its records, in rating order.
    pub fn journal(&self) -> &Arc<Journal<Published>> {
        &self.journal
    }

    /// The live side of the record stream (records of durable entries).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The record sinks' progress (`super::sinks`).
    pub fn sinks(&self) -> &super::sinks::board::SinkBoard {
        &self.sinks
    }

    /// The data directory: the journal's and snapshot's, and the sinks' cursor files.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.journal.dir().parent().unwrap_or(self.journal.dir()).to_path_buf()
    }

    /// The near cache's bound (Redis mode with `memory_ceiling`).
    pub fn budget(&self) -> Option<MemoryBudget> {
        self.budget
    }

    /// Replay is done and the listeners are up.
    pub fn mark_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether shutdown has begun: new calls go to another instance.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn now(&self) -> Instant {
        (self.clock)()
    }

    /// Rates one event and journals it. Returns the result and the journal position the
    /// answer must wait for.
    pub fn ingest(&self, event: pb::Event) -> (Result<Outcome, Refusal>, u64) {
        let mut results = self.ingest_batch(vec![event]);
        let (result, wait) = results.pop().expect("one result per event");
        (result, wait)
    }

    /// Rates a batch, each event under its own ordering stripe.
    pub fn ingest_batch(&self, events: Vec<pb::Event>) -> Vec<(Result<Outcome, Refusal>, u64)> {
        let encoded: Vec<Vec<u8>> = events.iter().map(|e| e.encode_to_vec()).collect();
        let mut out = Vec::with_capacity(events.len());
        let mut records = Vec::new();
        for (event, bytes) in events.into_iter().zip(encoded) {
            let _stripe = self.stripes[stripe_of(&event)].lock().unpoisoned();
            let now = self.now();
            let result = self.engine.ingest(RawEvent::from(event), Some(now), &mut records);
            let kind = match &result {
                Ok(outcome) if !outcome.retry => Some(EntryKind::Event(EventEntry {
                    event: bytes,
                    now_nanos: now.timestamp_nanos_opt(),
                    claimed: None,
                    pending: false,
                })),
                Err(refusal) if refusal.code == Code::FailedPrecondition && !records.is_empty() => {
                    let event_id = match &records[0].body {
                        RecordBody::DeadLetter(d) => d.event.event_id.clone(),
                        _ => String::new(),
                    };
                    Some(EntryKind::DeadLetter(DeadLetterEntry { event_id }))
                }
                _ => None,
            };
            let wait = match kind {
                Some(kind) => self.append(kind, std::mem::take(&mut records)),
                // A retry answers only once the original is durable; a plain refusal
                // changed nothing and need not wait.
                None if result.is_ok() => self.journal.appended(),
                None => 0,
            };
            out.push((result, wait));
        }
        out
    }

    /// Before a tenant's first void (COR): builds the catalogue the void selects from out
    /// of the journal, which holds every record, with nothing rated meanwhile and every
    /// appended entry on disk. A tenant that never voids keeps no catalogue.
    pub fn prepare_void(&self, tenant: &str) -> Result<(), std::io::Error> {
        if self.is_shared() || !self.engine.needs_catalogue(tenant) {
            return Ok(());
        }
        let _all = self.exclusive();
        if !self.engine.needs_catalogue(tenant) {
            return Ok(());
        }
        let appended = self.journal.appended();
        while self.journal.durable() < appended {
            if self.journal.failed() {
                return Err(std::io::Error::other("the journal failed a write"));
            }
            self.journal.flush_here();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let standing = super::standing::from_journal(self.journal.dir(), tenant, appended)?;
        tracing::info!(tenant, interactions = standing.len(), "catalogue for voids built from the journal");
        self.engine.seed_catalogue(tenant, standing);
        Ok(())
    }

    /// Journals an entry with its records, which carry their cursors from the start.
    pub(super) fn append(&self, kind: EntryKind, records: Vec<Record>) -> u64 {
        let protos: Vec<pb::Record> = records.iter().map(|r| api::record_out(r, String::new())).collect();
        self.append_protos(kind, protos)
    }

    /// [`Daybook::append`] for records already in their wire form.
    fn append_protos(&self, kind: EntryKind, protos: Vec<pb::Record>) -> u64 {
        let entry =
            Entry { seq: 0, kind: Some(kind), records: protos.iter().map(|r| r.encode_to_vec().into()).collect() };
        let at = super::journal::decided_at(&entry);
        self.journal.append(entry, |seq| (!protos.is_empty()).then(|| Arc::new(stamp(seq, at, protos))))
    }

    /// The ordering stripe of an event, held while it is rated and journaled.
    pub(super) fn stripe(&self, event: &pb::Event) -> std::sync::MutexGuard<'_, ()> {
        self.stripe_at(stripe_of(event))
    }

    /// Ordering stripe number `index` (`stripe_of` an event), for a caller that takes it
    /// more than once.
    pub(super) fn stripe_at(&self, index: usize) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[index].lock().unpoisoned()
    }

    /// Every ordering stripe, in index order: nothing is rated while they are held.
    fn exclusive(&self) -> Vec<std::sync::MutexGuard<'_, ()>> {
        self.stripes.iter().map(|s| s.lock().unpoisoned()).collect()
    }

    /// Applies a tenant operation made by the credential `by` (embedded mode).
    pub fn tenant_op(&self, op: TenantOp<'_>, by: &str) -> Result<(Arc<Tenant>, u64), TenantRefusal> {
        let _all = self.exclusive();
        match self.next_spec(&op, None)? {
            NextSpec::Unchanged(tenant) => Ok((tenant, self.journal.appended())),
            NextSpec::Spec(new) => {
                let audit = self.audit(&op, &new, by);
                self.apply_spec(*new, Some(audit))
            }
        }
    }

    /// The audit record of a tenant operation that changes the tenant (issue 7): who,
    /// when, what, from when. Its id is deterministic in all of them.
    pub(super) fn audit(&self, op: &TenantOp<'_>, new: &TenantSpec, by: &str) -> pb::Record {
        let now = self.now();
        let changed_at = now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let json = |v: serde_json::Value| v.to_string();
        let mut audit = pb::SettingsChangeAudit {
            changed_by: by.to_string(),
            changed_at: changed_at.clone(),
            effective_from: changed_at.clone(),
            ..Default::default()
        };
        match op {
            TenantOp::Create(_) => {
                audit.operation = "create_tenant".into();
                audit.tenant_json = json(api::to_json(&api::tenant_out(new)));
            }
            TenantOp::Change(_, change) => {
                audit.operation = "change_settings".into();
                audit.change_id = change.change_id.clone();
                audit.effective_from = change.effective_from.clone();
                if let Some(settings) = &change.settings {
                    audit.settings_json = json(api::to_json(settings));
                }
            }
            TenantOp::Plan(id, _) => {
                audit.operation = "set_plan".into();
                let before = self.engine.tenant(id).and_then(|t| api::plan_out(&t.spec.plan));
                audit.previous_plan_json = before.map(|p| json(api::to_json(&p))).unwrap_or_default();
                audit.plan_json = api::plan_out(&new.plan).map(|p| json(api::to_json(&p))).unwrap_or_default();
            }
        }
        audit_record(&new.id, audit)
    }

    /// What a tenant operation would make of the tenant: its new definition, or nothing
    /// to do (a change id applied before). Changes nothing.
    /// `lead` is how far ahead of now a settings change must take effect, beyond T-5's
    /// floor of now minus the clock skew (under a shared store, time for every replica
    /// to learn it).
    pub(super) fn next_spec(
        &self,
        op: &TenantOp<'_>,
        lead: Option<chrono::TimeDelta>,
    ) -> Result<NextSpec, TenantRefusal> {
        match op {
            TenantOp::Create(t) => {
                let spec = api::tenant_in(t).map_err(TenantRefusal::Invalid)?;
                if self.engine.tenant(&spec.id).is_some() {
                    return Err(TenantRefusal::AlreadyExists(format!("tenant `{}` exists", spec.id)));
                }
                Ok(NextSpec::Spec(Box::new(spec)))
            }
            TenantOp::Change(tenant_id, change) => {
                let change = api::change_in(change, "change").map_err(TenantRefusal::Invalid)?;
                let tenant = self.managed_tenant(tenant_id)?;
                if let Some(id) = &change.id
                    && let Some(existing) = tenant.spec.changes.iter().find(|c| c.id.as_ref() == Some(id))
                {
                    if *existing == change {
                        return Ok(NextSpec::Unchanged(tenant));
                    }
                    return Err(TenantRefusal::AlreadyExists(format!("change id `{id}` was used with another change")));
                }
                let now = self.now();
                let skew = tenant.settings_at(now).max_clock_skew;
                if change.at < now - skew {
                    return Err(TenantRefusal::FailedPrecondition(format!(
                        "effective_from {} is in the past: events already judged are not re-rated (T-5)",
                        change.at.to_rfc3339()
                    )));
                }
                if let Some(lead) = lead
                    && change.at < now + lead
                {
                    return Err(TenantRefusal::FailedPrecondition(format!(
                        "effective_from {} is less than {} ahead: with a shared Redis store a change must \
                         reach every replica before it takes effect",
                        change.at.to_rfc3339(),
                        time::format_duration(lead)
                    )));
                }
                let mut spec = tenant.spec.clone();
                spec.changes.push(change);
                Ok(NextSpec::Spec(Box::new(spec)))
            }
            TenantOp::Plan(tenant_id, plan) => {
                let plan = api::plan_in(plan, "plan").map_err(TenantRefusal::Invalid)?;
                let tenant = self.managed_tenant(tenant_id)?;
                let mut spec = tenant.spec.clone();
                spec.plan = plan;
                Ok(NextSpec::Spec(Box::new(spec)))
            }
        }
    }

    /// Puts a tenant's new spec in force and journals it, with its audit record when the
    /// change was made here; called with every stripe held.
    pub(super) fn apply_spec(
        &self,
        spec: TenantSpec,
        audit: Option<pb::Record>,
    ) -> Result<(Arc<Tenant>, u64), TenantRefusal> {
        let plan_changed = self.engine.tenant(&spec.id).is_some_and(|old| old.spec.plan != spec.plan);
        let result = self.put_journaled(spec, audit);
        if plan_changed {
            // A new plan re-judges the aggregates' alerts.
            self.engine.rebuild_ledgers();
        }
        result
    }

    /// Every ordering stripe (for [`Daybook::apply_spec`]).
    pub(super) fn all_stripes(&self) -> Vec<std::sync::MutexGuard<'_, ()>> {
        self.exclusive()
    }

    /// Whether the config file defines the tenant.
    pub(super) fn is_file_tenant(&self, tenant_id: &str) -> bool {
        self.file_tenants.lock().unpoisoned().contains(tenant_id)
    }

    fn managed_tenant(&self, tenant_id: &str) -> Result<Arc<Tenant>, TenantRefusal> {
        let tenant = self
            .engine
            .tenant(tenant_id)
            .ok_or_else(|| TenantRefusal::NotFound(format!("unknown tenant `{tenant_id}`")))?;
        if self.file_tenants.lock().unpoisoned().contains(tenant_id) {
            return Err(TenantRefusal::FailedPrecondition(format!(
                "tenant `{tenant_id}` is defined by the config file: change it there"
            )));
        }
        Ok(tenant)
    }

    fn put_journaled(&self, spec: TenantSpec, audit: Option<pb::Record>) -> Result<(Arc<Tenant>, u64), TenantRefusal> {
        let bytes = api::tenant_out(&spec).encode_to_vec();
        let tenant = self
            .engine
            .put_tenant(spec)
            .map_err(|e| TenantRefusal::Invalid(vec![FieldViolation::new("tenant", e.to_string())]))?;
        let seq = self.append_protos(EntryKind::Tenant(bytes), audit.into_iter().collect());
        Ok((tenant, seq))
    }

    /// Applies the config file's tenants again (on file change). A tenant whose new
    /// definition is invalid keeps its old one; the error is returned.
    pub fn reload_file_tenants(&self, specs: Vec<TenantSpec>) -> Result<usize, String> {
        let _all = self.exclusive();
        let mut changed = 0;
        for spec in specs {
            if self.engine.tenant(&spec.id).is_some_and(|t| t.spec == spec) {
                continue;
            }
            if self.shared.is_some() {
                same_metering(&self.engine, &spec).map_err(|e| format!("tenant {}: {e}", spec.id))?;
            }
            let id = spec.id.clone();
            let definition = api::tenant_out(&spec);
            self.engine.put_tenant(spec).map_err(|e| format!("tenant {id}: {e}"))?;
            self.file_tenants.lock().unpoisoned().insert(id.clone());
            // Audited like a change through the API, by `config-file`. Replay skips the
            // entry's definition (the file's tenants are read from the file), and its
            // record stays on the stream.
            let changed_at = self.now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let audit = pb::SettingsChangeAudit {
                operation: "config_file".into(),
                changed_by: "config-file".into(),
                effective_from: changed_at.clone(),
                changed_at,
                tenant_json: api::to_json(&definition).to_string(),
                ..Default::default()
            };
            self.append_protos(EntryKind::Tenant(definition.encode_to_vec()), vec![audit_record(&id, audit)]);
            changed += 1;
        }
        if changed > 0 {
            self.engine.rebuild_ledgers();
        }
        Ok(changed)
    }

    /// Keeps the near cache within its budget: forgets an eighth of it at a time until it
    /// fits (under a shared store, which still has everything). Returns the entries
    /// forgotten.
    pub fn evict_to_budget(&self, round: &mut u64) -> usize {
        let Some(budget) = self.budget else { return 0 };
        let mut forgotten = 0;
        while self.engine.evictable_entries() > budget.entries {
            forgotten += self.engine.evict(*round);
            *round += 1;
        }
        forgotten
    }

    /// Begins shutdown: readiness fails and long-lived streams end.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.stopping.send_replace(true);
    }

    /// Completes when shutdown begins.
    pub async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Closes periods past every tenant's lateness horizon and prunes their state
    /// ([`Engine::close_periods`]), journaled so that replay prunes at the same point.
    /// Ingest waits only when a UTC day has turned and something closes.
    pub fn close_periods(&self) -> crate::rating::engine::Pruned {
        // Checked first without stopping ingest: periods close once a day.
        if !self.engine.has_periods_to_close(self.now()) {
            return Default::default();
        }
        let _all = self.exclusive();
        let started = std::time::Instant::now();
        let now = self.now();
        let pruned = self.engine.close_periods(now);
        if pruned.tenants > 0 {
            let nanos = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
            self.append(EntryKind::ClosePeriods(nanos), Vec::new());
            self.telemetry.pruned(started.elapsed(), pruned.interactions + pruned.events + pruned.other);
        }
        pruned
    }

    /// Deletes the journal segments nothing needs any more: covered by the latest
    /// snapshot, passed by every record sink, older than `retention`, and arrived before
    /// any open period's events (`journal::retention`).
    pub fn prune_journal(&self, retention: std::time::Duration) -> std::io::Result<super::journal::retention::Pruned> {
        let now = (self.clock)();
        let retention = chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
        let keep_since = now.checked_sub_signed(retention).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let keep_since = keep_since.min(self.engine.open_periods_arrived_since(now));
        let nanos = keep_since.timestamp_nanos_opt().unwrap_or(i64::MIN);
        // Entries a sink has not passed stay: the journal holds what is not delivered.
        let kept_after = self.sinks.floor().map_or(self.last_snapshot(), |floor| floor.min(self.last_snapshot()));
        super::journal::retention::prune(self.journal.dir(), kept_after, nanos, |oldest| {
            self.oldest_seq.store(oldest, Ordering::Release)
        })
    }

    /// What the data directory holds: the journal's segments and the snapshot.
    pub fn disk_usage(&self) -> super::journal::retention::DiskUsage {
        let data_dir = self.journal.dir().parent().unwrap_or(self.journal.dir());
        super::journal::retention::disk_usage(data_dir)
    }

    /// The first entry still in the journal (the oldest cursor a watch may resume from).
    pub fn oldest_seq(&self) -> u64 {
        self.oldest_seq.load(Ordering::Acquire)
    }

    pub fn last_snapshot(&self) -> u64 {
        *self.last_snapshot.lock().unpoisoned()
    }

    /// Writes a snapshot of the state after the current last journal entry, so that the
    /// next start replays only what follows. Ingest pauses only while the state is copied
    /// ([`Engine::image`]); encoding and writing happen beside it. Returns the position.
    pub fn write_snapshot(&self, data_dir: &std::path::Path) -> std::io::Result<u64> {
        let mut last = self.last_snapshot.lock().unpoisoned();
        let mut image = self.snapshot_image.lock().unpoisoned();
        let (seq, api_tenants) = {
            let _all = self.exclusive();
            // Under a shared store, a snapshot may not cover an event whose effects have
            // not reached the store: a start replays only what follows the snapshot, and
            // would no longer know to send it. Deferred until the reconciler catches up.
            if let Some((pending, _)) = self.shared_status()
                && (pending > 0 || self.engine.has_new_users())
            {
                return Err(std::io::Error::other(format!(
                    "deferred: {pending} events (or platform users) wait to reach redis"
                )));
            }
            let started = std::time::Instant::now();
            let seq = self.journal.appended();
            let file_tenants = self.file_tenants.lock().unpoisoned().clone();
            let api_tenants: Vec<Vec<u8>> = self
                .engine
                .tenant_ids()
                .iter()
                .filter(|id| !file_tenants.contains(&***id))
                .filter_map(|id| self.engine.tenant(id))
                .map(|t| api::tenant_out(&t.spec).encode_to_vec())
                .collect();
            self.engine.image_into(&mut image);
            self.telemetry.snapshot_written(started.elapsed());
            (seq, api_tenants)
        };
        // The snapshot may not claim entries the journal could still lose: the next start
        // would continue numbering after entries that were never written.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.journal.durable() < seq {
            self.journal.flush_here();
            if self.journal.failed() || std::time::Instant::now() > deadline {
                return Err(std::io::Error::other("the journal is behind the state"));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let tmp = data_dir.join("snapshot.tmp");
        let write = |direct: bool| -> std::io::Result<()> {
            let mut w = crate::rating::snapshot::Writer::new(direct_file::create(&tmp, direct)?);
            w.bytes(super::recovery::SNAPSHOT_MAGIC)?;
            w.u64(seq)?;
            w.u32(api_tenants.len() as u32)?;
            for t in &api_tenants {
                w.blob(t)?;
            }
            image.write(&mut w)?;
            w.finish()?.finish()
        };
        match write(true) {
            Err(e) if direct_file::is_unsupported(&e) => {
                tracing::debug!(
                    "the data directory refuses direct writes ({e}): the snapshot goes through the page cache"
                );
                write(false)?;
            }
            written => written?,
        }
        drop(image);
        std::fs::rename(&tmp, data_dir.join("snapshot.bin"))?;
        std::fs::File::open(data_dir)?.sync_all()?;
        *last = seq;
        Ok(seq)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire) && !self.journal.failed()
    }
}

/// The ordering stripe of an event: events that can touch the same state (and whose
/// outcomes therefore depend on their order) share one. Messages and conversations opened
/// touch their consumer's interactions and DAR-5 log; co-browse events their session;
/// Functions invocations their tenant's month. Platform users and pass-through charges
/// are order-free sets; aggregates are sums, and alerts are restored from the journal on
/// replay. A retry has the payload, hence the stripe, of its original.
pub(super) fn stripe_of(event: &pb::Event) -> usize {
    use pb::event::Kind;
    let key: &str = match &event.kind {
        Some(Kind::Message(m)) => &m.consumer_id,
        Some(Kind::ConversationOpened(o)) => &o.consumer_id,
        Some(Kind::Cobrowse(c)) => &c.session_id,
        // An outcome's state is its conversation's (OUT-1), whoever the consumer.
        Some(Kind::Outcome(o)) => &o.conversation_id,
        Some(Kind::FunctionInvocations(_)) | Some(Kind::Void(_)) | None => "",
    };
    // FNV-1a: fast, and a caller who aims its keys at one stripe only slows itself.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in event.tenant_id.bytes().chain([0xff]).chain(key.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % STRIPES as u64) as usize
}

/// The shared store a daybook meters through, with what every replica of it must agree on.
pub struct SharedStore {
    pub store: Arc<crate::store::redis::RedisStore>,
    /// The key of hot-state fingerprints every replica uses.
    pub fingerprint_key: [u8; 16],
    /// Which tenants follow a tenant log (`redis_tenant_log`).
    pub tenant_log: LogPolicy,
}

/// Under a shared store a tenant is metered by claims on one shared entry per event, or
/// through its tenant log ([`Engine::would_follow_log`]: when its rules span several
/// entries, [`TenantSpec::needs_log`], or for every tenant); which is decided when it is
/// first defined. A change that would move it from one to the other is refused: the
/// state each keeps is not the other's.
pub fn same_metering(engine: &Engine, new: &TenantSpec) -> Result<(), String> {
    let Some(old) = engine.tenant(&new.id) else { return Ok(()) };
    match (engine.follows_log(&old.id), engine.would_follow_log(new)) {
        (false, true) => Err(format!(
            "under a shared Redis store this tenant is metered by claims; {} needs its tenant log from its \
             creation: define a new tenant (or create this one with it from the start)",
            new.needs_log().unwrap_or("this change")
        )),
        (true, false) => {
            Err("under a shared Redis store this tenant is metered through its tenant log, and keeps it: a change \
             cannot remove what needs it"
                .into())
        }
        _ => Ok(()),
    }
}
