//! What the server reports, through the OpenTelemetry API: one meter provider feeding the
//! Prometheus text of the admin port's `/metrics` and, when an OTLP endpoint is
//! configured, an OTLP exporter of metrics and traces.
//!
//! Names follow the semantic conventions: `rpc.server.call.duration` (seconds, the
//! recommended buckets) with `rpc.system.name`, `rpc.method` and
//! `rpc.response.status_code`; one SERVER span per call, a child of the trace context the
//! caller sent in its gRPC metadata (W3C `traceparent`). Domain metrics live under
//! `daybook.*`. Label values are bounded: methods the server does not serve are `_OTHER`,
//! and tenant ids appear only when `metrics_tenant_label` opts in.
//!
//! Metric values are observations for dashboards. The credits gauge is the exact
//! `Decimal` ledger total, converted to a float only when it is read out; statements and
//! usage answers never go through it.

use crate::sync::Unpoisoned;
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use hyper::body::Bytes;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, ObservableGauge};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status as SpanStatus, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use rust_decimal::prelude::ToPrimitive;

/// The default boundaries of `rpc.server.call.duration`, in seconds (`latency_buckets`).
/// OpenTelemetry's recommended ones start at 5 ms, where every daybook call would land in
/// the first bucket; these resolve calls from 50 us, so a p99 can be read.
pub const RPC_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Journal group-commit writes are much shorter than calls.
const FLUSH_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];
/// Pauses of ingest for maintenance.
const PAUSE_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// How telemetry is exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector (`http://host:4317`); `None` exports nothing but `/metrics`.
    pub otlp_endpoint: Option<String>,
    /// How often metrics are pushed to the collector.
    pub otlp_interval: Duration,
    /// Label event, interaction and credit metrics with the tenant id. Off by default:
    /// tenant ids are customer names, and their number is unbounded.
    pub tenant_label: bool,
    /// Boundaries of `rpc.server.call.duration`, seconds, ascending.
    pub latency_buckets: Vec<f64>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            otlp_interval: Duration::from_secs(60),
            tenant_label: false,
            latency_buckets: RPC_BUCKETS.to_vec(),
        }
    }
}

/// The instruments of one server. Each server has its own (tests run several in one
/// process); nothing is registered globally.
pub struct Telemetry {
    registry: prometheus::Registry,
    meters: SdkMeterProvider,
    meter: Meter,
    traces: Option<(SdkTracerProvider, SdkTracer)>,
    tenant_label: bool,
    /// `rpc.method` values by request path (`/pkg.Service/Method`): the served methods.
    methods: HashMap<String, StringValue>,
    rpc_duration: Histogram<f64>,
    /// Ingest calls received and not yet answered ([`Telemetry::ingest_calls`]).
    ingest_calls: AtomicUsize,
    refused: opentelemetry::metrics::Counter<u64>,
    events: Counter<u64>,
    interactions: Counter<u64>,
    journal_write: Histogram<f64>,
    journal_fsync: Histogram<f64>,
    maintenance_pause: Histogram<f64>,
    redis_call: Histogram<f64>,
    snapshots: Counter<u64>,
    pruned: Counter<u64>,
    evicted: Counter<u64>,
    /// Gauges read at collection time; kept so that they live as long as the provider.
    gauges: Mutex<Vec<ObservableGauge<u64>>>,
    /// `process.cpu.time`, registered with the state's gauges (kept alive here).
    process_cpu: Mutex<Option<opentelemetry::metrics::ObservableCounter<f64>>>,
    credit_gauge: Mutex<Option<ObservableGauge<f64>>>,
    sink_counters: Mutex<Vec<opentelemetry::metrics::ObservableCounter<u64>>>,
}

impl Telemetry {
    /// Builds the meter provider (and the tracer provider when OTLP is configured). The
    /// OTLP exporters connect lazily: a collector that is down loses telemetry, never
    /// calls. Call inside the Tokio runtime (the OTLP client is a tonic channel).
    pub fn new(config: &TelemetryConfig, methods: HashSet<String>) -> anyhow::Result<Arc<Telemetry>> {
        let registry = prometheus::Registry::new();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("daybook")
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            .map_err(|e| anyhow::anyhow!("prometheus exporter: {e}"))?;
        let mut meters = SdkMeterProvider::builder().with_resource(resource.clone()).with_reader(prometheus);
        let mut traces = None;
        if let Some(endpoint) = &config.otlp_endpoint {
            use opentelemetry_otlp::WithExportConfig as _;
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(Duration::from_secs(5))
                .build()?;
            meters = meters.with_reader(PeriodicReader::builder(metrics).with_interval(config.otlp_interval).build());
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(Duration::from_secs(5))
                .build()?;
            let provider = SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(spans).build();
            let tracer = provider.tracer("daybook");
            traces = Some((provider, tracer));
        }
        let meters = meters.build();
        let meter = meters.meter("daybook");
        let seconds = |name: &'static str, description: &'static str, buckets: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(buckets.to_vec())
                .build()
        };
        Ok(Arc::new(Telemetry {
            ingest_calls: AtomicUsize::new(0),
            rpc_duration: seconds(
                "rpc.server.call.duration",
                "Duration of inbound gRPC calls.",
                &config.latency_buckets,
            ),
            refused: meter
                .u64_counter("daybook.events.refused")
                .with_unit("{event}")
                .with_description("Events refused, by reason and the rule that refused them.")
                .build(),
            events: meter
                .u64_counter("daybook.events")
                .with_unit("{event}")
                .with_description("Events answered, by outcome and meter.")
                .build(),
            interactions: meter
                .u64_counter("daybook.interactions")
                .with_unit("{interaction}")
                .with_description("Billable interactions started by events this process rated, by meter.")
                .build(),
            journal_write: seconds(
                "daybook.journal.write.duration",
                "Journal group-commit writes (durability = write).",
                FLUSH_BUCKETS,
            ),
            journal_fsync: seconds(
                "daybook.journal.fsync.duration",
                "Journal group-commit write + fdatasync (durability = fsync).",
                FLUSH_BUCKETS,
            ),
            maintenance_pause: seconds(
                "daybook.maintenance.pause",
                "Ingest paused to copy state for a snapshot or to prune closed periods.",
                PAUSE_BUCKETS,
            ),
            redis_call: seconds(
                "daybook.redis.call.duration",
                "Calls to the shared store, by operation and outcome (ok, stale, seen, error).",
                FLUSH_BUCKETS,
            ),
            snapshots: meter.u64_counter("daybook.snapshots").with_description("Snapshots written.").build(),
            pruned: meter
                .u64_counter("daybook.pruned.entries")
                .with_description("State entries of closed periods pruned.")
                .build(),
            evicted: meter
                .u64_counter("daybook.evicted.entries")
                .with_description(
                    "Near-cache entries forgotten to stay under memory_ceiling (Redis mode still has them).",
                )
                .build(),
            registry,
            meters,
            meter,
            traces,
            tenant_label: config.tenant_label,
            methods: methods.into_iter().map(|m| (format!("/{m}"), StringValue::from(Arc::<str>::from(m)))).collect(),
            gauges: Mutex::new(Vec::new()),
            process_cpu: Mutex::new(None),
            credit_gauge: Mutex::new(None),
            sink_counters: Mutex::default(),
        }))
    }

    /// Telemetry with every default: `/metrics` only. For tools and tests.
    pub fn local() -> Arc<Telemetry> {
        Telemetry::new(&TelemetryConfig::default(), HashSet::new()).expect("local telemetry needs no I/O")
    }

    /// Registers the gauges read from the server's state at collection time. Holds the
    /// state weakly: telemetry never keeps a stopped server alive.
    pub fn observe<S: ObservedState + 'static>(&self, state: &Arc<S>) {
        let gauge = |name: &'static str, description: &'static str, read: fn(&S) -> u64| {
            let weak: Weak<S> = Arc::downgrade(state);
            self.meter
                .u64_observable_gauge(name)
                .with_description(description)
                .with_callback(move |observer| {
                    if let Some(d) = weak.upgrade() {
                        observer.observe(read(&d), &[]);
                    }
                })
                .build()
        };
        let mut gauges = self.gauges.lock().unpoisoned();
        let process_gauge =
            |name: &'static str, unit: &'static str, description: &'static str, read: fn() -> Option<u64>| {
                self.meter
                    .u64_observable_gauge(name)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(move |observer| {
                        if let Some(value) = read() {
                            observer.observe(value, &[]);
                        }
                    })
                    .build()
            };
        gauges.push(process_gauge(
            "process.memory.usage",
            "By",
            "Resident memory of the process.",
            super::process::resident_bytes,
        ));
        gauges.push(process_gauge(
            "process.unix.file_descriptor.count",
            "{file_descriptor}",
            "Open file descriptors of the process.",
            super::process::open_fds,
        ));
        self.process_cpu.lock().unpoisoned().get_or_insert_with(|| {
            self.meter
                .f64_observable_counter("process.cpu.time")
                .with_unit("s")
                .with_description("CPU time of the process, by mode (user, system).")
                .with_callback(|observer| {
                    if let Some((user, system)) = super::process::cpu_seconds() {
                        observer.observe(user, &[KeyValue::new("cpu.mode", "user")]);
                        observer.observe(system, &[KeyValue::new("cpu.mode", "system")]);
                    }
                })
                .build()
        });
        gauges.push(gauge("daybook.hot.interactions", "Relationship entries held in memory.", |d| {
            d.hot_interactions() as u64
        }));
        gauges.push(gauge(
            "daybook.ingest.calls_in_flight",
            "Ingest calls received and not yet answered (their entries are written together).",
            |d| d.ingest_calls_in_flight() as u64,
        ));
        gauges.push(gauge("daybook.remembered.events", "Event ids remembered for idempotency.", |d| {
            d.remembered_events() as u64
        }));
        gauges.push(gauge("daybook.journal.durable", "Last journal entry known durable.", |d| d.journal_durable()));
        gauges.push(gauge("daybook.disk.usage", "Bytes of the data directory: journal and snapshot.", |d| {
            d.disk_bytes()
        }));
        gauges.push(gauge("daybook.ready", "1 when ready to serve.", |d| d.ready() as u64));
        if state.shared_status().is_some() {
            gauges.push(gauge(
                "daybook.redis.degraded",
                "1 while decisions are made without the shared store (Redis unreachable).",
                |d| d.shared_status().is_some_and(|(_, degraded)| degraded) as u64,
            ));
            gauges.push(gauge(
                "daybook.redis.pending",
                "Accepted events whose effects wait to reach the shared store.",
                |d| d.shared_status().map_or(0, |(pending, _)| pending as u64),
            ));
        }
        self.observe_sinks(state, &mut gauges);
        let weak: Weak<S> = Arc::downgrade(state);
        let tenant_label = self.tenant_label;
        let usage = self
            .meter
            .u64_observable_gauge("daybook.usage.interactions")
            .with_unit("{interaction}")
            .with_description("Billable interactions on the books (all periods held), by meter.")
            .with_callback({
                let weak = weak.clone();
                move |observer| {
                    if let Some(d) = weak.upgrade() {
                        for (attributes, totals) in usage_by_label(d.usage_by_tenant(), tenant_label) {
                            observer.observe(totals.interactions, &attributes);
                        }
                    }
                }
            })
            .build();
        gauges.push(usage);
        let credits = self
            .meter
            .f64_observable_gauge("daybook.usage.credits")
            .with_unit("{credit}")
            .with_description("Engagement credits on the books (all periods held), by meter; exact in statements.")
            .with_callback(move |observer| {
                if let Some(d) = weak.upgrade() {
                    for (attributes, totals) in usage_by_label(d.usage_by_tenant(), tenant_label) {
                        let exact: rust_decimal::Decimal = totals.credits.iter().sum();
                        observer.observe(exact.to_f64().unwrap_or(f64::NAN), &attributes);
                    }
                }
            })
            .build();
        *self.credit_gauge.lock().unpoisoned() = Some(credits);
    }

    /// The record sinks' lag, deliveries and failures, labelled by sink.
    fn observe_sinks<S: ObservedState + 'static>(&self, state: &Arc<S>, gauges: &mut Vec<ObservableGauge<u64>>) {
        let weak: Weak<S> = Arc::downgrade(state);
        gauges.push(
            self.meter
                .u64_observable_gauge("daybook.sink.lag")
                .with_unit("{entry}")
                .with_description("Journal entries durable but not yet passed by the sink (delivered or not its).")
                .with_callback(move |observer| {
                    if let Some(d) = weak.upgrade() {
                        let durable = d.journal_durable();
                        for sink in d.sinks() {
                            let lag = durable.saturating_sub(sink.settled);
                            observer.observe(lag, &[KeyValue::new("daybook.sink", sink.name)]);
                        }
                    }
                })
                .build(),
        );
        let counter =
            |name: &'static str, description: &'static str, read: fn(&super::sinks::board::SinkReport) -> u64| {
                let weak: Weak<S> = Arc::downgrade(state);
                self.meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_callback(move |observer| {
                        if let Some(d) = weak.upgrade() {
                            for sink in d.sinks() {
                                observer.observe(read(&sink), &[KeyValue::new("daybook.sink", sink.name.clone())]);
                            }
                        }
                    })
                    .build()
            };
        let mut counters = self.sink_counters.lock().unpoisoned();
        counters.push(counter("daybook.sink.delivered", "Records the sink's destination took.", |s| s.delivered));
        counters
            .push(counter("daybook.sink.failures", "Delivery attempts that failed (each retried).", |s| s.failures));
    }

    /// Prometheus text exposition of every metric.
    pub fn prometheus_text(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Calls of the ingest service (the calls that append to the journal) this server
    /// has received and not yet answered, counted from when a call's headers arrive: calls
    /// read from a connection but not yet started count.
    pub fn ingest_calls(&self) -> usize {
        self.ingest_calls.load(Ordering::Relaxed)
    }

    /// Counts `events` answered events alike (one call's, or a batch's tallied by kind),
    /// of which `new_interactions` began an interaction. Attributes on the stack, the
    /// tenant's copied only when it is a label.
    pub fn count_events(
        &self,
        outcome: &'static str,
        meter: &'static str,
        tenant: &str,
        events: u64,
        new_interactions: u64,
    ) {
        let meter = KeyValue::new("daybook.meter", meter);
        let outcome = KeyValue::new("daybook.outcome", outcome);
        if self.tenant_label {
            let tenant = KeyValue::new("daybook.tenant", tenant.to_string());
            self.events.add(events, &[meter.clone(), outcome, tenant.clone()]);
            if new_interactions > 0 {
                self.interactions.add(new_interactions, &[meter, tenant]);
            }
        } else {
            self.events.add(events, &[meter.clone(), outcome]);
            if new_interactions > 0 {
                self.interactions.add(new_interactions, &[meter]);
            }
        }
    }

    /// Counts one refused event by its reason (the ErrorInfo reason of its status) and
    /// rule (`T-6`, `T-2`, ...): both bounded sets.
    pub fn count_refused(&self, reason: &'static str, rule: &'static str) {
        self.refused.add(1, &[KeyValue::new("daybook.refusal.reason", reason), KeyValue::new("daybook.rule", rule)]);
    }

    pub fn journal_flushed(&self, took: Duration, fsync: bool) {
        let h = if fsync { &self.journal_fsync } else { &self.journal_write };
        h.record(took.as_secs_f64(), &[]);
    }

    /// A call to the shared store (Redis mode).
    pub fn redis_call(&self, operation: &'static str, outcome: &'static str, took: Duration) {
        self.redis_call.record(
            took.as_secs_f64(),
            &[KeyValue::new("daybook.redis.operation", operation), KeyValue::new("daybook.redis.outcome", outcome)],
        );
    }

    /// A snapshot was written after holding every ordering stripe for `pause`.
    pub fn snapshot_written(&self, pause: Duration) {
        self.maintenance_pause.record(pause.as_secs_f64(), &[KeyValue::new("daybook.task", "snapshot")]);
        self.snapshots.add(1, &[]);
    }

    /// Periods were closed, `entries` pruned, with every ordering stripe held for `pause`.
    pub fn pruned(&self, pause: Duration, entries: u64) {
        self.maintenance_pause.record(pause.as_secs_f64(), &[KeyValue::new("daybook.task", "prune")]);
        self.pruned.add(entries, &[]);
    }

    pub fn count_evicted(&self, entries: u64) {
        self.evicted.add(entries, &[]);
    }

    /// Pushes what is buffered to the collector and stops the exporters.
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.traces {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
        let _ = self.meters.force_flush();
        let _ = self.meters.shutdown();
    }

    /// The `rpc.method` value of a request path: the method, or `_OTHER` for one this
    /// server does not serve (the path is the caller's choice, the label set is not).
    fn method_of(&self, path: &str) -> StringValue {
        self.methods.get(path).cloned().unwrap_or(StringValue::from("_OTHER"))
    }
}

/// What the gauges read from the server's state at collection time; the state owner
/// implements it, so telemetry knows nothing of how the state is kept.
pub trait ObservedState: Send + Sync {
    fn hot_interactions(&self) -> usize;
    fn remembered_events(&self) -> usize;
    fn ingest_calls_in_flight(&self) -> usize;
    fn journal_durable(&self) -> u64;
    /// Bytes the data directory holds: journal segments and the snapshot.
    fn disk_bytes(&self) -> u64;
    fn ready(&self) -> bool;
    /// Under a shared store: (events pending for it, degraded); `None` without one.
    fn shared_status(&self) -> Option<(usize, bool)>;
    /// How far each record sink is.
    fn sinks(&self) -> Vec<super::sinks::board::SinkReport>;
    /// Every tenant's usage on the books: (tenant, meter name, totals).
    fn usage_by_tenant(&self) -> Vec<(Arc<str>, &'static str, crate::rating::ledger::Totals)>;
}

fn usage_by_label(
    usage: Vec<(Arc<str>, &'static str, crate::rating::ledger::Totals)>,
    tenant_label: bool,
) -> Vec<(Vec<KeyValue>, crate::rating::ledger::Totals)> {
    let mut by_meter: std::collections::BTreeMap<&'static str, crate::rating::ledger::Totals> = Default::default();
    let mut out = Vec::new();
    for (id, meter, totals) in usage {
        if tenant_label {
            let attributes =
                vec![KeyValue::new("daybook.meter", meter), KeyValue::new("daybook.tenant", id.to_string())];
            out.push((attributes, totals));
        } else {
            by_meter.entry(meter).or_default().add(&totals);
        }
    }
    out.extend(by_meter.into_iter().map(|(meter, totals)| (vec![KeyValue::new("daybook.meter", meter)], totals)));
    out
}

/// The fully qualified method names of the given encoded file descriptor sets.
pub fn served_methods(descriptor_sets: &[&[u8]]) -> HashSet<String> {
    let mut methods = HashSet::new();
    for set in descriptor_sets {
        if let Ok(pool) = prost_reflect::DescriptorPool::decode(*set) {
            for service in pool.services() {
                for method in service.methods() {
                    methods.insert(format!("{}/{}", service.full_name(), method.name()));
                }
            }
        }
    }
    methods
}

/// gRPC status names, by code (`rpc.response.status_code`).
const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn status_name(code: Option<&http::HeaderValue>) -> Option<&'static str> {
    let code: usize = code?.to_str().ok()?.parse().ok()?;
    Some(STATUS_NAMES.get(code).copied().unwrap_or("UNKNOWN"))
}

/// Codes that mean the server failed (the semantic conventions' list for gRPC servers);
/// the others are the caller's doing and leave the span's status unset.
fn is_server_error(name: &str) -> bool {
    matches!(name, "UNKNOWN" | "DEADLINE_EXCEEDED" | "UNIMPLEMENTED" | "INTERNAL" | "UNAVAILABLE" | "DATA_LOSS")
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The request path prefix of the ingest service's methods.
const INGEST_PATH: &str = "/daybook.v1.IngestService/";

/// A tower layer for the gRPC server: every call is timed into `rpc.server.call.duration`
/// and, when tracing is on, gets a SERVER span. A call ends when its response body ends
/// (so streams are measured whole) or is dropped by a departing client (`CANCELLED`).
#[derive(Clone)]
pub struct GrpcLayer(pub Arc<Telemetry>);

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry { inner, telemetry: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
    telemetry: Arc<Telemetry>,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcTelemetry<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Body<Data = Bytes> + Unpin,
{
    type Response = http::Response<TimedBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let telemetry = self.telemetry.clone();
        let ingest = request.uri().path().starts_with(INGEST_PATH);
        if ingest {
            telemetry.ingest_calls.fetch_add(1, Ordering::Relaxed);
        }
        let method = telemetry.method_of(request.uri().path());
        let span = telemetry.traces.as_ref().map(|(_, tracer)| {
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
            let span = tracer
                .span_builder(method.to_string())
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("rpc.system.name", "grpc"),
                    KeyValue::new("rpc.method", method.clone()),
                ])
                .start_with_context(tracer, &parent);
            // Handlers may start child spans from it.
            let context = parent.with_remote_span_context(opentelemetry::trace::Span::span_context(&span).clone());
            request.extensions_mut().insert(context);
            span
        });
        let call = self.inner.call(request);
        // Made before the response is awaited: a call dropped before it is answered still
        // ends once (as CANCELLED), and leaves the active calls.
        let end = CallEnd { telemetry, method, started, span, ingest, done: false };
        Box::pin(async move {
            let response = call.await?;
            // A trailers-only response (every error of a unary call) carries its status
            // in the headers; otherwise it comes in the trailers.
            let early = status_name(response.headers().get("grpc-status"));
            let mut call = end;
            if let Some(name) = early {
                call.finish(name);
            }
            Ok(response.map(|body| TimedBody { body, call, rest: Bytes::new() }))
        })
    }
}

/// One call, finished once.
struct CallEnd {
    telemetry: Arc<Telemetry>,
    method: StringValue,
    started: Instant,
    span: Option<opentelemetry_sdk::trace::Span>,
    /// Counted in [`Telemetry::ingest_calls`].
    ingest: bool,
    done: bool,
}

impl CallEnd {
    fn finish(&mut self, status: &'static str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if self.ingest {
            self.telemetry.ingest_calls.fetch_sub(1, Ordering::Relaxed);
        }
        // On the stack: this runs once per call.
        let attributes = [
            KeyValue::new("rpc.system.name", "grpc"),
            KeyValue::new("rpc.method", self.method.clone()),
            KeyValue::new("rpc.response.status_code", status),
            // The semantic conventions' error.type: a failed call's status code.
            KeyValue::new("error.type", status),
        ];
        let recorded = if status == "OK" { &attributes[..3] } else { &attributes[..] };
        self.telemetry.rpc_duration.record(self.started.elapsed().as_secs_f64(), recorded);
        if let Some(mut span) = self.span.take() {
            span.set_attribute(KeyValue::new("rpc.response.status_code", status));
            if is_server_error(status) {
                span.set_status(SpanStatus::error(status));
            }
            span.end();
        }
    }
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        // The body went away before it ended: the client left.
        self.finish("CANCELLED");
    }
}

/// h2 copies a DATA frame shorter than this into its write buffer; a longer one is sent
/// from its own memory, and must be written before any frame after it can be buffered.
const H2_CHAIN_THRESHOLD: usize = 256;
/// Answers up to this size are handed to h2 in pieces under its threshold.
const PIECES_UP_TO: usize = 2048;

/// A response body that finishes its call when it ends, and hands h2 a small answer in
/// pieces it copies: an answer of more than 256 bytes (a first touch's, with its
/// interaction and lines) was otherwise written on its own, its trailers in a second
/// write system call (issue 19: 2.23 writes per call at c=1 with 23% first touches,
/// against the floor's 1.00). Larger bodies (batches' answers) go whole.
pub struct TimedBody<R> {
    body: R,
    call: CallEnd,
    /// What is left of a data frame being handed over in pieces.
    rest: Bytes,
}

impl<R> TimedBody<R> {
    fn next_piece(&mut self) -> Frame<Bytes> {
        let take = self.rest.len().min(H2_CHAIN_THRESHOLD - 1);
        Frame::data(self.rest.split_to(take))
    }
}

impl<R: Body<Data = Bytes> + Unpin> Body for TimedBody<R> {
    type Data = Bytes;
    type Error = R::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, R::Error>>> {
        let this = &mut *self;
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(this.next_piece())));
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        let frame = match frame {
            Poll::Ready(Some(Ok(f)))
                if f.data_ref().is_some_and(|d| (H2_CHAIN_THRESHOLD..=PIECES_UP_TO).contains(&d.len())) =>
            {
                this.rest = f.into_data().unwrap_or_default();
                Poll::Ready(Some(Ok(this.next_piece())))
            }
            other => other,
        };
        match &frame {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(trailers) = f.trailers_ref() {
                    this.call.finish(status_name(trailers.get("grpc-status")).unwrap_or("OK"));
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish("INTERNAL"),
            Poll::Ready(None) => this.call.finish("OK"),
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}
