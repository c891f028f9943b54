//! The entry points of a replica under a shared store. An event is validated once
//! ([`Engine::admit`]): the store reserves its id from what admission computed, and the
//! near cache, every claim after a stale answer, the commit and a retry's answer rate
//! the validated event, never the wire form again.

use super::ingest::unknown_tenant;
use super::*;

/// An event validated against its tenant (T-6), with how the shared store knows it.
#[derive(Debug, Clone)]
pub struct Admitted {
    tenant: Arc<str>,
    event: Event,
    event_fp: Fp,
    payload: u64,
    /// How the store reserves its id (T-2 across replicas); `None` when the event is
    /// refused for its time (T-3, T-4), which rating answers the same way.
    pub identity: Option<Identity>,
}

impl Admitted {
    pub fn tenant_id(&self) -> &str {
        &self.tenant
    }

    pub fn event_id(&self) -> &str {
        &self.event.event_id
    }
}

impl Engine {
    /// Validates an event against its tenant (T-6) and computes how the shared store
    /// knows it. Changes nothing.
    pub fn admit(&self, raw: RawEvent, now: Option<Instant>) -> Result<Admitted, Refusal> {
        let slot = self.slot(&raw.tenant_id).ok_or_else(|| unknown_tenant(&raw.tenant_id))?;
        let tenant = slot.config();
        let event = event::validate(raw, &*tenant).map_err(Refusal::invalid)?;
        let event_fp = self.fingerprinter.start(domain::EVENT).str(&tenant.id).str(&event.event_id).finish();
        let payload = event.payload_fp(&self.fingerprinter).0;
        let settings = tenant.settings_at(event.at);
        let closed_before = slot.closed_before.load(Ordering::Acquire);
        let in_time = now.is_none_or(|now| self.check_time(&tenant, settings, &event, now, closed_before).is_ok());
        let identity = in_time.then(|| Identity {
            event: event_fp,
            payload,
            remember_until: event.at + settings.lateness_horizon + TimeDelta::days(PERIOD_SLACK_DAYS + 1),
            known_here: self.events.contains_key(&event_fp),
        });
        Ok(Admitted { tenant: tenant.id.clone(), event, event_fp, payload, identity })
    }

    /// Rates an admitted event under `mode`. A tenant redefined since admission rates it
    /// under its new definition: it was valid a moment ago, as if it had arrived then.
    fn rate_admitted(
        &self,
        admitted: &Admitted,
        now: Option<Instant>,
        mode: Mode,
        records: &mut Vec<Record>,
        out: &mut NearCache,
    ) -> Rated {
        let tenants = self.tenants.read().unpoisoned();
        let Some(slot) = tenants.get(&admitted.tenant) else {
            return Rated::Done(Err(unknown_tenant(&admitted.tenant)));
        };
        let event = admitted.event.clone();
        if let Body::Void(_) = event.body {
            let tenant = slot.config();
            return match mode {
                Mode::Live => Rated::Done(Err(Refusal::new(
                    Code::Unavailable,
                    "COR-2",
                    "a void is accepted once the shared store holds it; retry",
                ))),
                _ => self.shared_void_valid(slot, &tenant, event, now, records, out),
            };
        }
        let config = slot.config.read().unpoisoned();
        let fps = (event, admitted.event_fp, admitted.payload);
        self.rate_valid((slot, &config), fps, now, None, mode, records, out)
    }

    /// Rates an admitted event against the maps as a near cache. An event that would not
    /// change its shared entry (a repeat) is committed here, exactly as
    /// [`Engine::ingest`] would; one that would change it is not committed, and its
    /// [`Claim`] is returned for the store to apply.
    ///
    /// `ask_store`: the store may remember this event (another replica reserved its id):
    /// it is claimed even when it would change nothing here, so that the store answers it
    /// with its original outcome.
    pub fn ingest_shared(
        &self,
        admitted: &Admitted,
        now: Option<Instant>,
        ask_store: bool,
        records: &mut Vec<Record>,
    ) -> NearCache {
        let mut out = NearCache { ask_store, ..NearCache::default() };
        out.rated = self.rate_admitted(admitted, now, Mode::Guarded, records, &mut out);
        out
    }

    /// Rates and commits an admitted event from this replica's state alone (the store is
    /// away: degraded mode).
    pub fn ingest_admitted(
        &self,
        admitted: &Admitted,
        now: Option<Instant>,
        records: &mut Vec<Record>,
    ) -> Result<Outcome, Refusal> {
        self.rate_admitted(admitted, now, Mode::Live, records, &mut NearCache::default()).done()
    }

    /// What the event would claim if its shared entry held `value` (the store's current
    /// value, after a stale claim). Changes nothing.
    pub fn probe(&self, admitted: &Admitted, now: Option<Instant>, value: Shared) -> Rated {
        self.rate_admitted(admitted, now, Mode::Probe(value), &mut Vec::new(), &mut NearCache::default())
    }

    /// Commits an admitted event rated against `value`, the value its shared entry held
    /// in the store before it: what [`Engine::commit_claim`] falls back to.
    pub fn commit_claimed(
        &self,
        admitted: &Admitted,
        now: Option<Instant>,
        value: Shared,
        records: &mut Vec<Record>,
    ) -> Result<Outcome, Refusal> {
        self.rate_admitted(admitted, now, Mode::Claimed(value), records, &mut NearCache::default()).done()
    }

    /// Answers an event whose id another replica accepted (the shared store remembered
    /// its payload and what it met, `prior`) and remembers it here, so that later retries
    /// are answered locally. `None`: `prior` is not something this version wrote.
    pub fn answer_remembered(
        &self,
        admitted: &Admitted,
        payload: u64,
        prior: &[u8],
    ) -> Option<Result<Outcome, Refusal>> {
        let tenant = match self.tenant(&admitted.tenant) {
            Some(tenant) => tenant,
            None => return Some(Err(unknown_tenant(&admitted.tenant))),
        };
        let event = admitted.event.clone();
        let outcome = persist::decode_stored(prior, tenant.index)?;
        let seen = EventEntry { payload, tenant: tenant.index, day: utc_day(event.at), outcome };
        if admitted.payload == payload {
            self.events.entry(admitted.event_fp).or_insert_with(|| seen.clone());
        }
        Some(self.answer_retry(&tenant, event, admitted.event_fp, seen, admitted.payload))
    }
}
