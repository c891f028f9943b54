//! Usage by channel or by integration (`GetUsage` `group_by`): what the books do not
//! keep apart, read back from the tenant's records (as `ExportLines` reads them). Each
//! figure goes to the origin of what it belongs to: an interaction and its lines (added
//! later or reversed included) to the channel and integration of the message or
//! conversation that started it, a pass-through charge to its message's; what has no
//! origin (co-browse, Functions, outcomes, a DAR-5 charge of a proactive day) to the
//! group with an empty key. Records are dated as the books date them (their period's
//! first local date), so the groups sum to the totals; if they do not (the records of
//! the range are no longer all kept: `record_retention`), the answer says so instead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use tonic::Status;

use super::core::Daybook;
use super::detail::Pages;
use super::store::Store;
use crate::api::{self, pb};
use crate::rating::ledger::{Entry, Totals};

/// What groups are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dimension {
    Channel,
    Integration,
}

impl Dimension {
    fn key(self, origin: Option<&pb::Origin>) -> String {
        let Some(origin) = origin else { return String::new() };
        match self {
            Dimension::Channel => origin.channel.clone(),
            Dimension::Integration => origin.integration_id.clone(),
        }
    }
}

/// The local date the books count a record on: its period's first.
fn date_of(period: Option<&pb::Period>) -> Option<NaiveDate> {
    let period = period?;
    let zone: chrono_tz::Tz = period.time_zone.parse().ok()?;
    let start = chrono::DateTime::parse_from_rfc3339(&period.start_time).ok()?;
    Some(start.with_timezone(&zone).date_naive())
}

/// A line waiting for its interaction's group (streams are ordered per shard only).
struct Pending {
    interaction: String,
    bucket: usize,
    credits: rust_decimal::Decimal,
}

/// The groups of `GetUsage` by `dimension`: they must sum to `totals` (the books'),
/// or the records of the range are not all kept any more (FAILED_PRECONDITION).
pub(super) async fn groups(
    daybook: &Arc<Daybook>,
    store: &dyn Store,
    tenant: &str,
    range: (Option<NaiveDate>, Option<NaiveDate>),
    dimension: Dimension,
    totals: &Totals,
) -> Result<Vec<pb::UsageGroup>, Status> {
    let by = usage_by_origin(daybook, store, tenant, range, dimension).await?;
    let mut sum = Totals::default();
    by.values().for_each(|t| sum.add(t));
    if (sum.interactions, sum.credits, &sum.pass_through) != (totals.interactions, totals.credits, &totals.pass_through)
    {
        return Err(Status::failed_precondition(
            "the records of this range are no longer all kept (record_retention): usage by channel or integration \
             is read from them",
        ));
    }
    Ok(by.into_iter().map(|(key, t)| pb::UsageGroup { key, usage: Some(api::usage_out(&t, None)) }).collect())
}

/// The tenant's usage from `from` to `to` by `dimension`, each group's totals by key.
async fn usage_by_origin(
    daybook: &Arc<Daybook>,
    store: &dyn Store,
    tenant: &str,
    (from, to): (Option<NaiveDate>, Option<NaiveDate>),
    dimension: Dimension,
) -> Result<BTreeMap<String, Totals>, Status> {
    let in_range = |d: NaiveDate| from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t);
    let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
    let mut keys: HashMap<String, String> = HashMap::new();
    // Counted interactions by id, and those withdrawn: an interaction is uncounted once,
    // however many withdrawals name it (a revocation after its void withdraws nothing).
    let mut counted: HashSet<String> = HashSet::new();
    let mut withdrawn: HashSet<String> = HashSet::new();
    let mut lines: Vec<Pending> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut pages = Pages::new(daybook, store, tenant);
    while let Some(page) = pages.next().await? {
        for record in page.into_iter().flat_map(|seen| seen.records) {
            // Each record once, however often it was journaled or emitted.
            if !seen.insert(record.record_id.clone()) {
                continue;
            }
            match record.body {
                Some(pb::record::Body::Interaction(i)) => {
                    let key = dimension.key(i.origin.as_ref());
                    keys.insert(i.interaction_id.clone(), key.clone());
                    // One that started voided counts nowhere and has no lines (COR-2).
                    if date_of(i.period.as_ref()).is_none_or(|d| !in_range(d)) || !i.voided_by.is_empty() {
                        continue;
                    }
                    counted.insert(i.interaction_id.clone());
                    let totals = groups.entry(key).or_default();
                    totals.apply(Entry::Interaction);
                    for line in &i.lines {
                        add_line(totals, line);
                    }
                }
                Some(pb::record::Body::Line(line)) => {
                    if date_of(line.period.as_ref()).is_none_or(|d| !in_range(d)) {
                        continue;
                    }
                    let (Some(bucket), Ok(credits)) = (api::bucket_of(&line), line.credits.parse()) else { continue };
                    lines.push(Pending { interaction: line.interaction_id, bucket, credits });
                }
                Some(pb::record::Body::Withdrawal(w)) if date_of(w.period.as_ref()).is_some_and(in_range) => {
                    withdrawn.insert(w.interaction_id);
                }
                Some(pb::record::Body::PassThrough(p)) => {
                    let Some(charge) = p.charge.filter(|_| date_of(p.period.as_ref()).is_some_and(in_range)) else {
                        continue;
                    };
                    let (Ok(amount), Some(currency)) =
                        (charge.amount.parse(), crate::rating::money::Currency::parse(&charge.currency))
                    else {
                        continue;
                    };
                    groups
                        .entry(dimension.key(p.origin.as_ref()))
                        .or_default()
                        .apply(Entry::PassThrough(currency, amount));
                }
                _ => {}
            }
        }
    }
    let group_of = |interaction: &str| keys.get(interaction).cloned().unwrap_or_default();
    for line in lines {
        let key = if line.interaction.is_empty() { String::new() } else { group_of(&line.interaction) };
        groups.entry(key).or_default().apply(Entry::Credits(line.bucket, line.credits));
    }
    for interaction in withdrawn.iter().filter(|id| counted.contains(*id)) {
        groups.entry(group_of(interaction)).or_default().apply(Entry::Uncount);
    }
    groups.retain(|_, t| !t.is_empty());
    Ok(groups)
}

fn add_line(totals: &mut Totals, line: &pb::CreditLine) {
    if let (Some(bucket), Ok(credits)) = (api::bucket_of(line), line.credits.parse()) {
        totals.apply(Entry::Credits(bucket, credits));
    }
}
