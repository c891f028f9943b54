//! Tenants defined through the API under a shared store: stored in Redis (one
//! compare-and-set per change), learned by every replica.

use crate::sync::Unpoisoned;
use std::sync::Arc;

use prost::Message;

use super::TENANT_LEAD;
use crate::api::{self, pb};
use crate::rating::Tenant;
use crate::server::core::{Daybook, NextSpec, TenantOp, TenantRefusal};
use crate::store::redis::StoreError;

impl Daybook {
    /// A tenant operation under the shared store: judged against the definition the store
    /// holds, written there only if nobody changed it meanwhile (compare-and-set), then
    /// put in force here. Other replicas learn it within [`TENANT_POLL`], or at once when
    /// an event names a tenant they do not know.
    pub async fn tenant_op_shared(&self, op: TenantOp<'_>, by: &str) -> Result<(Arc<Tenant>, u64), TenantRefusal> {
        let unavailable = |e: StoreError| TenantRefusal::Unavailable(format!("the shared store did not answer: {e}"));
        let id = op.tenant_id().to_string();
        for _ in 0..4 {
            self.refresh_tenant(&id).await.map_err(unavailable)?;
            let next = {
                let _all = self.all_stripes();
                self.next_spec(&op, Some(TENANT_LEAD))?
            };
            let new = match next {
                NextSpec::Unchanged(tenant) => return Ok((tenant, self.journal().appended())),
                NextSpec::Spec(new) => *new,
            };
            crate::server::core::same_metering(self.engine(), &new).map_err(TenantRefusal::FailedPrecondition)?;
            let expected = self.shared().tenants.lock().unpoisoned().get(&id).cloned().unwrap_or_default();
            let bytes = api::tenant_out(&new).encode_to_vec();
            match self.shared().store.put_tenant(&id, &expected, &bytes).await.map_err(unavailable)? {
                None => {
                    self.shared().tenants.lock().unpoisoned().insert(id.clone(), bytes);
                    let (audit, applied) = {
                        let _all = self.all_stripes();
                        let audit = self.audit(&op, &new, by);
                        (audit.clone(), self.apply_spec(new, Some(audit))?)
                    };
                    // Also on the tenant's shared stream, beside its other records. The
                    // change is made and journaled here with its audit record: if Redis
                    // fails between the two calls, this replica's stream and sink have it.
                    if let Err(e) = self.shared().store.add_record(&id, &audit).await {
                        tracing::warn!("audit record {} not added to the shared stream: {e}", audit.record_id);
                    }
                    return Ok(applied);
                }
                // Changed by another replica since: learn it and judge again.
                Some(_) => continue,
            }
        }
        Err(TenantRefusal::Unavailable("the tenant kept changing on other replicas; retry".into()))
    }

    /// Reads one tenant's definition from the store and puts it in force here if it is
    /// new. Returns whether the store has the tenant.
    pub async fn refresh_tenant(&self, id: &str) -> Result<bool, StoreError> {
        match self.shared().store.tenant(id).await? {
            Some(bytes) => {
                self.learn_tenant(id, bytes);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads every shared tenant definition and puts the new ones in force here.
    pub async fn poll_tenants(&self) -> Result<(), StoreError> {
        for (id, bytes) in self.shared().store.tenants().await? {
            self.learn_tenant(&id, bytes);
        }
        Ok(())
    }

    fn learn_tenant(&self, id: &str, bytes: Vec<u8>) {
        let shared = self.shared();
        if shared.tenants.lock().unpoisoned().get(id) == Some(&bytes) {
            return;
        }
        let spec = match pb::Tenant::decode(bytes.as_slice()).ok().and_then(|t| api::tenant_in(&t).ok()) {
            Some(spec) if spec.id == id => spec,
            _ => {
                tracing::warn!("the shared store's definition of tenant `{id}` is unreadable; ignored");
                return;
            }
        };
        if self.is_file_tenant(id) {
            return;
        }
        {
            let _all = self.all_stripes();
            if self.engine().tenant(id).is_none_or(|t| t.spec != spec)
                && let Err(e) = self.apply_spec(spec, None)
            {
                tracing::warn!("tenant `{id}` from the shared store not applied: {e:?}");
                return;
            }
        }
        shared.tenants.lock().unpoisoned().insert(id.to_string(), bytes);
    }
}
