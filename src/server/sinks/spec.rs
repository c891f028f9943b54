//! A sink's configuration: one `[[sink]]` table of the config file, checked whole before
//! anything starts. A sink is data (where, which records, how they are batched), not a
//! code path per destination.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where a sink's records go.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// One JSON record per line, appended to a file (the file holds the cursor).
    Jsonl { path: PathBuf },
    /// Batches POSTed as CloudEvents JSON (`application/cloudevents-batch+json`), the form
    /// OpenMeter's ingest API takes; an optional bearer token read from a file.
    CloudEvents { url: http::Uri, token_file: Option<PathBuf>, ca_file: Option<PathBuf> },
    /// One signed CloudEvent per POST (`application/cloudevents+json`): alerts, and the
    /// process's operational events, to a tenant's webhook.
    Webhook { url: http::Uri, secret_file: PathBuf, ca_file: Option<PathBuf> },
    /// Entries appended to a Redis stream (the stream holds the cursor).
    RedisStream { url: String, stream: String, max_len: Option<u64> },
}

impl Destination {
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Jsonl { .. } => "jsonl",
            Destination::CloudEvents { .. } => "cloudevents",
            Destination::Webhook { .. } => "webhook",
            Destination::RedisStream { .. } => "redis_stream",
        }
    }
}

/// One sink: its destination, the records routed to it, and how they are batched.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// Names the sink in metrics, `/ready` and its cursor file.
    pub name: String,
    pub destination: Destination,
    /// Only these tenants' records; empty: every tenant's.
    pub tenants: Vec<String>,
    /// Only records of these kinds (`crate::api::record_kind`); empty: every kind.
    pub records: Vec<String>,
    /// Most records in one delivery.
    pub batch_records: usize,
    /// How long the first record of a batch waits for others.
    pub batch_age: Duration,
    /// One delivery attempt's limit (connecting, sending, the answer).
    pub timeout: Duration,
    /// The CloudEvents `source`: this daybook instance.
    pub source: String,
}

/// The kinds a record may have, as `records` names them.
pub const RECORD_KINDS: &[&str] =
    &["interaction", "line", "pass_through", "alert", "dead_letter", "settings_change", "withdrawal", "void"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    name: String,
    kind: String,
    url: Option<String>,
    path: Option<PathBuf>,
    token_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    stream: Option<String>,
    max_len: Option<u64>,
    tenants: Option<Vec<String>>,
    records: Option<Vec<String>>,
    batch_records: Option<usize>,
    batch_age: Option<String>,
    timeout: Option<String>,
    source: Option<String>,
}

/// This instance as a CloudEvents `source`: the host (the pod's name on Kubernetes).
pub fn default_source() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("daybook://{host}")
}

fn http_url(name: &str, text: Option<String>) -> Result<http::Uri, String> {
    let text = text.ok_or_else(|| format!("sink `{name}`: url is required"))?;
    let url: http::Uri = text.parse().map_err(|e| format!("sink `{name}`: url `{text}`: {e}"))?;
    match (url.scheme_str(), url.host()) {
        (Some("http" | "https"), Some(_)) => Ok(url),
        _ => Err(format!("sink `{name}`: url `{text}` is not an http:// or https:// URL with a host")),
    }
}

fn duration(name: &str, key: &str, text: Option<String>, default: Duration) -> Result<Duration, String> {
    let Some(text) = text else { return Ok(default) };
    crate::rating::time::parse_duration(&text)
        .map_err(|e| e.to_string())
        .and_then(|d| d.to_std().map_err(|_| "must not be negative".to_string()))
        .map_err(|e| format!("sink `{name}`: {key}: {e}"))
}

impl SinkSpec {
    /// A sink of every record to a JSONL file (the `records_jsonl` setting).
    pub fn jsonl(path: PathBuf) -> SinkSpec {
        SinkSpec {
            name: "records_jsonl".into(),
            destination: Destination::Jsonl { path },
            tenants: Vec::new(),
            records: Vec::new(),
            batch_records: 1000,
            batch_age: Duration::ZERO,
            timeout: Duration::from_secs(10),
            source: default_source(),
        }
    }

    /// Whether a record of `tenant` and `kind` goes to this sink.
    pub fn routes(&self, tenant: &str, kind: &str) -> bool {
        (self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant))
            && (self.records.is_empty() || self.records.iter().any(|k| k == kind))
    }
}

/// The `[[sink]]` tables of a config file (its TOML read as a JSON value).
pub fn parse_sinks(value: &serde_json::Value) -> Result<Vec<SinkSpec>, String> {
    let Some(tables) = value.get("sink") else { return Ok(Vec::new()) };
    let tables: Vec<Table> = serde_json::from_value(tables.clone()).map_err(|e| format!("[[sink]]: {e}"))?;
    let mut sinks: Vec<SinkSpec> = Vec::new();
    for table in tables {
        let spec = parse_one(table)?;
        if sinks.iter().any(|s| s.name == spec.name) || spec.name == "records_jsonl" {
            return Err(format!("sink `{}`: the name is taken", spec.name));
        }
        sinks.push(spec);
    }
    Ok(sinks)
}

fn parse_one(t: Table) -> Result<SinkSpec, String> {
    let name = t.name;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("sink `{name}`: a name is letters, digits, `-` and `_`"));
    }
    let needs = |what: &str, v: Option<PathBuf>| v.ok_or_else(|| format!("sink `{name}`: {what} is required"));
    let (destination, batch_records, batch_age, records) = match t.kind.as_str() {
        "jsonl" => (Destination::Jsonl { path: needs("path", t.path)? }, 1000, Duration::ZERO, Vec::new()),
        "cloudevents" => {
            let url = http_url(&name, t.url)?;
            let d = Destination::CloudEvents { url, token_file: t.token_file, ca_file: t.ca_file };
            (d, 500, Duration::from_secs(1), Vec::new())
        }
        "webhook" => {
            let url = http_url(&name, t.url)?;
            let d = Destination::Webhook { url, secret_file: needs("secret_file", t.secret_file)?, ca_file: t.ca_file };
            (d, 1, Duration::ZERO, vec!["alert".to_string()])
        }
        "redis_stream" => {
            let url = t.url.ok_or_else(|| format!("sink `{name}`: url is required"))?;
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return Err(format!("sink `{name}`: url must be redis:// or rediss://"));
            }
            let stream = t.stream.unwrap_or_else(|| "daybook:records".to_string());
            (Destination::RedisStream { url, stream, max_len: t.max_len }, 500, Duration::ZERO, Vec::new())
        }
        other => {
            return Err(format!(
                "sink `{name}`: kind `{other}` is not one of jsonl, cloudevents, webhook, redis_stream"
            ));
        }
    };
    let records = t.records.unwrap_or(records);
    if let Some(bad) = records.iter().find(|k| !RECORD_KINDS.contains(&k.as_str())) {
        return Err(format!("sink `{name}`: records: `{bad}` is not one of {}", RECORD_KINDS.join(", ")));
    }
    let batch_records = t.batch_records.unwrap_or(batch_records);
    if batch_records == 0 || batch_records > 10_000 {
        return Err(format!("sink `{name}`: batch_records must be 1 to 10000"));
    }
    Ok(SinkSpec {
        batch_age: duration(&name, "batch_age", t.batch_age, batch_age)?,
        timeout: duration(&name, "timeout", t.timeout, Duration::from_secs(10))?,
        source: t.source.unwrap_or_else(default_source),
        tenants: t.tenants.unwrap_or_default(),
        records,
        batch_records,
        destination,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SinkSpec>, String> {
        parse_sinks(&toml::from_str::<serde_json::Value>(text).unwrap())
    }

    #[test]
    fn a_cloudevents_sink_takes_its_defaults_and_routes_by_tenant() {
        let sinks = parse(
            "[[sink]]\nname = \"om\"\nkind = \"cloudevents\"\nurl = \"https://meter.example/api/v1/events\"\n\
             tenants = [\"acme\"]\ntoken_file = \"/run/token\"\n",
        )
        .unwrap();
        let om = &sinks[0];
        assert_eq!((om.batch_records, om.batch_age), (500, Duration::from_secs(1)));
        assert!(om.routes("acme", "line") && !om.routes("globex", "line"));
        assert!(matches!(&om.destination, Destination::CloudEvents { token_file: Some(_), .. }));
    }

    #[test]
    fn a_webhook_carries_alerts_and_needs_a_secret() {
        let ok =
            parse("[[sink]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://h/x\"\nsecret_file = \"/s\"\n").unwrap();
        assert!(ok[0].routes("any", "alert") && !ok[0].routes("any", "line"));
        let e = parse("[[sink]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://h/x\"\n").unwrap_err();
        assert!(e.contains("secret_file is required"), "{e}");
    }

    #[test]
    fn bad_sinks_are_named() {
        for (text, says) in [
            ("[[sink]]\nname = \"a\"\nkind = \"ftp\"\n", "kind `ftp`"),
            ("[[sink]]\nname = \"a\"\nkind = \"cloudevents\"\nurl = \"ftp://x/\"\n", "not an http"),
            ("[[sink]]\nname = \"a b\"\nkind = \"jsonl\"\npath = \"x\"\n", "a name is"),
            ("[[sink]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"x\"\nrecords = [\"bill\"]\n", "`bill`"),
            ("[[sink]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"x\"\ncolour = 1\n", "unknown field"),
            (
                "[[sink]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"x\"\n[[sink]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"y\"\n",
                "taken",
            ),
            (
                "[[sink]]\nname = \"a\"\nkind = \"cloudevents\"\nurl = \"http://h/\"\nbatch_age = \"soon\"\n",
                "batch_age",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
