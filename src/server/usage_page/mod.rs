//! `GET /usage` on the admin port: a page for a person, current to the last event. Every
//! tenant the caller may read, with this period's usage per meter, credits, the plan's
//! position (included, overage, commitment drawn), the alerts raised, and a chart of the
//! last 31 days, refreshed every second. The page is static (HTML, CSS and JavaScript
//! embedded in the binary, no build step); its figures come from `/usage/data`, which
//! answers what `GetUsage` and `GetStatement` answer, through the same store and the same
//! conversions. When credentials are configured, `/usage/data` needs a bearer token with
//! read scope, and lists only the tenants it may read.

use chrono::{Datelike, NaiveDate, TimeDelta};
use serde_json::{Value, json};

use super::auth::{Access, Auth};
use super::core::Daybook;
use super::store::Store;
use crate::api::{self, pb};
use crate::rating::ledger::StatementPeriod;
use crate::rating::plan::Plan;

pub const PAGE: &str = include_str!("page.html");
pub const SCRIPT: &str = include_str!("page.js");
pub const STYLE: &str = include_str!("page.css");

/// Days the chart covers, today included.
const CHART_DAYS: i64 = 31;

/// What `/usage/data` answers: a status and a JSON body.
pub struct Answer {
    pub status: http::StatusCode,
    pub body: String,
}

/// The figures behind the page, for the caller of `headers`.
pub async fn data(daybook: &Daybook, store: &dyn Store, auth: &Auth, headers: &http::HeaderMap) -> Answer {
    let metadata = tonic::metadata::MetadataMap::from_headers(headers.clone());
    let who = match auth.authenticate(&metadata, &http::Extensions::new()) {
        Ok(who) => who,
        Err(status) => {
            return Answer {
                status: http::StatusCode::UNAUTHORIZED,
                body: json!({ "error": status.message() }).to_string(),
            };
        }
    };
    let mut tenants = Vec::new();
    let mut ids = daybook.engine().tenant_ids();
    ids.sort();
    for id in ids.iter().filter(|id| who.may(Access::Read, id)) {
        match tenant_figures(daybook, store, id).await {
            Ok(Some(figures)) => tenants.push(figures),
            Ok(None) => {}
            Err(e) => tenants.push(json!({ "tenant_id": &**id, "error": e })),
        }
    }
    let body = json!({ "generated_at": daybook.now().to_rfc3339(), "tenants": tenants });
    Answer { status: http::StatusCode::OK, body: body.to_string() }
}

/// This period of a tenant: a commitment's term, else the local month (the tenant's zone,
/// now).
fn this_period(
    daybook: &Daybook,
    tenant: &crate::rating::Tenant,
) -> (StatementPeriod, NaiveDate, NaiveDate, NaiveDate) {
    let now = daybook.now();
    let today = now.with_timezone(&tenant.zone_at(now)).date_naive();
    match tenant.plan() {
        Some(Plan::Commitment(plan)) => {
            (StatementPeriod::Term(plan.term_start, plan.term_end), plan.term_start, plan.term_end, today)
        }
        _ => {
            let first = today.with_day(1).expect("day 1 exists");
            let next = first.checked_add_months(chrono::Months::new(1)).expect("in range");
            (StatementPeriod::Month(first), first, next - TimeDelta::days(1), today)
        }
    }
}

async fn tenant_figures(daybook: &Daybook, store: &dyn Store, id: &str) -> Result<Option<Value>, String> {
    let Some(tenant) = daybook.engine().tenant(id) else { return Ok(None) };
    let (period, from, to, today) = this_period(daybook, &tenant);
    let totals = store.usage(daybook, id, Some(from), Some(to)).await.map_err(|e| e.to_string())?;
    let statement = store.statement(daybook, id, &period).await.map_err(|e| e.to_string())?;
    let first_day = today - TimeDelta::days(CHART_DAYS - 1);
    let days = store.usage_by_day(daybook, id, first_day, today).await.map_err(|e| e.to_string())?;
    let mut chart = Vec::new();
    let mut day = first_day;
    let mut by_day = days.iter().peekable();
    while day <= today {
        let (interactions, credits) = match by_day.peek() {
            Some((d, t)) if *d == day => {
                by_day.next();
                (t.interactions, t.credits())
            }
            _ => (0, rust_decimal::Decimal::ZERO),
        };
        chart.push(json!({ "date": day.to_string(), "interactions": interactions, "credits": credits.normalize().to_string() }));
        day += TimeDelta::days(1);
    }
    let usage: pb::Usage = api::usage_out(&totals, Some(&tenant));
    let plan = match tenant.plan() {
        Some(Plan::Starter(_)) => "starter",
        Some(Plan::Commitment(_)) => "commitment",
        None => "none",
    };
    Ok(Some(json!({
        "tenant_id": id,
        "period": period.label(),
        "from": from.to_string(),
        "to": to.to_string(),
        "plan": plan,
        "usage": api::to_json(&usage),
        "statement": api::to_json(&api::statement_out(&statement)),
        "days": chart,
    })))
}
