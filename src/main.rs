//! The `daybook` command: the sidecar and its tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use daybook::scenario::{self, EngineTarget, Target};

#[derive(Parser)]
#[command(
    name = "daybook",
    version,
    about = "Metering sidecar for contact-center and conversational-messaging platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar. With no configuration: the embedded journal in ./daybook-data,
    /// gRPC on 127.0.0.1:50051, admin HTTP on 127.0.0.1:9464.
    Serve {
        #[command(flatten)]
        flags: daybook::server::config::Flags,
        /// Validate the configuration and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Credentials: `daybook token new --id NAME` prints a new bearer token and the
    /// [[credential]] table (with the token's hash) for the credentials file.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run RULEBOOK scenario files (*.json) and report PASS/FAIL per scenario.
    Scenarios {
        /// Directories or files; default: $DAYBOOK_SCENARIOS, else ../shared/scenarios.
        paths: Vec<PathBuf>,
        /// Run through a live daybook over gRPC (HOST:PORT or unix:PATH) instead of the
        /// in-process engine. Scenarios with `now` are skipped (the server's clock rules).
        /// Repeated (replicas of one meter in Redis mode): each event goes to one of them
        /// at random.
        #[arg(long)]
        server: Vec<String>,
        /// Exit 0 even when scenarios use rules not implemented yet (RULEBOOK part two:
        /// MS, EV, OUT, COR); they are listed as UNSUPPORTED either way.
        #[arg(long)]
        allow_unsupported: bool,
    },
    /// Load generator: drives a daybook over gRPC (unary at several concurrencies, then
    /// streamed batches) with Zipf-distributed consumers, and the same calls against an
    /// empty handler of the same service (the floor), printing each ratio. Without
    /// --server it starts `daybook serve` on a fresh data directory itself.
    Bench {
        /// A running daybook (HOST:PORT or unix:PATH); default: start one.
        #[arg(long)]
        server: Option<String>,
        /// Unary runs, by calls in flight.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
        concurrency: Vec<usize>,
        /// Streamed runs: streams, each with one batch in flight (0: none).
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Events per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Rounds: every row is measured this many times, each side of it in every round,
        /// and summarized as the median of the rounds with their spread.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds of unmeasured traffic before each run (the near cache's steady state).
        #[arg(long, default_value_t = 0)]
        warmup: u64,
        /// Consumer population.
        #[arg(long, default_value_t = 100_000)]
        consumers: usize,
        /// How consumers are drawn: `zipf` (a few very active, as in chat) or `uniform`.
        #[arg(long, default_value = "zipf", value_parser = ["zipf", "uniform"])]
        consumers_dist: String,
        /// HTTP/2 connections the calls are spread over (each side of the comparison
        /// gets as many).
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Skip the empty-handler floor.
        #[arg(long)]
        no_floor: bool,
        /// Durability of the daybook started by the bench.
        #[arg(long, default_value = "write")]
        durability: String,
        /// Run the daybook it starts in Redis mode on this Redis (redis://HOST:PORT), or
        /// `auto` to start a `redis-server` of its own, and compare with the naive design
        /// (one SET NX round trip per message) on the same Redis.
        #[arg(long)]
        redis: Option<String>,
        /// With --redis: reach it through a proxy that adds this round-trip time (ms), as
        /// a Redis across a network would.
        #[arg(long, default_value_t = 0.0)]
        redis_rtt_ms: f64,
        /// With --redis: which tenants the daybook it starts puts on a tenant log
        /// (`redis_tenant_log`: `when_needed`, `every_tenant`), to measure that path.
        #[arg(long)]
        redis_tenant_log: Option<String>,
        /// With --redis auto: instead of the rows, freeze (`pause`) or kill (`kill`) its
        /// Redis a third of the way into each run and bring it back a third later,
        /// reporting the slowest call before, during and after the outage.
        #[arg(long)]
        redis_outage: Option<daybook::loadgen::outage::Outage>,
    },
    /// Measure state in process: resident bytes per hot relationship-day (P4), each size in
    /// a process of its own, and the time to recover a journal (P6).
    BenchState {
        /// Relationship-days per memory run (comma-separated); 0 for none.
        #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
        memory: Vec<u64>,
        /// Events journaled, then recovered from the journal and from a snapshot; 0 for none.
        #[arg(long, default_value_t = 10_000_000)]
        recovery: u64,
        /// Events journaled after the recovery's snapshot: the longest journal tail a
        /// running server leaves (`snapshot_every`'s default).
        #[arg(long, default_value_t = 1_000_000)]
        recovery_tail: u64,
        /// Rounds: each memory size and each start is measured this many times.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where the recovery journal is written (a fresh temporary directory by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// One memory run in this process, printed as JSON (internal).
        #[arg(long, hide = true)]
        memory_run: Option<u64>,
    },
    /// The empty handler `daybook bench` compares with (internal).
    #[command(hide = true)]
    BenchFloor {
        #[arg(long)]
        listen: String,
    },
    /// The naive Redis design `daybook bench --redis` compares with (internal).
    #[command(hide = true)]
    BenchNaive {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        redis: String,
    },
    /// Check or repair the journal in a data directory (the server must be stopped).
    Journal {
        #[command(subcommand)]
        action: JournalAction,
    },
    /// Explain one interaction of a live daybook for a dispute: its lines with their rules
    /// and the events that brought them, reversals, voids, window and settings.
    Explain {
        /// The daybook (HOST:PORT or unix:PATH). A token, if needed, from DAYBOOK_TOKEN.
        #[arg(long)]
        server: String,
        tenant: String,
        interaction_id: String,
    },
    /// Export every credit line of a statement period (reversals included) from a live
    /// daybook: the rows sum to the statement's credits.
    Export {
        /// The daybook (HOST:PORT or unix:PATH). A token, if needed, from DAYBOOK_TOKEN.
        #[arg(long)]
        server: String,
        #[arg(long)]
        tenant: String,
        /// "2025-06", or "2025-01-01/2025-12-31" for a commitment term.
        #[arg(long)]
        period: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: daybook::detail::Format,
        /// Where the rows go (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rate an event log (JSONL, proto3 JSON of daybook.v1.Event) offline: write the
    /// emitted records as JSONL and print a per-tenant summary.
    Replay(ReplayArgs),
}

#[derive(Subcommand)]
enum JournalAction {
    /// Report every damaged region and sequence gap; exit 1 if there is any.
    Verify {
        #[arg(long, default_value = "daybook-data")]
        data_dir: PathBuf,
    },
    /// Keep every intact record, dropping damaged regions (originals kept as *.damaged).
    Repair {
        #[arg(long, default_value = "daybook-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// A new random token (256 bits). The token goes to the caller; the file keeps only
    /// its SHA-256.
    New {
        /// The credential's id (it names the caller in audit records).
        #[arg(long)]
        id: String,
    },
    /// The SHA-256 of a token read from standard input (e.g. to check a file's entry).
    Hash,
}

/// A line on standard output; a closed pipe ends the process quietly (`cli::say`).
macro_rules! out {
    ($($arg:tt)*) => { daybook::cli::say(format_args!($($arg)*)) };
}

fn main() -> ExitCode {
    let log_format = std::env::var("DAYBOOK_LOG_FORMAT").ok();
    let log_level = std::env::var("DAYBOOK_LOG").ok();
    match daybook::logging::settings(log_format.as_deref(), log_level.as_deref()) {
        Ok((format, level)) => daybook::logging::init(format, level),
        Err(e) => {
            daybook::logging::init(daybook::logging::LogFormat::Text, tracing::level_filters::LevelFilter::INFO);
            tracing::error!("{e}");
            return ExitCode::from(64);
        }
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to standard output with success; a usage error is 64
        // (EX_USAGE), not clap's 2.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(daybook::cli::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Serve { flags, check_config } => serve(flags, check_config),
        Command::Scenarios { paths, server, allow_unsupported } => run_scenarios(paths, server, allow_unsupported),
        Command::Token { action } => token(action),
        Command::Journal { action } => journal(action),
        Command::Explain { server, tenant, interaction_id } => detail(|rt| {
            rt.block_on(daybook::detail::explain(&server, &tenant, &interaction_id, &mut std::io::stdout()))
        }),
        Command::Export { server, tenant, period, format, out } => export(&server, &tenant, &period, format, out),
        Command::Bench {
            server,
            concurrency,
            streams,
            batch,
            seconds,
            rounds,
            warmup,
            consumers,
            consumers_dist,
            connections,
            no_floor,
            durability,
            redis,
            redis_rtt_ms,
            redis_tenant_log,
            redis_outage,
        } => {
            let options = daybook::loadgen::Options {
                target: server.unwrap_or_default(),
                floor: None,
                naive: None,
                concurrency,
                streams,
                batch,
                duration: std::time::Duration::from_secs(seconds),
                warmup: std::time::Duration::from_secs(warmup),
                traffic: daybook::loadgen::Sampling { consumers, uniform: consumers_dist == "uniform", connections },
                processes: Vec::new(),
                rounds,
                outage: redis_outage,
            };
            let rtt = std::time::Duration::from_secs_f64(redis_rtt_ms.max(0.0) / 1000.0);
            bench(options, !no_floor, &durability, redis.map(|url| (url, redis_tenant_log)), rtt)
        }
        Command::BenchState { memory, recovery, recovery_tail, rounds, data_dir, memory_run } => {
            let options = daybook::measure::StateOptions { memory, recovery, recovery_tail, rounds, data_dir };
            match memory_run.map_or_else(
                || daybook::measure::bench_state(&options, &mut std::io::stdout()),
                |n| daybook::measure::print_memory_run(n, &mut std::io::stdout()),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("daybook bench-state: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::BenchNaive { listen, redis } => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(&listen).await?;
                tracing::info!("naive listening on {}", listener.local_addr()?);
                daybook::loadgen::serve_naive(listener, &redis).await
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("daybook bench-naive: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::BenchFloor { listen } => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(&listen).await?;
                tracing::info!("floor listening on {}", listener.local_addr()?);
                daybook::loadgen::serve_floor(listener).await
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("daybook bench-floor: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Replay(args) => replay(args),
    }
}

/// The arguments of `daybook replay`.
#[derive(clap::Args)]
struct ReplayArgs {
    /// The tenants file (TOML, see README).
    #[arg(long)]
    tenants: PathBuf,
    /// The event log.
    events: PathBuf,
    /// Where the records go (`-` for standard output).
    #[arg(long, default_value = "records.jsonl")]
    out: PathBuf,
    /// Judge lateness (T-3) and clock skew (T-4) against this instant (RFC 3339).
    #[arg(long)]
    now: Option<String>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Exit 0 even when some lines were not valid events (by default such a run
    /// exits 65, after its summary).
    #[arg(long)]
    allow_bad_lines: bool,
}

/// `daybook replay`: an event log rated offline (exit 65 when some lines were not events).
fn replay(options: ReplayArgs) -> ExitCode {
    let ReplayArgs { tenants, events, out, now, summary_json, quiet, allow_bad_lines } = options;
    let now = match now.map(|n| daybook::rating::time::parse_instant(&n)).transpose() {
        Ok(now) => now,
        Err(e) => {
            tracing::error!("daybook replay: --now: {e}");
            return ExitCode::from(64);
        }
    };
    let options = daybook::replay::Options { tenants, events, out, now, summary_json, progress: !quiet };
    match daybook::replay::run(&options, &mut std::io::stderr()) {
        Ok(summary) => {
            let to_stdout = options.out.as_os_str() != "-";
            let result = if to_stdout {
                daybook::replay::print_summary(&summary, &mut std::io::stdout())
            } else {
                daybook::replay::print_summary(&summary, &mut std::io::stderr())
            };
            match result {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
                // Bad lines were reported in the summary; they make the run a data
                // error unless the caller accepts them.
                _ if summary.bad_lines > 0 && !allow_bad_lines => ExitCode::from(daybook::cli::DATA_ERROR),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) if daybook::cli::closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("daybook replay: {e}");
            ExitCode::from(66)
        }
    }
}

fn token(action: TokenAction) -> ExitCode {
    match action {
        TokenAction::New { id } => {
            let (token, hash) = daybook::server::auth::new_token();
            out!("# give the caller this token (it is not stored anywhere):");
            out!("#   {token}");
            out!("[[credential]]\nid = {id:?}\ntoken_sha256 = \"{hash}\"\ningest = []\nread = []\nmanage = []");
            ExitCode::SUCCESS
        }
        TokenAction::Hash => {
            let mut token = String::new();
            if std::io::Read::read_to_string(&mut std::io::stdin(), &mut token).is_err() {
                tracing::error!("daybook token hash: standard input is not text");
                return ExitCode::from(66);
            }
            out!("{}", daybook::server::auth::hex(&daybook::server::auth::sha256(token.trim().as_bytes())));
            ExitCode::SUCCESS
        }
    }
}

fn serve(flags: daybook::server::config::Flags, check_only: bool) -> ExitCode {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let config = match daybook::server::config::load(&flags, &env, |path| {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("bad configuration: {e}");
            return ExitCode::from(64);
        }
    };
    if check_only {
        // The files the configuration names are part of it: a credentials file or a
        // certificate that does not load fails the check, not the start.
        if let Err(e) = daybook::server::load_credentials(&config) {
            tracing::error!("bad configuration: {e:#}");
            return ExitCode::from(daybook::cli::USAGE);
        }
        out!("configuration is valid: {} tenant(s)", config.tenants.len());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listeners = match daybook::server::Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) if e.is::<daybook::server::lock::DataDirInUse>() => {
                tracing::error!("{e:#}");
                return ExitCode::from(75);
            }
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::from(69);
            }
        };
        if let Some(l) = &listeners.grpc_tcp
            && let Ok(addr) = l.local_addr()
        {
            tracing::info!("gRPC listening on {addr}");
        }
        if let Some(path) = &config.uds {
            tracing::info!("gRPC listening on unix:{}", path.display());
        }
        if let Some(l) = &listeners.grpc_health
            && let Ok(addr) = l.local_addr()
        {
            tracing::info!("gRPC health (probes) on {addr}");
        }
        if let Some(l) = &listeners.admin
            && let Ok(addr) = l.local_addr()
        {
            tracing::info!("admin HTTP on http://{addr}");
        }
        let result =
            daybook::server::run(config, listeners, daybook::server::core::system_clock(), shutdown_signal()).await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: draining in-flight calls");
}

fn journal(action: JournalAction) -> ExitCode {
    use daybook::server::journal;
    let data_dir = match &action {
        JournalAction::Verify { data_dir } | JournalAction::Repair { data_dir } => data_dir.clone(),
    };
    if !data_dir.join("journal").is_dir() {
        tracing::error!("daybook journal: no journal in {} (is --data-dir right?)", data_dir.display());
        return ExitCode::from(daybook::cli::NO_INPUT);
    }
    // Repair rewrites segments: never under a running server.
    let _held = match &action {
        JournalAction::Repair { data_dir } => match daybook::server::lock::DataDirLock::acquire(data_dir) {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::error!("daybook journal repair: {e:#}");
                return ExitCode::from(daybook::cli::TEMP_FAIL);
            }
        },
        JournalAction::Verify { .. } => None,
    };
    match action {
        JournalAction::Verify { data_dir } => match journal::verify(&data_dir.join("journal")) {
            Ok(report) => {
                out!(
                    "{} segment(s), {} record(s), seq {}..{}",
                    report.segments,
                    report.frames,
                    report.first_seq.unwrap_or(0),
                    report.last_seq.unwrap_or(0)
                );
                for d in &report.damage {
                    out!("damaged: {} at byte {}: {}", d.segment.display(), d.offset, d.reason);
                }
                if report.damage.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(e) => {
                tracing::error!("daybook journal verify: {e}");
                ExitCode::from(66)
            }
        },
        JournalAction::Repair { data_dir } => match journal::repair(&data_dir.join("journal")) {
            Ok((kept, dropped)) => {
                out!("kept {kept} intact record(s); dropped {dropped} damaged region(s)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("daybook journal repair: {e}");
                ExitCode::from(66)
            }
        },
    }
}

fn export(server: &str, tenant: &str, period: &str, format: daybook::detail::Format, out: Option<PathBuf>) -> ExitCode {
    detail(|rt| {
        let mut sink: Box<dyn std::io::Write> = match &out {
            Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
            None => Box::new(std::io::stdout()),
        };
        let (rows, sum) = rt.block_on(daybook::detail::export(server, tenant, period, format, &mut sink))?;
        sink.flush()?;
        tracing::info!("exported {rows} lines summing to {} credits", sum.normalize());
        Ok(())
    })
}

/// Runs a client command of the detail (explain, export) on a runtime of its own.
fn detail(run: impl FnOnce(&tokio::runtime::Runtime) -> anyhow::Result<()>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if daybook::cli::closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_scenarios(mut paths: Vec<PathBuf>, servers: Vec<String>, allow_unsupported: bool) -> ExitCode {
    if paths.is_empty() {
        paths.push(
            std::env::var_os("DAYBOOK_SCENARIOS")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("../shared/scenarios")),
        );
    }
    let files = match scenario::scenario_files(&paths) {
        Ok(files) => files,
        Err(e) => {
            tracing::error!("daybook scenarios: {e}");
            return ExitCode::from(66);
        }
    };
    let mut stdout = std::io::stdout();
    let tally = if servers.is_empty() {
        scenario::run_files(&files, |_| Ok(Box::new(EngineTarget::default()) as Box<dyn Target>), &mut stdout)
    } else {
        let mut seed = 0u64;
        scenario::run_files(
            &files,
            |s| {
                if let Some(skip) = scenario::GrpcTarget::skip_reason(s) {
                    return Err(skip);
                }
                seed += 1;
                scenario::GrpcTarget::connect_replicas(&servers, seed)
                    .map(|t| Box::new(t) as Box<dyn Target>)
                    .map_err(|e| scenario::Verdict::Fail(vec![e]))
            },
            &mut stdout,
        )
    };
    if tally.failed == 0 && (tally.unsupported == 0 || allow_unsupported) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A child process that announces its address in a log line ("... listening on ADDR").
struct Child {
    process: std::process::Child,
    addr: String,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn spawn_announcing(args: &[&str], prefix: &str) -> std::io::Result<Child> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let mut process = std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = process.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            // A log line: the announcement ends it, after the timestamp and level.
            if let Some((_, addr)) = line.split_once(&prefix) {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .map_err(|_| std::io::Error::other(format!("{args:?} did not announce its address")))?;
    Ok(Child { process, addr })
}

fn bench(
    mut options: daybook::loadgen::Options,
    with_floor: bool,
    durability: &str,
    redis: Option<(String, Option<String>)>,
    redis_rtt: std::time::Duration,
) -> ExitCode {
    let (redis, tenant_log) = redis.map_or((None, None), |(url, log)| (Some(url), log));
    let data = std::env::temp_dir().join(format!("daybook-bench-{}", std::process::id()));
    let mut children = Vec::new();
    let mut own_redis = None;
    let result = (|| -> anyhow::Result<()> {
        if options.outage.is_some() && redis.as_deref() != Some("auto") {
            anyhow::bail!("--redis-outage needs --redis auto: a Redis the bench can stop");
        }
        let redis_url = match redis.as_deref() {
            Some("auto") => {
                let started = daybook::loadgen::BenchRedis::start()?;
                let url = started.url.clone();
                own_redis = Some(started);
                Some(url)
            }
            other => other.map(str::to_string),
        };
        // The proxy runs on a runtime of its own for the whole bench.
        let proxy_runtime = tokio::runtime::Runtime::new()?;
        let redis_url = match redis_url {
            Some(url) if !redis_rtt.is_zero() => {
                let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
                let upstream = match info.addr() {
                    redis::ConnectionAddr::Tcp(host, port) => {
                        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))?
                            .next()
                            .ok_or_else(|| anyhow::anyhow!("{url}: no address"))?
                    }
                    _ => anyhow::bail!("--redis-rtt-ms needs a TCP redis:// URL"),
                };
                let proxy = proxy_runtime.block_on(daybook::loadgen::delaying_proxy(upstream, redis_rtt / 2))?;
                out!("daybook bench: Redis reached through a proxy adding {redis_rtt:?} per round trip");
                Some(format!("redis://{proxy}/"))
            }
            other => other,
        };
        if options.target.is_empty() {
            let data_dir = data.to_string_lossy().to_string();
            let mut args = vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "off",
                "--data-dir",
                &data_dir,
                "--durability",
                durability,
            ];
            if let Some(url) = &redis_url {
                args.extend(["--redis", url]);
                if let Some(log) = &tenant_log {
                    args.extend(["--redis-tenant-log", log]);
                }
            }
            let server = spawn_announcing(&args, "gRPC listening on ")?;
            options.target = server.addr.clone();
            options.processes.push((server.addr.clone(), server.process.id()));
            children.push(server);
        }
        if let Some(url) = redis_url.as_ref().filter(|_| options.outage.is_none()) {
            let naive =
                spawn_announcing(&["bench-naive", "--listen", "127.0.0.1:0", "--redis", url], "naive listening on ")?;
            options.naive = Some(naive.addr.clone());
            options.processes.push((naive.addr.clone(), naive.process.id()));
            children.push(naive);
        }
        if with_floor && options.outage.is_none() {
            let floor = spawn_announcing(&["bench-floor", "--listen", "127.0.0.1:0"], "floor listening on ")?;
            options.floor = Some(floor.addr.clone());
            options.processes.push((floor.addr.clone(), floor.process.id()));
            children.push(floor);
        }
        out!(
            "daybook bench: {} cores, {} s per run, {} consumers ({}), {} connection(s), target {}{}",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            options.duration.as_secs(),
            options.traffic.consumers,
            if options.traffic.uniform { "uniform" } else { "Zipf" },
            options.traffic.connections.max(1),
            options.target,
            if redis_url.is_some() { " in Redis mode" } else { "" }
        );
        let runtime = tokio::runtime::Runtime::new()?;
        match options.outage {
            None => {
                runtime.block_on(daybook::loadgen::run(&options, &mut std::io::stdout()))?;
            }
            Some(outage) => {
                // `--redis auto`, checked above: the bench stops and starts its own Redis.
                let redis = own_redis.as_mut().ok_or_else(|| anyhow::anyhow!("the bench started no Redis"))?;
                let stdout = &mut std::io::stdout();
                runtime.block_on(daybook::loadgen::outage::run(&options, redis, outage, stdout))?;
            }
        }
        drop(proxy_runtime);
        Ok(())
    })();
    drop(children);
    drop(own_redis);
    let _ = std::fs::remove_dir_all(&data);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("daybook bench: {e}");
            ExitCode::FAILURE
        }
    }
}
