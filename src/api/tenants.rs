//! Tenants, settings, plans and changes: proto <-> core, with field paths in every
//! violation.

use super::*;

pub(super) fn setting_error(prefix: &str, e: SettingError) -> FieldViolation {
    FieldViolation::new(format!("{prefix}.{}", e.setting), e.reason)
}

/// Reads proto settings into a patch, validating each (T-5: refused by name).
pub fn settings_in(s: &pb::Settings, prefix: &str) -> Result<SettingsPatch, Vec<FieldViolation>> {
    let mut patch = SettingsPatch::default();
    let mut violations = Vec::new();
    let mut bad_enums = Vec::new();
    let mut set = |name: &str, value: SettingValue| {
        if let Err(e) = patch.set(name, &value) {
            violations.push(setting_error(prefix, e));
        }
    };
    let text = |s: &str| SettingValue::Text(s.to_string());
    if let Some(v) = &s.time_zone {
        set("time_zone", text(v));
    }
    for (name, value) in [
        ("generative_ai", s.generative_ai),
        ("intent_listening", s.intent_listening),
        ("performance_optimizer", s.performance_optimizer),
        ("proactive_requires_reply", s.proactive_requires_reply),
        ("gai_multiplies_addons", s.gai_multiplies_addons),
    ] {
        if let Some(v) = value {
            set(name, SettingValue::Bool(v));
        }
    }
    for (name, value) in [
        ("proactive_reply_window", &s.proactive_reply_window),
        ("lateness_horizon", &s.lateness_horizon),
        ("max_clock_skew", &s.max_clock_skew),
        ("cobrowse_credits", &s.cobrowse_credits),
    ] {
        if let Some(v) = value {
            set(name, text(v));
        }
    }
    if let Some(day) = s.cycle_anchor_day {
        set("cycle_anchor_day", SettingValue::Int(i64::from(day)));
    }
    let named_enum = |value: i32, names: &[&'static str]| -> Result<Option<&'static str>, ()> {
        match value {
            0 => Ok(None),
            n if (1..=names.len() as i32).contains(&n) => Ok(Some(names[n as usize - 1])),
            _ => Err(()),
        }
    };
    for (name, value, names) in [
        ("relationship", s.relationship, &["consumer", "conversation"][..]),
        ("proactive_outbound_day", s.proactive_outbound_day, &["reply_day_only", "retroactive"][..]),
        ("functions_rounding", s.functions_rounding, &["pro_rata", "ceil_block", "floor_block"][..]),
        ("overage_rounding", s.overage_rounding, &["pro_rata", "ceil_block", "floor_block"][..]),
        ("feature_attribution", s.feature_attribution, &["any_event", "first_event"][..]),
    ] {
        match named_enum(value, names) {
            Ok(Some(v)) => set(name, text(v)),
            Ok(None) => {}
            Err(()) => {
                bad_enums.push(FieldViolation::new(format!("{prefix}.{name}"), format!("unknown value {value}")))
            }
        }
    }
    if let Some(r) = &s.retire_meter {
        set("retire_meter", text(r));
    }
    violations.extend(bad_enums);
    if let Some(def) = &s.add_meter {
        match meter_in(def, &format!("{prefix}.add_meter")) {
            Ok(def) => patch.add_meter = Some(def),
            Err(e) => violations.push(e),
        }
    }
    if violations.is_empty() { Ok(patch) } else { Err(violations) }
}

/// A meter definition (MS-1), read through the one parser the tenants file and the
/// scenario format use: the proto is turned into that JSON shape first.
pub fn meter_in(m: &pb::MeterDefinition, field: &str) -> Result<MeterDef, FieldViolation> {
    let preset = match pb::Meter::try_from(m.preset) {
        Ok(pb::Meter::Dar) => "dar",
        Ok(pb::Meter::Cycle) => "cycle",
        Ok(pb::Meter::Mau) => "mau",
        Ok(pb::Meter::Event) => "event",
        Ok(pb::Meter::Outcome) => "outcome",
        _ => return Err(FieldViolation::new(format!("{field}.preset"), "one of METER_DAR .. METER_OUTCOME")),
    };
    let mut obj = serde_json::Map::new();
    obj.insert("id".into(), m.meter_id.clone().into());
    obj.insert("preset".into(), preset.into());
    if let Some(f) = &m.filter {
        let mut filter = serde_json::Map::new();
        for (name, list) in [
            ("event_types", &f.event_types),
            ("sender_roles", &f.sender_roles),
            ("channels", &f.channels),
            ("integrations", &f.integrations),
        ] {
            if let Some(list) = list {
                filter.insert(name.into(), list.values.clone().into());
            }
        }
        obj.insert("filter".into(), filter.into());
    }
    if let Some(n) = m.allowance {
        obj.insert("allowance".into(), n.into());
    }
    if let Some(n) = m.units_per_credit {
        obj.insert("units_per_credit".into(), n.into());
    }
    match m.rounding {
        0 => {}
        1 => drop(obj.insert("rounding".into(), "pro_rata".into())),
        2 => drop(obj.insert("rounding".into(), "ceil_block".into())),
        3 => drop(obj.insert("rounding".into(), "floor_block".into())),
        n => return Err(FieldViolation::new(format!("{field}.rounding"), format!("unknown value {n}"))),
    }
    if !m.prices.is_empty() {
        let prices: serde_json::Map<String, serde_json::Value> =
            m.prices.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        obj.insert("prices".into(), prices.into());
    }
    if let Some(w) = &m.revocation_window {
        obj.insert("revocation_window".into(), w.clone().into());
    }
    crate::tenants::meter_from(&serde_json::Value::Object(obj), field)
        .map_err(|e| FieldViolation::new(e.setting, e.reason))
}

pub fn meter_def_out(d: &MeterDef) -> pb::MeterDefinition {
    let names = |v: Vec<&str>| Some(pb::Values { values: v.into_iter().map(str::to_string).collect() });
    let f = &d.filter;
    pb::MeterDefinition {
        meter_id: d.id.clone(),
        preset: meter_out(d.kind),
        filter: Some(pb::MeterFilter {
            event_types: f.event_types.as_ref().and_then(|l| names(l.iter().map(|t| t.name()).collect())),
            sender_roles: f.sender_roles.as_ref().and_then(|l| names(l.iter().map(|t| t.name()).collect())),
            channels: f.channels.as_ref().and_then(|l| names(l.iter().map(|t| t.name()).collect())),
            integrations: f.integrations.as_ref().and_then(|l| names(l.iter().map(String::as_str).collect())),
        }),
        allowance: (d.kind == MeterKind::Event).then_some(d.units.allowance),
        units_per_credit: (d.kind == MeterKind::Event).then_some(d.units.units_per_credit),
        rounding: match (d.kind, d.units.rounding) {
            (MeterKind::Event, Rounding::ProRata) => 1,
            (MeterKind::Event, Rounding::CeilBlock) => 2,
            (MeterKind::Event, Rounding::FloorBlock) => 3,
            _ => 0,
        },
        prices: d.outcomes.prices.iter().map(|(k, v)| (k.clone(), v.normalize().to_string())).collect(),
        revocation_window: (d.kind == MeterKind::Outcome).then(|| time::format_duration(d.outcomes.revocation_window)),
    }
}

pub fn settings_out(p: &SettingsPatch) -> pb::Settings {
    let rounding = |r: Option<Rounding>| match r {
        None => 0,
        Some(Rounding::ProRata) => 1,
        Some(Rounding::CeilBlock) => 2,
        Some(Rounding::FloorBlock) => 3,
    };
    pb::Settings {
        time_zone: p.time_zone.map(|z| z.name().to_string()),
        generative_ai: p.generative_ai,
        intent_listening: p.intent_listening,
        performance_optimizer: p.performance_optimizer,
        relationship: match p.relationship {
            None => 0,
            Some(Relationship::Consumer) => 1,
            Some(Relationship::Conversation) => 2,
        },
        proactive_outbound_day: match p.proactive_outbound_day {
            None => 0,
            Some(ProactiveOutboundDay::ReplyDayOnly) => 1,
            Some(ProactiveOutboundDay::Retroactive) => 2,
        },
        proactive_reply_window: p.proactive_reply_window.map(time::format_duration),
        lateness_horizon: p.lateness_horizon.map(time::format_duration),
        max_clock_skew: p.max_clock_skew.map(time::format_duration),
        proactive_requires_reply: p.proactive_requires_reply,
        cycle_anchor_day: p.cycle_anchor_day,
        cobrowse_credits: p.cobrowse_credits.map(|d| d.normalize().to_string()),
        functions_rounding: rounding(p.functions_rounding),
        overage_rounding: rounding(p.overage_rounding),
        gai_multiplies_addons: p.gai_multiplies_addons,
        feature_attribution: match p.feature_attribution {
            None => 0,
            Some(FeatureAttribution::AnyEvent) => 1,
            Some(FeatureAttribution::FirstEvent) => 2,
        },
        add_meter: p.add_meter.as_ref().map(meter_def_out),
        retire_meter: p.retire_meter.clone(),
    }
}

pub fn change_in(c: &pb::SettingsChange, prefix: &str) -> Result<SettingsChange, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let at = match time::parse_instant(&c.effective_from) {
        Ok(at) => Some(at),
        Err(e) => {
            violations.push(FieldViolation::new(format!("{prefix}.effective_from"), e.to_string()));
            None
        }
    };
    if c.change_id.len() > 128 {
        violations.push(FieldViolation::new(format!("{prefix}.change_id"), "longer than 128 bytes"));
    }
    let patch = match &c.settings {
        Some(s) => settings_in(s, &format!("{prefix}.settings")).map_err(|v| violations.extend(v)).ok(),
        None => {
            violations.push(FieldViolation::new(format!("{prefix}.settings"), "is required"));
            None
        }
    };
    match (violations.is_empty(), at, patch) {
        (true, Some(at), Some(patch)) => {
            Ok(SettingsChange { id: (!c.change_id.is_empty()).then(|| c.change_id.clone()), at, patch })
        }
        _ => Err(violations),
    }
}

pub fn change_out(c: &SettingsChange) -> pb::SettingsChange {
    pb::SettingsChange {
        change_id: c.id.clone().unwrap_or_default(),
        effective_from: c.at.to_rfc3339(),
        settings: Some(settings_out(&c.patch)),
    }
}

pub(super) fn decimal_in(text: &str, field: &str, violations: &mut Vec<FieldViolation>) -> Decimal {
    match parse_decimal(text) {
        Some(d) if !d.is_sign_negative() || d.is_zero() => match amount_limit_violation(d) {
            Some(why) => {
                violations.push(FieldViolation::new(field, why));
                Decimal::ZERO
            }
            None => d,
        },
        _ => {
            violations.push(FieldViolation::new(field, "expected a non-negative decimal string"));
            Decimal::ZERO
        }
    }
}

pub(super) fn money_in(m: &pb::Money, field: &str, violations: &mut Vec<FieldViolation>) -> Money {
    let amount = decimal_in(&m.amount, &format!("{field}.amount"), violations);
    let currency = Currency::parse(&m.currency).unwrap_or_else(|| {
        violations.push(FieldViolation::new(format!("{field}.currency"), "must be three capital letters"));
        Currency::USD
    });
    Money::new(amount, currency)
}

pub fn plan_in(p: &pb::Plan, field: &str) -> Result<Option<Plan>, Vec<FieldViolation>> {
    let mut v = Vec::new();
    let alerts = |list: &[String], v: &mut Vec<FieldViolation>| -> Vec<Decimal> {
        list.iter()
            .map(|a| {
                let d = decimal_in(a, &format!("{field}.alert_thresholds"), v);
                if d.is_zero() {
                    v.push(FieldViolation::new(format!("{field}.alert_thresholds"), "thresholds must be positive"));
                }
                d
            })
            .collect()
    };
    let plan = match &p.kind {
        None => None,
        Some(pb::plan::Kind::Starter(s)) => {
            let d = StarterPlan::default();
            let block_size = s.block_size.unwrap_or(d.block_size);
            if block_size == 0 {
                v.push(FieldViolation::new(format!("{field}.starter.block_size"), "must be positive"));
            }
            Some(Plan::Starter(StarterPlan {
                included: s.included_interactions.unwrap_or(d.included),
                block_size,
                block_price: s
                    .block_price
                    .as_ref()
                    .map(|m| money_in(m, &format!("{field}.starter.block_price"), &mut v))
                    .unwrap_or(d.block_price),
                max_platform_users: s.max_platform_users.unwrap_or(d.max_platform_users),
                alerts: alerts(&s.alert_thresholds, &mut v),
                meter: s.meter.clone(),
            }))
        }
        Some(pb::plan::Kind::Commitment(c)) => {
            let mut date = |text: &str, name: &str| -> NaiveDate {
                text.parse().unwrap_or_else(|_| {
                    v.push(FieldViolation::new(format!("{field}.commitment.{name}"), "expected a date YYYY-MM-DD"));
                    NaiveDate::MIN
                })
            };
            let (term_start, term_end) = (date(&c.term_start, "term_start"), date(&c.term_end, "term_end"));
            if term_end < term_start {
                v.push(FieldViolation::new(format!("{field}.commitment.term_end"), "is before term_start"));
            }
            let credits = decimal_in(&c.credits, &format!("{field}.commitment.credits"), &mut v);
            let overage_price = c
                .overage_price
                .iter()
                .map(|m| money_in(m, &format!("{field}.commitment.overage_price"), &mut v))
                .collect();
            let top_ups = c
                .top_ups
                .iter()
                .map(|t| {
                    let at = time::parse_instant(&t.at).unwrap_or_else(|e| {
                        v.push(FieldViolation::new(format!("{field}.commitment.top_ups.at"), e.to_string()));
                        time::Instant::MIN_UTC
                    });
                    TopUp {
                        at,
                        credits: decimal_in(&t.credits, &format!("{field}.commitment.top_ups.credits"), &mut v),
                    }
                })
                .collect();
            let alerts = alerts(&c.alert_thresholds, &mut v);
            Some(Plan::Commitment(CommitmentPlan { term_start, term_end, credits, overage_price, top_ups, alerts }))
        }
    };
    if v.is_empty() { Ok(plan) } else { Err(v) }
}

pub fn plan_out(p: &Option<Plan>) -> Option<pb::Plan> {
    let d = |d: &Decimal| d.normalize().to_string();
    let kind = match p.as_ref()? {
        Plan::Starter(s) => pb::plan::Kind::Starter(pb::StarterPlan {
            included_interactions: Some(s.included),
            block_size: Some(s.block_size),
            block_price: Some(money_out(&s.block_price)),
            max_platform_users: Some(s.max_platform_users),
            alert_thresholds: s.alerts.iter().map(d).collect(),
            meter: s.meter.clone(),
        }),
        Plan::Commitment(c) => pb::plan::Kind::Commitment(pb::CommitmentPlan {
            term_start: c.term_start.to_string(),
            term_end: c.term_end.to_string(),
            credits: d(&c.credits),
            overage_price: c.overage_price.iter().map(money_out).collect(),
            top_ups: c.top_ups.iter().map(|t| pb::TopUp { at: t.at.to_rfc3339(), credits: d(&t.credits) }).collect(),
            alert_thresholds: c.alerts.iter().map(d).collect(),
        }),
    };
    Some(pb::Plan { kind: Some(kind) })
}

/// Reads a proto tenant, reporting every invalid field.
pub fn tenant_in(t: &pb::Tenant) -> Result<TenantSpec, Vec<FieldViolation>> {
    let mut v = Vec::new();
    if let Err(reason) = crate::rating::settings::validate_tenant_id(&t.tenant_id) {
        v.push(FieldViolation::new("tenant.tenant_id", reason));
    }
    let meter = match pb::Meter::try_from(t.meter) {
        Ok(pb::Meter::Dar) => MeterKind::Dar,
        Ok(pb::Meter::Cycle) => MeterKind::Cycle,
        Ok(pb::Meter::Mau) => MeterKind::Mau,
        Ok(pb::Meter::Unspecified) if !t.meters.is_empty() => MeterKind::Dar,
        _ => {
            v.push(FieldViolation::new(
                "tenant.meter",
                "one of METER_DAR, METER_CYCLE, METER_MAU (other presets go in `meters`)",
            ));
            MeterKind::Dar
        }
    };
    let mut meters = Vec::new();
    for (i, m) in t.meters.iter().enumerate() {
        match meter_in(m, &format!("tenant.meters[{i}]")) {
            Ok(m) => meters.push(m),
            Err(e) => v.push(e),
        }
    }
    let initial = match &t.settings {
        Some(s) => settings_in(s, "tenant.settings").unwrap_or_else(|e| {
            v.extend(e);
            SettingsPatch::default()
        }),
        None => SettingsPatch::default(),
    };
    if initial.time_zone.is_none() && !v.iter().any(|x| x.field == "tenant.settings.time_zone") {
        v.push(FieldViolation::new("tenant.settings.time_zone", "is required"));
    }
    let mut changes = Vec::new();
    for (i, c) in t.changes.iter().enumerate() {
        match change_in(c, &format!("tenant.changes[{i}]")) {
            Ok(c) => changes.push(c),
            Err(e) => v.extend(e),
        }
    }
    let plan = match &t.plan {
        Some(p) => plan_in(p, "tenant.plan").unwrap_or_else(|e| {
            v.extend(e);
            None
        }),
        None => None,
    };
    if !v.is_empty() {
        return Err(v);
    }
    let mut spec = TenantSpec { id: t.tenant_id.clone(), meter, meters, initial, changes, plan };
    // The API takes a tenant whole: a meter change it would refuse refuses the request.
    let refused: Vec<FieldViolation> = spec
        .admit_meter_changes()
        .into_iter()
        .map(|(_, e)| FieldViolation::new(format!("tenant.{}", e.setting), e.reason))
        .collect();
    if refused.is_empty() { Ok(spec) } else { Err(refused) }
}

pub fn tenant_out(spec: &TenantSpec) -> pb::Tenant {
    pb::Tenant {
        tenant_id: spec.id.clone(),
        meter: meter_out(spec.meter),
        settings: Some(settings_out(&spec.initial)),
        changes: spec.changes.iter().map(change_out).collect(),
        plan: plan_out(&spec.plan),
        meters: spec.meters.iter().map(meter_def_out).collect(),
    }
}
