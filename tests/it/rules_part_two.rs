//! RULEBOOK part two, rule by rule: several meters (MS), per-event meters (EV), outcome
//! meters (OUT) and corrections (COR). Each test is a scenario run through the engine, or
//! a direct engine call where the outcome or the records are what the rule is about.
//! Test names start with the rule id.

use daybook::rating::outcome::{Code, Disposition, NotBillableReason};
use daybook::rating::{Record, RecordBody};
use daybook::tenants::tenant_from_value;
use serde_json::{Value, json};

use super::rules::{check, engine_with, msg, raw, scenario, with};

fn metered(zone: &str, meters: Value) -> Value {
    json!({"id": "acme", "time_zone": zone, "meters": meters})
}

fn outcome(id: &str, at: &str, consumer: &str, conversation: &str, kind: &str) -> Value {
    json!({"id": id, "at": at, "type": "outcome", "consumer": consumer, "conversation": conversation,
           "outcome_type": kind})
}

fn revoke(id: &str, at: &str, conversation: &str, kind: &str) -> Value {
    with(outcome(id, at, "c1", conversation, kind), json!({"revoked": true}))
}

fn void(id: &str, at: &str, from: &str, to: &str, extra: Value) -> Value {
    with(json!({"id": id, "at": at, "type": "void", "from": from, "to": to, "reason": "test traffic"}), extra)
}

fn fin(prices: Value) -> Value {
    json!({"id": "fin", "preset": "outcome", "prices": prices})
}

// ---- MS ----

#[test]
fn ms_1_a_single_meter_is_a_meter_named_by_its_preset_with_the_same_ids() {
    let single = engine_with(json!({"id": "acme", "time_zone": "UTC", "meter": "dar"}));
    let listed = engine_with(metered("UTC", json!([{"id": "dar", "preset": "dar"}])));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let e = msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A");
    single.ingest(raw(e.clone()), None, &mut a).unwrap();
    listed.ingest(raw(e), None, &mut b).unwrap();
    let ids = |r: &[Record]| r.iter().map(Record::id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "a meter listed as `dar` names its records as `meter = \"dar\"` does");
}

#[test]
fn ms_1_ids_presets_and_the_number_of_meters_are_checked() {
    let refused = |meters: Value| {
        tenant_from_value(&metered("UTC", meters))
            .map(|(spec, _)| daybook::rating::Tenant::compile(spec, 0).map(|_| ()))
    };
    let nine: Vec<Value> = (0..9).map(|i| json!({"id": format!("m{i}"), "preset": "dar"})).collect();
    assert!(refused(json!(nine)).is_err() || refused(json!(nine)).unwrap().is_err(), "nine meters");
    for bad in [
        json!([{"id": "Web", "preset": "dar"}]),
        json!([{"id": "", "preset": "dar"}]),
        json!([{"id": "a-very-long-meter-id-of-33-chars-x", "preset": "dar"}]),
        json!([{"id": "w", "preset": "hourly"}]),
        json!([{"id": "w", "preset": "dar"}, {"id": "w", "preset": "mau"}]),
        json!([]),
    ] {
        let result = refused(bad.clone());
        assert!(result.is_err() || result.unwrap().is_err(), "{bad}");
    }
}

#[test]
fn ms_2_filters_see_integrations_and_event_types_and_fields_an_event_lacks_are_not_seen() {
    check(scenario(
        "MS-2",
        metered(
            "UTC",
            json!([
                {"id": "wa-1", "preset": "dar", "filter": {"integrations": ["wa-1"]}},
                {"id": "agents", "preset": "mau", "filter": {"sender_roles": ["agent"]}},
                {"id": "opened", "preset": "event", "filter": {"event_types": ["conversation_opened"]}}
            ]),
        ),
        vec![
            with(msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"), json!({"integration": "wa-1"})),
            msg("m2", "2025-06-10T10:01:00Z", "consumer", "c2", "B"),
            with(msg("m3", "2025-06-10T10:02:00Z", "agent", "c2", "B"), json!({"sender_id": "a1"})),
            // A conversation opened has no sender role: the `agents` meter does not see it.
            json!({"id": "o1", "at": "2025-06-10T11:00:00Z", "type": "conversation_opened", "consumer": "c3",
                   "conversation": "C", "channel": "web", "integration": "web-1"}),
        ],
        json!({
            "interactions": [
                {"meter": "wa-1", "consumer": "c1", "period": "2025-06-10"},
                {"meter": "agents", "consumer": "c2", "period": "2025-06"}
            ],
            "meters": {"wa-1": {"interactions": 1}, "agents": {"interactions": 1}, "opened": {"units": 1, "credits": "1"}},
            "credits": "3"
        }),
    ));
    let empty = tenant_from_value(&metered("UTC", json!([{"id": "w", "preset": "dar", "filter": {"channels": []}}])));
    assert_eq!(empty.unwrap_err().setting, "meters");
}

#[test]
fn ms_3_one_event_starts_interactions_in_several_meters_and_a_retry_returns_all_of_it() {
    let engine = engine_with(metered(
        "UTC",
        json!([{"id": "days", "preset": "dar"}, {"id": "months", "preset": "mau"}, {"id": "msgs", "preset": "event"}]),
    ));
    let e = msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A");
    let first = engine.ingest(raw(e.clone()), None, &mut Vec::new()).unwrap();
    assert_eq!(first.disposition, Disposition::NewInteraction);
    let meters: Vec<&str> = first.interactions.iter().map(|i| &*i.meter_id).collect();
    assert_eq!(meters, ["days", "months"]);
    assert_eq!(first.lines.iter().map(|l| l.credits).sum::<rust_decimal::Decimal>(), 3.into());
    let retry = engine.ingest(raw(e), None, &mut Vec::new()).unwrap();
    assert!(retry.retry);
    assert_eq!(retry.interactions, first.interactions);
    assert_eq!(retry.lines, first.lines);
    // Counted in both: already counted, even though the event meter charges it.
    let again = engine.ingest(raw(msg("m2", "2025-06-10T11:00:00Z", "consumer", "c1", "A")), None, &mut Vec::new());
    assert_eq!(again.unwrap().disposition, Disposition::AlreadyCounted);
}

#[test]
fn ms_4_tenant_charges_are_once_per_event_and_surcharges_only_on_interaction_meters() {
    check(scenario(
        "MS-4",
        json!({"id": "acme", "time_zone": "UTC", "settings": {"intent_listening": true},
               "meters": [{"id": "a", "preset": "dar"}, {"id": "b", "preset": "dar"}, {"id": "n", "preset": "event"}]}),
        vec![
            with(
                msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"),
                json!({"provider_price": {"amount": "0.01", "currency": "USD"}}),
            ),
            json!({"id": "cb", "at": "2025-06-10T10:05:00Z", "type": "cobrowse", "consumer": "c1",
                   "conversation": "A", "session": "s1", "established": true}),
            json!({"id": "f", "at": "2025-06-10T12:00:00Z", "type": "function_invocations", "count": 150250}),
        ],
        json!({"meters": {"a": {"credits": "1.2"}, "b": {"credits": "1.2"}, "n": {"units": 1, "credits": "1"}},
               "credits": "5.4", "pass_through": {"USD": "0.0115"}}),
    ));
}

#[test]
fn ms_5_statements_count_the_plan_meter_and_a_plan_naming_another_meter_is_refused() {
    let tenant = json!({"id": "acme", "time_zone": "UTC",
        "meters": [{"id": "months", "preset": "mau"}, {"id": "days", "preset": "dar"}],
        "plan": {"kind": "starter", "meter": "days", "included": 1}});
    check(scenario(
        "MS-5",
        tenant,
        vec![
            msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"),
            msg("m2", "2025-06-11T10:00:00Z", "consumer", "c1", "A"),
        ],
        json!({"statements": [{"period": "2025-06", "dars": 2, "credits": "3", "overage": {"USD": "39"}}]}),
    ));
    // Without a Starter plan the first dar, cycle or mau meter is counted.
    check(scenario(
        "MS-5 default",
        metered(
            "UTC",
            json!([{"id": "n", "preset": "event"}, {"id": "months", "preset": "mau"}, {"id": "days", "preset": "dar"}]),
        ),
        vec![
            msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"),
            msg("m2", "2025-06-11T10:00:00Z", "consumer", "c1", "A"),
        ],
        json!({"statements": [{"period": "2025-06", "dars": 1}]}),
    ));
    let compile = |t: Value| daybook::rating::Tenant::compile(tenant_from_value(&t).unwrap().0, 0).map(|_| ());
    let names_outcome = json!({"id": "acme", "time_zone": "UTC", "meters": [{"id": "days", "preset": "dar"}, fin(json!({"r": "1"}))],
        "plan": {"kind": "starter", "meter": "fin"}});
    assert!(compile(names_outcome).is_err());
    let no_interaction_meter = json!({"id": "acme", "time_zone": "UTC", "meters": [fin(json!({"r": "1"}))],
        "plan": {"kind": "starter"}});
    assert!(compile(no_interaction_meter).is_err());
}

#[test]
fn ms_6_retired_meters_stop_at_their_next_period_and_bad_changes_are_refused_one_by_one() {
    let tenant = json!({"id": "acme", "time_zone": "Europe/Berlin",
    "meters": [{"id": "days", "preset": "dar"}, {"id": "months", "preset": "mau"}],
    "changes": [
        {"id": "retire-days", "at": "2025-06-10T12:00:00+02:00", "set": {"retire_meter": "days"}},
        {"id": "reuse", "at": "2025-06-11T00:00:00+02:00", "set": {"add_meter": {"id": "days", "preset": "dar"}}},
        {"id": "unknown", "at": "2025-06-11T00:00:00+02:00", "set": {"retire_meter": "weeks"}},
        {"id": "last", "at": "2025-06-12T00:00:00+02:00", "set": {"retire_meter": "months"}}
    ]});
    check(scenario(
        "MS-6",
        tenant,
        vec![
            msg("m1", "2025-06-10T23:59:59+02:00", "consumer", "c1", "A"),
            msg("m2", "2025-06-11T00:00:00+02:00", "consumer", "c2", "B"),
        ],
        json!({
            "interactions": [
                {"meter": "days", "consumer": "c1", "period": "2025-06-10"},
                {"meter": "months", "consumer": "c1", "period": "2025-06"},
                {"meter": "months", "consumer": "c2", "period": "2025-06"}
            ],
            "rejected": [{"id": "reuse", "code": "INVALID_ARGUMENT"}, {"id": "unknown", "code": "INVALID_ARGUMENT"},
                         {"id": "last", "code": "INVALID_ARGUMENT"}]
        }),
    ));
}

#[test]
fn ms_6_a_structural_change_switches_at_each_meters_own_next_period() {
    // relationship = conversation from 2025-06-10 12:00: the day meter switches on the
    // 11th, the month meter on July 1st.
    let tenant = json!({"id": "acme", "time_zone": "UTC",
        "meters": [{"id": "days", "preset": "dar"}, {"id": "months", "preset": "mau"}],
        "changes": [{"at": "2025-06-10T12:00:00Z", "set": {"relationship": "conversation"}}]});
    check(scenario(
        "MS-6 structural",
        tenant,
        vec![
            msg("m1", "2025-06-11T10:00:00Z", "consumer", "c1", "A"),
            msg("m2", "2025-06-11T11:00:00Z", "consumer", "c1", "B"),
        ],
        json!({"meters": {"days": {"interactions": 2}, "months": {"interactions": 1}}}),
    ));
}

// ---- EV ----

#[test]
fn ev_1_units_are_messages_opened_conversations_and_outcomes_not_system_messages_or_revocations() {
    check(scenario(
        "EV-1",
        metered("UTC", json!([{"id": "n", "preset": "event"}, fin(json!({"resolution": "1"}))])),
        vec![
            msg("m1", "2025-06-10T10:00:00Z", "system", "c1", "A"),
            msg("m2", "2025-06-10T10:01:00Z", "proactive", "c1", "A"),
            outcome("o1", "2025-06-10T10:02:00Z", "c1", "A", "resolution"),
            revoke("x1", "2025-06-10T10:03:00Z", "A", "resolution"),
        ],
        json!({"meters": {"n": {"units": 2, "credits": "2"}, "fin": {"interactions": 0, "credits": "0"}}, "credits": "2"}),
    ));
}

#[test]
fn ev_2_allowance_then_floor_blocks_per_local_month() {
    let tenant = metered(
        "America/New_York",
        json!([{"id": "n", "preset": "event", "allowance": 1, "units_per_credit": 2, "rounding": "floor_block"}]),
    );
    let mut events: Vec<Value> = (1..=5)
        .map(|i| msg(&format!("m{i}"), &format!("2025-06-{:02}T23:30:00-04:00", 25 + i), "consumer", "c1", "A"))
        .collect();
    events.push(msg("m6", "2025-07-01T00:30:00-04:00", "consumer", "c1", "A"));
    // June 26..30: 5 units, 1 free, 4 -> 2 credits; July 1st: 1 unit, free.
    check(scenario(
        "EV-2",
        tenant,
        events,
        json!({"meters": {"n": {"units": 6, "credits": "2"}},
               "statements": [{"period": "2025-06", "credits": "2"}, {"period": "2025-07", "credits": "0"}]}),
    ));
}

// ---- OUT ----

#[test]
fn out_1_equal_instants_bill_the_smaller_event_id_and_the_billed_consumer() {
    check(scenario(
        "OUT-1",
        metered("UTC", json!([fin(json!({"resolution": "0.5"}))])),
        vec![
            outcome("b", "2025-06-10T10:00:00Z", "c2", "A", "resolution"),
            outcome("a", "2025-06-10T10:00:00Z", "c1", "A", "resolution"),
            outcome("c", "2025-06-10T09:59:59.999999999Z", "c3", "B", "resolution"),
        ],
        json!({"interactions": [
                {"meter": "fin", "consumer": "c1", "conversation": "A", "outcome_type": "resolution", "period": "2025-06"},
                {"meter": "fin", "consumer": "c3", "conversation": "B", "outcome_type": "resolution", "period": "2025-06"}],
               "credits": "1"}),
    ));
}

#[test]
fn out_2_a_type_is_refused_only_when_a_seeing_outcome_meter_exists_and_none_prices_it() {
    check(scenario(
        "OUT-2",
        metered(
            "UTC",
            json!([{"id": "n", "preset": "event"},
                   {"id": "fin", "preset": "outcome", "prices": {"resolution": "1"}, "filter": {"event_types": ["message"]}}]),
        ),
        // No outcome meter sees outcomes here: accepted, and the event meter counts it.
        vec![outcome("o1", "2025-06-10T10:00:00Z", "c1", "A", "anything")],
        json!({"rejected": [], "meters": {"n": {"units": 1}}}),
    ));
    let engine = engine_with(metered("UTC", json!([fin(json!({"resolution": "1"}))])));
    let refusal =
        engine.ingest(raw(outcome("o1", "2025-06-10T10:00:00Z", "c1", "A", "handoff")), None, &mut Vec::new());
    let refusal = refusal.unwrap_err();
    assert_eq!(refusal.code, Code::InvalidArgument);
    assert_eq!(refusal.violations[0].field, "outcome.outcome_type");
}

#[test]
fn out_3_a_revocation_reaches_back_its_window_inclusively_and_never_into_a_closed_month() {
    let tenant =
        metered("UTC", json!([{"id": "fin", "preset": "outcome", "prices": {"r": "1"}, "revocation_window": "PT1H"}]));
    check(scenario(
        "OUT-3",
        tenant.clone(),
        vec![
            outcome("o1", "2025-06-10T09:00:00Z", "c1", "A", "r"),
            revoke("x1", "2025-06-10T10:00:00Z", "A", "r"),
            outcome("o2", "2025-06-10T08:59:59Z", "c1", "B", "r"),
            revoke("x2", "2025-06-10T10:00:00Z", "B", "r"),
        ],
        json!({"interactions": [
                {"meter": "fin", "consumer": "c1", "conversation": "B", "outcome_type": "r", "period": "2025-06"}],
               "credits": "1"}),
    ));
    // A month past its horizon is final: May's outcome stands.
    check(
        json!({"name": "OUT-3 final", "rules": [], "now": "2025-07-10T00:00:00Z", "tenant": with(tenant, json!({"settings": {"lateness_horizon": "P5D"}})),
        "events": [outcome("o1", "2025-07-09T23:00:00Z", "c1", "A", "r"), revoke("x1", "2025-07-09T23:30:00Z", "A", "r")],
        "expect": {"credits": "0"}}),
    );
}

#[test]
fn out_4_a_moved_billing_is_withdrawn_by_a_reversal_naming_its_line() {
    let engine = engine_with(metered("Europe/London", json!([fin(json!({"resolution": "2"}))])));
    let later =
        engine.ingest(raw(outcome("o2", "2025-07-01T00:30:00+01:00", "c1", "A", "resolution")), None, &mut Vec::new());
    let billed = later.unwrap().lines[0].clone();
    let mut records = Vec::new();
    let earlier = engine
        .ingest(raw(outcome("o1", "2025-06-30T22:00:00+01:00", "c9", "A", "resolution")), None, &mut records)
        .unwrap();
    assert_eq!(earlier.disposition, Disposition::NewInteraction);
    let reversal = earlier.lines.iter().find(|l| l.reverses.is_some()).expect("a reversal");
    assert_eq!(reversal.reverses, Some(billed.id));
    assert_eq!(reversal.credits, -billed.credits);
    assert_eq!(reversal.period, billed.period, "dated in the withdrawn line's period");
    assert_eq!(reversal.event_id, "o1");
    assert!(records.iter().any(|r| matches!(&r.body, RecordBody::Withdrawn(w) if w.interaction_id == billed.interaction_id.unwrap() && !w.voided)));
}

// ---- COR ----

#[test]
fn cor_1_a_void_selects_by_the_periods_first_date_and_by_fields_the_interaction_lists() {
    // A cycle that started before `from` is not selected; an outcome is selected by its
    // billed consumer; a dar interaction lists no outcome type.
    let tenant = json!({"id": "acme", "time_zone": "UTC", "settings": {"cycle_anchor_day": 15},
        "meters": [{"id": "conv", "preset": "cycle"}, {"id": "days", "preset": "dar"}, fin(json!({"resolution": "1"}))]});
    check(scenario(
        "COR-1",
        tenant,
        vec![
            msg("m1", "2025-06-20T10:00:00Z", "consumer", "c1", "A"),
            outcome("o1", "2025-06-20T10:05:00Z", "c1", "A", "resolution"),
            // The cycle (from the 15th) and the outcome (June, from the 1st) start before `from`.
            void("v1", "2025-06-25T00:00:00Z", "2025-06-16", "2025-06-30", json!({"consumer": "c1"})),
            // A dar interaction lists no outcome type.
            void(
                "v2",
                "2025-06-25T00:00:01Z",
                "2025-06-01",
                "2025-06-30",
                json!({"outcome_type": "resolution", "meter": "days"}),
            ),
            // An outcome lists its billed consumer.
            void("v3", "2025-06-25T00:00:02Z", "2025-06-01", "2025-06-01", json!({"consumer": "c1", "meter": "fin"})),
        ],
        json!({
            "interactions": [{"meter": "conv", "consumer": "c1", "integration": "web-1", "period": "2025-06-15"}],
            "voided": [{"meter": "days", "consumer": "c1", "period": "2025-06-20"},
                       {"meter": "fin", "consumer": "c1", "conversation": "A", "outcome_type": "resolution", "period": "2025-06"}],
            "credits": "1"
        }),
    ));
}

#[test]
fn cor_2_a_voided_interaction_gains_no_line_later_and_its_lines_are_withdrawn_once() {
    let tenant = json!({"id": "acme", "time_zone": "UTC", "meter": "dar",
        "changes": [{"at": "2025-06-10T12:00:00Z", "set": {"generative_ai": true}}]});
    let engine = engine_with(tenant);
    engine.ingest(raw(msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A")), None, &mut Vec::new()).unwrap();
    let voided = engine
        .ingest(raw(void("v1", "2025-06-11T00:00:00Z", "2025-06-10", "2025-06-10", json!({}))), None, &mut Vec::new())
        .unwrap();
    assert_eq!(voided.disposition, Disposition::NotBillable(NotBillableReason::Correction));
    assert_eq!(voided.lines.len(), 1);
    assert_eq!(voided.lines[0].credits, (-1).into());
    assert_eq!(voided.lines[0].event_id, "v1");
    // A later event with Generative AI on would add the uplift: not to a voided one.
    let later = engine.ingest(raw(msg("m2", "2025-06-10T13:00:00Z", "consumer", "c1", "A")), None, &mut Vec::new());
    assert!(later.unwrap().lines.is_empty());
    // A second void selecting it withdraws nothing more.
    let again = engine
        .ingest(raw(void("v2", "2025-06-11T00:00:01Z", "2025-06-01", "2025-06-30", json!({}))), None, &mut Vec::new())
        .unwrap();
    assert!(again.lines.is_empty());
    let usage = engine.usage("acme", None, None).unwrap();
    assert_eq!((usage.interactions, usage.credits()), (0, 0.into()));
}

#[test]
fn cor_3_a_void_leaves_tenant_charges_units_and_raised_alerts() {
    let tenant = json!({"id": "acme", "time_zone": "UTC",
        "meters": [{"id": "days", "preset": "dar"}, {"id": "n", "preset": "event"}],
        "plan": {"kind": "starter", "included": 1, "alerts": ["1.0"]}});
    check(scenario(
        "COR-3",
        tenant,
        vec![
            with(
                msg("m1", "2025-06-10T10:00:00Z", "consumer", "c1", "A"),
                json!({"provider_price": {"amount": "1", "currency": "USD"}}),
            ),
            json!({"id": "cb", "at": "2025-06-10T10:05:00Z", "type": "cobrowse", "consumer": "c1",
                   "conversation": "A", "session": "s1", "established": true}),
            void("v1", "2025-06-11T00:00:00Z", "2025-06-01", "2025-06-30", json!({"consumer": "c1"})),
        ],
        json!({"meters": {"days": {"interactions": 0, "credits": "0"}, "n": {"units": 1, "credits": "1"}},
               "credits": "2", "pass_through": {"USD": "1.15"},
               "alerts": [{"period": "2025-06", "threshold": "1.0"}],
               "statements": [{"period": "2025-06", "dars": 0}]}),
    ));
}

#[test]
fn cor_4_bad_voids_are_refused_by_field_and_a_void_is_idempotent() {
    let engine = engine_with(json!({"id": "acme", "time_zone": "UTC", "meter": "dar"}));
    let at = "2025-06-11T00:00:00Z";
    for (case, field) in [
        (with(void("a", at, "2025-06-01", "2025-06-30", json!({})), json!({"reason": ""})), "void.reason"),
        (void("b", at, "2025-06-30", "2025-06-01", json!({})), "void.to"),
        (void("c", at, "2025-01-01", "2026-03-01", json!({})), "void.to"),
        (void("d", at, "2025-6-1", "2025-06-30", json!({})), "void.from"),
        (void("e", at, "2025-06-01", "2025-06-30", json!({"consumer": ""})), "void.consumer_id"),
        (void("f", at, "2025-06-01", "2025-06-30", json!({"meter": "weeks"})), "void.meter"),
    ] {
        let refusal = engine.ingest(raw(case), None, &mut Vec::new()).unwrap_err();
        assert_eq!((refusal.code, refusal.violations[0].field.as_str()), (Code::InvalidArgument, field));
    }
    let v = void("v", at, "2025-06-01", "2025-06-30", json!({}));
    let first = engine.ingest(raw(v.clone()), None, &mut Vec::new()).unwrap();
    let retry = engine.ingest(raw(v.clone()), None, &mut Vec::new()).unwrap();
    assert!(retry.retry && retry.disposition == first.disposition);
    let conflict = engine.ingest(raw(with(v, json!({"reason": "other"}))), None, &mut Vec::new()).unwrap_err();
    assert_eq!(conflict.code, Code::AlreadyExists);
}

#[test]
fn cor_4_closed_books_are_not_reopened() {
    // June 1st closes (+P5D) before the void arrives on the 21st; June 20th is open.
    let engine =
        engine_with(json!({"id": "acme", "time_zone": "UTC", "meter": "dar", "settings": {"lateness_horizon": "P5D"}}));
    let at = |s: &str| daybook::rating::time::parse_instant(s).unwrap();
    let m1 = msg("m1", "2025-06-01T10:00:00Z", "consumer", "c1", "A");
    engine.ingest(raw(m1), Some(at("2025-06-01T10:00:00Z")), &mut Vec::new()).unwrap();
    let m2 = msg("m2", "2025-06-20T10:00:00Z", "consumer", "c1", "A");
    engine.ingest(raw(m2), Some(at("2025-06-20T10:00:00Z")), &mut Vec::new()).unwrap();
    let now = Some(at("2025-06-21T00:00:00Z"));
    let v1 = engine.ingest(
        raw(void("v1", "2025-06-20T23:00:00Z", "2025-06-01", "2025-06-30", json!({}))),
        now,
        &mut Vec::new(),
    );
    let withdrawn: Vec<String> = v1.unwrap().lines.iter().map(|l| l.period.label.clone()).collect();
    assert_eq!(withdrawn, ["2025-06-20"]);
    let mut records = Vec::new();
    let v2 = engine.ingest(
        raw(void("v2", "2025-06-20T23:00:00Z", "2025-05-01", "2025-05-31", json!({}))),
        now,
        &mut records,
    );
    let refusal = v2.unwrap_err();
    assert_eq!((refusal.code, refusal.rule), (Code::FailedPrecondition, "COR-4"));
    assert!(matches!(records[0].body, RecordBody::DeadLetter(_)), "kept as a dead letter");
    let usage = engine.usage("acme", None, None).unwrap();
    assert_eq!((usage.interactions, usage.credits()), (1, 1.into()));
}

#[test]
fn ms_4_a_cobrowse_session_is_dated_in_the_first_meter_in_force() {
    // T-3 judges a co-browse event by the tenant's first meter in force; its line is dated
    // in that meter's period: here an outcome meter's local month, not a day.
    let engine = engine_with(json!({"id": "acme", "time_zone": "UTC",
        "meters": [fin(json!({"resolution": "1"})), {"id": "days", "preset": "dar"}]}));
    let cobrowse = json!({"id": "cb", "at": "2025-06-10T10:00:00Z", "type": "cobrowse", "consumer": "c1",
                          "conversation": "A", "session": "s1", "established": true});
    let outcome = engine.ingest(raw(cobrowse), None, &mut Vec::new()).unwrap();
    assert_eq!(outcome.lines[0].period.label, "2025-06");
    assert_eq!(outcome.lines[0].meter, None, "co-browse belongs to the tenant, not a meter (MS-4)");
}
