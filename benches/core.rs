//! Core hot paths, one core: first touches (a new relationship-day), repeats (the same
//! relationship again the same day), surcharge lines added to an existing interaction,
//! and the proto decode + conversion a server call pays before rating.
//!
//! Run: `cargo bench --bench core`. Numbers and the machine: BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use daybook::api::pb;
use daybook::rating::event::{Channel, RawBody, RawEnum, RawMessage, SenderRole};
use daybook::rating::{Engine, EngineConfig, RawEvent};
use daybook::tenants::parse_tenants_toml;
use prost::Message;

const TENANTS: &str = r#"
[[tenant]]
id = "acme"
time_zone = "America/New_York"
meter = "dar"
settings = { generative_ai = true }
changes = [ { at = "2025-06-10T12:00:00Z", set = { intent_listening = true } } ]
"#;

fn engine() -> Engine {
    let engine = Engine::new(EngineConfig::default());
    for spec in parse_tenants_toml(TENANTS).unwrap() {
        engine.put_tenant(spec).unwrap();
    }
    engine
}

fn message(event_id: String, consumer: String, at: &str, sender: SenderRole) -> RawEvent {
    RawEvent {
        tenant_id: "acme".into(),
        event_id,
        event_time: at.into(),
        body: RawBody::Message(RawMessage {
            consumer_id: consumer,
            conversation_id: "conv".into(),
            sender_role: RawEnum::Known(sender),
            sender_id: String::new(),
            channel: RawEnum::Known(Channel::Web),
            integration_id: "web-1".into(),
            provider_price: None,
        }),
    }
}

const BATCH: usize = 10_000;

/// The timed part: rate every event. Returns the engine so its drop is not timed.
fn rate_all(engine: Engine, events: Vec<RawEvent>) -> Engine {
    let mut records = Vec::with_capacity(4);
    for e in events {
        black_box(engine.ingest(e, None, &mut records).unwrap());
        records.clear();
    }
    engine
}

fn rating(c: &mut Criterion) {
    let mut group = c.benchmark_group("rating");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);

    // First touches: every event starts a new relationship-day.
    let mut round = 0u64;
    group.bench_function("first_touch", |b| {
        b.iter_batched(
            || {
                round += 1;
                let events: Vec<RawEvent> = (0..BATCH)
                    .map(|i| {
                        message(
                            format!("f{round}-{i}"),
                            format!("c{round}-{i}"),
                            "2025-06-10T10:00:00-04:00",
                            SenderRole::Consumer,
                        )
                    })
                    .collect();
                (engine(), events)
            },
            |(engine, events)| rate_all(engine, events),
            BatchSize::LargeInput,
        )
    });

    // Repeats: 1,000 relationships already counted today; every event is another message.
    // The engine already remembers 1M event ids, as a running sidecar does, so the
    // idempotency map is large and its pages are resident (steady state, not growth).
    let warm = engine();
    for i in 0..1_000_000 {
        warm.ingest(
            message(format!("p{i}"), format!("c{}", i % 1000), "2025-06-10T08:00:00-04:00", SenderRole::Bot),
            None,
            &mut Vec::new(),
        )
        .unwrap();
    }
    for i in 0..1000 {
        warm.ingest(
            message(format!("w{i}"), format!("c{i}"), "2025-06-10T09:00:00-04:00", SenderRole::Consumer),
            None,
            &mut Vec::new(),
        )
        .unwrap();
    }
    let mut round = 0u64;
    group.bench_function("repeat", |b| {
        b.iter_batched(
            || {
                round += 1;
                (0..BATCH)
                    .map(|i| {
                        message(
                            format!("r{round}-{i}"),
                            format!("c{}", i % 1000),
                            "2025-06-10T09:30:00-04:00",
                            SenderRole::Agent,
                        )
                    })
                    .collect::<Vec<_>>()
            },
            |events| {
                let mut records = Vec::new();
                for e in events {
                    black_box(warm.ingest(e, None, &mut records).unwrap());
                }
            },
            BatchSize::LargeInput,
        )
    });

    // Surcharge lines: each event is the first with intent listening on for its interaction.
    let mut round = 0u64;
    group.bench_function("surcharge_line", |b| {
        b.iter_batched(
            || {
                round += 1;
                let engine = engine();
                for i in 0..BATCH {
                    engine
                        .ingest(
                            message(
                                format!("s{i}"),
                                format!("c{i}"),
                                "2025-06-10T09:00:00-04:00",
                                SenderRole::Consumer,
                            ),
                            None,
                            &mut Vec::new(),
                        )
                        .unwrap();
                }
                let events: Vec<RawEvent> = (0..BATCH)
                    .map(|i| {
                        message(
                            format!("t{round}-{i}"),
                            format!("c{i}"),
                            "2025-06-10T12:30:00-04:00",
                            SenderRole::Agent,
                        )
                    })
                    .collect();
                (engine, events)
            },
            |(engine, events)| rate_all(engine, events),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn proto(c: &mut Criterion) {
    let request = pb::IngestMessageRequest {
        tenant_id: "acme".into(),
        event_id: "evt-0123456789".into(),
        event_time: "2025-06-10T09:30:00-04:00".into(),
        message: Some(pb::MessageEvent {
            consumer_id: "consumer-0123456789".into(),
            conversation_id: "conversation-42".into(),
            sender_role: pb::SenderRole::Agent as i32,
            sender_id: "agent-7".into(),
            channel: pb::Channel::Web as i32,
            integration_id: "web-1".into(),
            provider_price: None,
        }),
    };
    let bytes = request.encode_to_vec();
    let mut group = c.benchmark_group("proto");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_and_convert", |b| {
        b.iter(|| {
            let decoded = pb::IngestMessageRequest::decode(black_box(bytes.as_slice())).unwrap();
            black_box(RawEvent::from(as_event(decoded)))
        })
    });
    let engine = engine();
    let outcome = engine.ingest(RawEvent::from(as_event(request.clone())), None, &mut Vec::new()).unwrap();
    group.bench_function("outcome_encode", |b| {
        b.iter(|| {
            black_box(
                pb::IngestMessageResponse { outcome: Some(daybook::api::outcome_out(black_box(&outcome))) }
                    .encode_to_vec(),
            )
        })
    });
    group.finish();
}

/// Maintenance pauses ingest while it holds the server's ordering lock: copying the state
/// for a snapshot, and pruning closed periods. Both are measured on 1M hot
/// relationship-days with 1M remembered event ids.
fn maintenance(c: &mut Criterion) {
    const STATE: usize = 1_000_000;
    let fill = |engine: &Engine| {
        for i in 0..STATE {
            let at = format!("2025-06-{:02}T10:00:00-04:00", 1 + i % 28);
            engine
                .ingest(message(format!("m{i}"), format!("c{i}"), &at, SenderRole::Consumer), None, &mut Vec::new())
                .unwrap();
        }
    };
    let mut group = c.benchmark_group("maintenance");
    group.sample_size(10);
    group.throughput(Throughput::Elements(STATE as u64));
    let full = engine();
    fill(&full);
    group.bench_function("snapshot_copy_1m", |b| b.iter(|| black_box(full.image())));
    group.bench_function("snapshot_encode_1m", |b| {
        let image = full.image();
        b.iter(|| {
            // Buffered as the server writes its snapshot file; the sink stands for the disk.
            let mut w =
                daybook::rating::snapshot::Writer::new(std::io::BufWriter::with_capacity(1 << 20, std::io::sink()));
            image.write(&mut w).unwrap();
            black_box(w.finish().unwrap())
        })
    });
    // A start's first half (P6): the snapshot read back into a fresh engine.
    let mut file = daybook::rating::snapshot::Writer::new(Vec::new());
    full.image().write(&mut file).unwrap();
    let file = file.finish().unwrap();
    group.bench_function("snapshot_read_1m", |b| {
        b.iter_batched(
            engine,
            |e| {
                e.read_state(daybook::rating::snapshot::Reader::sized(file.as_slice(), file.len() as u64)).unwrap();
                e
            },
            BatchSize::PerIteration,
        )
    });
    drop(full);
    // Every period of June closed at once (the first close after a long stop).
    let now = "2025-09-01T00:00:00Z".parse().unwrap();
    group.bench_function("prune_1m", |b| {
        b.iter_batched(
            || {
                let e = engine();
                fill(&e);
                e
            },
            |e| {
                black_box(e.close_periods(now));
                e
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The cost credentials add to every call: one SHA-256 of the presented token and a
/// constant-time comparison with every credential's hash.
fn auth(c: &mut Criterion) {
    use daybook::server::auth::{Auth, hex, sha256};
    let mut group = c.benchmark_group("auth");
    for credentials in [10usize, 100, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let file: String = (0..credentials)
            .map(|i| {
                format!(
                    "[[credential]]\nid = \"c{i}\"\ntoken_sha256 = \"{}\"\ningest = [\"acme\"]\n",
                    hex(&sha256(format!("token-{i}").as_bytes()))
                )
            })
            .collect();
        std::fs::write(&path, file).unwrap();
        let auth = Auth::from_file(path).unwrap();
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("authorization", format!("Bearer token-{}", credentials / 2).parse().unwrap());
        let extensions = http::Extensions::new();
        group.bench_function(format!("bearer_token_{credentials}_credentials"), |b| {
            b.iter(|| black_box(auth.authenticate(&metadata, &extensions).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, rating, proto, maintenance, auth);
criterion_main!(benches);

/// The event a unary `IngestMessage` carries, as the server makes it before rating.
fn as_event(r: pb::IngestMessageRequest) -> pb::Event {
    pb::Event {
        tenant_id: r.tenant_id,
        event_id: r.event_id,
        event_time: r.event_time,
        kind: r.message.map(pb::event::Kind::Message),
    }
}
