//! The books: usage, statements (PL-1, PL-2), platform users, and usage alerts (PL-3).

use super::*;

impl Engine {
    /// Usage over local dates `from..=to`.
    pub fn usage(&self, tenant_id: &str, from: Option<NaiveDate>, to: Option<NaiveDate>) -> Option<Totals> {
        let slot = self.slot(tenant_id)?;
        let ledger = slot.ledger.lock().unpoisoned();
        Some(ledger.usage(from, to))
    }

    /// Each local date's usage from `from` to `to`, for dates with any.
    pub fn usage_by_day(&self, tenant_id: &str, from: NaiveDate, to: NaiveDate) -> Option<Vec<(NaiveDate, Totals)>> {
        let slot = self.slot(tenant_id)?;
        let ledger = slot.ledger.lock().unpoisoned();
        Some(ledger.days_in(from, to))
    }

    /// The statement of one period.
    pub fn statement(&self, tenant_id: &str, period: &StatementPeriod) -> Option<Statement> {
        let slot = self.slot(tenant_id)?;
        let tenant = slot.config();
        let ledger = slot.ledger.lock().unpoisoned();
        Some(ledger::statement(&tenant, &ledger, period, |month| self.platform_users(&tenant, &ledger, month)))
    }

    /// Every statement with usage, oldest first.
    pub fn statements(&self, tenant_id: &str) -> Option<Vec<Statement>> {
        let slot = self.slot(tenant_id)?;
        let tenant = slot.config();
        let ledger = slot.ledger.lock().unpoisoned();
        let periods = ledger::statement_periods(&tenant, &ledger);
        Some(
            periods
                .iter()
                .map(|p| ledger::statement(&tenant, &ledger, p, |month| self.platform_users(&tenant, &ledger, month)))
                .collect(),
        )
    }

    /// Judges a tenant's usage alerts (PL-3) on aggregates built elsewhere (a shared
    /// store's), date by date as a rebuild does: the alerts go into `ledger`, their
    /// records are returned.
    pub fn judge_alerts(&self, tenant_id: &str, ledger: &mut Ledger) -> Vec<Record> {
        let Some(tenant) = self.tenant(tenant_id) else { return Vec::new() };
        let dates: Vec<NaiveDate> = ledger.dates().collect();
        let mut records = Vec::new();
        for date in dates {
            raise_alerts(&tenant, ledger, date, "", &mut records);
        }
        records
    }

    /// The key of a tenant's platform users in the local month starting on `month` (PL-1).
    pub(super) fn users_key(&self, tenant: &Tenant, month: NaiveDate) -> Fp {
        self.fingerprinter.start(domain::PLATFORM_USER).str(&tenant.id).i64(time::date_to_days(month).into()).finish()
    }

    /// Distinct platform users of a month: pruned months keep only their count. Called
    /// with the tenant's ledger locked, which pruning also holds.
    pub(super) fn platform_users(&self, tenant: &Tenant, ledger: &Ledger, month: NaiveDate) -> u64 {
        let live = self.users.get(&self.users_key(tenant, month)).map(|u| u.senders.len() as u64).unwrap_or(0);
        live + ledger.frozen.users.get(&month).copied().unwrap_or(0)
    }
}

/// PL-3: raises each threshold the usage counting on `date` has reached, once per period.
pub(super) fn raise_alerts(
    tenant: &Tenant,
    ledger: &mut Ledger,
    date: NaiveDate,
    event_id: &str,
    records: &mut Vec<Record>,
) {
    let Some((period, usage, base)) = ledger::alert_usage(tenant, ledger, date) else {
        return;
    };
    let label = period.label();
    let thresholds: Vec<Decimal> = tenant.plan().map(|p| p.alerts().to_vec()).unwrap_or_default();
    for threshold in thresholds {
        if usage < threshold * base {
            continue;
        }
        let id = RecordId::of(&[
            b"alert",
            tenant.id.as_bytes(),
            label.as_bytes(),
            threshold.normalize().to_string().as_bytes(),
        ]);
        if ledger.alert_raised(&id) {
            continue;
        }
        let alert = Alert { id, period: label.clone(), threshold, usage, base, event_id: event_id.to_string() };
        ledger.alerts.push(alert.clone());
        records.push(Record { tenant: tenant.id.clone(), rule: "PL-3", body: RecordBody::Alert(alert) });
    }
}
