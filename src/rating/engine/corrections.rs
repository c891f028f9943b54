//! Corrections (COR-1..COR-4): voids, and the catalogue of standing interactions they
//! select from. A void is rated alone: no other event of its tenant is rated meanwhile,
//! so "before it arrived" and "after" are each one side of it.

use super::*;
use crate::rating::event::Void;

/// A void as accepted, with the instant it arrived (COR-4 leaves alone what was already
/// past its horizon then).
#[derive(Debug, Clone, PartialEq)]
pub struct VoidRule {
    pub event_id: String,
    pub void: Void,
    pub arrived: Option<Instant>,
}

/// The fields a void selects on (COR-1): an interaction's meter, its period's first local
/// date, and the fields it lists.
pub(super) struct Selected<'a> {
    pub meter: &'a str,
    pub start: NaiveDate,
    pub consumer: Option<&'a str>,
    pub conversation: Option<&'a str>,
    pub integration: Option<&'a str>,
    pub outcome_type: Option<&'a str>,
}

impl VoidRule {
    /// COR-1, written once: the period's first local date within [from, to], the meter if
    /// the void names one (`meter`), and every other selector given equal to the field the
    /// interaction lists (`equal(i, wanted)`, `i` in the order consumer, conversation,
    /// integration, outcome type). The fields are compared as text or as keyed
    /// fingerprints, by the caller.
    pub(super) fn selects_by(
        &self,
        start: NaiveDate,
        meter: impl FnOnce(&str) -> bool,
        equal: impl Fn(usize, &str) -> bool,
    ) -> bool {
        let v = &self.void;
        let wanted = [&v.consumer, &v.conversation, &v.integration, &v.outcome_type];
        v.from <= start
            && start <= v.to
            && v.meter.as_deref().is_none_or(meter)
            && wanted.iter().enumerate().all(|(i, w)| w.as_deref().is_none_or(|w| equal(i, w)))
    }

    /// COR-1 on an interaction's fields as text.
    pub(super) fn selects(&self, s: &Selected<'_>) -> bool {
        let has = [s.consumer, s.conversation, s.integration, s.outcome_type];
        self.selects_by(s.start, |m| m == s.meter, |i, w| has[i] == Some(w))
    }
}

/// Where a catalogued interaction's lines are read from when a void withdraws them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The hot interaction map (DAR, CYC, MAU): lines are a function of the entry.
    Hot,
    /// An outcome meter's state: the billed occurrence's line.
    Outcome,
}

/// An interaction of an open period, as a void needs to find it: compact (every
/// relationship-day has one), so its fields are kept as keyed fingerprints, which is all
/// a void's equality test needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogued {
    pub id: RecordId,
    /// The state that holds it: its hot key, or its outcome state's.
    pub state: Fp,
    /// Fingerprints of its consumer, conversation, integration and outcome type (0: the
    /// interaction does not list that field).
    pub fields: [u64; 4],
    /// Its period's first local date (days from the common era).
    pub start: i32,
    pub meter: u8,
    pub source: Source,
}

/// The fields a catalogued interaction lists, before they are fingerprinted.
pub(super) struct Listed<'a> {
    pub consumer: &'a str,
    pub conversation: Option<&'a str>,
    pub integration: Option<&'a str>,
    pub outcome_type: Option<&'a str>,
}

impl Engine {
    fn field_fp(&self, value: &str) -> u64 {
        // Never 0, which stands for "not listed".
        self.fingerprinter.start(domain::FIELD).str(value).finish().0 | 1
    }

    pub(super) fn catalogued(
        &self,
        id: RecordId,
        state: Fp,
        meter: u8,
        start: NaiveDate,
        source: Source,
        listed: Listed<'_>,
    ) -> Catalogued {
        let opt = |v: Option<&str>| v.map_or(0, |v| self.field_fp(v));
        Catalogued {
            id,
            state,
            fields: [
                self.field_fp(listed.consumer),
                opt(listed.conversation),
                opt(listed.integration),
                opt(listed.outcome_type),
            ],
            start: time::date_to_days(start),
            meter,
            source,
        }
    }

    /// COR-1 on a catalogued interaction: its period's first date within [from, to], and
    /// every selector given equal to a field it lists.
    pub(super) fn selects(&self, tenant: &Tenant, rule: &VoidRule, c: &Catalogued) -> bool {
        rule.selects_by(
            time::days_to_date(c.start),
            |m| &*tenant.meter_at(c.meter).id == m,
            |i, w| c.fields[i] != 0 && c.fields[i] == self.field_fp(w),
        )
    }

    /// The period of a catalogued interaction, in the zone in force at its start.
    pub(super) fn catalogued_period(tenant: &Tenant, c: &Catalogued) -> Period {
        let start = time::days_to_date(c.start);
        let zone = tenant.zone_at(time::start_of_local_date(start, chrono_tz::UTC));
        tenant.period_of_date(tenant.meter_at(c.meter).window(), start, zone)
    }
}

/// A tenant's voids and standing interactions.
#[derive(Debug, Default)]
pub struct Corrections {
    pub voids: Arc<Vec<VoidRule>>,
    /// Interactions of open periods: what a void can still select.
    pub catalogue: Vec<Catalogued>,
    /// Interactions that no longer stand as they started: voided (the void's id, COR-2)
    /// or withdrawn (`None`, OUT-4). Voids skip them; listings read it. It only grows
    /// with voids and outcomes.
    pub changed: HashMap<RecordId, Option<String>>,
    /// The catalogue was built from the tenant's records ([`Engine::seed_catalogue`]).
    pub seeded: bool,
}

/// An interaction as its records show it, to seed a catalogue from
/// ([`Engine::seed_catalogue`]).
#[derive(Debug, Clone)]
pub struct Standing {
    pub id: RecordId,
    pub meter_id: String,
    pub consumer: String,
    pub conversation: Option<String>,
    pub integration: Option<String>,
    pub outcome_type: Option<String>,
    /// Its period's first local date.
    pub start: NaiveDate,
    /// Voided from the start, or later; `None` as it started.
    pub voided_by: Option<String>,
    /// No longer billed (OUT-4).
    pub withdrawn: bool,
}

impl Effects {
    /// The void that selects an interaction, if any (COR-1). Voids only accumulate, and
    /// none arrives while another event of the tenant is rated.
    pub(super) fn void_selecting(&self, selected: &Selected<'_>) -> Option<String> {
        self.voids.as_ref()?.iter().find(|v| v.selects(selected)).map(|v| v.event_id.clone())
    }

    /// Remembers a new interaction for the voids to come (committed with the event), with
    /// the void that selected it from the start. Only in embedded mode: a shared store
    /// refuses voids, and its near cache forgets.
    pub(super) fn catalogue(&mut self, entry: Catalogued, voided_by: Option<String>) {
        if self.catalogues() {
            self.catalogued.push((entry, voided_by));
        }
    }

    /// Whether this event's new interactions are catalogued.
    pub(super) fn catalogues(&self) -> bool {
        self.mode.is_whole() && self.cataloguing
    }

    /// A meter's share of a change, for tenants that keep a per-meter breakdown (MS-3).
    pub(super) fn meter_entry(
        &mut self,
        tenant: &Tenant,
        date: NaiveDate,
        meter: u8,
        interactions: i64,
        units: u64,
        credits: Decimal,
    ) {
        if !tenant.single_meter() {
            let totals = ledger::MeterTotals { interactions, units, credits };
            self.ledger.push((date, Entry::Meter(meter, totals)));
        }
    }
}

impl Engine {
    /// Rates a void (COR): refuses it when nothing it names is open (COR-4), else records
    /// it, withdraws the lines of every standing interaction it selects whose period is
    /// still open, and marks them. Takes its tenant exclusively.
    pub(super) fn ingest_void(
        &self,
        slot: &TenantSlot,
        raw: RawEvent,
        now: Option<Instant>,
        records: &mut Vec<Record>,
    ) -> Result<Outcome, Refusal> {
        let config = slot.config.write().unpoisoned();
        let tenant: &Tenant = &config;
        let event = event::validate(raw, tenant).map_err(Refusal::invalid)?;
        let event_fp = self.fingerprinter.start(domain::EVENT).str(&tenant.id).str(&event.event_id).finish();
        let payload = event.payload_fp(&self.fingerprinter).0;
        if let Some(seen) = self.events.get(&event_fp).map(|e| e.clone()) {
            return self.answer_retry(tenant, event, event_fp, seen, payload);
        }
        let closed_before = slot.closed_before.load(Ordering::Acquire);
        if let Some(now) = now
            && let Err(refusal) = self.check_time(tenant, tenant.settings_at(event.at), &event, now, closed_before)
        {
            if refusal.code == Code::FailedPrecondition {
                records.push(dead_letter(tenant, event, &refusal));
            }
            return Err(refusal);
        }
        let Body::Void(void) = &event.body else { unreachable!("only voids") };
        let rule = VoidRule { event_id: event.event_id.clone(), void: void.clone(), arrived: now };
        let mut fx = Effects { now, closed_before: Some(closed_before), ..Effects::default() };
        let mut selected = Vec::new();
        {
            let mut corrections = slot.corrections.lock().unpoisoned();
            let mut voids = (*corrections.voids).clone();
            voids.push(rule.clone());
            corrections.voids = Arc::new(voids);
            slot.has_voids.store(true, Ordering::Release);
            let corrections = &mut *corrections;
            // In the order of their periods, then ids: the same lines in the same order on
            // every replay and after a restart.
            let mut chosen: Vec<Catalogued> = corrections
                .catalogue
                .iter()
                .filter(|c| !corrections.changed.contains_key(&c.id) && self.selects(tenant, &rule, c))
                .filter(|c| !self.is_final(tenant, &Self::catalogued_period(tenant, c), &fx))
                .cloned()
                .collect();
            chosen.sort_by_key(|c| (c.start, c.id));
            for entry in chosen {
                selected.push(entry.id);
                corrections.changed.insert(entry.id, Some(rule.event_id.clone()));
                let hot = match entry.source {
                    Source::Hot => self.interactions.get(&entry.state.into()).map(|e| *e),
                    Source::Outcome => None,
                };
                self.withdraw(tenant, &entry, hot, &event.event_id, &mut fx);
            }
        }
        fx.records.push(void_record(tenant, &rule, event.at, selected));
        self.commit_ledger(tenant, slot, &event.event_id, None, &mut fx);
        let mut emitted = std::mem::take(&mut fx.records);
        let outcome = fx.outcome(event.event_id.clone(), Disposition::NotBillable(NotBillableReason::Correction));
        self.events.insert(
            event_fp,
            EventEntry {
                payload,
                tenant: tenant.index,
                day: utc_day(event.at),
                outcome: StoredOutcome::Full(Arc::new(outcome.clone())),
            },
        );
        records.append(&mut emitted);
        Ok(outcome)
    }

    /// COR-4 (T-3): an interaction whose period is past its lateness horizon when the void
    /// arrives is final.
    pub(super) fn is_final(&self, tenant: &Tenant, period: &Period, fx: &Effects) -> bool {
        let end = period.end();
        let horizon = tenant.settings_at(period.start()).lateness_horizon;
        fx.now.is_some_and(|now| end + horizon < now) || fx.closed_before.is_some_and(|c| time::to_millis(end) <= c)
    }

    /// Voids a standing interaction: its lines withdrawn by reversal lines naming them and
    /// the void, and it is uncounted (COR-2). A line is withdrawn once: an outcome's line
    /// is forgotten as it is withdrawn. A hot interaction's lines are those of its entry
    /// as billed (`hot`).
    pub(super) fn withdraw(
        &self,
        tenant: &Tenant,
        entry: &Catalogued,
        hot: Option<InteractionEntry>,
        by: &str,
        fx: &mut Effects,
    ) {
        let meter = tenant.meter_at(entry.meter);
        let period = Self::catalogued_period(tenant, entry);
        let info = PeriodInfo::from(&period);
        let date = period.start_date;
        let mut reversals = Vec::new();
        match entry.source {
            Source::Hot => {
                if let Some(e) = hot {
                    let structure = tenant.structure_in(meter.window(), date);
                    for slot in interactions::lines_of(&structure, &e).lines() {
                        let l = interactions::interaction_line(entry.id, meter, slot, e.generation, true, &info, by);
                        reversals.push((l, slot.slot as usize));
                    }
                }
            }
            Source::Outcome => {
                if let Some(mut o) = self.outcomes.get_mut(&entry.state)
                    && let Some(billed) = o.billed.as_mut()
                    && let Some(line) = billed.line.take()
                {
                    reversals.push((
                        meters::outcome_reversal(entry.id, line, billed.credits, meter, &info, by),
                        OUTCOME_BUCKET,
                    ));
                }
            }
        }
        let credits: Decimal = reversals.iter().map(|(l, _)| l.credits).sum();
        for (l, bucket) in reversals {
            fx.ledger.push((date, Entry::Credits(bucket, l.credits)));
            fx.emit(|| Record { tenant: tenant.id.clone(), rule: "COR-2", body: RecordBody::Line(l.clone()) });
            fx.lines.push(l);
        }
        fx.ledger.push((date, Entry::Uncount));
        fx.meter_entry(tenant, date, entry.meter, -1, 0, credits);
        let id = RecordId::of(&[b"withdrawn", &entry.id.0, by.as_bytes()]);
        fx.emit(|| Record {
            tenant: tenant.id.clone(),
            rule: "COR-2",
            body: RecordBody::Withdrawn(Withdrawal {
                id,
                interaction_id: entry.id,
                period: info,
                event_id: by.to_string(),
                voided: true,
            }),
        });
    }

    /// Adds a committed event's new interactions to its tenant's catalogue, and takes out
    /// those it withdrew (OUT-4).
    pub(super) fn commit_catalogue(&self, slot: &TenantSlot, fx: &mut Effects) {
        if fx.catalogued.is_empty() && fx.uncatalogued.is_empty() {
            return;
        }
        let mut corrections = slot.corrections.lock().unpoisoned();
        for id in fx.uncatalogued.drain(..) {
            corrections.changed.insert(id, None);
        }
        for (entry, voided_by) in fx.catalogued.drain(..) {
            if let Some(void) = voided_by {
                corrections.changed.insert(entry.id, Some(void));
            }
            corrections.catalogue.push(entry);
        }
    }

    /// Whether the tenant's catalogue must be seeded before its first void is rated
    /// ([`EngineConfig::catalogue_on_first_void`]).
    pub fn needs_catalogue(&self, tenant: &str) -> bool {
        self.slot(tenant).is_some_and(|s| !s.cataloguing.load(Ordering::Acquire))
    }

    /// Builds a tenant's catalogue from the interactions its records show, and catalogues
    /// every new one from then on. Call with no event of the tenant being rated, and
    /// every record of its accepted events at hand (the server holds its ordering stripes
    /// and reads its journal).
    pub fn seed_catalogue(&self, tenant_id: &str, standing: Vec<Standing>) {
        let Some(slot) = self.slot(tenant_id) else { return };
        let tenant = slot.config();
        let mut corrections = slot.corrections.lock().unpoisoned();
        for s in standing {
            if s.withdrawn {
                corrections.changed.insert(s.id, None);
                continue;
            }
            let Some(entry) = self.catalogued_standing(&tenant, &s) else { continue };
            if let Some(void) = s.voided_by {
                corrections.changed.insert(s.id, Some(void));
            }
            corrections.catalogue.push(entry);
        }
        corrections.seeded = true;
        slot.cataloguing.store(true, Ordering::Release);
    }

    /// An interaction its records show, as the catalogue keeps it (`None`: its meter is
    /// gone).
    pub(super) fn catalogued_standing(&self, tenant: &Tenant, s: &Standing) -> Option<Catalogued> {
        let meter = tenant.meter_named(&s.meter_id)?;
        let (state, source) = match meter.kind() {
            MeterKind::Outcome => {
                let (conversation, kind) =
                    (s.conversation.as_deref().unwrap_or(""), s.outcome_type.as_deref().unwrap_or(""));
                (self.outcome_key(tenant, meter.index, conversation, kind), Source::Outcome)
            }
            _ => {
                let key = KeyRef {
                    consumer: &s.consumer,
                    conversation: s.conversation.as_deref(),
                    integration: s.integration.as_deref(),
                };
                (self.interaction_fp(tenant, meter.index, &key, s.start), Source::Hot)
            }
        };
        let listed = Listed {
            consumer: &s.consumer,
            conversation: s.conversation.as_deref(),
            integration: s.integration.as_deref(),
            outcome_type: s.outcome_type.as_deref(),
        };
        Some(self.catalogued(s.id, state, meter.index, s.start, source, listed))
    }

    /// Whether an interaction still stands as it started: `None` when it stands, `Some(None)`
    /// when it was withdrawn (OUT-4), `Some(Some(void))` when a void selected it later
    /// (COR-2).
    pub fn interaction_change(&self, tenant: &str, id: RecordId) -> Option<Option<String>> {
        let slot = self.slot(tenant)?;
        let corrections = slot.corrections.lock().unpoisoned();
        corrections.changed.get(&id).cloned()
    }
}

/// A void's audit record (COR): what it selected among the standing interactions when it
/// arrived.
pub(super) fn void_record(tenant: &Tenant, rule: &VoidRule, at: Instant, selected: Vec<RecordId>) -> Record {
    let id = RecordId::of(&[b"void", tenant.id.as_bytes(), rule.event_id.as_bytes()]);
    Record {
        tenant: tenant.id.clone(),
        rule: "COR-1",
        body: RecordBody::Void(VoidRecord {
            id,
            event_id: rule.event_id.clone(),
            at,
            arrived: rule.arrived,
            void: rule.void.clone(),
            selected,
        }),
    }
}
