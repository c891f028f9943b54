//! Settings over time (T-5, CYC-6, DAR-2).

use super::*;
use crate::rating::time::parse_instant;

fn tenant(
    meter: MeterKind,
    zone: &str,
    initial: &[(&str, SettingValue)],
    changes: &[(&str, &str, SettingValue)],
) -> Tenant {
    let mut patch = SettingsPatch::default();
    patch.set("time_zone", &SettingValue::Text(zone.into())).unwrap();
    for (k, v) in initial {
        patch.set(k, v).unwrap();
    }
    let changes = changes
        .iter()
        .map(|(at, k, v)| {
            let mut p = SettingsPatch::default();
            p.set(k, v).unwrap();
            SettingsChange { id: None, at: parse_instant(at).unwrap(), patch: p }
        })
        .collect();
    Tenant::compile(TenantSpec { id: "t".into(), meter, meters: Vec::new(), initial: patch, changes, plan: None }, 0)
        .unwrap()
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

#[test]
fn t_5_unknown_and_bad_settings_are_named() {
    let mut p = SettingsPatch::default();
    assert_eq!(p.set("colour", &SettingValue::Bool(true)).unwrap_err().setting, "colour");
    assert_eq!(p.set("time_zone", &SettingValue::Text("Mars/Olympus".into())).unwrap_err().setting, "time_zone");
    assert_eq!(p.set("cycle_anchor_day", &SettingValue::Int(32)).unwrap_err().setting, "cycle_anchor_day");
    assert_eq!(p.set("meter", &SettingValue::Text("mau".into())).unwrap_err().setting, "meter");
    assert_eq!(p, SettingsPatch::default(), "a refused setting changes nothing");
}

#[test]
fn t_5_feature_flag_takes_effect_at_its_instant() {
    let t = tenant(MeterKind::Dar, "UTC", &[], &[("2025-06-10T12:00:00Z", "generative_ai", SettingValue::Bool(true))]);
    assert!(!t.settings_at(parse_instant("2025-06-10T11:59:59Z").unwrap()).features.has(Features::GENERATIVE_AI));
    assert!(t.settings_at(parse_instant("2025-06-10T12:00:00Z").unwrap()).features.has(Features::GENERATIVE_AI));
}

#[test]
fn t_5_structural_setting_waits_for_the_next_period() {
    let t = tenant(
        MeterKind::Dar,
        "UTC",
        &[],
        &[
            ("2025-06-10T12:00:00Z", "relationship", SettingValue::Text("conversation".into())),
            ("2025-07-01T00:00:00Z", "gai_multiplies_addons", SettingValue::Bool(true)),
        ],
    );
    assert_eq!(t.structure(date("2025-06-10")).relationship, Relationship::Consumer);
    assert_eq!(t.structure(date("2025-06-11")).relationship, Relationship::Conversation);
    // A change at exactly a period start applies to that period.
    assert!(t.structure(date("2025-07-01")).gai_multiplies_addons);
    assert!(!t.structure(date("2025-06-30")).gai_multiplies_addons);
}

#[test]
fn cyc_6_anchor_change_waits_for_the_next_cycle_start() {
    // Anchor 15 until a change to 1 made on 2025-06-20: the 2025-06-15 cycle runs to
    // 2025-07-15, then the first new cycle runs to 2025-08-01.
    let t = tenant(
        MeterKind::Cycle,
        "America/Chicago",
        &[("cycle_anchor_day", SettingValue::Int(15))],
        &[("2025-06-20T10:00:00-05:00", "cycle_anchor_day", SettingValue::Int(1))],
    );
    let zone = t.zone_at(parse_instant("2025-06-20T10:00:00-05:00").unwrap());
    let p = t.period_of_date(Window::BillingCycle, date("2025-07-01"), zone);
    assert_eq!((p.start_date, p.end_date), (date("2025-06-15"), date("2025-07-15")));
    let p = t.period_of_date(Window::BillingCycle, date("2025-07-20"), zone);
    assert_eq!((p.start_date, p.end_date), (date("2025-07-15"), date("2025-08-01")));
    let p = t.period_of_date(Window::BillingCycle, date("2025-08-02"), zone);
    assert_eq!((p.start_date, p.end_date), (date("2025-08-01"), date("2025-09-01")));
}

#[test]
fn dar_2_zone_change_relabels_from_its_instant() {
    let t = tenant(
        MeterKind::Dar,
        "Asia/Tokyo",
        &[],
        &[("2025-05-09T18:00:00Z", "time_zone", SettingValue::Text("UTC".into()))],
    );
    assert_eq!(t.period(parse_instant("2025-05-09T16:00:00Z").unwrap()).label(), "2025-05-10");
    assert_eq!(t.period(parse_instant("2025-05-10T10:00:00Z").unwrap()).label(), "2025-05-10");
}
