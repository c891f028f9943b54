//! Per-tenant aggregates behind usage queries and statements. Derived data: the engine
//! adds every emitted line here, and can rebuild it from state after a merge.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::credits::{LineKind, blocks};
use super::money::{Amounts, Currency, PERIOD_TOTAL_LIMIT, exact_add, exact_mul};
use super::outcome::Alert;
use super::plan::Plan;
use super::settings::Tenant;
use super::time;

/// Credit buckets: the six interaction line slots, co-browse, Functions, outcomes, units.
pub const BUCKETS: usize = 10;
pub const COBROWSE_BUCKET: usize = 6;
pub const FUNCTIONS_BUCKET: usize = 7;
pub const OUTCOME_BUCKET: usize = 8;
pub const UNITS_BUCKET: usize = 9;

/// The (kind, applies_to) of each bucket, for reporting.
pub const BUCKET_KINDS: [(LineKind, Option<LineKind>); BUCKETS] = [
    (LineKind::Base, None),
    (LineKind::GenerativeAi, Some(LineKind::Base)),
    (LineKind::IntentListening, None),
    (LineKind::PerformanceOptimizer, None),
    (LineKind::GenerativeAi, Some(LineKind::IntentListening)),
    (LineKind::GenerativeAi, Some(LineKind::PerformanceOptimizer)),
    (LineKind::Cobrowse, None),
    (LineKind::Functions, None),
    (LineKind::Outcome, None),
    (LineKind::Units, None),
];

/// Half of [`PERIOD_TOTAL_LIMIT`] (5 x 10^14): from there a tenant's events are checked
/// against the limits.
const HALF_LIMIT: Decimal = Decimal::from_parts(0x5263_4000, 0x0001_C6BF, 0, false, 0);
/// A twentieth of the limit (5 x 10^13): ten credit buckets make the credits, so no month
/// reaches half the limit before one bucket reaches this.
const BUCKET_WATCH: Decimal = Decimal::from_parts(0x883D_2000, 0x0000_2D79, 0, false, 0);

/// Usage totals over some dates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Interactions of every meter, net of voids (COR-2).
    pub interactions: u64,
    pub credits: [Decimal; BUCKETS],
    pub pass_through: Amounts,
    /// Per meter (by its index), for tenants with several meters or other presets than
    /// one interaction meter (MS-3). Empty for a single-meter tenant, whose one meter's
    /// figures are the totals themselves ([`Totals::meter`]).
    pub meters: BTreeMap<u8, MeterTotals>,
    /// Some sum went past what a `Decimal` holds exactly (far beyond the documented
    /// limits: a range of many periods at their limit). The figures are then not a bill:
    /// queries refuse to answer them rather than round.
    pub inexact: bool,
}

/// One meter's figures (MS-3): interactions net of voids, units (EV-1), credits net of
/// reversals.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterTotals {
    pub interactions: i64,
    pub units: u64,
    pub credits: Decimal,
}

impl MeterTotals {
    /// Adds exactly; `false` when some figure would not be exact.
    #[must_use]
    fn add(&mut self, other: &MeterTotals) -> bool {
        let (interactions, units, credits) = (
            self.interactions.checked_add(other.interactions),
            self.units.checked_add(other.units),
            exact_add(self.credits, other.credits),
        );
        match (interactions, units, credits) {
            (Some(i), Some(u), Some(c)) => {
                *self = MeterTotals { interactions: i, units: u, credits: c };
                true
            }
            _ => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.interactions == 0 && self.units == 0 && self.credits.is_zero()
    }
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.inexact |= other.inexact;
        match self.interactions.checked_add(other.interactions) {
            Some(n) => self.interactions = n,
            None => self.inexact = true,
        }
        for (bucket, amount) in other.credits.iter().enumerate() {
            self.add_credits(bucket, *amount);
        }
        if !self.pass_through.add_all(&other.pass_through) {
            self.inexact = true;
        }
        for (m, t) in &other.meters {
            self.add_meter(*m, t);
        }
    }

    fn add_credits(&mut self, bucket: usize, amount: Decimal) {
        match exact_add(self.credits[bucket], amount) {
            Some(sum) => self.credits[bucket] = sum,
            None => self.inexact = true,
        }
    }

    /// A meter whose figures come back to nothing is dropped, as a date with nothing
    /// owed is: the breakdown is the same whichever way it was added up.
    fn add_meter(&mut self, meter: u8, t: &MeterTotals) {
        let mine = self.meters.entry(meter).or_default();
        if !mine.add(t) {
            self.inexact = true;
        }
        if mine.is_empty() {
            self.meters.remove(&meter);
        }
    }

    /// One meter's figures. A single-meter tenant keeps no breakdown: its meter's are the
    /// interactions and the interaction lines' credits.
    pub fn meter(&self, tenant: &Tenant, index: u8) -> MeterTotals {
        if tenant.single_meter() {
            return MeterTotals {
                interactions: self.interactions as i64,
                units: 0,
                credits: self.credits[..COBROWSE_BUCKET].iter().copied().sum(),
            };
        }
        self.meters.get(&index).copied().unwrap_or_default()
    }

    /// The interactions a statement's `dars` and a Starter plan count (MS-5).
    pub fn counted(&self, tenant: &Tenant) -> u64 {
        match tenant.counted_meter {
            Some(m) => self.meter(tenant, m).interactions.max(0) as u64,
            None => 0,
        }
    }

    /// Every bucket's credits. Each bucket is exact ([`Totals::inexact`] says otherwise),
    /// and ten of them stay within a `Decimal` under the documented limits; past them the
    /// sum saturates and the totals are marked inexact.
    pub fn credits(&self) -> Decimal {
        self.credits.iter().try_fold(Decimal::ZERO, |sum, c| exact_add(sum, *c)).unwrap_or(Decimal::MAX)
    }

    /// The sum of every bucket could not be exact.
    pub fn credits_inexact(&self) -> bool {
        self.inexact || self.credits.iter().try_fold(Decimal::ZERO, |sum, c| exact_add(sum, *c)).is_none()
    }

    /// A total past half its limit: a credit bucket past a twentieth (ten buckets make the
    /// credits), or a currency's pass-through past half.
    fn near_limit(&self) -> bool {
        self.inexact
            || (0..BUCKETS).any(|bucket| self.bucket_near_limit(bucket))
            || self.pass_through.iter().any(|(_, a)| a.abs() >= HALF_LIMIT)
    }

    fn bucket_near_limit(&self, bucket: usize) -> bool {
        self.credits[bucket].abs() >= BUCKET_WATCH
    }

    /// Nothing counted and nothing owed (a reversal can bring a period back to this).
    pub fn is_empty(&self) -> bool {
        self.interactions == 0
            && self.credits.iter().all(Decimal::is_zero)
            && self.pass_through.iter().all(|(_, a)| a.is_zero())
            && self.meters.values().all(MeterTotals::is_empty)
    }
}

/// A tenant's aggregates.
#[derive(Debug, Default)]
pub struct Ledger {
    days: BTreeMap<NaiveDate, Totals>,
    months: BTreeMap<NaiveDate, Totals>,
    /// Alerts raised, in the order they were raised.
    pub alerts: Vec<Alert>,
    /// What pruned state contributed: the aggregates are rebuilt from state, and state of
    /// closed periods is gone.
    pub frozen: Frozen,
}

/// The contribution of pruned state (periods closed past the lateness horizon, T-3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frozen {
    pub days: BTreeMap<NaiveDate, Totals>,
    /// Distinct platform users of pruned months (PL-1).
    pub users: BTreeMap<NaiveDate, u64>,
}

impl Frozen {
    pub fn add(&mut self, date: NaiveDate, entry: Entry) {
        self.days.entry(date).or_default().apply(entry);
    }
}

/// One change to the aggregates, dated by the local date it counts on.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    Interaction,
    /// An interaction voided or withdrawn (COR-2, OUT-4): it no longer counts.
    Uncount,
    Credits(usize, Decimal),
    PassThrough(Currency, Decimal),
    /// A meter's share (MS-3), for tenants that keep a breakdown.
    Meter(u8, MeterTotals),
}

impl Totals {
    /// Applies one entry, exactly (or marks the totals inexact).
    pub fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Interaction => self.interactions = self.interactions.saturating_add(1),
            Entry::Uncount => self.interactions = self.interactions.saturating_sub(1),
            Entry::Credits(bucket, amount) => self.add_credits(bucket, amount),
            Entry::PassThrough(currency, amount) => {
                if !self.pass_through.add(currency, amount) {
                    self.inexact = true;
                }
            }
            Entry::Meter(m, t) => self.add_meter(m, &t),
        }
    }
}

impl Ledger {
    /// A ledger holding only what pruned state contributed, and the alerts already
    /// raised: the start of a rebuild from state.
    pub fn rebuild_base(alerts: Vec<Alert>, frozen: Frozen) -> Self {
        let mut ledger = Ledger { alerts, ..Ledger::default() };
        for (date, totals) in &frozen.days {
            ledger.add_totals(*date, totals);
        }
        ledger.frozen = frozen;
        ledger
    }

    /// Adds a date's totals at once (pruned state, or a shared store's rollup).
    pub fn add_totals(&mut self, date: NaiveDate, totals: &Totals) {
        let month = time::first_of_month(date);
        self.days.entry(date).or_default().add(totals);
        self.months.entry(month).or_default().add(totals);
    }

    /// Adds what another ledger's entries came to, date by date (a rebuild made in
    /// parts). Its alerts and frozen part are not taken: a part has none.
    pub fn absorb(&mut self, part: Ledger) {
        for (date, totals) in &part.days {
            self.add_totals(*date, totals);
        }
    }

    /// Adds one entry; `true` when its month's total is now past half a limit, from where
    /// the engine checks each event against the limits (`Engine::check_limits`).
    pub fn add(&mut self, date: NaiveDate, entry: Entry) -> bool {
        // Zero amounts change no total; skipping them keeps a period with nothing owed out
        // of the listings whichever way the aggregates were built.
        if let Entry::Credits(_, amount) | Entry::PassThrough(_, amount) = entry
            && amount.is_zero()
        {
            return false;
        }
        let month = time::first_of_month(date);
        self.days.entry(date).or_default().apply(entry);
        let totals = self.months.entry(month).or_default();
        totals.apply(entry);
        // Only the total this entry changed can have come near a limit.
        totals.inexact
            || match entry {
                Entry::Credits(bucket, _) => totals.bucket_near_limit(bucket),
                Entry::PassThrough(currency, _) => totals.pass_through.get(currency).abs() >= HALF_LIMIT,
                Entry::Interaction | Entry::Uncount | Entry::Meter(..) => false,
            }
    }

    /// Some month's total is past half a limit.
    pub fn near_limit_anywhere(&self) -> bool {
        self.months.values().any(Totals::near_limit)
    }

    /// Which limit an event dated `date` would pass: its pass-through `charge` would take
    /// the month's total in its currency past [`PERIOD_TOTAL_LIMIT`], or the month's
    /// credits have reached it.
    pub fn limit_reached(&self, date: NaiveDate, charge: Option<(Currency, Decimal)>) -> Option<LimitReached> {
        let month = self.months.get(&time::first_of_month(date))?;
        if let Some((currency, amount)) = charge
            && exact_add(month.pass_through.get(currency), amount).is_none_or(|sum| sum > PERIOD_TOTAL_LIMIT)
        {
            return Some(LimitReached::PassThrough(currency));
        }
        (month.credits_inexact() || month.credits() >= PERIOD_TOTAL_LIMIT).then_some(LimitReached::Credits)
    }

    /// Totals over local dates `from..=to` (either end open).
    pub fn usage(&self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> Totals {
        let mut out = Totals::default();
        let from = from.unwrap_or(NaiveDate::MIN);
        let to = to.unwrap_or(NaiveDate::MAX);
        if from > to {
            return out;
        }
        for totals in self.days.range(from..=to).map(|(_, t)| t) {
            out.add(totals);
        }
        out
    }

    /// Each local date's totals from `from` to `to` (both included), for dates with any.
    pub fn days_in(&self, from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, Totals)> {
        if from > to {
            return Vec::new();
        }
        self.days.range(from..=to).map(|(d, t)| (*d, t.clone())).collect()
    }

    pub fn month(&self, month_start: NaiveDate) -> Totals {
        self.months.get(&month_start).cloned().unwrap_or_default()
    }

    /// Local dates with any entry, oldest first.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.days.keys().copied()
    }

    /// Months with any usage, oldest first.
    pub fn months(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.months.iter().filter(|(_, t)| !t.is_empty()).map(|(m, _)| *m)
    }

    pub fn alert_raised(&self, id: &super::ids::RecordId) -> bool {
        self.alerts.iter().any(|a| a.id == *id)
    }
}

/// A month's total an event would take past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReached {
    PassThrough(Currency),
    Credits,
}

/// A plan statement (PL-1, PL-2), with the alerts raised for its period (PL-3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Statement {
    pub period: String,
    pub totals: Totals,
    /// The interactions of the meter a Starter plan counts, or of the tenant's first
    /// `dar`, `cycle` or `mau` meter (MS-5), net of voids.
    pub dars: u64,
    pub overage: Amounts,
    pub overage_credits: Decimal,
    pub expired_credits: Decimal,
    pub committed_credits: Decimal,
    pub top_up_credits: Decimal,
    pub drawn_committed: Decimal,
    pub drawn_top_ups: Decimal,
    pub included: u64,
    pub overage_interactions: u64,
    pub platform_users: u64,
    pub platform_users_over_limit: bool,
    pub alerts: Vec<Alert>,
}

/// What a statement period is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementPeriod {
    /// A local calendar month (Starter, or no plan), by its first date.
    Month(NaiveDate),
    /// A commitment term, both ends inclusive.
    Term(NaiveDate, NaiveDate),
}

impl StatementPeriod {
    pub fn parse(text: &str) -> Option<StatementPeriod> {
        if let Some((a, b)) = text.split_once('/') {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            return (a <= b).then_some(StatementPeriod::Term(a, b));
        }
        NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok().map(StatementPeriod::Month)
    }

    pub fn label(&self) -> String {
        match self {
            StatementPeriod::Month(m) => m.format("%Y-%m").to_string(),
            StatementPeriod::Term(a, b) => format!("{a}/{b}"),
        }
    }
}

/// Builds the statement of `period`. `platform_users` counts distinct agent and bot ids
/// of a month (PL-1).
pub fn statement(
    tenant: &Tenant,
    ledger: &Ledger,
    period: &StatementPeriod,
    platform_users: impl Fn(NaiveDate) -> u64,
) -> Statement {
    let label = period.label();
    let mut s = Statement { period: label.clone(), ..Statement::default() };
    s.alerts = ledger.alerts.iter().filter(|a| a.period == label).cloned().collect();
    let counted = |s: &mut Statement| s.dars = s.totals.counted(tenant);
    match period {
        StatementPeriod::Month(month) => {
            s.totals = ledger.month(*month);
            counted(&mut s);
            s.platform_users = platform_users(*month);
            if let Some(Plan::Starter(plan)) = tenant.plan() {
                // PL-1: included interactions, then blocks of overage.
                s.included = plan.included;
                s.overage_interactions = s.totals.counted(tenant).saturating_sub(plan.included);
                let billed = blocks(s.overage_interactions, plan.block_size, tenant.overage_rounding(*month));
                owe(&mut s, plan.block_price.currency, billed, plan.block_price.amount);
                s.platform_users_over_limit = s.platform_users > plan.max_platform_users;
            }
        }
        StatementPeriod::Term(start, end) => {
            s.totals = ledger.usage(Some(*start), Some(*end));
            counted(&mut s);
            if let Some(Plan::Commitment(plan)) = tenant.plan() {
                // PL-2: the commitment is drawn first, then top-ups bought within the term;
                // beyond both is overage; what is left expires with the term.
                let zone_at = |t| tenant.zone_at(t);
                let top_ups = plan
                    .top_ups
                    .iter()
                    .filter(|t| plan.contains(time::local_date(t.at, zone_at(t.at))))
                    .try_fold(Decimal::ZERO, |sum, t| exact_add(sum, t.credits));
                s.totals.inexact |= top_ups.is_none();
                let top_ups = top_ups.unwrap_or_default();
                let used = s.totals.credits();
                s.committed_credits = plan.credits;
                s.top_up_credits = top_ups;
                s.drawn_committed = used.min(plan.credits).max(Decimal::ZERO);
                s.drawn_top_ups = (used - s.drawn_committed).min(top_ups).max(Decimal::ZERO);
                s.overage_credits = (used - plan.credits - top_ups).max(Decimal::ZERO);
                s.expired_credits = (plan.credits + top_ups - used).max(Decimal::ZERO);
                let overage = s.overage_credits;
                for price in &plan.overage_price {
                    owe(&mut s, price.currency, overage, price.amount);
                }
            }
        }
    }
    s
}

/// Adds `quantity x price` to a statement's overage, exactly, or marks it inexact.
fn owe(s: &mut Statement, currency: Currency, quantity: Decimal, price: Decimal) {
    let added = exact_mul(quantity, price);
    if !added.is_some_and(|amount| s.overage.add(currency, amount)) {
        s.totals.inexact = true;
    }
}

/// The statement periods of a tenant with usage, oldest first: the commitment term, or
/// each local month.
pub fn statement_periods(tenant: &Tenant, ledger: &Ledger) -> Vec<StatementPeriod> {
    match tenant.plan() {
        Some(Plan::Commitment(plan)) => vec![StatementPeriod::Term(plan.term_start, plan.term_end)],
        _ => ledger.months().map(StatementPeriod::Month).collect(),
    }
}

/// The alert base and the usage that counts toward it, for a line or interaction dated
/// `date` (PL-3): the month's interactions for Starter, the term's credits for a
/// commitment. `None` when the plan has no thresholds or the date is outside the term.
pub fn alert_usage(tenant: &Tenant, ledger: &Ledger, date: NaiveDate) -> Option<(StatementPeriod, Decimal, Decimal)> {
    match tenant.plan()? {
        Plan::Starter(plan) if !plan.alerts.is_empty() => {
            let month = time::first_of_month(date);
            let usage = Decimal::from(ledger.month(month).counted(tenant));
            Some((StatementPeriod::Month(month), usage, Decimal::from(plan.included)))
        }
        Plan::Commitment(plan) if !plan.alerts.is_empty() && plan.contains(date) => {
            let usage = ledger.usage(Some(plan.term_start), Some(plan.term_end)).credits();
            Some((StatementPeriod::Term(plan.term_start, plan.term_end), usage, plan.credits))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_thresholds_are_half_and_a_twentieth_of_the_limit() {
        assert_eq!(HALF_LIMIT * Decimal::TWO, PERIOD_TOTAL_LIMIT);
        assert_eq!(BUCKET_WATCH * Decimal::from(20), PERIOD_TOTAL_LIMIT);
    }
}
