//! Every RULEBOOK rule, as data: each test is a scenario (the shared format) run through
//! the engine by one `check` helper, or a direct engine call where the outcome itself is
//! what the rule is about. Test names start with the rule id.

use daybook::rating::outcome::{Code, Disposition, NotBillableReason};
use daybook::rating::{Engine, EngineConfig, RawEvent, Record};
use daybook::scenario::{EngineTarget, Scenario, raw_event};
use daybook::tenants::tenant_from_value;
use serde_json::{Value, json};

/// Runs a scenario on a fresh engine and fails with its differences.
pub(super) fn check(scenario: Value) {
    let scenario = Scenario::from_value(&scenario).expect("scenario loads");
    let diffs = scenario.run(&mut EngineTarget::default()).expect("scenario runs");
    assert!(diffs.is_empty(), "{}: {}", scenario.name, diffs.join("; "));
}

fn tenant(zone: &str, meter: &str, settings: Value) -> Value {
    json!({"id": "acme", "time_zone": zone, "meter": meter, "settings": settings})
}

pub(super) fn msg(id: &str, at: &str, sender: &str, consumer: &str, conversation: &str) -> Value {
    json!({"id": id, "at": at, "type": "message", "sender": sender, "consumer": consumer,
           "conversation": conversation, "channel": "web", "integration": "web-1"})
}

pub(super) fn with(mut event: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            event.as_object_mut().unwrap().remove(k);
        } else {
            event[k] = v.clone();
        }
    }
    event
}

pub(super) fn scenario(name: &str, tenant: Value, events: Vec<Value>, expect: Value) -> Value {
    json!({"name": name, "rules": [], "tenant": tenant, "events": events, "expect": expect})
}

fn day(consumer: &str, period: &str) -> Value {
    json!({"consumer": consumer, "period": period})
}

/// An engine with one tenant, for tests that look at outcomes.
pub(super) fn engine_with(tenant: Value) -> Engine {
    let engine = Engine::new(EngineConfig::default());
    engine.put_tenant(tenant_from_value(&tenant).unwrap().0).unwrap();
    engine
}

pub(super) fn raw(event: Value) -> RawEvent {
    raw_event("acme", &event)
}

// ---- DAR ----

#[test]
fn dar_1_one_dar_per_consumer_and_local_date_whatever_the_traffic() {
    check(scenario(
        "DAR-1",
        tenant("Europe/Paris", "dar", json!({})),
        vec![
            msg("m1", "2025-06-10T08:00:00+02:00", "consumer", "c1", "A"),
            msg("m2", "2025-06-10T08:01:00+02:00", "agent", "c1", "B"),
            with(
                msg("m3", "2025-06-10T20:00:00+02:00", "bot", "c1", "C"),
                json!({"channel": "whatsapp", "integration": "wa"}),
            ),
            msg("m4", "2025-06-10T09:00:00+02:00", "consumer", "c2", "D"),
        ],
        json!({"interactions": [day("c1", "2025-06-10"), day("c2", "2025-06-10")], "credits": "2"}),
    ));
}

#[test]
fn dar_2_fall_back_day_has_25_hours_and_midnight_starts_the_new_day() {
    check(scenario(
        "DAR-2",
        tenant("America/New_York", "dar", json!({})),
        vec![
            // 2025-11-02 runs 04:00Z..05:00Z next day (25 hours).
            msg("m1", "2025-11-02T00:00:00-04:00", "consumer", "c1", "A"),
            msg("m2", "2025-11-03T04:59:59Z", "agent", "c1", "A"),
            // Exactly 00:00:00 local belongs to the new day.
            msg("m3", "2025-11-03T00:00:00-05:00", "consumer", "c1", "A"),
            // The sender's offset never matters, only the instant: 2025-11-01 23:30 local.
            msg("m4", "2025-11-02T12:30:00+09:00", "consumer", "c2", "B"),
        ],
        json!({"interactions": [day("c1", "2025-11-02"), day("c1", "2025-11-03"), day("c2", "2025-11-01")]}),
    ));
}

#[test]
fn dar_2_half_hour_zone() {
    check(scenario(
        "DAR-2 India",
        tenant("Asia/Kolkata", "dar", json!({})),
        vec![
            msg("m1", "2025-06-10T18:29:59Z", "consumer", "c1", "A"),
            msg("m2", "2025-06-10T18:30:00Z", "consumer", "c1", "A"),
        ],
        json!({"interactions": [day("c1", "2025-06-10"), day("c1", "2025-06-11")]}),
    ));
}

#[test]
fn dar_3_conversation_over_three_days_with_a_silent_day() {
    check(scenario(
        "DAR-3",
        tenant("UTC", "dar", json!({})),
        vec![
            msg("m1", "2025-06-10T23:00:00Z", "consumer", "c1", "A"),
            msg("m2", "2025-06-12T01:00:00Z", "agent", "c1", "A"),
        ],
        json!({"interactions": [day("c1", "2025-06-10"), day("c1", "2025-06-12")], "credits": "2"}),
    ));
}

#[test]
fn dar_4_qualifying_events() {
    check(scenario(
        "DAR-4",
        tenant("UTC", "dar", json!({})),
        vec![
            msg("s1", "2025-06-10T10:00:00Z", "system", "c1", "A"),
            with(msg("p1", "2025-06-10T10:00:00Z", "proactive", "c2", ""), json!({"conversation": null})),
            msg("b1", "2025-06-10T10:00:00Z", "bot", "c3", "B"),
            json!({"id": "o1", "at": "2025-06-10T10:00:00Z", "type": "conversation_opened", "consumer": "c4",
                   "conversation": "C", "channel": "sms", "integration": "3p"}),
        ],
        json!({"interactions": [day("c3", "2025-06-10"), day("c4", "2025-06-10")], "credits": "2"}),
    ));
}

#[test]
fn dar_5_retroactive_charges_the_outbound_day_for_a_reply_within_the_window() {
    let t = tenant("America/New_York", "dar", json!({"proactive_outbound_day": "retroactive"}));
    let p = |id: &str, at: &str, consumer: &str| {
        with(msg(id, at, "proactive", consumer, ""), json!({"conversation": null}))
    };
    check(scenario(
        "DAR-5 retroactive",
        t,
        vec![
            p("p1", "2025-06-10T10:00:00-04:00", "c1"),
            // Inclusive window end: exactly 7 x 24 hours later.
            msg("r1", "2025-06-17T10:00:00-04:00", "consumer", "c1", "R"),
            p("p2", "2025-06-10T10:00:00-04:00", "c2"),
            // One second too late: only the reply's day.
            msg("r2", "2025-06-17T10:00:01-04:00", "consumer", "c2", "R"),
            p("p3", "2025-06-10T10:00:00-04:00", "c3"),
            // An agent message is not a reply.
            msg("a3", "2025-06-11T10:00:00-04:00", "agent", "c3", "R"),
        ],
        json!({"interactions": [day("c1", "2025-06-10"), day("c1", "2025-06-17"), day("c2", "2025-06-17"),
                                day("c3", "2025-06-11")]}),
    ));
}

#[test]
fn dar_5_retroactive_does_not_depend_on_arrival_order() {
    let t = tenant("UTC", "dar", json!({"proactive_outbound_day": "retroactive", "proactive_reply_window": "P2D"}));
    check(scenario(
        "DAR-5 reply first",
        t,
        vec![
            msg("r1", "2025-06-11T09:00:00Z", "consumer", "c1", "R"),
            with(msg("p1", "2025-06-10T10:00:00Z", "proactive", "c1", ""), json!({"conversation": null})),
        ],
        json!({"interactions": [day("c1", "2025-06-10"), day("c1", "2025-06-11")], "credits": "2"}),
    ));
}

#[test]
fn dar_5_outbound_is_judged_and_priced_by_the_settings_at_its_own_instant() {
    // Retroactive and GAI on at the outbound, both off before the reply: the outbound day
    // is charged, at 1.5; the reply day at 1.
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar",
        "settings": {"proactive_outbound_day": "retroactive", "generative_ai": true},
        "changes": [{"at": "2025-06-11T00:00:00Z", "set": {"proactive_outbound_day": "reply_day_only", "generative_ai": false}}]});
    check(scenario(
        "DAR-5 settings at outbound",
        t,
        vec![
            with(msg("p1", "2025-06-10T10:00:00Z", "proactive", "c1", ""), json!({"conversation": null})),
            msg("r1", "2025-06-12T09:00:00Z", "consumer", "c1", "R"),
            // Switched on only after this outbound: not charged.
            with(msg("p2", "2025-06-12T10:00:00Z", "proactive", "c2", ""), json!({"conversation": null})),
            msg("r2", "2025-06-13T09:00:00Z", "consumer", "c2", "R"),
        ],
        json!({"interactions": [day("c1", "2025-06-10"), day("c1", "2025-06-12"), day("c2", "2025-06-13")],
               "credits": "3.5"}),
    ));
}

#[test]
fn dar_5_per_conversation_the_outbound_day_belongs_to_its_conversation_or_the_replys() {
    let t = tenant("UTC", "dar", json!({"proactive_outbound_day": "retroactive", "relationship": "conversation"}));
    check(scenario(
        "DAR-5 conversation",
        t,
        vec![
            with(msg("p1", "2025-06-10T10:00:00Z", "proactive", "c1", ""), json!({"conversation": null})),
            msg("r1", "2025-06-11T09:00:00Z", "consumer", "c1", "R"),
            msg("p2", "2025-06-10T10:00:00Z", "proactive", "c2", "P"),
            msg("r2", "2025-06-11T09:00:00Z", "consumer", "c2", "Q"),
        ],
        json!({"interactions": [
            {"consumer": "c1", "conversation": "R", "period": "2025-06-10"},
            {"consumer": "c1", "conversation": "R", "period": "2025-06-11"},
            {"consumer": "c2", "conversation": "P", "period": "2025-06-10"},
            {"consumer": "c2", "conversation": "Q", "period": "2025-06-11"}]}),
    ));
}

#[test]
fn dar_5_proactive_without_reply_is_not_billable_and_needs_no_conversation() {
    let engine = engine_with(tenant("UTC", "dar", json!({})));
    let mut records = Vec::new();
    let outcome = engine
        .ingest(
            raw(with(msg("p1", "2025-06-10T10:00:00Z", "proactive", "c1", ""), json!({"conversation": null}))),
            None,
            &mut records,
        )
        .unwrap();
    assert_eq!(outcome.disposition, Disposition::NotBillable(NotBillableReason::ProactiveAwaitingReply));
    assert!(records.is_empty());
}

#[test]
fn dar_6_relationship_setting_is_structural() {
    // Switched to per-conversation mid-day: that day stays per consumer (T-5).
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar",
        "changes": [{"at": "2025-06-10T12:00:00Z", "set": {"relationship": "conversation"}}]});
    check(scenario(
        "DAR-6",
        t,
        vec![
            msg("m1", "2025-06-10T09:00:00Z", "consumer", "c1", "A"),
            msg("m2", "2025-06-10T15:00:00Z", "consumer", "c1", "B"),
            msg("m3", "2025-06-11T09:00:00Z", "consumer", "c1", "A"),
            msg("m4", "2025-06-11T15:00:00Z", "consumer", "c1", "B"),
        ],
        json!({"interactions": [day("c1", "2025-06-10"),
            {"consumer": "c1", "conversation": "A", "period": "2025-06-11"},
            {"consumer": "c1", "conversation": "B", "period": "2025-06-11"}]}),
    ));
}

// ---- CYC ----

fn gc(id: &str, at: &str, sender: &str, consumer: &str, integration: &str) -> Value {
    with(msg(id, at, sender, consumer, "X"), json!({"integration": integration}))
}

fn cyc(consumer: &str, integration: &str, period: &str) -> Value {
    json!({"consumer": consumer, "integration": integration, "period": period})
}

#[test]
fn cyc_1_one_conversation_per_consumer_integration_and_cycle() {
    check(scenario(
        "CYC-1",
        tenant("America/Chicago", "cycle", json!({"cycle_anchor_day": 10})),
        vec![
            gc("g1", "2025-06-10T00:00:00-05:00", "consumer", "u1", "fb"),
            gc("g2", "2025-07-09T23:59:59-05:00", "agent", "u1", "fb"),
            gc("g3", "2025-07-10T00:00:00-05:00", "agent", "u1", "fb"),
        ],
        json!({"interactions": [cyc("u1", "fb", "2025-06-10"), cyc("u1", "fb", "2025-07-10")], "credits": "2"}),
    ));
}

#[test]
fn cyc_2_leap_february_clamp() {
    check(scenario(
        "CYC-2",
        tenant("UTC", "cycle", json!({"cycle_anchor_day": 30})),
        vec![
            gc("g1", "2024-02-28T12:00:00Z", "consumer", "u1", "fb"),
            gc("g2", "2024-02-29T12:00:00Z", "consumer", "u1", "fb"),
            gc("g3", "2024-03-29T12:00:00Z", "consumer", "u1", "fb"),
            gc("g4", "2024-03-30T12:00:00Z", "consumer", "u1", "fb"),
        ],
        json!({"interactions": [cyc("u1", "fb", "2024-01-30"), cyc("u1", "fb", "2024-02-29"), cyc("u1", "fb", "2024-03-30")]}),
    ));
}

#[test]
fn cyc_3_spanning_the_boundary_counts_in_each_cycle() {
    check(scenario(
        "CYC-3",
        tenant("UTC", "cycle", json!({})),
        vec![
            gc("g1", "2025-06-30T23:59:00Z", "consumer", "u1", "wa"),
            gc("g2", "2025-07-01T00:01:00Z", "agent", "u1", "wa"),
        ],
        json!({"interactions": [cyc("u1", "wa", "2025-06-01"), cyc("u1", "wa", "2025-07-01")]}),
    ));
}

#[test]
fn cyc_4_integrations_count_separately() {
    check(scenario(
        "CYC-4",
        tenant("UTC", "cycle", json!({})),
        vec![
            gc("g1", "2025-06-10T10:00:00Z", "consumer", "u1", "wa-1"),
            gc("g2", "2025-06-10T10:00:00Z", "consumer", "u1", "wa-2"),
        ],
        json!({"interaction_count": 2}),
    ));
}

#[test]
fn cyc_5_proactive_requires_reply_setting() {
    check(scenario(
        "CYC-5",
        tenant("UTC", "cycle", json!({"proactive_requires_reply": true, "cycle_anchor_day": 15})),
        vec![
            gc("p1", "2025-06-14T10:00:00Z", "proactive", "u1", "wa"),
            gc("r1", "2025-06-16T10:00:00Z", "consumer", "u1", "wa"),
            gc("p2", "2025-06-16T10:00:00Z", "proactive", "u2", "wa"),
        ],
        json!({"interactions": [cyc("u1", "wa", "2025-06-15")]}),
    ));
}

#[test]
fn cyc_6_anchor_change_waits_for_the_next_cycle_then_runs_to_the_new_anchor() {
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "cycle", "settings": {"cycle_anchor_day": 15},
        "changes": [{"at": "2025-06-20T00:00:00Z", "set": {"cycle_anchor_day": 1}}]});
    check(scenario(
        "CYC-6",
        t,
        vec![
            gc("g1", "2025-06-25T10:00:00Z", "consumer", "u1", "fb"),
            gc("g2", "2025-07-10T10:00:00Z", "consumer", "u1", "fb"),
            gc("g3", "2025-07-20T10:00:00Z", "consumer", "u1", "fb"),
            gc("g4", "2025-08-05T10:00:00Z", "consumer", "u1", "fb"),
        ],
        json!({"interactions": [cyc("u1", "fb", "2025-06-15"), cyc("u1", "fb", "2025-07-15"), cyc("u1", "fb", "2025-08-01")]}),
    ));
}

// ---- MAU ----

#[test]
fn mau_1_one_per_consumer_and_local_month() {
    check(scenario(
        "MAU-1",
        tenant("America/Los_Angeles", "mau", json!({})),
        vec![
            msg("t1", "2025-02-01T07:59:59Z", "consumer", "c1", "A"),
            msg("t2", "2025-01-15T10:00:00Z", "agent", "c1", "A"),
            msg("t3", "2025-02-01T08:00:00Z", "consumer", "c1", "A"),
            msg("t4", "2025-02-01T08:00:00Z", "system", "c2", "A"),
        ],
        json!({"interactions": [day("c1", "2025-01"), day("c1", "2025-02")], "credits": "2"}),
    ));
}

// ---- Credits ----

#[test]
fn cr_1_one_credit_per_interaction() {
    check(scenario(
        "CR-1",
        tenant("UTC", "dar", json!({})),
        vec![
            msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"),
            msg("m2", "2025-06-11T10:00:00Z", "consumer", "c1", "A"),
        ],
        json!({"credits": "2"}),
    ));
}

#[test]
fn cr_2_generative_ai_is_a_base_line_plus_a_half_credit_uplift_line() {
    let engine = engine_with(tenant("UTC", "dar", json!({"generative_ai": true})));
    let outcome =
        engine.ingest(raw(msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A")), None, &mut Vec::new()).unwrap();
    let lines: Vec<(String, String)> =
        outcome.lines.iter().map(|l| (l.kind.name().to_string(), l.credits.to_string())).collect();
    assert_eq!(lines, [("base".into(), "1".into()), ("generative_ai".into(), "0.5".into())]);
}

#[test]
fn cr_3_intent_listening_is_paid_on_each_dar_of_a_conversation() {
    check(scenario(
        "CR-3",
        tenant("UTC", "dar", json!({"intent_listening": true})),
        vec![
            msg("m1", "2025-06-10T23:00:00Z", "consumer", "c1", "A"),
            msg("m2", "2025-06-11T01:00:00Z", "agent", "c1", "A"),
        ],
        json!({"credits": "2.4"}),
    ));
}

#[test]
fn cr_4_performance_optimizer() {
    check(scenario(
        "CR-4",
        tenant("UTC", "dar", json!({"performance_optimizer": true})),
        vec![msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A")],
        json!({"credits": "1.05"}),
    ));
}

#[test]
fn cr_5_gai_multiplies_addons_setting() {
    let all = json!({"generative_ai": true, "intent_listening": true, "performance_optimizer": true, "gai_multiplies_addons": true});
    check(scenario(
        "CR-5",
        tenant("UTC", "dar", all),
        vec![msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A")],
        json!({"credits": "1.875"}),
    ));
}

#[test]
fn cr_6_surcharges_only_grow_so_arrival_order_does_not_matter() {
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar",
        "changes": [{"at": "2025-06-10T12:00:00Z", "set": {"intent_listening": true}},
                    {"at": "2025-06-10T13:00:00Z", "set": {"intent_listening": false}}]});
    for order in [["m1", "m2"], ["m2", "m1"]] {
        let events = order
            .iter()
            .map(|id| match *id {
                "m1" => msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"),
                _ => msg("m2", "2025-06-10T12:30:00Z", "agent", "c1", "A"),
            })
            .collect();
        check(scenario("CR-6 any event", t.clone(), events, json!({"credits": "1.2"})));
    }
}

#[test]
fn cr_6_first_event_attribution_prices_by_the_earliest_event_in_any_order() {
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar", "settings": {"feature_attribution": "first_event"},
        "changes": [{"at": "2025-06-10T12:00:00Z", "set": {"generative_ai": true}}]});
    let early = msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A");
    let late = msg("m2", "2025-06-10T12:30:00Z", "agent", "c1", "A");
    check(scenario("CR-6 first, in order", t.clone(), vec![early.clone(), late.clone()], json!({"credits": "1"})));
    // The later event arrives first and adds the uplift; the earlier one withdraws it
    // with a reversal line.
    check(scenario("CR-6 first, reversed", t.clone(), vec![late.clone(), early.clone()], json!({"credits": "1"})));
    let engine = engine_with(t);
    let mut records = Vec::new();
    engine.ingest(raw(late), None, &mut records).unwrap();
    let outcome = engine.ingest(raw(early), None, &mut records).unwrap();
    assert_eq!(outcome.disposition, Disposition::AlreadyCounted);
    let reversal = outcome.lines.iter().find(|l| l.reverses.is_some()).expect("a reversal line");
    assert_eq!(reversal.credits, "-0.5".parse().unwrap());
    // Lines present at creation travel inside the Interaction record.
    let reversed = records
        .iter()
        .find_map(|r| match &r.body {
            daybook::rating::RecordBody::Interaction(i) => i.lines.iter().find(|l| Some(l.id) == reversal.reverses),
            _ => None,
        })
        .expect("reverses an emitted line");
    assert_eq!(reversed.rule, "CR-2");
}

#[test]
fn cr_7_cobrowse_sessions_once_each_priced_by_the_first_established_event() {
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar", "settings": {"cobrowse_credits": "2"},
        "changes": [{"at": "2025-06-10T12:00:00Z", "set": {"cobrowse_credits": "0"}}]});
    let cb = |id: &str, at: &str, session: &str, established: bool| json!({"id": id, "at": at, "type": "cobrowse", "consumer": "c1", "conversation": "A", "session": session, "established": established});
    // s1's first established event is at 10:00 (2 credits) though it arrives last.
    check(scenario(
        "CR-7",
        t,
        vec![
            cb("e1", "2025-06-10T13:00:00Z", "s1", true),
            cb("e2", "2025-06-10T13:05:00Z", "s1", true),
            cb("e3", "2025-06-10T10:00:00Z", "s1", true),
            cb("e4", "2025-06-10T10:00:00Z", "s2", false),
            cb("e5", "2025-06-10T14:00:00Z", "s3", true),
        ],
        json!({"interactions": [], "credits": "2"}),
    ));
}

#[test]
fn cr_8_functions_rounding_settings() {
    let f =
        |id: &str, at: &str, count: i64| json!({"id": id, "at": at, "type": "function_invocations", "count": count});
    for (rounding, credits) in [("pro_rata", "0.4"), ("ceil_block", "1"), ("floor_block", "0")] {
        check(scenario(
            "CR-8",
            tenant("UTC", "dar", json!({"functions_rounding": rounding})),
            vec![f("f1", "2025-06-01T00:00:00Z", 150_050), f("f2", "2025-06-30T23:59:59Z", 50)],
            json!({"credits": credits}),
        ));
    }
}

#[test]
fn cr_9_pass_through_per_currency_even_without_a_dar() {
    let priced = |id: &str, sender: &str, amount: &str, currency: &str| {
        with(
            msg(id, "2025-06-10T10:00:00Z", sender, "c1", "A"),
            json!({"provider_price": {"amount": amount, "currency": currency}}),
        )
    };
    check(scenario(
        "CR-9",
        tenant("UTC", "dar", json!({})),
        vec![
            with(priced("p1", "proactive", "0.0079", "USD"), json!({"conversation": null})),
            priced("s1", "system", "0.01", "USD"),
            priced("w1", "agent", "0.0468", "EUR"),
            priced("z1", "agent", "0", "USD"),
        ],
        json!({"pass_through": {"USD": "0.020585", "EUR": "0.05382"}, "credits": "1"}),
    ));
}

// ---- Plans ----

#[test]
fn pl_1_overage_rounding_modes_and_platform_users() {
    for (rounding, overage) in [("ceil_block", "78"), ("floor_block", "39"), ("pro_rata", "58.5")] {
        let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar", "settings": {"overage_rounding": rounding},
            "plan": {"kind": "starter"}});
        check(scenario(
            "PL-1",
            t,
            vec![
                json!({"id": "m{n}", "at": "2025-06-10T12:00:00Z", "type": "message", "sender": "agent", "consumer": "c{n}",
                        "conversation": "A", "channel": "web", "sender_id": "agent-{n}", "repeat": 2150}),
            ],
            json!({"statements": [{"period": "2025-06", "dars": 2150, "overage": {"USD": overage},
                                   "platform_users_over_limit": true}]}),
        ));
    }
}

#[test]
fn pl_2_commitment_overage_after_commitment_and_top_ups_within_the_term() {
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar",
        "plan": {"kind": "commitment", "term_start": "2025-01-01", "term_end": "2025-06-30", "credits": "10",
                 "overage_price": {"USD": "1.10"},
                 "top_ups": [{"at": "2025-03-01T00:00:00Z", "credits": "2"}, {"at": "2025-08-01T00:00:00Z", "credits": "100"}]}});
    check(scenario(
        "PL-2",
        t,
        vec![
            json!({"id": "m{n}", "at": "2025-02-10T12:00:00Z", "type": "message", "sender": "consumer", "consumer": "c{n}",
                   "conversation": "A", "channel": "web", "repeat": 15}),
            // Outside the term: not in its statement.
            msg("x1", "2025-07-01T12:00:00Z", "consumer", "late", "A"),
            // Functions of June belong to the term containing June 1st.
            json!({"id": "f1", "at": "2025-06-30T23:00:00Z", "type": "function_invocations", "count": 150_250}),
        ],
        json!({"statements": [{"period": "2025-01-01/2025-06-30", "credits": "16", "overage_credits": "4",
                               "expired_credits": "0", "overage": {"USD": "4.40"}}]}),
    ));
}

#[test]
fn pl_3_commitment_alerts_count_every_credit_line_against_the_commitment() {
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar", "settings": {"generative_ai": true},
        "plan": {"kind": "commitment", "term_start": "2025-01-01", "term_end": "2025-12-31", "credits": "10",
                 "top_ups": [{"at": "2025-01-01T00:00:00Z", "credits": "100"}], "alerts": ["0.5", "1.0", "2.0"]}});
    check(scenario(
        "PL-3",
        t,
        vec![
            json!({"id": "m{n}", "at": "2025-02-10T12:00:00Z", "type": "message", "sender": "consumer", "consumer": "c{n}",
                    "conversation": "A", "channel": "web", "repeat": 7}),
        ],
        json!({"credits": "10.5", "alerts": [{"period": "2025-01-01/2025-12-31", "threshold": "0.5"},
                                             {"period": "2025-01-01/2025-12-31", "threshold": "1.0"}]}),
    ));
}

#[test]
fn pl_4_traffic_over_the_plan_is_never_refused() {
    check(scenario(
        "PL-4",
        json!({"id": "acme", "time_zone": "UTC", "meter": "dar", "plan": {"kind": "starter", "included": 1}}),
        vec![
            json!({"id": "m{n}", "at": "2025-06-10T12:00:00Z", "type": "message", "sender": "consumer", "consumer": "c{n}",
                    "conversation": "A", "channel": "web", "repeat": 50}),
        ],
        json!({"rejected": [], "interaction_count": 50}),
    ));
}

// ---- Events in time ----

#[test]
fn t_1_period_of_the_event_time_never_of_arrival() {
    check(scenario(
        "T-1",
        tenant("UTC", "dar", json!({})),
        vec![
            msg("m2", "2025-06-12T10:00:00Z", "consumer", "c1", "A"),
            msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"),
        ],
        json!({"interactions": [day("c1", "2025-06-10"), day("c1", "2025-06-12")]}),
    ));
}

#[test]
fn t_2_retry_returns_the_original_outcome_and_changes_nothing() {
    let engine = engine_with(tenant("UTC", "dar", json!({})));
    let mut records: Vec<Record> = Vec::new();
    let first =
        engine.ingest(raw(msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A")), None, &mut records).unwrap();
    assert_eq!(first.disposition, Disposition::NewInteraction);
    let emitted = records.len();
    // The same instant spelled with another offset is the same payload.
    let retry =
        engine.ingest(raw(msg("m1", "2025-06-10T12:00:00+02:00", "consumer", "c1", "A")), None, &mut records).unwrap();
    assert!(retry.retry);
    assert_eq!(retry.disposition, Disposition::NewInteraction);
    assert_eq!(retry.interactions, first.interactions);
    assert_eq!(records.len(), emitted, "a retry emits nothing");
    // A repeat message, then its retry: the retry still names the interaction.
    let repeat = engine.ingest(raw(msg("m2", "2025-06-10T11:00:00Z", "agent", "c1", "A")), None, &mut records).unwrap();
    let repeat_retry =
        engine.ingest(raw(msg("m2", "2025-06-10T11:00:00Z", "agent", "c1", "A")), None, &mut records).unwrap();
    assert_eq!(repeat.counted_in, vec![first.interactions[0].id]);
    assert_eq!(repeat_retry.counted_in, repeat.counted_in);
    assert!(repeat_retry.retry);
    // A different payload under the same id is a conflict, and the first stands.
    let conflict =
        engine.ingest(raw(msg("m1", "2025-06-11T10:00:00Z", "consumer", "c1", "A")), None, &mut records).unwrap_err();
    assert_eq!(conflict.code, Code::AlreadyExists);
    assert_eq!(engine.usage("acme", None, None).unwrap().interactions, 1);
}

#[test]
fn t_2_a_refused_event_does_not_reserve_its_id() {
    let engine = engine_with(tenant("UTC", "dar", json!({})));
    let bad =
        engine.ingest(raw(msg("m1", "2025-06-10T10:00:00", "consumer", "c1", "A")), None, &mut Vec::new()).unwrap_err();
    assert_eq!(bad.code, Code::InvalidArgument);
    let now = Some("2025-06-10T10:00:00Z".parse().unwrap());
    let future =
        engine.ingest(raw(msg("m1", "2025-06-10T11:00:00Z", "consumer", "c1", "A")), now, &mut Vec::new()).unwrap_err();
    assert_eq!(future.code, Code::OutOfRange);
    let ok =
        engine.ingest(raw(msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A")), now, &mut Vec::new()).unwrap();
    assert_eq!(ok.disposition, Disposition::NewInteraction);
}

#[test]
fn t_3_lateness_horizon_boundary_and_dead_letters() {
    let engine = engine_with(tenant("UTC", "dar", json!({"lateness_horizon": "P2D"})));
    let now = Some("2025-06-13T00:00:00Z".parse().unwrap());
    let mut records = Vec::new();
    // 2025-06-10 ends 06-11T00:00Z; + 2 days = 06-13T00:00Z = now: still accepted.
    engine.ingest(raw(msg("m1", "2025-06-10T00:00:00Z", "consumer", "c1", "A")), now, &mut records).unwrap();
    let late =
        engine.ingest(raw(msg("m0", "2025-06-09T23:59:59Z", "consumer", "c1", "A")), now, &mut records).unwrap_err();
    assert_eq!(late.code, Code::FailedPrecondition);
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.body, daybook::rating::RecordBody::DeadLetter(d) if d.event.event_id == "m0"))
    );
    // Functions are judged by their local month.
    let f = json!({"id": "f1", "at": "2025-05-01T00:00:00Z", "type": "function_invocations", "count": 5});
    let month_late = Some("2025-06-03T00:00:01Z".parse().unwrap());
    assert_eq!(engine.ingest(raw(f.clone()), month_late, &mut records).unwrap_err().code, Code::FailedPrecondition);
    assert!(engine.ingest(raw(f), Some("2025-06-03T00:00:00Z".parse().unwrap()), &mut records).is_ok());
}

#[test]
fn t_3_closed_periods_are_pruned_and_every_total_stays() {
    // State of periods closed past the lateness horizon is pruned (ARCHITECTURE.md,
    // "Pruning"); only its contribution to usage and statements is kept.
    let engine = engine_with(json!({"id": "acme", "time_zone": "America/New_York", "meter": "dar",
        "settings": {"lateness_horizon": "P2D", "generative_ai": true},
        "plan": {"kind": "starter", "included": 1, "alerts": ["1.0"]}}));
    let june = [
        with(
            msg("m1", "2025-06-01T12:00:00Z", "consumer", "c1", "A"),
            json!({"provider_price": {"amount": "0.05", "currency": "USD"}}),
        ),
        with(msg("m2", "2025-06-01T13:00:00Z", "agent", "c1", "A"), json!({"sender_id": "agent-7"})),
        msg("m3", "2025-06-20T12:00:00Z", "consumer", "c2", "B"),
        json!({"id": "cb", "at": "2025-06-20T12:30:00Z", "type": "cobrowse", "consumer": "c2", "conversation": "B",
               "session": "s1", "established": true}),
        json!({"id": "fn", "at": "2025-06-21T00:00:00Z", "type": "function_invocations", "count": 70000}),
    ];
    for e in &june {
        engine.ingest(raw(e.clone()), None, &mut Vec::new()).unwrap();
    }
    let august = msg("m4", "2025-08-11T12:00:00Z", "consumer", "c3", "C");
    engine.ingest(raw(august), None, &mut Vec::new()).unwrap();
    let usage = engine.usage("acme", None, None).unwrap();
    let statements = engine.statements("acme").unwrap();
    assert_eq!(statements[0].platform_users, 1);

    // 2025-08-15 minus the horizon and a day: everything of June is closed.
    let now = "2025-08-15T00:00:00Z".parse().unwrap();
    let pruned = engine.close_periods(now);
    assert_eq!((pruned.tenants, pruned.interactions, pruned.events), (1, 2, 5));
    assert_eq!(engine.hot_interactions(), 1, "August stays hot");
    assert_eq!(engine.usage("acme", None, None).unwrap(), usage);
    assert_eq!(engine.statements("acme").unwrap(), statements);
    engine.rebuild_ledgers();
    assert_eq!(engine.usage("acme", None, None).unwrap(), usage, "rebuilt from state and what pruning kept");
    assert_eq!(engine.statements("acme").unwrap(), statements);
    assert_eq!(engine.close_periods(now), Default::default(), "nothing more to close the same day");

    // A closed period stays closed, even once the horizon is raised: its state is gone,
    // and a late event could otherwise be counted a second time.
    let mut spec = engine.tenant("acme").unwrap().spec.clone();
    spec.initial.lateness_horizon = Some(chrono::TimeDelta::days(365));
    engine.put_tenant(spec).unwrap();
    let mut records = Vec::new();
    let late = engine.ingest(raw(msg("m5", "2025-06-01T14:00:00Z", "consumer", "c9", "A")), Some(now), &mut records);
    let refusal = late.unwrap_err();
    assert_eq!((refusal.code, refusal.rule), (Code::FailedPrecondition, "T-3"));
    assert!(refusal.reason.contains("closed"), "{}", refusal.reason);
    assert_eq!(records.len(), 1, "kept as a dead letter");
    // An id forgotten with its period: a retry that late is refused as too late.
    let retry = engine.ingest(raw(june[2].clone()), Some(now), &mut Vec::new()).unwrap_err();
    assert_eq!(retry.code, Code::FailedPrecondition);
    // Open periods are untouched by the raise: August is 4 days old.
    assert!(
        engine
            .ingest(raw(msg("m6", "2025-08-11T13:00:00Z", "consumer", "c4", "C")), Some(now), &mut Vec::new())
            .is_ok()
    );

    // A snapshot carries what pruning kept and where periods are closed.
    let mut bytes = Vec::new();
    let mut writer = daybook::rating::snapshot::Writer::new(&mut bytes);
    engine.write_state(&mut writer).unwrap();
    writer.finish().unwrap();
    let restored = Engine::new(EngineConfig::default());
    restored.put_tenant(engine.tenant("acme").unwrap().spec.clone()).unwrap();
    restored.read_state(daybook::rating::snapshot::Reader::sized(bytes.as_slice(), bytes.len() as u64)).unwrap();
    assert_eq!(restored.usage("acme", None, None), engine.usage("acme", None, None));
    assert_eq!(restored.statements("acme"), engine.statements("acme"));
    let late =
        restored.ingest(raw(msg("m5", "2025-06-01T14:00:00Z", "consumer", "c9", "A")), Some(now), &mut Vec::new());
    assert_eq!(late.unwrap_err().code, Code::FailedPrecondition);
}

#[test]
fn dar_5_an_outbound_day_past_its_lateness_horizon_is_not_charged_by_a_late_reply() {
    // ARCHITECTURE.md, decision 4: a period past its horizon is final, whatever arrives.
    let engine = engine_with(tenant(
        "UTC",
        "dar",
        json!({"lateness_horizon": "P2D",
        "proactive_outbound_day": "retroactive", "proactive_reply_window": "P1D"}),
    ));
    let outbound = json!({"id": "o1", "at": "2025-06-10T23:00:00Z", "type": "message", "sender": "proactive",
        "consumer": "c1", "conversation": "A", "channel": "sms", "integration": "sms-1"});
    let sent = "2025-06-10T23:00:00Z".parse().unwrap();
    let first = engine.ingest(raw(outbound), Some(sent), &mut Vec::new()).unwrap();
    assert_eq!(first.disposition, Disposition::NotBillable(NotBillableReason::ProactiveAwaitingReply));
    // The reply (June 11) is within its own horizon; June 10 ended more than 2 days ago.
    let late = "2025-06-13T12:00:00Z".parse().unwrap();
    let reply =
        engine.ingest(raw(msg("r1", "2025-06-11T01:00:00Z", "consumer", "c1", "A")), Some(late), &mut Vec::new());
    let reply = reply.unwrap();
    assert_eq!(reply.interactions.len(), 1, "{reply:?}");
    assert_eq!(reply.interactions[0].period.label, "2025-06-11");
    assert_eq!(engine.usage("acme", None, None).unwrap().interactions, 1);
}

#[test]
fn pl_3_replay_in_another_order_restores_alerts_as_they_were_raised() {
    // Events of different consumers may reach the journal in another order than they
    // were rated; replay restores which event raised an alert from its journaled records.
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar",
        "plan": {"kind": "starter", "included": 2, "alerts": ["1.0"]}});
    let (e1, e2) = (
        msg("e1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"),
        msg("e2", "2025-06-10T11:00:00Z", "consumer", "c2", "B"),
    );
    let live = engine_with(t.clone());
    live.ingest(raw(e1.clone()), None, &mut Vec::new()).unwrap();
    let mut records = Vec::new();
    live.ingest(raw(e2.clone()), None, &mut records).unwrap();
    let raised: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.body {
            daybook::rating::RecordBody::Alert(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].event_id, "e2");

    let replayed = engine_with(t.clone());
    replayed.replay(raw(e2.clone()), None, raised, &mut Vec::new()).unwrap();
    replayed.replay(raw(e1.clone()), None, Vec::new(), &mut Vec::new()).unwrap();
    assert_eq!(replayed.statements("acme"), live.statements("acme"));

    // Judged again in that order, e1 would cross the threshold instead.
    let rejudged = engine_with(t);
    rejudged.ingest(raw(e2), None, &mut Vec::new()).unwrap();
    rejudged.ingest(raw(e1), None, &mut Vec::new()).unwrap();
    assert_eq!(rejudged.statements("acme").unwrap()[0].alerts[0].event_id, "e1");
}

#[test]
fn t_2_replay_rates_silently_to_the_same_state_and_answers() {
    // Replay discards records (they were emitted when the events were first rated), so it
    // builds none; what it rebuilds must still answer retries as the live engine does.
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar",
        "settings": {"generative_ai": true}, "plan": {"kind": "starter", "included": 1, "alerts": ["1.0"]}});
    let priced = json!({"provider_price": {"amount": "0.05", "currency": "USD"}});
    let events = [
        with(msg("e1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"), priced.clone()),
        msg("e2", "2025-06-10T10:05:00Z", "agent", "c1", "A"),
        with(msg("e3", "2025-06-10T11:00:00Z", "consumer", "c2", "B"), priced),
    ];
    let live = engine_with(t.clone());
    let mut live_records = Vec::new();
    for e in &events {
        live.ingest(raw(e.clone()), None, &mut live_records).unwrap();
    }
    assert!(live_records.len() >= 3, "{live_records:?}");
    let replayed = engine_with(t);
    let mut replay_records = Vec::new();
    for e in &events {
        replayed.replay(raw(e.clone()), None, Vec::new(), &mut replay_records).unwrap();
    }
    assert!(replay_records.is_empty(), "{replay_records:?}");
    assert_eq!(replayed.usage("acme", None, None), live.usage("acme", None, None));
    for e in &events {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let again = replayed.ingest(raw(e.clone()), None, &mut a).unwrap();
        assert_eq!(again, live.ingest(raw(e.clone()), None, &mut b).unwrap());
        assert!(again.retry && a.is_empty() && b.is_empty());
    }
}

#[test]
fn t_4_clock_skew_boundary() {
    check(json!({"name": "T-4", "rules": [], "now": "2025-06-10T12:00:00Z",
        "tenant": tenant("UTC", "dar", json!({"max_clock_skew": "PT1M"})),
        "events": [msg("m1", "2025-06-10T12:01:00Z", "consumer", "c1", "A"), msg("m2", "2025-06-10T12:01:00.001Z", "consumer", "c2", "A")],
        "expect": {"interactions": [day("c1", "2025-06-10")], "rejected": [{"id": "m2", "code": "OUT_OF_RANGE"}]}}));
}

#[test]
fn t_5_invalid_changes_are_refused_by_name_and_change_nothing() {
    let t = json!({"id": "acme", "time_zone": "UTC", "meter": "dar",
        "changes": [{"id": "z", "at": "2025-06-10T12:00:00Z", "set": {"time_zone": "Mars/Olympus", "generative_ai": true}},
                    {"id": "u", "at": "2025-06-10T12:00:00Z", "set": {"colour": "red"}},
                    {"id": "m", "at": "2025-06-10T12:00:00Z", "set": {"meter": "mau"}},
                    {"id": "ok", "at": "2025-06-10T12:00:00Z", "set": {"intent_listening": true}}]});
    check(scenario(
        "T-5",
        t,
        vec![msg("m1", "2025-06-10T13:00:00Z", "consumer", "c1", "A")],
        json!({"credits": "1.2", "rejected": [{"id": "z", "code": "INVALID_ARGUMENT"}, {"id": "u", "code": "INVALID_ARGUMENT"},
                                               {"id": "m", "code": "INVALID_ARGUMENT"}]}),
    ));
}

#[test]
fn t_6_invalid_input_of_every_class_is_refused_and_reserves_nothing() {
    let base = msg("e", "2025-06-10T10:00:00Z", "consumer", "c1", "A");
    let cases = [
        with(base.clone(), json!({"id": "no-consumer", "consumer": ""})),
        with(base.clone(), json!({"id": "no-conversation", "conversation": null})),
        with(base.clone(), json!({"id": "naive", "at": "2025-06-10T10:00:00"})),
        with(base.clone(), json!({"id": "no-date", "at": "2025-02-29T10:00:00Z"})),
        with(base.clone(), json!({"id": "typing", "type": "typing_indicator"})),
        with(base.clone(), json!({"id": "receipt", "type": "read_receipt"})),
        with(base.clone(), json!({"id": "sender", "sender": "customer"})),
        with(base.clone(), json!({"id": "channel", "channel": "pigeon"})),
        with(base.clone(), json!({"id": "price", "provider_price": {"amount": "-0.01", "currency": "USD"}})),
        with(base.clone(), json!({"id": "currency", "provider_price": {"amount": "0.01", "currency": "usd"}})),
        json!({"id": "count", "at": "2025-06-10T10:00:00Z", "type": "function_invocations", "count": -1}),
    ];
    let ids: Vec<Value> = cases.iter().map(|c| json!({"id": c["id"], "code": "INVALID_ARGUMENT"})).collect();
    check(scenario(
        "T-6",
        tenant("UTC", "dar", json!({})),
        cases.to_vec(),
        json!({"rejected": ids, "credits": "0", "interactions": []}),
    ));
    // On the cycle meter the integration is part of the key.
    check(scenario(
        "T-6 cycle",
        tenant("UTC", "cycle", json!({})),
        vec![with(base, json!({"id": "no-integration", "integration": null}))],
        json!({"rejected": [{"id": "no-integration", "code": "INVALID_ARGUMENT"}]}),
    ));
}
