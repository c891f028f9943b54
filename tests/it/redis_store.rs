//! Real Redis for the tests: `redis-server` processes on free loopback ports (installed by
//! `.ci/run` from the OS packages), one node or a 3-master cluster, stopped on drop.
//! And the first tests of the key design against them: a claim, its event id and its
//! stream entry are written by one script, on one node and across a real cluster.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daybook::rating::ids::Fp;
use daybook::rating::shared::Place;
use daybook::store::keys::{SHARDS, ShardKeys, field};

fn day() -> chrono::NaiveDate {
    "2025-06-10".parse().unwrap()
}

/// A port that is free, with its cluster-bus port (port + 10000) free too.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// The least-privilege ACL user production would set (README, "Redis mode"), with the
/// default user off.
const ACL_USER: &[&str] = &[
    "--user",
    "daybook",
    "on",
    ">s3cret-pw",
    "~dbk:*",
    "+@read",
    "+@write",
    "+@scripting",
    "+@connection",
    "+info",
    "--user",
    "default",
    "off",
];

/// One `redis-server` process.
pub struct RedisNode {
    pub port: u16,
    child: Child,
    args: Vec<String>,
    dir: tempfile::TempDir,
    /// The ACL user and password every client must use, when the default user is off.
    user: Option<(String, String)>,
    /// Served over TLS only: the files clients need (CA, client certificate and key).
    tls: Option<ClientTlsFiles>,
}

/// What a client of a TLS node needs: the CA of its certificate, and a client
/// certificate (Redis's `tls-auth-clients yes`, its default, requires one).
#[derive(Clone)]
pub struct ClientTlsFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl RedisNode {
    fn spawn(extra: &[&str]) -> RedisNode {
        RedisNode::spawn_with(extra, None)
    }

    fn spawn_with(extra: &[&str], tls: Option<ClientTlsFiles>) -> RedisNode {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let ports = match tls {
            Some(_) => vec!["--port".to_string(), "0".to_string(), "--tls-port".to_string(), port.to_string()],
            None => vec!["--port".to_string(), port.to_string()],
        };
        let mut args: Vec<String> = ports;
        args.extend(["--bind", "127.0.0.1", "--save", ""].iter().map(|s| s.to_string()));
        if !extra.contains(&"--appendonly") {
            args.extend(["--appendonly".to_string(), "no".to_string()]);
        }
        args.extend(["--dir".to_string(), dir.path().to_str().unwrap().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = RedisNode::run(&args);
        let user = extra
            .iter()
            .position(|a| *a == "--user")
            .filter(|i| extra.get(i + 1) != Some(&"default"))
            .map(|i| (extra[i + 1].to_string(), extra[i + 3].trim_start_matches('>').to_string()));
        let node = RedisNode { port, child, args, dir, user, tls };
        node.wait_for("PONG", &["PING"]);
        node
    }

    /// A node whose default user is off: clients authenticate as the ACL user `daybook`,
    /// allowed only daybook's keys and the commands it uses (as production would set it).
    pub fn start_with_acl_user() -> RedisNode {
        RedisNode::spawn(ACL_USER)
    }

    /// [`RedisNode::start_with_acl_user`], served over TLS only, with a certificate made
    /// by `ca` for 127.0.0.1; clients must present a certificate of `client_ca`.
    pub fn start_tls_with_acl_user(ca: &super::security::Ca, client_ca: &super::security::Ca) -> RedisNode {
        let files = tempfile::tempdir().unwrap().keep();
        let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], false);
        let (client_cert, client_key) = client_ca.leaf(&["daybook.clients.test"], true);
        for (name, text) in [
            ("redis.crt", cert),
            ("redis.key", key),
            ("ca.crt", ca.pem.clone()),
            ("clients.crt", client_ca.pem.clone()),
            ("client.crt", client_cert),
            ("client.key", client_key),
        ] {
            std::fs::write(files.join(name), text).unwrap();
        }
        let path = |name: &str| files.join(name).to_str().unwrap().to_string();
        let client =
            ClientTlsFiles { ca: files.join("ca.crt"), cert: files.join("client.crt"), key: files.join("client.key") };
        let (cert, key, clients) = (path("redis.crt"), path("redis.key"), path("clients.crt"));
        RedisNode::spawn_with(
            &[
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &clients,
                "--tls-auth-clients",
                "yes",
            ]
            .iter()
            .chain(ACL_USER)
            .copied()
            .collect::<Vec<_>>(),
            Some(client),
        )
    }

    /// The client TLS files of a TLS node.
    pub fn client_tls(&self) -> Option<ClientTlsFiles> {
        self.tls.clone()
    }

    fn run(args: &[String]) -> Child {
        Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)")
    }

    /// A standalone node.
    pub fn start() -> RedisNode {
        RedisNode::spawn(&[])
    }

    /// A standalone node that loses nothing it acknowledged, even to `kill -9`: every
    /// write is in its append-only file, fsynced, before Redis answers (the setting
    /// daybook's documentation asks of a production Redis).
    pub fn start_durable() -> RedisNode {
        RedisNode::spawn(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers, like a partition.
    pub fn pause(&self) {
        let ok = Command::new("kill").args(["-STOP", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        let ok = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Starts it again on the same port, from the same directory.
    pub fn restart(&mut self) {
        self.child = RedisNode::run(&self.args);
        self.wait_for("PONG", &["PING"]);
        assert!(self.dir.path().exists());
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        match &self.user {
            Some((user, password)) => format!("{scheme}://{user}:{password}@127.0.0.1:{}/", self.port),
            None => format!("{scheme}://127.0.0.1:{}/", self.port),
        }
    }

    /// Runs `redis-cli` against this node; returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cli = Command::new("redis-cli");
        cli.args(["-p", &self.port.to_string()]);
        if let Some(tls) = &self.tls {
            cli.arg("--tls").arg("--cacert").arg(&tls.ca).arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
        }
        if let Some((user, password)) = &self.user {
            cli.args(["--user", user, "--pass", password, "--no-auth-warning"]);
        }
        let out = cli.args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_for(&self, expected: &str, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.cli(args).contains(expected) {
            assert!(Instant::now() < deadline, "redis on {} never answered {expected}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of three masters (no replicas), every slot assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisNode>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisNode> = (0..3)
            .map(|i| {
                let conf = format!("nodes-{i}.conf");
                RedisNode::spawn(&["--cluster-enabled", "yes", "--cluster-config-file", &conf])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(created.status.success(), "cluster create: {}", String::from_utf8_lossy(&created.stdout));
        for node in &nodes {
            node.wait_for("cluster_state:ok", &["CLUSTER", "INFO"]);
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::url).collect()
    }
}

/// Claims an interaction the way the store will: the entry, the event id that claimed it
/// and the record, in one step, only if nobody claimed it before. Returns whether this
/// call claimed it.
const CLAIM: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], 'entry') == 1 then
  redis.call('HSET', KEYS[2], ARGV[2], 'seen')
  redis.call('XADD', KEYS[3], '*', 'record', ARGV[3])
  return 1
end
return 0
"#;

async fn claim(con: &mut impl redis::aio::ConnectionLike, keys: &ShardKeys, interaction: Fp, event: Fp) -> bool {
    let claimed: i64 = redis::Script::new(CLAIM)
        .key(keys.state(Place::Interaction { period_start: day() }))
        .key(keys.events(0))
        .key(keys.records())
        .arg(&field(interaction)[..])
        .arg(&field(event)[..])
        .arg(format!("record of {interaction:?}"))
        .invoke_async(con)
        .await
        .unwrap();
    claimed == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_script_claims_on_a_single_node() {
    let node = RedisNode::start();
    let mut con = redis::Client::open(node.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys = ShardKeys::of("acme", Fp(5, 6));
    assert!(claim(&mut con, &keys, Fp(5, 6), Fp(1, 1)).await, "the first touch claims");
    assert!(!claim(&mut con, &keys, Fp(5, 6), Fp(2, 2)).await, "the second finds it claimed");
    assert_eq!(node.cli(&["XLEN", &keys.records()]), "1", "one record for one interaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_claim_share_a_slot_and_a_tenant_spreads_over_the_cluster() {
    let cluster = RedisCluster::start();
    let node = &cluster.nodes[0];
    let slot = |key: &str| node.cli(&["CLUSTER", "KEYSLOT", key]);
    let mut slots = std::collections::HashSet::new();
    for shard in 0..SHARDS {
        let keys = ShardKeys::new("acme", shard);
        let s = slot(&keys.records());
        assert_eq!(s, slot(&keys.state(Place::Interaction { period_start: day() })));
        assert_eq!(s, slot(&keys.state(Place::Cobrowse)));
        assert_eq!(s, slot(&keys.events(42)));
        assert_eq!(s, slot(&keys.ledger(day())));
        slots.insert(s);
    }
    assert_eq!(slots.len() as u32, SHARDS, "one slot per shard: a big tenant is not pinned to one node");

    // The same script through the cluster client: no CROSSSLOT, whichever node owns it.
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut con = client.get_async_connection().await.unwrap();
    let mut claimed = 0;
    for i in 0..64u64 {
        let interaction = Fp(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i);
        let keys = ShardKeys::of("acme", interaction);
        claimed += claim(&mut con, &keys, interaction, Fp(i, 0)).await as usize;
        assert!(!claim(&mut con, &keys, interaction, Fp(i, 1)).await);
    }
    assert_eq!(claimed, 64);
    let owners: std::collections::HashSet<String> = (0..SHARDS)
        .map(|shard| {
            let s = slot(&ShardKeys::new("acme", shard).records());
            cluster
                .nodes
                .iter()
                .find(|n| n.cli(&["CLUSTER", "COUNTKEYSINSLOT", &s]) != "0")
                .map(|n| n.port.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(owners.len() > 1, "the tenant's records live on more than one master: {owners:?}");
}

/// The rollups add exact decimals in Lua, digit by digit (Lua's numbers are doubles): on a
/// real Redis, every sum equals `rust_decimal`'s, signs, scales and carries included.
#[test]
fn rollup_sums_are_exact_decimals_in_lua() {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    let redis = RedisNode::start();
    let con = std::cell::RefCell::new(redis::Client::open(redis.url()).unwrap().get_connection().unwrap());
    let script = redis::Script::new(daybook::store::rollup::DECIMAL_SUM);
    let sum = |a: Decimal, b: Decimal| -> String {
        script.arg(a.to_string()).arg(b.to_string()).invoke(&mut *con.borrow_mut()).unwrap()
    };
    for (a, b, expected) in [
        ("0.5", "0.5", "1"),
        ("-1", "1", "0"),
        ("0.004", "-0.0045", "-0.0005"),
        ("999.999", "0.001", "1000"),
        ("-0.1", "-0.02", "-0.12"),
        ("0", "0.0000000000000000000000000001", "0.0000000000000000000000000001"),
    ] {
        assert_eq!(sum(a.parse().unwrap(), b.parse().unwrap()), expected, "{a} + {b}");
    }
    // Mantissas of up to 15 digits at up to 12 places: sums that a decimal (28 digits)
    // holds exactly, so that `a + b` is the exact sum to compare with.
    let amount =
        (-999_999_999_999_999i64..=999_999_999_999_999, 0u32..=12).prop_map(|(m, scale)| Decimal::new(m, scale));
    proptest!(ProptestConfig::with_cases(400), |(a in amount.clone(), b in amount)| {
        let got: Decimal = sum(a, b).parse().unwrap();
        prop_assert_eq!(got, a + b);
    });
}
