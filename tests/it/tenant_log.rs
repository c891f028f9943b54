//! Tenants whose rules span several shared entries follow their tenant log in Redis mode
//! (issue 15, item 7; issue 16, item 5): DAR-5 `retroactive`, several meters, event and
//! outcome meters with revocations, and voids. A generated stream of such tenants is split
//! at random over three real replicas on one Redis, with retries and reuses of ids sent to
//! other replicas; every replica then answers what one engine that saw every event once
//! answers, Redis's record streams hold each record once, and a replica that starts on an
//! empty data directory rebuilds the tenants from their logs.
//!
//! Beside them, a tenant metered by claims (one `dar` meter) receives voids too: they are
//! published to the store and withdraw there (COR under claims), and its replicas list
//! the same voided interactions as the one engine.

use std::collections::{BTreeSet, HashSet};

use daybook::api::{self, pb};
use daybook::rating::{Engine, EngineConfig, RawEvent};

use super::crash::{Rng, Server, start_with, usage_of_tenant};
use super::redis_store::{RedisCluster, RedisNode};
use super::replicas::{
    Backing, judged_alerts, retries_and_reuses_elsewhere, send, settle, statements_of, stream_records,
};

const TENANTS: &str = r#"
[[tenant]]
id = "retro"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { proactive_outbound_day = "retroactive", proactive_reply_window = "P2D", generative_ai = true, lateness_horizon = "P36500D" }
plan = { kind = "starter", included = 40, alerts = ["0.5", "1.0"] }

[[tenant]]
id = "multi"
time_zone = "America/New_York"
meters = [
  { id = "dar", preset = "dar" },
  { id = "wa", preset = "event", allowance = 5, units_per_credit = 4, filter = { channels = ["whatsapp"] } },
  { id = "fin", preset = "outcome", prices = { resolution = "0.99", handoff = "0.25" } },
]
settings = { lateness_horizon = "P36500D" }

[[tenant]]
id = "claims"
time_zone = "Asia/Kolkata"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P36500D" }
plan = { kind = "starter", included = 40, alerts = ["0.5", "1.0"] }
"#;

const TENANT_IDS: [&str; 3] = ["retro", "multi", "claims"];

/// Tenants that receive voids.
fn voids(tenant: &str) -> bool {
    tenant != "retro"
}

/// A tenant's events: messages of every role (proactive outbounds and their replies
/// among them), outcomes and revocations for `multi`, and voids for `multi` and `claims`.
pub fn events(tenant: &str, n: usize, seed: u64) -> Vec<pb::Event> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for i in 0..n {
        // November 2026, before the real clock of any run of this test.
        let day = 1 + rng.next(20);
        let at = format!("2026-11-{day:02}T{:02}:{:02}:{:02}Z", rng.next(24), rng.next(60), rng.next(60));
        let consumer = format!("c{}", rng.next(30));
        let conversation = format!("k{}", rng.next(4));
        let kind = match rng.next(24) {
            0 if voids(tenant) => pb::event::Kind::Void(pb::VoidEvent {
                from: format!("2026-11-{:02}", day),
                to: format!("2026-11-{:02}", (day + rng.next(3)).min(30)),
                reason: "a load generator".into(),
                consumer_id: Some(consumer.clone()),
                ..Default::default()
            }),
            1..=4 if tenant == "multi" => pb::event::Kind::Outcome(pb::OutcomeEvent {
                consumer_id: consumer.clone(),
                conversation_id: conversation,
                outcome_type: if rng.next(3) == 0 { "handoff" } else { "resolution" }.into(),
                revoked: rng.next(4) == 0,
            }),
            _ => pb::event::Kind::Message(pb::MessageEvent {
                consumer_id: consumer,
                conversation_id: conversation,
                sender_role: match rng.next(6) {
                    0 | 1 => pb::SenderRole::Proactive,
                    2 => pb::SenderRole::Agent,
                    3 => pb::SenderRole::System,
                    _ => pb::SenderRole::Consumer,
                } as i32,
                sender_id: format!("a{}", rng.next(6)),
                channel: if rng.next(2) == 0 { pb::Channel::Whatsapp } else { pb::Channel::Web } as i32,
                integration_id: "wa-1".into(),
                provider_price: (rng.next(10) == 0)
                    .then(|| pb::Money { amount: "0.0079".into(), currency: "USD".into() }),
            }),
        };
        out.push(pb::Event {
            tenant_id: tenant.into(),
            event_id: format!("s{seed}-e{i}"),
            event_time: at,
            kind: Some(kind),
        });
    }
    out
}

fn offline_engine() -> Engine {
    let engine = Engine::new(EngineConfig::default());
    for spec in daybook::tenants::parse_tenants_toml(TENANTS).unwrap() {
        engine.put_tenant(spec).unwrap();
    }
    engine
}

/// Every replica answers the offline engine's usage and statements; Redis's streams hold
/// each record once.
async fn assert_matches(offline: &Engine, servers: &[Server], redis: &impl Backing, label: &str) {
    for tenant in TENANT_IDS {
        let expected = api::usage_out(&offline.usage(tenant, None, None).unwrap(), offline.tenant(tenant).as_deref());
        let statements: Vec<pb::Statement> =
            offline.statements(tenant).unwrap().iter().map(api::statement_out).map(judged_alerts).collect();
        // Which event crossed an alert threshold depends on the order events were rated
        // in: the log's on every replica, the stream's offline.
        let mut theirs = Vec::new();
        for s in servers {
            assert_eq!(usage_of_tenant(&s.addr, tenant).await, expected, "{label}, {tenant}, {}", s.addr);
            theirs.push(statements_of(&s.addr, tenant).await);
        }
        for (s, statement) in servers.iter().zip(&theirs) {
            assert_eq!(statement, &theirs[0], "{label}, {tenant}: {} and {} differ", s.addr, servers[0].addr);
            let judged: Vec<pb::Statement> = statement.iter().cloned().map(judged_alerts).collect();
            assert_eq!(judged, statements, "{label}, {tenant}, {}", s.addr);
        }
        let mut ids = HashSet::new();
        for (id, _) in stream_records(redis, tenant) {
            assert!(ids.insert(id.clone()), "{label}: record {id} appended twice");
        }
    }
}

/// The interactions voided (COR-2) by the offline engine's records.
fn voided_offline(records: &[daybook::rating::outcome::Record], tenant: &str) -> BTreeSet<String> {
    let mut voided = BTreeSet::new();
    for r in records.iter().filter(|r| &*r.tenant == tenant) {
        match api::record_out(r, String::new()).body {
            Some(pb::record::Body::Interaction(i)) if !i.voided_by.is_empty() => voided.insert(i.interaction_id),
            Some(pb::record::Body::Withdrawal(w)) if w.voided => voided.insert(w.interaction_id),
            _ => false,
        };
    }
    voided
}

/// The interactions a replica lists as voided.
async fn voided_listed(addr: &str, tenant: &str) -> BTreeSet<String> {
    let channel = daybook::client::connect(addr).await.unwrap();
    let mut client = pb::usage_service_client::UsageServiceClient::new(channel);
    let (mut voided, mut token) = (BTreeSet::new(), String::new());
    loop {
        let request = pb::ListInteractionsRequest { tenant_id: tenant.into(), page_size: 300, page_token: token };
        let page = client.list_interactions(request).await.unwrap().into_inner();
        voided.extend(page.interactions.into_iter().filter(|i| !i.voided_by.is_empty()).map(|i| i.interaction_id));
        if page.next_page_token.is_empty() {
            return voided;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_that_follow_their_log_count_on_three_replicas_like_one_engine() {
    count_like_one_engine(&RedisNode::start(), 7).await;
}

/// The same on a three-master Redis Cluster: a tenant's log is one key, its records go
/// to the shard streams, every replica reaches both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_that_follow_their_log_count_on_a_cluster_like_one_engine() {
    count_like_one_engine(&RedisCluster::start(), 8).await;
}

async fn count_like_one_engine(redis: &impl Backing, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, TENANTS).unwrap();
    let url = redis.daybook_url();
    let start = |name: &str| start_with(&dir.path().join(name), &config, &["--redis", &url, "--admin", "127.0.0.1:0"]);
    let mut servers: Vec<Server> = (0..3).map(|i| start(&format!("replica-{i}"))).collect();
    let offline = offline_engine();
    let mut records = Vec::new();

    let mut stream: Vec<pb::Event> =
        TENANT_IDS.iter().enumerate().flat_map(|(t, tenant)| events(tenant, 600, seed * 10 + t as u64)).collect();
    let mut rng = Rng(seed);
    for i in (1..stream.len()).rev() {
        stream.swap(i, rng.next(i as u64 + 1) as usize);
    }
    let mut split: Vec<Vec<pb::Event>> = vec![Vec::new(); 3];
    for e in &stream {
        let home = rng.next(3) as usize;
        split[home].push(e.clone());
        if rng.next(10) == 0 {
            // A client that retries on another replica.
            split[(home + 1 + rng.next(2) as usize) % 3].push(e.clone());
        }
        let _ = offline.ingest(RawEvent::from(e.clone()), None, &mut records);
    }
    let sends = servers.iter().zip(split).map(|(s, part)| send(&s.addr, part));
    futures_util::future::join_all(sends).await;
    settle(&servers).await;
    assert_matches(&offline, &servers, redis, "after the split").await;
    let voided = voided_offline(&records, "claims");
    assert!(voided.len() > 5, "the claims tenant's voids selected interactions: {voided:?}");
    for s in &servers {
        assert_eq!(voided_listed(&s.addr, "claims").await, voided, "{}", s.addr);
    }
    for tenant in TENANT_IDS {
        let usage = offline.usage(tenant, None, None).unwrap();
        assert!(usage.interactions > 50, "{tenant}: {usage:?}");
    }
    let multi = offline.usage("multi", None, None).unwrap();
    assert!(multi.meters.len() >= 3, "every meter of multi counted: {multi:?}");

    // T-2 on any replica: a retry gets the original outcome, a reuse is refused.
    retries_and_reuses_elsewhere(&servers, &stream, seed).await;
    assert_matches(&offline, &servers, redis, "after retries and reuses").await;

    // A replica on an empty data directory rebuilds both tenants from their logs; one
    // killed and restarted on its own directory answers the same.
    servers.push(start("replica-new"));
    servers[1].child.kill().unwrap();
    servers[1].child.wait().unwrap();
    servers[1] = start("replica-1");
    assert_matches(&offline, &servers, redis, "after restarts").await;
    for s in &mut servers {
        s.child.kill().unwrap();
        s.child.wait().unwrap();
    }
}

/// Without Redis there is no order to rate a logged tenant's events in: they are refused
/// as UNAVAILABLE (nothing accepted, nothing lost), while a tenant metered by claims is
/// decided in degraded mode. Once Redis answers again, the caller's retry is rated, and
/// an event whose append reached Redis before a failure is answered as the retry it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_logged_tenant_answers_unavailable_and_a_retry_is_rated_after() {
    use pb::ingest_service_client::IngestServiceClient;
    let mut redis = RedisNode::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    let plain = "\n[[tenant]]\nid = \"plain\"\ntime_zone = \"UTC\"\nmeter = \"dar\"\n";
    std::fs::write(&config, format!("{TENANTS}{plain}")).unwrap();
    let url = redis.url();
    let a = start_with(&dir.path().join("a"), &config, &["--redis", &url]);
    let b = start_with(&dir.path().join("b"), &config, &["--redis", &url]);
    let mut on_a = IngestServiceClient::new(daybook::client::connect(&a.addr).await.unwrap());
    let mut on_b = IngestServiceClient::new(daybook::client::connect(&b.addr).await.unwrap());
    let at = (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339();
    let message = |tenant: &str, id: &str, consumer: &str| {
        super::server::message(tenant, id, &at, consumer, pb::SenderRole::Consumer)
    };

    let first = on_a.ingest_message(message("retro", "e1", "c1")).await.unwrap().into_inner().outcome.unwrap();
    assert_eq!(first.disposition, pb::Disposition::NewInteraction as i32);
    redis.kill();
    let refused = on_a.ingest_message(message("retro", "e2", "c2")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let degraded = on_a.ingest_message(message("plain", "p1", "c1")).await.unwrap().into_inner().outcome.unwrap();
    assert_eq!(degraded.disposition, pb::Disposition::NewInteraction as i32, "claims decide in degraded mode");
    redis.restart();

    // The retry, on the other replica: rated now, once. A caller answered UNAVAILABLE
    // sends the event again, a little later, until it is answered.
    let retries = daybook::client::Retries { retries: 10, ..Default::default() };
    let e2 = super::server::as_event(message("retro", "e2", "c2"));
    let again = daybook::client::ingest_retrying(&mut on_b, e2.clone(), retries).await.unwrap();
    assert_eq!(again.disposition, pb::Disposition::NewInteraction as i32);
    // On the replica that refused it, whose breaker may still be cooling down.
    let retry = daybook::client::ingest_retrying(&mut on_a, e2, retries).await.unwrap();
    assert!(retry.retry, "{retry:?}");
    assert_eq!((retry.disposition, &retry.lines), (again.disposition, &again.lines));
    for addr in [&a.addr, &b.addr] {
        assert_eq!(usage_of_tenant(addr, "retro").await.interactions, 2, "{addr}");
    }
}

/// A tenant is metered by claims or through its log from its creation: a change that
/// would move it is FAILED_PRECONDITION and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_would_move_a_tenant_between_claims_and_its_log_is_refused() {
    use pb::tenant_service_client::TenantServiceClient;
    let redis = RedisNode::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, "").unwrap();
    let server = start_with(&dir.path().join("a"), &config, &["--redis", &redis.url()]);
    let channel = daybook::client::connect(&server.addr).await.unwrap();
    super::server::create(&channel, super::server::tenant("plain", "UTC", pb::Meter::Dar)).await;
    let mut tenants = TenantServiceClient::new(channel.clone());
    let at = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let retroactive = pb::ChangeSettingsRequest {
        tenant_id: "plain".into(),
        change: Some(pb::SettingsChange {
            change_id: "retro".into(),
            effective_from: at,
            settings: Some(pb::Settings {
                proactive_outbound_day: pb::ProactiveOutboundDay::Retroactive as i32,
                ..Default::default()
            }),
        }),
    };
    let refused = tenants.change_settings(retroactive).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("tenant log"), "{}", refused.message());
    let unchanged = super::server::get_tenant(&channel, "plain").await;
    assert!(unchanged.changes.is_empty(), "{unchanged:?}");
}
