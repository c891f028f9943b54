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
