//! What telemetry reads of a running server at collection time.

use std::sync::Arc;

use super::core::Daybook;
use super::sinks::SinkReport;
use super::telemetry::ObservedState;
use crate::rating::ledger::Totals;

impl ObservedState for Daybook {
    fn hot_interactions(&self) -> usize {
        self.engine().hot_interactions()
    }

    fn remembered_events(&self) -> usize {
        self.engine().remembered_events()
    }

    fn ingest_calls_in_flight(&self) -> usize {
        self.telemetry().ingest_calls()
    }

    fn journal_durable(&self) -> u64 {
        self.journal().durable()
    }

    fn disk_bytes(&self) -> u64 {
        self.disk_usage().total()
    }

    fn ready(&self) -> bool {
        self.is_ready()
    }

    fn shared_status(&self) -> Option<(usize, bool)> {
        Daybook::shared_status(self)
    }

    fn sinks(&self) -> Vec<SinkReport> {
        Daybook::sinks(self).reports()
    }

    fn usage_by_tenant(&self) -> Vec<(Arc<str>, &'static str, Totals)> {
        let engine = self.engine();
        engine
            .tenant_ids()
            .into_iter()
            .filter_map(|id| {
                let (tenant, totals) = (engine.tenant(&id)?, engine.usage(&id, None, None)?);
                Some((id, tenant.meter.kind.name(), totals))
            })
            .collect()
    }
}
