//! gRPC reflection answers in both protocol versions (issue 18): `grpc.reflection.v1`
//! for grpcurl and newer tools, `v1alpha` for the older ones, each listing daybook's
//! services and serving their files.

use daybook::server::config::Config;
use tonic_reflection::pb::{v1, v1alpha};

use super::server::Harness;

const SERVICES: [&str; 4] =
    ["daybook.v1.IngestService", "daybook.v1.UsageService", "daybook.v1.RecordService", "daybook.v1.TenantService"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_v1_and_v1alpha() {
    let dir = tempfile::tempdir().unwrap();
    let server = Harness::start(dir.path(), "2025-06-20T12:00:00Z", Config::default()).await;
    let channel = server.tcp_channel().await;

    let mut newer = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let ask = |request| {
        tokio_stream::iter(vec![v1::ServerReflectionRequest { host: String::new(), message_request: Some(request) }])
    };
    let mut answers = newer
        .server_reflection_info(ask(v1::server_reflection_request::MessageRequest::ListServices(String::new())))
        .await
        .unwrap()
        .into_inner();
    let listed = match answers.message().await.unwrap().unwrap().message_response.unwrap() {
        v1::server_reflection_response::MessageResponse::ListServicesResponse(l) => l.service,
        other => panic!("{other:?}"),
    };
    let names: Vec<String> = listed.into_iter().map(|s| s.name).collect();
    for service in SERVICES {
        assert!(names.iter().any(|n| n == service), "v1 lists {service}: {names:?}");
    }

    let mut older = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "daybook.v1.IngestService".into(),
        )),
    };
    let mut answers = older.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    match answers.message().await.unwrap().unwrap().message_response.unwrap() {
        v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files) => {
            assert!(!files.file_descriptor_proto.is_empty());
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}
