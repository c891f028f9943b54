//! Issue 7: unbounded cardinality. Millions of distinct consumers never refuse a valid
//! event, the process stays under its memory ceiling (the near cache forgets what Redis
//! keeps), and every interaction is still counted exactly once.

use std::time::Duration;

use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;

const AT: &str = "2026-11-22T10:00:00Z";

fn event(i: usize, id: &str) -> pb::Event {
    pb::Event {
        tenant_id: "acme".into(),
        event_id: id.into(),
        event_time: AT.into(),
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

/// The peak resident set of a process, bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Sends events `from..to` (each a new consumer) on `streams` concurrent batch streams;
/// every event must be accepted as a new interaction.
async fn send(channel: &tonic::transport::Channel, from: usize, to: usize, streams: usize, batch: usize) {
    let per = (to - from).div_ceil(streams);
    let tasks: Vec<_> = (0..streams)
        .map(|s| {
            let channel = channel.clone();
            let (start, end) = (from + s * per, (from + (s + 1) * per).min(to));
            tokio::spawn(async move {
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                let mut answers = IngestServiceClient::new(channel)
                    .ingest_batch(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .unwrap()
                    .into_inner();
                let mut next = start;
                let mut pending = 0;
                // One batch in flight ahead of the one being answered.
                while next < end || pending > 0 {
                    while pending < 2 && next < end {
                        let last = (next + batch).min(end);
                        let events = (next..last).map(|i| event(i, &format!("e{i}"))).collect();
                        tx.send(pb::IngestBatchRequest { events }).await.unwrap();
                        next = last;
                        pending += 1;
                    }
                    let answer = answers.message().await.unwrap().unwrap();
                    for outcome in answer.outcomes {
                        assert!(outcome.refusal.is_none(), "a valid event was refused: {outcome:?}");
                        assert_eq!(outcome.disposition, pb::Disposition::NewInteraction as i32);
                    }
                    pending -= 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// 10M distinct consumers by default (`DAYBOOK_MEMORY_TEST_CONSUMERS` overrides it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_million_distinct_consumers_stay_under_the_memory_ceiling() {
    let n: usize =
        std::env::var("DAYBOOK_MEMORY_TEST_CONSUMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    distinct_consumers_under_a_ceiling(n, 256).await;
}

/// `n` distinct consumers through a Redis-mode daybook whose memory ceiling is
/// `ceiling_mib`: every event a new interaction, the peak resident set under the ceiling,
/// retries of early events (forgotten by the near cache) answered with their original
/// outcome, later messages of early consumers repeats, every interaction once in Redis.
pub async fn distinct_consumers_under_a_ceiling(n: usize, ceiling_mib: u64) {
    #[allow(non_snake_case)]
    let CEILING_MIB = ceiling_mib;
    let redis = super::redis_store::RedisNode::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    // A generous Redis deadline: on two busy cores a 50 ms one is sometimes missed, and an
    // event decided in degraded mode gets a provisional answer (still counted once in
    // Redis). This test is about memory; the outage tests are in replicas.rs.
    let text = "[server]\nredis_timeout = \"PT1S\"\n[[tenant]]\nid = \"acme\"\ntime_zone = \"UTC\"\nmeter = \"dar\"\n";
    std::fs::write(&config, text).unwrap();
    let ceiling = format!("{CEILING_MIB}MiB");
    let server = super::crash::start_with(
        &dir.path().join("data"),
        &config,
        &["--redis", &redis.url(), "--memory-ceiling", &ceiling],
    );
    let pid = server.child.id();
    let channel = daybook::client::connect(&server.addr).await.unwrap();
    let started = std::time::Instant::now();
    send(&channel, 0, n, 4, 1000).await;
    let elapsed = started.elapsed();
    // Let the last eviction round run, then read the peak.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peak = peak_rss(pid);
    eprintln!(
        "memory: {n} distinct consumers in {:.1} s ({:.0} events/s), peak RSS {:.1} MiB (ceiling {CEILING_MIB} MiB)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < CEILING_MIB << 20, "peak RSS {peak} over the ceiling");
    // Retries of early events (forgotten by the near cache) get their original answer; new
    // messages of early consumers are repeats. Nothing is counted twice.
    let mut ingest = IngestServiceClient::new(channel.clone());
    for i in (0..n).step_by((n / 500).max(1)) {
        let retry = daybook::client::ingest(&mut ingest, event(i, &format!("e{i}"))).await.unwrap();
        assert!(retry.retry, "event e{i} retried: {retry:?}");
        assert_eq!(retry.disposition, pb::Disposition::NewInteraction as i32);
        let repeat = daybook::client::ingest(&mut ingest, event(i, &format!("again-{i}"))).await.unwrap();
        if repeat.disposition != pb::Disposition::AlreadyCounted as i32 {
            let log = server.log.lock().unwrap().join("\n");
            panic!("consumer {i}: {repeat:?}\n{log}");
        }
    }
    // Every interaction exactly once, as Redis holds them: one entry per relationship-day
    // and one interaction record per stream entry, and the usage every replica answers.
    let day: chrono::NaiveDate = "2026-11-22".parse().unwrap();
    let (mut entries, mut records) = (0u64, 0u64);
    for shard in 0..daybook::store::keys::SHARDS {
        let keys = daybook::store::keys::ShardKeys::new("acme", shard);
        let place = daybook::rating::shared::Place::Interaction { period_start: day };
        entries += redis.cli(&["HLEN", &keys.state(place)]).parse::<u64>().unwrap();
        records += redis.cli(&["XLEN", &keys.records()]).parse::<u64>().unwrap();
    }
    assert_eq!(entries, n as u64, "interactions in Redis");
    assert_eq!(records, n as u64, "interaction records on the streams");
    assert_eq!(super::crash::usage_of_tenant(&server.addr, "acme").await.interactions, n as u64);
}
