//! Telemetry over real gRPC: traffic whose every count is known, then `/metrics` scraped
//! and parsed, value by value; the tenant label only when opted in; and an OTLP collector
//! in this process receiving the server's spans (children of the caller's trace context)
//! and metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;
use daybook::api::pb::usage_service_client::UsageServiceClient;
use daybook::server::config::Config;
use daybook::server::telemetry::{RPC_BUCKETS, TelemetryConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use tonic::Code;
use tonic::transport::Channel;

use super::server::{Harness, create, http_get, message, tenant, usage};

const NOW: &str = "2025-06-20T12:00:00Z";
const INGEST_MESSAGE: &str = "daybook.v1.IngestService/IngestMessage";

/// One sample of the Prometheus text format.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Label values here never contain `",`: no escaping to undo.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        samples.push(Sample { name: name.to_string(), labels: map, value: value.parse().expect("a number") });
    }
    samples
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert_eq!(matching.len(), 1, "exactly one {name}{labels:?} in {samples:#?}");
    matching[0].value
}

fn calls(samples: &[Sample], method: &str, code: &str) -> f64 {
    value(
        samples,
        "rpc_server_call_duration_seconds_count",
        &[("rpc_system_name", "grpc"), ("rpc_method", method), ("rpc_response_status_code", code)],
    )
}

/// A batch's answers are tallied by kind before they reach the counters (issue 19): the
/// counts are exactly those of the same events sent one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_are_counted_as_single_ones_are() {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, Config::default()).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    create(&channel, tenant("globex", "UTC", pb::Meter::Dar)).await;
    let consumer = pb::SenderRole::Consumer;
    let event = |tenant: &str, id: &str, at: &str, who: &str| {
        let m = message(tenant, id, at, who, consumer);
        pb::Event {
            tenant_id: m.tenant_id,
            event_id: m.event_id,
            event_time: m.event_time,
            kind: m.message.map(pb::event::Kind::Message),
        }
    };
    let events = vec![
        event("acme", "m1", "2025-06-20T10:00:00Z", "c1"),
        event("globex", "g1", "2025-06-20T10:00:00Z", "c1"),
        event("acme", "m2", "2025-06-20T11:00:00Z", "c1"),
        event("acme", "m3", "2025-06-20T11:00:00Z", "c2"),
        event("acme", "m1", "2025-06-20T10:00:00Z", "c1"),
        event("acme", "m4", "yesterday", "c1"),
        event("globex", "g2", "2025-06-20T12:00:00Z", "c1"),
    ];
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut answers =
        ingest.ingest_batch(tokio_stream::iter(vec![pb::IngestBatchRequest { events }])).await.unwrap().into_inner();
    assert_eq!(answers.message().await.unwrap().unwrap().outcomes.len(), 7);

    let (_, text) = http_get(server.admin, "/metrics").await;
    let m = parse_prometheus(&text);
    let events =
        |outcome: &str| value(&m, "daybook_events_total", &[("daybook_meter", "dar"), ("daybook_outcome", outcome)]);
    assert_eq!(events("new_interaction"), 3.0, "m1, g1, m3");
    assert_eq!(events("already_counted"), 2.0, "m2, g2");
    assert_eq!(events("retry"), 1.0, "m1 again");
    assert_eq!(events("refused"), 1.0, "the bad time");
    assert_eq!(value(&m, "daybook_interactions_total", &[("daybook_meter", "dar")]), 3.0);
    let refused = value(
        &m,
        "daybook_events_refused_total",
        &[("daybook_refusal_reason", "INVALID_EVENT"), ("daybook_rule", "T-6")],
    );
    assert_eq!(refused, 1.0);
    server.stop().await;
}

/// Calls a method the server does not serve, with the real gRPC client machinery.
async fn call_unknown_method(channel: &Channel) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/daybook.v1.IngestService/IngestTelepathy");
    let codec = tonic_prost::ProstCodec::<pb::GetUsageRequest, pb::GetUsageResponse>::default();
    grpc.unary(tonic::Request::new(pb::GetUsageRequest::default()), path, codec).await.unwrap_err()
}

/// The traffic of the metrics tests, with every outcome once or more.
async fn known_traffic(channel: &Channel) {
    let mut ingest = IngestServiceClient::new(channel.clone());
    let consumer = pb::SenderRole::Consumer;
    for (id, at, who) in [
        ("m1", "2025-06-20T10:00:00Z", "c1"),
        ("m2", "2025-06-20T11:00:00Z", "c1"),
        ("m3", "2025-06-20T11:00:00Z", "c2"),
        ("m1", "2025-06-20T10:00:00Z", "c1"),
    ] {
        ingest.ingest_message(message("acme", id, at, who, consumer)).await.unwrap();
    }
    let reused = ingest.ingest_message(message("acme", "m1", "2025-06-20T10:00:00Z", "c9", consumer)).await;
    assert_eq!(reused.unwrap_err().code(), Code::AlreadyExists);
    let bad_time = ingest.ingest_message(message("acme", "m4", "yesterday", "c1", consumer)).await;
    assert_eq!(bad_time.unwrap_err().code(), Code::InvalidArgument);
    let unknown_tenant = UsageServiceClient::new(channel.clone())
        .get_usage(pb::GetUsageRequest { tenant_id: "nobody".into(), ..Default::default() })
        .await;
    assert_eq!(unknown_tenant.unwrap_err().code(), Code::NotFound);
    assert_eq!(call_unknown_method(channel).await.code(), Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_known_traffic_have_the_right_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), NOW, Config::default()).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    known_traffic(&channel).await;
    let credits: f64 = usage(&channel, "acme").await.credits.parse().unwrap();

    let (status, text) = http_get(server.admin, "/metrics").await;
    assert_eq!(status, 200);
    let m = parse_prometheus(&text);
    let events =
        |outcome: &str| value(&m, "daybook_events_total", &[("daybook_meter", "dar"), ("daybook_outcome", outcome)]);
    assert_eq!(events("new_interaction"), 2.0);
    assert_eq!(events("already_counted"), 1.0);
    assert_eq!(events("retry"), 1.0);
    assert_eq!(events("refused"), 2.0, "the reused id and the bad time");
    assert_eq!(value(&m, "daybook_interactions_total", &[("daybook_meter", "dar")]), 2.0);

    // Every call is timed once, under its status; the path a caller invents is `_OTHER`.
    assert_eq!(calls(&m, INGEST_MESSAGE, "OK"), 4.0);
    assert_eq!(calls(&m, INGEST_MESSAGE, "ALREADY_EXISTS"), 1.0);
    assert_eq!(calls(&m, INGEST_MESSAGE, "INVALID_ARGUMENT"), 1.0);
    assert_eq!(calls(&m, "daybook.v1.TenantService/CreateTenant", "OK"), 1.0);
    assert_eq!(calls(&m, "daybook.v1.UsageService/GetUsage", "NOT_FOUND"), 1.0);
    assert_eq!(calls(&m, "daybook.v1.UsageService/GetUsage", "OK"), 1.0);
    assert_eq!(calls(&m, "_OTHER", "UNIMPLEMENTED"), 1.0);
    assert!(!text.contains("IngestTelepathy"), "no label value the caller chose");
    // error.type on failed calls only (the semantic conventions' status code).
    let failed = |code: &str| {
        value(&m, "rpc_server_call_duration_seconds_count", &[("rpc_method", INGEST_MESSAGE), ("error_type", code)])
    };
    assert_eq!(failed("ALREADY_EXISTS"), 1.0);
    assert_eq!(failed("INVALID_ARGUMENT"), 1.0);
    assert!(
        m.iter().all(|s| s.labels.get("rpc_response_status_code").map(String::as_str) != Some("OK")
            || !s.labels.contains_key("error_type")),
        "no error.type on a call that succeeded"
    );
    // Refused events by reason and rule.
    let refused = |reason: &str, rule: &str| {
        value(&m, "daybook_events_refused_total", &[("daybook_refusal_reason", reason), ("daybook_rule", rule)])
    };
    assert_eq!(refused("EVENT_ID_REUSED", "T-2"), 1.0);
    assert_eq!(refused("INVALID_EVENT", "T-6"), 1.0);
    // The process's own resources.
    assert!(value(&m, "process_memory_usage_bytes", &[]) > 1e6);
    assert!(value(&m, "process_unix_file_descriptor_count", &[]) > 3.0);
    assert!(value(&m, "process_cpu_time_seconds_total", &[("cpu_mode", "user")]) >= 0.0);
    // The recommended buckets, cumulative, ending at the count.
    let buckets: Vec<&Sample> = m
        .iter()
        .filter(|s| {
            s.name == "rpc_server_call_duration_seconds_bucket"
                && s.labels.get("rpc_method").map(String::as_str) == Some(INGEST_MESSAGE)
                && s.labels.get("rpc_response_status_code").map(String::as_str) == Some("OK")
        })
        .collect();
    let bounds: Vec<String> = buckets.iter().map(|s| s.labels["le"].clone()).collect();
    let mut expected: Vec<String> = RPC_BUCKETS.iter().map(|b| b.to_string()).collect();
    expected.push("+Inf".into());
    assert_eq!(bounds, expected);
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
    assert_eq!(buckets.last().unwrap().value, 4.0);

    // Gauges read from the state: what is on the books and in memory.
    assert_eq!(value(&m, "daybook_usage_interactions", &[("daybook_meter", "dar")]), 2.0);
    assert_eq!(value(&m, "daybook_usage_credits", &[("daybook_meter", "dar")]), credits);
    assert!(credits > 0.0);
    assert_eq!(value(&m, "daybook_hot_interactions", &[]), 2.0);
    assert_eq!(value(&m, "daybook_remembered_events", &[]), 3.0);
    // Every ingest call, refused or not, left the count of calls in flight.
    assert_eq!(value(&m, "daybook_ingest_calls_in_flight", &[]), 0.0);
    assert_eq!(value(&m, "daybook_ready", &[]), 1.0);
    assert!(value(&m, "daybook_journal_write_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(value(&m, "target_info", &[("service_name", "daybook")]), 1.0);
    assert!(!text.contains("acme"), "no tenant id unless opted in");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_label_only_when_opted_in() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = TelemetryConfig { tenant_label: true, ..TelemetryConfig::default() };
    let server = Harness::start(dir.path(), NOW, Config { telemetry, ..Config::default() }).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    create(&channel, tenant("beta", "UTC", pb::Meter::Dar)).await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    for (t, id, who) in [("acme", "a1", "c1"), ("beta", "b1", "c1"), ("beta", "b2", "c2")] {
        ingest.ingest_message(message(t, id, "2025-06-20T10:00:00Z", who, pb::SenderRole::Consumer)).await.unwrap();
    }
    let m = parse_prometheus(&http_get(server.admin, "/metrics").await.1);
    let of = |name: &str, t: &str| value(&m, name, &[("daybook_meter", "dar"), ("daybook_tenant", t)]);
    assert_eq!(of("daybook_interactions_total", "acme"), 1.0);
    assert_eq!(of("daybook_interactions_total", "beta"), 2.0);
    assert_eq!(of("daybook_usage_interactions", "beta"), 2.0);
    server.stop().await;
}

/// An OTLP/gRPC collector: keeps what it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ResourceSpans>>>,
    metrics: Arc<Mutex<Vec<ResourceMetrics>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.spans.lock().unwrap().extend(request.into_inner().resource_spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().unwrap().extend(request.into_inner().resource_metrics);
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

async fn start_collector() -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .add_service(MetricsServiceServer::new(collector.clone()));
    tokio::spawn(router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));
    (collector, addr)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_receiver_gets_spans_in_the_callers_trace_and_metrics() {
    let (collector, addr) = start_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = TelemetryConfig {
        otlp_endpoint: Some(format!("http://{addr}")),
        otlp_interval: Duration::from_secs(1),
        tenant_label: false,
        ..TelemetryConfig::default()
    };
    let server = Harness::start(dir.path(), NOW, Config { telemetry, ..Config::default() }).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;

    // The caller's trace: W3C trace context in the gRPC metadata.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let traced = |request: pb::IngestMessageRequest| {
        let mut request = tonic::Request::new(request);
        request.metadata_mut().insert("traceparent", format!("00-{trace_id}-{parent_id}-01").parse().unwrap());
        request
    };
    let mut ingest = IngestServiceClient::new(channel.clone());
    let consumer = pb::SenderRole::Consumer;
    ingest.ingest_message(traced(message("acme", "m1", "2025-06-20T10:00:00Z", "c1", consumer))).await.unwrap();
    ingest.ingest_message(traced(message("acme", "m2", "2025-06-20T10:00:00Z", "c2", consumer))).await.unwrap();
    let refused = ingest.ingest_message(traced(message("acme", "m3", "soon", "c1", consumer))).await;
    assert_eq!(refused.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(call_unknown_method(&channel).await.code(), Code::Unimplemented);
    // A periodic push happens while serving, not only at the stop.
    let mut pushed = false;
    for _ in 0..100 {
        if !collector.metrics.lock().unwrap().is_empty() {
            pushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pushed, "metrics pushed every otlp_interval");
    // Stopping flushes what is batched.
    server.stop().await;

    let resource_spans = collector.spans.lock().unwrap().clone();
    let service = resource_spans[0].resource.as_ref().map(|r| attribute(&r.attributes, "service.name"));
    assert_eq!(service, Some(Some("daybook")));
    let spans: Vec<Span> = resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans).collect();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let in_trace: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == trace_id).collect();
    assert_eq!(in_trace.len(), 3, "one span per traced call: {spans:#?}");
    for span in &in_trace {
        assert_eq!(span.name, INGEST_MESSAGE);
        assert_eq!(hex(&span.parent_span_id), parent_id, "a child of the caller's span");
        assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
        assert_eq!(attribute(&span.attributes, "rpc.system.name"), Some("grpc"));
        assert_eq!(attribute(&span.attributes, "rpc.method"), Some(INGEST_MESSAGE));
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    let codes: Vec<Option<&str>> =
        in_trace.iter().map(|s| attribute(&s.attributes, "rpc.response.status_code")).collect();
    assert_eq!(codes.iter().filter(|c| **c == Some("OK")).count(), 2);
    assert_eq!(codes.iter().filter(|c| **c == Some("INVALID_ARGUMENT")).count(), 1);
    // The caller's mistake is not the server's error; an unserved method is.
    assert!(in_trace.iter().all(|s| s.status.as_ref().is_none_or(|st| st.code != 2)));
    let other = spans.iter().find(|s| s.name == "_OTHER").expect("a span for the unknown method");
    assert_eq!(other.status.as_ref().map(|s| s.code), Some(2), "STATUS_CODE_ERROR");
    assert!(other.parent_span_id.is_empty(), "no trace context was sent: a root span");

    // Metrics: the last push holds the cumulative totals.
    let metrics: Vec<metric::Data> = collector
        .metrics
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.scope_metrics.iter())
        .flat_map(|s| s.metrics.iter())
        .filter_map(|m| m.data.clone().map(|d| (m.name.clone(), m.unit.clone(), d)))
        .filter(|(name, unit, _)| name == "rpc.server.call.duration" && unit == "s")
        .map(|(_, _, d)| d)
        .collect();
    let Some(metric::Data::Histogram(last)) = metrics.last() else { panic!("rpc.server.call.duration pushed") };
    let ok = last
        .data_points
        .iter()
        .find(|p| {
            attribute(&p.attributes, "rpc.method") == Some(INGEST_MESSAGE)
                && attribute(&p.attributes, "rpc.response.status_code") == Some("OK")
        })
        .expect("a point for the OK ingest calls");
    assert_eq!(ok.count, 2);
    assert_eq!(ok.explicit_bounds, RPC_BUCKETS.to_vec());
    let names: std::collections::HashSet<String> = collector
        .metrics
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.scope_metrics.iter())
        .flat_map(|s| s.metrics.iter().map(|m| m.name.clone()))
        .collect();
    for name in ["daybook.events", "daybook.interactions", "daybook.hot.interactions", "daybook.usage.credits"] {
        assert!(names.contains(name), "{name} pushed: {names:?}");
    }
}
