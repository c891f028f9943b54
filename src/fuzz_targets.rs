//! Entry points for fuzzing (`fuzz/`, cargo-fuzz) and for their stable-toolchain property
//! tests (`tests/it/hostile.rs`). Each takes arbitrary bytes, must not panic, and checks
//! what must hold whatever the input.

use std::sync::OnceLock;

use prost::Message;

use crate::api::pb;
use crate::rating::settings::TenantSpec;
use crate::rating::{Engine, EngineConfig, RawEvent};

const TENANTS: &str = r#"
[[tenant]]
id = "dar"
time_zone = "America/New_York"
meter = "dar"
settings = { generative_ai = true, intent_listening = true, proactive_outbound_day = "retroactive" }
plan = { kind = "starter", alerts = ["0.5", "1.0"] }

[[tenant]]
id = "cycle"
time_zone = "Europe/Berlin"
meter = "cycle"

[[tenant]]
id = "mau"
time_zone = "Asia/Kolkata"
meter = "mau"
"#;

fn tenants() -> &'static [TenantSpec] {
    static SPECS: OnceLock<Vec<TenantSpec>> = OnceLock::new();
    SPECS.get_or_init(|| crate::tenants::parse_tenants_toml(TENANTS).expect("the fuzzing tenants are valid"))
}

/// Bytes as an `IngestBatchRequest`, every event rated twice on a fresh engine: the second
/// answer is the first's (T-2: a retry gets the original outcome, a refusal is refused
/// again), and nothing panics.
pub fn ingest_batch(data: &[u8]) {
    let Ok(request) = pb::IngestBatchRequest::decode(data) else { return };
    let engine = Engine::new(EngineConfig::default());
    for spec in tenants() {
        engine.put_tenant(spec.clone()).expect("valid tenant");
    }
    let mut records = Vec::new();
    for event in request.events.into_iter().take(64) {
        let first = engine.ingest(RawEvent::from(event.clone()), None, &mut records);
        let again = engine.ingest(RawEvent::from(event), None, &mut records);
        match (first, again) {
            (Ok(first), Ok(again)) => {
                assert!(again.retry, "a second delivery is a retry");
                assert_eq!(first.disposition, again.disposition);
                assert_eq!(first.lines, again.lines);
                assert_eq!(first.counted_in, again.counted_in);
            }
            (Err(first), Err(again)) => assert_eq!(first.code, again.code, "a refusal changed something"),
            (first, again) => panic!("first {first:?}, then {again:?}"),
        }
        records.clear();
    }
}

/// Bytes as the text of a config file (`[server]` and `[[tenant]]`).
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let flags = crate::server::config::Flags { config: Some("fuzz.toml".into()), ..Default::default() };
    let _ = crate::server::config::load(&flags, &Default::default(), |_| Ok(text.clone()));
}

/// Bytes as a tenants file; every tenant it accepts is accepted by an engine.
pub fn tenants_file(data: &[u8]) {
    let Ok(specs) = crate::tenants::parse_tenants_toml(&String::from_utf8_lossy(data)) else { return };
    let engine = Engine::new(EngineConfig::default());
    for spec in specs {
        let id = spec.id.clone();
        if engine.tenant(&id).is_none() {
            engine
                .put_tenant(spec)
                .unwrap_or_else(|e| panic!("the file accepted tenant `{id}`, the engine refused: {e}"));
        }
    }
}

/// Bytes as a journal segment: scanning stops at damage with a reason, at an offset
/// inside the segment, and a clean scan reaches the end.
pub fn journal_segment(data: &[u8]) {
    let (entries, good, problem) = crate::server::journal::scan_bytes(bytes::Bytes::copy_from_slice(data));
    assert!(good as usize <= data.len());
    if problem.is_none() {
        assert_eq!(good as usize, data.len(), "a clean scan reads every byte");
    }
    // Whole frames re-encode to frames that scan the same way.
    let reframed: Vec<u8> = entries.iter().flat_map(crate::server::journal::frame).collect();
    let (again, end, problem) = crate::server::journal::scan_bytes(reframed.into());
    assert_eq!(again, entries);
    assert!(problem.is_none());
    assert_eq!(end as usize, again.iter().map(|e| crate::server::journal::frame(e).len()).sum::<usize>());
}
