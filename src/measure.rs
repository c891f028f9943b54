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
    /// Events journaled after the snapshot: the longest tail a running server leaves
    /// (`snapshot_every`, one entry per event here).
    pub tail: u64,
    pub journal_bytes: u64,
    pub write: Duration,
    /// Each round's snapshot of the state before the tail: its wall time and the process's
    /// CPU seconds (user and system) while it was written, and its size in bytes.
    pub snapshot_writes: Vec<(Duration, f64)>,
    pub snapshot_bytes: u64,
    /// Each round's start from the latest snapshot and the journal's tail after it (P6).
    pub from_snapshot: Vec<Duration>,
    /// Each round's start from the journal alone (the snapshot moved aside).
    pub from_journal: Vec<Duration>,
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
/// through the server's core, with a snapshot written `tail` events before the end, as a
/// running server leaves its data directory at worst. Then, `rounds` times, times a start
/// from that directory (snapshot and tail) and a start from the journal alone.
pub fn recovery_run(
    (events, tail): (u64, u64),
    data_dir: &Path,
    rounds: usize,
    out: &mut impl Write,
) -> anyhow::Result<RecoveryRun> {
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
    let tail = tail.min(events);
    let (mut snapshot_writes, mut snapshot_bytes) = (Vec::new(), 0);
    // Two phases: up to the snapshot, then the tail after it.
    for phase in [0..events - tail, events - tail..events] {
        for from in phase.clone().step_by(1000) {
            let to = (from + 1000).min(phase.end);
            let batch: Vec<pb::Event> = (from..to)
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
            if to.is_multiple_of(1_000_000) {
                writeln!(out, "  journaled {to} events")?;
            }
        }
        if phase.end == events - tail {
            daybook.write_snapshot(data_dir)?;
            writeln!(out, "  snapshot written after {} events", phase.end)?;
            // The same snapshot again, timed, into a directory beside it: the one the
            // starts read stays as written.
            let scratch = data_dir.join("snapshot-timed");
            std::fs::create_dir_all(&scratch)?;
            for _ in 0..rounds.max(1) {
                let (started, cpu) = (WallInstant::now(), process_cpu());
                daybook.write_snapshot(&scratch)?;
                snapshot_writes.push((started.elapsed(), process_cpu() - cpu));
            }
            snapshot_bytes = std::fs::metadata(scratch.join("snapshot.bin"))?.len();
            std::fs::remove_dir_all(&scratch)?;
        }
    }
    runtime.block_on(daybook.journal().close());
    let write = started.elapsed();
    drop(daybook);
    let journal_bytes = dir_bytes(&data_dir.join("journal"));

    let start = || -> anyhow::Result<Duration> {
        let started = WallInstant::now();
        let daybook = open(Telemetry::local())?;
        let took = started.elapsed();
        runtime.block_on(daybook.journal().close());
        Ok(took)
    };
    let (snapshot, aside) = (data_dir.join("snapshot.bin"), data_dir.join("snapshot.aside"));
    let mut from_snapshot = Vec::new();
    let mut from_journal = Vec::new();
    for _ in 0..rounds.max(1) {
        from_snapshot.push(start()?);
        std::fs::rename(&snapshot, &aside)?;
        let alone = start();
        std::fs::rename(&aside, &snapshot)?;
        from_journal.push(alone?);
    }
    Ok(RecoveryRun { events, tail, journal_bytes, write, snapshot_writes, snapshot_bytes, from_snapshot, from_journal })
}

/// This process's CPU seconds so far, user and system.
fn process_cpu() -> f64 {
    crate::server::process::cpu_seconds().map_or(0.0, |(user, system)| user + system)
}

/// What `daybook bench-state` measures.
#[derive(Debug, Clone)]
pub struct StateOptions {
    /// Relationship-days per memory run (each size in processes of its own).
    pub memory: Vec<u64>,
    /// Events of the recovery's data directory (0: no recovery run).
    pub recovery: u64,
    /// Of which journaled after its snapshot.
    pub recovery_tail: u64,
    pub rounds: usize,
    /// Where the recovery's data directory is written (a fresh temporary one by default).
    pub data_dir: Option<std::path::PathBuf>,
}

/// One memory run in this process, as a JSON line (what `bench_state` reads from each of
/// its child processes).
pub fn print_memory_run(n: u64, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string(&memory_run(n)?)?)?;
    Ok(())
}

fn show(values: impl IntoIterator<Item = f64>, decimals: usize) -> String {
    crate::loadgen::Spread::of(values).expect("at least one round").show(decimals)
}

/// Every measurement of `options`, each the median of its rounds with their spread.
pub fn bench_state(options: &StateOptions, out: &mut impl Write) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rounds = options.rounds.max(1);
    writeln!(out, "daybook bench-state: {cores} cores, {rounds} rounds, medians (least to greatest)")?;
    for &n in options.memory.iter().filter(|n| **n > 0) {
        let mut runs = Vec::new();
        for _ in 0..rounds {
            let child = std::process::Command::new(std::env::current_exe()?)
                .args(["bench-state", "--memory-run", &n.to_string()])
                .output()?;
            if !child.status.success() {
                anyhow::bail!("memory run of {n}: {}", String::from_utf8_lossy(&child.stderr));
            }
            runs.push(serde_json::from_slice::<MemoryRun>(&child.stdout)?);
        }
        writeln!(
            out,
            "memory   {n:>10} relationship-days: {} bytes per relationship-day, {} per event id, \
             {} per first touch with its id, RSS {} MiB",
            show(runs.iter().map(|r| r.bytes_per_relationship_day), 1),
            show(runs.iter().map(|r| r.bytes_per_event_id), 1),
            show(runs.iter().map(|r| r.bytes_per_first_touch), 1),
            show(runs.iter().map(|r| r.rss_after_bytes as f64 / f64::from(1u32 << 20)), 0),
        )?;
    }
    if options.recovery > 0 {
        let dir = match &options.data_dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!("daybook-bench-{}", std::process::id())),
        };
        std::fs::create_dir_all(&dir)?;
        let run = recovery_run((options.recovery, options.recovery_tail), &dir, rounds, out);
        if options.data_dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let run = run?;
        writeln!(
            out,
            "recovery {:>10} events, journal {:.0} MiB written in {:.1} s: start from the snapshot and a tail of \
             {} events {} s; from the journal alone {} s",
            run.events,
            run.journal_bytes as f64 / f64::from(1u32 << 20),
            run.write.as_secs_f64(),
            run.tail,
            show(run.from_snapshot.iter().map(Duration::as_secs_f64), 2),
            show(run.from_journal.iter().map(Duration::as_secs_f64), 2),
        )?;
        writeln!(
            out,
            "snapshot of the {} events before the tail ({:.0} MiB) written in {} s, {} s of CPU",
            run.events - run.tail,
            run.snapshot_bytes as f64 / f64::from(1u32 << 20),
            show(run.snapshot_writes.iter().map(|(wall, _)| wall.as_secs_f64()), 2),
            show(run.snapshot_writes.iter().map(|(_, cpu)| *cpu), 2),
        )?;
    }
    Ok(())
}
