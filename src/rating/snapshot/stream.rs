//! The byte stream a snapshot is: primitives written into large chunks under a CRC, and
//! read back with the CRC checked at the end.

use std::io::{Read, Write};

use rust_decimal::Decimal;

use crate::rating::ids::{Fp, RecordId};
use crate::rating::time::Instant;

/// Writes primitives, keeping a CRC of everything written. Fields gather in a buffer
/// that is hashed and written in large chunks (hashing field by field is slow).
pub struct Writer<W: Write> {
    out: W,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
}

const CHUNK: usize = 1 << 20;

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, buf: Vec::with_capacity(CHUNK), crc: crc32fast::Hasher::new() }
    }

    fn drain(&mut self) -> std::io::Result<()> {
        self.crc.update(&self.buf);
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    pub fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.drain()?;
        }
        Ok(())
    }

    pub fn u8(&mut self, n: u8) -> std::io::Result<()> {
        self.bytes(&[n])
    }

    pub fn u32(&mut self, n: u32) -> std::io::Result<()> {
        self.bytes(&n.to_le_bytes())
    }

    pub fn u64(&mut self, n: u64) -> std::io::Result<()> {
        self.bytes(&n.to_le_bytes())
    }

    pub fn i64(&mut self, n: i64) -> std::io::Result<()> {
        self.bytes(&n.to_le_bytes())
    }

    pub fn blob(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.u32(b.len() as u32)?;
        self.bytes(b)
    }

    pub fn str(&mut self, s: &str) -> std::io::Result<()> {
        self.blob(s.as_bytes())
    }

    pub fn opt_str(&mut self, s: Option<&str>) -> std::io::Result<()> {
        match s {
            Some(s) => {
                self.u8(1)?;
                self.str(s)
            }
            None => self.u8(0),
        }
    }

    pub fn fp(&mut self, fp: Fp) -> std::io::Result<()> {
        self.u64(fp.0)?;
        self.u64(fp.1)
    }

    pub fn decimal(&mut self, d: Decimal) -> std::io::Result<()> {
        self.bytes(&d.serialize())
    }

    pub fn instant(&mut self, t: Instant) -> std::io::Result<()> {
        self.i64(t.timestamp())?;
        self.u32(t.timestamp_subsec_nanos())
    }

    pub fn id(&mut self, id: RecordId) -> std::io::Result<()> {
        self.bytes(&id.0)
    }

    pub fn opt_id(&mut self, id: Option<RecordId>) -> std::io::Result<()> {
        match id {
            Some(id) => {
                self.u8(1)?;
                self.id(id)
            }
            None => self.u8(0),
        }
    }

    /// Ends the stream with the CRC of everything before it.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.drain()?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        Ok(self.out)
    }
}

/// Reads what [`Writer`] wrote, checking the CRC at the end.
pub struct Reader<R: Read> {
    input: R,
    /// Read ahead in large chunks. The CRC is updated with whole consumed runs of it (not
    /// field by field: per-field updates were a fifth of a snapshot load).
    buf: Vec<u8>,
    /// Next unread byte of `buf`, end of its valid bytes, and end of what is in the CRC.
    pos: usize,
    len: usize,
    hashed: usize,
    crc: crc32fast::Hasher,
    /// The version of what is read (its magic says): fields added later are read only
    /// from versions that have them.
    pub version: u8,
    /// The input's length where it is known (see [`Reader::count`]).
    length: Option<u64>,
}

/// The version [`Writer`]s of this build write: 3 added meters (MS), outcomes (OUT) and
/// corrections (COR); 4 the origin (channel, integration) of interactions and
/// pass-through charges; 5 each map's entry count before its entries.
pub const VERSION: u8 = 5;

pub type ReadResult<T> = Result<T, String>;

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            input,
            buf: vec![0; CHUNK],
            pos: 0,
            len: 0,
            hashed: 0,
            crc: crc32fast::Hasher::new(),
            version: VERSION,
            length: None,
        }
    }

    /// A reader of an input `length` bytes long, whose counts size maps ([`Reader::count`]).
    pub fn sized(input: R, length: u64) -> Self {
        Reader { length: Some(length), ..Reader::new(input) }
    }

    /// A count of entries, each at least `least_bytes` long, to size a map by: at most what
    /// the input's length can hold (a damaged count, not yet caught by the checksum, must
    /// not reserve memory the file cannot fill); 0 where the length is unknown.
    pub fn count(&mut self, least_bytes: u64) -> ReadResult<usize> {
        let announced = self.u64()?;
        let most = self.length.unwrap_or(0) / least_bytes.max(1);
        Ok(usize::try_from(announced.min(most)).unwrap_or(0))
    }

    /// Hashes what was consumed and reads the next chunk.
    fn refill(&mut self) -> ReadResult<()> {
        self.crc.update(&self.buf[self.hashed..self.pos]);
        let n = loop {
            match self.input.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("unreadable: {e}")),
            }
        };
        if n == 0 {
            return Err("truncated: unexpected end of file".into());
        }
        (self.pos, self.len, self.hashed) = (0, n, 0);
        Ok(())
    }

    fn take(&mut self, out: &mut [u8]) -> ReadResult<()> {
        let mut filled = 0;
        while filled < out.len() {
            if self.pos == self.len {
                self.refill()?;
            }
            let n = (out.len() - filled).min(self.len - self.pos);
            out[filled..filled + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        Ok(())
    }

    pub fn bytes(&mut self, n: usize) -> ReadResult<Vec<u8>> {
        if n > 64 << 20 {
            return Err(format!("implausible length {n}"));
        }
        let mut b = vec![0u8; n];
        self.take(&mut b)?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> ReadResult<[u8; N]> {
        let mut b = [0u8; N];
        if self.pos + N <= self.len {
            b.copy_from_slice(&self.buf[self.pos..self.pos + N]);
            self.pos += N;
        } else {
            self.take(&mut b)?;
        }
        Ok(b)
    }

    pub fn u8(&mut self) -> ReadResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> ReadResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> ReadResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> ReadResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn blob(&mut self) -> ReadResult<Vec<u8>> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    pub fn str(&mut self) -> ReadResult<String> {
        String::from_utf8(self.blob()?).map_err(|_| "not UTF-8".to_string())
    }

    pub fn opt_str(&mut self) -> ReadResult<Option<String>> {
        Ok(if self.u8()? == 1 { Some(self.str()?) } else { None })
    }

    pub fn fp(&mut self) -> ReadResult<Fp> {
        Ok(Fp(self.u64()?, self.u64()?))
    }

    pub fn decimal(&mut self) -> ReadResult<Decimal> {
        Ok(Decimal::deserialize(self.array()?))
    }

    pub fn instant(&mut self) -> ReadResult<Instant> {
        let (secs, nanos) = (self.i64()?, self.u32()?);
        chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(|| "instant out of range".to_string())
    }

    pub fn id(&mut self) -> ReadResult<RecordId> {
        Ok(RecordId(self.array()?))
    }

    pub fn opt_id(&mut self) -> ReadResult<Option<RecordId>> {
        Ok(if self.u8()? == 1 { Some(self.id()?) } else { None })
    }

    /// Checks the CRC that ends the stream.
    pub fn finish(mut self) -> ReadResult<()> {
        self.crc.update(&self.buf[self.hashed..self.pos]);
        self.hashed = self.pos;
        let expected = self.crc.clone().finalize();
        // `expected` is fixed before the stored CRC is read: hashing after it counts nothing.
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        if u32::from_le_bytes(b) != expected {
            return Err("checksum mismatch".into());
        }
        Ok(())
    }
}
