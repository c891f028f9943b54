//! A real HTTP receiver in the test process, for the record sinks and webhooks: it can be
//! down (not listening), failing (5xx), slow (answering after the sender gave up), or
//! well; it keeps every CloudEvent of every request it accepted, with the headers it got.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Well,
    Failing,
    /// Takes the request (keeps its events) but answers only after this long.
    Slow(Duration),
}

/// One accepted request.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    accepted: Mutex<Vec<Delivery>>,
    refused: Mutex<usize>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// A receiver on a free port, down until `up`.
    pub async fn reserve() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        Receiver { addr, shared: Arc::default(), task: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts listening (again) on its port.
    pub async fn up(&mut self, mode: Mode) {
        self.set(mode);
        if self.task.is_some() {
            return;
        }
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let shared = self.shared.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| answer(shared.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }

    /// Stops listening and drops every connection: the sender sees it gone.
    pub fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = Some(mode);
    }

    pub fn accepted(&self) -> Vec<Delivery> {
        self.shared.accepted.lock().unwrap().clone()
    }

    pub fn refused(&self) -> usize {
        *self.shared.refused.lock().unwrap()
    }

    /// Every CloudEvent of every accepted request, in arrival order (batches unrolled).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.accepted()
            .iter()
            .flat_map(|d| match serde_json::from_slice::<serde_json::Value>(&d.body).unwrap() {
                serde_json::Value::Array(events) => events,
                event => vec![event],
            })
            .collect()
    }

    /// Waits until `done` holds of the events (at most a minute).
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[serde_json::Value]) -> bool) {
        for _ in 0..1200 {
            if done(&self.events()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the receiver never had {what}: {} events", self.events().len());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mode = shared.mode.lock().unwrap().unwrap_or(Mode::Well);
    let status = match mode {
        Mode::Failing => {
            *shared.refused.lock().unwrap() += 1;
            StatusCode::SERVICE_UNAVAILABLE
        }
        Mode::Well => {
            shared.accepted.lock().unwrap().push(Delivery {
                path: parts.uri.path().to_string(),
                headers: parts.headers,
                body,
            });
            StatusCode::ACCEPTED
        }
        Mode::Slow(after) => {
            shared.accepted.lock().unwrap().push(Delivery {
                path: parts.uri.path().to_string(),
                headers: parts.headers,
                body,
            });
            tokio::time::sleep(after).await;
            StatusCode::ACCEPTED
        }
    };
    Ok(Response::builder().status(status).body(Full::new(Bytes::new())).unwrap())
}
