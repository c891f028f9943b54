//! Where daybook's log lines go: `tracing` events on standard error, as text for a person
//! or as JSON lines for a log pipeline.
//!
//! Two environment variables, read once by `main`:
//! - `DAYBOOK_LOG_FORMAT`: `text` (default) or `json` (one object a line, with
//!   `timestamp`, `level`, `fields.message` and the event's other fields);
//! - `DAYBOOK_LOG`: the least severe level written: `error`, `warn`, `info` (default),
//!   `debug` or `trace`.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("DAYBOOK_LOG_FORMAT: `{other}` is not `text` or `json`")),
        }
    }
}

/// The logging settings, from the two variables' values (absent: the defaults).
pub fn settings(format: Option<&str>, level: Option<&str>) -> Result<(LogFormat, LevelFilter), String> {
    let format = format.map(LogFormat::from_str).transpose()?.unwrap_or(LogFormat::Text);
    let level = match level {
        None => LevelFilter::INFO,
        Some(text) => match text.to_ascii_lowercase().as_str() {
            "error" => LevelFilter::ERROR,
            "warn" => LevelFilter::WARN,
            "info" => LevelFilter::INFO,
            "debug" => LevelFilter::DEBUG,
            "trace" => LevelFilter::TRACE,
            "off" => LevelFilter::OFF,
            _ => return Err(format!("DAYBOOK_LOG: `{text}` is not error, warn, info, debug, trace or off")),
        },
    };
    Ok((format, level))
}

/// Installs the process's subscriber. Called once, by `main`, before anything logs; a
/// second call (tests that run `main`'s code twice) leaves the first in place.
pub fn init(format: LogFormat, level: LevelFilter) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_text_at_info_and_refuse_unknown_words() {
        assert_eq!(settings(None, None), Ok((LogFormat::Text, LevelFilter::INFO)));
        assert_eq!(settings(Some("json"), Some("WARN")), Ok((LogFormat::Json, LevelFilter::WARN)));
        assert!(settings(Some("yaml"), None).unwrap_err().contains("DAYBOOK_LOG_FORMAT"));
        assert!(settings(None, Some("loud")).unwrap_err().contains("DAYBOOK_LOG"));
    }
}
