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
    /// Run RULEBOOK scenario files (*.json) and report PASS/FAIL per scenario.
    Scenarios {
        /// Directories or files; default: $DAYBOOK_SCENARIOS, else ../shared/scenarios.
        paths: Vec<PathBuf>,
    },
    /// Rate an event log (JSONL, proto3 JSON of daybook.v1.Event) offline: write the
    /// emitted records as JSONL and print a per-tenant summary.
    Replay {
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Scenarios { paths } => run_scenarios(paths),
        Command::Replay { tenants, events, out, now, summary_json, quiet } => {
            let now = match now.map(|n| daybook::rating::time::parse_instant(&n)).transpose() {
                Ok(now) => now,
                Err(e) => {
                    eprintln!("daybook replay: --now: {e}");
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
                    if result.is_err() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
                }
                Err(e) => {
                    eprintln!("daybook replay: {e}");
                    ExitCode::from(66)
                }
            }
        }
    }
}

fn run_scenarios(mut paths: Vec<PathBuf>) -> ExitCode {
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
            eprintln!("daybook scenarios: {e}");
            return ExitCode::from(66);
        }
    };
    let mut stdout = std::io::stdout();
    let (_, failed) =
        scenario::run_files(&files, |_| Ok(Box::new(EngineTarget::default()) as Box<dyn Target>), &mut stdout);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
