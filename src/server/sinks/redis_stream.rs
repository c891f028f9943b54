//! Records appended to a Redis stream, for consumers that read streams (consumer groups,
//! other services). Each entry has the record's `id`, `tenant`, `kind`, `cursor` and the
//! record itself (`record`, proto3 JSON). Replicas may share a stream: each keeps its
//! position in the hash `<stream>:cursors` under its CloudEvents source, written in the
//! same transaction as the entries it covers.

use redis::aio::MultiplexedConnection;

use super::{Item, Sink, SinkError};
use crate::server::records::Cursor;

pub struct StreamSink {
    url: String,
    stream: String,
    max_len: Option<u64>,
    source: String,
    connection: Option<MultiplexedConnection>,
    /// The position last written beside the stream (with a batch, or by `commit`).
    written: Option<Cursor>,
}

impl StreamSink {
    pub fn new(url: String, stream: String, max_len: Option<u64>, source: String) -> StreamSink {
        StreamSink { url, stream, max_len, source, connection: None, written: None }
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, SinkError> {
        if let Some(c) = &self.connection {
            return Ok(c.clone());
        }
        let client = redis::Client::open(self.url.as_str()).map_err(SinkError::new)?;
        let connection = client.get_multiplexed_async_connection().await.map_err(SinkError::new)?;
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    fn cursors(&self) -> String {
        format!("{}:cursors", self.stream)
    }

    async fn run(&mut self, pipe: redis::Pipeline) -> Result<(), SinkError> {
        let mut connection = self.connection().await?;
        let result: redis::RedisResult<()> = pipe.query_async(&mut connection).await;
        if result.is_err() {
            self.connection = None;
        }
        result.map_err(SinkError::new)
    }
}

impl Sink for StreamSink {
    async fn resume(&mut self) -> Result<Cursor, SinkError> {
        let mut connection = self.connection().await?;
        let cursors = self.cursors();
        let text: Option<String> = redis::cmd("HGET")
            .arg(&cursors)
            .arg(&self.source)
            .query_async(&mut connection)
            .await
            .map_err(SinkError::new)?;
        match text {
            None => Ok(Cursor::default()),
            Some(text) => Cursor::parse(&text).ok_or_else(|| SinkError(format!("{cursors}: `{text}` is not a cursor"))),
        }
    }

    async fn deliver(&mut self, batch: &[Item]) -> Result<(), SinkError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut last = None;
        for item in batch {
            let Item::Record(stamped) = item else { continue };
            let mut xadd = redis::cmd("XADD");
            xadd.arg(&self.stream);
            if let Some(n) = self.max_len {
                xadd.arg("MAXLEN").arg("~").arg(n);
            }
            xadd.arg("*")
                .arg("id")
                .arg(&stamped.record.record_id)
                .arg("tenant")
                .arg(&*stamped.tenant)
                .arg("kind")
                .arg(super::record_kind(&stamped.record))
                .arg("cursor")
                .arg(stamped.cursor.to_string())
                .arg("record")
                .arg(crate::api::to_json(&stamped.record).to_string());
            pipe.add_command(xadd).ignore();
            last = Some(stamped.cursor);
        }
        let Some(last) = last else { return Ok(()) };
        pipe.cmd("HSET").arg(self.cursors()).arg(&self.source).arg(last.to_string()).ignore();
        self.run(pipe).await?;
        self.written = Some(last);
        Ok(())
    }

    async fn commit(&mut self, through: Cursor) -> Result<(), SinkError> {
        if self.written == Some(through) {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(self.cursors()).arg(&self.source).arg(through.to_string()).ignore();
        self.run(pipe).await?;
        self.written = Some(through);
        Ok(())
    }
}
