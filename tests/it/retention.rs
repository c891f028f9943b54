//! Bounded disk (issue 17, item 1): journal segments behind the latest snapshot, older
//! than `record_retention` and than any open period's events, are deleted while the
//! server runs; after a restart every outcome, retry answer and record after the
//! retention is intact, and a cursor before it is OUT_OF_RANGE naming the oldest one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;
use daybook::api::pb::record_service_client::RecordServiceClient;
use daybook::server::config::Config;
use tonic_types::StatusExt;

use super::server::{Harness, create, http_get, message, tenant, usage};

const DAY: i64 = 86_400;
/// The journal entry of the first event sent after the clock moves on.
const FIRST_NEW: u64 = 202;

pub fn segments(dir: &std::path::Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    seqs.sort();
    seqs
}

pub fn rfc3339(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0).unwrap().to_rfc3339()
}

/// Sends `n` messages of new consumers dated a minute before `now`; returns the answers.
pub async fn send(channel: &tonic::transport::Channel, prefix: &str, n: usize, now: i64) -> Vec<pb::EventOutcome> {
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut outcomes = Vec::new();
    for i in 0..n {
        let request = message(
            "acme",
            &format!("{prefix}{i}"),
            &rfc3339(now - 60),
            &format!("{prefix}-c{i}"),
            pb::SenderRole::Consumer,
        );
        outcomes.push(ingest.ingest_message(request).await.unwrap().into_inner().outcome.unwrap());
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_segments_are_deleted_and_everything_after_the_retention_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap().timestamp();
    let now = Arc::new(AtomicI64::new(start));
    let read = now.clone();
    let clock: daybook::server::core::Clock =
        Arc::new(move || Utc.timestamp_opt(read.load(Ordering::Relaxed), 0).unwrap());
    let config = || Config {
        journal_segment_bytes: 4096,
        snapshot_entries: 50,
        snapshot_interval: Duration::from_secs(1),
        record_retention: Duration::from_secs(3600),
        ..Config::default()
    };
    let server = Harness::start_with_clock(dir.path(), clock.clone(), config()).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    send(&channel, "old", 200, start).await;

    // A hundred days on: June's periods are closed, and the old entries are past the
    // retention. New traffic fills new segments and snapshots.
    let later = start + 100 * DAY;
    now.store(later, Ordering::Relaxed);
    let answers = send(&channel, "new", 200, later).await;
    let before = segments(dir.path());
    assert_eq!(before[0], 1, "nothing deleted yet: {before:?}");
    // Deleted once a snapshot covers them; `/ready` says where the journal starts.
    // Pruning may take several snapshots; it is settled when the first segment left is
    // the one holding the first new event (entry 1 created the tenant, 2..=201 are the
    // old events; the records below check that numbering).
    let mut settled = None;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let on_disk = segments(dir.path());
        let (_, ready) = http_get(server.admin, "/ready").await;
        let holds_first_new = on_disk[0] <= FIRST_NEW && on_disk.get(1).is_none_or(|&next| next > FIRST_NEW);
        if holds_first_new && ready.contains(&format!("from entry {}", on_disk[0])) {
            settled = Some(on_disk);
            break;
        }
    }
    let after = settled.expect("old segments are deleted");
    assert!(after.len() < before.len(), "segments before {before:?}, after {after:?}");
    let totals = usage(&channel, "acme").await;
    server.stop().await;
    // A journal that starts after entry 1 is not damage.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["journal", "verify", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    // Restart on what is left: the same answers, records and totals.
    let server = Harness::start_with_clock(dir.path(), clock, config()).await;
    let channel = server.tcp_channel().await;
    assert_eq!(usage(&channel, "acme").await, totals);
    assert_eq!(totals.interactions, 400);
    let mut ingest = IngestServiceClient::new(channel.clone());
    for (i, original) in answers.iter().enumerate().step_by(37) {
        let retry =
            message("acme", &format!("new{i}"), &rfc3339(later - 60), &format!("new-c{i}"), pb::SenderRole::Consumer);
        let again = ingest.ingest_message(retry).await.unwrap().into_inner().outcome.unwrap();
        assert!(again.retry);
        assert_eq!((again.disposition, &again.lines), (original.disposition, &original.lines));
    }

    // A cursor before the journal's first entry: OUT_OF_RANGE, naming the oldest.
    let mut watch = RecordServiceClient::new(channel.clone());
    let refused = watch
        .watch_records(pb::WatchRecordsRequest { tenant_ids: vec![], after_cursor: "1:0".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange);
    let oldest = refused.get_details_error_info().unwrap().metadata["oldest_cursor"].clone();
    assert_eq!(oldest, format!("{}:0", after[0] - 1));
    // From there, every record of the new events is intact.
    let mut stream = watch
        .watch_records(pb::WatchRecordsRequest { tenant_ids: vec![], after_cursor: oldest })
        .await
        .unwrap()
        .into_inner();
    let wanted: std::collections::HashSet<String> =
        answers.iter().flat_map(|o| o.interactions.iter().map(|i| i.interaction_id.clone())).collect();
    assert_eq!(wanted.len(), 200);
    let first_new = &answers[0].interactions[0].interaction_id;
    let mut found = std::collections::HashSet::new();
    while found.len() < wanted.len() {
        let record = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        let record = record.record.unwrap();
        if let Some(pb::record::Body::Interaction(i)) = record.body
            && wanted.contains(&i.interaction_id)
        {
            if &i.interaction_id == first_new {
                assert_eq!(record.cursor, format!("{FIRST_NEW}:0"), "the numbering the settling waits on");
            }
            found.insert(i.interaction_id);
        }
    }
    server.stop().await;
}
