//! The scenario runner's gRPC target: a live daybook, or several replicas of one.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{Listing, MeterView, Scenario, StatementView, Target, UNSUPPORTED, Verdict};
use crate::rating::event::RawEvent;
use crate::rating::settings::TenantSpec;
use crate::rating::time::Instant;

/// Runs scenarios against a live daybook over gRPC: a fresh tenant per scenario, created
/// through the tenants API, expectations read back through the query RPCs. The server's
/// clock judges lateness, so scenarios with `now` are skipped, and the tenant's
/// `lateness_horizon` and `max_clock_skew` are widened to cover the scenario's dates.
///
/// Given several replicas of one meter (Redis mode), each event goes to one of them at
/// random (and each query too): every replica must answer as one engine would.
pub struct GrpcTarget {
    runtime: tokio::runtime::Runtime,
    replicas: Vec<tonic::transport::Channel>,
    /// Picks the replica of each call.
    split: crate::loadgen::Rng,
    /// Scenario tenant id -> the fresh id used on the server.
    tenant: String,
}

impl GrpcTarget {
    /// Connects to `addr` (`HOST:PORT`, `http://HOST:PORT` or `unix:PATH`).
    pub fn connect(addr: &str) -> Result<GrpcTarget, String> {
        GrpcTarget::connect_replicas(&[addr.to_string()], 1)
    }

    /// Connects to every replica of one meter; `seed` picks the random split.
    pub fn connect_replicas(addrs: &[String], seed: u64) -> Result<GrpcTarget, String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let mut replicas = Vec::new();
        for addr in addrs {
            let channel = runtime
                .block_on(daybook_client::connect(addr))
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            replicas.push(channel);
        }
        if replicas.is_empty() {
            return Err("no server to connect to".into());
        }
        Ok(GrpcTarget { runtime, replicas, split: crate::loadgen::Rng(seed | 1), tenant: String::new() })
    }

    fn get_usage(&mut self) -> Result<crate::api::pb::Usage, String> {
        use crate::api::pb::{GetUsageRequest, usage_service_client::UsageServiceClient};
        let mut client = UsageServiceClient::new(self.channel());
        let request = GetUsageRequest { tenant_id: self.tenant.clone(), ..Default::default() };
        let response = self.runtime.block_on(client.get_usage(request)).map_err(|s| s.message().to_string())?;
        Ok(response.into_inner().usage.unwrap_or_default())
    }

    /// The replica of the next call.
    fn channel(&mut self) -> tonic::transport::Channel {
        let n = self.replicas.len();
        let pick = (self.split.unit() * n as f64) as usize;
        self.replicas[pick.min(n - 1)].clone()
    }

    /// The verdict for a scenario this target cannot run.
    pub fn skip_reason(scenario: &Scenario) -> Option<Verdict> {
        scenario.now.map(|_| Verdict::Skip("has `now`: the server's clock judges lateness in --server mode".into()))
    }
}

fn status_code(status: &tonic::Status) -> String {
    format!("{:?}", status.code()).chars().fold(String::new(), |mut out, c| {
        if c.is_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
        out
    })
}

impl Target for GrpcTarget {
    fn create_tenant(&mut self, spec: &TenantSpec) -> Result<(), String> {
        use crate::api::pb::tenant_service_client::TenantServiceClient;
        let mut spec = spec.clone();
        let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        spec.id = format!("{}-{unique:x}", spec.id);
        let wide = chrono::TimeDelta::days(36_500);
        spec.initial.lateness_horizon = Some(wide);
        spec.initial.max_clock_skew = Some(wide);
        for change in &mut spec.changes {
            change.patch.lateness_horizon = None;
            change.patch.max_clock_skew = None;
        }
        self.tenant = spec.id.clone();
        let request = crate::api::pb::CreateTenantRequest { tenant: Some(crate::api::tenant_out(&spec)) };
        let mut client = TenantServiceClient::new(self.channel());
        self.runtime.block_on(client.create_tenant(request)).map(|_| ()).map_err(|s| {
            // A shared Redis store refuses what it does not hold yet: not a wrong answer.
            if s.code() == tonic::Code::FailedPrecondition && s.message().contains("shared Redis store") {
                format!("{UNSUPPORTED}{}", s.message())
            } else {
                format!("CreateTenant: {}", s.message())
            }
        })
    }

    fn ingest(&mut self, event: RawEvent, _now: Option<Instant>) -> Result<(), String> {
        use crate::api::pb::ingest_service_client::IngestServiceClient;
        let mut client = IngestServiceClient::new(self.channel());
        let e = crate::api::event_out(&RawEvent { tenant_id: self.tenant.clone(), ..event });
        // As a production caller would: UNAVAILABLE (a shared store that did not answer in
        // time, e.g. on a loaded machine) is retried with the same event id.
        let retries = daybook_client::Retries { retries: 8, ..Default::default() };
        let result = self.runtime.block_on(daybook_client::ingest_retrying(&mut client, e, retries));
        result.map(|_| ()).map_err(|s| match s.code() {
            tonic::Code::Unimplemented => format!("{UNSUPPORTED}{}", s.message()),
            _ => status_code(&s),
        })
    }

    fn interactions(&mut self, _tenant: &str, with_meter: bool) -> Result<Listing, String> {
        use crate::api::pb::{ListInteractionsRequest, usage_service_client::UsageServiceClient};
        let mut client = UsageServiceClient::new(self.channel());
        let mut out = Listing::default();
        let mut token = String::new();
        loop {
            let request =
                ListInteractionsRequest { tenant_id: self.tenant.clone(), page_size: 1000, page_token: token };
            let page = self
                .runtime
                .block_on(client.list_interactions(request))
                .map_err(|s| s.message().to_string())?
                .into_inner();
            for i in page.interactions {
                let key = i.key.unwrap_or_default();
                let mut view = BTreeMap::new();
                if with_meter {
                    view.insert("meter".to_string(), i.meter_id.clone());
                }
                if !i.outcome_type.is_empty() {
                    view.insert("outcome_type".to_string(), i.outcome_type.clone());
                }
                view.insert("consumer".to_string(), key.consumer_id);
                view.insert("period".to_string(), i.period.map(|p| p.label).unwrap_or_default());
                if !key.conversation_id.is_empty() {
                    view.insert("conversation".to_string(), key.conversation_id);
                }
                if !key.integration_id.is_empty() {
                    view.insert("integration".to_string(), key.integration_id);
                }
                if i.voided_by.is_empty() { out.standing.push(view) } else { out.voided.push(view) }
            }
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    fn meters(&mut self, _tenant: &str) -> Result<BTreeMap<String, MeterView>, String> {
        let usage = self.get_usage()?;
        usage
            .meters
            .into_iter()
            .map(|m| {
                let credits =
                    m.credits.parse().map_err(|_| format!("meter {}: credits is not a decimal", m.meter_id))?;
                Ok((m.meter_id, MeterView { interactions: m.interactions, units: m.units, credits }))
            })
            .collect()
    }

    fn usage(&mut self, _tenant: &str) -> Result<(Decimal, BTreeMap<String, Decimal>), String> {
        let usage = self.get_usage()?;
        let pass_through =
            usage.pass_through.iter().map(|m| (m.currency.clone(), m.amount.parse().unwrap_or_default())).collect();
        Ok((usage.credits.parse().map_err(|_| "credits is not a decimal".to_string())?, pass_through))
    }

    fn statement(&mut self, _tenant: &str, period: &str) -> Result<StatementView, String> {
        use crate::api::pb::{GetStatementRequest, usage_service_client::UsageServiceClient};
        let mut client = UsageServiceClient::new(self.channel());
        let request = GetStatementRequest { tenant_id: self.tenant.clone(), period: period.to_string() };
        let s = self
            .runtime
            .block_on(client.get_statement(request))
            .map_err(|s| s.message().to_string())?
            .into_inner()
            .statement
            .unwrap_or_default();
        let d = |t: &str| t.parse::<Decimal>().unwrap_or_default();
        Ok(StatementView {
            dars: s.dars,
            credits: d(&s.credits),
            overage: s.overage.iter().map(|m| (m.currency.clone(), d(&m.amount))).collect(),
            overage_credits: d(&s.overage_credits),
            expired_credits: d(&s.expired_credits),
            platform_users_over_limit: s.platform_users_over_limit,
        })
    }

    fn alerts(&mut self, _tenant: &str) -> Result<Vec<(String, Decimal)>, String> {
        use crate::api::pb::{ListStatementsRequest, usage_service_client::UsageServiceClient};
        let mut client = UsageServiceClient::new(self.channel());
        let request = ListStatementsRequest { tenant_id: self.tenant.clone() };
        let statements = self
            .runtime
            .block_on(client.list_statements(request))
            .map_err(|s| s.message().to_string())?
            .into_inner()
            .statements;
        Ok(statements
            .iter()
            .flat_map(|s| s.alerts.iter().map(|a| (a.period.clone(), a.threshold.parse().unwrap_or_default())))
            .collect())
    }
}
