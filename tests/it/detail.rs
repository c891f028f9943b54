//! The detail behind a statement through a live server: `ExportLines` rows sum to every
//! statement's credits for a tenant with every meter kind, voids and revocations, and
//! `ExplainInteraction` names each line's rule and event, its reversals and its void;
//! `daybook export` and `daybook explain` run as a user would run them.

use daybook::api::pb;
use daybook::server::config::Config;
use pb::usage_service_client::UsageServiceClient;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::server::{Harness, Store, create, interactions};

/// A tenant with a dar meter (Generative AI on), a cycle meter, an event meter and an
/// outcome meter, and a Starter plan on the dar meter.
fn tenant() -> pb::Tenant {
    let spec = json!({"id": "acme", "time_zone": "Europe/Berlin", "settings": {"generative_ai": true},
        "meters": [
            {"id": "days", "preset": "dar"},
            {"id": "conversations", "preset": "cycle"},
            {"id": "messages", "preset": "event", "allowance": 2, "units_per_credit": 3, "rounding": "ceil_block"},
            {"id": "fin", "preset": "outcome", "prices": {"resolution": "0.99", "handoff": "0"}, "revocation_window": "PT48H"}
        ],
        "plan": {"kind": "starter", "meter": "days", "included": 5}});
    daybook::api::tenant_out(&daybook::tenants::tenant_from_value(&spec).unwrap().0)
}

/// A generated stream over two months: messages, conversations opened, outcomes and
/// revocations, co-browse, Functions, and voids (deterministic).
fn events() -> Vec<Value> {
    let mut out = Vec::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for i in 0..300 {
        let day = 25 + next(10);
        let (month, day) = if day > 30 { (7, day - 30) } else { (6, day) };
        let at = format!("2025-{month:02}-{day:02}T{:02}:{:02}:00+02:00", next(24), next(60));
        let consumer = format!("c{}", next(6));
        let conversation = format!("{consumer}-{}", next(2));
        let sender = ["consumer", "agent", "bot", "proactive", "system"][next(5) as usize];
        let e = match next(10) {
            0..=4 => json!({"type": "message", "sender": sender,
                "consumer": consumer, "conversation": conversation, "channel": "whatsapp", "integration": format!("wa-{}", next(2)),
                "sender_id": "agent-1"}),
            5 => {
                json!({"type": "conversation_opened", "consumer": consumer, "conversation": conversation, "channel": "web",
                "integration": "web-1"})
            }
            6 | 7 => json!({"type": "outcome", "consumer": consumer, "conversation": conversation,
                "outcome_type": if next(4) == 0 { "handoff" } else { "resolution" }, "revoked": next(3) == 0}),
            8 => {
                json!({"type": "cobrowse", "consumer": consumer, "conversation": conversation, "session": format!("s{}", next(4)),
                "established": true})
            }
            _ => json!({"type": "function_invocations", "count": 40_000 + next(20_000)}),
        };
        let mut e = e;
        e["id"] = json!(format!("e{i}"));
        e["at"] = json!(at);
        out.push(e);
    }
    out.push(
        json!({"id": "v1", "at": "2025-07-03T10:00:00+02:00", "type": "void", "from": "2025-06-25", "to": "2025-06-27",
        "consumer": "c1", "reason": "internal tester"}),
    );
    out.push(
        json!({"id": "v2", "at": "2025-07-03T10:00:00+02:00", "type": "void", "from": "2025-06-01", "to": "2025-07-31",
        "meter": "fin", "consumer": "c2", "reason": "bot loop"}),
    );
    // After the voids: interactions they select start voided.
    out.push(json!({"id": "late", "at": "2025-06-26T10:00:00+02:00", "type": "message", "sender": "consumer",
        "consumer": "c1", "conversation": "c1-9", "channel": "whatsapp", "integration": "wa-0"}));
    out
}

async fn usage(channel: &tonic::transport::Channel) -> UsageServiceClient<tonic::transport::Channel> {
    UsageServiceClient::new(channel.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rows_sum_to_every_statement_and_explain_names_each_lines_rule_event_and_void() {
    export_and_explain(Store::Embedded).await;
}

/// The same through Redis mode: the tenant follows its log, and the detail is read from
/// the shared record streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_explain_read_the_shared_streams_in_redis_mode() {
    export_and_explain(Store::Redis(super::redis_store::RedisNode::start())).await;
}

async fn export_and_explain(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), "2025-07-05T00:00:00Z", store.config()).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant()).await;
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(channel.clone());
    for e in events() {
        let event = daybook::api::event_out(&daybook::scenario::raw_event("acme", &e));
        let _ = daybook::client::ingest(&mut ingest, event).await;
    }
    let mut client = usage(&channel).await;
    let statements = client
        .list_statements(pb::ListStatementsRequest { tenant_id: "acme".into() })
        .await
        .unwrap()
        .into_inner()
        .statements;
    assert_eq!(statements.len(), 2, "June and July");
    let mut reversals = 0;
    for s in &statements {
        let mut stream = client
            .export_lines(pb::ExportLinesRequest { tenant_id: "acme".into(), period: s.period.clone() })
            .await
            .unwrap()
            .into_inner();
        let mut sum = Decimal::ZERO;
        while let Some(batch) = stream.message().await.unwrap() {
            for row in batch.rows {
                let line = row.line.unwrap();
                reversals += usize::from(!line.reverses_line_id.is_empty());
                sum += line.credits.parse::<Decimal>().unwrap();
            }
        }
        assert_eq!(sum, s.credits.parse::<Decimal>().unwrap(), "period {}", s.period);
    }
    assert!(reversals > 0, "voids and revocations withdrew lines");

    // Explain a voided interaction: its lines, their reversals by the void, the void.
    let listed = interactions(&channel, "acme").await;
    let voided = listed.iter().find(|i| i.voided_by == "v1" && !i.lines.is_empty()).expect("an interaction v1 voided");
    let explained = client
        .explain_interaction(pb::ExplainInteractionRequest {
            tenant_id: "acme".into(),
            target: Some(pb::explain_interaction_request::Target::InteractionId(voided.interaction_id.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    let interaction = explained.interaction.clone().unwrap();
    assert_eq!(interaction.voided_by, "v1");
    assert!(!explained.lines.is_empty());
    for l in &explained.lines {
        let line = l.line.clone().unwrap();
        assert!(!line.rule.is_empty() && !line.event_id.is_empty());
        assert_eq!(l.reversals.len(), 1, "withdrawn once, by the void");
        assert_eq!(l.reversals[0].event_id, "v1");
    }
    assert_eq!(explained.voids.len(), 1);
    assert_eq!(explained.voids[0].reason, "internal tester");
    assert!(!explained.time_zone_database.is_empty());
    assert_eq!(explained.meter.unwrap().meter_id, interaction.meter_id);
    assert!(explained.settings_at_first_event.unwrap().generative_ai == Some(true));

    // By meter, key and period it is the same interaction.
    let by_selector = client
        .explain_interaction(pb::ExplainInteractionRequest {
            tenant_id: "acme".into(),
            target: Some(pb::explain_interaction_request::Target::Selector(pb::InteractionSelector {
                meter_id: interaction.meter_id.clone(),
                key: interaction.key.clone(),
                outcome_type: interaction.outcome_type.clone(),
                period: interaction.period.clone().unwrap().label,
            })),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_selector.interaction.unwrap().interaction_id, interaction.interaction_id);

    // The commands, as a user runs them.
    let addr = server.tcp.to_string();
    let id = interaction.interaction_id.clone();
    let june = statements[0].clone();
    let out_file = dir.path().join("june.csv");
    let (explain, export) = tokio::task::spawn_blocking({
        let out_file = out_file.clone();
        move || {
            let run =
                |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_daybook")).args(args).output().unwrap();
            let explain = run(&["explain", "--server", &addr, "acme", &id]);
            let export = run(&[
                "export",
                "--server",
                &addr,
                "--tenant",
                "acme",
                "--period",
                &june.period,
                "--format",
                "csv",
                "--out",
                out_file.to_str().unwrap(),
            ]);
            (explain, export)
        }
    })
    .await
    .unwrap();
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    let text = String::from_utf8(explain.stdout).unwrap();
    assert!(
        text.contains("VOIDED by v1") && text.contains("withdrawn by event v1") && text.contains("internal tester"),
        "{text}"
    );
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let csv = std::fs::read_to_string(&out_file).unwrap();
    let credits = csv.lines().next().unwrap().split(',').position(|h| h == "credits").unwrap();
    let sum: Decimal =
        csv.lines().skip(1).map(|l| l.split(',').nth(credits).unwrap().parse::<Decimal>().unwrap()).sum();
    assert_eq!(sum, june.credits.parse::<Decimal>().unwrap());
    server.stop().await;
}

/// Nothing of part two is lost on a restart: the books, the listing (voids included) and
/// every retry's answer are the same after the server restarts from its snapshot and
/// journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_outcomes_and_voids_survive_a_restart_with_their_retry_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), "2025-07-05T00:00:00Z", Config::default()).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant()).await;
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(channel.clone());
    let mut answers = Vec::new();
    for e in events() {
        let event = daybook::api::event_out(&daybook::scenario::raw_event("acme", &e));
        answers.push((event.clone(), daybook::client::ingest(&mut ingest, event).await.map_err(|s| s.code())));
    }
    let books = |channel: tonic::transport::Channel| async move {
        (super::server::usage(&channel, "acme").await, interactions(&channel, "acme").await)
    };
    let before = books(channel.clone()).await;
    assert!(before.1.iter().any(|i| !i.voided_by.is_empty()), "the stream voids some interactions");
    drop((ingest, channel));
    server.stop().await;

    let server = Harness::start(dir.path(), "2025-07-05T00:00:00Z", Config::default()).await;
    let channel = server.tcp_channel().await;
    assert_eq!(books(channel.clone()).await, before);
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(channel.clone());
    for (event, original) in answers {
        let again = daybook::client::ingest(&mut ingest, event).await.map_err(|s| s.code());
        match (original, again) {
            (Ok(first), Ok(retry)) => {
                assert!(retry.retry, "{}", first.event_id);
                assert_eq!(pb::EventOutcome { retry: false, ..retry }, first);
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("{a:?} then {b:?}"),
        }
    }
    assert_eq!(books(channel.clone()).await, before, "retries change nothing");
    drop((ingest, channel));
    server.stop().await;

    // Without the snapshot the whole journal is replayed: the first void's catalogue is
    // built again from the entries before it, and every void selects what it did.
    std::fs::remove_file(dir.path().join("snapshot.bin")).unwrap();
    let server = Harness::start(dir.path(), "2025-07-05T00:00:00Z", Config::default()).await;
    assert_eq!(books(server.tcp_channel().await).await, before);
    server.stop().await;
}
