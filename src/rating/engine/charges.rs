//! Tenant-level charges that are not interactions: co-browse sessions (CR-7),
//! Functions invocations (CR-8) and pass-through fees (CR-9).

use super::*;

impl Engine {
    /// CR-7: one charge per established session, priced and dated by its first
    /// established event.
    pub(super) fn rate_cobrowse(
        &self,
        (tenant, settings): (&Tenant, &Settings),
        event: &Event,
        c: &event::Cobrowse,
        tie: u32,
        fx: &mut Effects,
    ) -> Disposition {
        fx.prior.get_or_insert(Prior::Cobrowse { counted: false });
        if !c.established {
            return Disposition::NotBillable(NotBillableReason::CobrowseNotEstablished);
        }
        let key = self.fingerprinter.start(domain::COBROWSE).str(&tenant.id).str(&c.session).finish();
        let contribution = CobrowseEntry {
            tenant: tenant.index,
            session: c.session.clone(),
            first_at: event.at,
            first_tie: tie,
            first_event_id: event.event_id.clone(),
        };
        let previous = match fx.mode.cobrowse_before(self, key, tenant.index, &c.session) {
            SessionBefore::Counted => return Disposition::NotBillable(NotBillableReason::CobrowseSessionCounted),
            SessionBefore::Entry(previous) => previous,
        };
        let new = previous.clone().map_or_else(|| contribution.clone(), |old| old.join(contribution.clone()));
        fx.mode.commit_cobrowse(self, key, &new);
        fx.share(|| SharedTouch {
            place: Place::Cobrowse,
            entry: key,
            before: Shared::Cobrowse(previous.clone()),
            after: Shared::Cobrowse(Some(new.clone())),
            expires: event.at + settings.lateness_horizon + TimeDelta::days(2 * PERIOD_SLACK_DAYS),
        });
        if previous.as_ref() == Some(&new) {
            fx.prior = Some(Prior::Cobrowse { counted: true });
            return Disposition::NotBillable(NotBillableReason::CobrowseSessionCounted);
        }
        if let Some(old) = previous {
            fx.keep_whole = true;
            let (old_line, date) = cobrowse_line(tenant, &old);
            let reversal = CreditLine {
                id: RecordId::of(&[b"reversal", &old_line.id.0]),
                credits: -old_line.credits,
                reverses: Some(old_line.id),
                event_id: event.event_id.clone(),
                ..old_line
            };
            fx.add_line(tenant, date, COBROWSE_BUCKET, reversal);
        }
        let (line, date) = cobrowse_line(tenant, &contribution);
        fx.add_line(tenant, date, COBROWSE_BUCKET, line);
        Disposition::Charged
    }

    /// The key of a tenant's Functions month.
    pub(super) fn functions_key(&self, tenant: &Tenant, month_start: NaiveDate) -> Fp {
        self.fingerprinter.start(domain::FUNCTIONS).str(&tenant.id).i64(time::date_to_days(month_start).into()).finish()
    }

    /// CR-8: credits owed for the month's total, minus what earlier events of the month
    /// already owed. Deltas telescope, so their sum is the month's credits in any order.
    pub(super) fn rate_functions(
        &self,
        (tenant, settings): (&Tenant, &Settings),
        event: &Event,
        count: u64,
        event_fp: Fp,
        fx: &mut Effects,
    ) -> Disposition {
        let month = tenant.period_in(Window::LocalMonth, event.at);
        let key = self.functions_key(tenant, month.start_date);
        let rounding = tenant.functions_rounding(month.start_date);
        let empty = || FunctionsEntry {
            tenant: tenant.index,
            month_start: time::date_to_days(month.start_date),
            counts: HashMap::new(),
            shared_total: 0,
        };
        let (before, after) = fx.mode.move_functions(self, (key, event_fp), count, empty);
        fx.share(|| SharedTouch {
            place: Place::Functions { month_start: month.start_date },
            entry: key,
            before: Shared::Functions(before),
            after: Shared::Functions(after),
            expires: month.end() + settings.lateness_horizon + TimeDelta::days(1),
        });
        fx.prior = Some(Prior::Functions(before));
        let delta = credits::functions_credits(after, rounding) - credits::functions_credits(before, rounding);
        if delta.is_zero() {
            return Disposition::NotBillable(NotBillableReason::FunctionsFreeTier);
        }
        let line = CreditLine {
            id: RecordId::of(&[
                b"functions",
                tenant.id.as_bytes(),
                month.label().as_bytes(),
                event.event_id.as_bytes(),
            ]),
            interaction_id: None,
            kind: LineKind::Functions,
            applies_to: None,
            credits: delta,
            rule: "CR-8",
            period: PeriodInfo::from(&month),
            event_id: event.event_id.clone(),
            reverses: None,
            meter: None,
        };
        fx.add_line(tenant, month.start_date, FUNCTIONS_BUCKET, line);
        Disposition::Charged
    }

    /// CR-9: price x 1.15 in the price's currency, dated by the message's local day.
    pub(super) fn charge_pass_through(
        &self,
        tenant: &Tenant,
        event: &Event,
        price: Money,
        event_fp: Fp,
        fx: &mut Effects,
    ) {
        let day = tenant.period_in(Window::LocalDay, event.at);
        let charge = Money::new(credits::pass_through(price.amount), price.currency);
        let record = PassThroughCharge {
            id: RecordId::of(&[b"pass_through", tenant.id.as_bytes(), event.event_id.as_bytes()]),
            price,
            charge,
            period: PeriodInfo::from(&day),
            event_id: event.event_id.clone(),
            origin: match &event.body {
                Body::Message(m) => Some(Origin { channel: m.channel, integration: m.integration.clone() }),
                _ => None,
            },
        };
        // Inserted only if the event is committed (`commit_sets`), here or from its claim.
        let entry = PassThroughEntry {
            tenant: tenant.index,
            date: time::date_to_days(day.start_date),
            currency: price.currency,
            charge: charge.amount,
        };
        fx.pass_through_entry = Some((event_fp, entry));
        fx.ledger.push((day.start_date, Entry::PassThrough(price.currency, charge.amount)));
        fx.emit(|| Record { tenant: tenant.id.clone(), rule: "CR-9", body: RecordBody::PassThrough(record.clone()) });
        fx.pass_through = Some(record);
    }
}

pub(super) fn cobrowse_line(tenant: &Tenant, entry: &CobrowseEntry) -> (CreditLine, NaiveDate) {
    // Dated in the period of the tenant's first meter in force at its first established
    // event (T-3 judges co-browse events by it): a local month when that is an event or
    // outcome meter, or when none is in force.
    let window = tenant.first_meter_at(entry.first_at).map_or(Window::LocalMonth, |m| m.window());
    let period = tenant.period_in(window, entry.first_at);
    let credits = tenant.settings_at(entry.first_at).cobrowse_credits;
    let line = CreditLine {
        id: RecordId::of(&[
            b"cobrowse",
            tenant.id.as_bytes(),
            entry.session.as_bytes(),
            entry.first_event_id.as_bytes(),
        ]),
        interaction_id: None,
        kind: LineKind::Cobrowse,
        applies_to: None,
        credits,
        rule: "CR-7",
        period: PeriodInfo::from(&period),
        event_id: entry.first_event_id.clone(),
        reverses: None,
        meter: None,
    };
    (line, period.start_date)
}
