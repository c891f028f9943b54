//! `daybook bench`: a load generator that drives a running daybook over gRPC and, in the
//! same run, the floor of this machine: an empty tonic handler of the same service in a
//! process of its own (`daybook bench-floor`), called by the same client code. Each row
//! reports calls/s, events/s and latency percentiles, and the ratio to the floor.
//!
//! Traffic is realistic for a chat platform: consumers drawn from a Zipf distribution (a
//! few very active, a long tail), so most messages repeat a relationship already counted
//! today and a share are first touches; senders alternate between consumer, agent and
//! bot; every event id is new.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::Status;

use crate::api::pb;
use pb::ingest_service_client::IngestServiceClient;

mod baselines;
pub mod outage;
mod rounds;

pub use rounds::Spread;

pub use baselines::{BenchRedis, EmptyIngest, NaiveIngest, delaying_proxy, serve_floor, serve_naive};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The daybook under test (`HOST:PORT` or `unix:PATH`).
    pub target: String,
    /// The empty handler to compare with, if any.
    pub floor: Option<String>,
    /// The naive Redis design to compare with (one `SET NX` round trip per message), if
    /// any: the target is then a daybook in Redis mode on the same Redis.
    pub naive: Option<String>,
    /// Unary runs, by number of calls in flight.
    pub concurrency: Vec<usize>,
    /// Streamed runs: this many streams, each sending batches of `batch` events.
    pub streams: usize,
    pub batch: usize,
    pub duration: Duration,
    /// Traffic sent before each run is measured: the near cache reaches the steady
    /// state of a day, where most messages repeat a relationship already counted.
    pub warmup: Duration,
    /// Who sends, and over how many connections.
    pub traffic: Sampling,
    /// Processes this bench started, by the address they serve: the CPU time each
    /// spends per call is measured as well (Linux). On two cores shared with the client,
    /// calls/s swing by a fifth from run to run; CPU per call is the steadier measure of
    /// what a call costs the server.
    pub processes: Vec<(String, u32)>,
    /// Each row is measured this many times, every side of it in each round; the
    /// summary gives the median of the rounds and their spread.
    pub rounds: usize,
    /// Instead of the rows: Redis goes away in each round, under unary traffic
    /// ([`outage::run`]).
    pub outage: Option<outage::Outage>,
}

/// Where calls go, and the process behind it when this bench started it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    pub addr: &'a str,
    pub pid: Option<u32>,
}

impl Options {
    fn endpoint<'a>(&'a self, addr: &'a str) -> Endpoint<'a> {
        Endpoint { addr, pid: self.processes.iter().find(|(a, _)| a == addr).map(|(_, pid)| *pid) }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub calls_per_s: f64,
    pub events_per_s: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    /// The server process's CPU time (user and system) per call over the measured
    /// seconds, when known.
    pub cpu_per_call: Option<Duration>,
    /// The server process's write system calls (`syscw` of `/proc/PID/io`: its socket
    /// writes and its journal's) per call over the measured seconds, when known. Unlike
    /// time, a count does not move with the machine's load.
    pub writes_per_call: Option<f64>,
    /// The share of events answered as the start of a billable interaction (first
    /// touches; the rest repeat a relationship already counted). The empty handler
    /// starts none.
    pub new_share: Option<f64>,
}

impl Row {
    pub fn line(&self) -> String {
        let mut extra = self.cpu_per_call.map(|c| format!("   cpu {:>7.1} us/call", micros(c))).unwrap_or_default();
        if let Some(writes) = self.writes_per_call {
            extra.push_str(&format!("   writes {writes:>5.2}/call"));
        }
        if let Some(share) = self.new_share.filter(|s| *s > 0.0) {
            extra.push_str(&format!("   new {:>4.1}%", share * 100.0));
        }
        format!(
            "{:<28} {:>10.0} calls/s {:>10.0} events/s   p50 {:>8.1} us   p99 {:>8.1} us   p99.9 {:>8.1} us{extra}",
            self.name,
            self.calls_per_s,
            self.events_per_s,
            micros(self.p50),
            micros(self.p99),
            micros(self.p999)
        )
    }
}

/// CPU time (user and system, all threads) a process of this machine has used so far,
/// read from `/proc/PID/stat`; `None` where there is no such file.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let ticks = cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    // In clock ticks of USER_HZ, which is 100 on every Linux architecture.
    Some(Duration::from_millis(ticks * 10))
}

/// utime + stime of a `/proc/PID/stat` line. The command name, in parentheses, may hold
/// spaces and parentheses: fields are counted after its last `)`. utime and stime are the
/// 14th and 15th fields, the 12th and 13th after the name.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Write system calls a process of this machine has made so far (`syscw` of
/// `/proc/PID/io`); `None` where that cannot be read.
pub fn write_calls(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("syscw:")).and_then(|n| n.trim().parse().ok())
}

/// What the server process spent over the measured seconds: CPU time, and write calls.
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    cpu: Option<Duration>,
    writes: Option<u64>,
}

/// Measures `pid`'s CPU time and write calls from `from` to `until`, in the background.
fn cpu_meter(pid: Option<u32>, from: Instant, until: Instant) -> tokio::task::JoinHandle<Spent> {
    tokio::spawn(async move {
        let Some(pid) = pid else { return Spent::default() };
        tokio::time::sleep_until(from.into()).await;
        let (cpu, writes) = (cpu_time(pid), write_calls(pid));
        tokio::time::sleep_until(until.into()).await;
        Spent {
            cpu: cpu.and_then(|c| Some(cpu_time(pid)?.saturating_sub(c))),
            writes: writes.and_then(|w| Some(write_calls(pid)?.saturating_sub(w))),
        }
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The traffic's shape: the consumer population, drawn by Zipf(1) (a few consumers very
/// active, as in chat) or uniformly (every consumer as likely: more first touches), and
/// how many HTTP/2 connections carry the calls (workers take them in turn).
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub consumers: usize,
    pub uniform: bool,
    pub connections: usize,
}

impl Sampling {
    /// How a run's consumers are drawn.
    fn population(&self) -> Population {
        match self.uniform {
            true => Population::Uniform(self.consumers.max(1)),
            false => Population::Zipf(Zipf::new(self.consumers)),
        }
    }

    /// The run's connections to `addr`.
    async fn channels(&self, addr: &str) -> anyhow::Result<Vec<tonic::transport::Channel>> {
        let mut channels = Vec::new();
        for _ in 0..self.connections.max(1) {
            channels.push(daybook_client::connect(addr).await?);
        }
        Ok(channels)
    }
}

/// Consumers drawn by rank (0 = most active).
pub enum Population {
    Zipf(Zipf),
    Uniform(usize),
}

impl Population {
    /// The consumer for a uniform `u` in [0, 1).
    pub fn rank(&self, u: f64) -> usize {
        match self {
            Population::Zipf(z) => z.rank(u),
            Population::Uniform(n) => ((u * *n as f64) as usize).min(n - 1),
        }
    }
}

/// Zipf(1) over `n` consumers, sampled by inverting the cumulative distribution.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|k| {
                total += 1.0 / k as f64;
                total
            })
            .collect::<Vec<_>>();
        Zipf { cumulative: cumulative.iter().map(|c| c / total).collect() }
    }

    /// The rank (0 = most active) for a uniform `u` in [0, 1).
    pub fn rank(&self, u: f64) -> usize {
        self.cumulative.partition_point(|c| *c <= u).min(self.cumulative.len() - 1)
    }
}

/// A small, fast generator (xorshift64*): the load generator must not be the bottleneck.
pub struct Rng(pub u64);

impl Rng {
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The event stream of one worker.
struct Traffic {
    tenant: String,
    run: String,
    worker: usize,
    next: u64,
    rng: Rng,
}

impl Traffic {
    fn new(tenant: &str, run: &str, worker: usize) -> Traffic {
        // Seeded by the run as well as the worker, and each run has a consumer
        // population of its own (`event`): every run (and round) starts where a day
        // starts, with no consumer counted yet, so its first touches are what its
        // distribution and length give, whatever ran before it on the same server.
        let run_seed =
            run.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let rng = Rng((run_seed ^ (worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
        Traffic { tenant: tenant.into(), run: run.into(), worker, next: 0, rng }
    }

    fn event(&mut self, zipf: &Population) -> pb::Event {
        self.next += 1;
        let consumer = zipf.rank(self.rng.unit());
        let role = match self.next % 4 {
            0 => pb::SenderRole::Agent,
            1 => pb::SenderRole::Bot,
            _ => pb::SenderRole::Consumer,
        };
        pb::Event {
            tenant_id: self.tenant.clone(),
            event_id: format!("{}-{}-{}", self.run, self.worker, self.next),
            event_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: Some(pb::event::Kind::Message(pb::MessageEvent {
                consumer_id: format!("{}-consumer-{consumer}", self.run),
                conversation_id: format!("{}-conversation-{consumer}", self.run),
                sender_role: role as i32,
                sender_id: format!("agent-{}", consumer % 50),
                channel: pb::Channel::Web as i32,
                integration_id: "web-1".into(),
                provider_price: None,
            })),
        }
    }

    fn message(&mut self, zipf: &Population) -> pb::IngestMessageRequest {
        let e = self.event(zipf);
        let Some(pb::event::Kind::Message(message)) = e.kind else { unreachable!("messages only") };
        pb::IngestMessageRequest {
            tenant_id: e.tenant_id,
            event_id: e.event_id,
            event_time: e.event_time,
            message: Some(message),
        }
    }
}

/// Creates the benchmark's tenant (a DAR meter in UTC) on a daybook.
pub async fn create_tenant(target: &str, tenant: &str) -> anyhow::Result<()> {
    let channel = daybook_client::connect(target).await?;
    let request = pb::CreateTenantRequest {
        tenant: Some(pb::Tenant {
            tenant_id: tenant.into(),
            meter: pb::Meter::Dar as i32,
            settings: Some(pb::Settings { time_zone: Some("UTC".into()), ..Default::default() }),
            changes: vec![],
            plan: None,
            meters: vec![],
        }),
    };
    match pb::tenant_service_client::TenantServiceClient::new(channel).create_tenant(request).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(s) => Err(s.into()),
    }
}

/// Unary `IngestMessage` with `concurrency` calls in flight (each on its own HTTP/2
/// stream of one of `traffic.connections` connections, as a service's clients would do).
pub async fn unary(
    target: Endpoint<'_>,
    tenant: &str,
    concurrency: usize,
    (warmup, duration): (Duration, Duration),
    traffic_shape: Sampling,
) -> anyhow::Result<Row> {
    let channels = traffic_shape.channels(target.addr).await?;
    let zipf = std::sync::Arc::new(traffic_shape.population());
    let run = run_id();
    let measured_from = Instant::now() + warmup;
    let deadline = measured_from + duration;
    let cpu = cpu_meter(target.pid, measured_from, deadline);
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let mut client = IngestServiceClient::new(channels[worker % channels.len()].clone());
        let zipf = zipf.clone();
        let mut traffic = Traffic::new(tenant, &run, worker);
        workers.push(tokio::spawn(async move {
            let mut measured = Measured { latencies: Vec::with_capacity(100_000), new: 0 };
            while Instant::now() < deadline {
                let request = traffic.message(&zipf);
                let started = Instant::now();
                let response = client.ingest_message(request).await?.into_inner();
                if started >= measured_from {
                    measured.latencies.push(started.elapsed());
                    measured.new += u64::from(response.outcome.is_some_and(|o| is_new(&o)));
                }
            }
            Ok::<_, Status>(measured)
        }));
    }
    Ok(row(format!("unary c={concurrency}"), gather(workers).await?, 1, duration, cpu.await?))
}

/// Streamed `IngestBatch`: `streams` streams, each keeping one batch in flight.
pub async fn streamed(
    target: Endpoint<'_>,
    tenant: &str,
    (streams, batch): (usize, usize),
    (warmup, duration): (Duration, Duration),
    traffic_shape: Sampling,
) -> anyhow::Result<Row> {
    let channels = traffic_shape.channels(target.addr).await?;
    let zipf = std::sync::Arc::new(traffic_shape.population());
    let run = run_id();
    let measured_from = Instant::now() + warmup;
    let deadline = measured_from + duration;
    let cpu = cpu_meter(target.pid, measured_from, deadline);
    let mut workers = Vec::new();
    for worker in 0..streams {
        let mut client = IngestServiceClient::new(channels[worker % channels.len()].clone());
        let zipf = zipf.clone();
        let mut traffic = Traffic::new(tenant, &run, worker);
        workers.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let mut responses =
                client.ingest_batch(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
            let mut measured = Measured { latencies: Vec::new(), new: 0 };
            while Instant::now() < deadline {
                let events = (0..batch).map(|_| traffic.event(&zipf)).collect();
                let started = Instant::now();
                if tx.send(pb::IngestBatchRequest { events }).await.is_err() {
                    break;
                }
                match responses.next().await {
                    Some(Ok(answer)) if started >= measured_from => {
                        measured.latencies.push(started.elapsed());
                        measured.new += answer.outcomes.iter().filter(|o| is_new(o)).count() as u64;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(s)) => return Err(s),
                    None => break,
                }
            }
            Ok::<_, Status>(measured)
        }));
    }
    Ok(row(format!("batch {streams}x{batch}"), gather(workers).await?, batch, duration, cpu.await?))
}

/// A prefix that keeps this run's event ids apart from every earlier run's.
fn run_id() -> String {
    format!("{:x}-{:x}", std::process::id(), chrono::Utc::now().timestamp_micros())
}

/// What one worker measured: each call's latency, and how many of its events started a
/// billable interaction (first touches).
struct Measured {
    latencies: Vec<Duration>,
    new: u64,
}

fn is_new(outcome: &pb::EventOutcome) -> bool {
    outcome.disposition == pb::Disposition::NewInteraction as i32
}

/// Every worker's measurements, or the first error.
async fn gather(workers: Vec<tokio::task::JoinHandle<Result<Measured, Status>>>) -> anyhow::Result<Measured> {
    let mut all = Measured { latencies: Vec::new(), new: 0 };
    for w in workers {
        let one = w.await??;
        all.latencies.extend(one.latencies);
        all.new += one.new;
    }
    Ok(all)
}

fn row(name: String, measured: Measured, events_per_call: usize, duration: Duration, spent: Spent) -> Row {
    let Measured { mut latencies, new } = measured;
    latencies.sort_unstable();
    let n = latencies.len();
    let at = |q: f64| latencies.get(((n as f64 * q) as usize).min(n.saturating_sub(1))).copied().unwrap_or_default();
    let calls = n as f64 / duration.as_secs_f64();
    Row {
        name,
        calls_per_s: calls,
        events_per_s: calls * events_per_call as f64,
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        cpu_per_call: spent.cpu.filter(|_| n > 0).map(|c| c / n as u32),
        writes_per_call: spent.writes.filter(|_| n > 0).map(|w| w as f64 / n as f64),
        new_share: (n > 0).then(|| new as f64 / (n * events_per_call) as f64),
    }
}

/// What one run drives: unary calls with this many in flight, or streams of batches.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Unary(usize),
    Batches { streams: usize, batch: usize },
}

/// One row of one round: daybook, and beside it, measured in the same round, the
/// empty-handler floor and the naive design when they are configured.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub daybook: Row,
    pub floor: Option<Row>,
    pub naive: Option<Row>,
}

impl Options {
    async fn measure(&self, addr: &str, tenant: &str, shape: Shape) -> anyhow::Result<Row> {
        let d = (self.warmup, self.duration);
        match shape {
            Shape::Unary(c) => unary(self.endpoint(addr), tenant, c, d, self.traffic).await,
            Shape::Batches { streams, batch } => {
                streamed(self.endpoint(addr), tenant, (streams, batch), d, self.traffic).await
            }
        }
    }

    /// Every side of one row. The order alternates between rounds (daybook first, then
    /// last), so neither side always runs on a machine its predecessor has just warmed.
    async fn measure_row(&self, tenant: &str, shape: Shape, round: usize) -> anyhow::Result<Measurement> {
        let daybook_first = round.is_multiple_of(2);
        let mut daybook = None;
        if daybook_first {
            daybook = Some(self.measure(&self.target, tenant, shape).await?);
        }
        let floor = match &self.floor {
            Some(f) => Some(self.measure(f, tenant, shape).await?),
            None => None,
        };
        let naive = match &self.naive {
            Some(n) => Some(self.measure(n, tenant, shape).await?),
            None => None,
        };
        let daybook = match daybook {
            Some(d) => d,
            None => self.measure(&self.target, tenant, shape).await?,
        };
        Ok(Measurement { daybook, floor, naive })
    }
}

/// Runs every configured measurement `rounds` times against the target and, in the same
/// rounds, the floor and the naive design when given. Prints each run as it goes to
/// `out`, then each row's median over the rounds with its spread. Returns the
/// measurements by row, then by round.
pub async fn run(options: &Options, out: &mut impl std::io::Write) -> anyhow::Result<Vec<Vec<Measurement>>> {
    let tenant = format!("bench-{}", std::process::id());
    create_tenant(&options.target, &tenant).await?;
    let mut shapes: Vec<Shape> = options.concurrency.iter().map(|&c| Shape::Unary(c)).collect();
    if options.streams > 0 {
        shapes.push(Shape::Batches { streams: options.streams, batch: options.batch });
    }
    let rounds = options.rounds.max(1);
    let mut table: Vec<Vec<Measurement>> = vec![Vec::new(); shapes.len()];
    for round in 0..rounds {
        if rounds > 1 {
            writeln!(out, "-- round {} of {rounds}", round + 1)?;
        }
        for (shape, runs) in shapes.iter().zip(&mut table) {
            let measured = options.measure_row(&tenant, *shape, round).await?;
            rounds::print_run(&measured, out)?;
            runs.push(measured);
        }
    }
    if rounds > 1 {
        for runs in &table {
            rounds::print_summary(runs, out)?;
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_consumers_are_each_as_likely_and_zipf_ones_are_not() {
        let draw = |uniform| {
            let population = Sampling { consumers: 10, uniform, connections: 1 }.population();
            let mut rng = Rng(7);
            let mut counts = [0u32; 10];
            for _ in 0..100_000 {
                counts[population.rank(rng.unit())] += 1;
            }
            counts
        };
        let uniform = draw(true);
        assert!(uniform.iter().all(|&c| (9_000..11_000).contains(&c)), "{uniform:?}");
        let zipf = draw(false);
        assert!(zipf[0] > 3 * zipf[9], "{zipf:?}");
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        // A name with spaces and a parenthesis must not shift the fields.
        let line = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(line), Some(1234 + 56));
        assert_eq!(cpu_ticks("4242 (short"), None);
    }

    #[test]
    fn this_process_cpu_time_grows_with_work() {
        let Some(before) = cpu_time(std::process::id()) else { return }; // not Linux
        let started = Instant::now();
        let mut x = 0u64;
        while cpu_time(std::process::id()).unwrap() <= before {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            assert!(started.elapsed() < Duration::from_secs(30), "CPU time never moved");
        }
    }

    #[test]
    fn zipf_favours_low_ranks_and_covers_the_population() {
        let z = Zipf::new(1000);
        assert_eq!(z.rank(0.0), 0);
        assert_eq!(z.rank(0.999_999), 999);
        // Rank 0 carries 1/H(1000) ~ 13% of the mass.
        assert_eq!(z.rank(0.12), 0);
        assert!(z.rank(0.2) > 0);
    }
}
