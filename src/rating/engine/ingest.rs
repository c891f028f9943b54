//! Ingest: an event from its wire form to its outcome. Validation (T-6), idempotency
//! (T-2), time checks (T-3, T-4), and the dispatch to the rules by event kind, in each
//! of the rating modes (live, retry, and the shared store's guarded, probe and claimed).

use super::*;
use crate::rating::event::FieldViolation;
use crate::rating::ledger::LimitReached;
use crate::rating::money::MAX_INVOCATIONS_PER_MONTH;

impl Engine {
    /// Rates one event. `now` is the arrival instant that lateness (T-3) and clock skew
    /// (T-4) are judged against; `None` judges neither. Emitted records are appended to
    /// `records`, including the dead letter of an event refused as too late.
    pub fn ingest(&self, raw: RawEvent, now: Option<Instant>, records: &mut Vec<Record>) -> Result<Outcome, Refusal> {
        self.ingest_inner(raw, now, None, Mode::Live, records).done()
    }

    /// The refusal of an event id already used with another payload (T-2).
    pub fn conflict(event_id: &str) -> Refusal {
        Refusal::new(
            Code::AlreadyExists,
            "T-2",
            format!("event id `{event_id}` was already used with a different payload; the first stands"),
        )
    }

    /// Folds a shared entry read from the store into the near cache (a warm start): its
    /// value joins what this replica holds.
    pub fn warm(&self, tenant_id: &str, place: Place, entry: Fp, value: &Shared) {
        let Some(tenant) = self.tenant(tenant_id) else { return };
        match (place, value) {
            (Place::Interaction { .. }, Shared::Interaction(Some(e))) => {
                let e = InteractionEntry { tenant: tenant.index, ..*e };
                self.interactions.entry(entry.into()).and_modify(|mine| *mine = mine.join(e)).or_insert(e);
            }
            (Place::Functions { month_start }, Shared::Functions(total)) => {
                let mut mine = self.functions.entry(entry).or_insert_with(|| FunctionsEntry {
                    tenant: tenant.index,
                    month_start: time::date_to_days(month_start),
                    counts: HashMap::new(),
                    shared_total: 0,
                });
                mine.shared_total = mine.shared_total.max(*total);
            }
            _ => {}
        }
    }

    /// Folds a claim the store applied into this replica's state: its entry's new value,
    /// and what its event met (replacing what the event was answered against when it was
    /// decided without the store, in degraded mode).
    pub fn absorb(&self, claim: &Claim) {
        let Some(tenant) = self.tenant(&claim.tenant) else { return };
        self.absorb_entry(&tenant, claim);
        if let Some(outcome) = persist::decode_stored(&claim.prior, tenant.index) {
            let remembered =
                EventEntry { payload: claim.payload, tenant: tenant.index, day: utc_day(claim.at), outcome };
            self.events.insert(claim.event, remembered);
        }
    }

    /// Commits an event whose claim the store applied (or found changing nothing), as it
    /// was rated for the claim: its entry's value after it, its set insertions and
    /// aggregate entries, what it met, its records and outcome. One rating per event.
    /// `None` when this replica accepted the same event id meanwhile: rate it again
    /// ([`Engine::ingest_claimed`]), which answers it as the retry it is.
    pub fn commit_claim(&self, claim: &Claim, records: &mut Vec<Record>) -> Option<Result<Outcome, Refusal>> {
        let Some(slot) = self.slot(&claim.tenant) else {
            return Some(Err(unknown_tenant(&claim.tenant)));
        };
        let tenant = slot.config();
        let MapEntry::Vacant(vacant) = self.events.entry(claim.event) else { return None };
        self.absorb_entry(&tenant, claim);
        let mut effects = Effects {
            mode: Mode::Claimed(claim.before.clone()),
            user: claim.local.user,
            pass_through_entry: claim.local.pass_through,
            ledger: claim.ledger.clone(),
            ..Effects::default()
        };
        self.commit_sets(&tenant, &mut effects);
        self.commit_ledger(&tenant, &slot, &claim.outcome.event_id, None, &mut effects);
        // What the store remembers for its retries is what this replica remembers too.
        let outcome = persist::decode_stored(&claim.prior, tenant.index)?;
        vacant.insert(EventEntry { payload: claim.payload, tenant: tenant.index, day: utc_day(claim.at), outcome });
        records.extend(claim.records.iter().cloned());
        Some(Ok(claim.outcome.clone()))
    }

    /// Folds a claim's entry value after its event into the near cache.
    fn absorb_entry(&self, tenant: &Tenant, claim: &Claim) {
        match (&claim.before, &claim.after) {
            (_, Shared::Interaction(Some(e))) => {
                let e = InteractionEntry { tenant: tenant.index, ..*e };
                self.interactions.entry(claim.entry.into()).and_modify(|mine| *mine = mine.join(e)).or_insert(e);
            }
            (_, Shared::Cobrowse(Some(c))) => {
                let c = CobrowseEntry { tenant: tenant.index, ..c.clone() };
                let mut entry = self.cobrowse.entry(claim.entry).or_insert_with(|| c.clone());
                *entry = entry.clone().join(c);
            }
            (Shared::Functions(before), Shared::Functions(after)) if after > before => {
                let Place::Functions { month_start } = claim.place else { return };
                let mut entry = self.functions.entry(claim.entry).or_insert_with(|| FunctionsEntry {
                    tenant: tenant.index,
                    month_start: time::date_to_days(month_start),
                    counts: HashMap::new(),
                    shared_total: 0,
                });
                entry.counts.insert(claim.event, after - before);
                entry.shared_total = entry.shared_total.max(*after);
            }
            _ => {}
        }
    }

    /// Commits an event rated against `value`, the value its shared entry held in the
    /// store before it (its claim succeeded, or it changed nothing). On replay, `alerts`
    /// restores the alerts it raised, as in [`Engine::replay`].
    pub fn ingest_claimed(
        &self,
        raw: RawEvent,
        now: Option<Instant>,
        value: Shared,
        alerts: Option<Vec<Alert>>,
        records: &mut Vec<Record>,
    ) -> Result<Outcome, Refusal> {
        self.ingest_inner(raw, now, alerts, Mode::Claimed(value), records).done()
    }

    /// Rates a journaled event again on replay. Which event crosses an alert threshold
    /// depends on the order of events of other keys, which replay need not repeat: the
    /// alerts the event raised when it was first rated (`alerts`, from its journaled
    /// records) are restored instead of judged again. Its records are not built: they were
    /// emitted when the event was first rated.
    pub fn replay(
        &self,
        raw: RawEvent,
        now: Option<Instant>,
        alerts: Vec<Alert>,
        records: &mut Vec<Record>,
    ) -> Result<Outcome, Refusal> {
        self.ingest_inner(raw, now, Some(alerts), Mode::Live, records).done()
    }

    pub(super) fn ingest_inner(
        &self,
        raw: RawEvent,
        now: Option<Instant>,
        replayed_alerts: Option<Vec<Alert>>,
        mode: Mode,
        records: &mut Vec<Record>,
    ) -> Rated {
        self.ingest_inner_at(raw, now, replayed_alerts, mode, records, &mut NearCache::default())
    }

    /// [`Engine::ingest_inner`], also telling which shared entry the event touched.
    pub(super) fn ingest_inner_at(
        &self,
        raw: RawEvent,
        now: Option<Instant>,
        replayed_alerts: Option<Vec<Alert>>,
        mode: Mode,
        records: &mut Vec<Record>,
        out: &mut NearCache,
    ) -> Rated {
        // Read guards, held for this one event: no reference counting on the hot path, and a
        // settings change waits for in-flight events instead of racing them.
        let tenants = self.tenants.read().unpoisoned();
        let Some(slot) = tenants.get(raw.tenant_id.as_str()) else {
            return Rated::Done(Err(unknown_tenant(&raw.tenant_id)));
        };
        if let RawBody::Void(_) = raw.body {
            return self.void_in_mode(slot, raw, now, mode, records, out);
        }
        let config = slot.config.read().unpoisoned();
        let tenant: &Tenant = &config;
        let event = match event::validate(raw, tenant) {
            Ok(event) => event,
            Err(violations) => return Rated::Done(Err(Refusal::invalid(violations))),
        };
        let event_fp = self.fingerprinter.start(domain::EVENT).str(&tenant.id).str(&event.event_id).finish();
        let payload = event.payload_fp(&self.fingerprinter).0;
        self.rate_valid((slot, tenant), (event, event_fp, payload), now, replayed_alerts, mode, records, out)
    }

    /// Rates an event validated against its tenant (T-6): idempotency (T-2), time and
    /// limits (T-3, T-4, T-6), the rules, then a commit or a claim.
    #[allow(clippy::too_many_arguments, reason = "ingest_inner_at's arguments, the event validated")]
    pub(super) fn rate_valid(
        &self,
        (slot, tenant): (&TenantSlot, &Tenant),
        (event, event_fp, payload): (Event, Fp, u64),
        now: Option<Instant>,
        replayed_alerts: Option<Vec<Alert>>,
        mode: Mode,
        records: &mut Vec<Record>,
        out: &mut NearCache,
    ) -> Rated {
        out.event = Some((event_fp, payload, event.at));

        // A probe asks what the event does, whether or not this replica knows it: it is
        // how an event decided in degraded mode is sent to the store later.
        let vacant = match mode {
            Mode::Probe(_) => None,
            _ => match self.events.entry(event_fp) {
                MapEntry::Occupied(seen) => {
                    let seen = seen.get().clone();
                    return Rated::Done(self.answer_retry(tenant, event, event_fp, seen, payload));
                }
                MapEntry::Vacant(vacant) => Some(vacant),
            },
        };

        // The settings in force at the event's instant, looked up once for all its rules.
        let settings = tenant.settings_at(event.at);
        let closed_before = slot.closed_before.load(Ordering::Acquire);
        if let Some(now) = now
            && let Err(refusal) = self.check_time(tenant, settings, &event, now, closed_before)
        {
            if refusal.code == Code::FailedPrecondition && mode.commits() {
                records.push(dead_letter(tenant, event, &refusal));
            }
            return Rated::Done(Err(refusal));
        }

        if let Err(refusal) = self.check_limits(tenant, settings, slot, &event) {
            return Rated::Done(Err(refusal));
        }

        let mut effects = Self::effects(slot, mode, now, closed_before);
        // A replayed event's records were emitted when it was first rated.
        effects.silent = replayed_alerts.is_some();
        let disposition = self.rate((tenant, settings), &event, event_fp, &mut effects);

        out.entry = effects.shared.as_ref().map(|t| t.entry);
        // The store may remember the event (its id was reserved by another call): the
        // store answers it.
        let ask_store = matches!(effects.mode, Mode::Guarded) && out.ask_store;
        let wants_claim = match (&effects.mode, &effects.shared) {
            (Mode::Probe(_), _) => true,
            (Mode::Guarded, Some(touch)) => touch.before != touch.after || ask_store,
            _ => false,
        };
        if wants_claim {
            drop(vacant);
            return Rated::Claim(Box::new(Self::claim(
                (tenant, settings),
                event,
                event_fp,
                payload,
                disposition,
                effects,
                ask_store,
            )));
        }
        self.commit_sets(tenant, &mut effects);
        self.commit_catalogue(slot, &mut effects);

        // What the shared store needs to emit the records of an event that changed
        // nothing shared (most events emit none: nothing to copy).
        let shares_records = matches!(effects.mode, Mode::Guarded) && !effects.records.is_empty();
        if shares_records {
            out.ledger.clone_from(&effects.ledger);
        }
        self.commit_ledger(tenant, slot, &event.event_id, replayed_alerts, &mut effects);

        let stored_prior = effects.prior.filter(|_| !effects.keep_whole);
        let mut emitted = std::mem::take(&mut effects.records);
        let outcome = effects.outcome(event.event_id, disposition);
        let stored = match stored_prior {
            Some(prior) => StoredOutcome::Prior(prior),
            None => StoredOutcome::Full(Arc::new(outcome.clone())),
        };
        if shares_records {
            out.prior = persist::encode_stored(&stored);
        }
        vacant.expect("only probes skip the events map, and they never commit").insert(EventEntry {
            payload,
            tenant: tenant.index,
            day: utc_day(event.at),
            outcome: stored,
        });
        records.append(&mut emitted);
        Rated::Done(Ok(outcome))
    }

    /// A correction takes its tenant alone (COR). Under a shared store, the server
    /// publishes it and withdraws what it selects (`shared_voids`).
    fn void_in_mode(
        &self,
        slot: &TenantSlot,
        raw: RawEvent,
        now: Option<Instant>,
        mode: Mode,
        records: &mut Vec<Record>,
        out: &mut NearCache,
    ) -> Rated {
        match mode {
            Mode::Live => Rated::Done(self.ingest_void(slot, raw, now, records)),
            _ => self.shared_void(slot, raw, now, records, out),
        }
    }

    /// What an event gathers while rated starts from its tenant's voids and catalogue.
    fn effects(slot: &TenantSlot, mode: Mode, now: Option<Instant>, closed_before: i64) -> Effects {
        let voids = slot.has_voids.load(Ordering::Acquire).then(|| slot.corrections.lock().unpoisoned().voids.clone());
        Effects {
            mode,
            now,
            closed_before: Some(closed_before),
            // A retry re-rated from its prior would not see the voids: keep it whole.
            keep_whole: voids.is_some(),
            voids,
            cataloguing: slot.cataloguing.load(Ordering::Acquire),
            ..Effects::default()
        }
    }

    /// The claim of an event that would move its shared entry (or that must ask the store):
    /// nothing is committed here until the store applies it.
    fn claim(
        (tenant, settings): (&Tenant, &Settings),
        event: Event,
        event_fp: Fp,
        payload: u64,
        disposition: Disposition,
        mut effects: Effects,
        ask_store: bool,
    ) -> Claim {
        // A probe of an event that touches no shared entry (a system message, say)
        // claims nothing: it only has records to emit, under its own fingerprint.
        let touch = match (effects.shared.take(), &effects.mode) {
            (Some(touch), _) => touch,
            (None, Mode::Probe(value)) => SharedTouch {
                place: Place::Cobrowse,
                entry: event_fp,
                before: value.clone(),
                after: value.clone(),
                expires: event.at + settings.lateness_horizon,
            },
            (None, _) => unreachable!("only probes claim without a shared touch"),
        };
        let event_expires = event.at + settings.lateness_horizon + TimeDelta::days(PERIOD_SLACK_DAYS + 1);
        let (at, event_id) = (event.at, event.event_id);
        let (records, ledger) = (std::mem::take(&mut effects.records), std::mem::take(&mut effects.ledger));
        let voids = effects.voids.as_ref().map_or(0, |v| v.len());
        let local = LocalCommit { user: effects.user.take(), pass_through: effects.pass_through_entry.take() };
        let met = effects.prior.unwrap_or(Prior::Interaction(None));
        let keep_whole = effects.keep_whole;
        let outcome = effects.outcome(event_id, disposition);
        // What the store answers this event's retries from, on any replica (T-2).
        let prior = persist::encode_stored(&match keep_whole {
            true => StoredOutcome::Full(Arc::new(outcome.clone())),
            false => StoredOutcome::Prior(met),
        });
        Claim {
            tenant: tenant.id.clone(),
            place: touch.place,
            entry: touch.entry,
            before: touch.before,
            after: touch.after,
            at,
            event: event_fp,
            payload,
            prior,
            outcome,
            records,
            ledger,
            entry_expires: touch.expires,
            event_expires,
            ask_store,
            voids,
            local,
        }
    }

    /// Commits a rated event's order-free set insertions: its platform user (PL-1) and
    /// its pass-through charge (CR-9).
    fn commit_sets(&self, tenant: &Tenant, effects: &mut Effects) {
        if let Some((key, month_start, sender)) = effects.user.take() {
            let new = self
                .users
                .entry(key)
                .or_insert_with(|| UsersEntry { tenant: tenant.index, month_start, senders: Default::default() })
                .senders
                .insert(sender);
            if new && self.collect_users.load(Ordering::Acquire) {
                let month = time::days_to_date(month_start);
                let mut waiting = self.new_users.lock().unpoisoned();
                waiting.push((tenant.id.clone(), month, sender));
                self.new_users_waiting.store(true, Ordering::Release);
            }
        }
        if let Some((fp, entry)) = effects.pass_through_entry.take() {
            self.pass_through.insert(fp, entry);
        }
    }

    /// Adds a committed event's aggregate entries to its tenant's ledger and judges the
    /// usage alerts they reach (PL-3), or restores those it raised when replayed.
    pub(super) fn commit_ledger(
        &self,
        tenant: &Tenant,
        slot: &TenantSlot,
        event_id: &str,
        replayed_alerts: Option<Vec<Alert>>,
        effects: &mut Effects,
    ) {
        if effects.ledger.is_empty() {
            return;
        }
        let mut ledger = slot.ledger.lock().unpoisoned();
        let mut dates: Vec<NaiveDate> = Vec::with_capacity(effects.ledger.len());
        for (date, entry) in effects.ledger.drain(..) {
            if ledger.add(date, entry) {
                slot.near_limit.store(true, Ordering::Release);
            }
            if !dates.contains(&date) {
                dates.push(date);
            }
        }
        match replayed_alerts {
            Some(alerts) => {
                for alert in alerts {
                    if !ledger.alert_raised(&alert.id) {
                        ledger.alerts.push(alert);
                    }
                }
            }
            // Under a shared store this replica's aggregates are only its own part:
            // thresholds are not judged on them (ARCHITECTURE.md, "Redis").
            None if !effects.mode.is_whole() => {}
            None => {
                for date in dates {
                    raise_alerts(tenant, &mut ledger, date, event_id, &mut effects.records);
                }
            }
        }
    }

    /// Refuses an event that would take one of its month's totals past its limit (T-6,
    /// `money::PERIOD_TOTAL_LIMIT`, `MAX_INVOCATIONS_PER_MONTH`), before it changes
    /// anything. Functions counts are judged exactly (a tenant's Functions events are
    /// rated one at a time); credits and pass-through only once a month is past half a
    /// limit, where events in flight beside this one can overshoot it by at most their own
    /// amounts, far within what a `Decimal` holds exactly.
    pub(super) fn check_limits(
        &self,
        tenant: &Tenant,
        settings: &Settings,
        slot: &TenantSlot,
        event: &Event,
    ) -> Result<(), Refusal> {
        let refuse = |field: &str, why: String| Err(Refusal::invalid(vec![FieldViolation::new(field, why)]));
        if let Body::FunctionInvocations { count } = event.body {
            let month = tenant.period_in(Window::LocalMonth, event.at);
            let key = self.functions_key(tenant, month.start_date);
            let total = self.functions.get(&key).map(|e| e.total().max(e.shared_total)).unwrap_or(0);
            if total.saturating_add(count) > MAX_INVOCATIONS_PER_MONTH {
                return refuse("function_invocations.count", "would take the month's invocations past 10^15".into());
            }
        }
        if !slot.near_limit.load(Ordering::Acquire) {
            return Ok(());
        }
        let date = time::local_date(event.at, settings.time_zone);
        let charge = match &event.body {
            Body::Message(m) => m.price.map(|p| (p.currency, credits::pass_through(p.amount))),
            _ => None,
        };
        let ledger = slot.ledger.lock().unpoisoned();
        match ledger.limit_reached(date, charge) {
            Some(LimitReached::PassThrough(currency)) => refuse(
                "message.provider_price.amount",
                format!("would take the month's pass-through in {currency} past its limit of 10^15"),
            ),
            Some(LimitReached::Credits) => {
                refuse(event.kind_field(), "the month's credits have reached their limit of 10^15".into())
            }
            None => Ok(()),
        }
    }

    /// Rates an event as `fx.mode` says: for real, again for a retry, or under a shared
    /// store.
    pub(super) fn rate(
        &self,
        (tenant, settings): (&Tenant, &Settings),
        event: &Event,
        event_fp: Fp,
        fx: &mut Effects,
    ) -> Disposition {
        let tie = event_fp.0 as u32;
        match &event.body {
            Body::Message(_) | Body::ConversationOpened(_) => {
                self.rate_conversational((tenant, settings), event, tie, event_fp, fx)
            }
            Body::Cobrowse(c) => self.rate_cobrowse((tenant, settings), event, c, tie, fx),
            Body::FunctionInvocations { count } => self.rate_functions((tenant, settings), event, *count, event_fp, fx),
            Body::Outcome(o) => self.rate_outcome(tenant, event, event_fp, o, fx),
            Body::Void(_) => unreachable!("voids are rated by ingest_void"),
        }
    }

    pub(super) fn answer_retry(
        &self,
        tenant: &Tenant,
        event: Event,
        event_fp: Fp,
        seen: EventEntry,
        payload: u64,
    ) -> Result<Outcome, Refusal> {
        if seen.payload != payload {
            return Err(Engine::conflict(&event.event_id));
        }
        let mut outcome = match seen.outcome {
            StoredOutcome::Full(outcome) => (*outcome).clone(),
            StoredOutcome::Prior(prior) => {
                let mut fx = Effects { mode: Mode::Retry(prior), silent: true, ..Effects::default() };
                let disposition = self.rate((tenant, tenant.settings_at(event.at)), &event, event_fp, &mut fx);
                fx.outcome(event.event_id, disposition)
            }
        };
        outcome.retry = true;
        Ok(outcome)
    }

    /// T-3 and T-4. `closed_before` is the tenant's pruning watermark (Unix ms).
    pub(super) fn check_time(
        &self,
        tenant: &Tenant,
        settings: &Settings,
        event: &Event,
        now: Instant,
        closed_before: i64,
    ) -> Result<(), Refusal> {
        if event.at > now + settings.max_clock_skew {
            return Err(Refusal::new(
                Code::OutOfRange,
                "T-4",
                format!(
                    "event time is more than max_clock_skew ({}) ahead of now",
                    time::format_duration(settings.max_clock_skew)
                ),
            ));
        }
        if let Body::Void(v) = &event.body {
            // COR-4: refused when the local date `to` itself closed before it arrived.
            let to_end = time::start_of_local_date(v.to.succ_opt().unwrap_or(v.to), settings.time_zone);
            if to_end + settings.lateness_horizon < now {
                return Err(Refusal::new(
                    Code::FailedPrecondition,
                    "COR-4",
                    format!(
                        "too late: the void's last date {} ended more than lateness_horizon ({}) ago; nothing it names is open",
                        v.to,
                        time::format_duration(settings.lateness_horizon)
                    ),
                ));
            }
            return Ok(());
        }
        // The period ends after the event, so an event within the horizon of its own
        // instant (and after any closed period) is never late; only others need their
        // period computed.
        let at_ms = time::to_millis(event.at);
        let within_horizon = event.at + settings.lateness_horizon >= now;
        if within_horizon && at_ms >= closed_before {
            return Ok(());
        }
        let period = lateness_period(tenant, event);
        if !within_horizon && period.end() + settings.lateness_horizon < now {
            return Err(Refusal::new(
                Code::FailedPrecondition,
                "T-3",
                format!(
                    "too late: its period {} ended more than lateness_horizon ({}) ago; kept as a dead letter",
                    period.label(),
                    time::format_duration(settings.lateness_horizon)
                ),
            ));
        }
        // A period closed by pruning stays closed, even if the horizon was raised since:
        // its state is gone, so a late event could be counted twice.
        if time::to_millis(period.end()) <= closed_before {
            return Err(Refusal::new(
                Code::FailedPrecondition,
                "T-3",
                format!(
                    "too late: its period {} is closed (past the lateness horizon; its state was pruned); kept as a dead letter",
                    period.label()
                ),
            ));
        }
        Ok(())
    }
}

/// T-3 with several meters: the period an event is judged late by. An event is late when
/// its period in any meter that sees it is, so the earliest-ending one counts; an outcome
/// only by event and outcome meters (local months), a co-browse event by the tenant's
/// first meter in force, Functions and an event no meter sees by the local month.
fn lateness_period(tenant: &Tenant, event: &Event) -> Period {
    let month = || tenant.period_in(Window::LocalMonth, event.at);
    let seen = match &event.body {
        Body::Message(m) => Seen {
            event_type: EventType::Message,
            sender: Some(m.sender),
            channel: Some(m.channel),
            integration: m.integration.as_deref(),
        },
        Body::ConversationOpened(o) => Seen {
            event_type: EventType::ConversationOpened,
            sender: None,
            channel: Some(o.channel),
            integration: o.integration.as_deref(),
        },
        Body::Cobrowse(_) => {
            return match tenant.first_meter_at(event.at) {
                Some(m) => tenant.period_in(m.window(), event.at),
                None => month(),
            };
        }
        Body::Outcome(_) | Body::FunctionInvocations { .. } | Body::Void(_) => return month(),
    };
    tenant
        .meters
        .iter()
        .filter(|m| m.sees(event.at, &seen))
        .map(|m| tenant.period_in(m.window(), event.at))
        .min_by_key(|p| p.end_date)
        .unwrap_or_else(month)
}

pub(super) fn unknown_tenant(id: &str) -> Refusal {
    if let Err(reason) = crate::rating::settings::validate_tenant_id(id) {
        return Refusal::invalid(vec![event::FieldViolation::new("tenant_id", reason)]);
    }
    Refusal::new(Code::NotFound, "T-6", format!("unknown tenant `{id}`"))
}

pub(super) fn dead_letter(tenant: &Tenant, event: Event, refusal: &Refusal) -> Record {
    let id = RecordId::of(&[
        b"dead_letter",
        tenant.id.as_bytes(),
        event.event_id.as_bytes(),
        &event.at.timestamp().to_le_bytes(),
        &event.at.timestamp_subsec_nanos().to_le_bytes(),
    ]);
    Record {
        tenant: tenant.id.clone(),
        rule: refusal.rule,
        body: RecordBody::DeadLetter(DeadLetter { id, code: refusal.code, reason: refusal.reason.clone(), event }),
    }
}
