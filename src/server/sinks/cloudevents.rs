//! Records as CloudEvents 1.0 (JSON event format): `id` is the record id (receivers
//! deduplicate by it), `source` this daybook instance, `type` `io.daybook.<kind>.v1`,
//! `subject` the tenant, `time` when the record's entry was decided, `data` the record in
//! the proto3 JSON mapping. Two HTTP destinations share this: a batch sink (one POST of
//! `application/cloudevents-batch+json` per batch, as OpenMeter's ingest API takes it)
//! and webhooks (one POST of `application/cloudevents+json` per event, signed).
//!
//! A webhook's signature is Stripe's scheme: header `Daybook-Signature: t=<unix
//! seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the tenant's secret>`. A receiver
//! recomputes it and refuses a timestamp far from its clock (a replayed request).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::SecondsFormat;
use serde_json::{Value, json};

use super::cursor_file::CursorFile;
use super::http_client::HttpClient;
use super::spec::{Destination, SinkSpec};
use super::{Item, OperationalEvent, Sink, SinkError};
use crate::api::pb;
use crate::api::pb::record::Body;
use crate::server::records::{Cursor, Stamped};

/// The header a webhook's signature travels in.
pub const SIGNATURE_HEADER: &str = "daybook-signature";

/// What kind of record it is, as sinks route by it and CloudEvents types name it.
pub fn record_kind(record: &pb::Record) -> &'static str {
    match &record.body {
        Some(Body::Interaction(_)) => "interaction",
        Some(Body::Line(_)) => "line",
        Some(Body::PassThrough(_)) => "pass_through",
        Some(Body::Alert(_)) => "alert",
        Some(Body::DeadLetter(_)) => "dead_letter",
        Some(Body::SettingsChange(_)) => "settings_change",
        Some(Body::Withdrawal(_)) => "withdrawal",
        Some(Body::Void(_)) => "void",
        None => "record",
    }
}

fn time_of(at: Option<i64>) -> String {
    let at = at.map(chrono::DateTime::from_timestamp_nanos).unwrap_or_else(chrono::Utc::now);
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One record as a CloudEvent.
pub fn record_event(source: &str, stamped: &Stamped) -> Value {
    json!({
        "specversion": "1.0",
        "id": stamped.record.record_id,
        "source": source,
        "type": format!("io.daybook.{}.v1", record_kind(&stamped.record)),
        "subject": &*stamped.tenant,
        "time": time_of(stamped.at),
        "datacontenttype": "application/json",
        "data": crate::api::to_json(&stamped.record),
    })
}

fn operational_event(source: &str, event: &OperationalEvent) -> Value {
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": format!("io.daybook.{}.v1", event.kind),
        "time": event.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "data": event.data,
    })
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// A secret or token kept in a file, read at each delivery (a rotated file applies at
/// once), without its surrounding whitespace.
pub(super) fn read_secret(path: &Path) -> Result<String, SinkError> {
    let text = std::fs::read_to_string(path).map_err(|e| SinkError(format!("{}: {e}", path.display())))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(SinkError(format!("{}: empty", path.display())));
    }
    Ok(secret)
}

/// The batch sink and the webhook: CloudEvents over HTTP, the cursor in a file.
pub struct HttpSink {
    spec: Arc<SinkSpec>,
    client: Option<HttpClient>,
    cursor: CursorFile,
}

impl HttpSink {
    pub fn new(spec: Arc<SinkSpec>, data_dir: PathBuf) -> HttpSink {
        let cursor = CursorFile::new(&data_dir, &spec.name);
        HttpSink { spec, client: None, cursor }
    }

    fn client(&mut self) -> Result<&mut HttpClient, SinkError> {
        if self.client.is_none() {
            let (url, ca_file) = match &self.spec.destination {
                Destination::CloudEvents { url, ca_file, .. } | Destination::Webhook { url, ca_file, .. } => {
                    (url.clone(), ca_file.clone())
                }
                _ => unreachable!("an HTTP sink has an HTTP destination"),
            };
            self.client = Some(HttpClient::new(url, ca_file.as_deref())?);
        }
        Ok(self.client.as_mut().expect("set above"))
    }

    async fn post(&mut self, headers: &[(&str, String)], body: Vec<u8>) -> Result<(), SinkError> {
        let answer = self.client()?.post(headers, Bytes::from(body)).await?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(SinkError(format!("the receiver answered {}: {}", answer.status, answer.body.trim())))
    }

    /// One item as a CloudEvent.
    fn event(&self, item: &Item) -> Value {
        match item {
            Item::Record(stamped) => record_event(&self.spec.source, stamped),
            Item::Operational(event) => operational_event(&self.spec.source, event),
        }
    }

    async fn deliver_batch(&mut self, batch: &[Item], token_file: Option<PathBuf>) -> Result<(), SinkError> {
        let events: Vec<Value> = batch.iter().map(|item| self.event(item)).collect();
        let body = serde_json::to_vec(&events).map_err(SinkError::new)?;
        let mut headers = vec![("content-type", "application/cloudevents-batch+json".to_string())];
        if let Some(path) = token_file {
            headers.push(("authorization", format!("Bearer {}", read_secret(&path)?)));
        }
        self.post(&headers, body).await
    }

    async fn deliver_signed(&mut self, batch: &[Item], secret_file: PathBuf) -> Result<(), SinkError> {
        let secret = read_secret(&secret_file)?;
        for item in batch {
            let event = self.event(item);
            let body = serde_json::to_vec(&event).map_err(SinkError::new)?;
            let id = event["id"].as_str().unwrap_or_default().to_string();
            let sig = signature(secret.as_bytes(), chrono::Utc::now().timestamp(), &body);
            let headers = [
                ("content-type", "application/cloudevents+json".to_string()),
                ("webhook-id", id),
                (SIGNATURE_HEADER, sig),
            ];
            self.post(&headers, body).await?;
        }
        Ok(())
    }
}

impl Sink for HttpSink {
    async fn resume(&mut self) -> Result<Cursor, SinkError> {
        self.client()?;
        self.cursor.read()
    }

    async fn deliver(&mut self, batch: &[Item]) -> Result<(), SinkError> {
        match &self.spec.destination {
            Destination::CloudEvents { token_file, .. } => {
                let token_file = token_file.clone();
                self.deliver_batch(batch, token_file).await
            }
            Destination::Webhook { secret_file, .. } => {
                let secret_file = secret_file.clone();
                self.deliver_signed(batch, secret_file).await
            }
            _ => unreachable!("an HTTP sink has an HTTP destination"),
        }
    }

    async fn commit(&mut self, through: Cursor) -> Result<(), SinkError> {
        self.cursor.write(through).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_hmac_sha256_of_the_timestamp_and_body() {
        let hmac = |key: &[u8], text: &[u8]| -> String {
            let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), text);
            tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        };
        assert_eq!(signature(b"Jefe", 17, b"{}"), format!("t=17,v1={}", hmac(b"Jefe", b"17.{}")));
        let a = signature(b"secret", 1_700_000_000, b"{}");
        assert_ne!(a, signature(b"other", 1_700_000_000, b"{}"));
        assert_ne!(a, signature(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(a, signature(b"secret", 1_700_000_000, b"{ }"));
    }

    #[test]
    fn a_record_event_names_its_kind_tenant_and_id() {
        let record = pb::Record {
            record_id: "r1".into(),
            tenant_id: "acme".into(),
            body: Some(Body::Alert(pb::Alert::default())),
            ..Default::default()
        };
        let stamped = Stamped {
            cursor: Cursor { seq: 1, index: 0 },
            tenant: "acme".into(),
            record,
            at: Some(1_700_000_000_000_000_000),
        };
        let event = record_event("daybook://pod-1", &stamped);
        assert_eq!(event["type"], "io.daybook.alert.v1");
        assert_eq!(event["id"], "r1");
        assert_eq!(event["subject"], "acme");
        assert_eq!(event["time"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(event["data"]["tenant_id"], "acme");
    }
}
