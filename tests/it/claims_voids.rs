//! COR-1..COR-4 for a tenant metered by claims in Redis mode (the default
//! `redis_tenant_log = when_needed`): a void accepted by one replica holds on another
//! that never heard of it, step by step.

use daybook::api::pb;

use super::crash::{Server, start_with, usage_of_tenant};
use super::redis_store::RedisNode;
use super::replicas::{send_collect, send_collect_with};

const TENANT: &str = r#"
[[tenant]]
id = "acme"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { lateness_horizon = "P36500D" }
"#;

fn message(id: &str, consumer: &str, at: &str) -> pb::Event {
    pb::Event {
        tenant_id: "acme".into(),
        event_id: id.into(),
        event_time: at.into(),
        kind: Some(pb::event::Kind::Message(pb::MessageEvent {
            consumer_id: consumer.into(),
            conversation_id: "k1".into(),
            sender_role: pb::SenderRole::Consumer as i32,
            channel: pb::Channel::Web as i32,
            ..Default::default()
        })),
    }
}

fn void(id: &str, reason: &str) -> pb::Event {
    pb::Event {
        tenant_id: "acme".into(),
        event_id: id.into(),
        event_time: "2026-11-05T09:00:00Z".into(),
        kind: Some(pb::event::Kind::Void(pb::VoidEvent {
            from: "2026-11-03".into(),
            to: "2026-11-03".into(),
            reason: reason.into(),
            ..Default::default()
        })),
    }
}

async fn one(server: &Server, event: pb::Event) -> pb::EventOutcome {
    send_collect(&server.addr, vec![event]).await.remove(0)
}

/// Every interaction a replica lists: (consumer, local period label, voided by).
async fn listed(addr: &str) -> Vec<(String, String, String)> {
    let channel = daybook::client::connect(addr).await.unwrap();
    let mut client = pb::usage_service_client::UsageServiceClient::new(channel);
    let request = pb::ListInteractionsRequest { tenant_id: "acme".into(), page_size: 100, page_token: String::new() };
    let mut out: Vec<_> = client
        .list_interactions(request)
        .await
        .unwrap()
        .into_inner()
        .interactions
        .into_iter()
        .map(|i| {
            let start = i.period.unwrap_or_default().start_time.get(..10).unwrap_or_default().to_string();
            (i.key.unwrap_or_default().consumer_id, start, i.voided_by)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cor_a_void_accepted_by_one_replica_holds_on_a_replica_that_never_heard_of_it() {
    let redis = RedisNode::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, TENANT).unwrap();
    let url = redis.url();
    let start = |name: &str| start_with(&dir.path().join(name), &config, &["--redis", &url]);
    let (a, b) = (start("a"), start("b"));

    let first = one(&a, message("e1", "c1", "2026-11-03T10:00:00Z")).await;
    assert_eq!(first.disposition, pb::Disposition::NewInteraction as i32, "{first:?}");

    // COR-1/COR-2: B voids 3 November; c1's interaction, started on A, is withdrawn.
    let voided = one(&b, void("v1", "test traffic")).await;
    assert_eq!(voided.not_billable_reason, pb::NotBillableReason::Correction as i32, "{voided:?}");
    assert!(!voided.retry);
    let reversals: Vec<&str> = voided.lines.iter().map(|l| l.credits.as_str()).collect();
    assert_eq!(reversals, ["-1"], "{voided:?}");
    assert!(voided.lines[0].reverses_line_id == first.interactions[0].lines[0].line_id, "{voided:?}");

    // A never heard of v1: its claim for a new interaction of the voided day is answered
    // with the void, and the interaction starts voided, with no line.
    let late = one(&a, message("e2", "c2", "2026-11-03T18:00:00Z")).await;
    assert_eq!(late.disposition, pb::Disposition::NewInteraction as i32, "{late:?}");
    assert_eq!(late.interactions[0].voided_by, "v1", "{late:?}");
    assert!(late.lines.is_empty(), "{late:?}");
    // Its retry on B, which never rated it, is its original outcome (T-2): the store
    // remembers the whole outcome of an event rated knowing voids.
    let retried = one(&b, message("e2", "c2", "2026-11-03T18:00:00Z")).await;
    assert!(retried.retry, "{retried:?}");
    assert_eq!((&retried.interactions, &retried.lines), (&late.interactions, &late.lines));
    let kept = one(&a, message("e3", "c3", "2026-11-04T10:00:00Z")).await;
    assert_eq!(kept.lines.len(), 1, "another day is not selected: {kept:?}");

    for server in [&a, &b] {
        let usage = usage_of_tenant(&server.addr, "acme").await;
        assert_eq!((usage.interactions, usage.credits.as_str()), (1, "1"), "{}: {usage:?}", server.addr);
        let expected = [("c1", "2026-11-03", "v1"), ("c2", "2026-11-03", "v1"), ("c3", "2026-11-04", "")]
            .map(|(c, d, v)| (c.to_string(), d.to_string(), v.to_string()));
        assert_eq!(listed(&server.addr).await, expected, "{}", server.addr);
    }

    // T-2: the void retried on either replica answers as it did, once; its id with
    // another reason is refused and changes nothing.
    for server in [&a, &b] {
        let again = one(server, void("v1", "test traffic")).await;
        assert!(again.retry, "{again:?}");
        assert_eq!(again.lines, voided.lines, "{}", server.addr);
    }
    let reuse = one(&a, void("v1", "another reason")).await;
    assert_eq!(reuse.refusal.unwrap().code, "ALREADY_EXISTS");
    assert_eq!(usage_of_tenant(&b.addr, "acme").await.credits, "1");

    // Explained on A, c1's interaction names the void, its withdrawal and the reversal.
    let channel = daybook::client::connect(&a.addr).await.unwrap();
    let mut usage = pb::usage_service_client::UsageServiceClient::new(channel);
    let request = pb::ExplainInteractionRequest {
        tenant_id: "acme".into(),
        target: Some(pb::explain_interaction_request::Target::InteractionId(
            first.interactions[0].interaction_id.clone(),
        )),
    };
    let explained = usage.explain_interaction(request).await.unwrap().into_inner();
    assert_eq!(explained.interaction.unwrap().voided_by, "v1");
    assert_eq!(explained.withdrawals.len(), 1);
    assert_eq!(explained.voids.len(), 1);
    assert_eq!(explained.lines[0].reversals.len(), 1);
}

/// Without Redis a void is refused as UNAVAILABLE (decided locally, it would select
/// nothing the other replicas hold), and accepted once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cor_without_redis_a_void_is_unavailable_and_its_retry_is_accepted_after() {
    let mut redis = RedisNode::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, TENANT).unwrap();
    let url = redis.url();
    let a = start_with(&dir.path().join("a"), &config, &["--redis", &url]);
    one(&a, message("e1", "c1", "2026-11-03T10:00:00Z")).await;

    redis.pause();
    let no_retries = daybook::client::Retries { retries: 0, ..Default::default() };
    let refused = send_collect_with(&a.addr, vec![void("v1", "test traffic")], no_retries).await.remove(0);
    assert_eq!(refused.refusal.as_ref().map(|r| r.code.as_str()), Some("UNAVAILABLE"), "{refused:?}");
    redis.resume();

    // The caller retries, as UNAVAILABLE asks, until the store answers again (`one`
    // resends what is refused UNAVAILABLE, with backoff).
    let accepted = one(&a, void("v1", "test traffic")).await;
    assert!(accepted.refusal.is_none(), "{accepted:?}");
    assert_eq!(accepted.lines.len(), 1, "{accepted:?}");
    assert_eq!(usage_of_tenant(&a.addr, "acme").await.interactions, 0);
    redis.kill();
}

/// Claims compare counts of voids: a published void that no longer validates under the
/// tenant's definition still counts (a claim must not wait for it for ever) and selects
/// nothing.
#[test]
fn cor_a_published_void_that_does_not_validate_still_counts() {
    let engine = daybook::rating::Engine::new(daybook::rating::EngineConfig::default());
    for spec in daybook::tenants::parse_tenants_toml(TENANT).unwrap() {
        engine.put_tenant(spec).unwrap();
    }
    let good = daybook::rating::RawEvent::from(void("v1", "test traffic"));
    let bad = daybook::rating::RawEvent::from(void("v2", ""));
    assert_eq!(engine.learn_voids("acme", vec![(good, None), (bad.clone(), None)]), 2);
    assert_eq!(engine.learn_voids("acme", vec![(bad, None)]), 2, "learnt once");
}
