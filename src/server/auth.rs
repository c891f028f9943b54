//! Who may call, and for which tenants: credentials and their scopes.
//!
//! A caller presents a bearer token (`authorization: Bearer <token>` metadata) or, over
//! mutual TLS, a client certificate. The credentials file names each credential, how it is
//! recognised, and what it may do:
//!
//! ```toml
//! [[credential]]
//! id = "chat-frontend"                 # names the caller in audit records
//! token_sha256 = "9f86d081884c7d65..." # SHA-256 of the token, 64 hex digits
//! ingest = ["acme", "globex"]          # tenants it may send events for
//! read = ["acme"]                      # usage, statements, interactions, records, tenants
//!
//! [[credential]]
//! id = "billing-export"
//! client_cert_name = "billing-export.billing.svc"  # a DNS name its certificate is valid for
//! read = ["*"]                         # "*": every tenant, also those created later
//! manage = ["*"]                       # create tenants, change settings and plans
//! ```
//!
//! Tokens are random secrets of 256 bits (`daybook token new` makes one), so a plain
//! SHA-256 keeps them out of the file: nobody learns a token from its hash, and there is no
//! password to guess. The presented token is hashed and looked up by its hash, then the
//! stored hash is compared with it in constant time. What a lookup's timing could reveal
//! is about SHA-256 digests of the caller's own guess, which bring no one closer to a
//! token (finding a preimage is the hard part); comparing against every credential
//! instead cost 45 us per call at 1,000 credentials.
//!
//! The file is re-read when its contents change (a mounted Kubernetes Secret is updated in
//! place); a file that no longer parses keeps the credentials in force and says why.
//! Callers on the Unix socket need no token: the socket is owner-only, so reaching it is
//! the credential. A token presented there is checked and scopes the call all the same.

use crate::sync::Unpoisoned;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio_rustls::rustls::pki_types::{CertificateDer, DnsName, ServerName};
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};

/// What a call does to a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Send events (the ingest RPCs).
    Ingest,
    /// Usage, statements, interactions, records, the tenant's definition.
    Read,
    /// Create the tenant, change its settings or plan.
    Manage,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Ingest => "ingest for",
            Access::Read => "read",
            Access::Manage => "manage",
        }
    }
}

/// The tenants a scope covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    All,
    Only(HashSet<String>),
}

impl Tenants {
    pub fn contains(&self, tenant: &str) -> bool {
        match self {
            Tenants::All => true,
            Tenants::Only(set) => set.contains(tenant),
        }
    }

    fn none() -> Tenants {
        Tenants::Only(HashSet::new())
    }
}

/// An authenticated caller: a credential of the file, the Unix socket's local caller, or
/// anyone when authentication is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The credential's id (`unix-socket` or `anonymous` for the callers without one).
    pub id: String,
    pub ingest: Tenants,
    pub read: Tenants,
    pub manage: Tenants,
    /// From the credentials file, so reloading it may change or revoke it.
    from_file: bool,
}

impl Caller {
    fn unrestricted(id: &str) -> Caller {
        Caller { id: id.into(), ingest: Tenants::All, read: Tenants::All, manage: Tenants::All, from_file: false }
    }

    pub fn may(&self, access: Access, tenant: &str) -> bool {
        match access {
            Access::Ingest => self.ingest.contains(tenant),
            Access::Read => self.read.contains(tenant),
            Access::Manage => self.manage.contains(tenant),
        }
    }

    /// PERMISSION_DENIED when the scope does not cover the tenant. The message names the
    /// credential and the kind of access, never the tenant: whether another tenant exists
    /// is not this caller's business.
    pub fn require(&self, access: Access, tenant: &str) -> Result<(), Status> {
        if self.may(access, tenant) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "credential `{}` may not {} the tenant named in this request",
            self.id,
            access.verb()
        )))
    }
}

/// The caller of a request, put there by [`Authenticate`]. A request that did not pass
/// through it has no caller and is refused (fail closed).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Arc<Caller>, Status> {
    request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credential was checked for this call"))
}

/// A credentials file, parsed.
#[derive(Debug, Default)]
pub struct Credentials {
    tokens: HashMap<[u8; 32], Arc<Caller>>,
    certificates: Vec<(ServerName<'static>, Arc<Caller>)>,
    by_id: HashMap<String, Arc<Caller>>,
}

impl Credentials {
    /// Parses the credentials file. Every error names the credential and the key.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let value: Value = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
        let top = value.as_object().ok_or("expected [[credential]] tables")?;
        if let Some(key) = top.keys().find(|k| *k != "credential") {
            return Err(format!("{key}: unknown table (expected [[credential]])"));
        }
        let list = match top.get("credential") {
            None => &Vec::new(),
            Some(Value::Array(list)) => list,
            Some(_) => return Err("credential: expected [[credential]] tables".into()),
        };
        let mut credentials = Credentials::default();
        for (n, entry) in list.iter().enumerate() {
            let at = |key: &str| format!("credential[{n}].{key}");
            let obj = entry.as_object().ok_or_else(|| format!("credential[{n}]: expected a table"))?;
            for key in obj.keys() {
                if !["id", "token_sha256", "client_cert_name", "ingest", "read", "manage"].contains(&key.as_str()) {
                    return Err(format!("{}: unknown key", at(key)));
                }
            }
            let id = match obj.get("id") {
                Some(Value::String(id)) if valid_id(id) => id.clone(),
                _ => return Err(format!("{}: expected 1 to 128 characters of A-Z a-z 0-9 . _ : @ / -", at("id"))),
            };
            if credentials.by_id.contains_key(&id) {
                return Err(format!("{}: `{id}` is used twice", at("id")));
            }
            let scope = |key: &str| -> Result<Tenants, String> {
                let Some(value) = obj.get(key) else { return Ok(Tenants::none()) };
                let items = value.as_array().ok_or_else(|| format!("{}: expected a list of tenant ids", at(key)))?;
                let mut set = HashSet::new();
                for item in items {
                    let tenant = item.as_str().ok_or_else(|| format!("{}: expected tenant ids", at(key)))?;
                    if tenant == "*" {
                        return Ok(Tenants::All);
                    }
                    crate::rating::settings::validate_tenant_id(tenant)
                        .map_err(|reason| format!("{}: tenant id `{tenant}` {reason}", at(key)))?;
                    set.insert(tenant.to_string());
                }
                Ok(Tenants::Only(set))
            };
            let caller = Arc::new(Caller {
                id: id.clone(),
                ingest: scope("ingest")?,
                read: scope("read")?,
                manage: scope("manage")?,
                from_file: true,
            });
            let token = match obj.get("token_sha256") {
                None => None,
                Some(Value::String(hex)) => {
                    Some(parse_sha256(hex).ok_or_else(|| format!("{}: expected 64 hex digits", at("token_sha256")))?)
                }
                Some(_) => return Err(format!("{}: expected 64 hex digits", at("token_sha256"))),
            };
            let name = match obj.get("client_cert_name") {
                None => None,
                Some(Value::String(name)) => Some(
                    DnsName::try_from(name.clone())
                        .map_err(|_| format!("{}: `{name}` is not a DNS name", at("client_cert_name")))?,
                ),
                Some(_) => return Err(format!("{}: expected a DNS name", at("client_cert_name"))),
            };
            if token.is_none() && name.is_none() {
                return Err(format!("credential[{n}] `{id}`: needs token_sha256 or client_cert_name (or both)"));
            }
            if let Some(hash) = token
                && credentials.tokens.insert(hash, caller.clone()).is_some()
            {
                return Err(format!("{}: the same token hash is given twice", at("token_sha256")));
            }
            if let Some(name) = name {
                credentials.certificates.push((ServerName::DnsName(name), caller.clone()));
            }
            credentials.by_id.insert(id, caller);
        }
        Ok(credentials)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The credential whose token this is: found by the token's hash, whose match is then
    /// checked in constant time.
    fn by_token(&self, token: &str) -> Option<Arc<Caller>> {
        let hash = sha256(token.as_bytes());
        let (stored, caller) = self.tokens.get_key_value(&hash)?;
        bool::from(stored.ct_eq(&hash)).then(|| caller.clone())
    }

    /// The first credential (in file order) whose `client_cert_name` the certificate is
    /// valid for. The TLS layer has already verified the certificate against the client CA.
    fn by_certificate(&self, certificate: &CertificateDer<'_>) -> Option<Arc<Caller>> {
        let cert = webpki::EndEntityCert::try_from(certificate).ok()?;
        self.certificates
            .iter()
            .find(|(name, _)| cert.verify_is_valid_for_subject_name(name).is_ok())
            .map(|(_, caller)| caller.clone())
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:@/".contains(&b))
        && !["unix-socket", "anonymous"].contains(&id)
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token and the hash that goes into the credentials file.
pub fn new_token() -> (String, String) {
    use ring::rand::SecureRandom;
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut secret).expect("the system's random source");
    let token = format!("dbk_{}", hex(&secret));
    let hash = hex(&sha256(token.as_bytes()));
    (token, hash)
}

/// The credentials in force, reloaded when the file changes.
pub struct Auth {
    /// `None`: authentication is off (every caller may do everything).
    file: Option<PathBuf>,
    current: RwLock<(Arc<Credentials>, Vec<u8>)>,
    /// Bumped on every reload, so long-lived streams notice cheaply.
    generation: AtomicU64,
    anonymous: Arc<Caller>,
    local: Arc<Caller>,
}

impl Auth {
    /// Authentication off: every caller is `anonymous` and unrestricted.
    pub fn off() -> Arc<Auth> {
        Arc::new(Auth::new(None, Credentials::default(), Vec::new()))
    }

    fn new(file: Option<PathBuf>, credentials: Credentials, text: Vec<u8>) -> Auth {
        Auth {
            file,
            current: RwLock::new((Arc::new(credentials), text)),
            generation: AtomicU64::new(0),
            anonymous: Arc::new(Caller::unrestricted("anonymous")),
            local: Arc::new(Caller::unrestricted("unix-socket")),
        }
    }

    /// Reads the credentials file; an unreadable or invalid file stops start-up.
    pub fn from_file(path: PathBuf) -> Result<Arc<Auth>, String> {
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let credentials =
            Credentials::parse(&String::from_utf8_lossy(&text)).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Arc::new(Auth::new(Some(path), credentials, text)))
    }

    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    pub fn credentials(&self) -> Arc<Credentials> {
        self.current.read().unpoisoned().0.clone()
    }

    /// Who is calling. Order: a bearer token, else a client certificate, else the Unix
    /// socket's local caller; otherwise UNAUTHENTICATED.
    pub fn authenticate(&self, metadata: &MetadataMap, extensions: &http::Extensions) -> Result<Arc<Caller>, Status> {
        let local = extensions.get::<UdsConnectInfo>().is_some();
        if self.file.is_none() {
            // Everyone may do everything; the socket's callers are still named apart in
            // audit records.
            return Ok(if local { self.local.clone() } else { self.anonymous.clone() });
        }
        let credentials = self.credentials();
        if let Some(value) = metadata.get("authorization") {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Status::unauthenticated("authorization metadata must be `Bearer <token>`"))?;
            return credentials
                .by_token(token)
                .ok_or_else(|| Status::unauthenticated("the bearer token matches no credential"));
        }
        if let Some(certs) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.peer_certs())
            && let Some(leaf) = certs.first()
        {
            return credentials.by_certificate(leaf).ok_or_else(|| {
                Status::unauthenticated("the client certificate is valid for no credential's client_cert_name")
            });
        }
        if local {
            return Ok(self.local.clone());
        }
        Err(Status::unauthenticated(
            "no credential: send `authorization: Bearer <token>` metadata or a client certificate",
        ))
    }

    /// The generation of the credentials in force.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The caller as the credentials now in force define it: the same, its new scope, or
    /// `None` when its credential was removed. For long-lived streams.
    pub fn current(&self, caller: &Arc<Caller>) -> Option<Arc<Caller>> {
        if !caller.from_file {
            return Some(caller.clone());
        }
        self.credentials().by_id.get(&caller.id).cloned()
    }

    /// Re-reads the file if its contents changed. `Ok(Some(n))`: reloaded, `n` credentials.
    pub fn reload(&self) -> Result<Option<usize>, String> {
        let Some(path) = &self.file else { return Ok(None) };
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if self.current.read().unpoisoned().1 == text {
            return Ok(None);
        }
        let credentials =
            Credentials::parse(&String::from_utf8_lossy(&text)).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = credentials.len();
        *self.current.write().unpoisoned() = (Arc::new(credentials), text);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(Some(n))
    }
}

/// Polls the credentials file every second (a Kubernetes Secret volume swaps a symlink,
/// which file-change notifications do not reliably report).
pub async fn watch(auth: Arc<Auth>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match auth.reload() {
            Ok(Some(n)) => tracing::info!("credentials reloaded: {n} credential(s)"),
            Ok(None) => {}
            Err(e) => tracing::warn!("credentials not reloaded, keeping those in force: {e}"),
        }
    }
}

/// The interceptor in front of every daybook service and reflection: it authenticates
/// and puts the [`Caller`] into the request's extensions. gRPC health stays open for the
/// kubelet's probes.
#[derive(Clone)]
pub struct Authenticate(pub Arc<Auth>);

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let caller = self.0.authenticate(request.metadata(), request.extensions())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[credential]]
        id = "chat"
        token_sha256 = "HASH"
        ingest = ["acme"]
        read = ["acme", "globex"]

        [[credential]]
        id = "ops"
        client_cert_name = "ops.daybook.internal"
        read = ["*"]
        manage = ["*"]
    "#;

    fn file(token: &str) -> String {
        FILE.replace("HASH", &hex(&sha256(token.as_bytes())))
    }

    #[test]
    fn a_token_finds_its_credential_and_scope() {
        let credentials = Credentials::parse(&file("secret-1")).unwrap();
        let chat = credentials.by_token("secret-1").unwrap();
        assert_eq!(chat.id, "chat");
        assert!(chat.may(Access::Ingest, "acme"));
        assert!(!chat.may(Access::Ingest, "globex"));
        assert!(chat.may(Access::Read, "globex"));
        assert!(!chat.may(Access::Manage, "acme"));
        assert!(credentials.by_token("secret-2").is_none());
        assert!(credentials.by_token("").is_none());
    }

    #[test]
    fn permission_denied_names_the_credential_not_the_tenant() {
        let credentials = Credentials::parse(&file("t")).unwrap();
        let chat = credentials.by_token("t").unwrap();
        let status = chat.require(Access::Ingest, "globex-secret-name").unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains("`chat`"));
        assert!(!status.message().contains("globex"));
    }

    #[test]
    fn bad_files_are_refused_with_the_key_named() {
        let cases = [
            ("[[credential]]\nid = \"a\"\n", "needs token_sha256"),
            ("[[credential]]\nid = \"a\"\ntoken_sha256 = \"abc\"\n", "credential[0].token_sha256"),
            ("[[credential]]\nid = \"a\"\nclient_cert_name = \"not a name\"\n", "client_cert_name"),
            ("[[credential]]\nid = \"a b\"\nclient_cert_name = \"x.y\"\n", "credential[0].id"),
            ("[[credential]]\nid = \"unix-socket\"\nclient_cert_name = \"x.y\"\n", "credential[0].id"),
            ("[[credential]]\nid = \"a\"\nclient_cert_name = \"x.y\"\nwrite = []\n", "credential[0].write"),
            ("[[credential]]\nid = \"a\"\nclient_cert_name = \"x.y\"\nread = \"acme\"\n", "credential[0].read"),
            (
                "[[credential]]\nid = \"a\"\nclient_cert_name = \"x.y\"\n[[credential]]\nid = \"a\"\nclient_cert_name = \"z.y\"\n",
                "used twice",
            ),
            ("[tokens]\n", "unknown table"),
        ];
        for (text, expected) in cases {
            let error = Credentials::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let same = format!(
            "[[credential]]\nid = \"a\"\ntoken_sha256 = \"{h}\"\n[[credential]]\nid = \"b\"\ntoken_sha256 = \"{h}\"\n",
            h = hex(&sha256(b"x"))
        );
        assert!(Credentials::parse(&same).unwrap_err().contains("twice"));
    }

    #[test]
    fn new_tokens_are_random_and_hash_as_the_file_expects() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(hash_a, hex(&sha256(a.as_bytes())));
        assert_eq!(parse_sha256(&hash_a).unwrap(), sha256(a.as_bytes()));
    }

    #[test]
    fn without_a_file_everyone_is_anonymous_and_unrestricted() {
        let auth = Auth::off();
        let caller = auth.authenticate(&MetadataMap::new(), &http::Extensions::new()).unwrap();
        assert_eq!(caller.id, "anonymous");
        assert!(caller.may(Access::Manage, "anything"));
    }

    #[test]
    fn with_a_file_a_call_without_credential_is_unauthenticated_and_a_reload_revokes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        std::fs::write(&path, file("one")).unwrap();
        let auth = Auth::from_file(path.clone()).unwrap();
        let none = auth.authenticate(&MetadataMap::new(), &http::Extensions::new()).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", "Bearer one".parse().unwrap());
        let chat = auth.authenticate(&metadata, &http::Extensions::new()).unwrap();
        assert_eq!(chat.id, "chat");
        let mut uds = http::Extensions::new();
        uds.insert(UdsConnectInfo { peer_addr: None, peer_cred: None });
        assert_eq!(auth.authenticate(&MetadataMap::new(), &uds).unwrap().id, "unix-socket");

        // A broken file keeps what is in force.
        std::fs::write(&path, "[[credential]]\nid = 3\n").unwrap();
        assert!(auth.reload().is_err());
        assert!(auth.authenticate(&metadata, &http::Extensions::new()).is_ok());
        // Rotation: the old token stops working, the stream's credential keeps its id.
        let generation = auth.generation();
        std::fs::write(&path, file("two")).unwrap();
        assert_eq!(auth.reload().unwrap(), Some(2));
        assert_eq!(auth.reload().unwrap(), None, "unchanged contents are not reloaded");
        assert!(auth.generation() > generation);
        assert_eq!(
            auth.authenticate(&metadata, &http::Extensions::new()).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(auth.current(&chat).is_some());
        std::fs::write(&path, "").unwrap();
        auth.reload().unwrap();
        assert!(auth.current(&chat).is_none(), "a removed credential ends its streams");
    }
}
