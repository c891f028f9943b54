//! Records appended to a JSONL file, one record (the proto3 JSON mapping) per line. The
//! file is its own cursor: a restart resumes after the last line's.

use std::io::Write;
use std::path::PathBuf;

use super::{Item, Sink, SinkError};
use crate::server::records::Cursor;

pub struct JsonlSink {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl JsonlSink {
    pub fn new(path: PathBuf) -> JsonlSink {
        JsonlSink { path, file: None }
    }

    fn failed(&self, e: std::io::Error) -> SinkError {
        SinkError(format!("{}: {e}", self.path.display()))
    }
}

impl Sink for JsonlSink {
    async fn resume(&mut self) -> Result<Cursor, SinkError> {
        let file =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| self.failed(e))?;
        let after = resume_point(&self.path, &file).map_err(|e| self.failed(e))?;
        self.file = Some(file);
        Ok(after)
    }

    async fn deliver(&mut self, batch: &[Item]) -> Result<(), SinkError> {
        let mut text = String::new();
        for item in batch {
            if let Item::Record(stamped) = item {
                text.push_str(&crate::api::to_json(&stamped.record).to_string());
                text.push('\n');
            }
        }
        let written = self.file.as_mut().expect("resumed before delivering").write_all(text.as_bytes());
        written.map_err(|e| self.failed(e))
    }

    async fn commit(&mut self, _: Cursor) -> Result<(), SinkError> {
        // The lines are the cursor: written is enough (like `durability = write`).
        Ok(())
    }
}

/// Where a JSONL file resumes: after its last line's cursor. A line cut short by a crash
/// is cut off first, so that the next line starts on a line of its own.
fn resume_point(path: &std::path::Path, file: &std::fs::File) -> std::io::Result<Cursor> {
    let text = std::fs::read(path)?;
    let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        tracing::warn!(path = %path.display(), bytes = text.len() - whole, "cutting off a torn last line");
        file.set_len(whole as u64)?;
    }
    let last = text[..whole]
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .find_map(|value| Cursor::parse(value.get("cursor")?.as_str()?));
    Ok(last.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_torn_last_line_is_cut_off_and_delivery_resumes_after_the_last_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        std::fs::write(&path, "{\"cursor\":\"3:0\"}\n{\"cursor\":\"4:1\"}\n{\"cursor\":\"5:").unwrap();
        let mut sink = JsonlSink::new(path.clone());
        assert_eq!(sink.resume().await.unwrap(), Cursor { seq: 4, index: 1 });
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("\"4:1\"}\n"));
    }
}
