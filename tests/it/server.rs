//! The server over real gRPC: TCP on port 0 and a Unix socket, every RPC, invalid input of
//! every field class, id conflicts, restart, resumable watch, health, admin HTTP, and the
//! scenario runner through the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;
use daybook::api::pb::record_service_client::RecordServiceClient;
use daybook::api::pb::tenant_service_client::TenantServiceClient;
use daybook::api::pb::usage_service_client::UsageServiceClient;
use daybook::rating::time::{Instant, parse_instant};
use daybook::server::config::Config;
use daybook::server::{Listeners, bind_uds};
use daybook::store::redis::RedisConfig;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

pub struct Harness {
    pub tcp: SocketAddr,
    pub uds: PathBuf,
    pub health: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Harness {
    /// Starts a server on `data_dir` with a clock pinned at `now`.
    pub async fn start(data_dir: &Path, now: &str, config: Config) -> Harness {
        let now: Instant = parse_instant(now).unwrap();
        Harness::start_with_clock(data_dir, Arc::new(move || now), config).await
    }

    /// Starts a server on `data_dir` with the given clock.
    pub async fn start_with_clock(data_dir: &Path, clock: daybook::server::core::Clock, config: Config) -> Harness {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uds = data_dir.join("daybook.sock");
        let (tcp, admin_addr) = (grpc.local_addr().unwrap(), admin.local_addr().unwrap());
        let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let health_addr = health.local_addr().unwrap();
        let listeners = Listeners {
            grpc_tcp: Some(grpc),
            grpc_uds: Some(bind_uds(&uds, config.uds_mode).unwrap()),
            grpc_health: Some(health),
            admin: Some(admin),
            data_dir_lock: None,
        };
        let config = Config { data_dir: data_dir.to_path_buf(), grace_period: Duration::from_secs(5), ..config };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daybook::server::run(config, listeners, clock, async move {
            let _ = stopped.await;
        }));
        let harness = Harness { tcp, uds, health: health_addr, admin: admin_addr, stop: Some(stop), task: Some(task) };
        // Ready once the admin port says so.
        for _ in 0..200 {
            if http_get(harness.admin, "/ready").await.0 == 200 {
                return harness;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not become ready");
    }

    pub async fn tcp_channel(&self) -> Channel {
        daybook::client::connect(&self.tcp.to_string()).await.unwrap()
    }

    pub async fn uds_channel(&self) -> Channel {
        daybook::client::connect(&format!("unix:{}", self.uds.display())).await.unwrap()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Where a behaviour test keeps its state: the embedded journal, or a real Redis (started
/// on a free port, stopped with the test) beside the journal.
pub enum Store {
    Embedded,
    Redis(super::redis_store::RedisNode),
}

impl Store {
    /// The server configuration of this store; tests add their own settings to it.
    pub fn config(&self) -> Config {
        match self {
            Store::Embedded => Config::default(),
            Store::Redis(node) => Config { redis: Some(RedisConfig::new(&node.url())), ..Config::default() },
        }
    }
}

/// Runs each named behaviour test once per store: `<test>::embedded` and `<test>::redis`
/// (as limitador's `test_with_all_storage_impls!` does for its storages). A test takes
/// the `Store` and builds its configuration from `store.config()`.
macro_rules! with_every_store {
    ($($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$test(super::Store::Embedded).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$test(super::Store::Redis(super::super::redis_store::RedisNode::start())).await
                }
            }
        )+
    };
}

with_every_store!(
    every_rpc_over_tcp_and_a_unix_socket,
    invalid_input_names_the_field_and_changes_nothing,
    reused_ids_with_another_payload_are_already_exists,
    restart_replays_the_journal_and_retries_get_their_original_outcome,
    admin_port_serves_live_ready_and_metrics,
    jsonl_sink_has_every_record_once_across_a_restart,
    fsync_durability_and_batch_limits,
    concurrent_callers_then_a_replay_give_the_same_answers_statements_and_alerts,
    probe_port_serves_health_only_and_the_socket_mode_is_configurable,
    visible_scenarios_pass_through_the_server,
);

/// A bare HTTP/1.1 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { return (0, String::new()) };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

pub fn tenant(id: &str, zone: &str, meter: pb::Meter) -> pb::Tenant {
    pb::Tenant {
        tenant_id: id.into(),
        meter: meter as i32,
        settings: Some(pb::Settings { time_zone: Some(zone.into()), ..Default::default() }),
        changes: vec![],
        plan: Some(pb::Plan {
            kind: Some(pb::plan::Kind::Starter(pb::StarterPlan {
                alert_thresholds: vec!["0.001".into()],
                ..Default::default()
            })),
        }),
        meters: vec![],
    }
}

pub fn message(tenant: &str, id: &str, at: &str, consumer: &str, role: pb::SenderRole) -> pb::IngestMessageRequest {
    pb::IngestMessageRequest {
        tenant_id: tenant.into(),
        event_id: id.into(),
        event_time: at.into(),
        message: Some(pb::MessageEvent {
            consumer_id: consumer.into(),
            conversation_id: "conv-1".into(),
            sender_role: role as i32,
            sender_id: "agent-1".into(),
            channel: pb::Channel::Web as i32,
            integration_id: "web-1".into(),
            provider_price: None,
        }),
    }
}

/// The same message as an `Event`, for the calls that take one (`daybook::client::ingest`).
pub fn as_event(request: pb::IngestMessageRequest) -> pb::Event {
    pb::Event {
        tenant_id: request.tenant_id,
        event_id: request.event_id,
        event_time: request.event_time,
        kind: request.message.map(pb::event::Kind::Message),
    }
}

/// Creates a tenant through the API.
pub async fn create(channel: &Channel, t: pb::Tenant) {
    TenantServiceClient::new(channel.clone()).create_tenant(pb::CreateTenantRequest { tenant: Some(t) }).await.unwrap();
}

/// A tenant's definition as the API returns it.
pub async fn get_tenant(channel: &Channel, id: &str) -> pb::Tenant {
    TenantServiceClient::new(channel.clone())
        .get_tenant(pb::GetTenantRequest { tenant_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
}

pub async fn usage(channel: &Channel, tenant: &str) -> pb::Usage {
    UsageServiceClient::new(channel.clone())
        .get_usage(pb::GetUsageRequest { tenant_id: tenant.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .usage
        .unwrap()
}

/// A tenant's interactions, as `ListInteractions` lists them (one page of up to 1000).
pub async fn interactions(channel: &Channel, tenant: &str) -> Vec<pb::Interaction> {
    UsageServiceClient::new(channel.clone())
        .list_interactions(pb::ListInteractionsRequest {
            tenant_id: tenant.into(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .interactions
}

const NOW: &str = "2025-06-20T12:00:00Z";

async fn every_rpc_over_tcp_and_a_unix_socket(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, store.config()).await;
    let tcp = server.tcp_channel().await;
    let uds = server.uds_channel().await;

    // Tenants.
    let mut tenants = TenantServiceClient::new(uds.clone());
    tenants
        .create_tenant(pb::CreateTenantRequest { tenant: Some(tenant("acme", "America/New_York", pb::Meter::Dar)) })
        .await
        .unwrap();
    let got = tenants.get_tenant(pb::GetTenantRequest { tenant_id: "acme".into() }).await.unwrap().into_inner();
    assert_eq!(got.tenant.unwrap().settings.unwrap().time_zone.as_deref(), Some("America/New_York"));
    let change = pb::SettingsChange {
        change_id: "gai".into(),
        effective_from: "2025-06-20T12:02:00Z".into(),
        settings: Some(pb::Settings { generative_ai: Some(true), ..Default::default() }),
    };
    tenants
        .change_settings(pb::ChangeSettingsRequest { tenant_id: "acme".into(), change: Some(change.clone()) })
        .await
        .unwrap();
    // The same change again is idempotent.
    tenants
        .change_settings(pb::ChangeSettingsRequest { tenant_id: "acme".into(), change: Some(change) })
        .await
        .unwrap();
    let listed = tenants.list_tenants(pb::ListTenantsRequest {}).await.unwrap().into_inner().tenants;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].changes.len(), 1);

    // Ingest over both transports, each RPC.
    let mut ingest_tcp = IngestServiceClient::new(tcp.clone());
    let mut ingest_uds = IngestServiceClient::new(uds.clone());
    let first = ingest_tcp
        .ingest_message(message("acme", "m1", "2025-06-20T07:00:00-04:00", "c1", pb::SenderRole::Consumer))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert_eq!(first.disposition, pb::Disposition::NewInteraction as i32);
    assert_eq!(first.interactions[0].period.as_ref().unwrap().label, "2025-06-20");
    assert_eq!(first.interactions[0].period.as_ref().unwrap().time_zone, "America/New_York");
    let repeat = ingest_uds
        .ingest_message(message("acme", "m2", "2025-06-20T07:05:00-04:00", "c1", pb::SenderRole::Agent))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert_eq!(repeat.disposition, pb::Disposition::AlreadyCounted as i32);
    assert_eq!(repeat.counted_in, vec![first.interactions[0].interaction_id.clone()]);
    let opened = ingest_uds
        .ingest_conversation_opened(pb::IngestConversationOpenedRequest {
            tenant_id: "acme".into(),
            event_id: "o1".into(),
            event_time: "2025-06-20T10:00:00Z".into(),
            conversation_opened: Some(pb::ConversationOpenedEvent {
                consumer_id: "c2".into(),
                conversation_id: "k".into(),
                channel: pb::Channel::Sms as i32,
                integration_id: "sms".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert_eq!(opened.disposition, pb::Disposition::NewInteraction as i32);
    let cobrowse = ingest_tcp
        .ingest_cobrowse(pb::IngestCobrowseRequest {
            tenant_id: "acme".into(),
            event_id: "cb1".into(),
            event_time: "2025-06-20T10:00:00Z".into(),
            cobrowse: Some(pb::CobrowseEvent {
                consumer_id: "c1".into(),
                conversation_id: "conv-1".into(),
                session_id: "s1".into(),
                established: true,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert_eq!(cobrowse.disposition, pb::Disposition::Charged as i32);
    let functions = ingest_tcp
        .ingest_function_invocations(pb::IngestFunctionInvocationsRequest {
            tenant_id: "acme".into(),
            event_id: "f1".into(),
            event_time: "2025-06-20T10:00:00Z".into(),
            function_invocations: Some(pb::FunctionInvocationsEvent { count: 150_250 }),
        })
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert_eq!(functions.lines[0].credits, "1");

    // Batch stream: outcomes in order, a refusal is an outcome, not an error.
    let batch = pb::IngestBatchRequest {
        events: vec![
            pb::Event {
                tenant_id: "acme".into(),
                event_id: "b1".into(),
                event_time: "2025-06-20T12:04:00Z".into(),
                kind: Some(pb::event::Kind::Message(
                    message("acme", "", "", "c3", pb::SenderRole::Bot).message.unwrap(),
                )),
            },
            pb::Event {
                tenant_id: "acme".into(),
                event_id: "b2".into(),
                event_time: "2025-06-20T12:04:00".into(),
                kind: Some(pb::event::Kind::Message(
                    message("acme", "", "", "c4", pb::SenderRole::Bot).message.unwrap(),
                )),
            },
        ],
    };
    let mut responses = ingest_uds.ingest_batch(tokio_stream::iter(vec![batch])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert_eq!(response.outcomes.len(), 2);
    assert_eq!(response.outcomes[0].disposition, pb::Disposition::NewInteraction as i32);
    assert_eq!(response.outcomes[0].lines.len(), 2, "GAI on from 12:02: base + uplift");
    assert_eq!(response.outcomes[1].disposition, pb::Disposition::Refused as i32);
    assert_eq!(response.outcomes[1].refusal.as_ref().unwrap().field_violations[0].field, "event_time");

    // Queries.
    let u = usage(&tcp, "acme").await;
    assert_eq!(u.interactions, 3);
    assert_eq!(u.credits, "5.5", "3 DARs + 0.5 uplift + 1 co-browse + 1 Functions");
    let mut usage_client = UsageServiceClient::new(uds.clone());
    let statement = usage_client
        .get_statement(pb::GetStatementRequest { tenant_id: "acme".into(), period: "2025-06".into() })
        .await
        .unwrap()
        .into_inner()
        .statement
        .unwrap();
    assert_eq!(statement.dars, 3);
    assert_eq!(statement.alerts.len(), 1, "threshold 0.001 of 2000 is reached by the 2nd DAR");
    let statements = usage_client
        .list_statements(pb::ListStatementsRequest { tenant_id: "acme".into() })
        .await
        .unwrap()
        .into_inner()
        .statements;
    assert_eq!(statements.len(), 1);
    let page1 = usage_client
        .list_interactions(pb::ListInteractionsRequest {
            tenant_id: "acme".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.interactions.len(), 2);
    let page2 = usage_client
        .list_interactions(pb::ListInteractionsRequest {
            tenant_id: "acme".into(),
            page_size: 2,
            page_token: page1.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.interactions.len(), 1);
    assert!(page2.next_page_token.is_empty());
    // A token this API did not give out names the field, in either mode: made up, altered,
    // or given out for another tenant's listing.
    create(&tcp, tenant("other", "UTC", pb::Meter::Dar)).await;
    let mut altered = page1.next_page_token.clone().into_bytes();
    altered[3] = if altered[3] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).unwrap();
    for (tenant_id, forged) in [("other", page1.next_page_token.as_str()), ("acme", altered.as_str())] {
        let request =
            pb::ListInteractionsRequest { tenant_id: tenant_id.into(), page_size: 2, page_token: forged.into() };
        let refused = usage_client.list_interactions(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{tenant_id} {forged}: {refused:?}");
    }
    for forged in ["garbage", "redis:3:not-an-entry", "redis:99:1-0", "7", "1:0", "0102"] {
        let refused = usage_client
            .list_interactions(pb::ListInteractionsRequest {
                tenant_id: "acme".into(),
                page_size: 2,
                page_token: forged.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{forged}: {refused:?}");
        let fields = refused.get_details_bad_request().unwrap().field_violations;
        assert_eq!(fields[0].field, "page_token", "{forged}");
    }

    // Plan.
    let plan = pb::Plan {
        kind: Some(pb::plan::Kind::Starter(pb::StarterPlan { included_interactions: Some(2), ..Default::default() })),
    };
    tenants.set_plan(pb::SetPlanRequest { tenant_id: "acme".into(), plan: Some(plan) }).await.unwrap();
    let statement = usage_client
        .get_statement(pb::GetStatementRequest { tenant_id: "acme".into(), period: "2025-06".into() })
        .await
        .unwrap()
        .into_inner()
        .statement
        .unwrap();
    assert_eq!(statement.overage_interactions, 1);
    assert_eq!(statement.overage[0].amount, "39");

    // Watch from the start, then resume after a cursor.
    let mut watch = RecordServiceClient::new(tcp.clone());
    let mut stream = watch
        .watch_records(pb::WatchRecordsRequest { tenant_ids: vec!["acme".into()], after_cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.push(stream.message().await.unwrap().unwrap().record.unwrap());
    }
    // The tenant's creation and its settings change come first, as audit records naming
    // who made them (the Unix socket's caller) and when the change counts from.
    match (&seen[0].body, &seen[1].body) {
        (Some(pb::record::Body::SettingsChange(created)), Some(pb::record::Body::SettingsChange(changed))) => {
            assert_eq!((created.operation.as_str(), created.changed_by.as_str()), ("create_tenant", "unix-socket"));
            assert!(created.tenant_json.contains("America/New_York"), "{}", created.tenant_json);
            assert_eq!(changed.operation, "change_settings");
            assert_eq!((changed.change_id.as_str(), changed.effective_from.as_str()), ("gai", "2025-06-20T12:02:00Z"));
            assert_eq!(seen[0].rule, "T-5");
        }
        other => panic!("expected the two audit records first, got {other:?}"),
    }
    assert!(matches!(seen[2].body, Some(pb::record::Body::Interaction(_))));
    let mut resumed = watch
        .watch_records(pb::WatchRecordsRequest { tenant_ids: vec![], after_cursor: seen[2].cursor.clone() })
        .await
        .unwrap()
        .into_inner();
    let next = resumed.message().await.unwrap().unwrap().record.unwrap();
    assert_eq!(next.record_id, seen[3].record_id);
    // Live: a new record arrives on the open stream.
    ingest_tcp
        .ingest_message(message("acme", "m9", "2025-06-20T11:00:00Z", "c9", pb::SenderRole::Consumer))
        .await
        .unwrap();
    let mut live = None;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.unwrap().unwrap() {
        if let Some(pb::record::Body::Interaction(i)) = &r.record.as_ref().unwrap().body
            && i.key.as_ref().unwrap().consumer_id == "c9"
        {
            live = r.record;
            break;
        }
    }
    assert!(live.is_some());

    // Health: SERVING.
    let mut health = tonic_health::pb::health_client::HealthClient::new(uds.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "daybook.v1.IngestService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    server.stop().await;
}

/// One invalid request per field class; each is INVALID_ARGUMENT naming its field in a
/// BadRequest detail, and nothing changes.
async fn invalid_input_names_the_field_and_changes_nothing(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, store.config()).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Cycle)).await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let ok = || message("acme", "e1", "2025-06-20T10:00:00Z", "c1", pb::SenderRole::Consumer);
    let with = |f: &dyn Fn(&mut pb::IngestMessageRequest)| {
        let mut r = ok();
        f(&mut r);
        r
    };
    let cases: Vec<(pb::IngestMessageRequest, &str)> = vec![
        (with(&|r| r.event_id.clear()), "event_id"),
        (with(&|r| r.event_id = "x".repeat(300)), "event_id"),
        (with(&|r| r.event_time = "2025-06-20T10:00:00".into()), "event_time"),
        (with(&|r| r.event_time = "2025-02-30T10:00:00Z".into()), "event_time"),
        (with(&|r| r.event_time = "soon".into()), "event_time"),
        (with(&|r| r.message = None), "kind"),
        (with(&|r| r.message.as_mut().unwrap().consumer_id.clear()), "message.consumer_id"),
        (with(&|r| r.message.as_mut().unwrap().conversation_id.clear()), "message.conversation_id"),
        (with(&|r| r.message.as_mut().unwrap().integration_id.clear()), "message.integration_id"),
        (with(&|r| r.message.as_mut().unwrap().sender_role = 0), "message.sender_role"),
        (with(&|r| r.message.as_mut().unwrap().sender_role = 42), "message.sender_role"),
        (with(&|r| r.message.as_mut().unwrap().channel = 0), "message.channel"),
        (with(&|r| r.message.as_mut().unwrap().consumer_id = "a\u{7}b".into()), "message.consumer_id"),
        (
            with(&|r| {
                r.message.as_mut().unwrap().provider_price =
                    Some(pb::Money { amount: "-1".into(), currency: "USD".into() })
            }),
            "message.provider_price.amount",
        ),
        (
            with(&|r| {
                r.message.as_mut().unwrap().provider_price =
                    Some(pb::Money { amount: "1e3".into(), currency: "USD".into() })
            }),
            "message.provider_price.amount",
        ),
        (
            with(&|r| {
                r.message.as_mut().unwrap().provider_price =
                    Some(pb::Money { amount: "1".into(), currency: "usd".into() })
            }),
            "message.provider_price.currency",
        ),
        (with(&|r| r.tenant_id = "bad tenant".into()), "tenant_id"),
    ];
    for (request, field) in cases {
        let status = ingest.ingest_message(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let violations = status.get_details_bad_request().expect("BadRequest detail").field_violations;
        assert!(violations.iter().any(|v| v.field == field), "{field}: {violations:?}");
        assert!(status.get_details_error_info().is_some(), "ErrorInfo detail");
    }
    let negative = ingest
        .ingest_function_invocations(pb::IngestFunctionInvocationsRequest {
            tenant_id: "acme".into(),
            event_id: "f".into(),
            event_time: "2025-06-20T10:00:00Z".into(),
            function_invocations: Some(pb::FunctionInvocationsEvent { count: -5 }),
        })
        .await
        .unwrap_err();
    assert_eq!(negative.get_details_bad_request().unwrap().field_violations[0].field, "function_invocations.count");
    let unknown = ingest
        .ingest_message(message("nobody", "e", "2025-06-20T10:00:00Z", "c", pb::SenderRole::Consumer))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let future = ingest
        .ingest_message(message("acme", "e", "2025-06-20T12:05:01Z", "c", pb::SenderRole::Consumer))
        .await
        .unwrap_err();
    assert_eq!(future.code(), Code::OutOfRange);
    let late = ingest
        .ingest_message(message("acme", "e", "2025-04-01T12:00:00Z", "c", pb::SenderRole::Consumer))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);

    // Nothing changed, and the id `e1` was not reserved by any refusal.
    let u = usage(&channel, "acme").await;
    assert_eq!((u.interactions, u.credits.as_str()), (0, "0"));
    ingest.ingest_message(ok()).await.unwrap();

    // Bad tenant settings are refused by name (T-5) and change nothing.
    let mut tenants = TenantServiceClient::new(channel.clone());
    let mut bad = tenant("b", "Mars/Olympus", pb::Meter::Dar);
    bad.settings.as_mut().unwrap().cycle_anchor_day = Some(40);
    let status = tenants.create_tenant(pb::CreateTenantRequest { tenant: Some(bad) }).await.unwrap_err();
    let fields: Vec<String> =
        status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["tenant.settings.time_zone", "tenant.settings.cycle_anchor_day"]);
    let past = pb::SettingsChange {
        change_id: "p".into(),
        effective_from: "2025-06-01T00:00:00Z".into(),
        settings: Some(pb::Settings { generative_ai: Some(true), ..Default::default() }),
    };
    let status = tenants
        .change_settings(pb::ChangeSettingsRequest { tenant_id: "acme".into(), change: Some(past) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let zone = pb::SettingsChange {
        change_id: "z".into(),
        effective_from: "2025-07-01T00:00:00Z".into(),
        settings: Some(pb::Settings { time_zone: Some("Nowhere/City".into()), ..Default::default() }),
    };
    let status = tenants
        .change_settings(pb::ChangeSettingsRequest { tenant_id: "acme".into(), change: Some(zone) })
        .await
        .unwrap_err();
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "change.settings.time_zone");
    let t = get_tenant(&channel, "acme").await;
    assert!(t.changes.is_empty());
    let status = UsageServiceClient::new(channel.clone())
        .get_statement(pb::GetStatementRequest { tenant_id: "acme".into(), period: "June".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

async fn reused_ids_with_another_payload_are_already_exists(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, store.config()).await;
    let channel = server.uds_channel().await;
    let mut tenants = TenantServiceClient::new(channel.clone());
    tenants
        .create_tenant(pb::CreateTenantRequest { tenant: Some(tenant("acme", "UTC", pb::Meter::Dar)) })
        .await
        .unwrap();
    let again = tenants
        .create_tenant(pb::CreateTenantRequest { tenant: Some(tenant("acme", "UTC", pb::Meter::Dar)) })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let mut ingest = IngestServiceClient::new(channel.clone());
    let first = ingest
        .ingest_message(message("acme", "m1", "2025-06-20T10:00:00Z", "c1", pb::SenderRole::Consumer))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    let retry = ingest
        .ingest_message(message("acme", "m1", "2025-06-20T12:00:00+02:00", "c1", pb::SenderRole::Consumer))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert!(retry.retry);
    assert_eq!(retry.interactions, first.interactions);
    let conflict = ingest
        .ingest_message(message("acme", "m1", "2025-06-20T10:00:01Z", "c1", pb::SenderRole::Consumer))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    let change = |gai| pb::SettingsChange {
        change_id: "c".into(),
        effective_from: "2025-07-01T00:00:00Z".into(),
        settings: Some(pb::Settings { generative_ai: Some(gai), ..Default::default() }),
    };
    tenants
        .change_settings(pb::ChangeSettingsRequest { tenant_id: "acme".into(), change: Some(change(true)) })
        .await
        .unwrap();
    let reused = tenants
        .change_settings(pb::ChangeSettingsRequest { tenant_id: "acme".into(), change: Some(change(false)) })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(usage(&channel, "acme").await.interactions, 1);
    server.stop().await;
}

async fn restart_replays_the_journal_and_retries_get_their_original_outcome(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, store.config()).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let first = ingest
        .ingest_message(message("acme", "m1", "2025-06-20T10:00:00Z", "c1", pb::SenderRole::Consumer))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    for i in 0..50 {
        ingest
            .ingest_message(message(
                "acme",
                &format!("n{i}"),
                "2025-06-19T10:00:00Z",
                &format!("c{}", i % 7),
                pb::SenderRole::Agent,
            ))
            .await
            .unwrap();
    }
    let before = usage(&channel, "acme").await;
    let mut watch = RecordServiceClient::new(channel.clone());
    let mut stream = watch.watch_records(pb::WatchRecordsRequest::default()).await.unwrap().into_inner();
    let first_record = stream.message().await.unwrap().unwrap().record.unwrap();
    drop(stream);
    drop(channel);
    server.stop().await;

    let server = Harness::start(dir.path(), NOW, store.config()).await;
    let channel = server.uds_channel().await;
    assert_eq!(usage(&channel, "acme").await, before);
    let mut ingest = IngestServiceClient::new(channel.clone());
    let retry = ingest
        .ingest_message(message("acme", "m1", "2025-06-20T10:00:00Z", "c1", pb::SenderRole::Consumer))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert!(retry.retry);
    assert_eq!(retry.disposition, first.disposition);
    assert_eq!(retry.interactions, first.interactions);
    // The watch stream resumes after the same cursor with the same records.
    let mut watch = RecordServiceClient::new(channel.clone());
    let mut stream = watch
        .watch_records(pb::WatchRecordsRequest { tenant_ids: vec![], after_cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().record.unwrap(), first_record);
    server.stop().await;
}

/// The RULEBOOK scenarios through a live server (in Redis mode: state shared through a
/// real Redis, tenants created through the API included).
async fn visible_scenarios_pass_through_the_server(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    // The runner widens each tenant's horizon and skew.
    let server = Harness::start(dir.path(), "2026-11-22T00:00:00Z", store.config()).await;
    let shared = matches!(store, Store::Redis(_));
    scenarios_pass_through(server.tcp.to_string(), shared).await;
    server.stop().await;
}

/// The behaviour suite against a Redis that admits only an ACL user with daybook's keys
/// (`dbk:*`) and the commands it uses: the URL carries the credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visible_scenarios_pass_through_redis_mode_as_an_acl_user() {
    let redis = super::redis_store::RedisNode::start_with_acl_user();
    assert!(redis.url().contains("daybook:s3cret-pw@"));
    let dir = tempfile::tempdir().unwrap();
    let redis_config = RedisConfig { timeout: Duration::from_secs(1), ..RedisConfig::new(&redis.url()) };
    let config = Config { redis: Some(redis_config), ..Config::default() };
    let server = Harness::start(dir.path(), "2026-11-22T00:00:00Z", config).await;
    scenarios_pass_through(server.tcp.to_string(), true).await;
    server.stop().await;
    let denied =
        std::process::Command::new("redis-cli").args(["-p", &redis.port.to_string(), "PING"]).output().unwrap();
    let text = String::from_utf8_lossy(&denied.stdout).to_string() + &String::from_utf8_lossy(&denied.stderr);
    assert!(text.contains("NOAUTH") || text.contains("WRONGPASS") || text.contains("denied"), "{text}");
}

/// Issue 7's Redis line: the behaviour suite against a `redis-server` that speaks TLS only
/// (a certificate generated here), requires a client certificate, and admits only the
/// ACL user daybook logs in as.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visible_scenarios_pass_through_redis_mode_over_tls_as_an_acl_user() {
    let (ca, client_ca) = (super::security::Ca::new("redis CA"), super::security::Ca::new("redis clients CA"));
    let redis = super::redis_store::RedisNode::start_tls_with_acl_user(&ca, &client_ca);
    let url = redis.url();
    assert!(url.starts_with("rediss://daybook:s3cret-pw@"), "{url}");
    let files = redis.client_tls().unwrap();
    let tls = daybook::store::redis::RedisTls {
        ca_file: Some(files.ca.clone()),
        client_cert: Some(files.cert.clone()),
        client_key: Some(files.key.clone()),
    };
    // Without the CA, the server's certificate is not trusted: start-up waits, then fails.
    let untrusted =
        RedisConfig { tls: daybook::store::redis::RedisTls { ca_file: None, ..tls.clone() }, ..RedisConfig::new(&url) };
    assert!(daybook::store::redis::RedisStore::connect(untrusted).await.is_err());
    let dir = tempfile::tempdir().unwrap();
    // A generous deadline: this test is about TLS and ACLs, and a handshake on a loaded
    // 2-core machine can take longer than the 50 ms default (the breaker then opens).
    let redis_config = RedisConfig { tls, timeout: Duration::from_secs(1), ..RedisConfig::new(&url) };
    let config = Config { redis: Some(redis_config), ..Config::default() };
    let server = Harness::start(dir.path(), "2026-11-22T00:00:00Z", config).await;
    scenarios_pass_through(server.tcp.to_string(), true).await;
    server.stop().await;
    // The port speaks TLS only: a plain-text client gets no answer.
    let plain = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--user", "daybook", "--pass", "s3cret-pw", "--no-auth-warning", "PING"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("PONG"));
    // daybook's keys are there, written over TLS.
    assert!(!redis.cli(&["--scan", "--pattern", "dbk:*"]).is_empty());
}

/// `shared`: a Redis store, where only voids of tenants metered by claims are not served
/// (reported unsupported, each by name). Embedded, every scenario without `now` must pass.
async fn scenarios_pass_through(addr: String, shared: bool) {
    let report = tokio::task::spawn_blocking(move || {
        let files = daybook::scenario::scenario_files(&[super::scenarios::scenarios_dir()]).unwrap();
        let mut out = Vec::new();
        let counts = daybook::scenario::run_files(
            &files,
            |s| {
                if let Some(skip) = daybook::scenario::GrpcTarget::skip_reason(s) {
                    return Err(skip);
                }
                Ok(Box::new(daybook::scenario::GrpcTarget::connect(&addr).unwrap())
                    as Box<dyn daybook::scenario::Target>)
            },
            &mut out,
        );
        (counts, String::from_utf8(out).unwrap())
    })
    .await
    .unwrap();
    let (tally, text) = report;
    assert_eq!(tally.failed, 0, "{text}");
    assert!(tally.passed >= 25, "{text}");
    assert!(text.contains("SKIP DB-37"), "scenarios with `now` are skipped: {text}");
    if shared {
        // Tenants of part two follow their tenant log; only a void of a tenant metered
        // by claims is not served.
        assert!(text.contains("PASS DB-50"), "{text}");
        for line in text.lines().filter(|l| l.starts_with("UNSUPPORTED")) {
            assert!(line.contains("void"), "{line}\n{text}");
        }
    } else {
        assert_eq!(tally.unsupported, 0, "{text}");
        assert!(text.contains("PASS DB-50") && text.contains("PASS DB-57"), "{text}");
    }
}

async fn admin_port_serves_live_ready_and_metrics(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, store.config()).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    IngestServiceClient::new(channel.clone())
        .ingest_message(message("acme", "m1", "2025-06-20T10:00:00Z", "c1", pb::SenderRole::Consumer))
        .await
        .unwrap();
    assert_eq!(http_get(server.admin, "/live").await.0, 200);
    assert_eq!(http_get(server.admin, "/ready").await.0, 200);
    let (status, metrics) = http_get(server.admin, "/metrics").await;
    assert_eq!(status, 200);
    // The values are checked in `telemetry`; here, that the page is there.
    assert!(metrics.contains("daybook_events_total{"), "{metrics}");
    assert!(metrics.contains("rpc_server_call_duration_seconds_bucket{"), "{metrics}");
    assert!(metrics.contains("daybook_hot_interactions 1"), "{metrics}");
    assert_eq!(http_get(server.admin, "/nope").await.0, 404);
    server.stop().await;
}

#[test]
fn check_config_validates_and_a_bad_config_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"127.0.0.1:0\"\n[[tenant]]\nid = \"a\"\ntime_zone = \"UTC\"\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[tenant]]\nid = \"a\"\ntime_zone = \"UTC\"\nsettings = { cycle_anchor_day = 0 }\n").unwrap();
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_daybook")).args(args).output().unwrap();
    let ok = run(&["serve", "--check-config", "--config", good.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let out = run(&["serve", "--check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cycle_anchor_day"));
    // A sink's token file is read as a start reads it: missing, it is named.
    let sink = dir.path().join("sink.toml");
    let token = dir.path().join("token");
    std::fs::write(
        &sink,
        format!(
            "[[sink]]\nname = \"om\"\nkind = \"cloudevents\"\nurl = \"http://127.0.0.1:9/e\"\ntoken_file = {token:?}\n"
        ),
    )
    .unwrap();
    let out = run(&["serve", "--check-config", "--config", sink.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sink `om`") && stderr.contains("token"), "{stderr}");
    std::fs::write(&token, "s3cret\n").unwrap();
    let ok = run(&["serve", "--check-config", "--config", sink.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // Bad configs exit 64 before binding anything, even without --check-config.
    let out = run(&["serve", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

async fn jsonl_sink_has_every_record_once_across_a_restart(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("records.jsonl");
    let config = || Config { records_jsonl: Some(sink.clone()), ..store.config() };
    for round in 0..2 {
        let server = Harness::start(dir.path(), NOW, config()).await;
        let channel = server.tcp_channel().await;
        if round == 0 {
            create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
        }
        let mut ingest = IngestServiceClient::new(channel);
        for i in 0..20 {
            ingest
                .ingest_message(message(
                    "acme",
                    &format!("r{round}-{i}"),
                    "2025-06-20T10:00:00Z",
                    &format!("c{round}-{i}"),
                    pb::SenderRole::Consumer,
                ))
                .await
                .unwrap();
        }
        // The sink follows what is durable; give it a moment before stopping.
        for _ in 0..100 {
            if std::fs::read_to_string(&sink).map(|t| t.lines().count()).unwrap_or(0) > 20 * (round + 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.stop().await;
    }
    let text = std::fs::read_to_string(&sink).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let interactions = records.iter().filter(|r| r.get("interaction").is_some()).count();
    let alerts = records.iter().filter(|r| r.get("alert").is_some()).count();
    assert_eq!(
        (interactions, alerts),
        (40, 1),
        "one interaction per new consumer and the plan's one alert, none twice"
    );
    let ids: std::collections::HashSet<&str> = records.iter().map(|r| r["record_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), records.len());
    let cursors: Vec<daybook::server::records::Cursor> = records
        .iter()
        .map(|r| daybook::server::records::Cursor::parse(r["cursor"].as_str().unwrap()).unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "in cursor order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_file_reloads_on_change_and_refuses_api_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("daybook.toml");
    let write = |gai: &str| {
        std::fs::write(
            &file,
            format!("[[tenant]]\nid = \"filed\"\ntime_zone = \"UTC\"\nsettings = {{ generative_ai = {gai} }}\n"),
        )
        .unwrap()
    };
    write("false");
    let flags = daybook::server::config::Flags { config: Some(file.display().to_string()), ..Default::default() };
    let config = daybook::server::config::load(&flags, &Default::default(), |p| {
        std::fs::read_to_string(p).map_err(|e| e.to_string())
    })
    .unwrap();
    let server = Harness::start(dir.path(), NOW, config).await;
    let channel = server.tcp_channel().await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let before = ingest
        .ingest_message(message("filed", "m1", "2025-06-20T10:00:00Z", "c1", pb::SenderRole::Consumer))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert_eq!(before.lines.len(), 1);
    // An invalid edit is refused; the running tenant stays.
    std::fs::write(&file, "[[tenant]]\nid = \"filed\"\ntime_zone = \"Nowhere/City\"\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = ingest
        .ingest_message(message("filed", "m2", "2025-06-20T10:00:00Z", "c2", pb::SenderRole::Consumer))
        .await
        .unwrap()
        .into_inner()
        .outcome
        .unwrap();
    assert_eq!(still.lines.len(), 1);
    write("true");
    let mut after = None;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let outcome = ingest
            .ingest_message(message(
                "filed",
                &format!("n{i}"),
                "2025-06-20T10:00:00Z",
                &format!("d{i}"),
                pb::SenderRole::Consumer,
            ))
            .await
            .unwrap()
            .into_inner()
            .outcome
            .unwrap();
        if outcome.lines.len() == 2 {
            after = Some(outcome);
            break;
        }
    }
    assert!(after.is_some(), "the file's new settings apply without a restart");
    let change = pb::SettingsChange {
        change_id: "x".into(),
        effective_from: "2025-07-01T00:00:00Z".into(),
        settings: Some(pb::Settings { intent_listening: Some(true), ..Default::default() }),
    };
    let status = TenantServiceClient::new(channel)
        .change_settings(pb::ChangeSettingsRequest { tenant_id: "filed".into(), change: Some(change) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    server.stop().await;
}

async fn fsync_durability_and_batch_limits(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { durability: daybook::server::journal::Durability::Fsync, max_batch: 3, ..store.config() };
    let server = Harness::start(dir.path(), NOW, config).await;
    let channel = server.uds_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    ingest.ingest_message(message("acme", "m1", "2025-06-20T10:00:00Z", "c1", pb::SenderRole::Consumer)).await.unwrap();
    let (_, metrics) = http_get(server.admin, "/metrics").await;
    let synced = metrics
        .lines()
        .find(|l| l.starts_with("daybook_journal_fsync_duration_seconds_count"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(synced >= 1, "answers wait for fdatasync: {metrics}");
    let event = |i: usize| pb::Event {
        tenant_id: "acme".into(),
        event_id: format!("b{i}"),
        event_time: "2025-06-20T10:00:00Z".into(),
        kind: Some(pb::event::Kind::Message(message("acme", "", "", "c", pb::SenderRole::Agent).message.unwrap())),
    };
    let too_many = pb::IngestBatchRequest { events: (0..4).map(event).collect() };
    let mut responses = ingest.ingest_batch(tokio_stream::iter(vec![too_many])).await.unwrap().into_inner();
    let status = responses.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "events");
    assert_eq!(usage(&channel, "acme").await.interactions, 1, "the refused batch changed nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loads_the_snapshot_and_a_damaged_one_falls_back_to_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, Config::default()).await;
    let channel = server.tcp_channel().await;
    let mut plan_tenant = tenant("acme", "UTC", pb::Meter::Dar);
    plan_tenant.settings.as_mut().unwrap().generative_ai = Some(true);
    create(&channel, plan_tenant).await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut originals = Vec::new();
    for i in 0..40 {
        let request =
            message("acme", &format!("m{i}"), "2025-06-19T10:00:00Z", &format!("c{}", i % 9), pb::SenderRole::Agent);
        originals.push((request.clone(), ingest.ingest_message(request).await.unwrap().into_inner().outcome.unwrap()));
    }
    let mut before = usage(&channel, "acme").await;
    drop((ingest, channel));
    server.stop().await;
    let snapshot = dir.path().join("snapshot.bin");
    assert!(snapshot.exists(), "a graceful stop writes a snapshot");

    for damaged in [false, true] {
        if damaged {
            let mut bytes = std::fs::read(&snapshot).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&snapshot, bytes).unwrap();
        }
        let server = Harness::start(dir.path(), NOW, Config::default()).await;
        let channel = server.uds_channel().await;
        assert_eq!(usage(&channel, "acme").await, before, "damaged snapshot: {damaged}");
        let mut ingest = IngestServiceClient::new(channel.clone());
        for (request, original) in &originals {
            let retry = ingest.ingest_message(request.clone()).await.unwrap().into_inner().outcome.unwrap();
            assert!(retry.retry);
            assert_eq!(pb::EventOutcome { retry: false, ..retry }, *original);
        }
        // New events after a snapshot-based start are rated on top of it.
        let next = ingest
            .ingest_message(message(
                "acme",
                &format!("new-{damaged}"),
                "2025-06-20T10:00:00Z",
                &format!("fresh-{damaged}"),
                pb::SenderRole::Consumer,
            ))
            .await
            .unwrap();
        assert_eq!(next.into_inner().outcome.unwrap().disposition, pb::Disposition::NewInteraction as i32);
        before = usage(&channel, "acme").await;
        drop((ingest, channel));
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_prunes_closed_periods_and_writes_snapshots_while_serving() {
    // A clock the test moves: periods close as it passes the lateness horizon.
    let clock_ms =
        Arc::new(std::sync::atomic::AtomicI64::new(parse_instant("2025-06-02T12:00:00Z").unwrap().timestamp_millis()));
    let read = clock_ms.clone();
    let clock: daybook::server::core::Clock = Arc::new(move || {
        chrono::DateTime::from_timestamp_millis(read.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = Config { snapshot_interval: Duration::from_secs(1), ..Config::default() };
    let metric = |body: &str, name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };

    let server = Harness::start_with_clock(dir.path(), clock.clone(), config.clone()).await;
    let channel = server.tcp_channel().await;
    let mut t = tenant("acme", "UTC", pb::Meter::Dar);
    t.settings.as_mut().unwrap().lateness_horizon = Some("P2D".into());
    create(&channel, t).await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    for (i, at) in ["2025-06-01T10:00:00Z", "2025-06-02T10:00:00Z"].iter().enumerate() {
        for c in 0..3 {
            ingest
                .ingest_message(message("acme", &format!("e{i}-{c}"), at, &format!("c{c}"), pb::SenderRole::Consumer))
                .await
                .unwrap();
        }
    }
    let before = usage(&channel, "acme").await;
    assert_eq!(before.interactions, 6);

    // Written while serving, without a stop.
    let snapshot = dir.path().join("snapshot.bin");
    for _ in 0..100 {
        if snapshot.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(snapshot.exists(), "a periodic snapshot is written within snapshot_interval");

    // June 1 is closed once it ended the horizon (2 days), a day of margin for clock steps
    // and a day for zones ahead of UTC ago: its state goes.
    clock_ms
        .store(parse_instant("2025-06-06T12:00:00Z").unwrap().timestamp_millis(), std::sync::atomic::Ordering::SeqCst);
    let mut hot = 6.0;
    for _ in 0..100 {
        hot = metric(&http_get(server.admin, "/metrics").await.1, "daybook_hot_interactions ");
        if hot < 6.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hot, 3.0, "June 1 pruned, June 2 kept");
    assert_eq!(usage(&channel, "acme").await, before, "pruning keeps every total");
    let late =
        ingest.ingest_message(message("acme", "late", "2025-06-01T11:00:00Z", "c9", pb::SenderRole::Consumer)).await;
    assert_eq!(late.unwrap_err().code(), Code::FailedPrecondition);
    server.stop().await;

    // The journal says where periods closed: a start that replays it (no snapshot) prunes
    // at the same point and agrees.
    std::fs::remove_file(&snapshot).unwrap();
    let server = Harness::start_with_clock(dir.path(), clock.clone(), config).await;
    let channel = server.tcp_channel().await;
    assert_eq!(usage(&channel, "acme").await, before);
    assert_eq!(metric(&http_get(server.admin, "/metrics").await.1, "daybook_hot_interactions "), 3.0);
    let late = IngestServiceClient::new(channel.clone())
        .ingest_message(message("acme", "late2", "2025-06-01T11:00:00Z", "c9", pb::SenderRole::Consumer))
        .await;
    assert_eq!(late.unwrap_err().code(), Code::FailedPrecondition);
    server.stop().await;
}

async fn concurrent_callers_then_a_replay_give_the_same_answers_statements_and_alerts(store: Store) {
    // Events of different consumers are rated in parallel (ordering stripes); a replay of
    // the journal alone must still reproduce every answer, total, statement and alert.
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, store.config()).await;
    let channel = server.tcp_channel().await;
    let mut t = tenant("acme", "UTC", pb::Meter::Dar);
    t.plan = Some(pb::Plan {
        kind: Some(pb::plan::Kind::Starter(pb::StarterPlan {
            included_interactions: Some(20),
            alert_thresholds: vec!["0.25".into(), "0.5".into(), "1".into()],
            ..Default::default()
        })),
    });
    create(&channel, t).await;
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = IngestServiceClient::new(channel);
            let mut answers = Vec::new();
            for i in 0..60 {
                let consumer = format!("c{}", (i * 7 + worker * 3) % 23);
                let role = if i % 3 == 0 { pb::SenderRole::Agent } else { pb::SenderRole::Consumer };
                let at = format!("2025-06-{:02}T{:02}:00:00Z", 10 + i % 3, 8 + worker);
                let request = message("acme", &format!("w{worker}-{i}"), &at, &consumer, role);
                let outcome = client.ingest_message(request.clone()).await.unwrap().into_inner().outcome.unwrap();
                answers.push((request, outcome));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    let statements = |channel: Channel| async move {
        UsageServiceClient::new(channel)
            .list_statements(pb::ListStatementsRequest { tenant_id: "acme".into() })
            .await
            .unwrap()
            .into_inner()
    };
    let before = (usage(&channel, "acme").await, statements(channel.clone()).await);
    assert!(before.1.statements.iter().any(|s| !s.alerts.is_empty()), "alerts were raised");
    server.stop().await;

    std::fs::remove_file(dir.path().join("snapshot.bin")).unwrap();
    let server = Harness::start(dir.path(), NOW, store.config()).await;
    let channel = server.uds_channel().await;
    assert_eq!((usage(&channel, "acme").await, statements(channel.clone()).await), before);
    let mut client = IngestServiceClient::new(channel);
    for (request, original) in answers {
        let retry = client.ingest_message(request).await.unwrap().into_inner().outcome.unwrap();
        assert_eq!(pb::EventOutcome { retry: false, ..retry }, original);
    }
    server.stop().await;
}

#[test]
fn bench_compares_redis_mode_with_the_naive_design() {
    // `--redis auto` starts a redis-server, daybook in Redis mode and the naive design on
    // it, behind a proxy that adds a round trip.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["bench", "--redis", "auto", "--redis-rtt-ms", "1", "--seconds", "1", "--warmup", "1", "--rounds", "1"])
        .args(["--concurrency", "2", "--streams", "0", "--consumers", "50", "--no-floor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in ["in Redis mode", "naive   unary c=2", "daybook unary c=2", "the naive design's calls/s", "proxy"] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
}

#[test]
fn bench_freezes_and_kills_its_redis_under_traffic() {
    // `--redis-outage`: the bench's own Redis goes away a third into the run and comes back
    // a third later; calls go on being answered meanwhile, and each phase is reported.
    for (outage, said) in [("pause", "Redis paused for"), ("kill", "Redis killed for")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_daybook"))
            .args(["bench", "--redis", "auto", "--redis-outage", outage, "--seconds", "3", "--rounds", "1"])
            .args(["--concurrency", "2", "--consumers", "50"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(said) && text.contains("slowest call during the outage"), "{text}");
        for phase in ["before", "during", "after"] {
            let line = text.lines().find(|l| l.trim_start().starts_with(phase)).unwrap_or_else(|| panic!("{text}"));
            let calls: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            assert!(calls > 0, "calls answered {phase} the outage: {text}");
        }
        assert!(!text.contains("naive") && !text.contains("floor"), "{text}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["bench", "--redis-outage", "pause", "--seconds", "1", "--rounds", "1", "--concurrency", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --redis auto"), "{out:?}");
}

#[test]
fn bench_drives_a_server_and_the_empty_handler_floor() {
    // The load generator end to end: it starts `daybook serve` and the floor itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["bench", "--seconds", "1", "--concurrency", "2", "--streams", "1", "--batch", "20", "--consumers", "50"])
        .args(["--rounds", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // Two rounds, each row's sides in each, then each row's medians over the rounds.
    assert_eq!(text.matches("daybook unary c=2").count(), 2, "{text}");
    for expected in ["-- round 2 of 2", "== unary c=2: median of 2 rounds", "== batch 1x20: median of 2 rounds"] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    assert!(text.contains("of the floor's calls/s; p99 over it"), "{text}");
    for expected in ["daybook unary c=2", "floor   unary c=2", "daybook batch 1x20", "floor   batch 1x20", "ratio"] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    let calls = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap();
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    assert!(calls("daybook unary c=2") > 0.0 && calls("floor   unary c=2") > 0.0, "{text}");
    // Each process's CPU per call is measured (Linux); 50 fresh consumers start
    // interactions at daybook, and the empty handler starts none.
    let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).unwrap();
    assert!(line("daybook unary c=2").contains(" us/call") && line("floor   unary c=2").contains(" us/call"), "{text}");
    assert!(line("daybook unary c=2").contains("new ") && !line("floor   unary c=2").contains("new "), "{text}");
    assert!(text.contains("server CPU per call"), "{text}");
}

#[test]
fn bench_state_measures_memory_and_recovery() {
    // `daybook bench-state` end to end, small: one memory run in a child process, and a
    // journal written, recovered from itself and from a snapshot.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["bench-state", "--memory", "20000", "--recovery", "20000", "--recovery-tail", "5000", "--rounds", "2"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let number_after = |prefix: &str, word: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} in {text}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| *w == word).unwrap_or_else(|| panic!("{word} in {line}"));
        words[i + 1].parse().unwrap()
    };
    assert!(number_after("memory", "relationship-days:") > 0.0, "{text}");
    assert!(number_after("recovery", "journal") > 0.0, "{text}");
    // Each start is timed in every round: the median, then the least and the greatest.
    assert!(
        number_after("recovery", "events") > 0.0 && text.contains("start from the snapshot and a tail of 5000 events")
    );
    assert!(text.contains("2 rounds"), "{text}");
    // The data directory given is kept, with its snapshot.
    assert!(dir.path().join("snapshot.bin").exists());
}

async fn probe_port_serves_health_only_and_the_socket_mode_is_configurable(store: Store) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, Config { uds_mode: 0o660, ..store.config() }).await;
    let mode = std::fs::metadata(&server.uds).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "group members of the pod may connect; others may not");
    let probe = daybook::client::connect(&server.health.to_string()).await.unwrap();
    let status = tonic_health::pb::health_client::HealthClient::new(probe.clone())
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    // Liveness has a service name of its own: the process, SERVING whatever the service's
    // readiness (the chart's livenessProbe asks for it; readiness asks for "").
    let live = tonic_health::pb::health_client::HealthClient::new(probe.clone())
        .check(tonic_health::pb::HealthCheckRequest { service: daybook::server::LIVENESS.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    // The probe port answers health and nothing else: the API stays on the socket.
    let ingest = IngestServiceClient::new(probe)
        .ingest_message(message("acme", "m1", "2025-06-20T10:00:00Z", "c1", pb::SenderRole::Consumer))
        .await;
    assert_eq!(ingest.unwrap_err().code(), Code::Unimplemented);
    server.stop().await;
}
