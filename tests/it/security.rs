//! Issue 7 over real gRPC: credentials and tenant scopes on every RPC, over plain TCP,
//! TLS, and mutual TLS with certificates generated here (rcgen); certificates and
//! credentials rotated while the server runs; audit records of tenant changes.

use std::path::Path;
use std::time::Duration;

use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;
use daybook::api::pb::record_service_client::RecordServiceClient;
use daybook::api::pb::tenant_service_client::TenantServiceClient;
use daybook::api::pb::usage_service_client::UsageServiceClient;
use daybook::server::auth::{hex, sha256};
use daybook::server::config::Config;
use daybook::server::tls::{ClientAuth, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::server::{Harness, get_tenant, http_get, message, tenant};

const NOW: &str = "2025-06-20T12:00:00Z";
const AT: &str = "2025-06-20T07:00:00-04:00";

/// A certificate authority made for a test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { pem: issuer.pem(), issuer }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses), and its key (PEM).
    pub fn leaf(&self, names: &[&str], client: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The credentials of these tests: `a-writer` and `a-reader` on tenant acme, `b-writer` on
/// globex, and `admin` for everything. Each has a token and a client-certificate name.
fn credentials_file() -> String {
    let entry = |id: &str, scopes: &str| {
        format!(
            "[[credential]]\nid = \"{id}\"\ntoken_sha256 = \"{}\"\nclient_cert_name = \"{id}.clients.test\"\n{scopes}\n",
            hex(&sha256(token(id).as_bytes()))
        )
    };
    [
        entry("a-writer", "ingest = [\"acme\"]\nread = [\"acme\"]\nmanage = [\"acme\"]"),
        entry("a-reader", "read = [\"acme\"]"),
        entry("b-writer", "ingest = [\"globex\"]\nread = [\"globex\"]\nmanage = [\"globex\"]"),
        entry("admin", "ingest = [\"*\"]\nread = [\"*\"]\nmanage = [\"*\"]"),
    ]
    .concat()
}

fn token(id: &str) -> String {
    format!("dbk_test_token_of_{id}")
}

/// A caller: a channel, and the token it sends (if any).
#[derive(Clone)]
struct Who {
    channel: Channel,
    token: Option<String>,
}

impl Who {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }
}

fn event(tenant: &str, id: &str, kind: pb::event::Kind) -> pb::Event {
    pb::Event { tenant_id: tenant.into(), event_id: id.into(), event_time: AT.into(), kind: Some(kind) }
}

fn msg(consumer: &str) -> pb::event::Kind {
    pb::event::Kind::Message(message("x", "x", AT, consumer, pb::SenderRole::Consumer).message.unwrap())
}

/// Every RPC of the API, as `who` on `tenant`; the code it answers (`Ok` as `Code::Ok`).
/// `n` makes ids unique across calls.
async fn every_rpc(who: &Who, tenant: &str, n: usize) -> Vec<(&'static str, Code)> {
    let mut ingest = IngestServiceClient::new(who.channel.clone());
    let mut usage = UsageServiceClient::new(who.channel.clone());
    let mut records = RecordServiceClient::new(who.channel.clone());
    let mut tenants = TenantServiceClient::new(who.channel.clone());
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let mut out = Vec::new();
    let id = |what: &str| format!("{what}-{n}");

    let r = ingest.ingest_message(who.request(message(tenant, &id("m"), AT, &id("c"), pb::SenderRole::Consumer)));
    out.push(("IngestMessage", code(r.await.map(drop))));
    let opened = pb::IngestConversationOpenedRequest {
        tenant_id: tenant.into(),
        event_id: id("o"),
        event_time: AT.into(),
        conversation_opened: Some(pb::ConversationOpenedEvent {
            consumer_id: id("oc"),
            conversation_id: id("conv"),
            channel: pb::Channel::Web as i32,
            integration_id: "web-1".into(),
        }),
    };
    out.push((
        "IngestConversationOpened",
        code(ingest.ingest_conversation_opened(who.request(opened)).await.map(drop)),
    ));
    let cobrowse = pb::IngestCobrowseRequest {
        tenant_id: tenant.into(),
        event_id: id("cb"),
        event_time: AT.into(),
        cobrowse: Some(pb::CobrowseEvent {
            consumer_id: id("cc"),
            conversation_id: id("conv"),
            session_id: id("s"),
            established: true,
        }),
    };
    out.push(("IngestCobrowse", code(ingest.ingest_cobrowse(who.request(cobrowse)).await.map(drop))));
    let functions = pb::IngestFunctionInvocationsRequest {
        tenant_id: tenant.into(),
        event_id: id("f"),
        event_time: AT.into(),
        function_invocations: Some(pb::FunctionInvocationsEvent { count: 3 }),
    };
    out.push((
        "IngestFunctionInvocations",
        code(ingest.ingest_function_invocations(who.request(functions)).await.map(drop)),
    ));
    let batch = pb::IngestBatchRequest { events: vec![event(tenant, &id("b"), msg(&id("bc")))] };
    let batch_code = match ingest.ingest_batch(who.request(tokio_stream::iter(vec![batch]))).await {
        Err(status) => status.code(),
        Ok(response) => match response.into_inner().message().await {
            Ok(Some(answer)) if answer.outcomes[0].refusal.is_none() => Code::Ok,
            Ok(Some(answer)) => panic!("a refusal in a batch of a valid event: {answer:?}"),
            Ok(None) => Code::Unknown,
            Err(status) => status.code(),
        },
    };
    out.push(("IngestBatch", batch_code));

    let r = usage.get_usage(who.request(pb::GetUsageRequest { tenant_id: tenant.into(), ..Default::default() }));
    out.push(("GetUsage", code(r.await.map(drop))));
    let r = usage
        .get_statement(who.request(pb::GetStatementRequest { tenant_id: tenant.into(), period: "2025-06".into() }));
    out.push(("GetStatement", code(r.await.map(drop))));
    let r = usage.list_statements(who.request(pb::ListStatementsRequest { tenant_id: tenant.into() }));
    out.push(("ListStatements", code(r.await.map(drop))));
    let r = usage
        .list_interactions(who.request(pb::ListInteractionsRequest { tenant_id: tenant.into(), ..Default::default() }));
    out.push(("ListInteractions", code(r.await.map(drop))));
    let r = records
        .watch_records(who.request(pb::WatchRecordsRequest { tenant_ids: vec![tenant.into()], ..Default::default() }));
    out.push(("WatchRecords", code(r.await.map(drop))));

    let r = tenants.get_tenant(who.request(pb::GetTenantRequest { tenant_id: tenant.into() }));
    out.push(("GetTenant", code(r.await.map(drop))));
    let change = pb::SettingsChange {
        change_id: id("change"),
        effective_from: "2025-06-21T00:00:00Z".into(),
        settings: Some(pb::Settings { intent_listening: Some(n.is_multiple_of(2)), ..Default::default() }),
    };
    let r = tenants
        .change_settings(who.request(pb::ChangeSettingsRequest { tenant_id: tenant.into(), change: Some(change) }));
    out.push(("ChangeSettings", code(r.await.map(drop))));
    let plan = pb::Plan {
        kind: Some(pb::plan::Kind::Starter(pb::StarterPlan {
            alert_thresholds: vec![format!("0.{}", n % 9 + 1)],
            ..Default::default()
        })),
    };
    let r = tenants.set_plan(who.request(pb::SetPlanRequest { tenant_id: tenant.into(), plan: Some(plan) }));
    out.push(("SetPlan", code(r.await.map(drop))));
    // A tenant that does not exist yet, named by the scope of the caller's tenant: "<tenant>"
    // already exists (ALREADY_EXISTS once authorized).
    let r = tenants.create_tenant(who.request(pb::CreateTenantRequest { tenant: Some(daybook_tenant(tenant)) }));
    out.push(("CreateTenant", code(r.await.map(drop))));
    let r = tenants.list_tenants(who.request(pb::ListTenantsRequest {}));
    out.push(("ListTenants", code(r.await.map(drop))));
    out
}

fn daybook_tenant(id: &str) -> pb::Tenant {
    tenant(id, "America/New_York", pb::Meter::Dar)
}

/// What one tenant looks like from outside: its usage, statements, definition and
/// interactions, as the admin sees them.
async fn snapshot(admin: &Who, tenant: &str) -> String {
    let usage = UsageServiceClient::new(admin.channel.clone())
        .get_usage(admin.request(pb::GetUsageRequest { tenant_id: tenant.into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    let statements = UsageServiceClient::new(admin.channel.clone())
        .list_statements(admin.request(pb::ListStatementsRequest { tenant_id: tenant.into() }))
        .await
        .unwrap()
        .into_inner();
    let definition = TenantServiceClient::new(admin.channel.clone())
        .get_tenant(admin.request(pb::GetTenantRequest { tenant_id: tenant.into() }))
        .await
        .unwrap()
        .into_inner();
    let interactions = UsageServiceClient::new(admin.channel.clone())
        .list_interactions(admin.request(pb::ListInteractionsRequest {
            tenant_id: tenant.into(),
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    format!("{usage:?}\n{statements:?}\n{definition:?}\n{interactions:?}")
}

/// The matrix of issue 7 on one transport. `anonymous` presents no credential;
/// `writer` may ingest, read and manage acme; `reader` may only read acme; `admin` may do
/// everything. Returns after checking that the refused calls changed nothing.
async fn check_scopes(anonymous: &Who, writer: &Who, reader: &Who, admin: &Who, round: usize) {
    let base = round * 100;
    // The writer on its own tenant: every RPC passes (CreateTenant of an existing tenant
    // is ALREADY_EXISTS once authorized).
    for (rpc, code) in every_rpc(writer, "acme", base + 1).await {
        let expected = if rpc == "CreateTenant" { Code::AlreadyExists } else { Code::Ok };
        assert_eq!(code, expected, "{rpc} by the writer on its own tenant");
    }
    let before = snapshot(admin, "globex").await;
    let acme_before = snapshot(admin, "acme").await;

    // No credential: UNAUTHENTICATED on every RPC, whatever the tenant.
    for tenant in ["acme", "globex"] {
        for (rpc, code) in every_rpc(anonymous, tenant, base + 2).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} without a credential on {tenant}");
        }
    }
    // A token that matches no credential: UNAUTHENTICATED.
    let forged = Who { channel: anonymous.channel.clone(), token: Some("dbk_not_a_token".into()) };
    for (rpc, code) in every_rpc(&forged, "acme", base + 3).await {
        assert_eq!(code, Code::Unauthenticated, "{rpc} with an unknown token");
    }
    // acme's writer on globex: PERMISSION_DENIED on every RPC that names a tenant.
    for (rpc, code) in every_rpc(writer, "globex", base + 4).await {
        let expected = if rpc == "ListTenants" { Code::Ok } else { Code::PermissionDenied };
        assert_eq!(code, expected, "{rpc} by acme's writer on globex");
    }
    // The same on a tenant that does not exist: the answer does not tell.
    for (rpc, code) in every_rpc(writer, "no-such-tenant", base + 5).await {
        let expected = if rpc == "ListTenants" { Code::Ok } else { Code::PermissionDenied };
        assert_eq!(code, expected, "{rpc} by acme's writer on an unknown tenant");
    }
    // The read-only credential reads, and cannot ingest or change settings.
    for (rpc, code) in every_rpc(reader, "acme", base + 6).await {
        let reads = [
            "GetUsage",
            "GetStatement",
            "ListStatements",
            "ListInteractions",
            "WatchRecords",
            "GetTenant",
            "ListTenants",
        ];
        let expected = if reads.contains(&rpc) { Code::Ok } else { Code::PermissionDenied };
        assert_eq!(code, expected, "{rpc} by acme's reader");
    }
    // Nothing refused changed anything: globex is as it was, and acme too (the reader's
    // and the anonymous calls on acme were all refused).
    assert_eq!(snapshot(admin, "globex").await, before, "refused calls changed globex");
    assert_eq!(snapshot(admin, "acme").await, acme_before, "refused calls changed acme");

    // ListTenants shows only what the credential may read.
    let listed = TenantServiceClient::new(writer.channel.clone())
        .list_tenants(writer.request(pb::ListTenantsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .tenants;
    assert_eq!(listed.iter().map(|t| t.tenant_id.as_str()).collect::<Vec<_>>(), ["acme"]);
}

/// A watch of all records by acme's writer never carries one of globex, while both
/// tenants get events; it carries acme's audit records with who changed what.
async fn check_watch_isolation(writer: &Who, admin: &Who, round: usize) {
    let mut watch = RecordServiceClient::new(writer.channel.clone())
        .watch_records(writer.request(pb::WatchRecordsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    // globex first, then acme's last event: if globex leaked, it would come before it.
    let mut ingest = IngestServiceClient::new(admin.channel.clone());
    for i in 0..20 {
        let m = message("globex", &format!("w{round}-g{i}"), AT, &format!("wg{round}-{i}"), pb::SenderRole::Consumer);
        ingest.ingest_message(admin.request(m)).await.unwrap();
    }
    let change = pb::SettingsChange {
        change_id: format!("audited-{round}"),
        effective_from: "2025-06-22T00:00:00Z".into(),
        settings: Some(pb::Settings { generative_ai: Some(true), ..Default::default() }),
    };
    TenantServiceClient::new(writer.channel.clone())
        .change_settings(writer.request(pb::ChangeSettingsRequest { tenant_id: "acme".into(), change: Some(change) }))
        .await
        .unwrap();
    let last = format!("w{round}-a-last");
    let m = message("acme", &last, AT, &format!("wa{round}"), pb::SenderRole::Consumer);
    IngestServiceClient::new(writer.channel.clone()).ingest_message(writer.request(m)).await.unwrap();

    let mut audit = None;
    loop {
        let record = next_record(&mut watch, "the watch delivers acme's records").await;
        assert_eq!(record.tenant_id, "acme", "a watch of acme's writer carried {record:?}");
        match record.body {
            Some(pb::record::Body::SettingsChange(a)) if a.change_id == format!("audited-{round}") => audit = Some(a),
            Some(pb::record::Body::Interaction(i)) if i.event_id == last => break,
            _ => {}
        }
    }
    let audit = audit.expect("the settings change is on the watch stream");
    assert_eq!(audit.changed_by, "a-writer");
    assert_eq!(audit.operation, "change_settings");
    assert_eq!(audit.effective_from, "2025-06-22T00:00:00Z");
    assert!(audit.settings_json.contains("generative_ai"), "{}", audit.settings_json);
    assert!(!audit.changed_at.is_empty());
}

async fn setup_tenants(admin: &Who) {
    for id in ["acme", "globex"] {
        TenantServiceClient::new(admin.channel.clone())
            .create_tenant(admin.request(pb::CreateTenantRequest { tenant: Some(daybook_tenant(id)) }))
            .await
            .unwrap();
    }
}

fn write(path: &Path, text: &str) {
    // Written aside and renamed in, as a Secret volume or cert-manager does.
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(aside, path).unwrap();
}

/// The next record of a `WatchRecords` stream, within 10 s (`waiting_for` says what the
/// test waits for when it does not come).
async fn next_record(watch: &mut tonic::Streaming<pb::WatchRecordsResponse>, waiting_for: &str) -> pb::Record {
    tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect(waiting_for)
        .unwrap()
        .unwrap()
        .record
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scope_every_rpc_over_tcp_and_the_unix_socket_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.toml");
    write(&credentials, &credentials_file());
    let config = Config { auth_file: Some(credentials.clone()), ..Config::default() };
    let server = Harness::start(dir.path(), NOW, config).await;
    let channel = server.tcp_channel().await;
    let who = |id: Option<&str>| Who { channel: channel.clone(), token: id.map(token) };
    let admin = who(Some("admin"));
    setup_tenants(&admin).await;
    check_scopes(&who(None), &who(Some("a-writer")), &who(Some("a-reader")), &admin, 1).await;
    check_watch_isolation(&who(Some("a-writer")), &admin, 1).await;

    // The Unix socket needs no token: its caller may do everything.
    let local = Who { channel: server.uds_channel().await, token: None };
    for (rpc, code) in every_rpc(&local, "globex", 900).await {
        let expected = if rpc == "CreateTenant" { Code::AlreadyExists } else { Code::Ok };
        assert_eq!(code, expected, "{rpc} on the Unix socket");
    }
    // Health is open (probes carry no token); readiness reports authentication.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    let (_, ready) = http_get(server.admin, "/ready").await;
    assert!(ready.contains("auth: on (4 credential(s))"), "{ready}");

    // A reload that revokes the reader: its token stops working within seconds, and a
    // watch stream it holds ends UNAUTHENTICATED.
    let mut watch = RecordServiceClient::new(channel.clone())
        .watch_records(who(Some("a-reader")).request(pb::WatchRecordsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let without_reader: String = credentials_file()
        .split("[[credential]]")
        .filter(|e| !e.contains("\"a-reader\""))
        .collect::<Vec<_>>()
        .join("[[credential]]");
    write(&credentials, &without_reader);
    let reader = who(Some("a-reader"));
    let mut revoked = false;
    for _ in 0..100 {
        let r = UsageServiceClient::new(channel.clone())
            .get_usage(reader.request(pb::GetUsageRequest { tenant_id: "acme".into(), ..Default::default() }))
            .await;
        if r.as_ref().is_err_and(|s| s.code() == Code::Unauthenticated) {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "the revoked token still works");
    // The stream ends at its next record.
    let m = message("acme", "after-revoke", AT, "ar", pb::SenderRole::Consumer);
    IngestServiceClient::new(channel.clone()).ingest_message(admin.request(m)).await.unwrap();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("the stream ends") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unauthenticated);
    // The others are unaffected.
    every_rpc(&who(Some("a-writer")), "acme", 950).await.iter().for_each(|(rpc, code)| {
        let expected = if *rpc == "CreateTenant" { Code::AlreadyExists } else { Code::Ok };
        assert_eq!(*code, expected, "{rpc} by the writer after the reload");
    });
    server.stop().await;
}

/// TLS files written for a server: its certificate for localhost and 127.0.0.1.
fn write_server_cert(dir: &Path, ca: &Ca) {
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], false);
    // The key first: a reload that sees the new certificate with the old key fails to
    // load and keeps the configuration in force until the next poll.
    write(&dir.join("server.key"), &key);
    write(&dir.join("server.crt"), &cert);
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    server_ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(server_ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls)?.connect().await
}

/// A server with the test credentials, TLS from a generated server CA and client
/// certificates of a generated client CA; returns (its directory, the two CAs, it).
async fn start_tls(client_auth: ClientAuth) -> (tempfile::TempDir, Ca, Ca, Harness) {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("daybook test server CA");
    let client_ca = Ca::new("daybook test client CA");
    write_server_cert(dir.path(), &server_ca);
    write(&dir.path().join("clients.crt"), &client_ca.pem);
    let credentials = dir.path().join("credentials.toml");
    write(&credentials, &credentials_file());
    let files = TlsFiles {
        cert: dir.path().join("server.crt"),
        key: dir.path().join("server.key"),
        client_ca: Some(dir.path().join("clients.crt")),
        client_auth,
    };
    let config = Config { auth_file: Some(credentials), tls: Some(files), ..Config::default() };
    let server = Harness::start(dir.path(), NOW, config).await;
    (dir, server_ca, client_ca, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_scope_every_rpc_and_certificates_rotate_while_serving() {
    // Optional client certificates: callers with tokens need none.
    let (dir, server_ca, client_ca, server) = start_tls(ClientAuth::Optional).await;

    // Plain text to a TLS listener gets nowhere.
    let plain = daybook::client::connect(&server.tcp.to_string()).await;
    if let Ok(plain) = plain {
        let r = TenantServiceClient::new(plain).list_tenants(pb::ListTenantsRequest {}).await;
        assert!(r.is_err(), "plain text was served on the TLS listener");
    }

    // Tokens over TLS.
    let channel = tls_channel(server.tcp, &server_ca.pem, None).await.unwrap();
    let who = |id: Option<&str>| Who { channel: channel.clone(), token: id.map(token) };
    let admin = who(Some("admin"));
    setup_tenants(&admin).await;
    check_scopes(&who(None), &who(Some("a-writer")), &who(Some("a-reader")), &admin, 1).await;
    check_watch_isolation(&who(Some("a-writer")), &admin, 1).await;

    // Client certificates identify callers (mTLS), with the same scopes.
    let by_cert = |id: &str| {
        let identity = client_ca.leaf(&[&format!("{id}.clients.test")], true);
        let (addr, ca) = (server.tcp, server_ca.pem.clone());
        async move { Who { channel: tls_channel(addr, &ca, Some(&identity)).await.unwrap(), token: None } }
    };
    let writer = by_cert("a-writer").await;
    let reader = by_cert("a-reader").await;
    let anonymous = Who { channel: channel.clone(), token: None };
    check_scopes(&anonymous, &writer, &reader, &admin, 2).await;
    check_watch_isolation(&writer, &admin, 2).await;
    // A certificate of the client CA that names no credential: UNAUTHENTICATED.
    let stranger = by_cert("stranger").await;
    for (rpc, code) in every_rpc(&stranger, "acme", 300).await {
        assert_eq!(code, Code::Unauthenticated, "{rpc} with a certificate of no credential");
    }
    // A certificate from another CA is refused in the handshake.
    let rogue = Ca::new("rogue").leaf(&["a-writer.clients.test"], true);
    let refused = match tls_channel(server.tcp, &server_ca.pem, Some(&rogue)).await {
        Err(_) => true,
        Ok(channel) => TenantServiceClient::new(channel).list_tenants(pb::ListTenantsRequest {}).await.is_err(),
    };
    assert!(refused, "a client certificate of an unknown CA was accepted");

    // Rotation: a new server certificate from another CA, picked up without a restart.
    let rotated_ca = Ca::new("daybook test server CA, renewed");
    write_server_cert(dir.path(), &rotated_ca);
    let mut rotated = false;
    for _ in 0..100 {
        if let Ok(channel) = tls_channel(server.tcp, &rotated_ca.pem, None).await
            && let Ok(r) = TenantServiceClient::new(channel)
                .list_tenants(who(Some("admin")).request(pb::ListTenantsRequest {}))
                .await
        {
            assert_eq!(r.into_inner().tenants.len(), 2);
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the renewed certificate was not served");
    // New connections no longer get the old certificate.
    let old = match tls_channel(server.tcp, &server_ca.pem, None).await {
        Err(_) => true,
        Ok(channel) => TenantServiceClient::new(channel).list_tenants(pb::ListTenantsRequest {}).await.is_err(),
    };
    assert!(old, "the old certificate is still served");
    // The rotated listener still scopes by client certificate.
    let renewed_writer = {
        let identity = client_ca.leaf(&["a-writer.clients.test"], true);
        Who { channel: tls_channel(server.tcp, &rotated_ca.pem, Some(&identity)).await.unwrap(), token: None }
    };
    for (rpc, code) in every_rpc(&renewed_writer, "globex", 400).await {
        let expected = if rpc == "ListTenants" { Code::Ok } else { Code::PermissionDenied };
        assert_eq!(code, expected, "{rpc} by acme's writer after rotation");
    }
    let (_, ready) = http_get(server.admin, "/ready").await;
    assert!(ready.contains("tls: on, client certificates verified"), "{ready}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_refuse_a_handshake_without_one() {
    let (_dir, server_ca, client_ca, server) = start_tls(ClientAuth::Required).await;
    // Even with a valid token, no certificate: no connection.
    let refused = match tls_channel(server.tcp, &server_ca.pem, None).await {
        Err(_) => true,
        Ok(channel) => {
            let admin = Who { channel, token: Some(token("admin")) };
            TenantServiceClient::new(admin.channel.clone())
                .list_tenants(admin.request(pb::ListTenantsRequest {}))
                .await
                .is_err()
        }
    };
    assert!(refused, "a client without a certificate was served");
    let identity = client_ca.leaf(&["admin.clients.test"], true);
    let admin = Who { channel: tls_channel(server.tcp, &server_ca.pem, Some(&identity)).await.unwrap(), token: None };
    setup_tenants(&admin).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_a_listener_open_to_other_hosts_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { listen: Some("0.0.0.0:50051".parse().unwrap()), insecure: true, ..Config::default() };
    let server = Harness::start(dir.path(), NOW, config).await;
    let (status, ready) = http_get(server.admin, "/ready").await;
    assert_eq!(status, 200);
    assert!(ready.contains("auth: off, INSECURE"), "{ready}");
    assert!(ready.contains("tls: off"), "{ready}");
    server.stop().await;
}

/// Start-up refuses a TCP listener other hosts can reach without credentials, unless
/// told `--insecure`; readiness then says so.
#[test]
fn a_listener_beyond_loopback_needs_auth_or_insecure() {
    let bin = env!("CARGO_BIN_EXE_daybook");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args(["serve", "--check-config", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--listen") && stderr.contains("auth_file") && stderr.contains("--insecure"), "{stderr}");
    let out = std::process::Command::new(bin)
        .args(["serve", "--check-config", "--listen", "0.0.0.0:0", "--insecure", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Tenants of the config file change by editing it; an edit picked up while daybook runs
/// is audited like a change through the API, by `config-file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_the_config_files_tenants_is_applied_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daybook.toml");
    let before = "[[tenant]]\nid = \"acme\"\ntime_zone = \"America/New_York\"\n";
    write(&path, before);
    let tenants = daybook::tenants::parse_tenants_toml(before).unwrap();
    let config = Config { config_file: Some(path.clone()), tenants, ..Config::default() };
    let server = Harness::start(dir.path(), NOW, config).await;
    let channel = server.uds_channel().await;
    let mut watch = RecordServiceClient::new(channel.clone())
        .watch_records(pb::WatchRecordsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The file's tenants are changed in the file, not through the API.
    let refused = TenantServiceClient::new(channel.clone())
        .set_plan(pb::SetPlanRequest { tenant_id: "acme".into(), plan: None })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    write(&path, &format!("{before}settings = {{ generative_ai = true }}\n"));
    let audit = loop {
        let record = next_record(&mut watch, "the edit is picked up and audited").await;
        if let Some(pb::record::Body::SettingsChange(audit)) = record.body {
            assert_eq!(record.tenant_id, "acme");
            break audit;
        }
    };
    assert_eq!((audit.operation.as_str(), audit.changed_by.as_str()), ("config_file", "config-file"));
    assert!(audit.tenant_json.contains("generative_ai"), "{}", audit.tenant_json);
    let tenant = get_tenant(&channel, "acme").await;
    assert_eq!(tenant.settings.unwrap().generative_ai, Some(true));
    server.stop().await;
}
