//! The detail behind the books, read back from the journal: one interaction explained
//! for a dispute (`ExplainInteraction`), and every line of a statement period
//! (`ExportLines`). The journal keeps every record an event emitted, in order, so both
//! are a scan of the tenant's records; embedded mode only (a shared store keeps its
//! records in Redis streams, not here).

use std::collections::HashMap;
use std::sync::Arc;

use tonic::Status;

use super::core::Daybook;
use super::journal::EntryKind;
use crate::api::{self, pb};
use crate::rating::ids::RecordId;
use crate::rating::ledger::StatementPeriod;

/// Journal entries read per step of a scan.
const STEP: u64 = 4096;

/// What a scan sees of one journal entry: its accepted event (if it is one) and its
/// records of the tenant.
struct Seen {
    event: Option<(pb::Event, Option<i64>)>,
    records: Vec<pb::Record>,
}

/// The tenant's journal entries `from..=until`, in order.
async fn block(daybook: &Arc<Daybook>, tenant: &str, from: u64, until: u64) -> Result<Vec<Seen>, Status> {
    let dir = daybook.journal.dir().to_path_buf();
    let entries = tokio::task::spawn_blocking(move || super::journal::read_from(&dir, from, until))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
    let mut out = Vec::new();
    for entry in entries {
        let event = match &entry.kind {
            Some(EntryKind::Event(e)) => <pb::Event as prost::Message>::decode(e.event.as_slice())
                .ok()
                .filter(|ev| ev.tenant_id == tenant)
                .map(|ev| (ev, e.now_nanos)),
            _ => None,
        };
        let records: Vec<pb::Record> = entry
            .records
            .iter()
            .filter_map(|b| <pb::Record as prost::Message>::decode(b.as_ref()).ok())
            .filter(|r| r.tenant_id == tenant)
            .collect();
        if event.is_some() || !records.is_empty() {
            out.push(Seen { event, records });
        }
    }
    Ok(out)
}

/// Visits the tenant's journal entries in order, a block at a time.
async fn scan(daybook: &Arc<Daybook>, tenant: &str, mut visit: impl FnMut(Seen)) -> Result<(), Status> {
    let durable = daybook.journal.durable();
    let mut from = 1;
    while from <= durable {
        let until = durable.min(from + STEP);
        block(daybook, tenant, from, until).await?.into_iter().for_each(&mut visit);
        from = until + 1;
    }
    Ok(())
}

fn embedded_only(daybook: &Daybook) -> Result<(), Status> {
    if daybook.is_shared() {
        return Err(Status::unimplemented(
            "the detail is read from the embedded journal; with a shared Redis store it is not served yet",
        ));
    }
    Ok(())
}

/// Whether an interaction record is the one a selector names.
fn matches(i: &pb::Interaction, s: &pb::InteractionSelector) -> bool {
    let key = i.key.clone().unwrap_or_default();
    let want = s.key.clone().unwrap_or_default();
    i.meter_id == s.meter_id
        && key == want
        && i.outcome_type == s.outcome_type
        && i.period.as_ref().is_some_and(|p| p.label == s.period)
}

/// `ExplainInteraction`.
pub(super) async fn explain(
    daybook: &Arc<Daybook>,
    tenant: &crate::rating::Tenant,
    target: pb::explain_interaction_request::Target,
) -> Result<pb::ExplainInteractionResponse, Status> {
    use pb::explain_interaction_request::Target;
    embedded_only(daybook)?;
    let mut found: Option<pb::Interaction> = None;
    let mut lines: Vec<pb::CreditLine> = Vec::new();
    let mut reversals: Vec<pb::CreditLine> = Vec::new();
    let mut withdrawals = Vec::new();
    let mut voids: Vec<pb::VoidAudit> = Vec::new();
    let mut first_at: Option<crate::rating::time::Instant> = None;
    scan(daybook, &tenant.id, |seen| {
        let event = seen.event.as_ref().map(|(e, _)| e);
        for record in seen.records {
            // Its lines, reversals and withdrawal come with or after the interaction's own
            // record: only those of the interaction are kept.
            let ours = |interaction_id: &str| found.as_ref().is_some_and(|f| f.interaction_id == interaction_id);
            match record.body {
                Some(pb::record::Body::Interaction(i)) if found.is_none() => {
                    let wanted = match &target {
                        Target::InteractionId(id) => &i.interaction_id == id,
                        Target::Selector(s) => matches(&i, s),
                    };
                    if wanted {
                        // Usually the event that started it is this entry's.
                        first_at = event
                            .filter(|e| e.event_id == i.event_id)
                            .and_then(|e| crate::rating::time::parse_instant(&e.event_time).ok());
                        lines.extend(i.lines.iter().cloned());
                        found = Some(i);
                    }
                }
                Some(pb::record::Body::Line(l)) if ours(&l.interaction_id) => {
                    if l.reverses_line_id.is_empty() {
                        lines.push(l)
                    } else {
                        reversals.push(l)
                    }
                }
                Some(pb::record::Body::Withdrawal(w)) if ours(&w.interaction_id) => withdrawals.push(w),
                Some(pb::record::Body::Void(v)) => voids.push(v),
                _ => {}
            }
        }
    })
    .await?;
    let Some(mut interaction) = found else {
        return Err(Status::not_found("no interaction of the tenant by that id, or meter, key and period"));
    };
    let id = interaction.interaction_id.clone();
    if let Some(Some(void)) = RecordId::parse(&id).and_then(|rid| daybook.engine().interaction_change(&tenant.id, rid))
    {
        interaction.voided_by = void;
    }
    let explained = lines
        .iter()
        .map(|l| pb::ExplainedLine {
            line: Some(l.clone()),
            reversals: reversals.iter().filter(|r| r.reverses_line_id == l.line_id).cloned().collect(),
        })
        .collect();
    voids.retain(|v| v.selected_interaction_ids.contains(&id) || v.event_id == interaction.voided_by);
    let period_start = interaction
        .period
        .as_ref()
        .and_then(|p| crate::rating::time::parse_instant(&p.start_time).ok())
        .unwrap_or(crate::rating::time::Instant::MIN_UTC);
    // Not in its own entry (a DAR-5 outbound's day, an outcome billed after a revocation):
    // looked up once more, by its id.
    if first_at.is_none() {
        let wanted = interaction.event_id.clone();
        scan(daybook, &tenant.id, |seen| {
            if let Some((e, _)) = seen.event.filter(|(e, _)| e.event_id == wanted) {
                first_at = first_at.or(crate::rating::time::parse_instant(&e.event_time).ok());
            }
        })
        .await?;
    }
    let first = first_at.unwrap_or(period_start);
    let settings = |at| api::settings_out(&tenant.settings_at(at).as_patch());
    Ok(pb::ExplainInteractionResponse {
        meter: tenant.meter_named(&interaction.meter_id).map(|m| api::meter_def_out(&m.def)),
        settings_at_period_start: Some(settings(period_start)),
        settings_at_first_event: Some(settings(first)),
        interaction: Some(interaction),
        lines: explained,
        withdrawals,
        voids,
        time_zone_database: chrono_tz::IANA_TZDB_VERSION.to_string(),
    })
}

/// `ExportLines`: every credit line dated in the statement period, sent in rows of up to
/// `batch`. Returns the number of rows.
pub(super) async fn export(
    daybook: &Arc<Daybook>,
    tenant: &str,
    period: &StatementPeriod,
    batch: usize,
    tx: tokio::sync::mpsc::Sender<Result<pb::ExportLinesResponse, Status>>,
) -> Result<u64, Status> {
    embedded_only(daybook)?;
    let (from, to) = match period {
        StatementPeriod::Month(m) => (*m, crate::rating::time::first_of_next_month(*m).pred_opt().unwrap_or(*m)),
        StatementPeriod::Term(a, b) => (*a, *b),
    };
    let mut owners: HashMap<String, (String, Option<pb::InteractionKey>, String)> = HashMap::new();
    let mut rows: Vec<pb::ExportRow> = Vec::new();
    let mut sent = 0u64;
    let durable = daybook.journal.durable();
    let mut start = 1;
    while start <= durable {
        let until = durable.min(start + STEP);
        for seen in block(daybook, tenant, start, until).await? {
            for record in seen.records {
                export_rows(record, &mut owners, from, to, &mut rows);
            }
        }
        // Sent as the scan goes: a tenant's detail is never held whole.
        while rows.len() >= batch {
            let rest = rows.split_off(batch);
            let full = std::mem::replace(&mut rows, rest);
            sent += full.len() as u64;
            if tx.send(Ok(pb::ExportLinesResponse { rows: full })).await.is_err() {
                return Ok(sent);
            }
        }
        start = until + 1;
    }
    if !rows.is_empty() {
        sent += rows.len() as u64;
        let _ = tx.send(Ok(pb::ExportLinesResponse { rows })).await;
    }
    Ok(sent)
}

/// The rows of one record: an interaction's lines, or a line, dated within
/// `from..=to` (a line counts on its period's first local date).
fn export_rows(
    record: pb::Record,
    owners: &mut HashMap<String, (String, Option<pb::InteractionKey>, String)>,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    rows: &mut Vec<pb::ExportRow>,
) -> Option<()> {
    let lines = match record.body? {
        pb::record::Body::Interaction(i) => {
            owners.insert(i.interaction_id.clone(), (i.meter_id.clone(), i.key.clone(), i.outcome_type.clone()));
            i.lines
        }
        pb::record::Body::Line(l) => vec![l],
        _ => return None,
    };
    for line in lines {
        // The period's start, in its zone: its first local date.
        let Some(date) = line.period.as_ref().and_then(|p| p.start_time.get(..10)).map(str::to_string) else {
            continue;
        };
        let Ok(day) = date.parse::<chrono::NaiveDate>() else { continue };
        if day < from || day > to {
            continue;
        }
        let owner = owners.get(&line.interaction_id).cloned();
        let (meter_id, key, outcome_type) = owner.unwrap_or_else(|| (line.meter_id.clone(), None, String::new()));
        rows.push(pb::ExportRow { line: Some(line), meter_id, key, outcome_type, date });
    }
    Some(())
}

impl Daybook {
    /// An interaction record as it stands now: voided since (COR-2, with the void that
    /// selected it), or `None` when it is no longer billed (OUT-4).
    pub fn as_it_stands(&self, tenant: &str, mut interaction: pb::Interaction) -> Option<pb::Interaction> {
        let id = RecordId::parse(&interaction.interaction_id);
        match id.and_then(|id| self.engine().interaction_change(tenant, id)) {
            Some(None) => None,
            Some(Some(void)) => {
                interaction.voided_by = void;
                Some(interaction)
            }
            None => Some(interaction),
        }
    }
}
