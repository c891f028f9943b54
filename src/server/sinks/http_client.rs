//! The little HTTP/1.1 client the HTTP sinks need: POST a body to one URL over one
//! kept-alive connection (plain or TLS), re-dialled after any failure. TLS trusts the
//! system's roots, or only the CA of `ca_file` when one is given.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, RootCertStore, pki_types::CertificateDer, pki_types::ServerName};

use super::SinkError;

pub struct HttpClient {
    url: http::Uri,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

/// What the receiver answered.
pub struct Answer {
    pub status: http::StatusCode,
    pub body: String,
}

impl HttpClient {
    pub fn new(url: http::Uri, ca_file: Option<&Path>) -> Result<HttpClient, SinkError> {
        let tls = match url.scheme_str() {
            Some("https") => {
                let host = url.host().unwrap_or_default().trim_matches(['[', ']']).to_string();
                let name = ServerName::try_from(host).map_err(SinkError::new)?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_file)?)), name))
            }
            _ => None,
        };
        Ok(HttpClient { url, tls, connection: None })
    }

    /// POSTs `body` with `headers`; any answer is returned, a failure to get one is an
    /// error (the connection is then dialled again next time).
    pub async fn post(&mut self, headers: &[(&str, String)], body: Bytes) -> Result<Answer, SinkError> {
        let result = self.try_post(headers, body).await;
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn try_post(&mut self, headers: &[(&str, String)], body: Bytes) -> Result<Answer, SinkError> {
        let usable = match &mut self.connection {
            Some(c) => !c.is_closed() && c.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.connection = Some(self.dial().await?);
        }
        let connection = self.connection.as_mut().expect("dialled above");
        let authority = self.url.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = self.url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut request = http::Request::post(path).header(http::header::HOST, authority);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(SinkError::new)?;
        let response = connection.send_request(request).await.map_err(SinkError::new)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(SinkError::new)?.to_bytes();
        let body = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Ok(Answer { status, body })
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, SinkError> {
        let host = self.url.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = self.url.port_u16().unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = TcpStream::connect((host, port)).await.map_err(|e| SinkError(format!("{host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), tcp).await.map_err(SinkError::new)?;
                handshake(TokioIo::new(stream)).await
            }
            None => handshake(TokioIo::new(tcp)).await,
        }
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<Full<Bytes>>, SinkError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(SinkError::new)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, SinkError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| SinkError(format!("{}: {e}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| SinkError(format!("{}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| SinkError(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(SinkError("no CA certificate to trust (set ca_file)".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(SinkError::new)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
