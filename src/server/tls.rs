//! TLS on the gRPC TCP listener, with certificates that can be rotated while daybook runs.
//!
//! tonic's own TLS takes its certificates once, at start. cert-manager and mounted Secrets
//! renew them in place, so daybook terminates TLS itself (rustls through tokio-rustls, the
//! same stack tonic uses) and builds the server's TLS configuration again whenever the
//! certificate, key or client CA files change. Connections already open keep the
//! configuration they were accepted with; new ones get the new one. Files that do not
//! load (a renewal caught half-written, a key that does not match) keep the configuration
//! in force and say why.
//!
//! With a client CA, client certificates are verified against it (mutual TLS); they are
//! then required unless `tls_client_auth = "optional"` (callers may then present a bearer
//! token instead). A verified certificate identifies its caller through the credentials
//! file's `client_cert_name`.

use crate::sync::Unpoisoned;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

/// Whether a client certificate is needed when a client CA is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
}

/// The TLS files of the gRPC listener.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates are verified against (PEM); `None`: no mTLS.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    fn read(&self) -> Result<Vec<Vec<u8>>, String> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut out = vec![read(&self.cert)?, read(&self.key)?];
        if let Some(ca) = &self.client_ca {
            out.push(read(ca)?);
        }
        Ok(out)
    }

    /// Builds the server configuration from the files' contents.
    fn config(&self, contents: &[Vec<u8>]) -> Result<ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&contents[0])
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_slice(&contents[1]).map_err(|e| format!("{}: {e}", self.key.display()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match (&self.client_ca, contents.get(2)) {
            (Some(path), Some(pem)) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no CA certificate in it", path.display()));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match self.client_auth {
                    ClientAuth::Required => verifier.build(),
                    ClientAuth::Optional => verifier.allow_unauthenticated().build(),
                }
                .map_err(|e| format!("{}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("{} and {}: {e}", self.cert.display(), self.key.display()))?;
        // gRPC is HTTP/2 only.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The TLS configuration in force, and the file contents it was built from.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<(Arc<ServerConfig>, Vec<Vec<u8>>)>,
}

impl Tls {
    /// Loads the files; start-up stops if they do not load.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, String> {
        let contents = files.read()?;
        let config = files.config(&contents)?;
        Ok(Arc::new(Tls { files, current: RwLock::new((Arc::new(config), contents)) }))
    }

    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unpoisoned().0.clone())
    }

    /// Builds the configuration again if any file changed. `Ok(true)`: rotated.
    pub fn reload(&self) -> Result<bool, String> {
        let contents = self.files.read()?;
        if self.current.read().unpoisoned().1 == contents {
            return Ok(false);
        }
        let config = self.files.config(&contents)?;
        *self.current.write().unpoisoned() = (Arc::new(config), contents);
        Ok(true)
    }
}

/// Polls the files every second and rotates on change.
pub async fn watch(tls: Arc<Tls>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match tls.reload() {
            Ok(true) => tracing::info!("TLS certificates reloaded; new connections use them"),
            Ok(false) => {}
            Err(e) => tracing::warn!("TLS certificates not reloaded, keeping those in force: {e}"),
        }
    }
}

/// The TLS connections of a listener, for tonic's `serve_with_incoming`. Each handshake
/// runs in its own task (a slow or silent client holds up nobody) and must finish within
/// 10 s; failed handshakes are dropped. Ends when `stop` is set.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Tls>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => return,
                _ = tx.closed() => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Small unary calls: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms.
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
