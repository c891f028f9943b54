//! The table of `daybook serve`'s settings: each spelled once, with its flag, help and
//! how its text applies. Flags, environment variables and file keys derive from it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError, err, parse_bytes};
use crate::rating::time;
use crate::server::journal::Durability;
use crate::server::tls::ClientAuth;
use crate::store::redis::{RedisConfig, RedisTls};

/// How a key is given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Not on the command line: environment and file only.
    None,
    /// `--NAME VALUE`.
    Value(&'static str),
    /// `--NAME` alone: the value `true`.
    Switch(&'static str),
}

/// One setting of `daybook serve`: its key in the file's `[server]` table, its
/// environment variable (`DAYBOOK_` and the key in capitals), its flag, its help, and how
/// its text is applied. Every setting is spelled here once; flags, environment and file
/// are derived from this table.
pub struct Key {
    pub name: &'static str,
    pub flag: Flag,
    pub help: &'static str,
    pub(super) apply: fn(&mut Draft, &str, &str) -> Result<(), ConfigError>,
}

impl Key {
    /// The environment variable of the key.
    pub fn env(&self) -> String {
        format!("DAYBOOK_{}", self.name.to_ascii_uppercase())
    }

    /// The long flag (without `--`), if the key has one.
    pub fn long(&self) -> Option<&'static str> {
        match self.flag {
            Flag::None => None,
            Flag::Value(name) | Flag::Switch(name) => Some(name),
        }
    }
}

/// A configuration being computed: the config, and the settings that are checked
/// together before they become part of it.
#[derive(Default)]
pub(super) struct Draft {
    pub(super) config: Config,
    pub(super) redis_timeout: Option<Duration>,
    pub(super) redis_tls: RedisTls,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_client_ca: Option<PathBuf>,
    pub(super) tls_client_auth: Option<ClientAuth>,
}

fn addr(source: &str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if text.is_empty() || text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| err(source, format!("`{text}` is not HOST:PORT (an IP address and a port)")))
}

fn duration(source: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = time::parse_duration(text).map_err(|e| err(source, e.to_string()))?;
    d.to_std().map_err(|_| err(source, "must not be negative"))
}

fn boolean(source: &str, text: &str) -> Result<bool, ConfigError> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(err(source, "expected `true` or `false`")),
    }
}

fn number(source: &str, text: &str) -> Result<usize, ConfigError> {
    text.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| err(source, "expected a positive whole number"))
}

fn path(text: &str) -> Option<PathBuf> {
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// Every setting of `daybook serve`.
pub static KEYS: &[Key] = &[
    Key {
        name: "listen",
        flag: Flag::Value("listen"),
        help: "gRPC TCP address HOST:PORT, or `off` (default 127.0.0.1:50051)",
        apply: |d, source, text| {
            d.config.listen = addr(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "uds",
        flag: Flag::Value("uds"),
        help: "gRPC Unix domain socket path",
        apply: |d, _, text| {
            d.config.uds = path(text);
            Ok(())
        },
    },
    Key {
        name: "uds_mode",
        flag: Flag::None,
        help: "permissions of the Unix socket: 0600 (default) or 0660",
        apply: |d, source, text| {
            d.config.uds_mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m & 0o600 == 0o600 && *m & 0o007 == 0 && *m <= 0o777)
                .ok_or_else(|| {
                    err(source, "expected octal permissions the owner can use and others cannot: 0600 or 0660")
                })?;
            Ok(())
        },
    },
    Key {
        name: "health_listen",
        flag: Flag::Value("health-listen"),
        help: "gRPC health-only TCP address HOST:PORT for probes, or `off` (default)",
        apply: |d, source, text| {
            d.config.health_listen = addr(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "admin",
        flag: Flag::Value("admin"),
        help: "admin HTTP address HOST:PORT (/live, /ready, /metrics), or `off` (default 127.0.0.1:9464)",
        apply: |d, source, text| {
            d.config.admin = addr(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "data_dir",
        flag: Flag::Value("data-dir"),
        help: "data directory: journal and snapshots (default ./daybook-data)",
        apply: |d, source, text| {
            if text.is_empty() {
                return Err(err(source, "must not be empty"));
            }
            d.config.data_dir = PathBuf::from(text);
            Ok(())
        },
    },
    Key {
        name: "durability",
        flag: Flag::Value("durability"),
        help: "`write` (default: survives a process crash) or `fsync` (survives a machine crash; group commit)",
        apply: |d, source, text| {
            d.config.durability = match text {
                "write" => Durability::Write,
                "fsync" => Durability::Fsync,
                _ => return Err(err(source, "expected `write` or `fsync`")),
            };
            Ok(())
        },
    },
    Key {
        name: "records_jsonl",
        flag: Flag::Value("records-jsonl"),
        help: "also append every record to this JSONL file",
        apply: |d, _, text| {
            d.config.records_jsonl = path(text);
            Ok(())
        },
    },
    Key {
        name: "max_batch",
        flag: Flag::None,
        help: "most events in one batch request (default 1000, at most 100000)",
        apply: |d, source, text| {
            d.config.max_batch = number(source, text)?.min(100_000);
            Ok(())
        },
    },
    Key {
        name: "max_message_bytes",
        flag: Flag::None,
        help: "largest request message in bytes (default 4 MiB)",
        apply: |d, source, text| {
            d.config.max_message_bytes = number(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "deadline_ceiling",
        flag: Flag::None,
        help: "no call runs longer than this, whatever deadline the client asks (default PT10S)",
        apply: |d, source, text| {
            d.config.deadline_ceiling = duration(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "grace_period",
        flag: Flag::None,
        help: "how long shutdown waits for in-flight calls (default PT15S)",
        apply: |d, source, text| {
            d.config.grace_period = duration(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "snapshot_entries",
        flag: Flag::None,
        help: "write a snapshot after this many journal entries (default 1000000)",
        apply: |d, source, text| {
            d.config.snapshot_entries = number(source, text)? as u64;
            Ok(())
        },
    },
    Key {
        name: "snapshot_interval",
        flag: Flag::None,
        help: "or after this long with anything new (default PT10M)",
        apply: |d, source, text| {
            d.config.snapshot_interval = duration(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "record_retention",
        flag: Flag::None,
        help: "oldest records a WatchRecords client may resume from; older journal segments are deleted once a \
               snapshot covers them and no open period needs them (default P7D)",
        apply: |d, source, text| {
            d.config.record_retention = duration(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "journal_segment_bytes",
        flag: Flag::None,
        help: "size at which a journal segment is closed and the next begun, at least 4096 (default 64 MiB)",
        apply: |d, source, text| {
            let bytes = number(source, text)? as u64;
            if bytes < 4096 {
                return Err(err(source, "expected at least 4096 bytes"));
            }
            d.config.journal_segment_bytes = bytes;
            Ok(())
        },
    },
    Key {
        name: "otlp_endpoint",
        flag: Flag::None,
        help: "OTLP/gRPC collector http://HOST:PORT (also OTEL_EXPORTER_OTLP_ENDPOINT); default none",
        apply: |d, source, text| {
            d.config.telemetry.otlp_endpoint = match text {
                "" | "off" => None,
                t if t.starts_with("http://") && t.len() > "http://".len() => Some(t.to_string()),
                t if t.starts_with("https://") => {
                    return Err(err(source, "TLS to the collector is not built in: use a collector on http://"));
                }
                _ => return Err(err(source, "expected an OTLP/gRPC URL, http://HOST:PORT")),
            };
            Ok(())
        },
    },
    Key {
        name: "otlp_interval",
        flag: Flag::None,
        help: "how often metrics are pushed over OTLP (default PT60S)",
        apply: |d, source, text| {
            d.config.telemetry.otlp_interval = duration(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "latency_buckets",
        flag: Flag::None,
        help: "boundaries of rpc.server.call.duration in seconds, ascending and comma-separated \
               (default 0.00005,0.0001,0.00025,...,10: calls resolve from 50 us)",
        apply: |d, source, text| {
            let bounds: Option<Vec<f64>> = text.split(',').map(|b| b.trim().parse::<f64>().ok()).collect();
            match bounds {
                Some(b)
                    if !b.is_empty()
                        && b.iter().all(|x| x.is_finite() && *x > 0.0)
                        && b.windows(2).all(|w| w[0] < w[1]) =>
                {
                    d.config.telemetry.latency_buckets = b;
                    Ok(())
                }
                _ => Err(err(source, "expected positive seconds in ascending order, separated by commas")),
            }
        },
    },
    Key {
        name: "metrics_tenant_label",
        flag: Flag::None,
        help: "label event, interaction and usage metrics with the tenant (default false)",
        apply: |d, source, text| {
            d.config.telemetry.tenant_label = boolean(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "redis_url",
        flag: Flag::Value("redis"),
        help: "share state with every replica naming the same Redis: redis://HOST:PORT, or \
               redis+cluster://HOST:PORT,HOST:PORT,... (rediss:// for TLS); default none (embedded)",
        apply: |d, source, text| {
            if text.is_empty() || text == "off" {
                return Ok(());
            }
            let redis = RedisConfig::new(text);
            redis.validate().map_err(|e| err(source, e))?;
            d.config.redis = Some(redis);
            Ok(())
        },
    },
    Key {
        name: "redis_timeout",
        flag: Flag::None,
        help: "deadline of every Redis call, 1 ms to 10 s (default PT0.05S)",
        apply: |d, source, text| {
            let timeout = duration(source, text)?;
            if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
                return Err(err(source, "expected a deadline from 1 ms to 10 s (tens of milliseconds suit a sidecar)"));
            }
            d.redis_timeout = Some(timeout);
            Ok(())
        },
    },
    Key {
        name: "redis_ca_file",
        flag: Flag::None,
        help: "CA certificates (PEM) Redis's certificate is verified against",
        apply: |d, _, text| {
            d.redis_tls.ca_file = path(text);
            Ok(())
        },
    },
    Key {
        name: "redis_client_cert",
        flag: Flag::None,
        help: "client certificate (PEM) presented to Redis",
        apply: |d, _, text| {
            d.redis_tls.client_cert = path(text);
            Ok(())
        },
    },
    Key {
        name: "redis_client_key",
        flag: Flag::None,
        help: "its private key (PEM)",
        apply: |d, _, text| {
            d.redis_tls.client_key = path(text);
            Ok(())
        },
    },
    Key {
        name: "auth_file",
        flag: Flag::Value("auth-file"),
        help: "credentials file: bearer tokens' SHA-256 hashes, client-certificate names and their tenant \
               scopes; reloaded on change. Default: none (every caller may do everything)",
        apply: |d, _, text| {
            d.config.auth_file = path(text);
            Ok(())
        },
    },
    Key {
        name: "insecure",
        flag: Flag::Switch("insecure"),
        help: "serve a TCP listener other hosts can reach without authentication, knowingly",
        apply: |d, source, text| {
            d.config.insecure = boolean(source, text)?;
            Ok(())
        },
    },
    Key {
        name: "tls_cert",
        flag: Flag::Value("tls-cert"),
        help: "TLS certificate chain (PEM) of the TCP listener; reloaded on change",
        apply: |d, _, text| {
            d.tls_cert = path(text);
            Ok(())
        },
    },
    Key {
        name: "tls_key",
        flag: Flag::Value("tls-key"),
        help: "its private key (PEM)",
        apply: |d, _, text| {
            d.tls_key = path(text);
            Ok(())
        },
    },
    Key {
        name: "tls_client_ca",
        flag: Flag::Value("tls-client-ca"),
        help: "CA certificates (PEM) client certificates are verified against: mutual TLS",
        apply: |d, _, text| {
            d.tls_client_ca = path(text);
            Ok(())
        },
    },
    Key {
        name: "tls_client_auth",
        flag: Flag::None,
        help: "with tls_client_ca: `required` (default) or `optional` client certificates",
        apply: |d, source, text| {
            d.tls_client_auth = Some(match text {
                "required" => ClientAuth::Required,
                "optional" => ClientAuth::Optional,
                _ => return Err(err(source, "expected `required` or `optional`")),
            });
            Ok(())
        },
    },
    Key {
        name: "redis_tenant_log",
        flag: Flag::Value("redis-tenant-log"),
        help: "Redis mode: which tenants follow a tenant log, `when_needed` (default: DAR-5 retroactive, \
               several meters, event or outcome meters) or `every_tenant` (every tenant rated in one order on \
               every replica, at the cost of each replica rating every event)",
        apply: |d, source, text| {
            d.config.redis_tenant_log = match text {
                "when_needed" => crate::rating::LogPolicy::WhenNeeded,
                "every_tenant" => crate::rating::LogPolicy::EveryTenant,
                _ => return Err(err(source, "expected `when_needed` or `every_tenant`")),
            };
            Ok(())
        },
    },
    Key {
        name: "memory_ceiling",
        flag: Flag::Value("memory-ceiling"),
        help: "Redis mode: the memory the process may use (e.g. 512MiB); the near cache forgets entries to \
               stay under it",
        apply: |d, source, text| {
            if text.is_empty() || text == "off" {
                return Ok(());
            }
            let bytes = parse_bytes(text).ok_or_else(|| {
                err(source, "expected a size such as 256MiB, 2GiB or a number of bytes (at least 64MiB)")
            })?;
            if bytes < 64 << 20 {
                return Err(err(source, "at least 64MiB: the process itself needs some"));
            }
            d.config.memory_ceiling = Some(bytes);
            Ok(())
        },
    },
];
