//! A sink's durable position in a file of the data directory (`sinks/<name>.cursor`),
//! for destinations that cannot hold it themselves: written whole to a new file, synced,
//! and renamed over the old one, so a crash leaves the old position or the new.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::SinkError;
use crate::server::records::Cursor;

pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(data_dir: &Path, sink: &str) -> CursorFile {
        CursorFile { path: data_dir.join("sinks").join(format!("{sink}.cursor")) }
    }

    /// The position written last; the stream's start when none was.
    pub fn read(&self) -> Result<Cursor, SinkError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Cursor::parse(text.trim())
                .ok_or_else(|| SinkError(format!("{}: `{}` is not a cursor", self.path.display(), text.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
            Err(e) => Err(SinkError(format!("{}: {e}", self.path.display()))),
        }
    }

    pub async fn write(&self, cursor: Cursor) -> Result<(), SinkError> {
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || write_file(&path, cursor)).await.map_err(SinkError::new)?;
        written.map_err(|e| SinkError(format!("{}: {e}", self.path.display())))
    }
}

fn write_file(path: &Path, cursor: Cursor) -> std::io::Result<()> {
    let dir = path.parent().expect("a cursor file is in a directory");
    std::fs::create_dir_all(dir)?;
    let fresh = path.with_extension("cursor.new");
    let mut file = std::fs::File::create(&fresh)?;
    writeln!(file, "{cursor}")?;
    file.sync_data()?;
    std::fs::rename(&fresh, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_written_position_is_read_back_and_none_is_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = CursorFile::new(dir.path(), "om");
        assert_eq!(file.read().unwrap(), Cursor::default());
        file.write(Cursor { seq: 42, index: u32::MAX }).await.unwrap();
        assert_eq!(file.read().unwrap(), Cursor { seq: 42, index: u32::MAX });
        std::fs::write(dir.path().join("sinks/om.cursor"), "garbage").unwrap();
        assert!(file.read().unwrap_err().0.contains("not a cursor"));
    }
}
