//! What the command line promises its caller: exit codes from `sysexits.h`, and output
//! into a pipe that a reader closed early (`daybook ... | head`) ends quietly.

use std::io::Write;

/// The command line was wrong (clap's own errors included).
pub const USAGE: u8 = 64;
/// The input was read but is not valid (`replay` with bad lines).
pub const DATA_ERROR: u8 = 65;
/// An input file or directory does not exist or cannot be read.
pub const NO_INPUT: u8 = 66;
/// An address could not be bound.
pub const UNAVAILABLE: u8 = 69;
/// Try again later: another process holds the data directory.
pub const TEMP_FAIL: u8 = 75;

/// Writes a line to standard output. A reader that went away ends the process quietly
/// with success (as a shell's SIGPIPE would, without a panic or an error message).
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        tracing::error!("standard output: {e}");
        std::process::exit(1);
    }
}

/// The error is (or was caused by) a reader closing the pipe we wrote to.
pub fn closed_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_found_under_context() {
        let broken = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing rows");
        assert!(closed_pipe(&broken));
        assert!(!closed_pipe(&anyhow::anyhow!("other")));
    }
}
