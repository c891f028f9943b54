//! The tenants format, shared by the tenants file (TOML), scenario files (JSON) and the
//! replay command. One tenant:
//!
//! ```toml
//! [[tenant]]
//! id = "acme"
//! time_zone = "America/New_York"
//! meter = "dar"                      # dar | cycle | mau
//! settings = { generative_ai = true, lateness_horizon = "P35D" }
//! changes = [ { id = "c1", at = "2025-06-10T12:00:00-04:00", set = { intent_listening = true } } ]
//! plan = { kind = "starter", alerts = ["0.8", "1.0"] }
//! ```
//!
//! Settings are named as in the RULEBOOK; an unknown name or a bad value is refused with
//! the setting named (T-5).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::rating::event::{Channel, SenderRole};
use crate::rating::meter::{EventType, Filter, MeterDef, MeterKind};
use crate::rating::money::{Currency, Money, amount_limit_violation, parse_decimal};
use crate::rating::plan::{CommitmentPlan, Plan, StarterPlan, TopUp};
use crate::rating::settings::{SettingError, SettingValue, SettingsChange, SettingsPatch, TenantSpec};
use crate::rating::time;

/// A change the format refused: its id (if it had one) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedChange {
    pub id: Option<String>,
    pub error: SettingError,
}

/// Reads a tenant. Changes that are invalid are refused one by one (they change nothing);
/// anything else invalid refuses the tenant.
pub fn tenant_from_value(value: &Value) -> Result<(TenantSpec, Vec<RefusedChange>), SettingError> {
    let obj = value.as_object().ok_or_else(|| SettingError::new("tenant", "expected a table"))?;
    only_keys(obj, "", &["id", "time_zone", "meter", "meters", "settings", "changes", "plan"])?;
    let id = text(obj, "id")?.ok_or_else(|| SettingError::new("id", "is required"))?;
    // The engine's rule, checked here so that a file it would refuse is refused as a file
    // (found by fuzzing: `--check-config` passed, and start-up then failed).
    crate::rating::settings::validate_tenant_id(&id).map_err(|reason| SettingError::new("id", reason))?;
    let meter_name = text(obj, "meter")?.unwrap_or_else(|| "dar".into());
    let meter =
        MeterKind::parse(&meter_name).ok_or_else(|| SettingError::new("meter", "expected dar, cycle or mau"))?;
    if !meter.is_interaction() {
        return Err(SettingError::new("meter", "expected dar, cycle or mau (other presets go in `meters`)"));
    }
    let meters = match obj.get("meters") {
        None => Vec::new(),
        Some(_) if obj.contains_key("meter") => {
            return Err(SettingError::new("meters", "give either `meter` or `meters`, not both (MS-1)"));
        }
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(SettingError::new("meters", "a tenant has one to eight meters (MS-1)"));
        }
        Some(Value::Array(list)) => list.iter().map(|m| meter_from(m, "meters")).collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(SettingError::new("meters", "expected a list of meter definitions")),
    };
    let mut initial = SettingsPatch::default();
    let zone = text(obj, "time_zone")?.ok_or_else(|| SettingError::new("time_zone", "is required"))?;
    initial.set("time_zone", &SettingValue::Text(zone))?;
    if let Some(settings) = obj.get("settings") {
        let settings = settings.as_object().ok_or_else(|| SettingError::new("settings", "expected a table"))?;
        patch_from(settings, &mut initial)?;
    }
    let mut changes = Vec::new();
    let mut refused = Vec::new();
    let changes_list = match obj.get("changes") {
        None => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(_) => return Err(SettingError::new("changes", "expected a list of changes")),
    };
    for change in changes_list {
        match change_from(change) {
            Ok(c) => changes.push(c),
            Err((id, error)) => refused.push(RefusedChange { id, error }),
        }
    }
    let plan = obj.get("plan").map(plan_from).transpose()?;
    let mut spec = TenantSpec { id, meter, meters, initial, changes, plan };
    for (id, error) in spec.admit_meter_changes() {
        match id {
            None => return Err(error),
            id => refused.push(RefusedChange { id, error }),
        }
    }
    Ok((spec, refused))
}

/// A meter definition (MS-1): `id`, `preset`, `filter` and the preset's settings.
pub fn meter_from(value: &Value, setting: &str) -> Result<MeterDef, SettingError> {
    let err = |reason: String| SettingError::new(setting, reason);
    let obj = value.as_object().ok_or_else(|| err("expected a meter definition (a table)".into()))?;
    let known: &[&str] = match obj.get("preset").and_then(Value::as_str) {
        Some("event") => &["id", "preset", "filter", "allowance", "units_per_credit", "rounding"],
        Some("outcome") => &["id", "preset", "filter", "prices", "revocation_window"],
        _ => &["id", "preset", "filter"],
    };
    only_keys(obj, &format!("{setting}."), known)?;
    let id = text(obj, "id")?.ok_or_else(|| err("a meter needs an `id`".into()))?;
    let preset = text(obj, "preset")?.ok_or_else(|| err(format!("meter `{id}` needs a `preset`")))?;
    let kind = MeterKind::parse(&preset)
        .ok_or_else(|| err(format!("meter `{id}`: unknown preset `{preset}` (dar, cycle, mau, event, outcome)")))?;
    let mut def = MeterDef::single(kind);
    def.id = id.clone();
    if let Some(filter) = obj.get("filter") {
        def.filter = filter_from(filter, setting, &id)?;
    }
    let whole = |name: &str, min: u64| -> Result<Option<u64>, SettingError> {
        match obj.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= min)
                .map(Some)
                .ok_or_else(|| err(format!("meter `{id}`: `{name}` is a whole number >= {min} (EV-2)"))),
        }
    };
    if let Some(n) = whole("allowance", 0)? {
        def.units.allowance = n;
    }
    if let Some(n) = whole("units_per_credit", 1)? {
        def.units.units_per_credit = n;
    }
    if let Some(r) = text(obj, "rounding")? {
        let mut patch = SettingsPatch::default();
        patch
            .set("functions_rounding", &SettingValue::Text(r))
            .map_err(|e| err(format!("meter `{id}`: rounding: {}", e.reason)))?;
        def.units.rounding = patch.functions_rounding.expect("set");
    }
    if let Some(prices) = obj.get("prices") {
        let prices = prices.as_object().ok_or_else(|| err(format!("meter `{id}`: `prices` maps types to credits")))?;
        for (kind, price) in prices {
            def.outcomes.prices.insert(kind.clone(), decimal_value(price, &format!("{setting}.prices"))?);
        }
    }
    if let Some(w) = text(obj, "revocation_window")? {
        let mut patch = SettingsPatch::default();
        patch
            .set("lateness_horizon", &SettingValue::Text(w))
            .map_err(|e| err(format!("meter `{id}`: revocation_window: {}", e.reason)))?;
        def.outcomes.revocation_window = patch.lateness_horizon.expect("set");
    }
    Ok(def)
}

fn filter_from(value: &Value, setting: &str, id: &str) -> Result<Filter, SettingError> {
    let err = |reason: String| SettingError::new(setting, format!("meter `{id}`: filter: {reason}"));
    let obj = value.as_object().ok_or_else(|| err("expected a table".into()))?;
    only_keys(obj, &format!("{setting}.filter."), &["event_types", "sender_roles", "channels", "integrations"])?;
    fn list<T>(
        obj: &Map<String, Value>,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        err: &dyn Fn(String) -> SettingError,
    ) -> Result<Option<Vec<T>>, SettingError> {
        let Some(v) = obj.get(name) else { return Ok(None) };
        let items = v.as_array().ok_or_else(|| err(format!("`{name}` is a list")))?;
        if items.is_empty() {
            return Err(err(format!("`{name}` must not be an empty list (MS-2)")));
        }
        items
            .iter()
            .map(|i| i.as_str().and_then(&parse).ok_or_else(|| err(format!("`{name}`: unknown value {i}"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
    Ok(Filter {
        event_types: list(obj, "event_types", EventType::parse, &err)?,
        sender_roles: list(obj, "sender_roles", SenderRole::parse, &err)?,
        channels: list(obj, "channels", Channel::parse, &err)?,
        integrations: list(obj, "integrations", |s| (!s.is_empty()).then(|| s.to_string()), &err)?,
    })
}

fn change_from(value: &Value) -> Result<SettingsChange, (Option<String>, SettingError)> {
    let obj = value.as_object().ok_or((None, SettingError::new("changes", "expected a table")))?;
    let id = obj.get("id").and_then(Value::as_str).map(str::to_string);
    let fail = |e: SettingError| (id.clone(), e);
    only_keys(obj, "changes.", &["id", "at", "set"]).map_err(fail)?;
    let at = text(obj, "at").map_err(fail)?.ok_or_else(|| fail(SettingError::new("at", "is required")))?;
    let at = time::parse_instant(&at).map_err(|e| fail(SettingError::new("at", e.to_string())))?;
    let set = obj
        .get("set")
        .and_then(Value::as_object)
        .ok_or_else(|| fail(SettingError::new("set", "expected a table of settings")))?;
    let mut patch = SettingsPatch::default();
    let mut plain = set.clone();
    if let Some(def) = plain.remove("add_meter") {
        patch.add_meter = Some(meter_from(&def, "add_meter").map_err(fail)?);
    }
    patch_from(&plain, &mut patch).map_err(fail)?;
    Ok(SettingsChange { id, at, patch })
}

/// Applies every named setting of a table to a patch.
pub fn patch_from(settings: &Map<String, Value>, patch: &mut SettingsPatch) -> Result<(), SettingError> {
    let mut next = patch.clone();
    for (name, value) in settings {
        let value = match value {
            Value::Bool(b) => SettingValue::Bool(*b),
            Value::Number(n) if n.is_i64() => SettingValue::Int(n.as_i64().expect("checked")),
            Value::Number(n) => SettingValue::Text(n.to_string()),
            Value::String(s) => SettingValue::Text(s.clone()),
            _ => return Err(SettingError::new(name, "expected a boolean, number or string")),
        };
        next.set(name, &value)?;
    }
    *patch = next;
    Ok(())
}

fn plan_from(value: &Value) -> Result<Plan, SettingError> {
    let obj = value.as_object().ok_or_else(|| SettingError::new("plan", "expected a table"))?;
    let keys: &[&str] = match obj.get("kind").and_then(Value::as_str) {
        Some("starter") => &["kind", "alerts", "included", "block_size", "max_platform_users", "block_price", "meter"],
        Some("commitment") => &["kind", "alerts", "term_start", "term_end", "credits", "overage_price", "top_ups"],
        _ => &["kind", "alerts"],
    };
    only_keys(obj, "plan.", keys)?;
    let alerts = obj
        .get("alerts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| decimal_value(v, "plan.alerts"))
        .collect::<Result<Vec<_>, _>>()?;
    if alerts.iter().any(|a| a.is_sign_negative() || a.is_zero()) {
        return Err(SettingError::new("plan.alerts", "thresholds must be positive fractions"));
    }
    match text(obj, "kind")?.as_deref() {
        Some("starter") => {
            let mut plan = StarterPlan { alerts, meter: text(obj, "meter")?, ..StarterPlan::default() };
            if let Some(n) = obj.get("included") {
                plan.included =
                    n.as_u64().ok_or_else(|| SettingError::new("plan.included", "expected a whole number"))?;
            }
            if let Some(n) = obj.get("block_size") {
                plan.block_size = n
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| SettingError::new("plan.block_size", "expected a positive whole number"))?;
            }
            if let Some(n) = obj.get("max_platform_users") {
                plan.max_platform_users = n
                    .as_u64()
                    .ok_or_else(|| SettingError::new("plan.max_platform_users", "expected a whole number"))?;
            }
            if let Some(price) = obj.get("block_price") {
                plan.block_price = money_from(price, "plan.block_price")?;
            }
            Ok(Plan::Starter(plan))
        }
        Some("commitment") => {
            let date = |name: &str| -> Result<NaiveDate, SettingError> {
                let field = format!("plan.{name}");
                text(obj, name)?
                    .ok_or_else(|| SettingError::new(&field, "is required"))?
                    .parse()
                    .map_err(|_| SettingError::new(&field, "expected a date YYYY-MM-DD"))
            };
            let (term_start, term_end) = (date("term_start")?, date("term_end")?);
            if term_end < term_start {
                return Err(SettingError::new("plan.term_end", "is before term_start"));
            }
            let credits = decimal_value(obj.get("credits").unwrap_or(&Value::Null), "plan.credits")?;
            let mut overage_price = Vec::new();
            if let Some(prices) = obj.get("overage_price").and_then(Value::as_object) {
                for (currency, amount) in prices {
                    let currency = Currency::parse(currency).ok_or_else(|| {
                        SettingError::new("plan.overage_price", "currency must be three capital letters")
                    })?;
                    overage_price.push(Money::new(decimal_value(amount, "plan.overage_price")?, currency));
                }
            }
            let mut top_ups = Vec::new();
            for t in obj.get("top_ups").and_then(Value::as_array).into_iter().flatten() {
                let t = t.as_object().ok_or_else(|| SettingError::new("plan.top_ups", "expected tables"))?;
                only_keys(t, "plan.top_ups.", &["at", "credits"])?;
                let at = t
                    .get("at")
                    .and_then(Value::as_str)
                    .and_then(|s| time::parse_instant(s).ok())
                    .ok_or_else(|| SettingError::new("plan.top_ups.at", "expected an RFC 3339 instant"))?;
                let credits = decimal_value(t.get("credits").unwrap_or(&Value::Null), "plan.top_ups.credits")?;
                top_ups.push(TopUp { at, credits });
            }
            Ok(Plan::Commitment(CommitmentPlan { term_start, term_end, credits, overage_price, top_ups, alerts }))
        }
        _ => Err(SettingError::new("plan.kind", "expected starter or commitment")),
    }
}

fn money_from(value: &Value, field: &str) -> Result<Money, SettingError> {
    let obj = value.as_object().ok_or_else(|| SettingError::new(field, "expected a table of amount and currency"))?;
    only_keys(obj, &format!("{field}."), &["amount", "currency"])?;
    let amount = decimal_value(value.get("amount").unwrap_or(&Value::Null), field)?;
    let currency = value
        .get("currency")
        .and_then(Value::as_str)
        .and_then(Currency::parse)
        .ok_or_else(|| SettingError::new(field, "currency must be three capital letters"))?;
    Ok(Money::new(amount, currency))
}

/// A non-negative decimal, written as a string (or a whole number).
fn decimal_value(value: &Value, field: &str) -> Result<Decimal, SettingError> {
    let parsed = match value {
        Value::String(s) => parse_decimal(s),
        Value::Number(n) if n.is_u64() => Some(Decimal::from(n.as_u64().expect("checked"))),
        _ => None,
    };
    match parsed {
        Some(d) if !d.is_sign_negative() || d.is_zero() => match amount_limit_violation(d) {
            Some(why) => Err(SettingError::new(field, why)),
            None => Ok(d),
        },
        Some(_) => Err(SettingError::new(field, "must not be negative")),
        None => Err(SettingError::new(field, "expected a decimal string")),
    }
}

/// Refuses a table with a key the format does not know, naming it (a typo such as
/// `plans = {...}` would otherwise drop what it meant to say without a word).
fn only_keys(obj: &Map<String, Value>, prefix: &str, known: &[&str]) -> Result<(), SettingError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(unknown) => {
            Err(SettingError::new(&format!("{prefix}{unknown}"), format!("is not a known key ({})", known.join(", "))))
        }
    }
}

fn text(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, SettingError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(SettingError::new(name, "expected a string")),
    }
}

/// Reads a tenants file: TOML with `[[tenant]]` tables. Any invalid tenant or change
/// refuses the whole file, naming the tenant and the setting.
pub fn parse_tenants_toml(text: &str) -> Result<Vec<TenantSpec>, String> {
    let value: Value = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
    let tenants = match value.get("tenant") {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("`tenant` must be an array of tables ([[tenant]])".into()),
    };
    let mut out = Vec::new();
    for (i, tenant) in tenants.iter().enumerate() {
        let label =
            tenant.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("#{}", i + 1));
        let (spec, refused) = tenant_from_value(tenant).map_err(|e| format!("tenant {label}: {e}"))?;
        if let Some(r) = refused.first() {
            return Err(format!("tenant {label}: change {}: {}", r.id.as_deref().unwrap_or("(no id)"), r.error));
        }
        if out.iter().any(|t: &TenantSpec| t.id == spec.id) {
            return Err(format!("tenant {label}: defined twice"));
        }
        out.push(spec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_5_tenants_file_names_the_bad_setting() {
        let err = parse_tenants_toml("[[tenant]]\nid='a'\ntime_zone='UTC'\nsettings={ colour = true }\n").unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = parse_tenants_toml("[[tenant]]\nid='a'\ntime_zone='Nowhere/Land'\n").unwrap_err();
        assert!(err.contains("time_zone"), "{err}");
        let ok = parse_tenants_toml(
            "[[tenant]]\nid='a'\ntime_zone='UTC'\nmeter='cycle'\nsettings={cycle_anchor_day=15, lateness_horizon='P40D'}\nplan={kind='starter', alerts=['0.8']}\n",
        )
        .unwrap();
        assert_eq!(ok[0].initial.cycle_anchor_day, Some(15));
    }

    #[test]
    fn an_unknown_key_of_a_tenant_its_changes_or_its_plan_is_refused_by_name() {
        let tenant = "[[tenant]]\nid='a'\ntime_zone='UTC'\n";
        for (extra, named) in [
            ("plans={kind='starter'}\n", "plans"),
            ("plan={kind='starter', include=10}\n", "plan.include"),
            (
                "plan={kind='commitment', term_start='2025-01-01', term_end='2025-12-31', credits='10', topups=[]}\n",
                "plan.topups",
            ),
            (
                "plan={kind='commitment', term_start='2025-01-01', term_end='2025-12-31', credits='10', top_ups=[{at='2025-02-01T00:00:00Z', credit='5'}]}\n",
                "plan.top_ups.credit",
            ),
            ("plan={kind='starter', block_price={amount='39', currency='USD', cents=1}}\n", "plan.block_price.cents"),
            ("changes=[{at='2025-06-01T00:00:00Z', sett={generative_ai=true}}]\n", "changes.sett"),
            ("changes={at='2025-06-01T00:00:00Z'}\n", "changes"),
        ] {
            let err = parse_tenants_toml(&format!("{tenant}{extra}")).unwrap_err();
            assert!(err.contains(named), "{extra}: {err}");
        }
        let ok = parse_tenants_toml(&format!(
            "{tenant}plan={{kind='starter', included=10, block_price={{amount='39', currency='USD'}}}}\n"
        ))
        .unwrap();
        assert!(ok[0].plan.is_some());
    }
}
