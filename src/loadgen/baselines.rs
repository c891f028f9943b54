//! What daybook is measured against: the empty handler of the same service (the floor),
//! the naive Redis design (one `SET NX` round trip per message), a proxy that delays
//! Redis like a network would, and a `redis-server` of the bench's own.

use std::time::Duration;

use tokio_stream::StreamExt;

use tonic::{Request, Response, Status};

use crate::api::pb;

/// The floor: the same service, answering every call at once with an empty outcome. The
/// batch stream answers one outcome per event, so response sizes are comparable.
#[derive(Clone, Default)]
pub struct EmptyIngest;

#[tonic::async_trait]
impl pb::ingest_service_server::IngestService for EmptyIngest {
    async fn ingest_message(
        &self,
        _: Request<pb::IngestMessageRequest>,
    ) -> Result<Response<pb::IngestMessageResponse>, Status> {
        Ok(Response::new(pb::IngestMessageResponse::default()))
    }

    async fn ingest_conversation_opened(
        &self,
        _: Request<pb::IngestConversationOpenedRequest>,
    ) -> Result<Response<pb::IngestConversationOpenedResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn ingest_cobrowse(
        &self,
        _: Request<pb::IngestCobrowseRequest>,
    ) -> Result<Response<pb::IngestCobrowseResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn ingest_function_invocations(
        &self,
        _: Request<pb::IngestFunctionInvocationsRequest>,
    ) -> Result<Response<pb::IngestFunctionInvocationsResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn ingest_outcome(
        &self,
        _: Request<pb::IngestOutcomeRequest>,
    ) -> Result<Response<pb::IngestOutcomeResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn ingest_void(&self, _: Request<pb::IngestVoidRequest>) -> Result<Response<pb::IngestVoidResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    type IngestBatchStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::IngestBatchResponse, Status>> + Send>>;

    async fn ingest_batch(
        &self,
        request: Request<tonic::Streaming<pb::IngestBatchRequest>>,
    ) -> Result<Response<Self::IngestBatchStream>, Status> {
        let stream = request.into_inner().map(|batch| {
            batch.map(|b| pb::IngestBatchResponse {
                outcomes: b.events.iter().map(|_| pb::EventOutcome::default()).collect(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The naive design issue 4's benchmark compares Redis mode with: every message is one
/// `SET NX` round trip to Redis on its (tenant, consumer, UTC day), and the answer is
/// whether it set it. No near cache, no idempotency, no records: a floor for "Redis on
/// every message", not a meter.
#[derive(Clone)]
pub struct NaiveIngest {
    redis: redis::aio::ConnectionManager,
}

impl NaiveIngest {
    pub async fn connect(url: &str) -> anyhow::Result<NaiveIngest> {
        let client = redis::Client::open(url)?;
        Ok(NaiveIngest { redis: redis::aio::ConnectionManager::new(client).await? })
    }
}

#[tonic::async_trait]
impl pb::ingest_service_server::IngestService for NaiveIngest {
    async fn ingest_message(
        &self,
        request: Request<pb::IngestMessageRequest>,
    ) -> Result<Response<pb::IngestMessageResponse>, Status> {
        let r = request.into_inner();
        let consumer = r.message.map(|m| m.consumer_id).unwrap_or_default();
        let day = r.event_time.get(..10).unwrap_or_default();
        let key = format!("naive:{}:{consumer}:{day}", r.tenant_id);
        let mut redis = self.redis.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(172_800)
            .query_async(&mut redis)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let disposition = if set.is_some() { pb::Disposition::NewInteraction } else { pb::Disposition::AlreadyCounted };
        Ok(Response::new(pb::IngestMessageResponse {
            outcome: Some(pb::EventOutcome { disposition: disposition as i32, ..Default::default() }),
        }))
    }

    async fn ingest_conversation_opened(
        &self,
        _: Request<pb::IngestConversationOpenedRequest>,
    ) -> Result<Response<pb::IngestConversationOpenedResponse>, Status> {
        Err(Status::unimplemented("the naive design meters messages only"))
    }

    async fn ingest_cobrowse(
        &self,
        _: Request<pb::IngestCobrowseRequest>,
    ) -> Result<Response<pb::IngestCobrowseResponse>, Status> {
        Err(Status::unimplemented("the naive design meters messages only"))
    }

    async fn ingest_function_invocations(
        &self,
        _: Request<pb::IngestFunctionInvocationsRequest>,
    ) -> Result<Response<pb::IngestFunctionInvocationsResponse>, Status> {
        Err(Status::unimplemented("the naive design meters messages only"))
    }

    async fn ingest_outcome(
        &self,
        _: Request<pb::IngestOutcomeRequest>,
    ) -> Result<Response<pb::IngestOutcomeResponse>, Status> {
        Err(Status::unimplemented("the naive design meters messages only"))
    }

    async fn ingest_void(&self, _: Request<pb::IngestVoidRequest>) -> Result<Response<pb::IngestVoidResponse>, Status> {
        Err(Status::unimplemented("the naive design meters messages only"))
    }

    type IngestBatchStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::IngestBatchResponse, Status>> + Send>>;

    async fn ingest_batch(
        &self,
        _: Request<tonic::Streaming<pb::IngestBatchRequest>>,
    ) -> Result<Response<Self::IngestBatchStream>, Status> {
        Err(Status::unimplemented("the naive design meters unary messages only"))
    }
}

/// Serves the naive design on `listener` until the process ends.
pub async fn serve_naive(listener: tokio::net::TcpListener, redis_url: &str) -> anyhow::Result<()> {
    let naive = NaiveIngest::connect(redis_url).await?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder()
        .add_service(pb::ingest_service_server::IngestServiceServer::new(naive))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// A TCP proxy that delays every chunk by `one_way` in each direction without
/// serializing them (each is delivered at its own arrival time plus the delay, so
/// pipelined traffic keeps its throughput): Redis as if it were across a network, for
/// `daybook bench --redis-rtt`. Runs until the process ends; returns its address.
pub async fn delaying_proxy(upstream: std::net::SocketAddr, one_way: Duration) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(delay_copy(client_read, server_write, one_way));
            tokio::spawn(delay_copy(server_read, client_write, one_way));
        }
    });
    Ok(addr)
}

async fn delay_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Serves the floor on `listener` until the process ends.
pub async fn serve_floor(listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder()
        .add_service(pb::ingest_service_server::IngestServiceServer::new(EmptyIngest))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// A `redis-server` the bench starts for itself: on a free loopback port, persisting as
/// daybook's documentation asks of a production Redis (append-only file, fsync every
/// second), removed afterwards.
pub struct BenchRedis {
    process: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
    pub url: String,
}

impl BenchRedis {
    pub fn start() -> anyhow::Result<BenchRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("daybook-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let process = BenchRedis::spawn(port, &dir)?;
        Ok(BenchRedis { process, dir, port, url: format!("redis://127.0.0.1:{port}/") })
    }

    fn spawn(port: u16, dir: &std::path::Path) -> anyhow::Result<std::process::Child> {
        let process = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("redis-server (install it, e.g. apt-get install redis-server): {e}"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(process)
    }

    /// Freezes it (SIGSTOP): its connections stay open and nothing answers, as in a
    /// network partition.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill").args([signal, &self.process.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill {signal} redis-server: {status}");
        Ok(())
    }

    /// Kills it (SIGKILL): its connections close.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.process.kill()?;
        self.process.wait()?;
        Ok(())
    }

    /// Starts it again on the same port from the same directory (its append-only file).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process = BenchRedis::spawn(self.port, &self.dir)?;
        Ok(())
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        // A frozen process is killed all the same.
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
