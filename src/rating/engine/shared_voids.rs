//! Voids of a tenant metered by claims under a shared store (COR-1..COR-4), with the
//! rules of `corrections` and nothing else: the server publishes the void to every
//! shard, makes it known here ([`Engine::learn_voids`]), and then withdraws what it
//! selects among the interactions the shared records show, each from its entry's value
//! as billed.
//!
//! Why that value is the billed one: a claim is applied only by a replica that knows
//! every void published to the entry's shard (the store compares counts), and a replica
//! that knows a void leaves the entries it selects as they are (`touch`: a voided
//! interaction gains no line). So once a void is published, the entries it selects no
//! longer move, and each line is withdrawn once, by whichever call marks the
//! interaction first.

use super::corrections::void_record;
use super::*;
use crate::rating::event::Void;

/// A void rated under a shared store, before it is published: its rule, its own time,
/// and its identity for the store (T-2).
#[derive(Debug, Clone)]
pub struct SharedVoid {
    pub rule: VoidRule,
    pub at: Instant,
    pub event: Fp,
    pub payload: u64,
}

/// What withdrawing one voided interaction adds: its reversal lines and withdrawal
/// record, and what they take from the aggregates.
#[derive(Debug, Default)]
pub struct Withdrawn {
    pub records: Vec<Record>,
    pub ledger: Vec<(NaiveDate, Entry)>,
    pub lines: Vec<CreditLine>,
}

impl Engine {
    /// Validates a void under a shared store and judges its lateness (COR-4); the server
    /// publishes and sweeps it. A void too late to name anything open leaves a dead letter.
    pub(super) fn shared_void(
        &self,
        slot: &TenantSlot,
        raw: RawEvent,
        now: Option<Instant>,
        records: &mut Vec<Record>,
        out: &mut NearCache,
    ) -> Rated {
        let tenant = slot.config();
        match event::validate(raw, &*tenant) {
            Ok(event) => self.shared_void_valid(slot, &tenant, event, now, records, out),
            Err(violations) => Rated::Done(Err(Refusal::invalid(violations))),
        }
    }

    /// [`Engine::shared_void`] of a void validated already.
    pub(super) fn shared_void_valid(
        &self,
        slot: &TenantSlot,
        tenant: &Tenant,
        event: Event,
        now: Option<Instant>,
        records: &mut Vec<Record>,
        out: &mut NearCache,
    ) -> Rated {
        let event_fp = self.fingerprinter.start(domain::EVENT).str(&tenant.id).str(&event.event_id).finish();
        let payload = event.payload_fp(&self.fingerprinter).0;
        out.event = Some((event_fp, payload, event.at));
        let (settings, closed_before) = (tenant.settings_at(event.at), slot.closed_before.load(Ordering::Acquire));
        if let Some(now) = now
            && let Err(refusal) = self.check_time(tenant, settings, &event, now, closed_before)
        {
            if refusal.code == Code::FailedPrecondition {
                records.push(dead_letter(tenant, event, &refusal));
            }
            return Rated::Done(Err(refusal));
        }
        let at = event.at;
        let Body::Void(void) = event.body else { unreachable!("only voids") };
        let rule = VoidRule { event_id: event.event_id, void, arrived: now };
        Rated::Void(Box::new(SharedVoid { rule, at, event: event_fp, payload }))
    }

    /// Makes voids published in the shared store known here (each a void event and the
    /// instant it arrived at). Voids only accumulate; they are kept in the order they
    /// arrived in, then by id, the same on every replica. Returns how many voids the
    /// tenant has here, the count a claim carries.
    pub fn learn_voids(&self, tenant_id: &str, voids: Vec<(RawEvent, Option<Instant>)>) -> usize {
        let Some(slot) = self.slot(tenant_id) else { return 0 };
        let tenant = slot.config();
        let mut corrections = slot.corrections.lock().unpoisoned();
        let mut known = (*corrections.voids).clone();
        for (raw, arrived) in voids {
            let event_id = raw.event_id.clone();
            if known.iter().any(|v| v.event_id == event_id) {
                continue;
            }
            // A void accepted under an earlier definition of the tenant that no longer
            // validates still counts (claims compare counts, and must not wait for it for
            // ever), and selects nothing new.
            let void = match event::validate(raw, &*tenant).map(|e| e.body) {
                Ok(Body::Void(void)) => void,
                _ => Void {
                    from: NaiveDate::MAX,
                    to: NaiveDate::MIN,
                    reason: String::new(),
                    meter: None,
                    consumer: None,
                    conversation: None,
                    integration: None,
                    outcome_type: None,
                    by: None,
                },
            };
            known.push(VoidRule { event_id, void, arrived });
        }
        known.sort_by(|a, b| (a.arrived, &a.event_id).cmp(&(b.arrived, &b.event_id)));
        let count = known.len();
        corrections.voids = Arc::new(known);
        slot.has_voids.store(count > 0, Ordering::Release);
        count
    }

    /// COR-1 and COR-4 on the interactions a tenant's records show standing: those `rule`
    /// selects whose period was still open when it arrived, in the order of their periods,
    /// then ids (as the embedded catalogue withdraws them). Interactions a void selected
    /// when they started are left out: they never had a line.
    pub fn void_selects(&self, tenant_id: &str, rule: &VoidRule, standing: &[Standing]) -> Vec<Catalogued> {
        let Some(slot) = self.slot(tenant_id) else { return Vec::new() };
        let tenant = slot.config();
        let fx = Effects {
            now: rule.arrived,
            closed_before: Some(slot.closed_before.load(Ordering::Acquire)),
            ..Effects::default()
        };
        let mut chosen: Vec<Catalogued> = standing
            .iter()
            .filter(|s| s.voided_by.is_none() && !s.withdrawn)
            .filter_map(|s| self.catalogued_standing(&tenant, s))
            .filter(|c| c.source == Source::Hot && self.selects(&tenant, rule, c))
            .filter(|c| !self.is_final(&tenant, &Self::catalogued_period(&tenant, c), &fx))
            .collect();
        chosen.sort_by_key(|c| (c.start, c.id));
        chosen.dedup_by_key(|c| c.id);
        chosen
    }

    /// The withdrawal of one interaction a void selected (COR-2), from its entry's value
    /// as billed.
    pub fn void_withdrawal(&self, tenant_id: &str, c: &Catalogued, billed: InteractionEntry, by: &str) -> Withdrawn {
        let Some(tenant) = self.tenant(tenant_id) else { return Withdrawn::default() };
        let mut fx = Effects::default();
        self.withdraw(&tenant, c, Some(InteractionEntry { tenant: tenant.index, ..billed }), by, &mut fx);
        Withdrawn { records: fx.records, ledger: fx.ledger, lines: fx.lines }
    }

    /// A published void's outcome, with the lines it withdrew, and its audit record.
    pub fn void_accepted(
        &self,
        tenant_id: &str,
        void: &SharedVoid,
        selected: Vec<RecordId>,
        lines: Vec<CreditLine>,
    ) -> Option<(Outcome, Record)> {
        let tenant = self.tenant(tenant_id)?;
        let record = void_record(&tenant, &void.rule, void.at, selected);
        let mut fx = Effects { lines, ..Effects::default() };
        let outcome = fx.outcome(void.rule.event_id.clone(), Disposition::NotBillable(NotBillableReason::Correction));
        Some((outcome, record))
    }
}
