//! `daybook explain` and `daybook export`: the detail behind a statement, read from a
//! live daybook and written for a person (explain) or a spreadsheet (export: CSV or
//! JSONL). A bearer token, when the server asks for one, comes from `DAYBOOK_TOKEN`.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use tonic::Request;

use crate::api::pb;
use pb::usage_service_client::UsageServiceClient;

fn request<T>(message: T) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    if let Ok(token) = std::env::var("DAYBOOK_TOKEN") {
        let value = format!("Bearer {}", token.trim()).parse().context("DAYBOOK_TOKEN is not a valid header value")?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

/// Prints one interaction explained: what it is, every line with its rule and the event
/// that brought it, reversals and voids, the window and the settings in force.
pub async fn explain(server: &str, tenant: &str, interaction: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let channel = daybook_client::connect(server).await.with_context(|| format!("cannot connect to {server}"))?;
    let message = pb::ExplainInteractionRequest {
        tenant_id: tenant.to_string(),
        target: Some(pb::explain_interaction_request::Target::InteractionId(interaction.to_string())),
    };
    let r = UsageServiceClient::new(channel).explain_interaction(request(message)?).await.map_err(status)?;
    write_explanation(&r.into_inner(), out)?;
    Ok(())
}

fn write_explanation(r: &pb::ExplainInteractionResponse, out: &mut dyn Write) -> std::io::Result<()> {
    let i = r.interaction.clone().unwrap_or_default();
    let key = i.key.clone().unwrap_or_default();
    let period = i.period.clone().unwrap_or_default();
    writeln!(out, "interaction {} ({}, meter `{}`)", i.interaction_id, i.rule, i.meter_id)?;
    let mut fields = vec![format!("consumer {}", key.consumer_id)];
    for (name, value) in [
        ("conversation", &key.conversation_id),
        ("integration", &key.integration_id),
        ("outcome type", &i.outcome_type),
    ] {
        if !value.is_empty() {
            fields.push(format!("{name} {value}"));
        }
    }
    writeln!(out, "  key: {}", fields.join(", "))?;
    writeln!(
        out,
        "  period {}: {} to {} ({}, tz database {})",
        period.label, period.start_time, period.end_time, period.time_zone, r.time_zone_database
    )?;
    writeln!(out, "  started by event {}", i.event_id)?;
    if !i.voided_by.is_empty() {
        writeln!(out, "  VOIDED by {}: counts in no total", i.voided_by)?;
    }
    writeln!(out, "lines:")?;
    for l in &r.lines {
        let line = l.line.clone().unwrap_or_default();
        writeln!(
            out,
            "  {:>10}  {:<22} {:<6} event {}  line {}",
            line.credits,
            kind(line.kind),
            line.rule,
            line.event_id,
            line.line_id
        )?;
        for rev in &l.reversals {
            writeln!(
                out,
                "  {:>10}  reversal ({})        withdrawn by event {}  line {}",
                rev.credits, rev.rule, rev.event_id, rev.line_id
            )?;
        }
    }
    for w in &r.withdrawals {
        let how = if w.voided { "voided" } else { "withdrawn: its billed outcome moved (OUT-4)" };
        writeln!(out, "{how} by event {}", w.event_id)?;
    }
    for v in &r.voids {
        let by = if v.made_by.is_empty() { "unknown".to_string() } else { v.made_by.clone() };
        writeln!(
            out,
            "void {}: \"{}\", made {} by {}, arrived {}, selects {}..{}",
            v.event_id, v.reason, v.event_time, by, v.arrived_time, v.from, v.to
        )?;
    }
    if let Some(s) = &r.settings_at_first_event {
        writeln!(out, "settings at its first event: {}", crate::api::to_json(s))?;
    }
    if let Some(s) = &r.settings_at_period_start {
        writeln!(out, "settings at its period's start: {}", crate::api::to_json(s))?;
    }
    Ok(())
}

fn kind(k: i32) -> String {
    pb::LineKind::try_from(k)
        .map(|k| k.as_str_name().trim_start_matches("LINE_KIND_").to_lowercase())
        .unwrap_or_default()
}

/// The export's output form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

/// Writes every line of a statement period (reversals included) as CSV or JSONL, with a
/// progress line on a terminal for large tenants. Returns the rows and their sum.
pub async fn export(
    server: &str,
    tenant: &str,
    period: &str,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<(u64, rust_decimal::Decimal)> {
    let channel = daybook_client::connect(server).await.with_context(|| format!("cannot connect to {server}"))?;
    let message = pb::ExportLinesRequest { tenant_id: tenant.to_string(), period: period.to_string() };
    let mut stream =
        UsageServiceClient::new(channel).export_lines(request(message)?).await.map_err(status)?.into_inner();
    if format == Format::Csv {
        writeln!(
            out,
            "date,line_id,interaction_id,meter_id,consumer_id,conversation_id,integration_id,outcome_type,kind,applies_to,credits,rule,event_id,reverses_line_id"
        )?;
    }
    let terminal = std::io::stderr().is_terminal();
    let (mut rows, mut sum) = (0u64, rust_decimal::Decimal::ZERO);
    while let Some(batch) = stream.message().await.map_err(status)? {
        for row in batch.rows {
            let line = row.line.clone().unwrap_or_default();
            sum += line.credits.parse::<rust_decimal::Decimal>().context("a line's credits")?;
            match format {
                Format::Jsonl => writeln!(out, "{}", crate::api::to_json(&row))?,
                Format::Csv => {
                    let key = row.key.clone().unwrap_or_default();
                    let fields = [
                        row.date.as_str(),
                        &line.line_id,
                        &line.interaction_id,
                        &row.meter_id,
                        &key.consumer_id,
                        &key.conversation_id,
                        &key.integration_id,
                        &row.outcome_type,
                        &kind(line.kind),
                        &kind(line.applies_to),
                        &line.credits,
                        &line.rule,
                        &line.event_id,
                        &line.reverses_line_id,
                    ];
                    writeln!(out, "{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","))?;
                }
            }
            rows += 1;
        }
        if terminal && rows >= 10_000 {
            eprint!("\rexport: {rows} lines");
        }
    }
    if terminal && rows >= 10_000 {
        eprintln!();
    }
    Ok((rows, sum))
}

/// RFC 4180: quoted when it holds a comma, a quote or a line break.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() }
}
