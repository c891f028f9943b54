//! In-process measurements for BENCHMARKS.md, apart from the gRPC load generator:
//! resident memory per hot relationship-day (P4) and the time to recover a journal (P6).
//!
//! Each memory figure comes from a process of its own (`daybook bench-state` runs itself
//! once per size), so that one size's heap does not flatter or burden the next.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use crate::api::pb;
use crate::rating::{Engine, EngineConfig};
use crate::server::core::{Clock, Daybook};
use crate::server::journal::Durability;
use crate::server::telemetry::Telemetry;
use crate::tenants::parse_tenants_toml;

const TENANTS: &str = r#"
[[tenant]]
id = "acme"
time_zone = "America/New_York"
meter = "dar"
settings = { generative_ai = true }
"#;

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or_else(|| anyhow::anyhow!("statm"))?.parse()?;
    Ok(pages * 4096)
}

fn message(event_id: String, consumer: String, at: &str) -> pb::Event {
    pb::Event {
        tenant_id: "acme".into(),
        event_id,
        event_time: at.into(),
        kind: Some(pb::event::Kind::Message(pb::MessageEvent {
            consumer_id: consumer,
            conversation_id: "conv".into(),
            sender_role: pb::SenderRole::Consumer as i32,
            sender_id: String::new(),
            channel: pb::Channel::Web as i32,
            integration_id: "web-1".into(),
            provider_price: None,
        })),
    }
}

/// What one memory run measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemoryRun {
    pub relationship_days: u64,
    /// Resident growth over the empty engine, per relationship-day, with the event id
    /// of the event that started it (what a sidecar holds for a first touch).
    pub bytes_per_first_touch: f64,
    /// Resident growth per further event id remembered (repeats of the same day).
    pub bytes_per_event_id: f64,
    /// The first minus the second: the relationship-day's own entry.
    pub bytes_per_relationship_day: f64,
    pub rss_after_bytes: u64,
}

/// Rates `n` first touches (each a new relationship-day), then `n` repeats of them the same
/// day, and reads the resident set after each phase.
pub fn memory_run(n: u64) -> anyhow::Result<MemoryRun> {
    // As the server holds state: no catalogue for voids until a tenant's first void.
    let engine = Engine::new(EngineConfig { catalogue_on_first_void: true, ..EngineConfig::default() });
    for spec in parse_tenants_toml(TENANTS).map_err(anyhow::Error::msg)? {
        engine.put_tenant(spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut records = Vec::with_capacity(4);
    let mut rate = |event: pb::Event| -> anyhow::Result<()> {
        engine.ingest(event.into(), None, &mut records).map_err(|r| anyhow::anyhow!("{}", r.reason))?;
        records.clear();
        Ok(())
    };
    let before = rss_bytes()?;
    for i in 0..n {
        rate(message(format!("f{i}"), format!("consumer-{i}"), "2025-06-10T10:00:00-04:00"))?;
    }
    let first = rss_bytes()?;
    for i in 0..n {
        rate(message(format!("r{i}"), format!("consumer-{i}"), "2025-06-10T11:00:00-04:00"))?;
    }
    let repeats = rss_bytes()?;
    let per_first = (first.saturating_sub(before)) as f64 / n as f64;
    let per_id = (repeats.saturating_sub(first)) as f64 / n as f64;
    Ok(MemoryRun {
        relationship_days: n,
        bytes_per_first_touch: per_first,
        bytes_per_event_id: per_id,
        bytes_per_relationship_day: per_first - per_id,
        rss_after_bytes: repeats,
    })
}

/// What one recovery run measured.
#[derive(Debug, Clone)]
pub struct RecoveryRun {
    pub events: u64,
    pub journal_bytes: u64,
    pub write: Duration,
    pub from_journal: Duration,
    pub from_snapshot: Duration,
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Journals `events` events (Zipf consumers over a month, as a chat platform sends them)
/// through the server's core, then times a start from the journal alone and a start from
/// a snapshot.
pub fn recovery_run(events: u64, data_dir: &Path, out: &mut impl Write) -> anyhow::Result<RecoveryRun> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let now = crate::rating::time::parse_instant("2025-07-01T12:00:00Z").map_err(anyhow::Error::msg)?;
    let clock: Clock = Arc::new(move || now);
    let tenants = parse_tenants_toml(TENANTS).map_err(anyhow::Error::msg)?;
    let open = |telemetry: Arc<Telemetry>| {
        Daybook::open(data_dir, Durability::Write.into(), tenants.clone(), clock.clone(), telemetry)
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let _guard = runtime.enter();

    let started = WallInstant::now();
    let daybook = open(Telemetry::local())?;
    let zipf = crate::loadgen::Zipf::new(1_000_000);
    let mut rng = crate::loadgen::Rng(0x9e37_79b9_7f4a_7c15);
    let batch = 1000u64;
    let mut sent = 0u64;
    while sent < events {
        let size = batch.min(events - sent);
        let batch: Vec<pb::Event> = (sent..sent + size)
            .map(|i| {
                let consumer = zipf.rank(rng.unit());
                // Thirty days, evenly: each event's day follows from its position.
                let day = 1 + (i * 30 / events.max(1));
                let at = format!("2025-06-{day:02}T{:02}:{:02}:00Z", (i / 60) % 24, i % 60);
                message(format!("e{i}"), format!("consumer-{consumer}"), &at)
            })
            .collect();
        for (result, _) in daybook.ingest_batch(batch) {
            result.map_err(|r| anyhow::anyhow!("{}", r.reason))?;
        }
        sent += size;
        if sent.is_multiple_of(1_000_000) {
            writeln!(out, "  journaled {sent} events")?;
        }
    }
    runtime.block_on(daybook.journal().close());
    let write = started.elapsed();
    drop(daybook);
    let journal_bytes = dir_bytes(&data_dir.join("journal"));

    let started = WallInstant::now();
    let daybook = open(Telemetry::local())?;
    let from_journal = started.elapsed();
    daybook.write_snapshot(data_dir)?;
    runtime.block_on(daybook.journal().close());
    drop(daybook);

    let started = WallInstant::now();
    let daybook = open(Telemetry::local())?;
    let from_snapshot = started.elapsed();
    runtime.block_on(daybook.journal().close());
    Ok(RecoveryRun { events, journal_bytes, write, from_journal, from_snapshot })
}
