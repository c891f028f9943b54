//! The detail behind the books, read back from where the records are kept: one
//! interaction explained for a dispute (`ExplainInteraction`), and every line of a
//! statement period (`ExportLines`). Both are scans of the tenant's records, a page at a
//! time ([`Pages`]): the journal's in embedded mode, which keeps every record an event
//! emitted; the shared record streams (one per shard, each record once) under a shared
//! store. Streams are ordered per shard only, so each scan is two passes: the
//! interactions first, then the lines that belong to them.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::Status;

use super::core::Daybook;
use super::store::{BooksError, RecordPosition, Seen, Store};
use crate::api::{self, pb};
use crate::rating::ids::RecordId;
use crate::rating::ledger::StatementPeriod;

/// A tenant's records, a page at a time, from wherever the store keeps them.
pub(super) struct Pages<'a> {
    daybook: &'a Arc<Daybook>,
    store: &'a dyn Store,
    tenant: &'a str,
    at: Option<RecordPosition>,
}

impl<'a> Pages<'a> {
    pub(super) fn new(daybook: &'a Arc<Daybook>, store: &'a dyn Store, tenant: &'a str) -> Self {
        Pages { daybook, store, tenant, at: Some(store.first_records(daybook)) }
    }

    /// The next page; `None` once every record was read.
    pub(super) async fn next(&mut self) -> Result<Option<Vec<Seen>>, Status> {
        let Some(at) = self.at.take() else { return Ok(None) };
        let (page, next) = self.store.record_page(self.daybook, self.tenant, at).await.map_err(books_status)?;
        self.at = next;
        Ok(Some(page))
    }
}

fn books_status(e: BooksError) -> Status {
    match e {
        BooksError::Unavailable(e) => {
            Status::unavailable(format!("the shared store, which keeps the records, did not answer: {e}"))
        }
        e => Status::internal(e.to_string()),
    }
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
    store: &dyn Store,
    tenant: &crate::rating::Tenant,
    target: pb::explain_interaction_request::Target,
) -> Result<pb::ExplainInteractionResponse, Status> {
    use pb::explain_interaction_request::Target;
    // First the interaction, with the instant of the event that started it when the
    // record came with its event (usually in the same journal entry).
    let mut found: Option<pb::Interaction> = None;
    let mut first_at: Option<crate::rating::time::Instant> = None;
    let mut pages = Pages::new(daybook, store, &tenant.id);
    while found.is_none()
        && let Some(page) = pages.next().await?
    {
        for seen in page {
            let event = seen.event.as_ref().map(|(e, _)| e);
            for record in seen.records {
                let Some(pb::record::Body::Interaction(i)) = record.body else { continue };
                let wanted = match &target {
                    Target::InteractionId(id) => &i.interaction_id == id,
                    Target::Selector(s) => matches(&i, s),
                };
                if wanted && found.is_none() {
                    first_at = event
                        .filter(|e| e.event_id == i.event_id)
                        .and_then(|e| crate::rating::time::parse_instant(&e.event_time).ok());
                    found = Some(i);
                }
            }
        }
    }
    // Then what belongs to it: later lines, their reversals, its withdrawal, the voids.
    let id = found.as_ref().map(|f| f.interaction_id.clone()).unwrap_or_default();
    let mut lines: Vec<pb::CreditLine> = found.iter().flat_map(|f| f.lines.iter().cloned()).collect();
    let mut reversals: Vec<pb::CreditLine> = Vec::new();
    let mut withdrawals = Vec::new();
    let mut voids: Vec<pb::VoidAudit> = Vec::new();
    let mut pages = Pages::new(daybook, store, &tenant.id);
    while found.is_some()
        && let Some(page) = pages.next().await?
    {
        for record in page.into_iter().flat_map(|seen| seen.records) {
            match record.body {
                Some(pb::record::Body::Line(l)) if l.interaction_id == id => {
                    if l.reverses_line_id.is_empty() {
                        lines.push(l)
                    } else {
                        reversals.push(l)
                    }
                }
                Some(pb::record::Body::Withdrawal(w)) if w.interaction_id == id => withdrawals.push(w),
                Some(pb::record::Body::Void(v)) => voids.push(v),
                _ => {}
            }
        }
    }
    let Some(mut interaction) = found else {
        return Err(Status::not_found("no interaction of the tenant by that id, or meter, key and period"));
    };
    let id = interaction.interaction_id.clone();
    if let Some(Some(void)) = RecordId::parse(&id).and_then(|rid| daybook.engine().interaction_change(&tenant.id, rid))
    {
        interaction.voided_by = void;
    }
    // Under a shared store, a void's withdrawal record is what marks it (COR-2).
    if let Some(w) = withdrawals.iter().find(|w| w.voided && interaction.voided_by.is_empty()) {
        interaction.voided_by = w.event_id.clone();
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
    // Not in its own entry (a DAR-5 outbound's day, an outcome billed after a revocation,
    // a record read from the streams): looked up once more, by its id.
    if first_at.is_none() {
        first_at = store.event_time(daybook, &tenant.id, &interaction.event_id).await.map_err(books_status)?;
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
    store: &dyn Store,
    tenant: &str,
    period: &StatementPeriod,
    batch: usize,
    tx: tokio::sync::mpsc::Sender<Result<pb::ExportLinesResponse, Status>>,
) -> Result<u64, Status> {
    let (from, to) = match period {
        StatementPeriod::Month(m) => (*m, crate::rating::time::first_of_next_month(*m).pred_opt().unwrap_or(*m)),
        StatementPeriod::Term(a, b) => (*a, *b),
    };
    // Whose each line is: every interaction's meter, key and outcome type.
    let mut owners: HashMap<String, (String, Option<pb::InteractionKey>, String)> = HashMap::new();
    let mut pages = Pages::new(daybook, store, tenant);
    while let Some(page) = pages.next().await? {
        for record in page.into_iter().flat_map(|seen| seen.records) {
            if let Some(pb::record::Body::Interaction(i)) = record.body {
                owners.insert(i.interaction_id.clone(), (i.meter_id.clone(), i.key.clone(), i.outcome_type.clone()));
            }
        }
    }
    let mut rows: Vec<pb::ExportRow> = Vec::new();
    let mut sent = 0u64;
    let mut pages = Pages::new(daybook, store, tenant);
    while let Some(page) = pages.next().await? {
        for record in page.into_iter().flat_map(|seen| seen.records) {
            export_rows(record, &owners, from, to, &mut rows);
        }
        // Sent as the scan goes: a tenant's lines are never held whole.
        while rows.len() >= batch {
            let rest = rows.split_off(batch);
            let full = std::mem::replace(&mut rows, rest);
            sent += full.len() as u64;
            if tx.send(Ok(pb::ExportLinesResponse { rows: full })).await.is_err() {
                return Ok(sent);
            }
        }
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
    owners: &HashMap<String, (String, Option<pb::InteractionKey>, String)>,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    rows: &mut Vec<pb::ExportRow>,
) -> Option<()> {
    let lines = match record.body? {
        pb::record::Body::Interaction(i) => i.lines,
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

impl Daybook {
    /// A page of a tenant's interactions read back from the journal after `after`, as they
    /// stand, and the cursor of the last one when the page is full (more may follow).
    pub async fn journaled_interactions(
        &self,
        tenant: &str,
        page_size: usize,
        after: super::records::Cursor,
    ) -> Result<(Vec<pb::Interaction>, Option<super::records::Cursor>), super::store::BooksError> {
        use super::records::Cursor;
        let internal = |e: String| super::store::BooksError::Internal(e);
        let mut interactions = Vec::new();
        let mut last = after;
        let durable = self.journal().durable();
        let mut from = after.seq.max(1);
        'pages: while from <= durable {
            let until = durable.min(from + super::store::JOURNAL_STEP);
            let dir = self.journal().dir().to_path_buf();
            let entries = tokio::task::spawn_blocking(move || super::journal::read_from(&dir, from, until))
                .await
                .map_err(|e| internal(e.to_string()))?
                .map_err(|e| internal(e.to_string()))?;
            for entry in &entries {
                for (i, bytes) in entry.records.iter().enumerate() {
                    let cursor = Cursor { seq: entry.seq, index: i as u32 };
                    if cursor <= after {
                        continue;
                    }
                    let Ok(record) = <pb::Record as prost::Message>::decode(bytes.as_ref()) else { continue };
                    if record.tenant_id != tenant {
                        continue;
                    }
                    if let Some(pb::record::Body::Interaction(i)) = record.body {
                        if interactions.len() == page_size {
                            break 'pages;
                        }
                        last = cursor;
                        interactions.extend(self.as_it_stands(tenant, i));
                    }
                }
            }
            from = until + 1;
        }
        let more = interactions.len() == page_size;
        Ok((interactions, more.then_some(last)))
    }
}
