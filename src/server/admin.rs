//! The admin HTTP port, apart from the data port: `/live` (the process runs), `/ready`
//! (the journal is replayed, listeners are up, not draining, the journal is writable;
//! under a shared store its body also says whether Redis answers and how many events
//! wait to reach it, and how far behind each record sink is) and `/metrics` (Prometheus
//! text), and `/usage`, a live usage page (`super::usage_page`).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::auth::Auth;
use super::core::Daybook;
use super::store::Store;
use super::usage_page;

/// What the admin port serves from.
#[derive(Clone)]
pub struct Admin {
    pub daybook: Arc<Daybook>,
    /// The listener's protection (authentication, TLS), reported by `/ready`.
    pub posture: Arc<str>,
    /// Who may read the usage page's figures.
    pub auth: Arc<Auth>,
    pub store: Arc<dyn Store>,
}

pub async fn serve(listener: TcpListener, admin: Admin, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(route(&admin, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

async fn route<B>(admin: &Admin, request: Request<B>) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
    }
    let (daybook, posture) = (&*admin.daybook, &*admin.posture);
    match request.uri().path() {
        "/live" => text(StatusCode::OK, "text/plain", "live\n".into()),
        "/usage" => text(StatusCode::OK, "text/html; charset=utf-8", usage_page::PAGE.into()),
        "/usage/app.js" => text(StatusCode::OK, "text/javascript; charset=utf-8", usage_page::SCRIPT.into()),
        "/usage/style.css" => text(StatusCode::OK, "text/css; charset=utf-8", usage_page::STYLE.into()),
        "/usage/data" => {
            let answer = usage_page::data(daybook, &*admin.store, &admin.auth, request.headers()).await;
            let mut response = text(answer.status, "application/json", answer.body);
            response.headers_mut().insert("cache-control", http::HeaderValue::from_static("no-store"));
            response
        }
        "/ready" => {
            let (status, mut body) = if daybook.is_ready() {
                (StatusCode::OK, "ready\n".to_string())
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string())
            };
            // Under a shared store, degraded mode is still ready (decisions go on from the
            // near cache); the details say so, and how much waits for Redis.
            if let Some((pending, degraded)) = daybook.shared_status() {
                let redis = if degraded { "degraded" } else { "ok" };
                body.push_str(&format!("redis: {redis}\npending: {pending}\n"));
            }
            let disk = daybook.disk_usage();
            body.push_str(&format!(
                "disk: {} bytes (journal {} bytes in {} segments from entry {}, snapshot {} bytes)\n",
                disk.total(),
                disk.journal_bytes,
                disk.segments,
                daybook.oldest_seq(),
                disk.snapshot_bytes
            ));
            // A sink behind does not make the process unready (its records wait in the
            // journal); the body says how far behind each is, and why.
            let durable = daybook.journal().durable();
            for sink in daybook.sinks().reports() {
                let behind = durable.saturating_sub(sink.settled);
                body.push_str(&format!(
                    "sink {} ({}): {behind} entries behind, {} records delivered, {} failed attempts",
                    sink.name, sink.kind, sink.delivered, sink.failures
                ));
                match (&sink.last_error, behind) {
                    (Some(e), 1..) => body.push_str(&format!(", last error: {e}\n")),
                    _ => body.push('\n'),
                }
            }
            body.push_str(posture);
            text(status, "text/plain", body)
        }
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4", daybook.telemetry().prometheus_text()),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
