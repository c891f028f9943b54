//! Voids (COR) of tenants metered by claims, under a shared store. A void is published
//! to the store first: from then on no replica's claim on the tenant is applied unless
//! it was rated knowing the void, so every interaction the void selects either starts
//! voided or stands as billed. Then the interactions the shared record streams show are
//! selected with the engine's rules and each one's lines are withdrawn once, from its
//! entry's value (`rating::engine::shared_voids`). The void is answered only when all of
//! that is in the store: a retry of it, on any replica, does the same steps again, which
//! change nothing twice.

use prost::Message;

use super::logged::unavailable;
use super::{Daybook, Decided};
use crate::api::pb;
use crate::rating::RawEvent;
use crate::rating::engine::SharedVoid;
use crate::rating::engine::Standing;
use crate::rating::outcome::{Outcome, Record};
use crate::rating::shared::{Place, Shared};
use crate::rating::time;
use crate::server::journal::EntryKind;
use crate::store::keys::SHARDS;
use crate::store::redis::{Emission, StoreError};
use crate::store::voids::{Withdrawal, decode_void, encode_void};

/// How long the store remembers a void's id for its audit record: past any lateness
/// horizon a retry could come within.
const VOID_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(800);

/// How far before a void's first date its interactions' records may have been appended:
/// an event may be ahead of the clock by `max_clock_skew`, and a period's first local
/// date starts up to 14 hours before its UTC date.
const STREAM_MARGIN: chrono::TimeDelta = chrono::TimeDelta::days(3);

impl Daybook {
    /// Accepts a void of a tenant metered by claims (its id reserved, `retry` if another
    /// call reserved it first). Without the store it is refused as UNAVAILABLE: nothing is
    /// accepted that the store does not hold.
    pub(super) async fn ingest_shared_void(&self, event: &pb::Event, void: SharedVoid, retry: bool) -> Decided {
        match self.publish_and_withdraw(event, &void).await {
            Ok((mut outcome, emitted)) => {
                outcome.retry = retry;
                // What this call put in the store: this replica's watch stream and sink
                // carry it too.
                let wait = match emitted.is_empty() {
                    true => self.journal().appended(),
                    false => self.append(EntryKind::SharedRecords(true), emitted),
                };
                (Ok(outcome), wait)
            }
            Err(e) => {
                let refusal = unavailable(&e);
                self.shared().note(&Err::<(), _>(e));
                (Err(refusal), 0)
            }
        }
    }

    async fn publish_and_withdraw(
        &self,
        event: &pb::Event,
        void: &SharedVoid,
    ) -> Result<(Outcome, Vec<Record>), StoreError> {
        let (tenant, by) = (event.tenant_id.as_str(), void.rule.event_id.as_str());
        let store = &self.shared().store;
        store.publish_void(tenant, by, &encode_void(void.rule.arrived, &event.encode_to_vec())).await?;
        self.refresh_voids(tenant).await?;
        let index = self.engine().tenant(tenant).map_or(0, |t| t.index);

        let standing = self.standing_in_streams(tenant, void.rule.void.from).await?;
        let (mut selected, mut lines, mut emitted) = (Vec::new(), Vec::new(), Vec::new());
        for c in self.engine().void_selects(tenant, &void.rule, &standing) {
            let place = Place::Interaction { period_start: time::days_to_date(c.start) };
            let value = store.entry(tenant, place, c.state).await?;
            let Some(Shared::Interaction(Some(billed))) = Shared::decode(place, &value, index, "") else {
                // Its entry is gone with its period: nothing of it is open.
                continue;
            };
            let w = self.engine().void_withdrawal(tenant, &c, billed, by);
            let interaction_id = c.id.to_string();
            let withdrawal = Withdrawal {
                tenant,
                entry: c.state,
                interaction_id: &interaction_id,
                void_id: by,
                records: &w.records,
                ledger: &w.ledger,
            };
            match store.withdraw(&withdrawal).await? {
                None => emitted.extend(w.records),
                // An earlier call of this same void withdrew it: the answer is the same.
                Some(holder) if holder == by => {}
                // Another void withdrew it first: this one did not select it (COR-2).
                Some(_) => continue,
            }
            selected.push(c.id);
            lines.extend(w.lines);
        }

        let Some((outcome, audit)) = self.engine().void_accepted(tenant, void, selected, lines) else {
            return Err(StoreError::Unexpected(format!("tenant `{tenant}` is gone")));
        };
        let e = Emission {
            tenant,
            entry: void.event,
            event: void.event,
            payload: void.payload,
            prior: &[],
            at: void.at,
            records: std::slice::from_ref(&audit),
            ledger: &[],
            event_expires: self.now().max(void.at) + VOID_MEMORY,
        };
        if store.emit(&e).await? {
            emitted.push(audit);
        }
        Ok((outcome, emitted))
    }

    /// Learns every void published for a tenant (after a claim met one it did not know).
    pub(super) async fn refresh_voids(&self, tenant: &str) -> Result<(), StoreError> {
        let published = self.shared().store.voids(tenant).await?;
        let mut voids = Vec::with_capacity(published.len());
        for bytes in &published {
            let (arrived, event) =
                decode_void(bytes).ok_or_else(|| StoreError::Unexpected("an unreadable void".into()))?;
            let event =
                pb::Event::decode(event).map_err(|e| StoreError::Unexpected(format!("an unreadable void: {e}")))?;
            voids.push((RawEvent::from(event), arrived));
        }
        self.engine().learn_voids(tenant, voids);
        Ok(())
    }

    /// The tenant's interactions as the shared record streams show them, those started
    /// from `from` on (with a margin for clocks and zones).
    async fn standing_in_streams(&self, tenant: &str, from: chrono::NaiveDate) -> Result<Vec<Standing>, StoreError> {
        let start = from.and_hms_opt(0, 0, 0).expect("midnight").and_utc() - STREAM_MARGIN;
        let start = format!("{}", time::to_millis(start).max(1) - 1);
        let mut standing = Vec::new();
        for shard in 0..SHARDS {
            let mut after = Some(start.clone());
            loop {
                let page = self.stream_page(tenant, shard, after.as_deref()).await?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (_, record) in page {
                    if let Some(pb::record::Body::Interaction(i)) = record.body
                        && record.tenant_id == tenant
                        && let Some(s) = crate::server::standing::of_interaction(i)
                    {
                        standing.push(s);
                    }
                }
            }
        }
        Ok(standing)
    }

    /// Marks the listed interactions of one shard that a void selected after they started
    /// (COR-2: they stay listed, marked with the void).
    pub(super) async fn mark_voided(
        &self,
        tenant: &str,
        shard: u32,
        interactions: &mut [pb::Interaction],
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = interactions.iter().map(|i| i.interaction_id.clone()).collect();
        let voids = self.shared().store.withdrawn(tenant, shard, &ids).await?;
        for (interaction, void) in interactions.iter_mut().zip(voids) {
            if let Some(void) = void {
                interaction.voided_by = void;
            }
        }
        Ok(())
    }
}
