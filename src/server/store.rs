//! The store seam: what the node asks of where its state is kept durable and, with
//! several replicas, shared.
//!
//! [`Daybook`] owns the engine, the ordering stripes, the journal and the record stream;
//! a [`Store`] decides how an event, a tenant operation and a query reach them. Two
//! implementations, chosen once at start-up (`Daybook::open_shared`):
//!
//! - [`Embedded`]: this process's journal and snapshots are the state. An event is rated
//!   under its ordering stripe and journaled; the books are the engine's; interactions are
//!   read back from the journal's records.
//! - [`Redis`]: a Redis store shared by replicas (`server::shared`): claims on one
//!   shared entry per event, tenant logs for tenants whose rules span several, shared
//!   books, record streams.
//!
//! The gRPC services, telemetry and the admin port see only this trait. A new backend is
//! one implementation of it, chosen in `Daybook::open_shared`, plus a line in
//! `with_every_store!` (`tests/it/server.rs`) so that every behaviour test runs on it.

use std::sync::Arc;

use super::core::{Daybook, TenantOp, TenantRefusal};
use super::records::Cursor;
use crate::api::pb;
use crate::rating::Tenant;
use crate::rating::ids::domain;
use crate::rating::ledger::{Statement, StatementPeriod, Totals};
use crate::rating::outcome::{Outcome, Refusal};
use crate::store::redis::StoreError;

/// An event's answer, and the journal position the answer waits for (0: none).
pub type Decided = (Result<Outcome, Refusal>, u64);

/// Why a query of the books could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum BooksError {
    /// The shared store did not answer: a partial answer would be wrong, not late.
    #[error("usage across replicas is in the shared store, which did not answer: {0}; retry")]
    Unavailable(#[from] StoreError),
    /// A page token this API did not issue for this tenant and store.
    #[error("not a page token of this tenant from this API")]
    BadToken,
    /// Local state could not be read (the journal).
    #[error("{0}")]
    Internal(String),
}

/// Where a listing of interactions continues: typed, and opaque to callers (see
/// [`PageToken::encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageToken {
    /// After this record of the journal.
    Journal(Cursor),
    /// After this entry of one shard's shared record stream.
    Streams { shard: u32, entry: String },
}

impl PageToken {
    /// The token as callers see it: hex of its kind, its position and a keyed tag over
    /// the tenant and the position, so that a token cannot be made up, nor carried over
    /// to another tenant's listing.
    pub fn encode(&self, daybook: &Daybook, tenant: &str) -> String {
        let body = self.body();
        let mut bytes = body.clone();
        bytes.extend_from_slice(&tag(daybook, tenant, &body).to_le_bytes());
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The inverse of [`PageToken::encode`] for this tenant.
    pub fn decode(text: &str, daybook: &Daybook, tenant: &str) -> Result<PageToken, BooksError> {
        let bytes = unhex(text).ok_or(BooksError::BadToken)?;
        let split = bytes.len().checked_sub(8).ok_or(BooksError::BadToken)?;
        let (body, check) = bytes.split_at(split);
        if check != tag(daybook, tenant, body).to_le_bytes() {
            return Err(BooksError::BadToken);
        }
        let token = match body.split_first() {
            Some((1, rest)) if rest.len() == 12 => Some(PageToken::Journal(Cursor {
                seq: u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")),
                index: u32::from_le_bytes(rest[8..].try_into().expect("4 bytes")),
            })),
            Some((2, rest)) if !rest.is_empty() => {
                let entry = std::str::from_utf8(&rest[1..]).ok().map(str::to_string);
                entry.map(|entry| PageToken::Streams { shard: u32::from(rest[0]), entry })
            }
            _ => None,
        };
        token.ok_or(BooksError::BadToken)
    }

    fn body(&self) -> Vec<u8> {
        match self {
            PageToken::Journal(c) => [&[1u8][..], &c.seq.to_le_bytes(), &c.index.to_le_bytes()].concat(),
            PageToken::Streams { shard, entry } => [&[2u8, *shard as u8][..], entry.as_bytes()].concat(),
        }
    }
}

fn tag(daybook: &Daybook, tenant: &str, body: &[u8]) -> u64 {
    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
    daybook.engine().fingerprinter().start(domain::PAGE_TOKEN).str(tenant).str(&hex).finish().0
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// Journal entries read per step of a scan.
pub const JOURNAL_STEP: u64 = 4096;

/// What a scan sees of one journal entry or stream record: the accepted event it carries
/// (journal entries only) and its records of the tenant.
pub struct Seen {
    pub event: Option<(pb::Event, Option<i64>)>,
    pub records: Vec<pb::Record>,
}

/// Where a scan of a tenant's records continues.
#[derive(Debug, Clone)]
pub enum RecordPosition {
    /// Journal entries from `next` to `durable`.
    Journal { next: u64, durable: u64 },
    /// The shared streams, shard by shard, after a stream entry.
    Streams { shard: u32, after: Option<String> },
}

/// The tenant's journal entries `from..=until`, in order.
async fn journal_block(daybook: &Daybook, tenant: &str, from: u64, until: u64) -> Result<Vec<Seen>, BooksError> {
    use super::journal::EntryKind;
    let dir = daybook.journal().dir().to_path_buf();
    let entries = tokio::task::spawn_blocking(move || super::journal::read_from(&dir, from, until))
        .await
        .map_err(|e| BooksError::Internal(e.to_string()))?
        .map_err(|e| BooksError::Internal(e.to_string()))?;
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

/// What the node asks of where its state is kept (module docs).
/// The store a daybook keeps its books in: Redis when it has a shared store, else the
/// embedded journal. Chosen here, once, for every caller.
pub fn for_daybook(daybook: &Daybook) -> Arc<dyn Store> {
    if daybook.is_shared() { Arc::new(Redis) } else { Arc::new(Embedded) }
}

#[tonic::async_trait]
pub trait Store: Send + Sync {
    /// Rates one event.
    async fn ingest(&self, daybook: &Daybook, event: pb::Event) -> Decided;
    /// Rates a batch; events of one key keep their order.
    async fn ingest_batch(&self, daybook: &Daybook, events: Vec<pb::Event>) -> Vec<Decided>;
    /// Creates or changes a tenant, made by the credential `by`.
    async fn tenant_op(
        &self,
        daybook: &Daybook,
        op: TenantOp<'_>,
        by: &str,
    ) -> Result<(Arc<Tenant>, u64), TenantRefusal>;
    /// Learns a tenant this node does not know, if the store has it.
    async fn find_tenant(&self, daybook: &Daybook, id: &str) -> Result<(), BooksError>;
    /// A tenant's usage over local dates `from..=to` (all when open).
    async fn usage(
        &self,
        daybook: &Daybook,
        tenant: &str,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
    ) -> Result<Totals, BooksError>;
    /// A tenant's usage date by date, for dates with any.
    async fn usage_by_day(
        &self,
        daybook: &Daybook,
        tenant: &str,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<(chrono::NaiveDate, Totals)>, BooksError>;
    /// A tenant's statement of one period (PL-1, PL-2).
    async fn statement(
        &self,
        daybook: &Daybook,
        tenant: &str,
        period: &StatementPeriod,
    ) -> Result<Statement, BooksError>;
    /// Every statement of a tenant with usage.
    async fn statements(&self, daybook: &Daybook, tenant: &str) -> Result<Vec<Statement>, BooksError>;
    /// A page of a tenant's interactions as they stand, after `after`, and where the next
    /// page starts (`None`: no more).
    async fn interactions(
        &self,
        daybook: &Daybook,
        tenant: &str,
        page_size: usize,
        after: Option<PageToken>,
    ) -> Result<(Vec<pb::Interaction>, Option<PageToken>), BooksError>;
    /// Where a scan of a tenant's records starts (the detail behind the books).
    fn first_records(&self, daybook: &Daybook) -> RecordPosition;
    /// A page of a tenant's records from `at`, and where the next page starts (`None`:
    /// no more). Pages may be empty.
    async fn record_page(
        &self,
        daybook: &Daybook,
        tenant: &str,
        at: RecordPosition,
    ) -> Result<(Vec<Seen>, Option<RecordPosition>), BooksError>;
    /// The event time of a tenant's event, where the store keeps events (`None`: not
    /// found, or the store keeps none of the tenant's).
    async fn event_time(
        &self,
        daybook: &Daybook,
        tenant: &str,
        event_id: &str,
    ) -> Result<Option<crate::rating::time::Instant>, BooksError>;
}

/// This process's journal and snapshots are the state.
pub struct Embedded;

/// A Redis store shared by replicas (`server::shared`).
pub struct Redis;

fn unknown(tenant: &str) -> BooksError {
    BooksError::Internal(format!("unknown tenant `{tenant}`"))
}

#[tonic::async_trait]
impl Store for Embedded {
    async fn ingest(&self, daybook: &Daybook, event: pb::Event) -> Decided {
        daybook.ingest(event)
    }

    async fn ingest_batch(&self, daybook: &Daybook, events: Vec<pb::Event>) -> Vec<Decided> {
        daybook.ingest_batch(events)
    }

    async fn tenant_op(
        &self,
        daybook: &Daybook,
        op: TenantOp<'_>,
        by: &str,
    ) -> Result<(Arc<Tenant>, u64), TenantRefusal> {
        daybook.tenant_op(op, by)
    }

    async fn find_tenant(&self, _: &Daybook, _: &str) -> Result<(), BooksError> {
        // Every tenant this node may rate is in its engine already.
        Ok(())
    }

    async fn usage(
        &self,
        daybook: &Daybook,
        tenant: &str,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
    ) -> Result<Totals, BooksError> {
        daybook.engine().usage(tenant, from, to).ok_or_else(|| unknown(tenant))
    }

    async fn usage_by_day(
        &self,
        daybook: &Daybook,
        tenant: &str,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<(chrono::NaiveDate, Totals)>, BooksError> {
        daybook.engine().usage_by_day(tenant, from, to).ok_or_else(|| unknown(tenant))
    }

    async fn statement(
        &self,
        daybook: &Daybook,
        tenant: &str,
        period: &StatementPeriod,
    ) -> Result<Statement, BooksError> {
        daybook.engine().statement(tenant, period).ok_or_else(|| unknown(tenant))
    }

    async fn statements(&self, daybook: &Daybook, tenant: &str) -> Result<Vec<Statement>, BooksError> {
        daybook.engine().statements(tenant).ok_or_else(|| unknown(tenant))
    }

    async fn interactions(
        &self,
        daybook: &Daybook,
        tenant: &str,
        page_size: usize,
        after: Option<PageToken>,
    ) -> Result<(Vec<pb::Interaction>, Option<PageToken>), BooksError> {
        let after = match after {
            None => Cursor::default(),
            Some(PageToken::Journal(cursor)) => cursor,
            Some(PageToken::Streams { .. }) => return Err(BooksError::BadToken),
        };
        let (interactions, last) = daybook.journaled_interactions(tenant, page_size, after).await?;
        Ok((interactions, last.map(PageToken::Journal)))
    }

    fn first_records(&self, daybook: &Daybook) -> RecordPosition {
        RecordPosition::Journal { next: 1, durable: daybook.journal().durable() }
    }

    async fn record_page(
        &self,
        daybook: &Daybook,
        tenant: &str,
        at: RecordPosition,
    ) -> Result<(Vec<Seen>, Option<RecordPosition>), BooksError> {
        let RecordPosition::Journal { next, durable } = at else { return Ok((Vec::new(), None)) };
        if next > durable {
            return Ok((Vec::new(), None));
        }
        let until = durable.min(next + JOURNAL_STEP);
        let page = journal_block(daybook, tenant, next, until).await?;
        Ok((page, Some(RecordPosition::Journal { next: until + 1, durable })))
    }

    async fn event_time(
        &self,
        daybook: &Daybook,
        tenant: &str,
        event_id: &str,
    ) -> Result<Option<crate::rating::time::Instant>, BooksError> {
        // The journal keeps each event with its records: the tenant's are scanned for it.
        let mut at = Some(self.first_records(daybook));
        while let Some(position) = at.take() {
            let (page, next) = self.record_page(daybook, tenant, position).await?;
            if let Some((e, _)) = page.into_iter().filter_map(|seen| seen.event).find(|(e, _)| e.event_id == event_id) {
                return Ok(crate::rating::time::parse_instant(&e.event_time).ok());
            }
            at = next;
        }
        Ok(None)
    }
}

#[tonic::async_trait]
impl Store for Redis {
    async fn ingest(&self, daybook: &Daybook, event: pb::Event) -> Decided {
        daybook.ingest_shared(event).await
    }

    async fn ingest_batch(&self, daybook: &Daybook, events: Vec<pb::Event>) -> Vec<Decided> {
        // Concurrently: the claims of a batch share round trips to Redis (the connection
        // pipelines them). Events of one key keep their order by their ordering stripe,
        // as in embedded mode.
        futures_util::future::join_all(events.into_iter().map(|e| daybook.ingest_shared(e))).await
    }

    async fn tenant_op(
        &self,
        daybook: &Daybook,
        op: TenantOp<'_>,
        by: &str,
    ) -> Result<(Arc<Tenant>, u64), TenantRefusal> {
        daybook.tenant_op_shared(op, by).await
    }

    async fn find_tenant(&self, daybook: &Daybook, id: &str) -> Result<(), BooksError> {
        // A tenant another replica created a moment ago.
        daybook.refresh_tenant(id).await?;
        Ok(())
    }

    async fn usage(
        &self,
        daybook: &Daybook,
        tenant: &str,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
    ) -> Result<Totals, BooksError> {
        if caught_up(daybook, tenant).await? {
            return Embedded.usage(daybook, tenant, from, to).await;
        }
        Ok(daybook.shared_usage(tenant, from, to).await?)
    }

    async fn usage_by_day(
        &self,
        daybook: &Daybook,
        tenant: &str,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<(chrono::NaiveDate, Totals)>, BooksError> {
        if caught_up(daybook, tenant).await? {
            return Embedded.usage_by_day(daybook, tenant, from, to).await;
        }
        Ok(daybook.shared_usage_by_day(tenant, from, to).await?)
    }

    async fn statement(
        &self,
        daybook: &Daybook,
        tenant: &str,
        period: &StatementPeriod,
    ) -> Result<Statement, BooksError> {
        if caught_up(daybook, tenant).await? {
            return Embedded.statement(daybook, tenant, period).await;
        }
        Ok(daybook.shared_statement(tenant, period).await?)
    }

    async fn statements(&self, daybook: &Daybook, tenant: &str) -> Result<Vec<Statement>, BooksError> {
        if caught_up(daybook, tenant).await? {
            return Embedded.statements(daybook, tenant).await;
        }
        Ok(daybook.shared_statements(tenant).await?)
    }

    async fn interactions(
        &self,
        daybook: &Daybook,
        tenant: &str,
        page_size: usize,
        after: Option<PageToken>,
    ) -> Result<(Vec<pb::Interaction>, Option<PageToken>), BooksError> {
        let after = match after {
            None => None,
            Some(PageToken::Streams { shard, entry }) => Some((shard, entry)),
            Some(PageToken::Journal(_)) => return Err(BooksError::BadToken),
        };
        // A logged tenant's records of what any replica accepted are in the streams once
        // this replica has rated its log (whoever rates an entry first emits them).
        caught_up(daybook, tenant).await?;
        let (interactions, next) = daybook.shared_interactions(tenant, page_size, after).await?;
        Ok((interactions, next.map(|(shard, entry)| PageToken::Streams { shard, entry })))
    }

    fn first_records(&self, _: &Daybook) -> RecordPosition {
        RecordPosition::Streams { shard: 0, after: None }
    }

    async fn record_page(
        &self,
        daybook: &Daybook,
        tenant: &str,
        at: RecordPosition,
    ) -> Result<(Vec<Seen>, Option<RecordPosition>), BooksError> {
        let RecordPosition::Streams { shard, after } = at else { return Ok((Vec::new(), None)) };
        if shard >= crate::store::keys::SHARDS {
            return Ok((Vec::new(), None));
        }
        let page = daybook.stream_page(tenant, shard, after.as_deref()).await?;
        let next = match page.last() {
            Some((last, _)) => RecordPosition::Streams { shard, after: Some(last.clone()) },
            None => RecordPosition::Streams { shard: shard + 1, after: None },
        };
        Ok((page.into_iter().map(|(_, r)| Seen { event: None, records: vec![r] }).collect(), Some(next)))
    }

    async fn event_time(
        &self,
        daybook: &Daybook,
        tenant: &str,
        event_id: &str,
    ) -> Result<Option<crate::rating::time::Instant>, BooksError> {
        // Only a tenant that follows its log has its events in the store.
        if !daybook.engine().follows_log(tenant) {
            return Ok(None);
        }
        Ok(daybook.logged_event_time(tenant, event_id).await?)
    }
}

/// Whether the tenant follows its log, having rated what this replica had not: then its
/// books here are whole, the same on every replica, and read as embedded mode reads them.
async fn caught_up(daybook: &Daybook, tenant: &str) -> Result<bool, BooksError> {
    if !daybook.engine().follows_log(tenant) {
        return Ok(false);
    }
    daybook.catch_up(tenant).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_strict() {
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
