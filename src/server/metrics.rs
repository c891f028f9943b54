//! Process metrics, exposed as Prometheus text on the admin port. Label values are
//! bounded: no tenant, consumer or event ids.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Set when the journal can no longer be written; readiness fails.
pub static JOURNAL_FAILED: AtomicBool = AtomicBool::new(false);

/// A histogram with fixed bucket bounds (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// OpenTelemetry's recommended boundaries for `rpc.server.call.duration`, in seconds.
pub const RPC_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// Journal flushes are much shorter.
pub const FLUSH_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

/// Everything the process counts.
pub struct Metrics {
    events: Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
    rpc: Mutex<std::collections::BTreeMap<(&'static str, &'static str), &'static Histogram>>,
    flush: Histogram,
    fsync: Histogram,
    /// Time every ordering stripe was held to copy state for a snapshot, or to prune.
    snapshot_pause: Histogram,
    prune_pause: Histogram,
    pub snapshots: AtomicU64,
    pub pruned: AtomicU64,
}

pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| Metrics {
    events: Mutex::new(Default::default()),
    rpc: Mutex::new(Default::default()),
    flush: Histogram::new(FLUSH_BUCKETS),
    fsync: Histogram::new(FLUSH_BUCKETS),
    snapshot_pause: Histogram::new(PAUSE_BUCKETS),
    prune_pause: Histogram::new(PAUSE_BUCKETS),
    snapshots: AtomicU64::new(0),
    pruned: AtomicU64::new(0),
});

/// Pauses of ingest for maintenance.
pub const PAUSE_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A snapshot was written after holding every ordering stripe for `pause`.
pub fn record_snapshot(pause: Duration) {
    METRICS.snapshot_pause.observe(pause);
    METRICS.snapshots.fetch_add(1, Ordering::Relaxed);
}

/// Periods were closed, `entries` pruned, with every ordering stripe held for `pause`.
pub fn record_prune(pause: Duration, entries: u64) {
    METRICS.prune_pause.observe(pause);
    METRICS.pruned.fetch_add(entries, Ordering::Relaxed);
}

pub fn record_flush(d: Duration, fsync: bool) {
    if fsync { METRICS.fsync.observe(d) } else { METRICS.flush.observe(d) }
}

/// Counts one event by outcome (`new_interaction`, `refused`, ...) and meter.
pub fn count_event(outcome: &'static str, meter: &'static str) {
    *METRICS.events.lock().expect("metrics lock").entry((outcome, meter)).or_default() += 1;
}

/// Observes one RPC's duration by method and gRPC status code name.
pub fn observe_rpc(method: &'static str, code: &'static str, d: Duration) {
    let histogram = *METRICS
        .rpc
        .lock()
        .expect("metrics lock")
        .entry((method, code))
        .or_insert_with(|| Box::leak(Box::new(Histogram::new(RPC_BUCKETS))));
    histogram.observe(d);
}

/// Prometheus text exposition. `gauges` are (name, help, value) read at scrape time.
pub fn render(gauges: &[(&str, &str, f64)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP rpc_server_call_duration_seconds Duration of gRPC calls (rpc.server.call.duration).");
    let _ = writeln!(out, "# TYPE rpc_server_call_duration_seconds histogram");
    for ((method, code), h) in METRICS.rpc.lock().expect("metrics lock").iter() {
        h.render(
            &mut out,
            "rpc_server_call_duration_seconds",
            &format!("rpc_system_name=\"grpc\",rpc_method=\"{method}\",rpc_grpc_status_code=\"{code}\""),
        );
    }
    let _ = writeln!(out, "# HELP daybook_events_total Events by outcome and meter.");
    let _ = writeln!(out, "# TYPE daybook_events_total counter");
    for ((outcome, meter), n) in METRICS.events.lock().expect("metrics lock").iter() {
        let _ = writeln!(out, "daybook_events_total{{outcome=\"{outcome}\",meter=\"{meter}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP daybook_journal_write_duration_seconds Journal group-commit writes.");
    let _ = writeln!(out, "# TYPE daybook_journal_write_duration_seconds histogram");
    METRICS.flush.render(&mut out, "daybook_journal_write_duration_seconds", "");
    let _ = writeln!(out, "# HELP daybook_journal_fsync_duration_seconds Journal group-commit write + fdatasync.");
    let _ = writeln!(out, "# TYPE daybook_journal_fsync_duration_seconds histogram");
    METRICS.fsync.render(&mut out, "daybook_journal_fsync_duration_seconds", "");
    let _ = writeln!(
        out,
        "# HELP daybook_maintenance_pause_seconds Ingest paused to copy state for a snapshot or to prune."
    );
    let _ = writeln!(out, "# TYPE daybook_maintenance_pause_seconds histogram");
    METRICS.snapshot_pause.render(&mut out, "daybook_maintenance_pause_seconds", "task=\"snapshot\"");
    METRICS.prune_pause.render(&mut out, "daybook_maintenance_pause_seconds", "task=\"prune\"");
    let _ = writeln!(out, "# HELP daybook_snapshots_total Snapshots written.");
    let _ = writeln!(out, "# TYPE daybook_snapshots_total counter");
    let _ = writeln!(out, "daybook_snapshots_total {}", METRICS.snapshots.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP daybook_pruned_entries_total State entries of closed periods pruned.");
    let _ = writeln!(out, "# TYPE daybook_pruned_entries_total counter");
    let _ = writeln!(out, "daybook_pruned_entries_total {}", METRICS.pruned.load(Ordering::Relaxed));
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}
