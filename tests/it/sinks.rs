//! Records out: the CloudEvents sink against a real HTTP receiver that is down, failing,
//! slow and well in turn, across a `kill -9` of the real binary; per-tenant routing;
//! lag in `/ready` and the metrics; signed webhooks of alerts and of Redis degraded
//! mode; the Redis stream sink.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use super::crash::{events_for, start_with};
use super::receiver::{Mode, Receiver};
use super::server::http_get;
use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;

/// Sends events in batches of 200 and waits for every answer.
async fn send(addr: &str, events: &[pb::Event]) {
    let channel = daybook::client::connect(addr).await.unwrap();
    let mut client = IngestServiceClient::new(channel);
    for chunk in events.chunks(200) {
        let request = tokio_stream::iter(vec![pb::IngestBatchRequest { events: chunk.to_vec() }]);
        let mut answers = client.ingest_batch(request).await.unwrap().into_inner();
        while let Some(answer) = answers.message().await.unwrap() {
            assert!(answer.outcomes.iter().all(|o| o.disposition != pb::Disposition::Refused as i32));
        }
    }
}

/// The ids of the JSONL file's records of `tenant` (the ground truth: every record the
/// server emitted, once).
fn jsonl_ids(path: &std::path::Path, tenant: &str) -> HashSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["tenant_id"] == tenant)
        .map(|r| r["record_id"].as_str().unwrap().to_string())
        .collect()
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

const TENANTS: &str = r#"
[[tenant]]
id = "acme"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P36500D" }
plan = { kind = "starter", included = 1000, alerts = ["0.5", "1.0"] }

[[tenant]]
id = "globex"
time_zone = "UTC"
meter = "dar"
settings = { lateness_horizon = "P36500D" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_sink_delivers_every_record_once_by_id_through_outages_and_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let jsonl = dir.path().join("all.jsonl");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut receiver = Receiver::reserve().await;
    let config = dir.path().join("daybook.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nrecords_jsonl = {jsonl:?}\n{TENANTS}\n[[sink]]\nname = \"om\"\nkind = \"cloudevents\"\n\
             url = \"{}\"\ntoken_file = {token:?}\ntenants = [\"acme\"]\nbatch_records = 100\nbatch_age = \"PT0.2S\"\n\
             timeout = \"PT1S\"\nsource = \"daybook://test\"\n",
            receiver.url("/api/v1/events"),
        ),
    )
    .unwrap();
    let acme = events_for("acme", 4000, 7);
    let globex = events_for("globex", 1000, 11);
    let admin = ["--admin", "127.0.0.1:0"];
    let mut server = start_with(&data, &config, &admin);

    // Down: nothing listens. The journal keeps what waits, and /ready and the metrics say so.
    send(&server.addr, &acme[..2000]).await;
    send(&server.addr, &globex).await;
    let admin_addr = loop {
        if let Some(a) = server.admin.lock().unwrap().clone() {
            break a.parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut ready = String::new();
    for _ in 0..200 {
        ready = http_get(admin_addr, "/ready").await.1;
        if ready.contains("last error") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = ready.lines().find(|l| l.starts_with("sink om (cloudevents): ")).expect(&ready).to_string();
    assert!(!line.contains(": 0 entries behind") && line.contains("last error"), "{line}");
    let metrics = http_get(admin_addr, "/metrics").await.1;
    let lag = metric(&metrics, "daybook_sink_lag{daybook_sink=\"om\"").expect(&metrics);
    assert!(lag > 0.0, "{metrics}");

    // Failing, then slow past the sender's timeout (it sends those batches again).
    receiver.up(Mode::Failing).await;
    for _ in 0..200 {
        if receiver.refused() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.refused() >= 3, "the sink retried a failing receiver");
    receiver.set(Mode::Slow(Duration::from_millis(1500)));
    receiver.wait_for("a batch it answered too late", |e| !e.is_empty()).await;
    // Paced: each batch answered in 50 ms. Kill -9 in the middle of the deliveries.
    receiver.set(Mode::Slow(Duration::from_millis(50)));
    let so_far = receiver.accepted().len();
    for _ in 0..400 {
        if receiver.accepted().len() >= so_far + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let before_restart = receiver.events().len();

    // Back, and a retrying client sends everything again (idempotent), then the rest.
    receiver.set(Mode::Well);
    let server = start_with(&data, &config, &admin);
    send(&server.addr, &acme).await;
    let expected = || jsonl_ids(&jsonl, "acme");
    receiver
        .wait_for("every acme record", |events| {
            let got: HashSet<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
            let want = expected();
            !want.is_empty() && want.is_subset(&got)
        })
        .await;
    drop(server);

    let events = receiver.events();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *seen.entry(e["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let got: HashSet<String> = seen.keys().cloned().collect();
    let want = expected();
    assert_eq!(got, want, "every acme record by id, none that was never emitted");
    assert!(want.len() > 2000, "interactions, lines and alerts: {}", want.len());
    let again = events.len() - got.len();
    println!(
        "{} records, {} deliveries ({again} sent again), {before_restart} before the kill",
        want.len(),
        events.len()
    );
    for e in &events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["subject"], "acme", "routed by tenant: {e}");
        assert_eq!(e["source"], "daybook://test");
        let kind = e["type"].as_str().unwrap();
        assert!(kind.starts_with("io.daybook.") && kind.ends_with(".v1"), "{kind}");
        assert_eq!(e["data"]["record_id"], e["id"]);
        chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap();
    }
    assert!(events.iter().any(|e| e["type"] == "io.daybook.alert.v1"), "the plan's alerts are records too");
    for delivery in receiver.accepted() {
        assert_eq!(delivery.headers["content-type"], "application/cloudevents-batch+json");
        assert_eq!(delivery.headers["authorization"], "Bearer s3cret");
    }
}

/// Checks a webhook delivery's signature as a receiver would: HMAC-SHA256 of
/// "<t>.<body>" under the tenant's secret, and a timestamp near now.
fn verify_signature(delivery: &super::receiver::Delivery, secret: &str) -> bool {
    let Some(header) = delivery.headers.get("daybook-signature").and_then(|h| h.to_str().ok()) else { return false };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&delivery.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let expected: Vec<u8> =
        (0..v1.len() / 2).filter_map(|i| u8::from_str_radix(&v1[2 * i..2 * i + 2], 16).ok()).collect();
    ring::hmac::verify(&key, &signed, &expected).is_ok()
}

fn webhook_sinks(receiver: &Receiver, dir: &std::path::Path) -> Vec<daybook::server::sinks::SinkSpec> {
    let mut text = String::new();
    for tenant in ["acme", "globex"] {
        let secret = dir.join(format!("{tenant}.secret"));
        std::fs::write(&secret, format!("whsec_{tenant}\n")).unwrap();
        text.push_str(&format!(
            "[[sink]]\nname = \"{tenant}-alerts\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = {secret:?}\n\
             tenants = [\"{tenant}\"]\ntimeout = \"PT1S\"\n",
            receiver.url(&format!("/hooks/{tenant}"))
        ));
    }
    daybook::server::sinks::spec::parse_sinks(&toml::from_str::<Value>(&text).unwrap()).unwrap()
}

async fn webhooks_get_every_alert_signed(mut store: super::server::Store) {
    use super::server::{Harness, create, message, tenant};
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::reserve().await;
    receiver.up(Mode::Failing).await;
    let config = daybook::server::config::Config { sinks: webhook_sinks(&receiver, dir.path()), ..store.config() };
    let server = Harness::start(dir.path(), "2025-06-20T12:00:00Z", config).await;
    let channel = server.tcp_channel().await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    for t in ["acme", "globex"] {
        create(&channel, tenant(t, "UTC", pb::Meter::Dar)).await;
        for i in 0..5 {
            let m = message(t, &format!("{t}-{i}"), "2025-06-20T10:00:00Z", &format!("c{i}"), pb::SenderRole::Consumer);
            ingest.ingest_message(m).await.unwrap();
        }
    }
    // Failing first: the alerts wait and are sent again, never lost.
    for _ in 0..400 {
        if receiver.refused() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(receiver.refused() > 1, "the alerts were refused, then sent again");
    receiver.set(Mode::Well);
    receiver
        .wait_for("both tenants' alerts", |events| {
            ["acme", "globex"].iter().all(|t| events.iter().any(|e| e["subject"] == *t))
        })
        .await;
    if let super::server::Store::Redis(node) = &mut store {
        // Degraded mode is an operational event, to every webhook.
        node.kill();
        let m = message("acme", "during-outage", "2025-06-20T10:00:00Z", "c-outage", pb::SenderRole::Consumer);
        ingest.ingest_message(m).await.unwrap();
        receiver
            .wait_for("redis_degraded on both webhooks", |events| {
                events.iter().filter(|e| e["type"] == "io.daybook.redis_degraded.v1").count() >= 2
            })
            .await;
        node.restart();
        receiver
            .wait_for("redis_recovered on both webhooks", |events| {
                events.iter().filter(|e| e["type"] == "io.daybook.redis_recovered.v1").count() >= 2
            })
            .await;
    }
    server.stop().await;

    let deliveries = receiver.accepted();
    for d in &deliveries {
        let tenant = d.path.trim_start_matches("/hooks/");
        assert!(verify_signature(d, &format!("whsec_{tenant}")), "signed with {tenant}'s secret: {d:?}");
        assert!(!verify_signature(d, "whsec_other"), "a wrong secret does not verify");
        assert_eq!(d.headers["content-type"], "application/cloudevents+json");
        let event: Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(d.headers["webhook-id"], event["id"].as_str().unwrap());
        if event["type"] == "io.daybook.alert.v1" {
            assert_eq!(event["subject"], tenant, "each tenant's alerts to its own webhook");
            assert_eq!(event["data"]["alert"]["threshold"], "0.001");
        }
    }
    for t in ["acme", "globex"] {
        let alerts: HashSet<String> = deliveries
            .iter()
            .filter(|d| d.path == format!("/hooks/{t}"))
            .map(|d| serde_json::from_slice::<Value>(&d.body).unwrap())
            .filter(|e| e["type"] == "io.daybook.alert.v1")
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(alerts.len(), 1, "{t}: the plan's one threshold, one alert (by id)");
    }
    assert!(deliveries.iter().all(|d| {
        let e: Value = serde_json::from_slice(&d.body).unwrap();
        e["type"] != "io.daybook.line.v1" && e["type"] != "io.daybook.interaction.v1"
    }));
}

mod webhooks_get_every_alert_signed {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded() {
        super::webhooks_get_every_alert_signed(super::super::server::Store::Embedded).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        let node = super::super::redis_store::RedisNode::start();
        super::webhooks_get_every_alert_signed(super::super::server::Store::Redis(node)).await
    }
}

/// While a sink's receiver is down, the journal keeps every segment it has not passed,
/// whatever the retention says; once it is back, it gets them all and they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_keeps_what_a_sink_has_not_delivered() {
    use super::retention::{segments, send};
    use super::server::{Harness, create, tenant};
    use chrono::{TimeZone, Utc};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::reserve().await;
    let start = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap().timestamp();
    let now = Arc::new(AtomicI64::new(start));
    let read = now.clone();
    let clock: daybook::server::core::Clock =
        Arc::new(move || Utc.timestamp_opt(read.load(Ordering::Relaxed), 0).unwrap());
    let text = format!("[[sink]]\nname = \"om\"\nkind = \"cloudevents\"\nurl = \"{}\"\n", receiver.url("/e"));
    let config = daybook::server::config::Config {
        journal_segment_bytes: 4096,
        snapshot_entries: 50,
        snapshot_interval: Duration::from_secs(1),
        record_retention: Duration::from_secs(3600),
        sinks: daybook::server::sinks::spec::parse_sinks(&toml::from_str::<Value>(&text).unwrap()).unwrap(),
        ..Default::default()
    };
    let server = Harness::start_with_clock(dir.path(), clock, config).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    send(&channel, "old", 200, start).await;
    let later = start + 100 * 86_400;
    now.store(later, Ordering::Relaxed);
    send(&channel, "new", 200, later).await;
    // Snapshots cover everything and the retention is long past, but the sink is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(segments(dir.path())[0], 1, "the first segment stays while its records wait");
    let (_, ready) = http_get(server.admin, "/ready").await;
    assert!(ready.contains("sink om (cloudevents): ") && ready.contains("last error"), "{ready}");

    receiver.up(Mode::Well).await;
    receiver
        .wait_for("all 400 interactions", |events| {
            events.iter().filter(|e| e["type"] == "io.daybook.interaction.v1").count() >= 400
        })
        .await;
    let mut gone = false;
    for _ in 0..100 {
        if segments(dir.path())[0] > 1 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "delivered, the old segments go: {:?}", segments(dir.path()));
    // Caught up (the journal may gain an entry at any moment: periods closing).
    let mut ready = String::new();
    for _ in 0..100 {
        ready = http_get(server.admin, "/ready").await.1;
        if ready.contains("sink om (cloudevents): 0 entries behind") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready.contains("sink om (cloudevents): 0 entries behind"), "{ready}");
    server.stop().await;
}

/// The Redis stream sink: every record once, in cursor order, across a restart; its
/// position is kept beside the stream under the instance's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_stream_sink_appends_every_record_once_across_a_restart() {
    use super::server::{Harness, create, message, tenant};
    let dir = tempfile::tempdir().unwrap();
    let node = super::redis_store::RedisNode::start();
    let jsonl = dir.path().join("all.jsonl");
    let text = format!(
        "[[sink]]\nname = \"stream\"\nkind = \"redis_stream\"\nurl = \"{}\"\nstream = \"billing:records\"\n\
         source = \"daybook://a\"\n",
        node.url()
    );
    let config = || daybook::server::config::Config {
        records_jsonl: Some(jsonl.clone()),
        sinks: daybook::server::sinks::spec::parse_sinks(&toml::from_str::<Value>(&text).unwrap()).unwrap(),
        ..Default::default()
    };
    for round in 0..2 {
        let server = Harness::start(dir.path(), "2025-06-20T12:00:00Z", config()).await;
        let channel = server.tcp_channel().await;
        if round == 0 {
            create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
        }
        let mut ingest = IngestServiceClient::new(channel);
        for i in 0..30 {
            let m = message(
                "acme",
                &format!("r{round}-{i}"),
                "2025-06-20T10:00:00Z",
                &format!("c{round}-{i}"),
                pb::SenderRole::Consumer,
            );
            ingest.ingest_message(m).await.unwrap();
        }
        let want = jsonl_ids(&jsonl, "acme").len();
        for _ in 0..200 {
            if node.cli(&["XLEN", "billing:records"]).parse::<usize>().unwrap_or(0) >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        server.stop().await;
    }
    let entries = node.cli(&["XRANGE", "billing:records", "-", "+"]);
    let lines: Vec<&str> = entries.lines().collect();
    let mut got = Vec::new();
    let mut cursors = Vec::new();
    for pair in lines.windows(2) {
        match pair[0] {
            "id" => got.push(pair[1].to_string()),
            "cursor" => cursors.push(daybook::server::records::Cursor::parse(pair[1]).unwrap()),
            _ => {}
        }
    }
    let want = jsonl_ids(&jsonl, "acme");
    assert_eq!(got.len(), want.len(), "each record once");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), want);
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "in cursor order");
    let kept = node.cli(&["HGET", "billing:records:cursors", "daybook://a"]);
    assert!(daybook::server::records::Cursor::parse(&kept).unwrap() >= *cursors.last().unwrap());
}
