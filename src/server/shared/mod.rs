//! Ingest under a shared store (Redis mode): many replicas, one meter.
//!
//! An event is first rated against this replica's state, the near cache. If it changes
//! nothing shared (a repeat message: nearly all traffic), it is answered and journaled
//! right there, as in embedded mode; Redis is not called. If it would change its shared
//! entry, its claim goes to Redis (`store::redis`): applied, the event is committed here
//! against the value Redis held before it; stale, it is rated again against the current
//! value; already seen, it is answered as the retry it is.
//!
//! When Redis cannot be reached within the deadline (or the breaker is open), the event
//! is decided from the near cache alone and journaled as `pending` (degraded mode). A
//! reconciler sends pending events to Redis once it answers again: each is rated against
//! Redis's value and claimed, so its records reach the store once, with their
//! deterministic ids, and the shared aggregates are exact. The local journal keeps pending
//! events across a restart until a `Shipped` entry says the store has them.

use crate::sync::Unpoisoned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message;

mod logged;
pub mod state;
mod streams;
mod tenants;
mod voids;

use state::{Pending, SharedState};

use super::core::Daybook;
use super::journal::{EntryKind, EventEntry};
use crate::api::{self, pb};
use crate::rating::Engine;
use crate::rating::RawEvent;
use crate::rating::engine::{Admitted, Identity, Rated};
use crate::rating::ids::Fp;
use crate::rating::ledger::{self, Statement, StatementPeriod, Totals};
use crate::rating::outcome::{Code, Outcome, Record, RecordBody, Refusal};
use crate::rating::shared::{Claim, Place, Shared};
use crate::rating::time::Instant;
use crate::store::redis::{ClaimAnswer, Emission, Reservation, StoreError};

/// Claims an event makes in a row before it is decided locally: each stale answer means
/// another replica moved the entry meanwhile, which a few tries outrun.
const MAX_CLAIM_TRIES: usize = 8;

/// How long the store remembers an event that changed nothing shared: past any lateness
/// horizon a retry could come within.
const EMITTED_EVENT_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(40);

/// The value of an absent shared entry of the kind `event` touches: where a probe of an
/// event decided without the store starts.
fn absent_for(event: &pb::Event) -> Shared {
    match &event.kind {
        Some(pb::event::Kind::Cobrowse(_)) => Shared::Cobrowse(None),
        Some(pb::event::Kind::FunctionInvocations(_)) => Shared::Functions(0),
        _ => Shared::Interaction(None),
    }
}

/// What a claim that changes nothing still emits.
fn emission_of(claim: &Claim) -> Emission<'_> {
    Emission {
        tenant: &claim.tenant,
        entry: claim.entry,
        event: claim.event,
        payload: claim.payload,
        prior: &claim.prior,
        at: claim.at,
        records: &claim.records,
        ledger: &claim.ledger,
        event_expires: claim.event_expires,
    }
}

/// Where a claim ended ([`Daybook::settle`]).
enum Settled {
    /// The store applied it: the entry moved.
    Applied(Box<Claim>),
    /// The event changes nothing at the store's current value (`before`).
    Unchanged(Box<Claim>),
    /// The store already knows the event id: its payload and what it met.
    Seen { payload: u64, prior: Vec<u8> },
    /// Answered without the store (refused when rated again).
    Done(Box<Result<Outcome, Refusal>>),
}

use super::store::Decided;

impl Daybook {
    fn shared(&self) -> &SharedState {
        self.shared.as_ref().expect("redis mode")
    }

    /// Whether replicas share state through a store.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Events not yet known to be in the shared store, and whether decisions are made
    /// without it (degraded mode). `None` in embedded mode.
    pub fn shared_status(&self) -> Option<(usize, bool)> {
        self.shared.as_ref().map(|s| (s.pending(), s.degraded()))
    }

    /// Rates one event under the shared store. Returns the result and the journal
    /// position the answer must wait for.
    pub async fn ingest_shared(&self, event: pb::Event) -> (Result<Outcome, Refusal>, u64) {
        let (mut result, mut wait) = self.decide(&event).await;
        // A tenant another replica created a moment ago: learn it and rate again.
        if result.as_ref().is_err_and(|r| r.code == Code::NotFound)
            && self.refresh_tenant(&event.tenant_id).await.unwrap_or(false)
        {
            (result, wait) = self.decide(&event).await;
        }
        // A platform user first seen here (PL-1) reaches the store's set before the answer,
        // so that every replica's statement counts it at once. One that does not (the
        // store is away) is kept and sent by the reconciler.
        if self.engine().has_new_users() {
            self.ship_users().await;
        }
        (result, wait)
    }

    /// Reserves the event's id in the store (T-2 across replicas), then rates it. A reuse
    /// of an id another replica accepted is refused; a retry of one is claimed even if
    /// it changes nothing here, so that the store answers its original outcome, marked
    /// as a retry. Without the store, the event is decided here and reserved later, by
    /// the reconciler.
    async fn decide(&self, event: &pb::Event) -> Decided {
        if self.engine().follows_log(&event.tenant_id) {
            return self.ingest_logged(event).await;
        }
        let now = self.now();
        // Validated once: everything after rates the admitted event.
        let admitted = match self.engine().admit(RawEvent::from(event.clone()), Some(now)) {
            Ok(admitted) => admitted,
            Err(refusal) => return (Err(refusal), 0),
        };
        let mut elsewhere = false;
        if let Some(id) = &admitted.identity
            && !id.known_here
        {
            match self.reserve(&event.tenant_id, id).await {
                Ok(Reservation::New) => {}
                Ok(Reservation::Same) => elsewhere = true,
                Ok(Reservation::Conflict) => return (Err(Engine::conflict(&event.event_id)), 0),
                Err(_) => return self.decide_degraded(event, &admitted, now),
            }
        }
        let (mut result, wait) = self.decide_reserved(event, &admitted, now, elsewhere).await;
        if elsewhere && let Ok(outcome) = &mut result {
            outcome.retry = true;
        }
        (result, wait)
    }

    /// Reserves an event id in the store, timed and noted.
    async fn reserve(&self, tenant: &str, id: &Identity) -> Result<Reservation, StoreError> {
        let shared = self.shared();
        let started = std::time::Instant::now();
        let answer = shared.store.reserve(tenant, id.event, id.payload, id.remember_until).await;
        shared.note(&answer);
        let outcome = match &answer {
            Ok(Reservation::New) => "ok",
            Ok(Reservation::Same) => "seen",
            Ok(Reservation::Conflict) => "conflict",
            Err(_) => "error",
        };
        self.telemetry().redis_call("reserve", outcome, started.elapsed());
        answer
    }

    /// Rates an event whose id is reserved: the near cache first, then a claim if it
    /// would move its shared entry (or `ask_store`: the store may remember it).
    async fn decide_reserved(&self, event: &pb::Event, admitted: &Admitted, now: Instant, ask_store: bool) -> Decided {
        let shared = self.shared();

        // The near cache: a repeat is committed and journaled here. An event that would
        // change its shared entry needs its stripe's claim lane. A free lane is taken
        // before rating, so that a first touch is rated once; a busy one is waited for
        // only by an event that claims, which then looks again (a claim ahead of it in
        // the lane may have changed the entry).
        let stripe_index = super::core::stripe_of(event);
        let lane_of = &shared.lanes[stripe_index];
        let mut lane = lane_of.try_lock().ok();
        let claim = loop {
            let stripe = self.stripe_at(stripe_index);
            let mut records = Vec::new();
            let near = self.engine().ingest_shared(admitted, Some(now), ask_store, &mut records);
            match near.rated {
                Rated::Claim(claim) if lane.is_some() => break claim,
                Rated::Claim(_) => {
                    drop(stripe);
                    lane = Some(lane_of.lock().await);
                }
                Rated::Void(void) => {
                    drop(stripe);
                    drop(lane);
                    return self.ingest_shared_void(event, *void, ask_store).await;
                }
                Rated::Done(result) => {
                    let emit = !records.is_empty() && result.as_ref().is_ok_and(|o| !o.retry)
                        || result.as_ref().is_err_and(|r| r.code == Code::FailedPrecondition && !records.is_empty());
                    let journaled = if emit { records.clone() } else { std::mem::take(&mut records) };
                    let (seq, wait) = self.journal_decided(event, &result, now, None, emit, journaled);
                    drop(stripe);
                    drop(lane);
                    if emit && let Some((event_fp, payload, at)) = near.event {
                        // Records of an event that changed nothing shared (a pass-through
                        // charge, a dead letter): emitted once, by whichever replica first.
                        let e = Emission {
                            tenant: &event.tenant_id,
                            entry: near.entry.unwrap_or(event_fp),
                            event: event_fp,
                            payload,
                            prior: &near.prior,
                            at,
                            records: &records,
                            ledger: &near.ledger,
                            event_expires: at.max(now) + EMITTED_EVENT_MEMORY,
                        };
                        self.emit_pending(seq, &e).await;
                    }
                    return (result, wait);
                }
            }
        };

        match self.settle(event, admitted, Some(now), claim).await {
            Ok(Settled::Applied(claim) | Settled::Unchanged(claim)) => self.commit(event, admitted, now, &claim).await,
            Ok(Settled::Done(result)) => (*result, 0),
            Ok(Settled::Seen { payload, prior }) => match self.engine().answer_remembered(admitted, payload, &prior) {
                Some(result) => (result, 0),
                None => self.decide_degraded(event, admitted, now),
            },
            Err(_) => self.decide_degraded(event, admitted, now),
        }
    }

    /// Claims until the store applies the claim, or the event turns out to change nothing
    /// at the store's current value, or the store already knows the event. Each stale
    /// answer re-rates the event against the value the store holds.
    async fn settle(
        &self,
        event: &pb::Event,
        admitted: &Admitted,
        now: Option<Instant>,
        mut claim: Box<Claim>,
    ) -> Result<Settled, StoreError> {
        let shared = self.shared();
        for _ in 0..MAX_CLAIM_TRIES {
            if claim.changes_nothing() {
                return Ok(Settled::Unchanged(claim));
            }
            let started = std::time::Instant::now();
            let answer = shared.store.claim(&claim).await;
            let outcome = match &answer {
                Ok(ClaimAnswer::Applied) => "ok",
                Ok(ClaimAnswer::Stale(_)) => "stale",
                Ok(ClaimAnswer::Voids(_)) => "voids",
                Ok(ClaimAnswer::Seen { .. }) => "seen",
                Err(_) => "error",
            };
            self.telemetry().redis_call("claim", outcome, started.elapsed());
            shared.note(&answer);
            let answer = answer?;
            if let ClaimAnswer::Voids(_) = &answer {
                // A void the event was not rated knowing: learn the tenant's voids, then
                // rate it again against the entry's value.
                self.refresh_voids(&event.tenant_id).await?;
            }
            match answer {
                ClaimAnswer::Applied => return Ok(Settled::Applied(claim)),
                ClaimAnswer::Stale(current) | ClaimAnswer::Voids(current) => {
                    let value = self
                        .decode(event, &claim, &current)
                        .ok_or_else(|| StoreError::Unexpected("an unreadable shared entry".into()))?;
                    match self.engine().probe(admitted, now, value) {
                        Rated::Claim(mut next) => {
                            // A retry of an event the store may remember stays one: the
                            // store answers it with what it met (T-2), however often the
                            // entry moved meanwhile.
                            next.ask_store |= claim.ask_store;
                            claim = next;
                        }
                        Rated::Done(result) => return Ok(Settled::Done(Box::new(result))),
                        Rated::Void(_) => return Err(StoreError::Unexpected("a void claims nothing".into())),
                    }
                }
                ClaimAnswer::Seen { payload, prior } => return Ok(Settled::Seen { payload, prior }),
            }
        }
        Err(StoreError::Unexpected("the entry kept moving; will try again".into()))
    }

    /// Commits an event rated against the value its entry held in the store before it: its
    /// claim was applied (its records are in the store already), or it changes nothing
    /// there (what it emitted, a pass-through charge, is sent now).
    async fn commit(&self, event: &pb::Event, admitted: &Admitted, now: Instant, claim: &Claim) -> Decided {
        let (result, emit_seq, wait) = {
            let _stripe = self.stripe(event);
            let mut records = Vec::new();
            // Committed as rated for the claim; rated again only if this replica accepted
            // the same id meanwhile (then it is answered as the retry it is).
            let result = match self.engine().commit_claim(claim, &mut records) {
                Some(result) => result,
                None => self.engine().commit_claimed(admitted, Some(now), claim.before.clone(), &mut records),
            };
            let emit = claim.changes_nothing() && !claim.records.is_empty() && result.as_ref().is_ok_and(|o| !o.retry);
            let claimed = Some(claim.before.encode_tagged());
            let (seq, wait) = self.journal_decided(event, &result, now, claimed, emit, records);
            (result, emit.then_some(seq), wait)
        };
        if let Some(seq) = emit_seq {
            self.emit_pending(seq, &emission_of(claim)).await;
        }
        (result, wait)
    }

    /// Emits a journaled event's records to the store; on success it no longer waits.
    async fn emit_pending(&self, seq: u64, emission: &Emission<'_>) {
        if self.emit(emission).await.is_ok() {
            self.shared().pending.lock().unpoisoned().remove(&seq);
        }
    }

    /// Emits records of an event that changed nothing shared, timed and noted.
    async fn emit(&self, emission: &Emission<'_>) -> Result<bool, StoreError> {
        let shared = self.shared();
        let started = std::time::Instant::now();
        let sent = shared.store.emit(emission).await;
        shared.note(&sent);
        let outcome = if sent.is_ok() { "ok" } else { "error" };
        self.telemetry().redis_call("emit", outcome, started.elapsed());
        sent
    }

    /// Decides an event from this replica's state alone (Redis unreachable) and keeps it
    /// pending until the reconciler has sent it.
    fn decide_degraded(&self, event: &pb::Event, admitted: &Admitted, now: Instant) -> Decided {
        if let Some(pb::event::Kind::Void(_)) = event.kind {
            // A void is accepted once the store holds it, or not at all: decided here, it
            // would select nothing another replica holds.
            let reason = "a void is published to the shared store, which did not answer; retry";
            return (Err(Refusal::new(Code::Unavailable, "COR-2", reason)), 0);
        }
        let _stripe = self.stripe(event);
        let mut records = Vec::new();
        let result = self.engine().ingest_admitted(admitted, Some(now), &mut records);
        let (_, wait) = self.journal_decided(event, &result, now, None, true, records);
        (result, wait)
    }

    /// Journals a decided event (called under its stripe); a `pending` one is also queued
    /// for the reconciler. Returns its position and the position to wait for.
    fn journal_decided(
        &self,
        event: &pb::Event,
        result: &Result<Outcome, Refusal>,
        now: Instant,
        claimed: Option<Vec<u8>>,
        pending: bool,
        records: Vec<Record>,
    ) -> (u64, u64) {
        let kind = match result {
            Ok(outcome) if !outcome.retry => Some(EntryKind::Event(EventEntry {
                event: event.encode_to_vec(),
                now_nanos: now.timestamp_nanos_opt(),
                claimed,
                pending,
            })),
            Err(refusal) if refusal.code == Code::FailedPrecondition && !records.is_empty() => {
                // A dead letter: journaled as an event, so that its emission is retried.
                Some(EntryKind::Event(EventEntry {
                    event: event.encode_to_vec(),
                    now_nanos: now.timestamp_nanos_opt(),
                    claimed: None,
                    pending,
                }))
            }
            _ => None,
        };
        match kind {
            Some(kind) => {
                let seq = self.append(kind, records);
                if pending {
                    let p = Pending { event: event.clone(), now: Some(now) };
                    self.shared().pending.lock().unpoisoned().insert(seq, p);
                }
                (seq, seq)
            }
            None if result.is_ok() => (0, self.journal().appended()),
            None => (0, 0),
        }
    }

    fn decode(&self, event: &pb::Event, claim: &Claim, bytes: &[u8]) -> Option<Shared> {
        let tenant = self.engine().tenant(&event.tenant_id)?;
        Shared::decode(claim.place, bytes, tenant.index, api::cobrowse_session(event))
    }

    /// Sends pending events to the store, oldest first, until one fails. Returns how many
    /// were sent.
    pub async fn reconcile(&self) -> usize {
        let Some(shared) = &self.shared else { return 0 };
        let mut sent = 0;
        loop {
            let next = shared.pending.lock().unpoisoned().iter().next().map(|(s, p)| (*s, p.clone()));
            let Some((seq, pending)) = next else { break };
            let result = self.resend(&pending).await;
            shared.note(&result);
            if result.is_err() {
                break;
            }
            shared.pending.lock().unpoisoned().remove(&seq);
            sent += 1;
        }
        sent
    }

    /// Sends one event decided without the store: rated against the store's value of its
    /// entry and claimed, or its records emitted. Idempotent: an event the store already
    /// has is answered as seen.
    async fn resend(&self, pending: &Pending) -> Result<(), StoreError> {
        // Refused now as it was then (its tenant is gone, say): nothing to send.
        let Ok(admitted) = self.engine().admit(RawEvent::from(pending.event.clone()), pending.now) else {
            return Ok(());
        };
        // Decided without the store, so reserved only now: if another replica accepted
        // the id with another payload meanwhile, the first stands and this one's
        // effects are not shipped (its answer was provisional, as degraded answers are).
        if let Some(id) = &admitted.identity
            && self.reserve(&pending.event.tenant_id, id).await? == Reservation::Conflict
        {
            tracing::warn!(
                "event `{}` of tenant `{}`, accepted while redis was away, reuses an id another replica accepted \
                 with another payload; the first stands and this one is not shipped",
                pending.event.event_id,
                pending.event.tenant_id
            );
            return Ok(());
        }
        let claim = match self.engine().probe(&admitted, pending.now, absent_for(&pending.event)) {
            Rated::Claim(claim) => claim,
            // Refused now as it was then (its tenant is gone, say): nothing to send. (Voids
            // are never decided without the store.)
            Rated::Done(_) | Rated::Void(_) => return Ok(()),
        };
        match self.settle(&pending.event, &admitted, pending.now, claim).await? {
            Settled::Applied(claim) => self.engine().absorb(&claim),
            Settled::Unchanged(claim) if !claim.records.is_empty() => {
                self.emit(&emission_of(&claim)).await?;
            }
            Settled::Unchanged(_) | Settled::Seen { .. } | Settled::Done(_) => {}
        }
        Ok(())
    }

    /// Sends the platform users first seen here to the store's sets (PL-1); those that do
    /// not reach it are kept for the next call.
    pub async fn ship_users(&self) {
        let Some(shared) = &self.shared else { return };
        let users = self.engine().take_new_users();
        let mut left = Vec::new();
        for (tenant, month, sender) in users {
            if !left.is_empty() || shared.store.add_user(&tenant, month, sender).await.is_err() {
                left.push((tenant, month, sender));
            }
        }
        if !left.is_empty() {
            self.engine().requeue_new_users(left);
        }
    }

    /// Journals how far the store has every shared effect, when that moved.
    pub fn note_shipped(&self) {
        let Some(shared) = &self.shared else { return };
        let _all_journal_order = self.journal().appended();
        let first_pending = shared.pending.lock().unpoisoned().keys().next().copied();
        let upto = match first_pending {
            Some(seq) => seq - 1,
            None => self.journal().appended(),
        };
        if upto > shared.shipped.load(Ordering::Acquire) {
            shared.shipped.store(upto, Ordering::Release);
            self.append(EntryKind::Shipped(upto), Vec::new());
        }
    }

    /// The tenant's usage from the shared store: every replica's events, each once.
    pub async fn shared_usage(
        &self,
        tenant: &str,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
    ) -> Result<Totals, StoreError> {
        self.shared().store.usage(tenant, from, to).await
    }

    /// Each local date's usage, from the shared store.
    pub async fn shared_usage_by_day(
        &self,
        tenant: &str,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<(chrono::NaiveDate, Totals)>, StoreError> {
        self.shared().store.usage_by_day(tenant, from, to).await
    }
}

impl Daybook {
    /// A statement from the shared store (PL-1, PL-2): every replica's events, each once.
    pub async fn shared_statement(&self, tenant_id: &str, period: &StatementPeriod) -> Result<Statement, StoreError> {
        let Some(tenant) = self.engine().tenant(tenant_id) else {
            return Err(StoreError::Unexpected(format!("unknown tenant `{tenant_id}`")));
        };
        let (ledger, users) = self.shared_ledger(tenant_id).await?;
        Ok(ledger::statement(&tenant, &ledger, period, |m| users.get(&m).copied().unwrap_or(0)))
    }

    /// Every statement with usage, from the shared store.
    pub async fn shared_statements(&self, tenant_id: &str) -> Result<Vec<Statement>, StoreError> {
        let Some(tenant) = self.engine().tenant(tenant_id) else {
            return Err(StoreError::Unexpected(format!("unknown tenant `{tenant_id}`")));
        };
        let (ledger, users) = self.shared_ledger(tenant_id).await?;
        let periods = ledger::statement_periods(&tenant, &ledger);
        Ok(periods
            .iter()
            .map(|p| ledger::statement(&tenant, &ledger, p, |m| users.get(&m).copied().unwrap_or(0)))
            .collect())
    }

    /// The tenant's whole shared ledger with its alerts judged, and its platform users
    /// per month. This replica's own new platform users are sent first, so that it reads
    /// what it wrote.
    async fn shared_ledger(
        &self,
        tenant_id: &str,
    ) -> Result<(ledger::Ledger, BTreeMap<chrono::NaiveDate, u64>), StoreError> {
        self.ship_users().await;
        let store = &self.shared().store;
        let mut ledger = store.ledger(tenant_id, None, None).await?;
        self.engine().judge_alerts(tenant_id, &mut ledger);
        let mut users = BTreeMap::new();
        for month in ledger.months().collect::<Vec<_>>() {
            users.insert(month, store.users(tenant_id, month).await?);
        }
        Ok((ledger, users))
    }
}

impl Daybook {
    /// Judges the usage alerts (PL-3) of every tenant with a plan on the shared aggregates
    /// and emits the records of those not yet emitted, once across replicas (an alert's
    /// id is the same wherever it is judged). Alerts need every replica's usage, so they
    /// are judged here, every [`ALERT_JUDGING`], not as an event is rated.
    pub async fn emit_shared_alerts(&self) -> Result<(), StoreError> {
        let store = &self.shared().store;
        for id in self.engine().tenant_ids() {
            // A tenant that follows its log raises its alerts as its events are rated.
            if self.engine().tenant(&id).is_none_or(|t| t.plan().is_none()) || self.engine().follows_log(&id) {
                continue;
            }
            let mut ledger = store.ledger(&id, None, None).await?;
            for record in self.engine().judge_alerts(&id, &mut ledger) {
                let RecordBody::Alert(alert) = &record.body else { continue };
                let fp = Fp(
                    u64::from_le_bytes(alert.id.0[..8].try_into().expect("8 bytes")),
                    u64::from_le_bytes(alert.id.0[8..].try_into().expect("8 bytes")),
                );
                // Filed under its period's first day, so that every judging finds it.
                let start = StatementPeriod::parse(&alert.period).map_or(chrono::NaiveDate::MIN, |p| match p {
                    StatementPeriod::Month(m) | StatementPeriod::Term(m, _) => m,
                });
                let at = start.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
                let e = Emission {
                    tenant: &id,
                    entry: fp,
                    event: fp,
                    payload: 0,
                    prior: &[],
                    at,
                    records: std::slice::from_ref(&record),
                    ledger: &[],
                    event_expires: self.now().max(at) + chrono::TimeDelta::days(800),
                };
                if store.emit(&e).await? {
                    // This replica emitted it: its own watch stream and sink carry it too.
                    self.append(EntryKind::SharedRecords(true), vec![record]);
                }
            }
        }
        Ok(())
    }
}

impl Daybook {
    /// Warms the near cache from the store: every tenant's interactions of the current
    /// and the previous period, and its Functions month. A replica that starts (or
    /// restarts) then answers the relationships other replicas saw today without a round
    /// trip each, and keeps answering them from memory if Redis goes away. Returns how
    /// many entries it loaded.
    pub async fn warm_from_store(&self) -> Result<usize, StoreError> {
        let store = &self.shared().store;
        let now = self.now();
        let mut loaded = 0;
        for id in self.engine().tenant_ids() {
            let Some(tenant) = self.engine().tenant(&id) else { continue };
            let mut places = vec![Place::Interaction { period_start: tenant.period(now).start_date }];
            let previous = tenant.period(tenant.period(now).start() - chrono::TimeDelta::seconds(1)).start_date;
            places.push(Place::Interaction { period_start: previous });
            let month = tenant.period_in(crate::rating::meter::Window::LocalMonth, now).start_date;
            places.push(Place::Functions { month_start: month });
            for place in places {
                for shard in 0..crate::store::keys::SHARDS {
                    let keys = crate::store::keys::ShardKeys::new(&id, shard);
                    for (fp, bytes) in store.entries(&keys, place).await? {
                        if let Some(value) = Shared::decode(place, &bytes, tenant.index, "") {
                            self.engine().warm(&id, place, fp, &value);
                            loaded += 1;
                        }
                    }
                }
            }
        }
        Ok(loaded)
    }
}

impl Daybook {
    /// A page of the tenant's interactions from the shared store's record streams, shard
    /// by shard in stream order, after (shard, stream entry), and where the next page
    /// starts (`None`: no more).
    pub async fn shared_interactions(
        &self,
        tenant: &str,
        page_size: usize,
        after: Option<(u32, String)>,
    ) -> Result<(Vec<pb::Interaction>, Option<(u32, String)>), StoreError> {
        let (mut shard, mut after) = match after {
            Some((shard, entry)) => (shard, Some(entry)),
            None => (0, None),
        };
        let mut out = Vec::new();
        // Where this shard's interactions start in `out`: voids that selected them after
        // they started are marked shard by shard.
        let mut shard_start = 0;
        while shard < crate::store::keys::SHARDS {
            let entries = self.stream_page(tenant, shard, after.as_deref()).await?;
            let Some((last, _)) = entries.last() else {
                self.mark_voided(tenant, shard, &mut out[shard_start..]).await?;
                shard_start = out.len();
                shard += 1;
                after = None;
                continue;
            };
            after = Some(last.clone());
            for (entry, record) in entries {
                let Some(pb::record::Body::Interaction(i)) = record.body else { continue };
                let Some(i) = self.as_it_stands(tenant, i) else { continue };
                out.push(i);
                if out.len() == page_size {
                    self.mark_voided(tenant, shard, &mut out[shard_start..]).await?;
                    return Ok((out, Some((shard, entry))));
                }
            }
        }
        Ok((out, None))
    }
}

/// How often alerts are judged on the shared aggregates.
const ALERT_JUDGING: Duration = Duration::from_secs(5);

/// How far ahead of now a settings change must take effect under a shared store: every
/// replica learns it (they poll every [`TENANT_POLL`]) before it applies to any event.
pub const TENANT_LEAD: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// How often replicas read the shared tenant definitions.
const TENANT_POLL: Duration = Duration::from_secs(1);

/// How often a replica follows every tenant log it does not serve events of right now
/// (`logged`): closes periods that are due, and keeps a quiet replica's books current.
const LOG_TENDING: Duration = Duration::from_secs(1);

/// Runs the reconciler until shutdown: pending events are sent as soon as the store
/// answers, and the shipped position is journaled.
pub async fn reconciler(daybook: Arc<Daybook>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_poll = tokio::time::Instant::now();
    let mut last_judging = tokio::time::Instant::now();
    let mut last_tending = tokio::time::Instant::now();
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = daybook.stopped() => break,
        }
        // A round runs as its own task: a bug that panics in one round is logged, and
        // what it was sending stays pending, visible in /ready and the metrics.
        let round = tokio::spawn({
            let daybook = daybook.clone();
            let poll = last_poll.elapsed() >= TENANT_POLL;
            let judge = last_judging.elapsed() >= ALERT_JUDGING;
            let tend = last_tending.elapsed() >= LOG_TENDING;
            async move {
                daybook.reconcile().await;
                if tend {
                    daybook.tend_logs().await;
                }
                daybook.ship_users().await;
                daybook.note_shipped();
                // A store that does not answer shows as degraded mode; both are tried
                // again on a later round.
                if poll {
                    let _ = daybook.poll_tenants().await;
                }
                if judge {
                    let _ = daybook.emit_shared_alerts().await;
                }
            }
        });
        if last_poll.elapsed() >= TENANT_POLL {
            last_poll = tokio::time::Instant::now();
        }
        if last_judging.elapsed() >= ALERT_JUDGING {
            last_judging = tokio::time::Instant::now();
        }
        if last_tending.elapsed() >= LOG_TENDING {
            last_tending = tokio::time::Instant::now();
        }
        if let Err(e) = round.await {
            tracing::error!("a reconciliation round failed: {e}");
        }
    }
    daybook.reconcile().await;
    daybook.ship_users().await;
    // A threshold reached since the last judging is emitted now, by this replica, rather
    // than by whichever replica judges next.
    let _ = daybook.emit_shared_alerts().await;
    daybook.note_shipped();
}
