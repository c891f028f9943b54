//! Replicas (issue 4): daybook processes on one Redis meter as one. A generated stream is
//! split at random over three real `daybook serve --redis` processes, with a share of the
//! events sent again to another replica (a client retrying elsewhere). Every replica then
//! answers the usage and statements of a single engine that saw every event once, and
//! Redis's record streams hold each record once.

use std::collections::{HashMap, HashSet};

use daybook::api::{self, pb};
use daybook::rating::{Engine, EngineConfig, RawEvent};
use prost::Message;

use super::crash::{Rng, Server, events_for, start_with, usage_of_tenant};
use super::redis_store::{RedisCluster, RedisNode};

pub const TENANTS: &str = r#"
[[tenant]]
id = "acme"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P36500D" }
plan = { kind = "starter", included = 1500, alerts = ["0.5", "1.0"] }
changes = [ { at = "2026-11-10T00:00:00Z", set = { intent_listening = true } } ]

[[tenant]]
id = "initech"
time_zone = "America/New_York"
meter = "cycle"
settings = { feature_attribution = "first_event", lateness_horizon = "P36500D" }
changes = [ { at = "2026-11-08T00:00:00Z", set = { generative_ai = true } } ]
"#;

pub const TENANT_IDS: [&str; 2] = ["acme", "initech"];

/// Both tenants' events of one seed, with ids unique to the seed.
pub fn stream(seed: u64, n: usize) -> Vec<pb::Event> {
    let mut events = Vec::new();
    for (t, tenant) in TENANT_IDS.iter().enumerate() {
        for mut e in events_for(tenant, n / 2, seed.wrapping_mul(0x9e37_79b9) ^ t as u64 ^ 0x5555) {
            e.event_id = format!("s{seed}-{}", e.event_id);
            events.push(e);
        }
    }
    let mut rng = Rng(seed | 1);
    for i in (1..events.len()).rev() {
        events.swap(i, rng.next(i as u64 + 1) as usize);
    }
    events
}

/// Sends `events` to a server in batches; every event must be accepted.
pub async fn send(addr: &str, events: Vec<pb::Event>) {
    for outcome in send_collect(addr, events).await {
        assert_ne!(outcome.disposition, pb::Disposition::Refused as i32, "{outcome:?}");
    }
}

/// Sends `events` to a server in batches and returns their outcomes, in order. Events
/// refused as UNAVAILABLE (a tenant on its tenant log while a slow Redis has the breaker
/// open) are sent again with backoff, as a production caller would.
pub async fn send_collect(addr: &str, events: Vec<pb::Event>) -> Vec<pb::EventOutcome> {
    send_collect_with(addr, events, daybook::client::Retries { retries: 10, ..Default::default() }).await
}

/// [`send_collect`] with its retries of UNAVAILABLE given (none: the first answers).
pub async fn send_collect_with(
    addr: &str,
    events: Vec<pb::Event>,
    retries: daybook::client::Retries,
) -> Vec<pb::EventOutcome> {
    let channel = daybook::client::connect(addr).await.unwrap();
    let mut client = pb::ingest_service_client::IngestServiceClient::new(channel);
    let mut out = Vec::new();
    for chunk in events.chunks(200) {
        out.extend(send_batch(&mut client, chunk.to_vec(), retries).await);
    }
    out
}

async fn send_batch(
    client: &mut pb::ingest_service_client::IngestServiceClient<tonic::transport::Channel>,
    events: Vec<pb::Event>,
    retries: daybook::client::Retries,
) -> Vec<pb::EventOutcome> {
    let unavailable = |o: &pb::EventOutcome| o.refusal.as_ref().is_some_and(|r| r.code == "UNAVAILABLE");
    let mut outcomes: Vec<pb::EventOutcome> = vec![pb::EventOutcome::default(); events.len()];
    let mut pending: Vec<usize> = (0..events.len()).collect();
    for attempt in 0..=retries.retries {
        let batch = pending.iter().map(|&i| events[i].clone()).collect();
        let request = tokio_stream::iter(vec![pb::IngestBatchRequest { events: batch }]);
        let mut responses = client.ingest_batch(request).await.unwrap().into_inner();
        let answers = responses.message().await.unwrap().unwrap().outcomes;
        let mut again = Vec::new();
        for (i, answer) in pending.into_iter().zip(answers) {
            if unavailable(&answer) && attempt < retries.retries {
                again.push(i);
            }
            outcomes[i] = answer;
        }
        if again.is_empty() {
            break;
        }
        tokio::time::sleep(retries.pause(attempt)).await;
        pending = again;
    }
    outcomes
}

/// T-2 across replicas, after a stream has settled: a sample of its events sent again to
/// another replica is answered with the original outcome, as a retry; the same ids with
/// another instant are refused (ALREADY_EXISTS) and change nothing.
pub async fn retries_and_reuses_elsewhere(servers: &[Server], events: &[pb::Event], seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(77) | 1);
    let sample: Vec<pb::Event> = events.iter().step_by(25).cloned().collect();
    let originals = send_collect(&servers[0].addr, sample.clone()).await;
    let mut retried: Vec<Vec<pb::Event>> = vec![Vec::new(); 3];
    let mut reused: Vec<Vec<pb::Event>> = vec![Vec::new(); 3];
    for e in &sample {
        retried[rng.next(3) as usize].push(e.clone());
        let mut other = e.clone();
        let at = chrono::DateTime::parse_from_rfc3339(&e.event_time).unwrap() + chrono::TimeDelta::seconds(1);
        other.event_time = at.to_rfc3339();
        reused[rng.next(3) as usize].push(other);
    }
    let by_id: HashMap<(&str, &str), &pb::EventOutcome> =
        sample.iter().map(|e| (e.tenant_id.as_str(), e.event_id.as_str())).zip(originals.iter()).collect();
    for (server, part) in servers.iter().zip(retried) {
        for (e, again) in part.iter().zip(send_collect(&server.addr, part.clone()).await) {
            let original = by_id[&(e.tenant_id.as_str(), e.event_id.as_str())];
            assert!(again.retry, "{again:?}");
            assert_eq!(
                (again.disposition, &again.lines, &again.interactions, &again.pass_through),
                (original.disposition, &original.lines, &original.interactions, &original.pass_through),
                "a retry on {} of {}",
                server.addr,
                e.event_id
            );
        }
    }
    for (server, part) in servers.iter().zip(reused) {
        for (e, answer) in part.iter().zip(send_collect(&server.addr, part.clone()).await) {
            assert_eq!(answer.disposition, pb::Disposition::Refused as i32, "{}: {answer:?}", e.event_id);
            assert_eq!(answer.refusal.as_ref().map(|r| r.code.as_str()), Some("ALREADY_EXISTS"), "{answer:?}");
        }
    }
}

pub fn offline_engine() -> Engine {
    let engine = Engine::new(EngineConfig::default());
    for spec in daybook::tenants::parse_tenants_toml(TENANTS).unwrap() {
        engine.put_tenant(spec).unwrap();
    }
    engine
}

pub async fn statements_of(addr: &str, tenant: &str) -> Vec<pb::Statement> {
    let channel = daybook::client::connect(addr).await.unwrap();
    pb::usage_service_client::UsageServiceClient::new(channel)
        .list_statements(pb::ListStatementsRequest { tenant_id: tenant.into() })
        .await
        .unwrap()
        .into_inner()
        .statements
}

/// `n` replicas on one Redis, with an empty config file: tenants come through the API.
fn replicas_without_file_tenants(redis: &RedisNode, dir: &std::path::Path, n: usize, extra: &[&str]) -> Vec<Server> {
    let config = dir.join("daybook.toml");
    std::fs::write(&config, "").unwrap();
    let url = redis.url();
    let args: Vec<&str> = ["--redis", &url].into_iter().chain(extra.iter().copied()).collect();
    (0..n).map(|i| start_with(&dir.join(format!("replica-{i}")), &config, &args)).collect()
}

/// A Redis the replicas share: one node or a cluster.
pub trait Backing {
    /// What `daybook serve --redis` is given.
    fn daybook_url(&self) -> String;
    fn connection(&self) -> Box<dyn redis::ConnectionLike>;
}

impl Backing for RedisNode {
    fn daybook_url(&self) -> String {
        self.url()
    }

    fn connection(&self) -> Box<dyn redis::ConnectionLike> {
        Box::new(redis::Client::open(self.url()).unwrap().get_connection().unwrap())
    }
}

impl Backing for RedisCluster {
    fn daybook_url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    fn connection(&self) -> Box<dyn redis::ConnectionLike> {
        Box::new(redis::cluster::ClusterClient::new(self.urls()).unwrap().get_connection().unwrap())
    }
}

/// Every record in the tenant's Redis streams: (record id, record).
pub fn stream_records(redis: &impl Backing, tenant: &str) -> Vec<(String, pb::Record)> {
    let mut con = redis.connection();
    let mut out = Vec::new();
    for shard in 0..daybook::store::keys::SHARDS {
        let key = daybook::store::keys::ShardKeys::new(tenant, shard).records();
        let entries: Vec<(String, Vec<Vec<u8>>)> =
            redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query(&mut *con).unwrap();
        for (_, fields) in entries {
            let field = |name: &[u8]| fields.iter().position(|f| f == name).map(|i| fields[i + 1].clone()).unwrap();
            let id = String::from_utf8(field(b"id")).unwrap();
            let record = pb::Record::decode(field(b"record").as_slice()).unwrap();
            assert_eq!(record.record_id, id);
            out.push((id, record));
        }
    }
    out
}

/// Waits until every replica says nothing waits to reach Redis (events decided in
/// degraded mode while a call timed out, say), then for the platform users it ships
/// beside them.
pub async fn settle(servers: &[Server]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for s in servers {
        let admin = s.admin.lock().unwrap().clone().expect("started with --admin");
        loop {
            let (_, body) = super::server::http_get(admin.parse().unwrap(), "/ready").await;
            if body.contains("pending: 0\n") {
                break;
            }
            if std::time::Instant::now() >= deadline {
                let log = s.log.lock().unwrap();
                panic!("{admin} never reconciled: {body}\n{}", log[log.len().saturating_sub(40)..].join("\n"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// Every replica answers the offline engine's usage and statements, and Redis's streams
/// hold each record once and each of its interactions exactly once.
async fn assert_matches(offline: &Engine, servers: &[Server], redis: &impl Backing, label: &str) {
    for tenant in TENANT_IDS {
        let expected = api::usage_out(&offline.usage(tenant, None, None).unwrap(), offline.tenant(tenant).as_deref());
        let statements: Vec<pb::Statement> =
            offline.statements(tenant).unwrap().iter().map(api::statement_out).map(judged_alerts).collect();
        for s in servers {
            assert_eq!(usage_of_tenant(&s.addr, tenant).await, expected, "{label}, {tenant}, {}", s.addr);
            let theirs: Vec<pb::Statement> =
                statements_of(&s.addr, tenant).await.into_iter().map(judged_alerts).collect();
            assert_eq!(theirs, statements, "{label}, {tenant}");
        }
        let records = stream_records(redis, tenant);
        let mut ids = HashSet::new();
        for (id, _) in &records {
            assert!(ids.insert(id.clone()), "{label}: record {id} appended twice");
        }
        let interactions: HashMap<&str, usize> = records
            .iter()
            .filter(|(_, r)| matches!(r.body, Some(pb::record::Body::Interaction(_))))
            .fold(HashMap::new(), |mut m, (id, _)| {
                *m.entry(id.as_str()).or_default() += 1;
                m
            });
        assert_eq!(interactions.len() as u64, expected.interactions, "{label}, {tenant}");
        // ListInteractions on any replica pages through every replica's interactions.
        let listed = list_interactions(&servers[servers.len() - 1].addr, tenant).await;
        let unique: HashSet<&String> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "{label}, {tenant}: an interaction listed twice");
        assert_eq!(listed.len() as u64, expected.interactions, "{label}, {tenant}");
    }
}

/// Every interaction id ListInteractions pages through (pages of 700).
async fn list_interactions(addr: &str, tenant: &str) -> Vec<String> {
    let channel = daybook::client::connect(addr).await.unwrap();
    let mut client = pb::usage_service_client::UsageServiceClient::new(channel);
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListInteractionsRequest { tenant_id: tenant.into(), page_size: 700, page_token: token };
        let page = client.list_interactions(request).await.unwrap().into_inner();
        ids.extend(page.interactions.into_iter().map(|i| i.interaction_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

/// A statement with its alerts as Redis mode judges them: on the shared aggregates, so
/// naming no event and no usage at the moment of crossing (ARCHITECTURE.md, "Redis").
pub fn judged_alerts(mut s: pb::Statement) -> pb::Statement {
    for a in &mut s.alerts {
        a.event_id.clear();
        a.usage.clear();
    }
    s
}

/// Waits for the alert records Redis mode judges every few seconds; returns their ids.
async fn alert_records(redis: &impl Backing, tenant: &str, expected: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ids: Vec<String> = stream_records(redis, tenant)
            .into_iter()
            .filter(|(_, r)| matches!(r.body, Some(pb::record::Body::Alert(_))))
            .map(|(id, _)| id)
            .collect();
        if ids.len() >= expected || std::time::Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Sends each event as one unary call to a replica picked at random, four callers at a
/// time. Returns the slowest call.
async fn send_unary(servers: &[Server], events: &[pb::Event], seed: u64) -> std::time::Duration {
    let mut channels = Vec::new();
    for s in servers {
        channels.push(daybook::client::connect(&s.addr).await.unwrap());
    }
    let mut rng = Rng(seed | 1);
    let mut lanes: Vec<Vec<(usize, pb::Event)>> = vec![Vec::new(); 4];
    for (i, e) in events.iter().enumerate() {
        lanes[i % 4].push((rng.next(servers.len() as u64) as usize, e.clone()));
    }
    let calls = lanes.into_iter().map(|lane| {
        let channels = channels.clone();
        async move {
            let mut slowest = std::time::Duration::ZERO;
            for (replica, e) in lane {
                let mut client = pb::ingest_service_client::IngestServiceClient::new(channels[replica].clone());
                let started = std::time::Instant::now();
                let result = daybook::client::ingest(&mut client, e).await;
                slowest = slowest.max(started.elapsed());
                result.unwrap();
            }
            slowest
        }
    });
    futures_util::future::join_all(calls).await.into_iter().max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_stream_and_restarted_loses_nothing_and_counts_nothing_twice() {
    let mut redis = RedisNode::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, TENANTS).unwrap();
    let url = redis.url();
    let servers: Vec<Server> = (0..2)
        .map(|i| {
            let args = ["--redis", &url, "--admin", "127.0.0.1:0"];
            start_with(&dir.path().join(format!("replica-{i}")), &config, &args)
        })
        .collect();
    let offline = offline_engine();
    let events = stream(21, 3000);
    for e in &events {
        offline.ingest(RawEvent::from(e.clone()), None, &mut Vec::new()).unwrap();
    }
    let parts: Vec<&[pb::Event]> = events.chunks(events.len().div_ceil(5)).collect();

    let before = send_unary(&servers, parts[0], 1).await;
    let waits_before = redis_waits(&servers).await;
    redis.kill();
    let killed = send_unary_or_hang(&servers, parts[1], 2, "killed").await;
    let waits_killed = redis_waits(&servers).await - waits_before;
    let degraded = |s: &Server| {
        let admin = s.admin.lock().unwrap().clone().unwrap();
        async move { super::server::http_get(admin.parse().unwrap(), "/ready").await.1 }
    };
    let status = degraded(&servers[0]).await;
    assert!(status.contains("redis: degraded") && !status.contains("pending: 0\n"), "{status}");
    redis.restart();
    settle(&servers).await;
    let restarted = send_unary(&servers, parts[2], 3).await;
    let status = degraded(&servers[0]).await;
    assert!(status.contains("redis: ok"), "{status}");
    // A partition: Redis holds the connections and answers nothing. It resumes only after
    // every call of the phase has been answered: a call that waited for Redis itself,
    // rather than for the deadline, would never return.
    let waits_before = redis_waits(&servers).await;
    redis.pause();
    let frozen = send_unary_or_hang(&servers, parts[3], 4, "frozen").await;
    let waits_frozen = redis_waits(&servers).await - waits_before;
    redis.resume();
    let after = send_unary(&servers, parts[4], 5).await;
    settle(&servers).await;
    assert_matches(&offline, &servers, &redis, "after the outages").await;
    eprintln!(
        "slowest call: {before:?} before, {killed:?} with Redis killed, {restarted:?} after its restart, \
         {frozen:?} with Redis frozen, {after:?} after; Redis calls that waited out their deadline: \
         {waits_killed} of {} events while killed, {waits_frozen} of {} while frozen",
        parts[1].len(),
        parts[3].len()
    );
    // Each call waits for Redis at most one deadline (50 ms), and after a failure the
    // breaker answers at once for its cool-down (500 ms): of a phase's hundreds of calls,
    // only those in flight when Redis went away and one probe per cool-down wait. Counted,
    // not timed: how long the slowest call takes (issue 4's bound is 100 ms) depends on
    // the machine's load and is measured by `daybook bench --redis-outage` (BENCHMARKS.md).
    for (phase, waits, events) in [("killed", waits_killed, parts[1].len()), ("frozen", waits_frozen, parts[3].len())] {
        assert!(waits * 10 <= events as u64, "{waits} Redis calls of {events} events waited with Redis {phase}");
    }
    assert!(waits_frozen > 0, "a frozen Redis is noticed by its deadline");
}

/// UNAVAILABLE means "retry": a tenant on its tenant log is refused while Redis is frozen
/// (there is no order to rate its events in), and a client that retries with the same
/// event id gets the event rated once Redis is back, counted once however many attempts
/// reached Redis's log before it froze or while it was frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_retrying_unavailable_rides_out_a_frozen_store() {
    use pb::ingest_service_client::IngestServiceClient;
    let redis = RedisNode::start();
    let dir = tempfile::tempdir().unwrap();
    let servers = replicas_without_file_tenants(&redis, dir.path(), 1, &["--redis-tenant-log", "every_tenant"]);
    let channel = daybook::client::connect(&servers[0].addr).await.unwrap();
    super::server::create(&channel, super::server::tenant("globex", "UTC", pb::Meter::Dar)).await;
    let event = super::server::as_event(super::server::message(
        "globex",
        "m-1",
        "2026-11-20T10:00:00Z",
        "c-1",
        pb::SenderRole::Consumer,
    ));

    redis.pause();
    let mut client = IngestServiceClient::new(channel.clone());
    let refused = daybook::client::ingest(&mut client, event.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    // Patient enough (tens of seconds in all) for Redis to be thawed meanwhile.
    let retries = daybook::client::Retries { retries: 10, ..Default::default() };
    let retrying = tokio::spawn(async move { daybook::client::ingest_retrying(&mut client, event, retries).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    redis.resume();
    let outcome = retrying.await.unwrap().expect("rated once Redis is back");
    assert_eq!(outcome.disposition, pb::Disposition::NewInteraction as i32, "{outcome:?}");
    assert_eq!(super::server::usage(&channel, "globex").await.interactions, 1);
}

/// Redis calls of every replica so far that failed after waiting (25 ms or longer, the
/// bucket below the 50 ms deadline): a call the open breaker answers takes microseconds.
async fn redis_waits(servers: &[Server]) -> u64 {
    let mut waits = 0.0;
    for s in servers {
        let admin = s.admin.lock().unwrap().clone().expect("started with --admin");
        let (_, text) = super::server::http_get(admin.parse().unwrap(), "/metrics").await;
        let samples = super::telemetry::parse_prometheus(&text);
        let failed = |s: &&super::telemetry::Sample| {
            s.name.starts_with("daybook_redis_call_duration")
                && s.labels.get("daybook_redis_outcome").map(String::as_str) == Some("error")
        };
        for sample in samples.iter().filter(failed) {
            if sample.name.ends_with("_count") {
                waits += sample.value;
            } else if sample.name.ends_with("_bucket") && sample.labels.get("le").map(String::as_str) == Some("0.025") {
                waits -= sample.value;
            }
        }
    }
    waits as u64
}

/// [`send_unary`], failing rather than hanging if the calls wait for Redis to come back.
async fn send_unary_or_hang(servers: &[Server], events: &[pb::Event], seed: u64, phase: &str) -> std::time::Duration {
    tokio::time::timeout(std::time::Duration::from_secs(120), send_unary(servers, events, seed))
        .await
        .unwrap_or_else(|_| panic!("calls with Redis {phase} were still unanswered after two minutes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_count_exactly_like_one_engine() {
    three_replicas_count_like_one_engine(&RedisNode::start(), &[11, 12, 13]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_three_master_cluster_count_exactly_like_one_engine() {
    three_replicas_count_like_one_engine(&RedisCluster::start(), &[31, 32]).await;
}

/// For several seeds, a generated stream split at random over three replicas (and a share
/// sent again elsewhere) gives the single engine's usage, statements and records.
async fn three_replicas_count_like_one_engine(redis: &impl Backing, seeds: &[u64]) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, TENANTS).unwrap();
    let url = redis.daybook_url();
    let mut servers: Vec<Server> = (0..3)
        .map(|i| {
            let args = ["--redis", &url, "--admin", "127.0.0.1:0"];
            start_with(&dir.path().join(format!("replica-{i}")), &config, &args)
        })
        .collect();
    let offline = offline_engine();

    for &seed in seeds {
        let events = stream(seed, 4000);
        let mut rng = Rng(seed.wrapping_mul(31) | 1);
        let mut split: Vec<Vec<pb::Event>> = vec![Vec::new(); 3];
        for e in &events {
            let home = rng.next(3) as usize;
            split[home].push(e.clone());
            if rng.next(10) == 0 {
                // A client that retries on another replica.
                split[(home + 1 + rng.next(2) as usize) % 3].push(e.clone());
            }
            offline.ingest(RawEvent::from(e.clone()), None, &mut Vec::new()).unwrap();
        }
        let sends = servers.iter().zip(split).map(|(s, part)| send(&s.addr, part));
        futures_util::future::join_all(sends).await;
        settle(&servers).await;
        retries_and_reuses_elsewhere(&servers, &events, seed).await;

        assert_matches(&offline, &servers, redis, &format!("seed {seed}")).await;
    }
    // PL-3: each threshold the shared usage reached is one record in Redis, once, whichever
    // replicas judged it.
    let mut raised: Vec<String> =
        offline.statements("acme").unwrap().iter().flat_map(|s| s.alerts.clone()).map(|a| a.id.to_string()).collect();
    assert_eq!(raised.len(), 2, "both thresholds of acme's plan are reached");
    let mut emitted = alert_records(redis, "acme", raised.len()).await;
    emitted.sort();
    raised.sort();
    assert_eq!(emitted, raised);
    assert!(offline.usage("acme", None, None).unwrap().interactions > 1000);
    for s in &mut servers {
        s.child.kill().unwrap();
        s.child.wait().unwrap();
    }
}

/// Tenants created and changed through the API of one replica are every replica's: an
/// event for a tenant created a moment ago on another replica is rated, not refused; a
/// change must take effect far enough ahead for every replica to have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_defined_through_one_replica_are_every_replicas() {
    use pb::tenant_service_client::TenantServiceClient;
    let redis = RedisNode::start();
    let dir = tempfile::tempdir().unwrap();
    let servers = replicas_without_file_tenants(&redis, dir.path(), 2, &[]);
    let channel = |s: &Server| {
        let addr = s.addr.clone();
        async move { daybook::client::connect(&addr).await.unwrap() }
    };
    let (a, b) = (channel(&servers[0]).await, channel(&servers[1]).await);
    super::server::create(&a, super::server::tenant("globex", "Europe/Paris", pb::Meter::Dar)).await;
    let again = TenantServiceClient::new(b.clone())
        .create_tenant(pb::CreateTenantRequest {
            tenant: Some(super::server::tenant("globex", "Asia/Tokyo", pb::Meter::Dar)),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");

    let message = super::server::message("globex", "m-1", "2026-11-20T10:00:00Z", "c-1", pb::SenderRole::Consumer);
    let outcome = pb::ingest_service_client::IngestServiceClient::new(b.clone())
        .ingest_message(message)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome.outcome.unwrap().disposition, pb::Disposition::NewInteraction as i32);

    let change = |id: &str, seconds: i64| pb::ChangeSettingsRequest {
        tenant_id: "globex".into(),
        change: Some(pb::SettingsChange {
            change_id: id.into(),
            effective_from: (chrono::Utc::now() + chrono::TimeDelta::seconds(seconds)).to_rfc3339(),
            settings: Some(pb::Settings { generative_ai: Some(true), ..Default::default() }),
        }),
    };
    let soon = TenantServiceClient::new(b.clone()).change_settings(change("soon", 1)).await.unwrap_err();
    assert_eq!(soon.code(), tonic::Code::FailedPrecondition, "{soon:?}");
    TenantServiceClient::new(b.clone()).change_settings(change("later", 30)).await.unwrap();
    // Replica A learns it within a poll.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let t = super::server::get_tenant(&a, "globex").await;
        if t.changes.iter().any(|c| c.change_id == "later") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replica A never learned the change");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Both changes are audited once, on the tenant's first stream in Redis, by the replica
    // that made them (the refused change is not).
    let stream = daybook::store::keys::ShardKeys::new("globex", 0).records();
    let audits: Vec<pb::SettingsChangeAudit> = redis_records(&redis, &stream)
        .into_iter()
        .filter_map(|r| match r.body {
            Some(pb::record::Body::SettingsChange(a)) => Some(a),
            _ => None,
        })
        .collect();
    let operations: Vec<(&str, &str)> = audits.iter().map(|a| (a.operation.as_str(), a.change_id.as_str())).collect();
    assert_eq!(operations, [("create_tenant", ""), ("change_settings", "later")], "{audits:?}");
    assert!(audits.iter().all(|a| a.changed_by == "anonymous"));
}

/// The records of one stream, decoded.
fn redis_records(redis: &RedisNode, stream: &str) -> Vec<pb::Record> {
    let mut out = Vec::new();
    let mut connection = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let entries: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(&mut connection).unwrap();
    for (_, fields) in entries {
        if let Some(kv) = fields.chunks(2).find(|kv| kv[0] == b"record") {
            out.push(<pb::Record as prost::Message>::decode(kv[1].as_slice()).unwrap());
        }
    }
    out
}

/// Warm restart: a replica that starts loads the current periods from Redis, so that it
/// knows the relationships other replicas counted today, even with Redis frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_replica_loads_the_current_periods_from_redis() {
    use pb::ingest_service_client::IngestServiceClient;
    let redis = RedisNode::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, TENANTS).unwrap();
    let url = redis.url();
    let at = (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339();
    let message = |id: String, consumer: usize| {
        super::server::message("acme", &id, &at, &format!("c-{consumer}"), pb::SenderRole::Consumer)
    };
    let a = start_with(&dir.path().join("a"), &config, &["--redis", &url]);
    let mut client = IngestServiceClient::new(daybook::client::connect(&a.addr).await.unwrap());
    for consumer in 0..100 {
        client.ingest_message(message(format!("first-{consumer}"), consumer)).await.unwrap();
    }
    let b = start_with(&dir.path().join("b"), &config, &["--redis", &url]);
    // It announces its address before it connects to Redis: wait for the warm-up.
    let mut loaded = None;
    for _ in 0..200 {
        loaded = b.log.lock().unwrap().iter().find(|l| l.contains("shared entries of the current periods")).cloned();
        if loaded.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(loaded.as_deref().is_some_and(|l| l.contains("loaded 100 ")), "{loaded:?}");

    redis.pause();
    let mut client = IngestServiceClient::new(daybook::client::connect(&b.addr).await.unwrap());
    for consumer in 0..100 {
        let outcome = client.ingest_message(message(format!("again-{consumer}"), consumer)).await.unwrap();
        let disposition = outcome.into_inner().outcome.unwrap().disposition;
        assert_eq!(disposition, pb::Disposition::AlreadyCounted as i32, "c-{consumer}, from the warmed near cache");
    }
    redis.resume();
}

/// Nothing accepted is lost to a crash during an outage: events decided while Redis was
/// down wait in the journal (a snapshot waits for them too), survive `kill -9` and a
/// restart, and reach Redis once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_decided_during_an_outage_survive_a_crash_and_reach_redis() {
    let mut redis = RedisNode::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, format!("[server]\nsnapshot_interval = \"PT1S\"\n{TENANTS}")).unwrap();
    let url = redis.url();
    let args = ["--redis", &url, "--admin", "127.0.0.1:0"];
    let data = dir.path().join("replica");
    let offline = offline_engine();
    let events = stream(41, 2000);
    for e in &events {
        offline.ingest(RawEvent::from(e.clone()), None, &mut Vec::new()).unwrap();
    }
    let (before, during) = events.split_at(events.len() / 2);

    let server = start_with(&data, &config, &args);
    send(&server.addr, before.to_vec()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    redis.kill();
    send(&server.addr, during.to_vec()).await;
    // Snapshots are due every second meanwhile; they must wait for the pending events.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    drop(server); // kill -9
    let server = start_with(&data, &config, &args);
    // Redis is still down: the restarted replica knows what waits.
    let admin = loop {
        if let Some(a) = server.admin.lock().unwrap().clone() {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mut status = String::new();
    for _ in 0..100 {
        status = super::server::http_get(admin.parse().unwrap(), "/ready").await.1;
        if status.contains("redis: degraded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The events decided before the crash wait again, read back from the journal.
    assert!(status.contains("redis: degraded") && !status.contains("pending: 0\n"), "{status}");
    redis.restart();
    settle(std::slice::from_ref(&server)).await;
    assert_matches(&offline, std::slice::from_ref(&server), &redis, "after a crash during an outage").await;
}

/// T-2 across replicas: an event id is one event whichever replica receives it. Replica A
/// accepts `e1` (a first touch) and `e2` (a repeat); on replica B a reuse of either id
/// with another payload (another consumer, another instant, another price) is refused
/// with ALREADY_EXISTS and changes nothing, and an identical retry gets the original
/// outcome, marked as a retry. On a single node and on a cluster (the id's reservation
/// lives in another slot than the entries it touches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_2_an_event_id_is_one_event_on_every_replica() {
    event_ids_are_shared(&RedisNode::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_2_an_event_id_is_one_event_on_every_replica_of_a_cluster() {
    event_ids_are_shared(&RedisCluster::start()).await;
}

async fn event_ids_are_shared(redis: &impl Backing) {
    use pb::ingest_service_client::IngestServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daybook.toml");
    std::fs::write(&config, TENANTS).unwrap();
    let url = redis.daybook_url();
    let a = start_with(&dir.path().join("a"), &config, &["--redis", &url]);
    let b = start_with(&dir.path().join("b"), &config, &["--redis", &url]);
    let mut on_a = IngestServiceClient::new(daybook::client::connect(&a.addr).await.unwrap());
    let mut on_b = IngestServiceClient::new(daybook::client::connect(&b.addr).await.unwrap());
    let now = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let at = now.to_rfc3339();
    let message =
        |id: &str, consumer: &str, at: &str| super::server::message("acme", id, at, consumer, pb::SenderRole::Consumer);
    let priced = |id: &str, amount: &str| {
        let mut m = super::server::message("acme", id, &at, "c1", pb::SenderRole::System);
        m.message.as_mut().unwrap().provider_price = Some(pb::Money { amount: amount.into(), currency: "USD".into() });
        m
    };

    let first = on_a.ingest_message(message("e1", "c1", &at)).await.unwrap().into_inner().outcome.unwrap();
    assert_eq!(first.disposition, pb::Disposition::NewInteraction as i32);
    let repeat = on_a.ingest_message(message("e2", "c1", &at)).await.unwrap().into_inner().outcome.unwrap();
    assert_eq!(repeat.disposition, pb::Disposition::AlreadyCounted as i32);
    let charged = on_a.ingest_message(priced("e3", "0.0079")).await.unwrap().into_inner().outcome.unwrap();
    assert!(!charged.retry);
    let before = usage_of_tenant(&b.addr, "acme").await;
    assert_eq!(before.interactions, 1);

    // Reuses on B: another consumer, another instant (as a retry re-stamped), another price.
    let later = (now + chrono::TimeDelta::seconds(30)).to_rfc3339();
    for reuse in [message("e1", "c2", &at), message("e2", "c2", &at), message("e2", "c1", &later), priced("e3", "0.05")]
    {
        let refused = on_b.ingest_message(reuse.clone()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{reuse:?}: {refused:?}");
    }
    // Nothing changed: one interaction, one pass-through charge, on either replica.
    for addr in [&a.addr, &b.addr] {
        assert_eq!(usage_of_tenant(addr, "acme").await, before, "{addr}");
    }

    // Identical retries on B: the original outcome, as a retry.
    for (id, original) in [("e1", &first), ("e2", &repeat)] {
        let again = on_b.ingest_message(message(id, "c1", &at)).await.unwrap().into_inner().outcome.unwrap();
        assert!(again.retry, "{id}: {again:?}");
        assert_eq!(again.disposition, original.disposition, "{id}");
        assert_eq!(again.lines, original.lines, "{id}");
        assert_eq!(again.interactions, original.interactions, "{id}");
    }
    let again = on_b.ingest_message(priced("e3", "0.0079")).await.unwrap().into_inner().outcome.unwrap();
    assert!(again.retry);
    assert_eq!(again.pass_through, charged.pass_through);
    // And a reuse on A of what B refused is refused there too; totals stay.
    let refused = on_a.ingest_message(message("e1", "c2", &at)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    for addr in [&a.addr, &b.addr] {
        assert_eq!(usage_of_tenant(addr, "acme").await, before, "{addr}");
    }
}

/// A memory ceiling makes the near cache forget entries and event ids (Redis keeps them):
/// 1M distinct consumers under a 128 MiB ceiling (about 262k entries), the process stays
/// under it, retries of early events get their original outcome from the store (their
/// ids are reserved there), and nothing is counted twice. The 10M soak is `memory::`, run
/// by `./scripts/bench`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_forgotten_consumers_stay_under_the_ceiling_and_are_answered_by_the_store() {
    super::memory::distinct_consumers_under_a_ceiling(1_000_000, 128).await;
}

/// Every visible scenario through three replicas on one Redis, each event sent to one of
/// them at random (three different splits): the replicas answer as one engine. Part two's
/// tenants follow their tenant log on every replica (several meters, outcomes,
/// revocations); a void of a tenant metered by claims is published to the store and
/// withdraws there (DB-57); with `redis_tenant_log = every_tenant` every scenario passes
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visible_scenarios_pass_through_three_replicas_with_a_random_split() {
    let redis = RedisNode::start();
    let dir = tempfile::tempdir().unwrap();
    let servers = replicas_without_file_tenants(&redis, dir.path(), 3, &[]);
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let text = scenarios_over_replicas(addrs, 1..=3).await;
    for name in ["DB-50", "DB-55", "DB-56", "DB-57", "DB-58", "DB-62"] {
        assert_eq!(text.matches(&format!("PASS {name} ")).count(), 3, "{name}: {text}");
    }
    assert!(!text.contains("UNSUPPORTED"), "{text}");

    let every = tempfile::tempdir().unwrap();
    let servers = replicas_without_file_tenants(&redis, every.path(), 3, &["--redis-tenant-log", "every_tenant"]);
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let text = scenarios_over_replicas(addrs, 4..=5).await;
    assert!(!text.contains("UNSUPPORTED"), "{text}");
    assert_eq!(text.matches("PASS DB-57 ").count(), 2, "{text}");
}

/// Runs every visible scenario over the replicas once per seed (each seed its own random
/// split, and its own tenants); every one must pass or be unsupported. Returns the report.
async fn scenarios_over_replicas(addrs: Vec<String>, seeds: std::ops::RangeInclusive<u64>) -> String {
    let report = tokio::task::spawn_blocking(move || {
        let files = daybook::scenario::scenario_files(&[super::scenarios::scenarios_dir()]).unwrap();
        let mut out = Vec::new();
        let mut tallies = Vec::new();
        for seed in seeds {
            let mut n = 0;
            tallies.push(daybook::scenario::run_files(
                &files,
                |s| {
                    if let Some(skip) = daybook::scenario::GrpcTarget::skip_reason(s) {
                        return Err(skip);
                    }
                    n += 1;
                    Ok(Box::new(daybook::scenario::GrpcTarget::connect_replicas(&addrs, seed * 1000 + n).unwrap())
                        as Box<dyn daybook::scenario::Target>)
                },
                &mut out,
            ));
        }
        (tallies, String::from_utf8(out).unwrap())
    })
    .await
    .unwrap();
    let (tallies, text) = report;
    for tally in tallies {
        assert_eq!(tally.failed, 0, "{text}");
        assert!(tally.passed >= 35, "{text}");
    }
    text
}
