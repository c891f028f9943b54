#![doc = include_str!("../README.md")]

use tonic::transport::{Channel, Endpoint, Uri};

/// daybook's API (`daybook.v1`): the messages and the gRPC clients.
#[allow(clippy::all, clippy::pedantic, missing_docs, reason = "generated code")]
pub mod pb {
    tonic::include_proto!("daybook.v1");
}

use pb::event::Kind;
use pb::ingest_service_client::IngestServiceClient;

/// Dials a daybook: `HOST:PORT`, `http://HOST:PORT`, `https://HOST:PORT`, or a Unix domain
/// socket, `unix:PATH`.
pub async fn connect(addr: &str) -> Result<Channel, tonic::transport::Error> {
    if let Some(path) = addr.strip_prefix("unix:") {
        let path = path.to_string();
        // The URI is required by the API but unused: the connector dials the socket.
        return Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }))
            .await;
    }
    let uri = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri)?.connect().await
}

/// Sends one event through the unary RPC of its kind (an event without a kind goes as a
/// message without one, which daybook refuses by name). Returns its outcome.
pub async fn ingest(
    client: &mut IngestServiceClient<Channel>,
    e: pb::Event,
) -> Result<pb::EventOutcome, tonic::Status> {
    let (tenant_id, event_id, event_time) = (e.tenant_id, e.event_id, e.event_time);
    let outcome = match e.kind {
        Some(Kind::ConversationOpened(o)) => {
            let request =
                pb::IngestConversationOpenedRequest { tenant_id, event_id, event_time, conversation_opened: Some(o) };
            client.ingest_conversation_opened(request).await?.into_inner().outcome
        }
        Some(Kind::Cobrowse(c)) => {
            let request = pb::IngestCobrowseRequest { tenant_id, event_id, event_time, cobrowse: Some(c) };
            client.ingest_cobrowse(request).await?.into_inner().outcome
        }
        Some(Kind::FunctionInvocations(f)) => {
            let request =
                pb::IngestFunctionInvocationsRequest { tenant_id, event_id, event_time, function_invocations: Some(f) };
            client.ingest_function_invocations(request).await?.into_inner().outcome
        }
        Some(Kind::Outcome(o)) => {
            let request = pb::IngestOutcomeRequest { tenant_id, event_id, event_time, outcome: Some(o) };
            client.ingest_outcome(request).await?.into_inner().outcome
        }
        Some(Kind::Void(v)) => {
            let request = pb::IngestVoidRequest { tenant_id, event_id, event_time, void: Some(v) };
            client.ingest_void(request).await?.into_inner().outcome
        }
        Some(Kind::Message(m)) => {
            let request = pb::IngestMessageRequest { tenant_id, event_id, event_time, message: Some(m) };
            client.ingest_message(request).await?.into_inner().outcome
        }
        None => {
            let request = pb::IngestMessageRequest { tenant_id, event_id, event_time, message: None };
            client.ingest_message(request).await?.into_inner().outcome
        }
    };
    Ok(outcome.unwrap_or_default())
}

/// How [`ingest_retrying`] retries an event answered UNAVAILABLE: at most `retries` more
/// attempts, the first after between a half and the whole of `first`, each later one
/// after twice as long (exponential backoff with jitter, so that callers refused together
/// do not come back together). The defaults are the Python client's: 5 retries from
/// 50 ms, about 0.8 to 1.6 s in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    pub retries: u32,
    pub first: std::time::Duration,
}

impl Default for Retries {
    fn default() -> Retries {
        Retries { retries: 5, first: std::time::Duration::from_millis(50) }
    }
}

impl Retries {
    /// The wait before retry `attempt` (0 for the first).
    pub fn pause(&self, attempt: u32) -> std::time::Duration {
        let full = self.first.saturating_mul(1 << attempt.min(20));
        // A random fraction in [0, 1) without a dependency: std's hasher keys are random.
        let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), attempt);
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        full / 2 + full.mul_f64(fraction / 2.0)
    }
}

/// [`ingest`], sent again with the same event id while daybook answers UNAVAILABLE
/// (daybook, or the shared store a tenant's events are ordered by, did not answer in
/// time). A retry is the same event, never a second one (T-2), and is answered with the
/// outcome the event got. Any other answer, or the last attempt's, is returned.
pub async fn ingest_retrying(
    client: &mut IngestServiceClient<Channel>,
    e: pb::Event,
    retries: Retries,
) -> Result<pb::EventOutcome, tonic::Status> {
    let mut attempt = 0;
    loop {
        match ingest(client, e.clone()).await {
            Err(status) if status.code() == tonic::Code::Unavailable && attempt < retries.retries => {
                tokio::time::sleep(retries.pause(attempt)).await;
                attempt += 1;
            }
            answer => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pause_is_between_half_and_all_of_a_doubling_delay() {
        let retries = Retries::default();
        for attempt in 0..5 {
            let full = retries.first * (1 << attempt);
            for _ in 0..100 {
                let pause = retries.pause(attempt);
                assert!(pause >= full / 2 && pause < full, "attempt {attempt}: {pause:?} of {full:?}");
            }
        }
        // Jittered: a hundred pauses of one attempt are not all alike.
        let pauses: std::collections::HashSet<_> = (0..100).map(|_| retries.pause(3)).collect();
        assert!(pauses.len() > 50, "{pauses:?}");
    }
}
