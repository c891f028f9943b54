//! `daybook bench --redis auto --redis-outage pause|kill`: how long a call waits while
//! Redis goes away (issue 4 bounds it at 100 ms: one 50 ms deadline, then the breaker
//! answers at once and the server decides from its near cache).
//!
//! Unary calls run for the run's seconds. A third of the way in, the bench's Redis is
//! frozen (SIGSTOP: connections stay open and nothing answers, as in a partition) or
//! killed; a third later it is thawed or restarted. Every call is kept with when it
//! started and ended, and reported in the phase it overlaps: before, during (any call in
//! flight while Redis was away) or after. The slowest call during the outage is the
//! figure; each round is one outage, and the summary gives the median over the rounds.

use std::io::Write;
use std::time::{Duration, Instant};

use tonic::Status;

use super::rounds::Spread;
use super::{BenchRedis, IngestServiceClient, Options, Traffic, create_tenant, micros, run_id};

/// How Redis goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Frozen, then thawed.
    Pause,
    /// Killed, then restarted on the same port from its append-only file.
    Kill,
}

impl std::str::FromStr for Outage {
    type Err = String;

    fn from_str(s: &str) -> Result<Outage, String> {
        match s {
            "pause" => Ok(Outage::Pause),
            "kill" => Ok(Outage::Kill),
            other => Err(format!("{other}: expected pause or kill")),
        }
    }
}

impl Outage {
    fn name(self) -> &'static str {
        match self {
            Outage::Pause => "paused",
            Outage::Kill => "killed",
        }
    }

    fn begin(self, redis: &mut BenchRedis) -> anyhow::Result<()> {
        match self {
            Outage::Pause => redis.pause(),
            Outage::Kill => redis.kill(),
        }
    }

    fn end(self, redis: &mut BenchRedis) -> anyhow::Result<()> {
        match self {
            Outage::Pause => redis.resume(),
            Outage::Kill => redis.restart(),
        }
    }
}

/// The calls of one phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phase {
    pub calls: usize,
    pub p99: Duration,
    pub slowest: Duration,
}

impl Phase {
    fn of(mut latencies: Vec<Duration>) -> Phase {
        latencies.sort_unstable();
        let n = latencies.len();
        Phase {
            calls: n,
            p99: latencies.get((n * 99 / 100).min(n.saturating_sub(1))).copied().unwrap_or_default(),
            slowest: latencies.last().copied().unwrap_or_default(),
        }
    }

    fn show(&self) -> String {
        format!("{:>7} calls   p99 {:>8.1} us   slowest {:>8.1} us", self.calls, micros(self.p99), micros(self.slowest))
    }
}

/// One round: one outage.
#[derive(Debug, Clone, Copy)]
pub struct OutageRun {
    pub before: Phase,
    pub during: Phase,
    pub after: Phase,
    /// How long Redis was away.
    pub away: Duration,
}

/// Runs `options.rounds` outages of `redis` under unary traffic with the first of
/// `options.concurrency` calls in flight, printing each round and the summary.
pub async fn run(
    options: &Options,
    redis: &mut BenchRedis,
    outage: Outage,
    out: &mut impl Write,
) -> anyhow::Result<Vec<OutageRun>> {
    let tenant = format!("bench-{}", std::process::id());
    create_tenant(&options.target, &tenant).await?;
    let concurrency = options.concurrency.first().copied().unwrap_or(16).max(1);
    let mut runs = Vec::new();
    for round in 0..options.rounds.max(1) {
        let run = one(options, redis, outage, (&tenant, concurrency)).await?;
        writeln!(
            out,
            "round {} unary c={concurrency}, Redis {} for {:.2} s\n  before {}\n  during {}\n  after  {}",
            round + 1,
            outage.name(),
            run.away.as_secs_f64(),
            run.before.show(),
            run.during.show(),
            run.after.show()
        )?;
        runs.push(run);
    }
    let slowest = Spread::of(runs.iter().map(|r| micros(r.during.slowest) / 1000.0)).expect("a round");
    let p99 = Spread::of(runs.iter().map(|r| micros(r.during.p99) / 1000.0)).expect("a round");
    let after = Spread::of(runs.iter().map(|r| micros(r.after.slowest) / 1000.0)).expect("a round");
    writeln!(
        out,
        "summary of {} rounds, Redis {}: slowest call during the outage {} ms, p99 {} ms; slowest after it {} ms",
        runs.len(),
        outage.name(),
        slowest.show(1),
        p99.show(2),
        after.show(1)
    )?;
    Ok(runs)
}

/// One outage under traffic.
async fn one(
    options: &Options,
    redis: &mut BenchRedis,
    outage: Outage,
    (tenant, concurrency): (&str, usize),
) -> anyhow::Result<OutageRun> {
    let channels = options.traffic.channels(&options.target).await?;
    let population = std::sync::Arc::new(options.traffic.population());
    let run = run_id();
    let measured_from = Instant::now() + options.warmup;
    let deadline = measured_from + options.duration;
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let mut client = IngestServiceClient::new(channels[worker % channels.len()].clone());
        let population = population.clone();
        let mut traffic = Traffic::new(tenant, &run, worker);
        workers.push(tokio::spawn(async move {
            let mut calls = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let request = traffic.message(&population);
                let started = Instant::now();
                client.ingest_message(request).await?;
                if started >= measured_from {
                    calls.push((started, Instant::now()));
                }
            }
            Ok::<_, Status>(calls)
        }));
    }
    // The outage runs on this task; the calls on the runtime's workers.
    tokio::time::sleep_until((measured_from + options.duration / 3).into()).await;
    let away_from = Instant::now();
    outage.begin(redis)?;
    tokio::time::sleep_until((measured_from + options.duration * 2 / 3).into()).await;
    outage.end(redis)?;
    let back_at = Instant::now();
    let mut phases: [Vec<Duration>; 3] = Default::default();
    for w in workers {
        for (started, ended) in w.await?? {
            let phase = if ended < away_from {
                0
            } else if started <= back_at {
                1
            } else {
                2
            };
            phases[phase].push(ended - started);
        }
    }
    let [before, during, after] = phases.map(Phase::of);
    Ok(OutageRun { before, during, after, away: back_at - away_from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_gives_its_slowest_call_and_its_p99() {
        let latencies: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let phase = Phase::of(latencies);
        assert_eq!(phase.calls, 200);
        assert_eq!(phase.slowest, Duration::from_millis(200));
        assert_eq!(phase.p99, Duration::from_millis(199));
        assert_eq!(Phase::of(Vec::new()).slowest, Duration::ZERO);
    }

    #[test]
    fn outages_are_named_pause_or_kill() {
        assert_eq!("pause".parse::<Outage>(), Ok(Outage::Pause));
        assert_eq!("kill".parse::<Outage>(), Ok(Outage::Kill));
        assert!("stop".parse::<Outage>().is_err());
    }
}
