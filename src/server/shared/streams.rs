//! Reading a tenant's records back from the shared record streams (one per shard), for
//! the detail behind its books (`server::detail`).

use prost::Message;

use crate::api::pb;
use crate::server::core::Daybook;
use crate::store::redis::StoreError;

/// Records read from a stream per call.
const PAGE: usize = 1000;

impl Daybook {
    /// The records of one shard's stream of a tenant after the stream entry `after` (from
    /// the start when `None`), a page at a time: (stream entry id, record). Empty: no more.
    pub async fn stream_page(
        &self,
        tenant: &str,
        shard: u32,
        after: Option<&str>,
    ) -> Result<Vec<(String, pb::Record)>, StoreError> {
        let page = self.shared().store.records_after(tenant, shard, after, PAGE).await?;
        Ok(page
            .into_iter()
            .filter_map(|(entry, _, bytes)| Some((entry, pb::Record::decode(bytes.as_slice()).ok()?)))
            .collect())
    }
}
