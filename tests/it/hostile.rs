//! The fuzz targets (`daybook::fuzz_targets`, run long by cargo-fuzz under `fuzz/`) as
//! property tests on the stable toolchain: valid inputs damaged at random (flipped bytes,
//! truncations, insertions), and bytes from nowhere. Nothing panics, and each target's
//! own checks hold.

use daybook::api::pb;
use daybook::fuzz_targets;
use proptest::prelude::*;
use prost::Message;

fn seed_batch() -> Vec<u8> {
    let message = |tenant: &str, id: &str, consumer: &str, role: pb::SenderRole| pb::Event {
        tenant_id: tenant.into(),
        event_id: id.into(),
        event_time: "2025-06-10T09:00:00-04:00".into(),
        kind: Some(pb::event::Kind::Message(pb::MessageEvent {
            consumer_id: consumer.into(),
            conversation_id: "conv-1".into(),
            sender_role: role as i32,
            sender_id: "agent-7".into(),
            channel: pb::Channel::Whatsapp as i32,
            integration_id: "wa-1".into(),
            provider_price: Some(pb::Money { amount: "0.0079".into(), currency: "USD".into() }),
        })),
    };
    let mut events = vec![
        message("dar", "m1", "c1", pb::SenderRole::Consumer),
        message("dar", "m2", "c1", pb::SenderRole::Bot),
        message("cycle", "m3", "c2", pb::SenderRole::Agent),
        message("mau", "m4", "c3", pb::SenderRole::Consumer),
    ];
    events.push(pb::Event {
        tenant_id: "dar".into(),
        event_id: "o1".into(),
        event_time: "2025-06-10T10:00:00Z".into(),
        kind: Some(pb::event::Kind::ConversationOpened(pb::ConversationOpenedEvent {
            consumer_id: "c4".into(),
            conversation_id: "conv-2".into(),
            channel: pb::Channel::Web as i32,
            integration_id: "web-1".into(),
        })),
    });
    events.push(pb::Event {
        tenant_id: "dar".into(),
        event_id: "b1".into(),
        event_time: "2025-06-10T11:00:00Z".into(),
        kind: Some(pb::event::Kind::Cobrowse(pb::CobrowseEvent {
            consumer_id: "c1".into(),
            conversation_id: "conv-1".into(),
            session_id: "s1".into(),
            established: true,
        })),
    });
    events.push(pb::Event {
        tenant_id: "dar".into(),
        event_id: "f1".into(),
        event_time: "2025-06-10T12:00:00Z".into(),
        kind: Some(pb::event::Kind::FunctionInvocations(pb::FunctionInvocationsEvent { count: 1_000_001 })),
    });
    pb::IngestBatchRequest { events }.encode_to_vec()
}

const SEED_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:50051"
durability = "fsync"
snapshot_interval = "PT5M"

[[tenant]]
id = "acme"
time_zone = "America/New_York"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P35D" }
changes = [ { id = "c1", at = "2025-06-10T12:00:00-04:00", set = { intent_listening = true } } ]
plan = { kind = "commitment", term_start = "2025-01-01", term_end = "2025-12-31", credits = "100000", overage_price = { USD = "1.10" }, alerts = ["0.8"] }
"#;

fn seed_segment() -> Vec<u8> {
    use daybook::server::journal::{DeadLetterEntry, Entry, EntryKind, frame};
    (1..=5u64)
        .flat_map(|seq| {
            frame(&Entry {
                seq,
                kind: Some(EntryKind::DeadLetter(DeadLetterEntry { event_id: format!("e{seq}") })),
                records: vec![vec![seq as u8; 12].into()],
            })
        })
        .collect()
}

/// A damaged copy of `seed`: some bytes flipped, maybe a run inserted, maybe cut short.
fn damaged(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len();
    (
        prop::collection::vec((0..len, 1u8..=255), 0..6),
        prop::option::of((0..=len, prop::collection::vec(any::<u8>(), 1..16))),
        prop::option::of(0..=len),
    )
        .prop_map(move |(flips, insert, cut)| {
            let mut bytes = seed.clone();
            for (at, xor) in flips {
                bytes[at] ^= xor;
            }
            if let Some((at, run)) = insert {
                bytes.splice(at..at, run);
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            bytes
        })
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn t_6_damaged_ingest_requests_never_panic_and_retries_answer_alike(bytes in damaged(seed_batch())) {
        fuzz_targets::ingest_batch(&bytes);
    }

    #[test]
    fn ingest_noise_never_panics(bytes in noise()) {
        fuzz_targets::ingest_batch(&bytes);
    }

    #[test]
    fn damaged_config_files_are_refused_or_read_never_panic(bytes in damaged(SEED_CONFIG.as_bytes().to_vec())) {
        fuzz_targets::config_file(&bytes);
        fuzz_targets::tenants_file(&bytes);
    }

    #[test]
    fn damaged_journal_segments_stop_at_the_damage(bytes in damaged(seed_segment())) {
        fuzz_targets::journal_segment(&bytes);
    }

    #[test]
    fn journal_noise_never_panics(bytes in noise()) {
        fuzz_targets::journal_segment(&bytes);
    }
}

#[test]
fn the_seeds_are_valid_inputs() {
    // Damage starts from inputs the targets accept whole, or the properties above would
    // only ever test refusals.
    let batch = pb::IngestBatchRequest::decode(seed_batch().as_slice()).unwrap();
    assert_eq!(batch.events.len(), 7);
    fuzz_targets::ingest_batch(&seed_batch());
    assert_eq!(daybook::tenants::parse_tenants_toml(SEED_CONFIG).unwrap().len(), 1);
    let (entries, _, problem) = daybook::server::journal::scan_bytes(seed_segment().into());
    assert_eq!((entries.len(), problem), (5, None));
    // `DAYBOOK_FUZZ_SEEDS=1 cargo test --test it the_seeds` writes them as the fuzzers'
    // starting corpus (fuzz/corpus/<target>/seed), so libFuzzer starts from valid input.
    if std::env::var_os("DAYBOOK_FUZZ_SEEDS").is_some() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (target, bytes) in [
            ("ingest_batch", seed_batch()),
            ("config_file", SEED_CONFIG.as_bytes().to_vec()),
            ("tenants_file", SEED_CONFIG.as_bytes().to_vec()),
            ("journal_segment", seed_segment()),
        ] {
            std::fs::create_dir_all(corpus.join(target)).unwrap();
            std::fs::write(corpus.join(target).join("seed"), bytes).unwrap();
        }
    }
}

#[test]
fn every_crash_the_fuzzers_found_stays_fixed() {
    // tests/fuzz-regressions/<target>/: inputs that once crashed a target.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut ran = 0;
    for target in std::fs::read_dir(&dir).unwrap() {
        let target = target.unwrap().path();
        let run: fn(&[u8]) = match target.file_name().unwrap().to_str().unwrap() {
            "ingest_batch" => fuzz_targets::ingest_batch,
            "config_file" => fuzz_targets::config_file,
            "tenants_file" => fuzz_targets::tenants_file,
            "journal_segment" => fuzz_targets::journal_segment,
            other => panic!("no fuzz target `{other}`"),
        };
        for input in std::fs::read_dir(&target).unwrap() {
            run(&std::fs::read(input.unwrap().path()).unwrap());
            ran += 1;
        }
    }
    assert!(ran >= 2, "the regressions are there");
}

#[test]
fn t_5_a_tenant_id_the_engine_refuses_is_refused_by_the_file() {
    // Found by `damaged_config_files...`: the file accepted `\u{fffd}cme`, and start-up
    // then failed on it after `--check-config` had passed.
    let file = "[[tenant]]\nid = \"a cme\"\ntime_zone = \"UTC\"\n";
    let refused = daybook::tenants::parse_tenants_toml(file).unwrap_err();
    assert!(refused.contains("id"), "{refused}");
}

/// Damage done to a journal of two segments (entries 1..=15 and 16..=30).
#[derive(Debug, Clone)]
enum Damage {
    /// XOR a byte of a segment.
    Flip { segment: usize, at: usize, xor: u8 },
    /// Cut a segment short (only the last segment's tail is a crash's torn write).
    Truncate { segment: usize, at: usize },
    /// Copy a run of a segment's bytes right after itself.
    Duplicate { segment: usize, from: usize, len: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0..2usize, any::<prop::sample::Index>(), 1u8..=255).prop_map(|(segment, at, xor)| Damage::Flip {
            segment,
            at: at.index(10_000),
            xor
        }),
        (0..2usize, any::<prop::sample::Index>())
            .prop_map(|(segment, at)| Damage::Truncate { segment, at: at.index(10_000) }),
        (0..2usize, any::<prop::sample::Index>(), 1usize..400).prop_map(|(segment, from, len)| Damage::Duplicate {
            segment,
            from: from.index(10_000),
            len
        }),
    ]
}

fn journal_entry(seq: u64) -> daybook::server::journal::Entry {
    use daybook::server::journal::{DeadLetterEntry, Entry, EntryKind};
    Entry {
        seq,
        kind: Some(EntryKind::DeadLetter(DeadLetterEntry { event_id: format!("event-{seq}") })),
        records: vec![vec![seq as u8; 20].into()],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Issue 7: start-up recovers every acknowledged entry or refuses, naming the remedy;
    /// `verify` reports what it refused; `repair` keeps every intact entry, and the
    /// journal then starts.
    #[test]
    fn a_damaged_journal_recovers_everything_or_refuses_and_repair_keeps_every_intact_entry(damage in damage()) {
        use daybook::server::journal::{frame, recover, repair, verify};
        let dir = tempfile::tempdir().unwrap();
        let ranges = [1..=15u64, 16..=30u64];
        let mut segments: Vec<Vec<u8>> = Vec::new();
        // Byte ranges of each entry's frame, per segment.
        let mut spans: Vec<Vec<(u64, std::ops::Range<usize>)>> = Vec::new();
        for range in &ranges {
            let (mut bytes, mut span) = (Vec::new(), Vec::new());
            for seq in range.clone() {
                let f = frame(&journal_entry(seq));
                span.push((seq, bytes.len()..bytes.len() + f.len()));
                bytes.extend_from_slice(&f);
            }
            segments.push(bytes);
            spans.push(span);
        }
        // Which entries the damage touched (their frame's bytes changed or are gone).
        let mut touched: std::collections::HashSet<u64> = Default::default();
        let mut torn_tail = false;
        match damage {
            Damage::Flip { segment, at, xor } => {
                let at = at % segments[segment].len();
                segments[segment][at] ^= xor;
                touched.extend(spans[segment].iter().filter(|(_, r)| r.contains(&at)).map(|(s, _)| *s));
            }
            Damage::Truncate { segment, at } => {
                let at = at % segments[segment].len();
                segments[segment].truncate(at);
                touched.extend(spans[segment].iter().filter(|(_, r)| r.end > at).map(|(s, _)| *s));
                torn_tail = segment == 1;
            }
            Damage::Duplicate { segment, from, len } => {
                let from = from % segments[segment].len();
                let end = (from + len).min(segments[segment].len());
                let run = segments[segment][from..end].to_vec();
                segments[segment].splice(end..end, run);
                // Inserted inside a frame, the copy breaks that frame.
                touched.extend(spans[segment].iter().filter(|(_, r)| r.start < end && end < r.end).map(|(s, _)| *s));
            }
        }
        for (range, bytes) in ranges.iter().zip(&segments) {
            std::fs::write(dir.path().join(format!("{:020}.log", range.start())), bytes).unwrap();
        }

        let mut recovered = Vec::new();
        match recover(dir.path(), 0, |e| recovered.push(e)) {
            Ok(_) => {
                let seqs: Vec<u64> = recovered.iter().map(|e| e.seq).collect();
                let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
                prop_assert_eq!(&seqs, &expected, "a contiguous prefix");
                for e in &recovered {
                    prop_assert_eq!(e, &journal_entry(e.seq), "no damaged entry passes as whole");
                }
                if seqs.len() < 30 {
                    prop_assert!(torn_tail, "only a torn tail of the last segment may lose entries");
                    prop_assert!(touched.iter().all(|s| *s > seqs.len() as u64));
                }
            }
            Err(e) => {
                prop_assert!(e.to_string().contains("daybook journal verify"), "{}", e);
                prop_assert!(!verify(dir.path()).unwrap().damage.is_empty(), "verify reports what start-up refused");
                repair(dir.path()).unwrap();
                let mut after = Vec::new();
                recover(dir.path(), 0, |e| after.push(e)).unwrap();
                let kept: std::collections::HashSet<u64> = after.iter().map(|e| e.seq).collect();
                for e in &after {
                    prop_assert_eq!(e, &journal_entry(e.seq));
                }
                prop_assert!(after.windows(2).all(|w| w[0].seq < w[1].seq), "each entry once, in order");
                for seq in 1..=30u64 {
                    if !touched.contains(&seq) && !matches!(damage, Damage::Flip { .. }) {
                        prop_assert!(kept.contains(&seq), "repair dropped intact entry {}", seq);
                    }
                }
            }
        }
    }
}
