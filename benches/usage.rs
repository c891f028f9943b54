//! Usage and statements in Redis mode cost O(periods), not O(events): `GetUsage` and
//! `GetStatement` of a tenant with 1M events in a month, beside one with 1k, on the code
//! the RPCs call (`Daybook::shared_usage`, `Daybook::shared_statement`), against a real
//! `redis-server` the bench starts. The events are loaded through the Redis-mode ingest
//! path (reservation, claim, journal): every one a new consumer, so that every one
//! reaches Redis.
//!
//! Run: `cargo bench --bench usage` (about a minute of loading first). Under `cargo test
//! --benches` it runs once on 2k and 20 events. Numbers and the machine: BENCHMARKS.md.

use std::sync::Arc;

use criterion::Criterion;
use daybook::api::pb;
use daybook::rating::ledger::StatementPeriod;
use daybook::server::core::Daybook;
use daybook::server::journal::Durability;
use daybook::server::telemetry::Telemetry;
use daybook::store::redis::{RedisConfig, RedisStore};
use futures_util::StreamExt;

const TENANTS: &str = r#"
[[tenant]]
id = "big"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P36500D" }

[[tenant]]
id = "small"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P36500D" }
"#;

fn event(tenant: &str, i: usize) -> pb::Event {
    pb::Event {
        tenant_id: tenant.into(),
        event_id: format!("e{i}"),
        event_time: format!("2026-11-{:02}T10:00:00Z", i % 30 + 1),
        kind: Some(pb::event::Kind::Message(pb::MessageEvent {
            consumer_id: format!("consumer-{i}"),
            conversation_id: format!("conv-{i}"),
            sender_role: pb::SenderRole::Consumer as i32,
            sender_id: String::new(),
            channel: pb::Channel::Web as i32,
            integration_id: "web".into(),
            provider_price: None,
        })),
    }
}

async fn load(daybook: &Arc<Daybook>, tenant: &str, n: usize) {
    let mut answers = futures_util::stream::iter(0..n)
        .map(|i| {
            let daybook = daybook.clone();
            let event = event(tenant, i);
            async move { daybook.ingest_shared(event).await.0 }
        })
        .buffer_unordered(256);
    while let Some(answer) = answers.next().await {
        assert_eq!(answer.expect("accepted").disposition, daybook::rating::outcome::Disposition::NewInteraction);
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (big, small) = if full { (1_000_000, 1_000) } else { (2_000, 20) };
    let redis = daybook::loadgen::BenchRedis::start().expect("redis-server");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tenants = daybook::tenants::parse_tenants_toml(TENANTS).unwrap();
    let daybook = runtime.block_on(async {
        // A generous deadline: on two busy cores a 50 ms one is sometimes missed, and the
        // event is then decided in degraded mode (reconciled below, as the server would).
        let config = RedisConfig { timeout: std::time::Duration::from_secs(1), ..RedisConfig::new(&redis.url) };
        let store = RedisStore::connect(config).await.expect("redis");
        let key = store.fingerprint_key(*b"daybook-bench-k!").await.unwrap();
        let clock: daybook::server::core::Clock =
            Arc::new(|| chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().to_utc());
        Daybook::open_shared(
            dir.path(),
            Durability::Write.into(),
            tenants,
            clock,
            Telemetry::local(),
            Some(daybook::server::core::SharedStore {
                store,
                fingerprint_key: key,
                tenant_log: daybook::rating::LogPolicy::WhenNeeded,
            }),
            None,
        )
        .unwrap()
    });
    let started = std::time::Instant::now();
    runtime.block_on(load(&daybook, "big", big));
    runtime.block_on(load(&daybook, "small", small));
    // What was decided in degraded mode reaches the store, as the server's reconciler does.
    while daybook.shared_status().is_some_and(|(pending, _)| pending > 0) {
        runtime.block_on(daybook.reconcile());
    }
    eprintln!("loaded {big} + {small} events in {:.1} s", started.elapsed().as_secs_f64());

    let month = StatementPeriod::Month("2026-11-01".parse().unwrap());
    let mut criterion = Criterion::default().sample_size(20).configure_from_args();
    let mut group = criterion.benchmark_group("redis_books");
    for (tenant, n) in [("big", big), ("small", small)] {
        let usage = runtime.block_on(daybook.shared_usage(tenant, None, None)).unwrap();
        assert_eq!(usage.interactions, n as u64, "{tenant}");
        group.bench_function(format!("GetUsage/{n} events"), |b| {
            b.iter(|| runtime.block_on(daybook.shared_usage(tenant, None, None)).unwrap())
        });
        let statement = runtime.block_on(daybook.shared_statement(tenant, &month)).unwrap();
        assert_eq!(statement.totals.interactions, n as u64, "{tenant}");
        group.bench_function(format!("GetStatement/{n} events"), |b| {
            b.iter(|| runtime.block_on(daybook.shared_statement(tenant, &month)).unwrap())
        });
    }
    group.finish();
    criterion.final_summary();
}
