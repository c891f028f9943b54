//! `daybook replay`: rates an event log offline, the way the server would have.
//!
//! Input: one event per line in the proto3 JSON mapping of `daybook.v1.Event`. Output:
//! every emitted record as JSONL (proto3 JSON of `daybook.v1.Record`), and a per-tenant
//! summary. A bad line (not JSON, not an event, or refused by the rules) is reported with
//! its line number and reason, counted, and the rest is still rated.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant as WallInstant};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::api::{self, pb};
use crate::rating::ledger::BUCKET_KINDS;
use crate::rating::time::Instant;
use crate::rating::{Engine, EngineConfig, RawEvent};

pub struct Options {
    pub tenants: PathBuf,
    pub events: PathBuf,
    /// Where records go; `-` for standard output.
    pub out: PathBuf,
    /// Arrival instant for lateness and clock skew; none judges neither.
    pub now: Option<Instant>,
    /// Write the summary as JSON here too.
    pub summary_json: Option<PathBuf>,
    pub progress: bool,
}

/// What a replay found, per tenant and overall.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub lines: u64,
    pub accepted: u64,
    pub bad_lines: u64,
    pub records: u64,
    pub tenants: BTreeMap<String, TenantSummary>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct TenantSummary {
    pub interactions: u64,
    pub credits: Decimal,
    /// Credits by line kind: `base`, `generative_ai`, `generative_ai/intent_listening`, ...
    pub credits_by_line: BTreeMap<String, Decimal>,
    pub pass_through: BTreeMap<String, Decimal>,
    pub statements: Vec<StatementSummary>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct StatementSummary {
    pub period: String,
    pub interactions: u64,
    pub credits: Decimal,
    pub overage: BTreeMap<String, Decimal>,
    pub overage_credits: Decimal,
    pub expired_credits: Decimal,
    pub platform_users_over_limit: bool,
    pub alerts: Vec<String>,
}

pub fn run(options: &Options, report: &mut dyn Write) -> anyhow::Result<Summary> {
    let tenants_text =
        std::fs::read_to_string(&options.tenants).map_err(|e| anyhow::anyhow!("{}: {e}", options.tenants.display()))?;
    let specs = crate::tenants::parse_tenants_toml(&tenants_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", options.tenants.display()))?;
    let engine = Engine::new(EngineConfig::default());
    for spec in specs {
        let id = spec.id.clone();
        engine.put_tenant(spec).map_err(|e| anyhow::anyhow!("tenant {id}: {e}"))?;
    }

    let input =
        std::fs::File::open(&options.events).map_err(|e| anyhow::anyhow!("{}: {e}", options.events.display()))?;
    let total_bytes = input.metadata().map(|m| m.len()).unwrap_or(0);
    let input = std::io::BufReader::with_capacity(1 << 20, input);
    let mut out: Box<dyn Write> = if options.out.as_os_str() == "-" {
        Box::new(BufWriter::new(std::io::stdout()))
    } else {
        Box::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&options.out).map_err(|e| anyhow::anyhow!("{}: {e}", options.out.display()))?,
        ))
    };

    let mut summary = Summary::default();
    let mut progress = Progress::new(options.progress, total_bytes);
    let mut records = Vec::new();
    let mut read_bytes = 0u64;
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| anyhow::anyhow!("{}: line {number}: {e}", options.events.display()))?;
        read_bytes += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        let event: pb::Event = match api::from_json(&line) {
            Ok(e) => e,
            Err(e) => {
                summary.bad_lines += 1;
                let _ = writeln!(report, "line {number}: not an event: {e}");
                continue;
            }
        };
        match engine.ingest(RawEvent::from(event), options.now, &mut records) {
            Ok(_) => summary.accepted += 1,
            Err(refusal) => {
                summary.bad_lines += 1;
                let _ =
                    writeln!(report, "line {number}: {} ({}): {}", refusal.code.name(), refusal.rule, refusal.reason);
            }
        }
        for record in records.drain(..) {
            summary.records += 1;
            let json = api::to_json(&api::record_out(&record, summary.records.to_string()));
            anyhow::Context::context(writeln!(out, "{json}"), "writing records")?;
        }
        progress.tick(read_bytes, summary.lines);
    }
    anyhow::Context::context(out.flush(), "writing records")?;
    progress.finish(summary.lines);

    for id in engine.tenant_ids() {
        let usage = engine.usage(&id, None, None).expect("tenant exists");
        let mut t = TenantSummary {
            interactions: usage.interactions,
            credits: usage.credits(),
            pass_through: usage.pass_through.iter().map(|(c, a)| (c.to_string(), a.normalize())).collect(),
            ..TenantSummary::default()
        };
        for ((kind, applies_to), credits) in BUCKET_KINDS.iter().zip(usage.credits.iter()) {
            if !credits.is_zero() {
                let name = match applies_to {
                    Some(a) if *a != crate::rating::credits::LineKind::Base => format!("{}/{}", kind.name(), a.name()),
                    _ => kind.name().to_string(),
                };
                *t.credits_by_line.entry(name).or_default() += credits.normalize();
            }
        }
        for s in engine.statements(&id).expect("tenant exists") {
            t.statements.push(StatementSummary {
                period: s.period.clone(),
                interactions: s.dars,
                credits: s.totals.credits().normalize(),
                overage: s.overage.iter().map(|(c, a)| (c.to_string(), a.normalize())).collect(),
                overage_credits: s.overage_credits.normalize(),
                expired_credits: s.expired_credits.normalize(),
                platform_users_over_limit: s.platform_users_over_limit,
                alerts: s.alerts.iter().map(|a| a.threshold.normalize().to_string()).collect(),
            });
        }
        summary.tenants.insert(id.to_string(), t);
    }
    if let Some(path) = &options.summary_json {
        let json = serde_json::to_string_pretty(&summary).expect("serializable");
        std::fs::write(path, json).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(summary)
}

/// Prints the summary for people.
pub fn print_summary(summary: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} lines: {} accepted, {} bad; {} records written",
        summary.lines, summary.accepted, summary.bad_lines, summary.records
    )?;
    for (id, t) in &summary.tenants {
        writeln!(out, "tenant {id}: {} interactions, {} credits", t.interactions, t.credits)?;
        for (line, credits) in &t.credits_by_line {
            writeln!(out, "  {line:<38} {credits}")?;
        }
        for (currency, amount) in &t.pass_through {
            writeln!(out, "  pass-through {currency:<25} {amount}")?;
        }
        for s in &t.statements {
            let overage: Vec<String> = s.overage.iter().map(|(c, a)| format!("{a} {c}")).collect();
            writeln!(
                out,
                "  statement {}: {} interactions, {} credits, overage [{}], overage credits {}, expired {}{}{}",
                s.period,
                s.interactions,
                s.credits,
                overage.join(", "),
                s.overage_credits,
                s.expired_credits,
                if s.platform_users_over_limit { ", platform users over limit" } else { "" },
                if s.alerts.is_empty() { String::new() } else { format!(", alerts {}", s.alerts.join(" ")) },
            )?;
        }
    }
    Ok(())
}

/// A progress line on standard error for large inputs: redrawn in place on a terminal,
/// a line every 10% otherwise.
struct Progress {
    enabled: bool,
    terminal: bool,
    total: u64,
    started: WallInstant,
    last: WallInstant,
    last_decile: u64,
}

impl Progress {
    fn new(enabled: bool, total: u64) -> Self {
        let now = WallInstant::now();
        Progress {
            enabled: enabled && total > 8 << 20,
            terminal: std::io::stderr().is_terminal(),
            total: total.max(1),
            started: now,
            last: now,
            last_decile: 0,
        }
    }

    fn tick(&mut self, done: u64, lines: u64) {
        if !self.enabled || !lines.is_multiple_of(4096) {
            return;
        }
        let now = WallInstant::now();
        let percent = done * 100 / self.total;
        if self.terminal && now - self.last >= Duration::from_millis(200) {
            self.last = now;
            let filled = (percent / 5) as usize;
            eprint!(
                "\r[{}{}] {percent:>3}% {lines} events {:.0}/s",
                "#".repeat(filled),
                " ".repeat(20 - filled.min(20)),
                self.rate(lines)
            );
        } else if !self.terminal && percent / 10 > self.last_decile {
            self.last_decile = percent / 10;
            eprintln!("replay: {percent}% ({lines} events, {:.0}/s)", self.rate(lines));
        }
    }

    fn rate(&self, lines: u64) -> f64 {
        lines as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn finish(&self, lines: u64) {
        if self.enabled {
            if self.terminal {
                eprintln!();
            }
            eprintln!(
                "replay: {lines} events in {:.1}s ({:.0}/s)",
                self.started.elapsed().as_secs_f64(),
                self.rate(lines)
            );
        }
    }
}
