//! Merging part two's state from another replica (the invariant the shared store relies
//! on, checked by the property tests): event meters' units as sets of events, outcome
//! states as the union of their occurrences and revocations, voids and catalogues as
//! unions; then what follows from the union is settled (the billed occurrence, what the
//! voids select).

use super::*;
use crate::rating::state::Billed;

impl Engine {
    pub(super) fn merge_part_two(&self, other: &Engine, tenant_of: &dyn Fn(u32) -> u32) {
        for e in other.units.iter() {
            let theirs = e.value();
            let mut mine = self.units.entry(*e.key()).or_insert_with(|| UnitsEntry {
                tenant: tenant_of(theirs.tenant),
                events: Default::default(),
                ..theirs.clone()
            });
            mine.events.extend(theirs.events.iter().copied());
        }
        for e in other.outcomes.iter() {
            let theirs = e.value();
            let mut mine = self.outcomes.entry(*e.key()).or_insert_with(|| OutcomeState {
                tenant: tenant_of(theirs.tenant),
                occurrences: Vec::new(),
                revocations: Vec::new(),
                billed: None,
                generation: 0,
                ..theirs.clone()
            });
            for o in &theirs.occurrences {
                match mine.occurrences.iter_mut().find(|m| m.event_id == o.event_id) {
                    Some(m) => m.cancelled |= o.cancelled,
                    None => mine.occurrences.push(o.clone()),
                }
            }
            for r in &theirs.revocations {
                if !mine.revocations.contains(r) {
                    mine.revocations.push(*r);
                }
            }
        }
        let theirs_slots = other.by_index.read().unpoisoned().clone();
        for slot in theirs_slots {
            let Some(ours) = self.slot(&slot.config().id) else { continue };
            let theirs = slot.corrections.lock().unpoisoned();
            let mut mine = ours.corrections.lock().unpoisoned();
            let mut voids = (*mine.voids).clone();
            for v in theirs.voids.iter() {
                if !voids.iter().any(|m| m.event_id == v.event_id) {
                    voids.push(v.clone());
                }
            }
            mine.voids = Arc::new(voids);
            let known: std::collections::HashSet<RecordId> = mine.catalogue.iter().map(|c| c.id).collect();
            let new: Vec<Catalogued> = theirs.catalogue.iter().filter(|c| !known.contains(&c.id)).cloned().collect();
            mine.catalogue.extend(new);
            for (id, change) in &theirs.changed {
                let entry = mine.changed.entry(*id).or_insert_with(|| change.clone());
                if entry.is_none() {
                    *entry = change.clone();
                }
            }
            mine.seeded |= theirs.seeded;
            ours.has_voids.store(!mine.voids.is_empty(), Ordering::Release);
            if theirs.seeded || slot.cataloguing.load(Ordering::Acquire) {
                ours.cataloguing.store(true, Ordering::Release);
            }
        }
        self.settle_merged();
    }

    /// What the union implies: each outcome state's billed occurrence (the earliest not
    /// covered by a revocation: a merge judges no lateness) and whether a void selects it,
    /// and every catalogued interaction a void selects.
    fn settle_merged(&self) {
        let slots = self.by_index.read().unpoisoned().clone();
        let tenants: Vec<Arc<Tenant>> = slots.iter().map(|s| s.config()).collect();
        for mut e in self.outcomes.iter_mut() {
            let key = *e.key();
            let state = e.value_mut();
            let tenant = &tenants[state.tenant as usize];
            let meter = tenant.meter_at(state.meter);
            let window = meter.def.outcomes.revocation_window;
            let revocations = state.revocations.clone();
            for occ in &mut state.occurrences {
                occ.cancelled |= revocations.iter().any(|r| *r - window <= occ.at && occ.at <= *r);
            }
            let next =
                state.occurrences.iter().filter(|o| !o.cancelled).min_by(|a, b| a.order_key().cmp(&b.order_key()));
            let Some(next) = next.cloned() else {
                state.billed = None;
                continue;
            };
            if state.billed.as_ref().is_some_and(|b| b.event_id == next.event_id) {
                continue;
            }
            state.generation += 1;
            let interaction = RecordId::of(&[b"merged-outcome", &key.0.to_le_bytes(), next.event_id.as_bytes()]);
            let price = meter.def.outcomes.prices.get(&state.outcome_type).copied().unwrap_or_default();
            state.billed = Some(Billed {
                event_id: next.event_id.clone(),
                consumer: next.consumer.clone(),
                at: next.at,
                interaction,
                line: Some(RecordId::of(&[b"line", &interaction.0, &state.generation.to_le_bytes()])),
                credits: price,
            });
        }
        for (i, slot) in slots.iter().enumerate() {
            let tenant = &tenants[i];
            let mut corrections = slot.corrections.lock().unpoisoned();
            let corrections = &mut *corrections;
            for rule in corrections.voids.iter() {
                for c in corrections.catalogue.iter().filter(|c| c.source == Source::Hot) {
                    if !corrections.changed.contains_key(&c.id) && self.selects(tenant, rule, c) {
                        corrections.changed.insert(c.id, Some(rule.event_id.clone()));
                    }
                }
            }
            for mut e in self.outcomes.iter_mut().filter(|e| e.tenant == tenant.index) {
                let state = e.value_mut();
                let meter = tenant.meter_at(state.meter);
                let (conversation, outcome_type) = (state.conversation.clone(), state.outcome_type.clone());
                let Some(billed) = state.billed.as_mut() else { continue };
                let start = tenant.period_in(Window::LocalMonth, billed.at).start_date;
                let selected = Selected {
                    meter: &meter.id,
                    start,
                    consumer: Some(&billed.consumer),
                    conversation: Some(&conversation),
                    integration: None,
                    outcome_type: Some(&outcome_type),
                };
                if corrections.voids.iter().any(|v| v.selects(&selected)) {
                    billed.line = None;
                }
            }
        }
    }
}
