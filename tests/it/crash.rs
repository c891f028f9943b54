//! Crash test: the real binary, 200k events, `kill -9` at random moments, restart, and a
//! client that resends every event (as a retrying client would). The final usage must
//! equal an offline replay of the same events: nothing acknowledged is lost, nothing is
//! counted twice. Several kill points per run.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;
use daybook::api::pb::usage_service_client::UsageServiceClient;
use daybook::rating::{Engine, EngineConfig, RawEvent};

const TENANTS: &str = r#"
[server]
snapshot_interval = "PT1S"
snapshot_entries = 20000

[[tenant]]
id = "acme"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P36500D" }
changes = [ { at = "2026-11-10T00:00:00Z", set = { intent_listening = true } } ]
"#;

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn events(n: usize) -> Vec<pb::Event> {
    events_for("acme", n, 0x2545_f491_4f6c_dd1d)
}

/// `n` events of `tenant` in November 2026 (messages, some priced; co-browse; Functions),
/// from `seed`.
pub fn events_for(tenant: &str, n: usize, seed: u64) -> Vec<pb::Event> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            // November 2026, before the real clock of any run of this test.
            let at = format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + rng.next(20), rng.next(24), rng.next(60));
            let kind = match rng.next(20) {
                0 => pb::event::Kind::Cobrowse(pb::CobrowseEvent {
                    consumer_id: format!("c{}", rng.next(5000)),
                    conversation_id: "k".into(),
                    session_id: format!("s{}", rng.next(3000)),
                    established: rng.next(2) == 0,
                }),
                1 => {
                    pb::event::Kind::FunctionInvocations(pb::FunctionInvocationsEvent { count: rng.next(5000) as i64 })
                }
                _ => pb::event::Kind::Message(pb::MessageEvent {
                    consumer_id: format!("c{}", rng.next(5000)),
                    conversation_id: format!("k{}", rng.next(3)),
                    sender_role: 1 + rng.next(5) as i32,
                    sender_id: format!("a{}", rng.next(12)),
                    channel: pb::Channel::Whatsapp as i32,
                    integration_id: "wa".into(),
                    provider_price: (rng.next(8) == 0)
                        .then(|| pb::Money { amount: "0.0468".into(), currency: "EUR".into() }),
                }),
            };
            pb::Event { tenant_id: tenant.into(), event_id: format!("e{i}"), event_time: at, kind: Some(kind) }
        })
        .collect()
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The admin HTTP address, when `--admin` was given.
    pub admin: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Everything the server wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Server {
    /// A failed test must not leave servers running (they would load every later test).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, config: &std::path::Path) -> Server {
    start_with(dir, config, &[])
}

/// The real binary on a free port, with more arguments.
pub fn start_with(dir: &std::path::Path, config: &std::path::Path, extra: &[&str]) -> Server {
    let admin_off: &[&str] = if extra.contains(&"--admin") { &[] } else { &["--admin", "off"] };
    let mut child = Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(admin_off)
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(config)
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = log.clone();
    let admin = std::sync::Arc::new(std::sync::Mutex::new(None));
    let admin_addr = admin.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, addr)) = line.split_once("admin HTTP on http://") {
                *admin_addr.lock().unwrap() = Some(addr.to_string());
            }
            if let Some((_, addr)) = line.split_once("gRPC listening on ") {
                let _ = tx.send(addr.to_string());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server announces its address");
    Server { child, addr, log, admin }
}

/// Sends every event in batches; returns how many batches were acknowledged before the
/// server went away (or all of them).
async fn send_all(addr: &str, events: &[pb::Event], kill_after: Option<(usize, &mut Child)>) -> usize {
    let channel = daybook::client::connect(addr).await.unwrap();
    let mut client = IngestServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses =
        client.ingest_batch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut kill = kill_after;
    let mut acknowledged = 0;
    for (i, chunk) in events.chunks(500).enumerate() {
        if tx.send(pb::IngestBatchRequest { events: chunk.to_vec() }).await.is_err() {
            return acknowledged;
        }
        if let Some((at, child)) = kill.as_mut()
            && *at == i
        {
            // The batch is in flight: kill -9 now.
            child.kill().unwrap();
            child.wait().unwrap();
            kill = None;
        }
        match responses.message().await {
            Ok(Some(response)) => {
                for outcome in &response.outcomes {
                    assert_ne!(outcome.disposition, pb::Disposition::Refused as i32, "{outcome:?}");
                }
                acknowledged += 1;
            }
            _ => return acknowledged,
        }
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resend_everything_gives_exactly_the_offline_totals() {
    let n: usize = std::env::var("DAYBOOK_CRASH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let events = events(n);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, TENANTS).unwrap();
    let data = dir.path().join("data");
    let batches = n.div_ceil(500);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
    for round in 0..3 {
        let mut server = start(&data, &config);
        let kill_at = rng.next(batches as u64) as usize;
        let acknowledged = send_all(&server.addr, &events, Some((kill_at, &mut server.child))).await;
        assert!(acknowledged <= kill_at + 1, "round {round}: killed after batch {kill_at}");
    }
    let mut server = start(&data, &config);
    assert_eq!(send_all(&server.addr, &events, None).await, batches, "every batch answered after the last restart");
    let usage = usage_of(&server.addr).await;
    // Snapshots are written while serving (every stop here is a kill -9): wait for one
    // that covers everything, kill again, and start from it.
    let from_snapshot = |s: &Server| s.log.lock().unwrap().iter().any(|l| l.contains("loaded the snapshot"));
    let snapshot = data.join("snapshot.bin");
    let written = std::fs::metadata(&snapshot).and_then(|m| m.modified()).ok();
    for _ in 0..200 {
        if std::fs::metadata(&snapshot).and_then(|m| m.modified()).ok() != written {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut server = start(&data, &config);
    assert_eq!(usage_of(&server.addr).await, usage, "the same totals from the snapshot");
    assert!(from_snapshot(&server), "the restart loads a snapshot written while serving");
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let offline = Engine::new(EngineConfig::default());
    for spec in daybook::tenants::parse_tenants_toml(TENANTS).unwrap() {
        offline.put_tenant(spec).unwrap();
    }
    for e in events {
        offline.ingest(RawEvent::from(e), None, &mut Vec::new()).unwrap();
    }
    let expected =
        daybook::api::usage_out(&offline.usage("acme", None, None).unwrap(), offline.tenant("acme").as_deref());
    assert_eq!(usage, expected);
    assert!(usage.interactions > 1000);
}

async fn usage_of(addr: &str) -> pb::Usage {
    usage_of_tenant(addr, "acme").await
}

pub async fn usage_of_tenant(addr: &str, tenant: &str) -> pb::Usage {
    let channel = daybook::client::connect(addr).await.unwrap();
    UsageServiceClient::new(channel)
        .get_usage(pb::GetUsageRequest { tenant_id: tenant.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .usage
        .unwrap()
}

/// Logs go through `tracing`: with `DAYBOOK_LOG_FORMAT=json` every line the server writes
/// is a JSON object with a level and a message; a bad format word refuses to start (64).
#[test]
fn logs_are_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "off", "--data-dir"])
        .arg(dir.path())
        .env("DAYBOOK_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let announced = loop {
        let line = lines.next().expect("the server logs until it listens").unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        seen.push(line);
        let message = value["fields"]["message"].as_str().unwrap_or_default().to_string();
        if message.starts_with("gRPC listening on ") {
            break value;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(announced["level"], "INFO", "{seen:?}");
    assert!(announced["timestamp"].is_string(), "{seen:?}");

    let refused = Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("DAYBOOK_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("DAYBOOK_LOG_FORMAT"));
}
