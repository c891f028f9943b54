//! Records out: one mechanism, several destinations. A sink follows the record stream
//! from its durable cursor, takes the records routed to it (by tenant and kind), batches
//! them by size and age, and delivers each batch at least once: retried with backoff and
//! jitter until the destination takes it, then its cursor is made durable. Nothing is
//! dropped while a destination is down: the journal keeps every segment a sink has not
//! passed (`SinkBoard::floor`), and `/ready` and the metrics show how far behind it is.
//!
//! A destination implements [`Sink`]: where it resumes, how it delivers a batch, how it
//! makes a position durable. JSONL and Redis streams keep the cursor with the records;
//! the HTTP destinations keep it in a file of the data directory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::core::Daybook;
use super::records::{Cursor, Followed, Follower, Stamped, follow};

pub mod board;
mod cloudevents;
mod cursor_file;
mod http_client;
mod jsonl;
mod redis_stream;
pub mod spec;

pub use board::{OperationalEvent, SinkBoard, SinkReport, SinkStatus};
pub use cloudevents::{record_kind, signature};
pub use spec::{Destination, SinkSpec};

/// A failed delivery: said in logs and `/ready`, then retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

impl SinkError {
    pub fn new(what: impl std::fmt::Display) -> SinkError {
        SinkError(what.to_string())
    }
}

/// What a sink delivers: records in cursor order, and operational events (webhooks).
#[derive(Debug, Clone)]
pub enum Item {
    Record(Box<Stamped>),
    Operational(OperationalEvent),
}

/// A destination of records.
pub trait Sink: Send + 'static {
    /// The position after which delivery resumes: the last one made durable.
    fn resume(&mut self) -> impl Future<Output = Result<Cursor, SinkError>> + Send;
    /// Delivers a batch, all of it or an error (then it is sent again, whole).
    fn deliver(&mut self, batch: &[Item]) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Makes `through` the durable position: everything up to it is delivered.
    fn commit(&mut self, through: Cursor) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Starts a sink: registers it on the board at once (the journal keeps what it has not
/// passed from now on), then delivers for as long as the task runs.
pub fn start(daybook: &Arc<Daybook>, spec: SinkSpec) -> tokio::task::JoinHandle<()> {
    let status = daybook.sinks().register(&spec);
    let daybook = daybook.clone();
    let spec = Arc::new(spec);
    tokio::spawn(async move {
        match &spec.destination {
            Destination::Jsonl { path } => {
                run(daybook, spec.clone(), status, jsonl::JsonlSink::new(path.clone())).await
            }
            Destination::CloudEvents { .. } | Destination::Webhook { .. } => {
                let sink = cloudevents::HttpSink::new(spec.clone(), daybook.data_dir());
                run(daybook, spec.clone(), status, sink).await
            }
            Destination::RedisStream { url, stream, max_len } => {
                let sink = redis_stream::StreamSink::new(url.clone(), stream.clone(), *max_len, spec.source.clone());
                run(daybook, spec.clone(), status, sink).await
            }
        }
    })
}

/// Reads the files a sink names (its bearer token, its webhook secret, its CA), as a
/// start does: a file that is missing, empty or not PEM stops start-up (and
/// `serve --check-config`) with its error. They are read again at each delivery, so a
/// rotated file applies without a restart.
pub fn check_files(spec: &SinkSpec) -> Result<(), SinkError> {
    match &spec.destination {
        Destination::CloudEvents { url, token_file, ca_file } => {
            if let Some(path) = token_file {
                cloudevents::read_secret(path)?;
            }
            http_client::HttpClient::new(url.clone(), ca_file.as_deref()).map(|_| ())
        }
        Destination::Webhook { url, secret_file, ca_file } => {
            cloudevents::read_secret(secret_file)?;
            http_client::HttpClient::new(url.clone(), ca_file.as_deref()).map(|_| ())
        }
        Destination::Jsonl { .. } | Destination::RedisStream { .. } => Ok(()),
    }
}

/// Waits (at most `limit`) until every sink has passed what the journal holds: at
/// shutdown, so that what the last calls emitted leaves before the process does.
pub async fn settle(daybook: &Daybook, limit: Duration) {
    let until = daybook.journal().durable();
    let _ = tokio::time::timeout(limit, async {
        while daybook.sinks().floor().is_some_and(|floor| floor < until) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A follower sends at most this far behind a `Through` for records it skips.
const SKIPPED_THROUGH_EVERY: u64 = 256;

async fn run<S: Sink>(daybook: Arc<Daybook>, spec: Arc<SinkSpec>, status: Arc<SinkStatus>, mut sink: S) {
    let mut backoff = Backoff::default();
    let after = loop {
        match sink.resume().await {
            Ok(after) => break after,
            Err(e) => {
                tracing::warn!(sink = spec.name, "cannot find where to resume: {e}");
                status.failed(&e.0);
                backoff.wait().await;
            }
        }
    };
    status.settle(after);
    let (tx, mut rx) = mpsc::channel::<Feed>(spec.batch_records.max(64) * 2);
    let follower = tokio::spawn(follow_routed(daybook.clone(), spec.clone(), after, tx.clone()));
    let operational = matches!(spec.destination, Destination::Webhook { .. })
        .then(|| tokio::spawn(forward_operational(daybook.sinks().operational(), tx)));
    let mut batch: Vec<Item> = Vec::new();
    let mut through = after;
    let mut last_commit = tokio::time::Instant::now();
    while let Some(first) = rx.recv().await {
        take(&mut batch, &mut through, first);
        let deadline = tokio::time::Instant::now() + spec.batch_age;
        while batch.len() < spec.batch_records {
            let next = match rx.try_recv() {
                Ok(next) => next,
                Err(_) if spec.batch_age.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(next)) => next,
                    _ => break,
                },
            };
            take(&mut batch, &mut through, next);
        }
        if batch.is_empty() {
            // Only entries that carry nothing for this sink were passed: losing that
            // position in a crash costs a re-read, not a record, so it is made durable
            // at most once a second.
            if last_commit.elapsed() < Duration::from_secs(1) {
                status.settle(through);
                continue;
            }
        } else {
            deliver(&mut sink, &spec, &status, &batch).await;
            let records = batch.iter().filter(|i| matches!(i, Item::Record(_))).count();
            status.delivered.fetch_add(records as u64, Ordering::Relaxed);
            batch.clear();
        }
        last_commit = tokio::time::Instant::now();
        let mut backoff = Backoff::default();
        while let Err(e) = sink.commit(through).await {
            tracing::warn!(sink = spec.name, "cursor not made durable: {e}");
            status.failed(&e.0);
            backoff.wait().await;
        }
        status.settle(through);
    }
    follower.abort();
    if let Some(task) = operational {
        task.abort();
    }
}

/// What the follower hands the sink's batcher.
enum Feed {
    Item(Item),
    Through(u64),
}

fn take(batch: &mut Vec<Item>, through: &mut Cursor, next: Feed) {
    match next {
        Feed::Item(item) => {
            if let Item::Record(stamped) = &item {
                *through = (*through).max(stamped.cursor);
            }
            batch.push(item);
        }
        Feed::Through(seq) => *through = (*through).max(Cursor { seq, index: u32::MAX }),
    }
}

/// Delivers one batch, retrying until the destination takes it.
async fn deliver<S: Sink>(sink: &mut S, spec: &SinkSpec, status: &SinkStatus, batch: &[Item]) {
    let mut backoff = Backoff::default();
    loop {
        let attempt = tokio::time::timeout(spec.timeout, sink.deliver(batch)).await;
        let e = match attempt {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => SinkError(format!("no answer within {:?}", spec.timeout)),
        };
        if backoff.attempts == 0 {
            tracing::warn!(sink = spec.name, records = batch.len(), "delivery failed, retrying: {e}");
        }
        status.failed(&e.0);
        backoff.wait().await;
    }
}

/// A sink's follower: the records routed to it, and positions passed.
struct Routed {
    spec: Arc<SinkSpec>,
    /// The last position sent for skipped records.
    skipped_through: u64,
    tx: mpsc::Sender<Feed>,
}

impl Follower for Routed {
    async fn take(&mut self, followed: Followed<'_>) -> bool {
        match followed {
            Followed::Record(stamped) => {
                if self.spec.routes(&stamped.tenant, record_kind(&stamped.record)) {
                    return self.tx.send(Feed::Item(Item::Record(Box::new(stamped.clone())))).await.is_ok();
                }
                // Every entry before a skipped record's was seen.
                let before = stamped.cursor.seq.saturating_sub(1);
                if before >= self.skipped_through + SKIPPED_THROUGH_EVERY {
                    self.skipped_through = before;
                    return self.tx.send(Feed::Through(before)).await.is_ok();
                }
                true
            }
            Followed::Through(seq) => self.tx.send(Feed::Through(seq)).await.is_ok(),
        }
    }
}

async fn follow_routed(daybook: Arc<Daybook>, spec: Arc<SinkSpec>, after: Cursor, tx: mpsc::Sender<Feed>) {
    let mut routed = Routed { spec, skipped_through: after.seq, tx };
    follow(daybook.hub(), daybook.journal(), after, &mut routed).await;
}

async fn forward_operational(mut events: broadcast::Receiver<OperationalEvent>, tx: mpsc::Sender<Feed>) {
    loop {
        match events.recv().await {
            Ok(event) => {
                if tx.send(Feed::Item(Item::Operational(event))).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("{n} operational event(s) not sent to webhooks: too many at once");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Exponential backoff with jitter: 100 ms doubling to 30 s, each wait between half and
/// all of the current step, so that replicas retrying one receiver spread out.
#[derive(Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(30);

    fn next(&mut self) -> Duration {
        let step = Self::FIRST.saturating_mul(1 << self.attempts.min(16)).min(Self::MOST);
        self.attempts += 1;
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let mut b = Backoff::default();
        let first = b.next();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        let waits: Vec<Duration> = (0..20).map(|_| b.next()).collect();
        assert!(waits.iter().all(|w| *w <= Backoff::MOST));
        assert!(waits[18] >= Backoff::MOST / 2);
    }
}
