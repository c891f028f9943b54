//! The RULEBOOK's test vectors, through the same engine path the server uses.

use std::path::PathBuf;

use daybook::scenario::{self, EngineTarget, Target};

/// `$DAYBOOK_SCENARIOS`, else `../shared/scenarios` from the project root.
pub fn scenarios_dir() -> PathBuf {
    std::env::var_os("DAYBOOK_SCENARIOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/scenarios"))
}

#[test]
fn every_visible_scenario_passes_on_the_engine() {
    let files = scenario::scenario_files(&[scenarios_dir()]).expect("scenario directory");
    assert!(files.len() >= 26, "expected the 26 shared scenarios, found {}", files.len());
    let mut out = Vec::new();
    let tally = scenario::run_files(&files, |_| Ok(Box::new(EngineTarget::default()) as Box<dyn Target>), &mut out);
    let report = String::from_utf8(out).unwrap();
    assert_eq!(tally.failed, 0, "{report}");
    assert_eq!(tally.skipped, 0, "{report}");
    // Every scenario runs in process, those of RULEBOOK part two (MS, EV, OUT, COR) too.
    assert_eq!(tally.unsupported, 0, "{report}");
    assert_eq!(tally.passed, files.len(), "{report}");
}

/// A target that refuses the tenant as a shared Redis store refuses part two's.
struct RefusingTarget;

impl Target for RefusingTarget {
    fn create_tenant(&mut self, _: &daybook::rating::TenantSpec) -> Result<(), String> {
        Err(format!("{}several meters are not supported with a shared Redis store yet", scenario::UNSUPPORTED))
    }
    fn ingest(
        &mut self,
        _: daybook::rating::RawEvent,
        _: Option<daybook::rating::time::Instant>,
    ) -> Result<(), String> {
        unreachable!()
    }
    fn interactions(&mut self, _: &str, _: bool) -> Result<scenario::Listing, String> {
        unreachable!()
    }
    fn meters(&mut self, _: &str) -> Result<std::collections::BTreeMap<String, scenario::MeterView>, String> {
        unreachable!()
    }
    fn usage(
        &mut self,
        _: &str,
    ) -> Result<(rust_decimal::Decimal, std::collections::BTreeMap<String, rust_decimal::Decimal>), String> {
        unreachable!()
    }
    fn statement(&mut self, _: &str, _: &str) -> Result<scenario::StatementView, String> {
        unreachable!()
    }
    fn alerts(&mut self, _: &str) -> Result<Vec<(String, rust_decimal::Decimal)>, String> {
        unreachable!()
    }
}

#[test]
fn a_scenario_of_part_two_runs_in_process_and_is_unsupported_where_a_target_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = r#"{"name": "an outcome meter", "rules": ["OUT-1"],
      "tenant": {"id": "t", "time_zone": "UTC", "meters": [{"id": "fin", "preset": "outcome", "prices": {"resolution": "0.99"}}]},
      "events": [{"id": "o1", "at": "2025-06-10T10:00:00Z", "type": "outcome", "consumer": "c1",
                  "conversation": "A", "outcome_type": "resolution"}],
      "expect": {"credits": "0.99"}}"#;
    std::fs::write(dir.path().join("outcome.json"), outcome).unwrap();
    let files = scenario::scenario_files(&[dir.path().to_path_buf()]).unwrap();
    let mut out = Vec::new();
    let tally = scenario::run_files(&files, |_| Ok(Box::new(EngineTarget::default()) as Box<dyn Target>), &mut out);
    let report = String::from_utf8(out).unwrap();
    assert_eq!((tally.passed, tally.failed, tally.unsupported), (1, 0, 0), "{report}");
    let mut out = Vec::new();
    let tally = scenario::run_files(&files, |_| Ok(Box::new(RefusingTarget) as Box<dyn Target>), &mut out);
    let report = String::from_utf8(out).unwrap();
    assert_eq!((tally.passed, tally.failed, tally.unsupported), (0, 0, 1), "{report}");
    assert!(
        report.contains("UNSUPPORTED an outcome meter: several meters are not supported with a shared Redis store yet"),
        "{report}"
    );
}

#[test]
fn a_wrong_expectation_fails_with_its_difference() {
    let dir = tempfile::tempdir().unwrap();
    let bad = r#"{"name": "wrong on purpose", "rules": ["CR-1"],
      "tenant": {"id": "t", "time_zone": "UTC", "meter": "dar"},
      "events": [{"id": "m1", "at": "2025-06-10T10:00:00Z", "type": "message", "sender": "consumer",
                  "consumer": "c1", "conversation": "A", "channel": "web"}],
      "expect": {"credits": "2", "interactions": [{"consumer": "c2", "period": "2025-06-10"}]}}"#;
    std::fs::write(dir.path().join("bad.json"), bad).unwrap();
    let files = scenario::scenario_files(&[dir.path().to_path_buf()]).unwrap();
    let mut out = Vec::new();
    let tally = scenario::run_files(&files, |_| Ok(Box::new(EngineTarget::default()) as Box<dyn Target>), &mut out);
    let report = String::from_utf8(out).unwrap();
    assert_eq!((tally.passed, tally.failed), (0, 1));
    assert!(report.contains("FAIL wrong on purpose: "), "{report}");
    assert!(report.contains("credits: expected 2, got 1"), "{report}");
    assert!(report.contains("missing"), "{report}");
    assert!(report.trim_end().ends_with("0 passed, 1 failed"), "{report}");
}
