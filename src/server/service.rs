//! The v1 services over [`Daybook`]: a thin adapter. Requests are converted, rated or
//! queried, and answered once durable.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Access, Auth, Caller, caller};
use super::by_origin::{self, Dimension};
use super::core::{Daybook, TenantOp, TenantRefusal};
use super::records::{Cursor, Followed, Follower, follow};
use super::store::{BooksError, PageToken};
use crate::api::{self, pb};
use crate::rating::event::FieldViolation;
use crate::rating::ledger::StatementPeriod;
use crate::rating::outcome::{Disposition, Outcome, Refusal};

#[derive(Clone)]
pub struct Services {
    pub daybook: Arc<Daybook>,
    /// Where events, tenant operations and queries go: the store chosen at start-up.
    pub store: Arc<dyn super::store::Store>,
    pub max_batch: usize,
    /// The credentials in force (every handler authorizes its caller against them).
    pub auth: Arc<Auth>,
}

fn disposition_name(d: &Disposition) -> &'static str {
    match d {
        Disposition::NewInteraction => "new_interaction",
        Disposition::AlreadyCounted => "already_counted",
        Disposition::Charged => "charged",
        Disposition::NotBillable(_) => "not_billable",
    }
}

impl Services {
    fn meter_of(&self, tenant: &str) -> &'static str {
        self.daybook.engine().tenant(tenant).map(|t| t.meter.kind.name()).unwrap_or("unknown")
    }

    fn count(&self, tenant: &str, result: &Result<Outcome, Refusal>) {
        let (outcome, new, refused) = answer_kind(result);
        let telemetry = self.daybook.telemetry();
        telemetry.count_events(outcome, self.meter_of(tenant), tenant, 1, new);
        if let Some((reason, rule)) = refused {
            telemetry.count_refused(reason, rule);
        }
    }

    /// Counts what a tally holds: one counter update per kind of answer, however many
    /// events a batch answered alike.
    fn count_tally(&self, tally: Tally<'_>) {
        let telemetry = self.daybook.telemetry();
        for (tenant, outcome, events, new_interactions) in tally.answers {
            telemetry.count_events(outcome, self.meter_of(tenant), tenant, events, new_interactions);
        }
        for (reason, rule) in tally.refusals {
            telemetry.count_refused(reason, rule);
        }
    }

    /// Whether calls other than this one are in flight: then its journal entries wait for
    /// theirs, to be written together.
    fn others_in_flight(&self) -> bool {
        self.daybook.telemetry().ingest_calls() > 1
    }

    fn unavailable_if_draining(&self) -> Result<(), Status> {
        if self.daybook.is_draining() {
            return Err(Status::unavailable("daybook is shutting down; retry on another instance"));
        }
        Ok(())
    }

    async fn ingest_one(&self, who: &Caller, mut event: pb::Event) -> Result<pb::EventOutcome, Status> {
        self.unavailable_if_draining()?;
        authorize_ingest(who, &event)?;
        stamp_void(who, &mut event);
        self.prepare_voids(std::slice::from_ref(&event)).await?;
        let tenant = event.tenant_id.clone();
        let (result, wait) = self.store.ingest(&self.daybook, event).await;
        self.count(&tenant, &result);
        if wait > 0 {
            self.daybook.journal().wait_among(wait, self.others_in_flight()).await;
        }
        match result {
            Ok(outcome) => Ok(api::outcome_out(&outcome)),
            Err(refusal) => Err(api::refusal_status(&refusal)),
        }
    }

    /// A tenant's first void needs its catalogue, built from the journal off the async
    /// threads (`Daybook::prepare_void`).
    async fn prepare_voids(&self, events: &[pb::Event]) -> Result<(), Status> {
        for e in events {
            if let Some(pb::event::Kind::Void(_)) = e.kind
                && self.daybook.engine().needs_catalogue(&e.tenant_id)
            {
                let (daybook, tenant) = (self.daybook.clone(), e.tenant_id.clone());
                tokio::task::spawn_blocking(move || daybook.prepare_void(&tenant))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(|e| Status::unavailable(format!("cannot read the journal to void: {e}")))?;
            }
        }
        Ok(())
    }

    fn tenant_status(r: TenantRefusal) -> Status {
        match r {
            TenantRefusal::Invalid(v) => api::invalid_argument(v),
            TenantRefusal::NotFound(m) => Status::not_found(m),
            TenantRefusal::AlreadyExists(m) => Status::already_exists(m),
            TenantRefusal::FailedPrecondition(m) => Status::failed_precondition(m),
            TenantRefusal::Unavailable(m) => Status::unavailable(m),
        }
    }

    /// A tenant operation: through the shared store when there is one, so that every
    /// replica rates the tenant alike.
    async fn tenant_op(&self, op: TenantOp<'_>, who: &Caller) -> Result<(Arc<crate::rating::Tenant>, u64), Status> {
        match op {
            // A new tenant without an id is refused by validation, and names no tenant.
            TenantOp::Create(_) if op.tenant_id().is_empty() => {}
            _ if op.tenant_id().is_empty() => {
                return Err(api::invalid_argument(vec![FieldViolation::new("tenant_id", "is required")]));
            }
            _ => who.require(Access::Manage, op.tenant_id())?,
        }
        self.store.tenant_op(&self.daybook, op, &who.id).await.map_err(Self::tenant_status)
    }

    /// The tenant a request names, once the caller may have `access` to it. The scope is
    /// checked before the tenant is looked up: a caller learns nothing of tenants outside
    /// its scope, not even whether they exist.
    ///
    /// Under a shared store, a tenant another replica created a moment ago is learned
    /// from the store first, as an event naming it would be.
    async fn tenant(&self, who: &Caller, access: Access, id: &str) -> Result<Arc<crate::rating::Tenant>, Status> {
        if id.is_empty() {
            return Err(api::invalid_argument(vec![FieldViolation::new("tenant_id", "is required")]));
        }
        who.require(access, id)?;
        if let Some(tenant) = self.daybook.engine().tenant(id) {
            return Ok(tenant);
        }
        self.store.find_tenant(&self.daybook, id).await.map_err(books_status)?;
        self.daybook.engine().tenant(id).ok_or_else(|| Status::not_found(format!("unknown tenant `{id}`")))
    }
}

/// A query of the books that could not be answered, as a status: the shared store away is
/// UNAVAILABLE (every replica's usage is only there, so a partial answer would be wrong,
/// not late); a token this API did not issue for the tenant is INVALID_ARGUMENT.
fn books_status(e: BooksError) -> Status {
    match e {
        BooksError::Unavailable(_) => Status::unavailable(e.to_string()),
        BooksError::BadToken => api::invalid_argument(vec![FieldViolation::new("page_token", e.to_string())]),
        BooksError::Internal(_) => Status::internal(e.to_string()),
    }
}

/// An event may be ingested only for a tenant of the caller's ingest scope. An event
/// without a tenant id names no tenant: validation refuses it.
fn authorize_ingest(who: &Caller, event: &pb::Event) -> Result<(), Status> {
    if event.tenant_id.is_empty() {
        return Ok(());
    }
    // A void corrects the books: it needs the tenant's manage scope, not ingest (COR).
    if let Some(pb::event::Kind::Void(_)) = event.kind {
        return who.require(Access::Manage, &event.tenant_id);
    }
    who.require(Access::Ingest, &event.tenant_id)
}

/// A void's audit names who made it: the caller's credential, never what the caller says
/// (COR). Stamped before the event is journaled, so a replay keeps it.
fn stamp_void(who: &Caller, event: &mut pb::Event) {
    if let Some(pb::event::Kind::Void(v)) = &mut event.kind {
        v.made_by = who.id.clone();
    }
}

/// An event body a unary request must carry: its absence is a missing field (T-6), not an
/// unknown event type.
fn required<T>(body: Option<T>, field: &str) -> Result<T, Status> {
    body.ok_or_else(|| api::invalid_argument(vec![FieldViolation::new(field, "is required")]))
}

/// Answers counted by kind before they reach the counters: a batch's events are mostly
/// alike (one tenant, a few outcomes), and a counter update costs an attribute lookup.
#[derive(Default)]
struct Tally<'a> {
    /// Tenant, outcome, events, of which new interactions.
    answers: Vec<(&'a str, &'static str, u64, u64)>,
    /// A refusal's reason and rule, one per refused event.
    refusals: Vec<(&'static str, &'static str)>,
}

impl<'a> Tally<'a> {
    fn add(&mut self, tenant: &'a str, result: &Result<Outcome, Refusal>) {
        let (outcome, new, refused) = answer_kind(result);
        // The last few kinds only: a batch of many tenants costs a few comparisons per
        // event, and a kind seen again after them is merely counted in two updates.
        match self.answers.iter_mut().rev().take(8).find(|(t, o, ..)| *o == outcome && *t == tenant) {
            Some((.., events, new_interactions)) => {
                *events += 1;
                *new_interactions += new;
            }
            None => self.answers.push((tenant, outcome, 1, new)),
        }
        self.refusals.extend(refused);
    }
}

/// What an answer is counted as: its outcome label, whether it began an interaction, and
/// a refusal's reason and rule.
fn answer_kind(result: &Result<Outcome, Refusal>) -> (&'static str, u64, Option<(&'static str, &'static str)>) {
    match result {
        Ok(o) if o.retry => ("retry", 0, None),
        Ok(o) => (disposition_name(&o.disposition), u64::from(o.disposition == Disposition::NewInteraction), None),
        Err(refusal) => ("refused", 0, Some((api::refusal_reason(refusal.code), refusal.rule))),
    }
}

/// Each event's tenant and id, kept for its answer once the events are handed over: in
/// one buffer, where copies of them were two allocations per event of a batch.
struct BatchIds {
    text: String,
    /// Where each event's tenant ends and its id ends, in `text`.
    ends: Vec<(usize, usize)>,
}

impl BatchIds {
    fn of(events: &[pb::Event]) -> BatchIds {
        let mut text = String::with_capacity(events.iter().map(|e| e.tenant_id.len() + e.event_id.len()).sum());
        let ends = events
            .iter()
            .map(|e| {
                text.push_str(&e.tenant_id);
                let tenant_end = text.len();
                text.push_str(&e.event_id);
                (tenant_end, text.len())
            })
            .collect();
        BatchIds { text, ends }
    }

    /// Each event's (tenant, event id), in order.
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|(_, id_end)| *id_end));
        starts
            .zip(&self.ends)
            .map(|(start, (tenant_end, id_end))| (&self.text[start..*tenant_end], &self.text[*tenant_end..*id_end]))
    }
}

fn event_of(tenant_id: String, event_id: String, event_time: String, kind: Option<pb::event::Kind>) -> pb::Event {
    pb::Event { tenant_id, event_id, event_time, kind }
}

#[tonic::async_trait]
impl pb::ingest_service_server::IngestService for Services {
    async fn ingest_message(
        &self,
        request: Request<pb::IngestMessageRequest>,
    ) -> Result<Response<pb::IngestMessageResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let kind = r.message.map(pb::event::Kind::Message);
        let outcome = self.ingest_one(&who, event_of(r.tenant_id, r.event_id, r.event_time, kind)).await?;
        Ok(Response::new(pb::IngestMessageResponse { outcome: Some(outcome) }))
    }

    async fn ingest_conversation_opened(
        &self,
        request: Request<pb::IngestConversationOpenedRequest>,
    ) -> Result<Response<pb::IngestConversationOpenedResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let kind = r.conversation_opened.map(pb::event::Kind::ConversationOpened);
        let outcome = self.ingest_one(&who, event_of(r.tenant_id, r.event_id, r.event_time, kind)).await?;
        Ok(Response::new(pb::IngestConversationOpenedResponse { outcome: Some(outcome) }))
    }

    async fn ingest_cobrowse(
        &self,
        request: Request<pb::IngestCobrowseRequest>,
    ) -> Result<Response<pb::IngestCobrowseResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let kind = r.cobrowse.map(pb::event::Kind::Cobrowse);
        let outcome = self.ingest_one(&who, event_of(r.tenant_id, r.event_id, r.event_time, kind)).await?;
        Ok(Response::new(pb::IngestCobrowseResponse { outcome: Some(outcome) }))
    }

    async fn ingest_function_invocations(
        &self,
        request: Request<pb::IngestFunctionInvocationsRequest>,
    ) -> Result<Response<pb::IngestFunctionInvocationsResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        // A missing body is a missing count (T-6), not an unknown event type.
        let kind =
            Some(pb::event::Kind::FunctionInvocations(required(r.function_invocations, "function_invocations")?));
        let outcome = self.ingest_one(&who, event_of(r.tenant_id, r.event_id, r.event_time, kind)).await?;
        Ok(Response::new(pb::IngestFunctionInvocationsResponse { outcome: Some(outcome) }))
    }

    async fn ingest_outcome(
        &self,
        request: Request<pb::IngestOutcomeRequest>,
    ) -> Result<Response<pb::IngestOutcomeResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let kind = Some(pb::event::Kind::Outcome(required(r.outcome, "outcome")?));
        let outcome = self.ingest_one(&who, event_of(r.tenant_id, r.event_id, r.event_time, kind)).await?;
        Ok(Response::new(pb::IngestOutcomeResponse { outcome: Some(outcome) }))
    }

    async fn ingest_void(
        &self,
        request: Request<pb::IngestVoidRequest>,
    ) -> Result<Response<pb::IngestVoidResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let kind = Some(pb::event::Kind::Void(required(r.void, "void")?));
        let outcome = self.ingest_one(&who, event_of(r.tenant_id, r.event_id, r.event_time, kind)).await?;
        Ok(Response::new(pb::IngestVoidResponse { outcome: Some(outcome) }))
    }

    type IngestBatchStream = Pin<Box<dyn Stream<Item = Result<pb::IngestBatchResponse, Status>> + Send>>;

    async fn ingest_batch(
        &self,
        request: Request<Streaming<pb::IngestBatchRequest>>,
    ) -> Result<Response<Self::IngestBatchStream>, Status> {
        self.unavailable_if_draining()?;
        let who = caller(&request)?;
        let mut input = request.into_inner();
        let this = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = input.message() => next,
                    _ = this.daybook.stopped() => {
                        let _ = tx.send(Err(Status::unavailable("daybook is shutting down; send the rest elsewhere"))).await;
                        break;
                    }
                };
                let batch = match next {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(oversized_is_resource_exhausted(status))).await;
                        break;
                    }
                };
                if batch.events.len() > this.max_batch {
                    let status = api::invalid_argument(vec![FieldViolation::new(
                        "events",
                        format!("{} events; at most {} per request", batch.events.len(), this.max_batch),
                    )]);
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                // The whole request is refused before any of it is ingested.
                if let Err(status) = batch.events.iter().try_for_each(|e| authorize_ingest(&who, e)) {
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                let mut batch = batch;
                batch.events.iter_mut().for_each(|e| stamp_void(&who, e));
                if let Err(status) = this.prepare_voids(&batch.events).await {
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                let ids = BatchIds::of(&batch.events);
                let results = this.store.ingest_batch(&this.daybook, batch.events).await;
                let wait = results.iter().map(|(_, w)| *w).max().unwrap_or(0);
                if wait > 0 {
                    this.daybook.journal().wait_among(wait, this.others_in_flight()).await;
                }
                let mut tally = Tally::default();
                let outcomes = results
                    .iter()
                    .zip(ids.iter())
                    .map(|((result, _), (tenant, event_id))| {
                        tally.add(tenant, result);
                        match result {
                            Ok(o) => api::outcome_out(o),
                            Err(r) => api::refusal_out(event_id, r),
                        }
                    })
                    .collect();
                this.count_tally(tally);
                if tx.send(Ok(pb::IngestBatchResponse { outcomes })).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

fn date_in(text: &str, field: &str) -> Result<Option<chrono::NaiveDate>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| api::invalid_argument(vec![FieldViolation::new(field, "expected a date YYYY-MM-DD")]))
}

#[tonic::async_trait]
impl pb::usage_service_server::UsageService for Services {
    async fn explain_interaction(
        &self,
        request: Request<pb::ExplainInteractionRequest>,
    ) -> Result<Response<pb::ExplainInteractionResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let tenant = self.tenant(&who, Access::Read, &r.tenant_id).await?;
        let Some(target) = r.target else {
            let field = FieldViolation::new("target", "give interaction_id, or selector with meter, key and period");
            return Err(api::invalid_argument(vec![field]));
        };
        Ok(Response::new(super::detail::explain(&self.daybook, self.store.as_ref(), &tenant, target).await?))
    }

    type ExportLinesStream = Pin<Box<dyn Stream<Item = Result<pb::ExportLinesResponse, Status>> + Send>>;

    async fn export_lines(
        &self,
        request: Request<pb::ExportLinesRequest>,
    ) -> Result<Response<Self::ExportLinesStream>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        self.tenant(&who, Access::Read, &r.tenant_id).await?;
        let period = StatementPeriod::parse(&r.period).ok_or_else(|| {
            api::invalid_argument(vec![FieldViolation::new("period", "expected YYYY-MM or YYYY-MM-DD/YYYY-MM-DD")])
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (daybook, store) = (self.daybook.clone(), self.store.clone());
        tokio::spawn(async move {
            let exported = super::detail::export(&daybook, store.as_ref(), &r.tenant_id, &period, 1000, tx.clone());
            if let Err(status) = exported.await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_usage(&self, request: Request<pb::GetUsageRequest>) -> Result<Response<pb::GetUsageResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        self.tenant(&who, Access::Read, &r.tenant_id).await?;
        let (from, to) = (date_in(&r.start_date, "start_date")?, date_in(&r.end_date, "end_date")?);
        let grouping = pb::UsageGrouping::try_from(r.group_by).map_err(|_| {
            api::invalid_argument(vec![FieldViolation::new("group_by", "not a UsageGrouping this server knows")])
        })?;
        let tenant = self.daybook.engine().tenant(&r.tenant_id);
        if grouping == pb::UsageGrouping::Day {
            let (from, to) = day_range(from, to)?;
            let days = self.store.usage_by_day(&self.daybook, &r.tenant_id, from, to).await.map_err(books_status)?;
            // The total is the sum of the very figures grouped: one read, so they agree.
            let mut totals = crate::rating::ledger::Totals::default();
            let mut groups = Vec::with_capacity(days.len());
            for (date, day) in days.iter().filter(|(_, day)| !day.is_empty()) {
                exact(day)?;
                totals.add(day);
                let usage = Some(api::usage_out(day, tenant.as_deref()));
                groups.push(pb::UsageGroup { key: date.to_string(), usage });
            }
            exact(&totals)?;
            let usage = Some(api::usage_out(&totals, tenant.as_deref()));
            return Ok(Response::new(pb::GetUsageResponse { usage, groups }));
        }
        let totals = self.store.usage(&self.daybook, &r.tenant_id, from, to).await.map_err(books_status)?;
        exact(&totals)?;
        let dimension = match grouping {
            pb::UsageGrouping::Channel => Some(Dimension::Channel),
            pb::UsageGrouping::Integration => Some(Dimension::Integration),
            _ => None,
        };
        let groups = match (grouping, tenant.as_deref(), dimension) {
            (pb::UsageGrouping::Meter, Some(tenant), _) => api::usage_by_meter(&totals, tenant),
            (_, _, Some(dimension)) => {
                by_origin::groups(&self.daybook, &*self.store, &r.tenant_id, (from, to), dimension, &totals).await?
            }
            _ => Vec::new(),
        };
        let usage = Some(api::usage_out(&totals, tenant.as_deref()));
        Ok(Response::new(pb::GetUsageResponse { usage, groups }))
    }

    async fn get_statement(
        &self,
        request: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::GetStatementResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        self.tenant(&who, Access::Read, &r.tenant_id).await?;
        let period = StatementPeriod::parse(&r.period).ok_or_else(|| {
            api::invalid_argument(vec![FieldViolation::new("period", "expected YYYY-MM or YYYY-MM-DD/YYYY-MM-DD")])
        })?;
        let s = self.store.statement(&self.daybook, &r.tenant_id, &period).await.map_err(books_status)?;
        exact(&s.totals)?;
        Ok(Response::new(pb::GetStatementResponse { statement: Some(api::statement_out(&s)) }))
    }

    async fn list_statements(
        &self,
        request: Request<pb::ListStatementsRequest>,
    ) -> Result<Response<pb::ListStatementsResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        self.tenant(&who, Access::Read, &r.tenant_id).await?;
        let statements = self.store.statements(&self.daybook, &r.tenant_id).await.map_err(books_status)?;
        for s in &statements {
            exact(&s.totals)?;
        }
        Ok(Response::new(pb::ListStatementsResponse {
            statements: statements.iter().map(api::statement_out).collect(),
        }))
    }

    async fn list_interactions(
        &self,
        request: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        self.tenant(&who, Access::Read, &r.tenant_id).await?;
        if r.page_size < 0 {
            return Err(api::invalid_argument(vec![FieldViolation::new("page_size", "must not be negative")]));
        }
        let page_size = if r.page_size == 0 { 100 } else { r.page_size.min(1000) as usize };
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(PageToken::decode(token, &self.daybook, &r.tenant_id).map_err(books_status)?),
        };
        let (interactions, next) =
            self.store.interactions(&self.daybook, &r.tenant_id, page_size, after).await.map_err(books_status)?;
        let next_page_token = next.map(|t| t.encode(&self.daybook, &r.tenant_id)).unwrap_or_default();
        Ok(Response::new(pb::ListInteractionsResponse { interactions, next_page_token }))
    }
}

#[tonic::async_trait]
impl pb::record_service_server::RecordService for Services {
    type WatchRecordsStream = Pin<Box<dyn Stream<Item = Result<pb::WatchRecordsResponse, Status>> + Send>>;

    async fn watch_records(
        &self,
        request: Request<pb::WatchRecordsRequest>,
    ) -> Result<Response<Self::WatchRecordsStream>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let after = if r.after_cursor.is_empty() {
            Cursor::default()
        } else {
            Cursor::parse(&r.after_cursor).ok_or_else(|| {
                api::invalid_argument(vec![FieldViolation::new("after_cursor", "not a cursor from this API")])
            })?
        };
        // Records before the journal's first entry went with their segments
        // (`record_retention`): a cursor before them cannot be resumed without a gap.
        let oldest = self.daybook.oldest_seq();
        if after != Cursor::default() && after.seq + 1 < oldest {
            return Err(records_deleted(after, Cursor { seq: oldest - 1, index: 0 }));
        }
        for t in &r.tenant_ids {
            self.tenant(&who, Access::Read, t).await?;
        }
        let tenants: std::collections::HashSet<String> = r.tenant_ids.into_iter().collect();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let daybook = self.daybook.clone();
        let auth = self.auth.clone();
        tokio::spawn(async move {
            let generation = auth.generation();
            let mut watcher = Watcher { auth, who, generation, tenants, tx, ended: false };
            tokio::select! {
                _ = follow(daybook.hub(), daybook.journal(), after, &mut watcher) => {}
                _ = daybook.stopped() => {}
            }
            if !watcher.ended {
                // The stream ends because the server is draining: resume elsewhere.
                let draining = Status::unavailable("daybook is shutting down; resume from your last cursor");
                let _ = watcher.tx.send(Err(draining)).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// A `WatchRecords` stream's follower: only records of tenants the caller may read, under
/// the credentials in force (a reload that narrows the scope applies at once, and one
/// that removes the credential ends the stream). Its channel is bounded: a slow watcher
/// holds its follower back (it catches up from the journal), never the server's memory.
struct Watcher {
    auth: Arc<Auth>,
    who: Arc<Caller>,
    generation: u64,
    tenants: std::collections::HashSet<String>,
    tx: tokio::sync::mpsc::Sender<Result<pb::WatchRecordsResponse, Status>>,
    /// The stream ended for a reason of its own (revoked, or the client left).
    ended: bool,
}

impl Follower for Watcher {
    async fn take(&mut self, followed: Followed<'_>) -> bool {
        let Followed::Record(stamped) = followed else { return true };
        if self.auth.generation() != self.generation {
            self.generation = self.auth.generation();
            match self.auth.current(&self.who) {
                Some(current) => self.who = current,
                None => {
                    let _ = self.tx.send(Err(Status::unauthenticated("the credential was revoked"))).await;
                    self.ended = true;
                    return false;
                }
            }
        }
        if !self.tenants.is_empty() && !self.tenants.contains(&*stamped.tenant) {
            return true;
        }
        if !self.who.may(Access::Read, &stamped.tenant) {
            return true;
        }
        let response = pb::WatchRecordsResponse { record: Some(stamped.record.clone()) };
        self.ended = self.tx.send(Ok(response)).await.is_err();
        !self.ended
    }
}

/// The dates a by-day breakdown covers: both ends given, at most 366 days apart.
fn day_range(
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
) -> Result<(chrono::NaiveDate, chrono::NaiveDate), Status> {
    let (Some(from), Some(to)) = (from, to) else {
        let field = if from.is_none() { "start_date" } else { "end_date" };
        return Err(api::invalid_argument(vec![FieldViolation::new(field, "is required to group by day")]));
    };
    if (to - from).num_days() > 366 {
        return Err(api::invalid_argument(vec![FieldViolation::new(
            "end_date",
            "at most 366 days after start_date to group by day",
        )]));
    }
    Ok((from, to))
}

#[tonic::async_trait]
impl pb::tenant_service_server::TenantService for Services {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let who = caller(&request)?;
        let t = request
            .into_inner()
            .tenant
            .ok_or_else(|| api::invalid_argument(vec![FieldViolation::new("tenant", "is required")]))?;
        let (tenant, seq) = self.tenant_op(TenantOp::Create(&t), &who).await?;
        self.daybook.journal().wait(seq).await;
        Ok(Response::new(pb::CreateTenantResponse { tenant: Some(api::tenant_out(&tenant.spec)) }))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::GetTenantResponse>, Status> {
        let who = caller(&request)?;
        let tenant = self.tenant(&who, Access::Read, &request.into_inner().tenant_id).await?;
        Ok(Response::new(pb::GetTenantResponse { tenant: Some(api::tenant_out(&tenant.spec)) }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let who = caller(&request)?;
        let engine = self.daybook.engine();
        let tenants = engine
            .tenant_ids()
            .iter()
            .filter(|id| who.may(Access::Read, id))
            .filter_map(|id| engine.tenant(id))
            .map(|t| api::tenant_out(&t.spec))
            .collect();
        Ok(Response::new(pb::ListTenantsResponse { tenants }))
    }

    async fn change_settings(
        &self,
        request: Request<pb::ChangeSettingsRequest>,
    ) -> Result<Response<pb::ChangeSettingsResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let change =
            r.change.ok_or_else(|| api::invalid_argument(vec![FieldViolation::new("change", "is required")]))?;
        let (tenant, seq) = self.tenant_op(TenantOp::Change(&r.tenant_id, &change), &who).await?;
        self.daybook.journal().wait(seq).await;
        Ok(Response::new(pb::ChangeSettingsResponse { tenant: Some(api::tenant_out(&tenant.spec)) }))
    }

    async fn set_plan(&self, request: Request<pb::SetPlanRequest>) -> Result<Response<pb::SetPlanResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let plan = r.plan.unwrap_or_default();
        let (tenant, seq) = self.tenant_op(TenantOp::Plan(&r.tenant_id, &plan), &who).await?;
        self.daybook.journal().wait(seq).await;
        Ok(Response::new(pb::SetPlanResponse { tenant: Some(api::tenant_out(&tenant.spec)) }))
    }
}

/// Totals that some sum could not keep exact (far past the documented limits) are not a
/// bill: the caller is told, never given a rounded figure.
fn exact(totals: &crate::rating::ledger::Totals) -> Result<(), Status> {
    if totals.inexact || totals.credits_inexact() {
        return Err(Status::out_of_range(
            "these totals are beyond what daybook sums exactly (10^15 a month): ask for fewer dates",
        ));
    }
    Ok(())
}

/// tonic refuses a message over `max_message_bytes` with OUT_OF_RANGE, which daybook's
/// callers read as T-4 (an event ahead of the clock). It is RESOURCE_EXHAUSTED, as gRPC's
/// own status table says for a message larger than the receiver accepts.
pub(super) fn oversized_is_resource_exhausted(status: Status) -> Status {
    if is_oversized(status.code() as i32, status.message()) {
        return Status::resource_exhausted(format!("{} (max_message_bytes)", status.message()));
    }
    status
}

/// tonic's decoder refusing a message for its size (its status and message text).
pub(super) fn is_oversized(code: i32, message: &str) -> bool {
    code == tonic::Code::OutOfRange as i32 && message.starts_with("Error, decoded message length too large")
}

/// OUT_OF_RANGE for a cursor older than the records kept, naming the oldest cursor that
/// can be resumed (ErrorInfo `oldest_cursor`).
fn records_deleted(after: Cursor, oldest: Cursor) -> Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let mut details = ErrorDetails::new();
    details.set_error_info("RECORDS_DELETED", "daybook", [("oldest_cursor".to_string(), oldest.to_string())]);
    Status::with_error_details(
        tonic::Code::OutOfRange,
        format!(
            "records after cursor {after} are past record_retention and deleted; resume after {oldest} (the oldest kept)"
        ),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batchs_ids_read_back_in_order_whatever_their_lengths() {
        let events: Vec<pb::Event> = [("acme", "e1"), ("acme", ""), ("", "x"), ("tënant-ü", "ïd-2"), ("b", "e1")]
            .iter()
            .map(|(tenant, id)| pb::Event {
                tenant_id: tenant.to_string(),
                event_id: id.to_string(),
                ..Default::default()
            })
            .collect();
        let ids = BatchIds::of(&events);
        let read: Vec<(&str, &str)> = ids.iter().collect();
        let expected: Vec<(&str, &str)> = events.iter().map(|e| (e.tenant_id.as_str(), e.event_id.as_str())).collect();
        assert_eq!(read, expected);
        assert!(BatchIds::of(&[]).iter().next().is_none());
    }
}
