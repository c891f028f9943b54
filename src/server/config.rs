//! Configuration: a pure function of the config file's text, the environment and the
//! flags, validated completely before anything is bound. A bad configuration names the
//! offending key, and `daybook serve` exits 64 (EX_USAGE).
//!
//! Precedence: flags, then environment (`DAYBOOK_*`), then the file, then defaults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::journal::Durability;
use super::telemetry::TelemetryConfig;
use super::tls::{ClientAuth, TlsFiles};
use crate::rating::settings::TenantSpec;
use crate::rating::time;
use crate::store::redis::{RedisConfig, RedisTls};

/// Everything `daybook serve` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// TCP address of the gRPC API; `None` disables TCP (Unix socket only).
    pub listen: Option<SocketAddr>,
    /// Unix domain socket of the gRPC API (the same-pod sidecar case).
    pub uds: Option<PathBuf>,
    /// Permissions of the Unix socket: owner-only unless a pod's containers share a group.
    pub uds_mode: u32,
    /// TCP address serving only gRPC health, for probes; `None` disables it.
    pub health_listen: Option<SocketAddr>,
    /// Admin HTTP address (`/live`, `/ready`, `/metrics`); `None` disables it.
    pub admin: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Also append every record to this JSONL file.
    pub records_jsonl: Option<PathBuf>,
    /// Most events in one batch request.
    pub max_batch: usize,
    /// Largest request message, bytes.
    pub max_message_bytes: usize,
    /// No call runs longer than this, whatever deadline the client asks for.
    pub deadline_ceiling: Duration,
    /// How long shutdown waits for in-flight calls.
    pub grace_period: Duration,
    /// A snapshot is written when this many journal entries follow the last one...
    pub snapshot_entries: u64,
    /// ...or when this long has passed and any entry follows it.
    pub snapshot_interval: Duration,
    /// The config file, watched for tenant changes.
    pub config_file: Option<PathBuf>,
    /// Tenants defined by the file.
    pub tenants: Vec<TenantSpec>,
    /// OTLP export and metric labels.
    pub telemetry: TelemetryConfig,
    /// The shared store: replicas that name the same Redis meter as one.
    pub redis: Option<RedisConfig>,
    /// The credentials file (tokens' hashes, client-certificate names, tenant scopes);
    /// `None`: every caller may do everything.
    pub auth_file: Option<PathBuf>,
    /// Serve TCP beyond loopback without authentication, knowingly.
    pub insecure: bool,
    /// TLS on the gRPC TCP listener.
    pub tls: Option<TlsFiles>,
    /// Bytes the process may use (Redis mode): the near cache forgets entries to stay
    /// under it, since the store has them all.
    pub memory_ceiling: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
            uds: None,
            uds_mode: 0o600,
            health_listen: None,
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            data_dir: PathBuf::from("daybook-data"),
            durability: Durability::Write,
            records_jsonl: None,
            max_batch: 1000,
            max_message_bytes: 4 << 20,
            deadline_ceiling: Duration::from_secs(10),
            grace_period: Duration::from_secs(15),
            snapshot_entries: 1_000_000,
            snapshot_interval: Duration::from_secs(600),
            config_file: None,
            tenants: Vec::new(),
            telemetry: TelemetryConfig::default(),
            redis: None,
            auth_file: None,
            insecure: false,
            tls: None,
            memory_ceiling: None,
        }
    }
}

/// Settings given on the command line (each also a config key and an environment
/// variable).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Option<String>,
    pub uds: Option<String>,
    pub health_listen: Option<String>,
    pub admin: Option<String>,
    pub data_dir: Option<String>,
    pub config: Option<String>,
    pub durability: Option<String>,
    pub records_jsonl: Option<String>,
    pub redis: Option<String>,
    pub auth_file: Option<String>,
    pub insecure: bool,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_client_ca: Option<String>,
    pub memory_ceiling: Option<String>,
}

/// A configuration error, naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), reason: reason.into() }
}

/// The server keys of the file's `[server]` table, their environment variables and flags.
const KEYS: &[(&str, &str)] = &[
    ("listen", "DAYBOOK_LISTEN"),
    ("uds", "DAYBOOK_UDS"),
    ("uds_mode", "DAYBOOK_UDS_MODE"),
    ("health_listen", "DAYBOOK_HEALTH_LISTEN"),
    ("admin", "DAYBOOK_ADMIN"),
    ("data_dir", "DAYBOOK_DATA_DIR"),
    ("durability", "DAYBOOK_DURABILITY"),
    ("records_jsonl", "DAYBOOK_RECORDS_JSONL"),
    ("max_batch", "DAYBOOK_MAX_BATCH"),
    ("max_message_bytes", "DAYBOOK_MAX_MESSAGE_BYTES"),
    ("deadline_ceiling", "DAYBOOK_DEADLINE_CEILING"),
    ("grace_period", "DAYBOOK_GRACE_PERIOD"),
    ("snapshot_entries", "DAYBOOK_SNAPSHOT_ENTRIES"),
    ("snapshot_interval", "DAYBOOK_SNAPSHOT_INTERVAL"),
    ("otlp_endpoint", "DAYBOOK_OTLP_ENDPOINT"),
    ("otlp_interval", "DAYBOOK_OTLP_INTERVAL"),
    ("metrics_tenant_label", "DAYBOOK_METRICS_TENANT_LABEL"),
    ("redis_url", "DAYBOOK_REDIS_URL"),
    ("redis_timeout", "DAYBOOK_REDIS_TIMEOUT"),
    ("redis_ca_file", "DAYBOOK_REDIS_CA_FILE"),
    ("redis_client_cert", "DAYBOOK_REDIS_CLIENT_CERT"),
    ("redis_client_key", "DAYBOOK_REDIS_CLIENT_KEY"),
    ("auth_file", "DAYBOOK_AUTH_FILE"),
    ("insecure", "DAYBOOK_INSECURE"),
    ("tls_cert", "DAYBOOK_TLS_CERT"),
    ("tls_key", "DAYBOOK_TLS_KEY"),
    ("tls_client_ca", "DAYBOOK_TLS_CLIENT_CA"),
    ("tls_client_auth", "DAYBOOK_TLS_CLIENT_AUTH"),
    ("memory_ceiling", "DAYBOOK_MEMORY_CEILING"),
];

/// Computes the configuration. `read_file` reads the config file (injected so tests need
/// no files); `env` is the process environment (or a map in tests).
pub fn load(
    flags: &Flags,
    env: &HashMap<String, String>,
    read_file: impl Fn(&str) -> Result<String, String>,
) -> Result<Config, ConfigError> {
    let config_path = flags.config.clone().or_else(|| env.get("DAYBOOK_CONFIG").cloned());
    let mut file_server = serde_json::Map::new();
    let mut tenants = Vec::new();
    if let Some(path) = &config_path {
        let text = read_file(path).map_err(|e| err("config", format!("{path}: {e}")))?;
        let value: Value = toml::from_str(&text).map_err(|e| err("config", format!("{path}: not valid TOML: {e}")))?;
        if let Some(server) = value.get("server") {
            file_server = server.as_object().cloned().ok_or_else(|| err("server", "must be a table"))?;
            for key in file_server.keys() {
                if !KEYS.iter().any(|(k, _)| k == key) {
                    return Err(err(&format!("server.{key}"), "unknown key"));
                }
            }
        }
        for key in value.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if key != "server" && key != "tenant" {
                return Err(err(&key, "unknown table (expected [server] and [[tenant]])"));
            }
        }
        tenants = crate::tenants::parse_tenants_toml(&text).map_err(|e| err("tenant", e))?;
    }
    let flag_value = |key: &str| -> Option<String> {
        match key {
            "listen" => flags.listen.clone(),
            "uds" => flags.uds.clone(),
            "health_listen" => flags.health_listen.clone(),
            "admin" => flags.admin.clone(),
            "data_dir" => flags.data_dir.clone(),
            "durability" => flags.durability.clone(),
            "records_jsonl" => flags.records_jsonl.clone(),
            "redis_url" => flags.redis.clone(),
            "auth_file" => flags.auth_file.clone(),
            "insecure" => flags.insecure.then(|| "true".to_string()),
            "tls_cert" => flags.tls_cert.clone(),
            "tls_key" => flags.tls_key.clone(),
            "tls_client_ca" => flags.tls_client_ca.clone(),
            "memory_ceiling" => flags.memory_ceiling.clone(),
            _ => None,
        }
    };
    // The effective text of each key, and where it came from (for error messages).
    let mut values: HashMap<&str, (String, String)> = HashMap::new();
    for (key, var) in KEYS {
        if let Some(v) = flag_value(key) {
            let flag = if *key == "redis_url" { "redis" } else { key };
            values.insert(key, (v, format!("--{}", flag.replace('_', "-"))));
        } else if let Some(v) = env.get(*var) {
            values.insert(key, (v.clone(), var.to_string()));
        } else if *key == "otlp_endpoint"
            && let Some(v) = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            && !file_server.contains_key(*key)
        {
            // The OpenTelemetry SDKs' own variable, honoured when nothing daybook's says.
            values.insert(key, (v.clone(), "OTEL_EXPORTER_OTLP_ENDPOINT".to_string()));
        } else if let Some(v) = file_server.get(*key) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            values.insert(key, (text, format!("server.{key}")));
        }
    }

    let mut redis_timeout = None;
    let mut redis_tls = RedisTls::default();
    let (mut tls_cert, mut tls_key, mut tls_client_ca, mut tls_client_auth) = (None, None, None, None);
    let path = |text: &str| (!text.is_empty()).then(|| PathBuf::from(text));
    let source_of = |key: &str| values.get(key).map(|(_, s)| s.clone()).unwrap_or_else(|| key.to_string());
    let mut config = Config { config_file: config_path.map(PathBuf::from), tenants, ..Config::default() };
    let addr = |source: &str, text: &str| -> Result<Option<SocketAddr>, ConfigError> {
        if text.is_empty() || text == "off" {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| err(source, format!("`{text}` is not HOST:PORT (an IP address and a port)")))
    };
    let duration = |source: &str, text: &str| -> Result<Duration, ConfigError> {
        let d = time::parse_duration(text).map_err(|e| err(source, e.to_string()))?;
        d.to_std().map_err(|_| err(source, "must not be negative"))
    };
    let boolean = |source: &str, text: &str| -> Result<bool, ConfigError> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(err(source, "expected `true` or `false`")),
        }
    };
    let number = |source: &str, text: &str| -> Result<usize, ConfigError> {
        text.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| err(source, "expected a positive whole number"))
    };
    for (key, (text, source)) in &values {
        match *key {
            "listen" => config.listen = addr(source, text)?,
            "admin" => config.admin = addr(source, text)?,
            "uds" => config.uds = (!text.is_empty()).then(|| PathBuf::from(text)),
            "uds_mode" => {
                config.uds_mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m & 0o600 == 0o600 && *m & 0o007 == 0 && *m <= 0o777)
                    .ok_or_else(|| {
                        err(source, "expected octal permissions the owner can use and others cannot: 0600 or 0660")
                    })?
            }
            "health_listen" => config.health_listen = addr(source, text)?,
            "redis_url" if text.is_empty() || text == "off" => {}
            "redis_url" => {
                let redis = RedisConfig::new(text);
                redis.validate().map_err(|e| err(source, e))?;
                let timeout = config.redis.as_ref().map(|r| r.timeout);
                config.redis = Some(RedisConfig { timeout: timeout.unwrap_or(redis.timeout), ..redis });
            }
            "redis_timeout" => {
                let timeout = duration(source, text)?;
                if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
                    return Err(err(
                        source,
                        "expected a deadline from 1 ms to 10 s (tens of milliseconds suit a sidecar)",
                    ));
                }
                redis_timeout = Some(timeout);
            }
            "redis_ca_file" => redis_tls.ca_file = path(text),
            "redis_client_cert" => redis_tls.client_cert = path(text),
            "redis_client_key" => redis_tls.client_key = path(text),
            "auth_file" => config.auth_file = path(text),
            "insecure" => config.insecure = boolean(source, text)?,
            "memory_ceiling" if text.is_empty() || text == "off" => {}
            "memory_ceiling" => {
                let bytes = parse_bytes(text).ok_or_else(|| {
                    err(source, "expected a size such as 256MiB, 2GiB or a number of bytes (at least 64MiB)")
                })?;
                if bytes < 64 << 20 {
                    return Err(err(source, "at least 64MiB: the process itself needs some"));
                }
                config.memory_ceiling = Some(bytes);
            }
            "tls_cert" => tls_cert = path(text),
            "tls_key" => tls_key = path(text),
            "tls_client_ca" => tls_client_ca = path(text),
            "tls_client_auth" => {
                tls_client_auth = Some(match text.as_str() {
                    "required" => ClientAuth::Required,
                    "optional" => ClientAuth::Optional,
                    _ => return Err(err(source, "expected `required` or `optional`")),
                })
            }
            "data_dir" => {
                if text.is_empty() {
                    return Err(err(source, "must not be empty"));
                }
                config.data_dir = PathBuf::from(text)
            }
            "durability" => {
                config.durability = match text.as_str() {
                    "write" => Durability::Write,
                    "fsync" => Durability::Fsync,
                    _ => return Err(err(source, "expected `write` or `fsync`")),
                }
            }
            "records_jsonl" => config.records_jsonl = (!text.is_empty()).then(|| PathBuf::from(text)),
            "max_batch" => config.max_batch = number(source, text)?.min(100_000),
            "max_message_bytes" => config.max_message_bytes = number(source, text)?,
            "deadline_ceiling" => config.deadline_ceiling = duration(source, text)?,
            "grace_period" => config.grace_period = duration(source, text)?,
            "snapshot_entries" => config.snapshot_entries = number(source, text)? as u64,
            "snapshot_interval" => config.snapshot_interval = duration(source, text)?,
            "otlp_endpoint" => {
                config.telemetry.otlp_endpoint = match text.as_str() {
                    "" | "off" => None,
                    t if t.starts_with("http://") && t.len() > "http://".len() => Some(t.to_string()),
                    t if t.starts_with("https://") => {
                        return Err(err(source, "TLS to the collector is not built in: use a collector on http://"));
                    }
                    _ => return Err(err(source, "expected an OTLP/gRPC URL, http://HOST:PORT")),
                }
            }
            "otlp_interval" => config.telemetry.otlp_interval = duration(source, text)?,
            "metrics_tenant_label" => config.telemetry.tenant_label = boolean(source, text)?,
            _ => unreachable!("every key of KEYS is handled"),
        }
    }
    match (&mut config.redis, redis_timeout) {
        (Some(redis), Some(timeout)) => redis.timeout = timeout,
        (None, Some(_)) => return Err(err("redis_timeout", "set without redis_url")),
        _ => {}
    }
    if config.memory_ceiling.is_some() && config.redis.is_none() {
        return Err(err(
            &source_of("memory_ceiling"),
            "needs redis_url: the near cache forgets only what Redis keeps; in embedded mode the hot maps are \
             the state itself",
        ));
    }
    if redis_tls != RedisTls::default() {
        let key = ["redis_ca_file", "redis_client_cert", "redis_client_key"]
            .into_iter()
            .find(|k| values.contains_key(k))
            .map(source_of)
            .unwrap_or_default();
        let Some(redis) = &mut config.redis else {
            return Err(err(&key, "set without redis_url"));
        };
        if !redis.url.starts_with("rediss://") && !redis.url.starts_with("rediss+cluster://") {
            return Err(err(&key, "TLS files for Redis need a rediss:// (or rediss+cluster://) URL"));
        }
        if redis_tls.client_cert.is_some() != redis_tls.client_key.is_some() {
            return Err(err(&key, "redis_client_cert and redis_client_key go together"));
        }
        redis.tls = redis_tls;
    }
    match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => {
            if config.listen.is_none() {
                return Err(err(&source_of("tls_cert"), "TLS is for the TCP listener, and `listen` is off"));
            }
            config.tls = Some(TlsFiles {
                cert,
                key,
                client_auth: tls_client_auth.unwrap_or(ClientAuth::Required),
                client_ca: tls_client_ca,
            });
        }
        (None, None) if tls_client_ca.is_some() => {
            return Err(err(&source_of("tls_client_ca"), "client certificates need TLS: set tls_cert and tls_key"));
        }
        (None, None) if tls_client_auth.is_some() => {
            return Err(err(&source_of("tls_client_auth"), "set without tls_client_ca"));
        }
        (None, None) => {}
        (Some(_), None) => return Err(err(&source_of("tls_cert"), "set without tls_key")),
        (None, Some(_)) => return Err(err(&source_of("tls_key"), "set without tls_cert")),
    }
    if let Some(tls) = &config.tls
        && tls.client_ca.is_none()
        && tls_client_auth.is_some()
    {
        return Err(err(&source_of("tls_client_auth"), "set without tls_client_ca"));
    }
    // A TCP listener other hosts can reach is open to every workload of the cluster:
    // billing data and tenant settings need a credential there, unless told otherwise.
    if let Some(addr) = config.listen
        && !addr.ip().is_loopback()
        && config.auth_file.is_none()
        && !config.insecure
    {
        return Err(err(
            &source_of("listen"),
            format!(
                "{addr} is reachable from other hosts: set auth_file (bearer tokens, client certificates) \
                 or, knowingly, insecure = true (--insecure)"
            ),
        ));
    }
    if config.listen.is_none() && config.uds.is_none() {
        return Err(err("listen", "neither a TCP address nor a Unix socket: daybook would be unreachable"));
    }
    if config.deadline_ceiling.is_zero() {
        return Err(err("deadline_ceiling", "must be positive"));
    }
    if config.telemetry.otlp_interval < Duration::from_secs(1) {
        return Err(err("otlp_interval", "must be at least one second"));
    }
    if config.snapshot_interval < Duration::from_secs(1) {
        return Err(err("snapshot_interval", "must be at least one second"));
    }
    Ok(config)
}

/// `256MiB`, `2GiB`, `512MB`, or bytes.
fn parse_bytes(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match &text[digits.len()..] {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(text: &'static str) -> impl Fn(&str) -> Result<String, String> {
        move |_| Ok(text.to_string())
    }

    #[test]
    fn defaults_need_nothing() {
        let c = load(&Flags::default(), &HashMap::new(), |_| Err("no file".into())).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file = "[server]\nlisten = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:2\"\ndata_dir = \"/f\"\n";
        let env = HashMap::from([
            ("DAYBOOK_ADMIN".to_string(), "127.0.0.1:3".to_string()),
            ("DAYBOOK_CONFIG".to_string(), "x".to_string()),
        ]);
        let flags = Flags { listen: Some("127.0.0.1:4".into()), ..Flags::default() };
        let c = load(&flags, &env, files(file)).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:4".parse().unwrap()));
        assert_eq!(c.admin, Some("127.0.0.1:3".parse().unwrap()));
        assert_eq!(c.data_dir, PathBuf::from("/f"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let env = HashMap::from([("DAYBOOK_DURABILITY".to_string(), "sometimes".to_string())]);
        assert_eq!(load(&Flags::default(), &env, files("")).unwrap_err().key, "DAYBOOK_DURABILITY");
        let flags = Flags { config: Some("c.toml".into()), ..Flags::default() };
        assert_eq!(load(&flags, &HashMap::new(), files("[server]\nlisen = \"x\"\n")).unwrap_err().key, "server.lisen");
        assert_eq!(
            load(&flags, &HashMap::new(), files("[server]\ngrace_period = \"soon\"\n")).unwrap_err().key,
            "server.grace_period"
        );
        let bad_tenant = "[[tenant]]\nid = \"a\"\ntime_zone = \"UTC\"\nsettings = { colour = 1 }\n";
        let e = load(&flags, &HashMap::new(), files(bad_tenant)).unwrap_err();
        assert!(e.reason.contains("colour"), "{e}");
        let flags = Flags { listen: Some("nowhere".into()), ..Flags::default() };
        assert_eq!(load(&flags, &HashMap::new(), files("")).unwrap_err().key, "--listen");
    }

    #[test]
    fn otlp_endpoint_from_daybook_or_the_sdk_variable() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let none = |_: &str| Err("no file".to_string());
        let c = load(&Flags::default(), &env(&[]), none).unwrap();
        assert_eq!(c.telemetry.otlp_endpoint, None);
        let sdk = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]);
        let c = load(&Flags::default(), &sdk, none).unwrap();
        assert_eq!(c.telemetry.otlp_endpoint.as_deref(), Some("http://collector:4317"));
        let both = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"), ("DAYBOOK_OTLP_ENDPOINT", "off")]);
        assert_eq!(load(&Flags::default(), &both, none).unwrap().telemetry.otlp_endpoint, None);
        let tls = env(&[("DAYBOOK_OTLP_ENDPOINT", "https://collector:4317")]);
        assert_eq!(load(&Flags::default(), &tls, none).unwrap_err().key, "DAYBOOK_OTLP_ENDPOINT");
        let label = env(&[("DAYBOOK_METRICS_TENANT_LABEL", "yes")]);
        assert_eq!(load(&Flags::default(), &label, none).unwrap_err().key, "DAYBOOK_METRICS_TENANT_LABEL");
        let flags = Flags { config: Some("c.toml".into()), ..Flags::default() };
        let file = |_: &str| Ok("[server]\notlp_interval = \"PT0.5S\"\n".to_string());
        assert_eq!(load(&flags, &env(&[]), file).unwrap_err().key, "otlp_interval");
    }

    #[test]
    fn security_and_memory_keys_are_checked_together() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let none = |_: &str| Err("no file".to_string());
        let load_env = |pairs: &[(&str, &str)]| load(&Flags::default(), &env(pairs), none);
        // Beyond loopback: credentials or --insecure.
        assert_eq!(load_env(&[("DAYBOOK_LISTEN", "0.0.0.0:50051")]).unwrap_err().key, "DAYBOOK_LISTEN");
        assert!(load_env(&[("DAYBOOK_LISTEN", "0.0.0.0:50051"), ("DAYBOOK_INSECURE", "true")]).unwrap().insecure);
        let c = load_env(&[("DAYBOOK_LISTEN", "[::]:50051"), ("DAYBOOK_AUTH_FILE", "/c.toml")]).unwrap();
        assert_eq!(c.auth_file, Some(PathBuf::from("/c.toml")));
        assert_eq!(load_env(&[("DAYBOOK_INSECURE", "yes")]).unwrap_err().key, "DAYBOOK_INSECURE");
        // TLS files come in pairs, and client certificates need TLS.
        assert_eq!(load_env(&[("DAYBOOK_TLS_CERT", "/c")]).unwrap_err().key, "DAYBOOK_TLS_CERT");
        assert_eq!(load_env(&[("DAYBOOK_TLS_CLIENT_CA", "/ca")]).unwrap_err().key, "DAYBOOK_TLS_CLIENT_CA");
        let tls = [("DAYBOOK_TLS_CERT", "/c"), ("DAYBOOK_TLS_KEY", "/k"), ("DAYBOOK_TLS_CLIENT_AUTH", "optional")];
        assert_eq!(load_env(&tls).unwrap_err().key, "DAYBOOK_TLS_CLIENT_AUTH");
        let c = load_env(&[tls[0], tls[1], ("DAYBOOK_TLS_CLIENT_CA", "/ca")]).unwrap().tls.unwrap();
        assert_eq!((c.client_auth, c.client_ca), (ClientAuth::Required, Some(PathBuf::from("/ca"))));
        // Redis TLS files need a rediss:// URL.
        let plain = [("DAYBOOK_REDIS_URL", "redis://r:6379"), ("DAYBOOK_REDIS_CA_FILE", "/ca")];
        assert_eq!(load_env(&plain).unwrap_err().key, "DAYBOOK_REDIS_CA_FILE");
        let c = load_env(&[("DAYBOOK_REDIS_URL", "rediss://r:6379"), ("DAYBOOK_REDIS_CA_FILE", "/ca")]).unwrap();
        assert_eq!(c.redis.unwrap().tls.ca_file, Some(PathBuf::from("/ca")));
        // A memory ceiling bounds the near cache, so it needs Redis.
        assert_eq!(load_env(&[("DAYBOOK_MEMORY_CEILING", "256MiB")]).unwrap_err().key, "DAYBOOK_MEMORY_CEILING");
        let c = load_env(&[("DAYBOOK_MEMORY_CEILING", "256MiB"), ("DAYBOOK_REDIS_URL", "redis://r:1")]).unwrap();
        assert_eq!(c.memory_ceiling, Some(256 << 20));
        for bad in ["lots", "12XB", "1MiB"] {
            let e = load_env(&[("DAYBOOK_MEMORY_CEILING", bad), ("DAYBOOK_REDIS_URL", "redis://r:1")]).unwrap_err();
            assert_eq!(e.key, "DAYBOOK_MEMORY_CEILING", "{bad}");
        }
    }

    #[test]
    fn socket_mode_and_the_redis_url_are_checked() {
        let env = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        let none = |_: &str| Err("no file".to_string());
        assert_eq!(load(&Flags::default(), &env("DAYBOOK_UDS_MODE", "0660"), none).unwrap().uds_mode, 0o660);
        for bad in ["0666", "0400", "rw", "1777"] {
            let e = load(&Flags::default(), &env("DAYBOOK_UDS_MODE", bad), none).unwrap_err();
            assert_eq!(e.key, "DAYBOOK_UDS_MODE", "{bad}");
        }
        let c = load(&Flags::default(), &env("DAYBOOK_REDIS_URL", "redis://r:6379"), none).unwrap();
        assert_eq!(c.redis, Some(RedisConfig::new("redis://r:6379")));
        let cluster = env("DAYBOOK_REDIS_URL", "redis+cluster://a:7000,b:7001");
        assert_eq!(
            load(&Flags::default(), &cluster, none).unwrap().redis.unwrap().url,
            "redis+cluster://a:7000,b:7001"
        );
        let e = load(&Flags::default(), &env("DAYBOOK_REDIS_URL", "http://r:6379"), none).unwrap_err();
        assert_eq!(e.key, "DAYBOOK_REDIS_URL");
        assert!(load(&Flags::default(), &env("DAYBOOK_REDIS_URL", ""), none).unwrap().redis.is_none());
        let flags = Flags { redis: Some("redis://f:1".into()), ..Flags::default() };
        let both = HashMap::from([
            ("DAYBOOK_REDIS_URL".to_string(), "redis://e:1".to_string()),
            ("DAYBOOK_REDIS_TIMEOUT".to_string(), "PT0.02S".to_string()),
        ]);
        let c = load(&flags, &both, none).unwrap().redis.unwrap();
        assert_eq!((c.url.as_str(), c.timeout), ("redis://f:1", Duration::from_millis(20)));
        let e = load(&Flags::default(), &env("DAYBOOK_REDIS_TIMEOUT", "PT0.02S"), none).unwrap_err();
        assert_eq!(e.key, "redis_timeout");
    }
}
