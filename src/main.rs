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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Scenarios { paths } => run_scenarios(paths),
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
