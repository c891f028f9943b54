//! A file written once from start to end and read back only at the next start: the
//! snapshot. Written around the page cache (`O_DIRECT`) where the filesystem allows it.
//!
//! Why: a snapshot holds the whole state (about 62 bytes per remembered event), so each one
//! writes hundreds of megabytes that nothing reads until a restart. Through the page cache
//! every byte is copied into a freshly allocated page first; under streamed ingest that
//! copy was two thirds of a snapshot's CPU and a tenth of the server's (issue 19, see
//! BENCHMARKS.md), and the pages pushed out what the server does read. Written directly,
//! the device reads the bytes from this buffer itself.
//!
//! Direct writes must start and end on block boundaries from an aligned buffer: whole
//! blocks are written, the last one padded, and the file is cut back to its length.
//! Filesystems that refuse `O_DIRECT` (tmpfs, some overlay and network filesystems) fail
//! it with `EINVAL`, at the open or at the first write: the caller then writes the same
//! bytes through the page cache ([`create`] and [`is_unsupported`]).

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The alignment of the buffer, of each write's offset and of its length: the largest
/// logical block size in use (4 KiB), which every smaller one divides.
const ALIGN: usize = 4096;
/// Bytes gathered per write system call.
const CHUNK: usize = 1 << 20;

/// The file being written: directly with an aligned buffer, or through the page cache.
pub enum SnapshotFile {
    Direct(DirectWriter),
    Buffered(std::io::BufWriter<File>),
}

/// Creates (or truncates) `path`, written directly when `direct` and the platform has it.
pub fn create(path: &Path, direct: bool) -> std::io::Result<SnapshotFile> {
    #[cfg(target_os = "linux")]
    if direct {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        return Ok(SnapshotFile::Direct(DirectWriter::new(file)));
    }
    let _ = direct;
    Ok(SnapshotFile::Buffered(std::io::BufWriter::with_capacity(CHUNK, File::create(path)?)))
}

/// Whether `error` is a filesystem's refusal of direct writes (write it buffered instead).
pub fn is_unsupported(error: &std::io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        error.raw_os_error() == Some(libc::EINVAL)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = error;
        false
    }
}

impl SnapshotFile {
    /// Writes what is still buffered, sets the file's exact length and makes it durable.
    pub fn finish(self) -> std::io::Result<()> {
        let file = match self {
            SnapshotFile::Direct(w) => w.finish()?,
            SnapshotFile::Buffered(w) => w.into_inner().map_err(|e| e.into_error())?,
        };
        file.sync_all()
    }
}

impl Write for SnapshotFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            SnapshotFile::Direct(w) => w.write(bytes),
            SnapshotFile::Buffered(w) => w.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SnapshotFile::Direct(_) => Ok(()),
            SnapshotFile::Buffered(w) => w.flush(),
        }
    }
}

/// Gathers bytes in an aligned chunk and writes whole chunks; [`DirectWriter::finish`]
/// pads the last block and cuts the file back to the bytes written.
pub struct DirectWriter {
    file: File,
    /// `CHUNK + ALIGN` bytes, never reallocated: `start` is its first aligned byte.
    memory: Vec<u8>,
    start: usize,
    filled: usize,
    written: u64,
}

impl DirectWriter {
    fn new(file: File) -> Self {
        let memory = vec![0u8; CHUNK + ALIGN];
        let start = (ALIGN - memory.as_ptr() as usize % ALIGN) % ALIGN;
        DirectWriter { file, memory, start, filled: 0, written: 0 }
    }

    /// Writes the gathered bytes, `len` of them (a multiple of `ALIGN` but for the padded
    /// last block).
    fn write_out(&mut self, len: usize) -> std::io::Result<()> {
        let chunk = &self.memory[self.start..self.start + len];
        // A direct write of whole aligned blocks is written whole or fails; a short one
        // would leave the next write unaligned, which `write_all` then reports (EINVAL).
        self.file.write_all(chunk)?;
        self.written += len as u64;
        self.filled = 0;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<File> {
        let length = self.written + self.filled as u64;
        if self.filled > 0 {
            let padded = self.filled.next_multiple_of(ALIGN);
            self.memory[self.start + self.filled..self.start + padded].fill(0);
            self.write_out(padded)?;
        }
        self.file.set_len(length)?;
        Ok(self.file)
    }
}

impl Write for DirectWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let taken = bytes.len().min(CHUNK - self.filled);
        let at = self.start + self.filled;
        self.memory[at..at + taken].copy_from_slice(&bytes[..taken]);
        self.filled += taken;
        if self.filled == CHUNK {
            self.write_out(CHUNK)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Only whole blocks can be written: the rest waits for `finish`.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes read back are the bytes written, for lengths around every boundary the
    /// writer has (a block, a chunk), direct where this filesystem allows it and buffered.
    #[test]
    fn a_file_reads_back_exactly_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for direct in [true, false] {
            for len in [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + ALIGN + 7] {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let write = || -> std::io::Result<()> {
                    let mut f = create(&path, direct)?;
                    // In uneven pieces, as the snapshot's writer hands them over.
                    for piece in bytes.chunks(777) {
                        f.write_all(piece)?;
                    }
                    f.finish()
                };
                match write() {
                    Err(e) if direct && is_unsupported(&e) => {
                        write_buffered_instead(&path, &bytes);
                    }
                    other => other.unwrap(),
                }
                assert_eq!(std::fs::read(&path).unwrap(), bytes, "direct {direct}, {len} bytes");
            }
        }
    }

    fn write_buffered_instead(path: &Path, bytes: &[u8]) {
        let mut f = create(path, false).unwrap();
        f.write_all(bytes).unwrap();
        f.finish().unwrap();
    }
}
