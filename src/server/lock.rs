//! One process per data directory. Two servers appending to one journal would interleave
//! frames and sequence numbers and corrupt it, so a server holds an exclusive lock on
//! `<data_dir>/daybook.lock` for as long as it runs (an OS file lock: it is released when
//! the process ends, however it ends, so a crash never leaves a stale lock behind).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "daybook.lock";

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Another process holds the directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "data directory {} is in use by another daybook process ({holder}); run one process per data directory",
    dir.display()
)]
pub struct DataDirInUse {
    pub dir: PathBuf,
    /// "pid N" as the holder wrote it, or why it is not known.
    pub holder: String,
}

impl DataDirLock {
    /// Takes the directory (creating it if needed) or says who holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<DataDirLock> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("data directory {}: {e}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "its pid is not written yet".to_string(),
                    pid => format!("pid {pid}"),
                };
                return Err(DataDirInUse { dir: dir.to_path_buf(), holder }.into());
            }
            Err(TryLockError::Error(e)) => return Err(anyhow::anyhow!("cannot lock {}: {e}", path.display())),
        }
        // Who holds it, for the next one to name.
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_data()?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let refused = DataDirLock::acquire(dir.path()).unwrap_err();
        let in_use = refused.downcast_ref::<DataDirInUse>().expect("typed");
        assert_eq!(in_use.holder, format!("pid {}", std::process::id()));
        assert!(refused.to_string().contains(&dir.path().display().to_string()));
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
