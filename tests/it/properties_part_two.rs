//! RULEBOOK part two as properties: with several meters (a filtered dar meter, a month or
//! cycle meter, an event meter, an outcome meter), outcomes, revocations and voids in the
//! stream, the books do not depend on arrival order or on duplicated retries (T-1, T-2,
//! MS-3, EV-2, OUT-4, COR-2), every retry answers its original outcome, and a snapshot
//! restores the same books and answers.
//!
//! The domain is small on purpose: few consumers, conversations and outcome types, days
//! around a month end, revocation windows of hours, voids over days that hold traffic.

use std::collections::BTreeMap;

use daybook::rating::ledger::Statement;
use daybook::scenario::{EngineTarget, InteractionView, MeterView, Target, raw_event};
use daybook::tenants::tenant_from_value;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::properties::{config, shuffled};

fn tenant_strategy() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("mau"), Just("cycle")],
        prop_oneof![Just("UTC"), Just("America/New_York")],
        any::<[bool; 4]>(),
        0u64..3,
        1u64..4,
        prop_oneof![Just("pro_rata"), Just("ceil_block"), Just("floor_block")],
        prop_oneof![Just("PT2H"), Just("PT72H")],
    )
        .prop_map(|(second, zone, flags, allowance, per, rounding, window)| {
            let mut dar = json!({"id": "days", "preset": "dar"});
            if flags[0] {
                dar["filter"] = json!({"channels": ["web"]});
            }
            let meters = json!([
                dar,
                {"id": "second", "preset": second},
                {"id": "units", "preset": "event", "allowance": allowance, "units_per_credit": per, "rounding": rounding},
                {"id": "fin", "preset": "outcome", "prices": {"resolution": "0.99", "handoff": "0"}, "revocation_window": window}
            ]);
            let mut t = json!({"id": "acme", "time_zone": zone, "meters": meters,
                "settings": {"generative_ai": flags[1], "intent_listening": flags[2], "cycle_anchor_day": 30},
                "changes": [{"at": "2025-06-30T12:00:00Z", "set": {"performance_optimizer": true}}]});
            if flags[3] {
                t["plan"] = json!({"kind": "starter", "included": 3, "meter": "days"});
            }
            t
        })
}

fn event_strategy() -> impl Strategy<Value = Value> {
    let at = (0u32..3 * 24, 0u32..60).prop_map(|(h, m)| {
        // 2025-06-29 .. 2025-07-01: a month end, a cycle end (anchor 30).
        let day = 29 + h / 24;
        let (month, day) = if day > 30 { (7, day - 30) } else { (6, day) };
        format!("2025-{month:02}-{day:02}T{:02}:{m:02}:00Z", h % 24)
    });
    (0u8..12, at, 0u8..3, 0u8..2, 0u8..5, any::<bool>(), 0u8..4).prop_map(
        |(kind, at, consumer, conversation, sender, flag, pick)| {
            let consumer = format!("c{consumer}");
            let conversation = ["A", "B"][conversation as usize];
            match kind {
                0..=4 => {
                    let sender = ["consumer", "agent", "bot", "proactive", "system"][sender as usize];
                    json!({"at": at, "type": "message", "sender": sender, "consumer": consumer,
                        "conversation": conversation, "channel": if flag { "web" } else { "sms" },
                        "integration": if flag { "web-1" } else { "sms-1" }})
                }
                5 => {
                    json!({"at": at, "type": "conversation_opened", "consumer": consumer, "conversation": conversation,
                            "channel": "web", "integration": "web-1"})
                }
                6..=8 => json!({"at": at, "type": "outcome", "consumer": consumer, "conversation": conversation,
                                "outcome_type": if pick == 0 { "handoff" } else { "resolution" }}),
                9 | 10 => json!({"at": at, "type": "outcome", "consumer": consumer, "conversation": conversation,
                                 "outcome_type": "resolution", "revoked": true}),
                _ => {
                    let (from, to) = [
                        ("2025-06-29", "2025-06-29"),
                        ("2025-06-30", "2025-07-01"),
                        ("2025-06-01", "2025-06-30"),
                        ("2025-06-29", "2025-07-31"),
                    ][pick as usize];
                    let mut v =
                        json!({"at": "2025-07-02T00:00:00Z", "type": "void", "from": from, "to": to, "reason": "test"});
                    match sender {
                        0 => v["consumer"] = json!(consumer),
                        1 => v["meter"] = json!("fin"),
                        2 => v["conversation"] = json!(conversation),
                        3 => v["meter"] = json!("days"),
                        _ => {}
                    }
                    v
                }
            }
        },
    )
}

fn stream_strategy() -> impl Strategy<Value = (Value, Vec<Value>)> {
    (tenant_strategy(), prop::collection::vec(event_strategy(), 1..40)).prop_map(|(tenant, events)| {
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e["id"] = json!(format!("e{i}"));
                e
            })
            .collect();
        (tenant, events)
    })
}

/// What a billing team can observe: standing and voided interactions, usage and each
/// meter's figures, statements (alerts aside: COR-3).
#[derive(Debug, PartialEq)]
struct Observed {
    standing: Vec<InteractionView>,
    voided: Vec<InteractionView>,
    credits: rust_decimal::Decimal,
    interactions: u64,
    meters: BTreeMap<String, MeterView>,
    statements: Vec<Statement>,
}

fn target(tenant: &Value) -> EngineTarget {
    let mut t = EngineTarget::default();
    t.create_tenant(&tenant_from_value(tenant).unwrap().0).unwrap();
    t
}

fn feed(t: &mut EngineTarget, events: &[Value]) {
    for e in events {
        // Refusals are part of the stream too; they must not change anything.
        let _ = t.ingest(raw_event("acme", e), None);
    }
}

fn observe(t: &mut EngineTarget) -> Observed {
    let mut listing = t.interactions("acme", true).unwrap();
    listing.standing.sort();
    listing.voided.sort();
    let usage = t.engine().usage("acme", None, None).unwrap();
    let statements =
        t.engine().statements("acme").unwrap().into_iter().map(|s| Statement { alerts: Vec::new(), ..s }).collect();
    Observed {
        standing: listing.standing,
        voided: listing.voided,
        credits: usage.credits().normalize(),
        interactions: usage.interactions,
        meters: t.meters("acme").unwrap(),
        statements,
    }
}

fn single(tenant: &Value, events: &[Value]) -> Observed {
    let mut t = target(tenant);
    feed(&mut t, events);
    let incremental = observe(&mut t);
    // Rebuilding the aggregates from state agrees with what was added up event by event.
    t.engine().rebuild_ledgers();
    let rebuilt = observe(&mut t);
    assert_eq!(
        (&rebuilt.credits, &rebuilt.interactions, &rebuilt.meters),
        (&incremental.credits, &incremental.interactions, &incremental.meters),
        "aggregates rebuilt from state differ from the incremental ones"
    );
    incremental
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn t_1_meters_outcomes_and_voids_do_not_depend_on_arrival_order((tenant, events) in stream_strategy(), seed in any::<u64>()) {
        prop_assert_eq!(single(&tenant, &events), single(&tenant, &shuffled(&events, seed)));
    }

    #[test]
    fn t_2_duplicated_retries_of_outcomes_revocations_and_voids_change_nothing(
        (tenant, events) in stream_strategy(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..20),
        seed in any::<u64>(),
    ) {
        let mut with_retries = events.clone();
        for pick in picks {
            with_retries.push(pick.get(&events).clone());
        }
        prop_assert_eq!(single(&tenant, &events), single(&tenant, &shuffled(&with_retries, seed)));
    }

    #[test]
    fn t_2_every_retry_answers_its_original_outcome_in_every_meter((tenant, events) in stream_strategy(), seed in any::<u64>()) {
        let t = target(&tenant);
        let mut originals = Vec::new();
        for event in &events {
            if let Ok(outcome) = t.engine().ingest(raw_event("acme", event), None, &mut Vec::new()) {
                originals.push((event.clone(), outcome));
            }
        }
        for i in shuffled(&(0..originals.len()).map(|i| json!(i)).collect::<Vec<_>>(), seed) {
            let (event, original) = &originals[i.as_u64().unwrap() as usize];
            let mut records = Vec::new();
            let retry = t.engine().ingest(raw_event("acme", event), None, &mut records).unwrap();
            prop_assert!(retry.retry);
            prop_assert!(records.is_empty(), "a retry emits nothing");
            prop_assert_eq!(&daybook::rating::Outcome { retry: false, ..retry }, original);
        }
    }

    #[test]
    fn a_snapshot_restores_meters_outcomes_and_voids((tenant, events) in stream_strategy(), split in any::<prop::sample::Index>()) {
        // Half the stream, a snapshot, the other half on both: same books, same answers.
        let k = split.index(events.len() + 1);
        let mut original = target(&tenant);
        feed(&mut original, &events[..k]);
        let mut bytes = Vec::new();
        let mut writer = daybook::rating::snapshot::Writer::new(&mut bytes);
        original.engine().write_state(&mut writer).unwrap();
        writer.finish().unwrap();
        let restored = target(&tenant);
        restored.engine().read_state(daybook::rating::snapshot::Reader::sized(bytes.as_slice(), bytes.len() as u64)).unwrap();
        for event in &events[k..] {
            let a = original.engine().ingest(raw_event("acme", event), None, &mut Vec::new());
            let b = restored.engine().ingest(raw_event("acme", event), None, &mut Vec::new());
            prop_assert_eq!(a, b);
        }
        let books = |t: &EngineTarget| {
            let u = t.engine().usage("acme", None, None).unwrap();
            (u.credits().normalize(), u.interactions, u.meters.clone())
        };
        prop_assert_eq!(books(&original), books(&restored));
    }
}

/// The books as the aggregates hold them (a merged engine has no records to list).
fn books(engine: &daybook::rating::Engine) -> (rust_decimal::Decimal, u64, Vec<Statement>) {
    let usage = engine.usage("acme", None, None).unwrap();
    let statements =
        engine.statements("acme").unwrap().into_iter().map(|s| Statement { alerts: Vec::new(), ..s }).collect();
    (usage.credits().normalize(), usage.interactions, statements)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn t_1_a_split_across_replicas_merges_to_the_single_engine_books(
        (tenant, events) in stream_strategy(),
        replicas in 2usize..=3,
        assignment in prop::collection::vec((0usize..3, any::<bool>()), 40),
    ) {
        // Each event to one replica, some retried on another; the merge of the replicas
        // holds the books one engine does, with units, outcomes, revocations and voids.
        let targets: Vec<EngineTarget> = (0..replicas).map(|_| target(&tenant)).collect();
        for (event, (to, retry_elsewhere)) in events.iter().zip(&assignment) {
            let _ = targets[to % replicas].engine().ingest(raw_event("acme", event), None, &mut Vec::new());
            if *retry_elsewhere {
                let _ = targets[(to + 1) % replicas].engine().ingest(raw_event("acme", event), None, &mut Vec::new());
            }
        }
        let merged = target(&tenant);
        for t in &targets {
            merged.engine().merge_from(t.engine());
        }
        merged.engine().rebuild_ledgers();
        let one = target(&tenant);
        for event in &events {
            let _ = one.engine().ingest(raw_event("acme", event), None, &mut Vec::new());
        }
        prop_assert_eq!(books(merged.engine()), books(one.engine()));
    }
}
