//! Configuration: a pure function of the config file's text, the environment and the
//! flags, validated completely before anything is bound. A bad configuration names the
//! offending key, and `daybook serve` exits 64 (EX_USAGE).
//!
//! Precedence: flags, then environment (`DAYBOOK_*`), then the file, then defaults.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

mod keys;

use keys::Draft;
pub use keys::{Flag, KEYS, Key};

use super::journal::Durability;
use super::telemetry::TelemetryConfig;
use super::tls::{ClientAuth, TlsFiles};
use crate::rating::settings::TenantSpec;
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
    /// Record sinks (`[[sink]]` tables of the config file).
    pub sinks: Vec<super::sinks::SinkSpec>,
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
    /// The oldest records a `WatchRecords` client may resume from: journal segments older
    /// than this (and covered by a snapshot, and by no open period) are deleted.
    pub record_retention: Duration,
    /// The size at which a journal segment is closed and the next begun.
    pub journal_segment_bytes: u64,
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
    /// Redis mode: which tenants follow a tenant log (`store::log`).
    pub redis_tenant_log: crate::rating::LogPolicy,
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
            sinks: Vec::new(),
            max_batch: 1000,
            max_message_bytes: 4 << 20,
            deadline_ceiling: Duration::from_secs(10),
            grace_period: Duration::from_secs(15),
            snapshot_entries: 1_000_000,
            snapshot_interval: Duration::from_secs(600),
            record_retention: Duration::from_secs(7 * 86_400),
            journal_segment_bytes: crate::server::journal::SEGMENT_BYTES,
            config_file: None,
            tenants: Vec::new(),
            telemetry: TelemetryConfig::default(),
            redis: None,
            auth_file: None,
            insecure: false,
            tls: None,
            memory_ceiling: None,
            redis_tenant_log: crate::rating::LogPolicy::WhenNeeded,
        }
    }
}

/// Settings given on the command line, by key: the `--config` file, and the value of
/// each key of [`KEYS`] that has a flag (a switch's is `true`).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<String>,
    pub values: BTreeMap<&'static str, String>,
}

impl Flags {
    /// These flags and `--KEY VALUE` (for tests and tools).
    pub fn with(mut self, key: &'static str, value: &str) -> Flags {
        self.values.insert(key, value.to_string());
        self
    }
}

/// The flags of `daybook serve`, derived from [`KEYS`]: one per key that has a flag, and
/// `--config`. Each help names the key's environment variable and file key.
impl clap::Args for Flags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let config = clap::Arg::new("config")
            .long("config")
            .value_name("FILE")
            .help("config file (TOML: [server] and [[tenant]]) [env DAYBOOK_CONFIG]");
        KEYS.iter().fold(cmd.arg(config), |cmd, key| {
            let Some(long) = key.long() else { return cmd };
            let help = format!("{} [env {}, key server.{}]", key.help, key.env(), key.name);
            let arg = clap::Arg::new(key.name).long(long).help(help);
            cmd.arg(match key.flag {
                Flag::Switch(_) => arg.action(clap::ArgAction::SetTrue),
                _ => arg.value_name("VALUE"),
            })
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for Flags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Flags { config: matches.get_one::<String>("config").cloned(), values: BTreeMap::new() };
        for key in KEYS.iter().filter(|k| k.flag != Flag::None) {
            if matches!(key.flag, Flag::Switch(_)) {
                if matches.get_flag(key.name) {
                    flags.values.insert(key.name, "true".to_string());
                }
            } else if let Some(value) = matches.get_one::<String>(key.name) {
                flags.values.insert(key.name, value.clone());
            }
        }
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
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

/// What the config file holds beside `[server]`.
#[derive(Default)]
struct FileTables {
    tenants: Vec<TenantSpec>,
    sinks: Vec<super::sinks::SinkSpec>,
}

/// The config file's `[server]` table, its tenants and its sinks.
fn read_config_file(
    path: &str,
    read_file: impl Fn(&str) -> Result<String, String>,
) -> Result<(serde_json::Map<String, Value>, FileTables), ConfigError> {
    let text = read_file(path).map_err(|e| err("config", format!("{path}: {e}")))?;
    let value: Value = toml::from_str(&text).map_err(|e| err("config", format!("{path}: not valid TOML: {e}")))?;
    let mut server = serde_json::Map::new();
    if let Some(table) = value.get("server") {
        server = table.as_object().cloned().ok_or_else(|| err("server", "must be a table"))?;
        if let Some(key) = server.keys().find(|key| !KEYS.iter().any(|k| k.name == key.as_str())) {
            return Err(err(&format!("server.{key}"), "unknown key"));
        }
    }
    if let Some(key) =
        value.as_object().and_then(|o| o.keys().find(|k| !["server", "tenant", "sink"].contains(&k.as_str())))
    {
        return Err(err(key, "unknown table (expected [server], [[tenant]] and [[sink]])"));
    }
    let tenants = crate::tenants::parse_tenants_toml(&text).map_err(|e| err("tenant", e))?;
    let sinks = super::sinks::spec::parse_sinks(&value).map_err(|e| err("sink", e))?;
    Ok((server, FileTables { tenants, sinks }))
}

/// The effective text of each key that is set, and where it came from (named in errors):
/// flags, then environment, then the file.
fn effective_values(
    flags: &Flags,
    env: &HashMap<String, String>,
    file_server: &serde_json::Map<String, Value>,
) -> BTreeMap<&'static str, (String, String)> {
    let mut values = BTreeMap::new();
    for key in KEYS {
        if let Some(v) = flags.values.get(key.name) {
            let long = key.long().unwrap_or(key.name);
            values.insert(key.name, (v.clone(), format!("--{long}")));
        } else if let Some(v) = env.get(&key.env()) {
            values.insert(key.name, (v.clone(), key.env()));
        } else if key.name == "otlp_endpoint"
            && let Some(v) = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            && !file_server.contains_key(key.name)
        {
            // The OpenTelemetry SDKs' own variable, honoured when nothing daybook's says.
            values.insert(key.name, (v.clone(), "OTEL_EXPORTER_OTLP_ENDPOINT".to_string()));
        } else if let Some(v) = file_server.get(key.name) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            values.insert(key.name, (text, format!("server.{}", key.name)));
        }
    }
    values
}

/// Computes the configuration. `read_file` reads the config file (injected so tests need
/// no files); `env` is the process environment (or a map in tests).
pub fn load(
    flags: &Flags,
    env: &HashMap<String, String>,
    read_file: impl Fn(&str) -> Result<String, String>,
) -> Result<Config, ConfigError> {
    let config_path = flags.config.clone().or_else(|| env.get("DAYBOOK_CONFIG").cloned());
    let (file_server, tables) = match &config_path {
        Some(path) => read_config_file(path, read_file)?,
        None => Default::default(),
    };
    let values = effective_values(flags, env, &file_server);
    let FileTables { tenants, sinks } = tables;
    let mut draft = Draft {
        config: Config { config_file: config_path.map(PathBuf::from), tenants, sinks, ..Config::default() },
        ..Draft::default()
    };
    for key in KEYS {
        if let Some((text, source)) = values.get(key.name) {
            (key.apply)(&mut draft, source, text)?;
        }
    }
    let source_of = |key: &str| values.get(key).map(|(_, s)| s.clone()).unwrap_or_else(|| key.to_string());
    check_redis(&mut draft, &values, &source_of)?;
    check_tls(&mut draft, &source_of)?;
    check_reachable(draft.config, &source_of)
}

/// Redis settings that only hold together: the deadline, the memory ceiling and the TLS
/// files need a URL, and TLS files a rediss:// one.
fn check_redis(
    draft: &mut Draft,
    values: &BTreeMap<&'static str, (String, String)>,
    source_of: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let config = &mut draft.config;
    match (&mut config.redis, draft.redis_timeout) {
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
    if config.redis_tenant_log != crate::rating::LogPolicy::WhenNeeded && config.redis.is_none() {
        return Err(err(
            &source_of("redis_tenant_log"),
            "needs redis_url: in embedded mode one journal orders every tenant's events",
        ));
    }
    if draft.redis_tls != RedisTls::default() {
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
        if draft.redis_tls.client_cert.is_some() != draft.redis_tls.client_key.is_some() {
            return Err(err(&key, "redis_client_cert and redis_client_key go together"));
        }
        redis.tls = draft.redis_tls.clone();
    }
    Ok(())
}

/// The listener's TLS files come in pairs, and client certificates need TLS.
fn check_tls(draft: &mut Draft, source_of: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let auth = draft.tls_client_auth;
    match (draft.tls_cert.take(), draft.tls_key.take()) {
        (Some(cert), Some(key)) => {
            if draft.config.listen.is_none() {
                return Err(err(&source_of("tls_cert"), "TLS is for the TCP listener, and `listen` is off"));
            }
            if draft.tls_client_ca.is_none() && auth.is_some() {
                return Err(err(&source_of("tls_client_auth"), "set without tls_client_ca"));
            }
            draft.config.tls = Some(TlsFiles {
                cert,
                key,
                client_auth: auth.unwrap_or(ClientAuth::Required),
                client_ca: draft.tls_client_ca.take(),
            });
        }
        (None, None) if draft.tls_client_ca.is_some() => {
            return Err(err(&source_of("tls_client_ca"), "client certificates need TLS: set tls_cert and tls_key"));
        }
        (None, None) if auth.is_some() => return Err(err(&source_of("tls_client_auth"), "set without tls_client_ca")),
        (None, None) => {}
        (Some(_), None) => return Err(err(&source_of("tls_cert"), "set without tls_key")),
        (None, Some(_)) => return Err(err(&source_of("tls_key"), "set without tls_cert")),
    }
    Ok(())
}

/// Whether daybook can be reached, and safely: a TCP listener other hosts can reach is
/// open to every workload of the cluster, so billing data and tenant settings need a
/// credential there, unless told otherwise. And durations that must be positive.
fn check_reachable(config: Config, source_of: &dyn Fn(&str) -> String) -> Result<Config, ConfigError> {
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
        let flags = Flags::default().with("listen", "127.0.0.1:4");
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
        let flags = Flags::default().with("listen", "nowhere");
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
    fn the_tenant_log_policy_needs_redis_and_a_known_word() {
        use crate::rating::LogPolicy;
        let load_env = |pairs: &[(&str, &str)]| {
            let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            load(&Flags::default(), &env, |_: &str| Err("no file".to_string()))
        };
        let redis = ("DAYBOOK_REDIS_URL", "redis://r:1");
        assert_eq!(load_env(&[redis]).unwrap().redis_tenant_log, LogPolicy::WhenNeeded);
        let every = load_env(&[("DAYBOOK_REDIS_TENANT_LOG", "every_tenant"), redis]).unwrap();
        assert_eq!(every.redis_tenant_log, LogPolicy::EveryTenant);
        let bad = load_env(&[("DAYBOOK_REDIS_TENANT_LOG", "always"), redis]).unwrap_err();
        assert_eq!(bad.key, "DAYBOOK_REDIS_TENANT_LOG");
        let embedded = load_env(&[("DAYBOOK_REDIS_TENANT_LOG", "every_tenant")]).unwrap_err();
        assert_eq!(embedded.key, "DAYBOOK_REDIS_TENANT_LOG");
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
        let flags = Flags::default().with("redis_url", "redis://f:1");
        let both = HashMap::from([
            ("DAYBOOK_REDIS_URL".to_string(), "redis://e:1".to_string()),
            ("DAYBOOK_REDIS_TIMEOUT".to_string(), "PT0.02S".to_string()),
        ]);
        let c = load(&flags, &both, none).unwrap().redis.unwrap();
        assert_eq!((c.url.as_str(), c.timeout), ("redis://f:1", Duration::from_millis(20)));
        let e = load(&Flags::default(), &env("DAYBOOK_REDIS_TIMEOUT", "PT0.02S"), none).unwrap_err();
        assert_eq!(e.key, "redis_timeout");
    }

    #[test]
    fn flags_environment_and_file_keys_come_from_one_table() {
        use clap::{Args, FromArgMatches};
        let command = Flags::augment_args(clap::Command::new("serve"));
        let matches = command
            .try_get_matches_from(["serve", "--insecure", "--redis", "redis://f:1", "--listen", "0.0.0.0:1"])
            .unwrap();
        let flags = Flags::from_arg_matches(&matches).unwrap();
        let c = load(&flags, &HashMap::new(), |_| Err("no file".into())).unwrap();
        assert!(c.insecure);
        assert_eq!(c.redis.unwrap().url, "redis://f:1");
        // Every key is a file key and an environment variable, each spelled once.
        let mut seen = std::collections::HashSet::new();
        for key in KEYS {
            assert!(seen.insert(key.env()), "{}", key.name);
            if let Some(long) = key.long() {
                assert!(seen.insert(format!("--{long}")), "{long}");
            }
        }
        let file = KEYS.iter().map(|k| format!("{} = \"x\"\n", k.name)).collect::<String>();
        let flags = Flags { config: Some("c.toml".into()), ..Flags::default() };
        let e = load(&flags, &HashMap::new(), |_| Ok(format!("[server]\n{file}"))).unwrap_err();
        assert!(e.key.starts_with("server."), "every key is read from the file: {e}");
    }
}
