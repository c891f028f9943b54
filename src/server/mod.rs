//! `daybook serve`: the sidecar. The library entry point is [`run`]; `main` only parses
//! flags and builds a [`config::Config`]. Tests call `run` with their own listeners and a
//! shutdown future, and never send signals.

pub mod admin;
pub mod auth;
mod by_origin;
pub mod config;
pub mod core;
mod detail;
mod direct_file;
pub mod journal;
pub mod lock;
mod observed;
pub(crate) mod process;
pub mod records;
pub mod recovery;
pub mod service;
pub mod shared;
pub mod sinks;
mod standing;
pub mod store;
pub mod telemetry;
pub mod tls;
mod usage_page;

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tonic::transport::Server;

use crate::api::{FILE_DESCRIPTOR_SET, pb};

/// The gRPC health service, as served on the API listeners and the probe listener.
type HealthService = HealthServer<tonic_health::server::HealthService>;
/// The API's router, every layer in place.
type GrpcRouter = tonic::transport::server::Router<
    tower::layer::util::Stack<
        tower::util::MapResponseLayer<fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>>,
        tower::layer::util::Stack<telemetry::GrpcLayer, tower::layer::util::Identity>,
    >,
>;
use config::Config;
use core::{Clock, Daybook};
use tonic_health::pb::health_server::HealthServer;

/// The sockets the server answers on, bound by the caller (so tests can use port 0).
pub struct Listeners {
    pub grpc_tcp: Option<TcpListener>,
    pub grpc_uds: Option<UnixListener>,
    /// gRPC health only (`grpc.health.v1`), for kubelet probes: they reach the pod's IP,
    /// while a sidecar's API stays on its Unix socket.
    pub grpc_health: Option<TcpListener>,
    pub admin: Option<TcpListener>,
    /// The data directory, taken before anything is bound ([`Listeners::bind`]); `run`
    /// takes it itself when it is `None`.
    pub data_dir_lock: Option<lock::DataDirLock>,
}

/// An address that could not be bound, with the setting that chose it.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} (set by `{key}`: --{flag}, {env} or `{key}` in [server]): {source}")]
pub struct BindError {
    pub address: String,
    pub key: &'static str,
    pub flag: &'static str,
    pub env: String,
    #[source]
    pub source: std::io::Error,
}

impl BindError {
    fn of(key: &'static str, address: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BindError {
        let setting = config::KEYS.iter().find(|k| k.name == key);
        let flag = setting.and_then(|k| k.long()).unwrap_or(key);
        let env = setting.map(|k| k.env()).unwrap_or_default();
        let address = address.to_string();
        move |source| BindError { address, key, flag, env, source }
    }
}

impl Listeners {
    /// Takes the data directory (one process per directory: [`lock::DataDirInUse`]),
    /// then binds every configured address ([`BindError`] names the setting of one that
    /// fails). The directory comes first: a second server must not take over the first
    /// one's Unix socket.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let data_dir_lock = Some(lock::DataDirLock::acquire(&config.data_dir)?);
        let grpc_tcp = match config.listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(BindError::of("listen", addr))?),
            None => None,
        };
        let grpc_uds = match &config.uds {
            Some(path) => Some(bind_uds(path, config.uds_mode).map_err(BindError::of("uds", path.display()))?),
            None => None,
        };
        let grpc_health = match config.health_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(BindError::of("health_listen", addr))?),
            None => None,
        };
        let admin = match config.admin {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(BindError::of("admin", addr))?),
            None => None,
        };
        Ok(Listeners { grpc_tcp, grpc_uds, grpc_health, admin, data_dir_lock })
    }
}

/// Binds the Unix socket with permissions `mode` (owner-only by default; `0o660` lets a
/// container of the same pod group connect).
pub fn bind_uds(path: &std::path::Path, mode: u32) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Runs the server until `shutdown` completes, then drains: health and readiness go
/// NOT_SERVING, listeners stop accepting, in-flight calls finish within the grace period,
/// and the journal is flushed.
pub async fn run(
    config: Config,
    listeners: Listeners,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let methods = telemetry::served_methods(&[
        FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]);
    let _data_dir_lock = match listeners.data_dir_lock {
        Some(held) => held,
        None => lock::DataDirLock::acquire(&config.data_dir)?,
    };
    let telemetry = telemetry::Telemetry::new(&config.telemetry, methods)?;
    let (auth, tls) = load_credentials(&config)?;
    let posture = security_posture(&config, &auth, tls.as_deref());
    if posture.contains("INSECURE") {
        tracing::warn!("{}", posture.lines().next().unwrap_or_default());
    }
    let daybook = open_state(&config, clock, telemetry.clone()).await?;

    let health_reporter = tonic_health::server::HealthReporter::new();
    let health_service =
        HealthServer::new(tonic_health::server::HealthService::from_health_reporter(health_reporter.clone()));
    let service_names = [
        "",
        "daybook.v1.IngestService",
        "daybook.v1.UsageService",
        "daybook.v1.RecordService",
        "daybook.v1.TenantService",
    ];
    for name in service_names {
        health_reporter.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
    }
    // Liveness is the process, not the service: SERVING for as long as it answers, through
    // replay, a journal that failed and the drain, so that a kubelet restarts only a
    // process that no longer answers (readiness, the "" service, follows the service).
    health_reporter.set_service_status(LIVENESS, tonic_health::ServingStatus::Serving).await;
    let router = router(&config, &daybook, &auth, &telemetry, health_service.clone())?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = serve_listeners(
        listeners.grpc_tcp,
        listeners.grpc_uds,
        listeners.grpc_health,
        router,
        tls.clone(),
        health_service,
        &stop_rx,
    );
    let admin = listeners.admin.map(|listener| {
        let admin = admin::Admin {
            daybook: daybook.clone(),
            posture: posture.clone(),
            auth: auth.clone(),
            store: store::for_daybook(&daybook),
        };
        tokio::spawn(admin::serve(listener, admin, stop_rx.clone()))
    });
    let auth_watcher = auth.enabled().then(|| tokio::spawn(auth::watch(auth.clone())));
    let tls_watcher = tls.clone().map(|tls| tokio::spawn(tls::watch(tls)));
    let sinks: Vec<_> = config
        .records_jsonl
        .clone()
        .map(sinks::SinkSpec::jsonl)
        .into_iter()
        .chain(config.sinks.iter().cloned())
        .map(|spec| sinks::start(&daybook, spec))
        .collect();
    let announcer = (daybook.is_shared() && config.sinks.iter().any(|s| s.destination.kind() == "webhook"))
        .then(|| tokio::spawn(announce_degraded(daybook.clone())));
    let watcher = config.config_file.clone().map(|path| tokio::spawn(watch_config_file(daybook.clone(), path)));
    let maintenance = tokio::spawn(maintain(daybook.clone(), config.clone()));
    let reconciler = daybook.is_shared().then(|| tokio::spawn(shared::reconciler(daybook.clone())));
    let evictor = daybook.budget().map(|_| tokio::spawn(evict(daybook.clone())));

    daybook.mark_ready();
    for name in service_names {
        health_reporter.set_service_status(name, tonic_health::ServingStatus::Serving).await;
    }
    let readiness = tokio::spawn(follow_readiness(daybook.clone(), health_reporter.clone(), service_names));

    shutdown.await;
    readiness.abort();
    daybook.begin_drain();
    for name in service_names {
        health_reporter.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
    }
    let _ = stop_tx.send(true);
    drain(&config, tasks).await;
    maintenance.abort();
    for task in [evictor, watcher, admin, auth_watcher, tls_watcher, announcer].into_iter().flatten() {
        task.abort();
    }
    if let Some(reconciler) = reconciler {
        // It ends on the drain signal after one last round (bounded by the store's deadline).
        let _ = tokio::time::timeout(Duration::from_secs(5), reconciler).await;
    }
    close_journal(&config, &daybook).await;
    // What the last calls emitted leaves before the process does, if the destinations
    // take it soon; what they do not is delivered after the next start.
    sinks::settle(&daybook, Duration::from_secs(2)).await;
    for sink in sinks {
        sink.abort();
    }
    // The exporters' last push runs on threads of their own; the runtime stays up for it.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(())
}

/// Waits for in-flight calls to finish within the grace period, then cuts the rest.
async fn drain(config: &Config, mut tasks: tokio::task::JoinSet<Result<(), tonic::transport::Error>>) {
    let drained = tokio::time::timeout(config.grace_period, async {
        while let Some(result) = tasks.join_next().await {
            if let Ok(Err(e)) = result {
                tracing::error!("listener ended with an error: {e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::error!("grace period of {:?} ran out; in-flight calls were cut", config.grace_period);
        tasks.abort_all();
    }
}

/// Closes the journal and writes the snapshot the next start loads (it then replays only
/// what comes after it).
async fn close_journal(config: &Config, daybook: &Arc<Daybook>) {
    // A snapshot being written finishes (its lock is taken again below).
    daybook.journal().close().await;
    let dir = config.data_dir.clone();
    let writer = daybook.clone();
    match tokio::task::spawn_blocking(move || writer.write_snapshot(&dir)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!("snapshot not written ({e}); the next start replays the whole journal"),
        Err(e) => tracing::error!("snapshot not written ({e}); the next start replays the whole journal"),
    }
}

/// Opens the state owner: connects the shared store (Redis mode), loads the snapshot
/// and replays the journal, and, under a shared store, reads its tenants and warms the
/// near cache.
async fn open_state(
    config: &Config,
    clock: Clock,
    telemetry: Arc<telemetry::Telemetry>,
) -> anyhow::Result<Arc<Daybook>> {
    let shared = match &config.redis {
        Some(redis) => {
            let (store, fingerprint_key) = connect_shared_store(redis, config).await?;
            Some(core::SharedStore { store, fingerprint_key, tenant_log: config.redis_tenant_log })
        }
        None => None,
    };
    let daybook = tokio::task::spawn_blocking({
        let config = config.clone();
        let telemetry = telemetry.clone();
        move || {
            Daybook::open_shared(
                &config.data_dir,
                journal::JournalOptions { durability: config.durability, segment_bytes: config.journal_segment_bytes },
                config.tenants.clone(),
                clock,
                telemetry,
                shared,
                config.memory_ceiling,
            )
        }
    })
    .await??;
    telemetry.observe(&daybook);
    if daybook.is_shared()
        && let Err(e) = daybook.poll_tenants().await
    {
        tracing::warn!("tenants of the shared store not read at start ({e}); read on the next round");
    }
    if daybook.is_shared() {
        match daybook.warm_from_store().await {
            Ok(n) => tracing::info!("loaded {n} shared entries of the current periods from redis"),
            Err(e) => tracing::warn!("near cache not warmed ({e}); it fills as events arrive"),
        }
    }

    Ok(daybook)
}

/// The gRPC router: every service behind the deadline ceiling and the telemetry layer,
/// and every one but health behind authentication (health stays open for the kubelet).
fn router(
    config: &Config,
    daybook: &Arc<Daybook>,
    auth: &Arc<auth::Auth>,
    telemetry: &Arc<telemetry::Telemetry>,
    health_service: HealthService,
) -> anyhow::Result<GrpcRouter> {
    // Reflection in both versions: grpcurl and newer tools ask v1, older ones v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);

    // The one place the mode is chosen: everything the services do goes through it.
    let store = store::for_daybook(daybook);
    let services =
        service::Services { daybook: daybook.clone(), store, max_batch: config.max_batch, auth: auth.clone() };
    let max = config.max_message_bytes;
    // Every service but health authenticates its caller first (health stays open for the
    // kubelet's probes).
    let authenticate = || auth::Authenticate(auth.clone());
    use tonic::service::interceptor::InterceptedService;
    Ok(Server::builder()
        .timeout(config.deadline_ceiling)
        .layer(telemetry::GrpcLayer(telemetry.clone()))
        .layer(tower::util::MapResponseLayer::new(
            oversized_is_resource_exhausted::<tonic::body::Body>
                as fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>,
        ))
        .add_service(health_service.clone())
        .add_service(InterceptedService::new(reflection, authenticate()))
        .add_service(InterceptedService::new(reflection_v1alpha, authenticate()))
        .add_service(InterceptedService::new(
            pb::ingest_service_server::IngestServiceServer::new(services.clone()).max_decoding_message_size(max),
            authenticate(),
        ))
        .add_service(InterceptedService::new(
            pb::usage_service_server::UsageServiceServer::new(services.clone()).max_decoding_message_size(max),
            authenticate(),
        ))
        .add_service(InterceptedService::new(
            pb::record_service_server::RecordServiceServer::new(services.clone()).max_decoding_message_size(max),
            authenticate(),
        ))
        .add_service(InterceptedService::new(
            pb::tenant_service_server::TenantServiceServer::new(services).max_decoding_message_size(max),
            authenticate(),
        )))
}

/// The `grpc.health.v1` service name a liveness probe asks for.
pub const LIVENESS: &str = "liveness";

/// The credentials file, the TLS files (the server's and Redis's) and the sinks' token,
/// secret and CA files, loaded and checked. `run` reads them before
/// anything else (a file that does not load stops start-up with its error, rather than
/// serving without it), and `serve --check-config` reads them the same way.
pub fn load_credentials(config: &Config) -> anyhow::Result<(Arc<auth::Auth>, Option<Arc<tls::Tls>>)> {
    let auth = match &config.auth_file {
        Some(path) => auth::Auth::from_file(path.clone()).map_err(|e| anyhow::anyhow!("auth_file: {e}"))?,
        None => auth::Auth::off(),
    };
    let tls = match &config.tls {
        Some(files) => Some(tls::Tls::load(files.clone()).map_err(|e| anyhow::anyhow!("tls: {e}"))?),
        None => None,
    };
    if let Some(redis) = &config.redis {
        redis.tls.check().map_err(|e| anyhow::anyhow!("redis tls: {e}"))?;
    }
    for sink in &config.sinks {
        sinks::check_files(sink).map_err(|e| anyhow::anyhow!("sink `{}`: {e}", sink.name))?;
    }
    Ok((auth, tls))
}

/// A unary request over `max_message_bytes` is answered before its handler runs, with
/// OUT_OF_RANGE in the headers of a trailers-only response; this makes it
/// RESOURCE_EXHAUSTED (`service::oversized_is_resource_exhausted` does it for streams).
fn oversized_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers();
    // Only a trailers-only OUT_OF_RANGE is looked at further: other answers pass untouched.
    let out_of_range = tonic::Code::OutOfRange as i32;
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) != Some(out_of_range) {
        return response;
    }
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
    // grpc-message is percent-encoded: its spaces arrive as %20.
    let message = message.replace("%20", " ");
    if service::is_oversized(out_of_range, &message) {
        let headers = response.headers_mut();
        headers.insert("grpc-status", http::HeaderValue::from(tonic::Code::ResourceExhausted as i32));
        let message = format!("{message} (max_message_bytes)").replace(' ', "%20");
        if let Ok(value) = http::HeaderValue::from_str(&message) {
            headers.insert("grpc-message", value);
        }
    }
    response
}

/// Serves the router on the TCP listener (TLS or plain, with TCP_NODELAY) and the Unix
/// socket, and health alone on the probe listener, each until `stop` turns true.
fn serve_listeners(
    tcp: Option<tokio::net::TcpListener>,
    uds: Option<UnixListener>,
    health_listener: Option<tokio::net::TcpListener>,
    router: GrpcRouter,
    tls: Option<Arc<tls::Tls>>,
    health_service: HealthService,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinSet<Result<(), tonic::transport::Error>> {
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = tcp {
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        match tls {
            Some(tls) => {
                let incoming = tls::incoming(listener, tls, stop_rx.clone());
                tasks.spawn(async move { router.serve_with_incoming_shutdown(incoming, stopped).await });
            }
            None => {
                // Small unary calls: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms.
                let incoming =
                    tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
                        s.inspect(|s| {
                            let _ = s.set_nodelay(true);
                        })
                    });
                tasks.spawn(async move { router.serve_with_incoming_shutdown(incoming, stopped).await });
            }
        }
    }
    if let Some(listener) = uds {
        let router = router.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
    }
    if let Some(listener) = health_listener {
        let health = Server::builder().add_service(health_service.clone());
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            health
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
    }
    tasks
}

/// gRPC health follows readiness (the kubelet's gRPC probes read it): a journal that can
/// no longer be written turns every service NOT_SERVING.
async fn follow_readiness(
    daybook: Arc<Daybook>,
    reporter: tonic_health::server::HealthReporter,
    services: [&'static str; 5],
) {
    let mut serving = true;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ready = daybook.is_ready();
        if ready != serving {
            serving = ready;
            let status =
                if ready { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
            for name in services {
                reporter.set_service_status(name, status).await;
            }
        }
    }
}

/// What `/ready` says of the listener's protection: authentication, TLS, and a loud first
/// line when a TCP listener other hosts can reach takes calls without credentials.
fn security_posture(config: &Config, auth: &auth::Auth, tls: Option<&tls::Tls>) -> Arc<str> {
    let exposed = config.listen.is_some_and(|a| !a.ip().is_loopback());
    let auth_line = match (auth.enabled(), exposed) {
        (true, _) => format!("auth: on ({} credential(s))", auth.credentials().len()),
        (false, true) => format!(
            "auth: off, INSECURE: any client that reaches {} may read and change every tenant (--insecure)",
            config.listen.expect("exposed")
        ),
        (false, false) => "auth: off (loopback and Unix socket only)".into(),
    };
    let tls_line = match tls {
        Some(t) if t.mutual() => "tls: on, client certificates verified",
        Some(_) => "tls: on",
        None if config.listen.is_some() => "tls: off",
        None => "tls: no TCP listener",
    };
    format!("{auth_line}\n{tls_line}\n").into()
}

/// Connects to the shared store at start-up (waiting for it: a replica that cannot reach
/// Redis when it starts does not know the fingerprint key the others use).
async fn connect_shared_store(
    redis: &crate::store::redis::RedisConfig,
    config: &Config,
) -> anyhow::Result<(Arc<crate::store::redis::RedisStore>, [u8; 16])> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut waited = false;
    loop {
        let attempt = async {
            let store = crate::store::redis::RedisStore::connect(redis.clone()).await?;
            let local = recovery::local_fingerprint_key(&config.data_dir)
                .map_err(|e| crate::store::redis::StoreError::Unexpected(e.to_string()))?;
            let key = store.fingerprint_key(local).await?;
            Ok::<_, crate::store::redis::StoreError>((store, key))
        };
        match attempt.await {
            Ok(connected) => return Ok(connected),
            Err(e) => {
                // A replica that has metered with this store before knows its fingerprint
                // key: it starts at once, in degraded mode, and its journal's pending
                // events wait for Redis. A new one cannot know the key: it waits.
                if let Some(key) = recovery::store_fingerprint_key(&config.data_dir)
                    && let Ok(store) = crate::store::redis::RedisStore::connect_later(redis.clone()).await
                {
                    tracing::warn!("redis at {} unreachable ({e}); starting in degraded mode", redis.shown_url());
                    return Ok((store, key));
                }
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!("redis at {} unreachable for 30 s: {e}", redis.shown_url());
                }
                if !waited {
                    tracing::warn!("waiting for redis at {}: {e}", redis.shown_url());
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Tells webhooks when this replica enters Redis degraded mode and when it leaves it
/// (checked every second).
async fn announce_degraded(daybook: Arc<Daybook>) {
    let mut was = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some((pending, degraded)) = daybook.shared_status() else { return };
        if degraded == was {
            continue;
        }
        was = degraded;
        let kind = if degraded { "redis_degraded" } else { "redis_recovered" };
        let data = serde_json::json!({ "pending": pending });
        daybook.sinks().announce(sinks::OperationalEvent::new(kind, chrono::Utc::now(), data));
    }
}

/// Background upkeep, off the request path: closes periods past the lateness horizon
/// (pruning their state) and writes snapshots, after `snapshot_entries` journal entries
/// or `snapshot_interval`, whichever comes first, so that a restart replays little.
async fn maintain(daybook: Arc<Daybook>, config: Config) {
    let tick = config.snapshot_interval.min(Duration::from_secs(1));
    let mut last_written = tokio::time::Instant::now();
    let mut last_floor = None;
    loop {
        tokio::time::sleep(tick).await;
        let pruner = daybook.clone();
        if let Ok(pruned) = tokio::task::spawn_blocking(move || pruner.close_periods()).await
            && pruned.tenants > 0
        {
            tracing::info!(
                "closed periods of {} tenant(s): pruned {} interactions, {} event ids, {} other entries",
                pruned.tenants,
                pruned.interactions,
                pruned.events,
                pruned.other
            );
        }
        let behind = daybook.journal().appended().saturating_sub(daybook.last_snapshot());
        let due =
            behind >= config.snapshot_entries || (behind > 0 && last_written.elapsed() >= config.snapshot_interval);
        // A sink that catches up lets segments go that the last snapshot already covered.
        let floor = daybook.sinks().floor();
        if !due {
            if floor != last_floor {
                last_floor = floor;
                prune(&daybook, config.record_retention).await;
            }
            continue;
        }
        let writer = daybook.clone();
        let dir = config.data_dir.clone();
        match tokio::task::spawn_blocking(move || writer.write_snapshot(&dir)).await {
            Ok(Ok(_)) => {
                last_written = tokio::time::Instant::now();
                last_floor = floor;
                prune(&daybook, config.record_retention).await;
            }
            Ok(Err(e)) => tracing::error!("periodic snapshot not written: {e}"),
            Err(e) => tracing::error!("periodic snapshot not written: {e}"),
        }
    }
}

/// Deletes the journal segments nothing needs any more (`Daybook::prune_journal`).
async fn prune(daybook: &Arc<Daybook>, retention: Duration) {
    let pruner = daybook.clone();
    match tokio::task::spawn_blocking(move || pruner.prune_journal(retention)).await {
        Ok(Ok(p)) if p.segments > 0 => tracing::info!(
            "deleted {} journal segment(s), {} bytes: the journal now starts at entry {}",
            p.segments,
            p.bytes,
            p.oldest_seq
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!("journal segments not deleted: {e}"),
        Err(e) => tracing::error!("journal segments not deleted: {e}"),
    }
}

/// Holds the near cache under its budget (`memory_ceiling`), checking every 100 ms: at
/// tens of thousands of first touches a second, that overshoots by a few MB at most.
async fn evict(daybook: Arc<Daybook>) {
    let mut round = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let evictor = daybook.clone();
        let Ok((forgotten, next)) = tokio::task::spawn_blocking(move || {
            let forgotten = evictor.evict_to_budget(&mut round);
            (forgotten, round)
        })
        .await
        else {
            continue;
        };
        round = next;
        if forgotten > 0 {
            daybook.telemetry().count_evicted(forgotten as u64);
        }
    }
}

/// Re-reads the config file's tenants when the file changes (polled every 2 s).
async fn watch_config_file(daybook: Arc<Daybook>, path: std::path::PathBuf) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = modified(&path);
        if now == last {
            continue;
        }
        last = now;
        let result = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| crate::tenants::parse_tenants_toml(&text))
            .and_then(|specs| daybook.reload_file_tenants(specs));
        match result {
            Ok(n) => tracing::info!("reloaded {}: {n} tenant(s) changed", path.display()),
            Err(e) => tracing::warn!("{} not reloaded, keeping the running tenants: {e}", path.display()),
        }
    }
}
