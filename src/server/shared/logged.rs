//! Tenants metered through their tenant log (`store::log`) under a shared store.
//!
//! A tenant whose rules span several shared entries (`TenantSpec::needs_log`: DAR-5's
//! retroactive outbound days, several meters, event and outcome meters, voids among them)
//! cannot be metered by claims on one entry per event. Its events go through a log in
//! Redis instead: a replica appends the event with the arrival instant it judged it at,
//! then rates every entry of the log it has not rated yet, in log order, up to its own,
//! with the engine's ordinary rules (as in embedded mode: no claims, no near cache). Every
//! replica that follows the log rates the same events in the same order at the same
//! instants, so all hold the same state, and any of them answers usage, statements and
//! retries. Periods close where the log says (a close entry any replica appends when one
//! is due), not by each replica's clock, so that no replica refuses as too late an event
//! another accepted.
//!
//! Records: a rated entry's records go to the shared record streams once, whichever
//! replica rates it first (the emission is keyed by the log entry), so that an appender
//! that stops before emitting loses nothing; the appender also journals them, for its
//! own watch stream and sink. A restarted replica rates the log again from its start:
//! what its snapshot already holds is a retry (or a closed period) and changes nothing.
//!
//! Without the store an event of such a tenant is refused as UNAVAILABLE (retry): there
//! is no order to rate it in. The entry an append left is rated by the next follower, so
//! a caller's retry gets the original outcome.

use crate::sync::Unpoisoned;

use prost::Message;

use super::Decided;
use super::state::Unemitted;
use crate::api::pb;
use crate::rating::RawEvent;
use crate::rating::ids::domain;
use crate::rating::outcome::{Code, Refusal};
use crate::rating::time::Instant;
use crate::server::core::Daybook;
use crate::server::journal::EntryKind;
use crate::store::redis::{Emission, StoreError};

/// Entries read from a log per call.
const LOG_PAGE: usize = 1000;

/// How long the store remembers that a log entry's records were emitted.
const EMITTED_ENTRY_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(40);

/// One entry of a tenant log.
#[derive(Clone, PartialEq, Message)]
pub struct LogEntry {
    /// The event as received (`daybook.v1.Event`); empty in a close entry.
    #[prost(bytes = "vec", tag = "1")]
    pub event: Vec<u8>,
    /// The arrival instant the event is judged at, or the instant periods close at (Unix
    /// nanoseconds).
    #[prost(int64, tag = "2")]
    pub at_nanos: i64,
    /// Periods past the lateness horizon at `at_nanos` close here (`Engine::close_periods`).
    #[prost(bool, tag = "3")]
    pub close: bool,
    /// The process that appended it ([`super::state::Followers::replica`]): whichever of
    /// its tasks rates the entry first answers the caller that appended it.
    #[prost(uint64, tag = "4")]
    pub replica: u64,
}

fn nanos(at: Instant) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub(super) fn unavailable(e: &StoreError) -> Refusal {
    Refusal::new(
        Code::Unavailable,
        "T-1",
        format!("this tenant's events are ordered by the shared store, which did not answer: {e}; retry"),
    )
}

impl Daybook {
    /// Rates one event of a tenant that follows its log: appended to the log, then the log
    /// rated up to it. Callers of one tenant append concurrently; whichever holds the
    /// tenant's follower rates every entry it reads and keeps the answers of this
    /// process's entries for their callers, so one read serves every caller waiting.
    pub(super) async fn ingest_logged(&self, event: &pb::Event) -> Decided {
        let shared = self.shared();
        let followers = &shared.followers;
        let entry = LogEntry {
            event: event.encode_to_vec(),
            at_nanos: nanos(self.now()),
            close: false,
            replica: followers.replica,
        };
        let started = std::time::Instant::now();
        let appended = shared.store.append_log(&event.tenant_id, &entry.encode_to_vec()).await;
        shared.note(&appended);
        self.telemetry().redis_call("append_log", if appended.is_ok() { "ok" } else { "error" }, started.elapsed());
        let id = match appended {
            Ok(id) => id,
            Err(e) => return (Err(unavailable(&e)), 0),
        };
        let follower = followers.of(&event.tenant_id);
        let mut after = follower.lock().await;
        if let Some(decided) = followers.take_answer(&event.tenant_id, &id) {
            return decided;
        }
        if let Err(e) = self.follow(&event.tenant_id, &mut after, Some(&id)).await {
            return (Err(unavailable(&e)), 0);
        }
        followers
            .take_answer(&event.tenant_id, &id)
            .unwrap_or_else(|| (Err(unavailable(&StoreError::Unexpected(format!("log entry {id} not found")))), 0))
    }

    /// Rates what this replica has not rated yet of a tenant's log, so that its answers
    /// include every event any replica accepted before the call.
    pub async fn catch_up(&self, tenant: &str) -> Result<(), StoreError> {
        let follower = self.shared().followers.of(tenant);
        let mut after = follower.lock().await;
        self.follow(tenant, &mut after, None).await
    }

    /// The event time of a logged tenant's event, read from its log (`None`: not there).
    pub async fn logged_event_time(&self, tenant: &str, event_id: &str) -> Result<Option<Instant>, StoreError> {
        let mut after = "0-0".to_string();
        loop {
            let page = self.shared().store.read_log(tenant, &after, LOG_PAGE).await?;
            let Some((last, _)) = page.last() else { return Ok(None) };
            after = last.clone();
            for (_, bytes) in page {
                let event =
                    LogEntry::decode(bytes.as_slice()).ok().and_then(|e| pb::Event::decode(e.event.as_slice()).ok());
                if let Some(event) = event.filter(|e| e.event_id == event_id) {
                    return Ok(crate::rating::time::parse_instant(&event.event_time).ok());
                }
            }
        }
    }

    /// Rates a tenant's log after `after`, in order, to its end, or a page at a time until
    /// the entry `until` is rated. The answers of this process's entries are kept for
    /// their callers ([`super::state::Followers::take_answer`]).
    async fn follow(&self, tenant: &str, after: &mut String, until: Option<&str>) -> Result<(), StoreError> {
        let shared = self.shared();
        loop {
            let started = std::time::Instant::now();
            let page = shared.store.read_log(tenant, after, LOG_PAGE).await;
            shared.note(&page);
            self.telemetry().redis_call("read_log", if page.is_ok() { "ok" } else { "error" }, started.elapsed());
            let page = page?;
            let full = page.len() == LOG_PAGE;
            let mut reached = false;
            for (id, bytes) in page {
                reached |= until == Some(id.as_str());
                self.rate_logged(tenant, &id, &bytes).await;
                *after = id;
            }
            if reached || !full {
                return Ok(());
            }
        }
    }

    /// Rates one log entry. An entry this process appended is its caller's: its answer is
    /// kept for it, its records journaled here too.
    async fn rate_logged(&self, tenant: &str, id: &str, bytes: &[u8]) {
        let Ok(entry) = LogEntry::decode(bytes) else {
            tracing::warn!(tenant, entry = id, "a tenant log entry this version did not write; skipped");
            return;
        };
        let own = entry.replica == self.shared().followers.replica;
        let at = chrono::DateTime::from_timestamp_nanos(entry.at_nanos);
        if entry.close {
            let _all = self.all_stripes();
            self.engine().close_tenant_periods(tenant, at);
            return;
        }
        let event = match pb::Event::decode(entry.event.as_slice()) {
            Ok(event) if event.tenant_id == tenant => event,
            _ => {
                tracing::warn!(tenant, entry = id, "an unreadable event in the tenant log; skipped");
                return;
            }
        };
        let (result, records) = {
            let _stripe = self.stripe(&event);
            let mut records = Vec::new();
            let result = self.engine().ingest(RawEvent::from(event), Some(at), &mut records);
            (result, records)
        };
        // A dead letter goes out only from the replica that refused the event for its
        // caller: another replica rating the log again after a restart would refuse
        // again events whose periods have closed since, with no caller to tell.
        let emits = match &result {
            Ok(outcome) => !outcome.retry && !records.is_empty(),
            Err(refusal) => own && refusal.code == Code::FailedPrecondition && !records.is_empty(),
        };
        let followers = &self.shared().followers;
        if !emits {
            if own {
                // A retry answers once what it repeats is durable here, as in embedded mode.
                let wait = if result.is_ok() { self.journal().appended() } else { 0 };
                followers.keep_answer(tenant, id, (result, wait));
            }
            return;
        }
        let wait = if own { self.append(EntryKind::SharedRecords(true), records.clone()) } else { 0 };
        let entry = self.engine().fingerprinter().start(domain::LOG_ENTRY).str(tenant).str(id).finish();
        let unemitted = Unemitted { tenant: tenant.to_string(), entry, at, records };
        if self.emit_logged(&unemitted).await.is_err() {
            followers.unemitted.lock().unpoisoned().push(unemitted);
        }
        if own {
            followers.keep_answer(tenant, id, (result, wait));
        }
    }

    /// Emits one log entry's records to the shared record streams, once per entry.
    async fn emit_logged(&self, u: &Unemitted) -> Result<bool, StoreError> {
        let emission = Emission {
            tenant: &u.tenant,
            entry: u.entry,
            event: u.entry,
            payload: 0,
            prior: &[],
            at: u.at,
            records: &u.records,
            // Usage of a tenant that follows its log is read from the replica's own
            // books, which hold all of it: nothing to add to the shared rollups.
            ledger: &[],
            event_expires: u.at.max(self.now()) + EMITTED_ENTRY_MEMORY,
        };
        self.emit(&emission).await
    }

    /// Sends again the records the store did not take, and follows every tenant log:
    /// appends a close entry where periods are due to close, and rates what other
    /// replicas appended (so that a quiet replica does not fall behind).
    pub async fn tend_logs(&self) {
        let backlog = std::mem::take(&mut *self.shared().followers.unemitted.lock().unpoisoned());
        let mut failed = Vec::new();
        for u in backlog {
            if failed.is_empty() && self.emit_logged(&u).await.is_ok() {
                continue;
            }
            failed.push(u);
        }
        self.shared().followers.unemitted.lock().unpoisoned().extend(failed);
        let now = self.now();
        for tenant in self.engine().tenant_ids() {
            if !self.engine().follows_log(&tenant) {
                continue;
            }
            if self.engine().tenant_has_periods_to_close(&tenant, now) {
                let entry = LogEntry { event: Vec::new(), at_nanos: nanos(now), close: true, replica: 0 };
                if self.shared().store.append_log(&tenant, &entry.encode_to_vec()).await.is_err() {
                    return;
                }
            }
            if self.catch_up(&tenant).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip() {
        let entry = LogEntry { event: vec![1, 2, 3], at_nanos: 1_750_000_000_000_000_000, close: false, replica: 9 };
        assert_eq!(LogEntry::decode(entry.encode_to_vec().as_slice()).unwrap(), entry);
        let close = LogEntry { event: Vec::new(), at_nanos: 5, close: true, replica: 0 };
        assert_eq!(LogEntry::decode(close.encode_to_vec().as_slice()).unwrap(), close);
    }
}
