//! The tenant log: one Redis stream per tenant holding every event of the tenant, in
//! the order every replica rates them.
//!
//! Most tenants are metered by claims (`store::redis`): an event's outcome depends on one
//! shared entry, moved by compare-and-set. Some rules make an event's outcome depend on
//! more than one entry: DAR-5's retroactive outbound days (a reply charges the day of
//! every outbound within its window), several meters (MS), per-event and outcome meters
//! (EV, OUT) and voids (COR). Tenants that use them are metered through this log instead:
//! a replica appends the event (with the arrival instant it was judged at), then rates
//! every entry of the log up to its own, in log order, with the same engine and rules as
//! embedded mode. Every replica that follows the log holds the same state, so any of them
//! answers usage and statements; the log itself is what a restarted replica rebuilds the
//! tenant from.
//!
//! An entry is one stream field `e`: a `LogEntry` (see `server::shared::ordered`).

use super::keys::ShardKeys;
use super::redis::{RedisStore, StoreError};

/// One entry read back: its stream id and its bytes.
pub type LogItem = (String, Vec<u8>);

impl RedisStore {
    /// Appends an entry to a tenant's log; returns its stream id.
    pub async fn append_log(&self, tenant: &str, entry: &[u8]) -> Result<String, StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(ShardKeys::new(tenant, 0).log()).arg("*").arg("e").arg(entry);
        self.query(cmd).await
    }

    /// Up to `count` entries of a tenant's log after the stream id `after` (`0-0`: from
    /// the start).
    pub async fn read_log(&self, tenant: &str, after: &str, count: usize) -> Result<Vec<LogItem>, StoreError> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(ShardKeys::new(tenant, 0).log()).arg(format!("({after}")).arg("+").arg("COUNT").arg(count);
        let entries: Vec<(String, Vec<Vec<u8>>)> = self.query(cmd).await?;
        Ok(entries
            .into_iter()
            .map(|(id, fields)| {
                let value = fields.chunks(2).find(|kv| kv[0] == b"e").and_then(|kv| kv.get(1)).cloned();
                (id, value.unwrap_or_default())
            })
            .collect())
    }
}
