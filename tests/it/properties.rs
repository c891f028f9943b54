//! T-1 as properties: on random event streams, results do not depend on arrival order,
//! on duplicated retries, or on how events are split across engine instances whose
//! states are then merged (the invariant the shared store relies on).
//!
//! The domain is small on purpose (a few consumers, conversations, days around month
//! ends, sessions) so that keys, periods and thresholds collide often.

use daybook::rating::ledger::{Statement, Totals};
use daybook::rating::{Engine, EngineConfig};
use daybook::scenario::raw_event;
use daybook::tenants::tenant_from_value;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

/// A tenant with random settings and plan.
fn tenant_strategy() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("dar"), Just("cycle"), Just("mau")],
        prop_oneof![Just("UTC"), Just("America/New_York"), Just("Asia/Kolkata")],
        any::<[bool; 6]>(),
        0u32..40,
        prop_oneof![Just(None), Just(Some("starter")), Just(Some("commitment"))],
    )
        .prop_map(|(meter, zone, flags, change_hour, plan)| {
            let mut settings = json!({
                "generative_ai": flags[0],
                "relationship": if flags[1] { "conversation" } else { "consumer" },
                "proactive_outbound_day": if flags[2] { "retroactive" } else { "reply_day_only" },
                "feature_attribution": if flags[3] { "first_event" } else { "any_event" },
                "gai_multiplies_addons": flags[4],
                "proactive_reply_window": "P1D",
            });
            if meter == "cycle" {
                settings["cycle_anchor_day"] = json!(30);
                settings["proactive_requires_reply"] = json!(flags[5]);
            }
            let at = format!("2025-06-{:02}T{:02}:00:00Z", 29 + change_hour / 24, change_hour % 24);
            let changes = json!([
                {"at": at, "set": {"intent_listening": true, "generative_ai": !flags[0], "cobrowse_credits": "0.5"}},
                {"at": "2025-07-01T06:00:00Z", "set": {"relationship": "consumer", "performance_optimizer": true}},
            ]);
            let plan = match plan {
                Some("starter") => json!({"kind": "starter", "included": 4, "alerts": ["0.5", "1.0"]}),
                Some(_) => json!({"kind": "commitment", "term_start": "2025-06-15", "term_end": "2025-07-15", "credits": "6",
                                  "overage_price": {"USD": "1.1"}, "top_ups": [{"at": "2025-06-30T00:00:00Z", "credits": "1"}],
                                  "alerts": ["0.5", "1.0"]}),
                None => Value::Null,
            };
            let mut t = json!({"id": "acme", "time_zone": zone, "meter": meter, "settings": settings, "changes": changes});
            if !plan.is_null() {
                t["plan"] = plan;
            }
            t
        })
}

/// One random event; its id is unique per position so streams have no conflicts.
fn event_strategy() -> impl Strategy<Value = Value> {
    let at = (0u32..4 * 24, 0u32..60).prop_map(|(h, m)| {
        // 2025-06-29 .. 2025-07-02: a month end, a cycle end (anchor 30) and zone effects.
        let day = 29 + h / 24;
        let (month, day) = if day > 30 { (7, day - 30) } else { (6, day) };
        format!("2025-{month:02}-{day:02}T{:02}:{m:02}:00Z", h % 24)
    });
    (0u8..10, at, 0u8..3, 0u8..2, 0u8..2, 0u8..5, 0u32..120_000, any::<bool>()).prop_map(
        |(kind, at, consumer, conversation, integration, sender, count, flag)| {
            let consumer = format!("c{consumer}");
            let conversation = ["A", "B"][conversation as usize];
            let integration = ["i0", "i1"][integration as usize];
            match kind {
                0..=5 => {
                    let sender = ["consumer", "agent", "bot", "proactive", "system"][sender as usize];
                    let mut e = json!({"at": at, "type": "message", "sender": sender, "consumer": consumer,
                        "conversation": conversation, "channel": "web", "integration": integration,
                        "sender_id": format!("u{}", count % 3)});
                    if sender == "proactive" && flag {
                        e.as_object_mut().unwrap().remove("conversation");
                    }
                    if count % 4 == 0 {
                        e["provider_price"] = json!({"amount": "0.0079", "currency": if flag { "USD" } else { "EUR" }});
                    }
                    e
                }
                6 => {
                    json!({"at": at, "type": "conversation_opened", "consumer": consumer, "conversation": conversation,
                            "channel": "sms", "integration": integration})
                }
                7 | 8 => json!({"at": at, "type": "cobrowse", "consumer": consumer, "conversation": conversation,
                                "session": format!("s{}", count % 3), "established": flag || kind == 8}),
                _ => json!({"at": at, "type": "function_invocations", "count": count}),
            }
        },
    )
}

fn stream_strategy() -> impl Strategy<Value = (Value, Vec<Value>)> {
    (tenant_strategy(), prop::collection::vec(event_strategy(), 1..40)).prop_map(|(tenant, events)| {
        // Known hole (ARCHITECTURE.md, "Rulebook gaps"): per-conversation relationships with a
        // retroactive outbound that has no conversation take "the reply's" conversation, and
        // with two replies in two conversations that depends on which arrives first.
        let per_conversation = tenant["settings"]["relationship"] == "conversation";
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e["id"] = json!(format!("e{i}"));
                if per_conversation && e.get("type") == Some(&json!("message")) && e.get("conversation").is_none() {
                    e["conversation"] = json!("P");
                }
                e
            })
            .collect();
        (tenant, events)
    })
}

fn engine(tenant: &Value) -> Engine {
    let engine = Engine::new(EngineConfig::default());
    engine.put_tenant(tenant_from_value(tenant).unwrap().0).unwrap();
    engine
}

/// Feeds events; returns whether any line was reversed (first-event pricing moved).
fn feed(engine: &Engine, events: &[Value]) -> bool {
    let mut reversed = false;
    for e in events {
        // Refusals are part of the stream too; they must not change anything.
        if let Ok(outcome) = engine.ingest(raw_event("acme", e), None, &mut Vec::new()) {
            reversed |= outcome.lines.iter().any(|l| l.reverses.is_some());
        }
    }
    reversed
}

/// Everything a billing team can observe: state, usage and every statement.
#[derive(Debug)]
struct Observed {
    state: Vec<String>,
    usage: Totals,
    statements: Vec<Statement>,
    /// Whether a reversal happened on the way. Then usage was briefly higher than its
    /// final value, and an alert threshold crossed only in that window depends on arrival
    /// order (documented in ARCHITECTURE.md); alerts are compared only without reversals.
    reversed: bool,
}

impl PartialEq for Observed {
    fn eq(&self, other: &Self) -> bool {
        let strip = |s: &[Statement]| -> Vec<Statement> {
            s.iter().map(|s| Statement { alerts: Vec::new(), ..s.clone() }).collect()
        };
        let alerts_comparable = !self.reversed && !other.reversed;
        self.state == other.state
            && self.usage == other.usage
            && if alerts_comparable {
                self.statements == other.statements
            } else {
                strip(&self.statements) == strip(&other.statements)
            }
    }
}

fn observe(engine: &Engine) -> Observed {
    let mut statements = engine.statements("acme").unwrap();
    for s in &mut statements {
        // Which event first reached a threshold depends on arrival order; the alert does not.
        for a in &mut s.alerts {
            a.event_id.clear();
            a.usage = Default::default();
        }
        s.alerts.sort_by_key(|a| a.id);
    }
    Observed {
        state: engine.state_digest(),
        usage: engine.usage("acme", None, None).unwrap(),
        statements,
        reversed: false,
    }
}

fn single(tenant: &Value, events: &[Value]) -> Observed {
    let e = engine(tenant);
    let reversed = feed(&e, events);
    // Rebuilding from state must also agree with what was added up incrementally.
    let incremental = Observed { reversed, ..observe(&e) };
    e.rebuild_ledgers();
    assert_eq!(
        Observed { reversed, ..observe(&e) },
        incremental,
        "aggregates rebuilt from state differ from the incremental ones"
    );
    incremental
}

pub(super) fn shuffled(events: &[Value], seed: u64) -> Vec<Value> {
    let mut out = events.to_vec();
    let mut state = seed | 1;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

pub(super) fn config() -> Config {
    Config { cases: 1000, failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn t_1_totals_do_not_depend_on_arrival_order((tenant, events) in stream_strategy(), seed in any::<u64>()) {
        prop_assert_eq!(single(&tenant, &events), single(&tenant, &shuffled(&events, seed)));
    }

    #[test]
    fn t_2_duplicated_retries_change_nothing((tenant, events) in stream_strategy(), picks in prop::collection::vec(any::<prop::sample::Index>(), 1..20), seed in any::<u64>()) {
        let mut with_retries = events.clone();
        for pick in picks {
            with_retries.push(pick.get(&events).clone());
        }
        prop_assert_eq!(single(&tenant, &events), single(&tenant, &shuffled(&with_retries, seed)));
    }

    #[test]
    fn t_2_every_retry_answers_its_original_outcome((tenant, events) in stream_strategy(), seed in any::<u64>()) {
        // Outcomes are stored compactly and re-derived on a retry; after the whole stream
        // (the state has moved on), each retry must still answer exactly the original.
        let e = engine(&tenant);
        let mut originals = Vec::new();
        for event in &events {
            if let Ok(outcome) = e.ingest(raw_event("acme", event), None, &mut Vec::new()) {
                originals.push((event.clone(), outcome));
            }
        }
        let order = shuffled(&(0..originals.len()).map(|i| json!(i)).collect::<Vec<_>>(), seed);
        for i in order {
            let (event, original) = &originals[i.as_u64().unwrap() as usize];
            let mut records = Vec::new();
            let retry = e.ingest(raw_event("acme", event), None, &mut records).unwrap();
            prop_assert!(retry.retry);
            prop_assert!(records.is_empty(), "a retry emits nothing");
            prop_assert_eq!(&daybook::rating::Outcome { retry: false, ..retry }, original);
        }
    }

    #[test]
    fn a_snapshot_restores_the_same_state_and_retry_answers((tenant, events) in stream_strategy()) {
        let original = engine(&tenant);
        feed(&original, &events);
        let mut bytes = Vec::new();
        let mut writer = daybook::rating::snapshot::Writer::new(&mut bytes);
        original.write_state(&mut writer).unwrap();
        writer.finish().unwrap();
        let restored = engine(&tenant);
        restored.read_state(daybook::rating::snapshot::Reader::sized(bytes.as_slice(), bytes.len() as u64)).unwrap();
        prop_assert_eq!(observe(&restored), observe(&original));
        for event in &events {
            let a = original.ingest(raw_event("acme", event), None, &mut Vec::new());
            let b = restored.ingest(raw_event("acme", event), None, &mut Vec::new());
            prop_assert_eq!(a, b);
        }
        // A damaged snapshot is refused, never half-loaded silently.
        if bytes.len() > 40 {
            let mut damaged = bytes.clone();
            let i = bytes.len() / 2;
            damaged[i] ^= 0x5a;
            let target = engine(&tenant);
            let result = target.read_state(daybook::rating::snapshot::Reader::sized(damaged.as_slice(), damaged.len() as u64));
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn t_3_pruning_closed_periods_changes_no_total_and_no_answer(
        (tenant, events) in stream_strategy(),
        split in any::<prop::sample::Index>(),
        retries in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        days_later in 1i64..80,
        seed in any::<u64>(),
    ) {
        // One engine prunes at `now`, one never does. Events before the split arrive
        // first; then the rest, with retries, judged at `now`: every answer must agree,
        // except that a retry of an id forgotten with its closed period is refused as too
        // late (documented), and every total and statement must agree.
        let (pruning, keeping) = (engine(&tenant), engine(&tenant));
        let k = split.index(events.len() + 1);
        feed(&pruning, &events[..k]);
        feed(&keeping, &events[..k]);
        let now: daybook::rating::time::Instant = "2025-07-03T00:00:00Z".parse::<daybook::rating::time::Instant>().unwrap()
            + chrono::TimeDelta::days(days_later);
        pruning.close_periods(now);
        // Co-browse session ids are remembered for a month after the session's first
        // established event (sessions last minutes; ARCHITECTURE.md, "Pruning"): later
        // events here use sessions of their own.
        let mut rest: Vec<Value> = events[k..]
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if let Some(session) = e.get("session").and_then(Value::as_str) {
                    e["session"] = json!(format!("late-{session}"));
                }
                e
            })
            .collect();
        for r in &retries {
            rest.push(r.get(&events).clone());
        }
        for event in shuffled(&rest, seed) {
            let a = pruning.ingest(raw_event("acme", &event), Some(now), &mut Vec::new());
            let b = keeping.ingest(raw_event("acme", &event), Some(now), &mut Vec::new());
            let forgotten = matches!((&a, &b), (Err(r), Ok(o)) if r.code == daybook::rating::outcome::Code::FailedPrecondition && o.retry);
            prop_assert!(a == b || forgotten, "{:?} vs {:?}", a, b);
        }
        let strip = |o: Observed| Observed { state: Vec::new(), ..o };
        prop_assert_eq!(strip(observe(&pruning)), strip(observe(&keeping)));
        pruning.rebuild_ledgers();
        keeping.rebuild_ledgers();
        prop_assert_eq!(strip(observe(&pruning)), strip(observe(&keeping)));
    }

    #[test]
    fn t_1_any_split_across_replicas_merges_to_the_single_engine_result(
        (tenant, events) in stream_strategy(),
        replicas in 2usize..=3,
        assignment in prop::collection::vec((0usize..3, any::<bool>()), 40),
    ) {
        let engines: Vec<Engine> = (0..replicas).map(|_| engine(&tenant)).collect();
        let mut reversed = false;
        for (event, (to, retry_elsewhere)) in events.iter().zip(&assignment) {
            reversed |= feed(&engines[to % replicas], std::slice::from_ref(event));
            if *retry_elsewhere {
                // A retry that landed on another replica.
                reversed |= feed(&engines[(to + 1) % replicas], std::slice::from_ref(event));
            }
        }
        let merged = engine(&tenant);
        for e in &engines {
            merged.merge_from(e);
        }
        merged.rebuild_ledgers();
        // Merged alerts come from merged usage; per-replica partial usage may still have
        // crossed a threshold only while a reversal was pending.
        prop_assert_eq!(single(&tenant, &events), Observed { reversed, ..observe(&merged) });
    }
}
