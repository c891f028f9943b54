//! `daybook replay` end to end: a generated event log through the real binary; its
//! summary must equal the sum of the records it wrote, and bad lines are reported by
//! number and counted while the rest is rated. `DAYBOOK_REPLAY_EVENTS` sets the size
//! (default 100,000; the 1M run in the notes uses the same test).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::process::Command;

use rust_decimal::Decimal;
use serde_json::Value;

const TENANTS: &str = r#"
[[tenant]]
id = "lp"
time_zone = "America/New_York"
meter = "dar"
settings = { generative_ai = true, intent_listening = true }
plan = { kind = "starter", included = 500, alerts = ["0.5", "1.0"] }

[[tenant]]
id = "gc"
time_zone = "America/Chicago"
meter = "cycle"
settings = { cycle_anchor_day = 15 }

[[tenant]]
id = "tw"
time_zone = "UTC"
meter = "mau"
plan = { kind = "commitment", term_start = "2025-01-01", term_end = "2025-12-31", credits = "100", overage_price = { USD = "1.10" } }
"#;

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Writes `n` events with a handful of bad lines; returns the bad line numbers.
fn generate(path: &std::path::Path, n: u64) -> Vec<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut bad = Vec::new();
    for i in 0..n {
        let line = i + 1;
        if i % 25_000 == 7 {
            writeln!(out, "{{not json").unwrap();
            bad.push(line);
            continue;
        }
        if i % 25_000 == 11 {
            // A typing indicator is no event daybook meters (T-6).
            writeln!(out, r#"{{"tenant_id": "lp", "event_id": "bad{i}", "event_time": "2025-06-10T10:00:00Z"}}"#)
                .unwrap();
            bad.push(line);
            continue;
        }
        let tenant = ["lp", "gc", "tw"][rng.next(3) as usize];
        let day = 1 + rng.next(60);
        let (month, day) = if day > 30 { (7, day - 30) } else { (6, day) };
        let at = format!("2025-{month:02}-{day:02}T{:02}:{:02}:00Z", rng.next(24), rng.next(60));
        let consumer = format!("c{}", rng.next(20_000));
        let kind = rng.next(100);
        let body = if kind < 90 {
            let sender = [
                "SENDER_ROLE_CONSUMER",
                "SENDER_ROLE_AGENT",
                "SENDER_ROLE_BOT",
                "SENDER_ROLE_PROACTIVE",
                "SENDER_ROLE_SYSTEM",
            ][rng.next(5) as usize];
            let price =
                if rng.next(10) == 0 { r#", "provider_price": {"amount": "0.0079", "currency": "USD"}"# } else { "" };
            format!(
                r#""message": {{"consumer_id": "{consumer}", "conversation_id": "k{}", "sender_role": "{sender}", "sender_id": "a{}", "channel": "CHANNEL_SMS", "integration_id": "i{}"{price}}}"#,
                rng.next(3),
                rng.next(15),
                rng.next(2)
            )
        } else if kind < 95 {
            format!(
                r#""cobrowse": {{"consumer_id": "{consumer}", "conversation_id": "k", "session_id": "s{}", "established": {}}}"#,
                rng.next(1000),
                rng.next(2) == 0
            )
        } else {
            format!(r#""function_invocations": {{"count": "{}"}}"#, rng.next(20_000))
        };
        // Some ids repeat: retries of the same payload are fine, others are conflicts.
        let id = if rng.next(50) == 0 { format!("e{}", i / 2) } else { format!("e{i}") };
        writeln!(out, r#"{{"tenant_id": "{tenant}", "event_id": "{id}", "event_time": "{at}", {body}}}"#).unwrap();
    }
    bad
}

fn decimal(v: &Value) -> Decimal {
    v.as_str().map(|s| s.parse().unwrap()).unwrap_or_default()
}

#[test]
fn replay_summary_equals_the_sum_of_its_records() {
    let n: u64 = std::env::var("DAYBOOK_REPLAY_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(&tenants, TENANTS).unwrap();
    let events = dir.path().join("events.jsonl");
    let bad = generate(&events, n);
    let records = dir.path().join("records.jsonl");
    let summary_path = dir.path().join("summary.json");

    let output = Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["replay", "--quiet", "--tenants"])
        .arg(&tenants)
        .arg(&events)
        .arg("--out")
        .arg(&records)
        .arg("--summary-json")
        .arg(&summary_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Bad lines make the run a data error (65), reported after the summary was written.
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    for line in &bad {
        assert!(stderr.contains(&format!("line {line}: ")), "bad line {line} is reported by number");
    }

    let summary: Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["lines"], n);
    assert!(summary["bad_lines"].as_u64().unwrap() >= bad.len() as u64, "conflicting ids are bad lines too");
    assert_eq!(summary["accepted"].as_u64().unwrap() + summary["bad_lines"].as_u64().unwrap(), n);

    // Add up the records, per tenant.
    let mut interactions: BTreeMap<String, u64> = BTreeMap::new();
    let mut credits: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut pass_through: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut count = 0u64;
    for line in std::io::BufReader::new(std::fs::File::open(&records).unwrap()).lines() {
        let record: Value = serde_json::from_str(&line.unwrap()).unwrap();
        count += 1;
        assert!(ids.insert(record["record_id"].as_str().unwrap().to_string()), "record ids are unique");
        let tenant = record["tenant_id"].as_str().unwrap().to_string();
        if let Some(i) = record.get("interaction") {
            *interactions.entry(tenant.clone()).or_default() += 1;
            for l in i["lines"].as_array().unwrap() {
                *credits.entry(tenant.clone()).or_default() += decimal(&l["credits"]);
            }
        } else if let Some(l) = record.get("line") {
            *credits.entry(tenant.clone()).or_default() += decimal(&l["credits"]);
        } else if let Some(p) = record.get("pass_through") {
            *pass_through.entry(tenant).or_default() += decimal(&p["charge"]["amount"]);
        }
    }
    assert_eq!(summary["records"], count);
    for (tenant, t) in summary["tenants"].as_object().unwrap() {
        assert_eq!(
            t["interactions"].as_u64().unwrap(),
            interactions.get(tenant).copied().unwrap_or(0),
            "{tenant} interactions"
        );
        assert_eq!(decimal(&t["credits"]), credits.get(tenant).copied().unwrap_or_default(), "{tenant} credits");
        let usd = t["pass_through"].get("USD").map(decimal).unwrap_or_default();
        assert_eq!(usd, pass_through.get(tenant).copied().unwrap_or_default(), "{tenant} pass-through");
        let by_line: Decimal = t["credits_by_line"].as_object().unwrap().values().map(decimal).sum();
        assert_eq!(by_line, decimal(&t["credits"]), "{tenant} lines add up");
        let statements: Decimal = t["statements"].as_array().unwrap().iter().map(|s| decimal(&s["credits"])).sum();
        if tenant != "tw" {
            // Monthly statements cover everything; the commitment term covers 2025 only.
            assert_eq!(statements, decimal(&t["credits"]), "{tenant} statements add up");
        }
    }
    assert!(interactions.values().sum::<u64>() > 0);
}
