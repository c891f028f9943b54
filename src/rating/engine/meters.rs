//! The meters that are not keyed relationships: event meters count units per local
//! month (EV-1, EV-2); outcome meters bill one outcome per (conversation, outcome type),
//! the earliest that holds (OUT-1..OUT-4).

use super::*;
use crate::rating::event::OutcomeReport;
use crate::rating::state::{Billed, Occurrence, OutcomeState, UnitsEntry};

impl Engine {
    /// EV-1, EV-2: one unit in the event meter's local month. The month's credits are a
    /// function of its count, and the n-th unit's line is the difference the n-th unit
    /// makes, so lines and totals are the same whatever the order. Returns whether it
    /// added credits.
    pub(super) fn count_unit(
        &self,
        tenant: &Tenant,
        meter: &Meter,
        event: &Event,
        event_fp: Fp,
        fx: &mut Effects,
    ) -> bool {
        let period = tenant.period_in(Window::LocalMonth, event.at);
        let month = period.start_date;
        let key = self
            .fingerprinter
            .start(domain::UNITS)
            .str(&tenant.id)
            .u64(u64::from(meter.index))
            .i64(time::date_to_days(month).into())
            .finish();
        let empty = || UnitsEntry {
            tenant: tenant.index,
            meter: meter.index,
            month_start: time::date_to_days(month),
            events: Default::default(),
        };
        let n = fx.mode.count_units(self, (key, event_fp), empty);
        let pricing = &meter.def.units;
        let credits = pricing.credits(n) - pricing.credits(n - 1);
        fx.meter_entry(tenant, month, meter.index, 0, 1, credits);
        if credits.is_zero() {
            return false;
        }
        let mut label = [0u8; 10];
        let line = CreditLine {
            id: RecordId::of(&[
                b"units",
                tenant.id.as_bytes(),
                meter.id.as_bytes(),
                period.label_into(&mut label).as_bytes(),
                &n.to_le_bytes(),
            ]),
            interaction_id: None,
            kind: LineKind::Units,
            applies_to: None,
            credits,
            rule: "EV-2",
            period: PeriodInfo::from(&period),
            event_id: event.event_id.clone(),
            reverses: None,
            meter: Some(meter.id.clone()),
        };
        fx.add_line(tenant, month, UNITS_BUCKET, line);
        true
    }

    /// An outcome event: units of the event meters that see it (a revocation is not a
    /// unit, EV-1), and the outcome meters that see it and price its type (OUT-1..OUT-4).
    pub(super) fn rate_outcome(
        &self,
        tenant: &Tenant,
        event: &Event,
        event_fp: Fp,
        o: &OutcomeReport,
        fx: &mut Effects,
    ) -> Disposition {
        let seen = Seen { event_type: EventType::Outcome, sender: None, channel: None, integration: None };
        fx.keep_whole = true;
        let (mut created, mut charged) = (false, false);
        for meter in tenant.meters.iter().filter(|m| m.sees(event.at, &seen)) {
            match meter.kind() {
                MeterKind::Event if !o.revoked => charged |= self.count_unit(tenant, meter, event, event_fp, fx),
                MeterKind::Outcome => {
                    if let Some(price) = meter.def.outcomes.prices.get(&o.outcome_type) {
                        created |= self.rate_outcome_meter(tenant, meter, event, o, *price, fx);
                    }
                }
                // An outcome never qualifies for an interaction meter (MS-2, DAR-4).
                _ => {}
            }
        }
        if created {
            Disposition::NewInteraction
        } else if !fx.counted_in.is_empty() {
            Disposition::AlreadyCounted
        } else if charged {
            Disposition::Charged
        } else {
            Disposition::NotBillable(NotBillableReason::OutcomeNotBilled)
        }
    }

    /// One outcome meter's state for the event's (conversation, outcome type): the
    /// occurrence or the revocation joins it, and the billed occurrence is judged again
    /// (OUT-1, OUT-3, OUT-4). Returns whether a new interaction started.
    fn rate_outcome_meter(
        &self,
        tenant: &Tenant,
        meter: &Meter,
        event: &Event,
        o: &OutcomeReport,
        price: Decimal,
        fx: &mut Effects,
    ) -> bool {
        let key = self.outcome_key(tenant, meter.index, &o.conversation, &o.outcome_type);
        let window = meter.def.outcomes.revocation_window;
        let mut state = self.outcomes.entry(key).or_insert_with(|| OutcomeState {
            tenant: tenant.index,
            meter: meter.index,
            conversation: o.conversation.clone(),
            outcome_type: o.outcome_type.clone(),
            occurrences: Vec::new(),
            revocations: Vec::new(),
            billed: None,
            generation: 0,
        });
        let state = &mut *state;
        if o.revoked {
            // OUT-3: cancels what it reaches back to, unless that period is closed (T-3).
            state.revocations.push(event.at);
            let reach = event.at - window;
            for occ in state.occurrences.iter_mut().filter(|occ| reach <= occ.at && occ.at <= event.at) {
                if !occ.cancelled && !self.outcome_final(tenant, occ.at, fx) {
                    occ.cancelled = true;
                }
            }
        } else {
            let cancelled = state.revocations.iter().any(|r| *r - window <= event.at && event.at <= *r);
            state.occurrences.push(Occurrence {
                at: event.at,
                event_id: event.event_id.clone(),
                consumer: o.consumer.clone(),
                cancelled,
            });
        }
        let next =
            state.occurrences.iter().filter(|occ| !occ.cancelled).min_by(|a, b| a.order_key().cmp(&b.order_key()));
        let next = next.cloned();
        let current = state.billed.as_ref().map(|b| b.event_id.clone());
        if next.as_ref().map(|n| &n.event_id) == current.as_ref() {
            if let Some(b) = &state.billed {
                fx.counted_in.push(b.interaction);
            }
            return false;
        }
        // OUT-4: the billed occurrence moved. Withdraw the old billing...
        if let Some(old) = state.billed.take() {
            self.withdraw_billing(tenant, meter, old, &event.event_id, fx);
        }
        // ...and bill the new one, in its own month (a void may select it: COR-1).
        match next {
            Some(next) => self.bill_occurrence(tenant, meter, key, state, next, price, fx),
            None => false,
        }
    }

    /// OUT-1, OUT-2: bills an occurrence: a new interaction in its own month with one line
    /// at the type's price, or without it when a void selects it (COR-2).
    #[allow(clippy::too_many_arguments, reason = "the parts of one outcome state, taken apart once")]
    fn bill_occurrence(
        &self,
        tenant: &Tenant,
        meter: &Meter,
        key: Fp,
        state: &mut OutcomeState,
        next: Occurrence,
        price: Decimal,
        fx: &mut Effects,
    ) -> bool {
        let (conversation, outcome_type) = (state.conversation.clone(), state.outcome_type.clone());
        state.generation += 1;
        let period = tenant.period_in(Window::LocalMonth, next.at);
        let interaction = RecordId::of(&[
            b"outcome",
            tenant.id.as_bytes(),
            meter.id.as_bytes(),
            conversation.as_bytes(),
            outcome_type.as_bytes(),
            next.event_id.as_bytes(),
            // Each billing is an interaction of its own: an occurrence billed again after
            // an earlier one was revoked is not the billing that was withdrawn (OUT-4).
            &state.generation.to_le_bytes(),
        ]);
        let voided_by = fx.void_selecting(&Selected {
            meter: &meter.id,
            start: period.start_date,
            consumer: Some(&next.consumer),
            conversation: Some(&conversation),
            integration: None,
            outcome_type: Some(&outcome_type),
        });
        let info = PeriodInfo::from(&period);
        let line_id = RecordId::of(&[b"line", &interaction.0, &state.generation.to_le_bytes()]);
        let lines = match voided_by {
            Some(_) => Vec::new(),
            None => vec![CreditLine {
                id: line_id,
                interaction_id: Some(interaction),
                kind: LineKind::Outcome,
                applies_to: None,
                credits: price,
                rule: "OUT-2",
                period: info.clone(),
                event_id: next.event_id.clone(),
                reverses: None,
                meter: Some(meter.id.clone()),
            }],
        };
        let date = period.start_date;
        if voided_by.is_none() {
            fx.ledger.push((date, Entry::Interaction));
            fx.ledger.push((date, Entry::Credits(OUTCOME_BUCKET, price)));
            fx.meter_entry(tenant, date, meter.index, 1, 0, price);
        }
        let billed = Billed {
            event_id: next.event_id.clone(),
            consumer: next.consumer.clone(),
            at: next.at,
            interaction,
            line: voided_by.is_none().then_some(line_id),
            credits: price,
        };
        if fx.catalogues() {
            let listed = Listed {
                consumer: &billed.consumer,
                conversation: Some(&conversation),
                integration: None,
                outcome_type: Some(&outcome_type),
            };
            let entry =
                self.catalogued(billed.interaction, key, meter.index, period.start_date, Source::Outcome, listed);
            fx.catalogue(entry, voided_by.clone());
        }
        let interaction = Interaction {
            id: interaction,
            tenant: tenant.id.clone(),
            meter: MeterKind::Outcome,
            meter_id: meter.id.clone(),
            key: InteractionKey {
                consumer: billed.consumer.clone(),
                conversation: Some(conversation.clone()),
                integration: None,
            },
            outcome_type: Some(outcome_type.clone()),
            voided_by,
            period: info,
            rule: "OUT-1",
            lines: lines.clone(),
            event_id: next.event_id.clone(),
            origin: None,
        };
        state.billed = Some(billed);
        fx.emit(|| Record {
            tenant: tenant.id.clone(),
            rule: "OUT-1",
            body: RecordBody::Interaction(interaction.clone()),
        });
        fx.lines.extend(lines);
        fx.interactions.push(interaction);
        true
    }

    /// OUT-4: withdraws a billing whose occurrence no longer is the billed one: the
    /// reversal of its line (unless a void withdrew it already), and the interaction
    /// uncounted and no longer listed.
    fn withdraw_billing(&self, tenant: &Tenant, meter: &Meter, old: Billed, by: &str, fx: &mut Effects) {
        let period = tenant.period_in(Window::LocalMonth, old.at);
        let date = period.start_date;
        let info = PeriodInfo::from(&period);
        // Voided, it has no line: withdrawn and uncounted by its void (COR-2).
        if let Some(line) = old.line {
            let l = outcome_reversal(old.interaction, line, old.credits, meter, &info, by);
            fx.ledger.push((date, Entry::Credits(OUTCOME_BUCKET, l.credits)));
            fx.emit(|| Record { tenant: tenant.id.clone(), rule: "OUT-4", body: RecordBody::Line(l.clone()) });
            fx.lines.push(l);
            fx.ledger.push((date, Entry::Uncount));
            fx.meter_entry(tenant, date, meter.index, -1, 0, -old.credits);
        }
        let id = RecordId::of(&[b"withdrawn", &old.interaction.0, by.as_bytes()]);
        fx.emit(|| Record {
            tenant: tenant.id.clone(),
            rule: "OUT-4",
            body: RecordBody::Withdrawn(Withdrawal {
                id,
                interaction_id: old.interaction,
                period: info,
                event_id: by.to_string(),
                voided: false,
            }),
        });
        fx.uncatalogued.push(old.interaction);
    }

    /// The key of an outcome meter's state for one (conversation, outcome type).
    pub(super) fn outcome_key(&self, tenant: &Tenant, meter: u8, conversation: &str, outcome_type: &str) -> Fp {
        let b = self.fingerprinter.start(domain::OUTCOME).str(&tenant.id).u64(u64::from(meter));
        b.str(conversation).str(outcome_type).finish()
    }

    /// OUT-3 (T-3): an outcome whose month is past its lateness horizon is final.
    fn outcome_final(&self, tenant: &Tenant, at: Instant, fx: &Effects) -> bool {
        let period = tenant.period_in(Window::LocalMonth, at);
        let horizon = tenant.settings_at(at).lateness_horizon;
        fx.now.is_some_and(|now| period.end() + horizon < now)
            || fx.closed_before.is_some_and(|c| time::to_millis(period.end()) <= c)
    }
}

/// The reversal of an outcome's line: negative, naming the line and the event that
/// withdrew it, dated in the line's period (OUT-4, COR-2).
pub(super) fn outcome_reversal(
    interaction: RecordId,
    line: RecordId,
    credits: Decimal,
    meter: &Meter,
    period: &PeriodInfo,
    by: &str,
) -> CreditLine {
    CreditLine {
        id: RecordId::of(&[b"reversal", &line.0]),
        interaction_id: Some(interaction),
        kind: LineKind::Outcome,
        applies_to: None,
        credits: -credits,
        rule: "OUT-4",
        period: period.clone(),
        event_id: by.to_string(),
        reverses: Some(line),
        meter: Some(meter.id.clone()),
    }
}
