//! The scenario runner: the RULEBOOK's test vectors (`shared/scenarios/*.json`, format in
//! their README) run through the same code path the server uses.
//!
//! A scenario runs against a [`Target`]: the in-process engine, or (with `--server`) a
//! live daybook over gRPC. Every key present in `expect` is checked exactly: sets as
//! sets, decimals by value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::rating::event::{
    Channel, RawBody, RawCobrowse, RawConversation, RawEnum, RawEvent, RawMessage, RawMoney, RawOutcome, RawVoid,
    SenderRole,
};
use crate::rating::money::parse_decimal;
use crate::rating::settings::TenantSpec;
use crate::rating::time::{self, Instant};
use crate::tenants::{RefusedChange, tenant_from_value};

/// One loaded scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub rules: Vec<String>,
    pub now: Option<Instant>,
    pub tenant: TenantSpec,
    pub refused_changes: Vec<RefusedChange>,
    pub events: Vec<RawEvent>,
    pub expect: Map<String, Value>,
    /// The scenario-format features of RULEBOOK part two (MS, EV, OUT, COR) it uses: a
    /// target that does not serve them yet reports the scenario as unsupported.
    pub part_two: Vec<&'static str>,
}

/// An interaction as the scenario format names it: `consumer`, `period`, and the key's
/// `integration` or `conversation` when the meter keys on them; with several meters its
/// `meter`, and an outcome's `outcome_type`.
pub type InteractionView = BTreeMap<String, String>;

/// The interactions of a tenant: those that stand, and those voided (COR-2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub standing: Vec<InteractionView>,
    pub voided: Vec<InteractionView>,
}

/// One meter's figures as the scenario format names them (MS-3).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterView {
    pub interactions: i64,
    pub units: u64,
    pub credits: Decimal,
}

/// A statement as the scenario format names its fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatementView {
    pub dars: u64,
    pub credits: Decimal,
    pub overage: BTreeMap<String, Decimal>,
    pub overage_credits: Decimal,
    pub expired_credits: Decimal,
    pub platform_users_over_limit: bool,
}

/// Where a scenario runs.
pub trait Target {
    /// Creates the scenario's tenant (a fresh one per scenario).
    fn create_tenant(&mut self, spec: &TenantSpec) -> Result<(), String>;
    /// Sends one event; `Err` carries the gRPC code name of a refusal.
    fn ingest(&mut self, event: RawEvent, now: Option<Instant>) -> Result<(), String>;
    /// `with_meter`: name each interaction's meter (the tenant has or gains `meters`).
    fn interactions(&mut self, tenant: &str, with_meter: bool) -> Result<Listing, String>;
    /// Per meter id: its interactions, units and credits over all time (MS-3).
    fn meters(&mut self, tenant: &str) -> Result<BTreeMap<String, MeterView>, String>;
    /// Total credits and pass-through per currency over all time.
    fn usage(&mut self, tenant: &str) -> Result<(Decimal, BTreeMap<String, Decimal>), String>;
    fn statement(&mut self, tenant: &str, period: &str) -> Result<StatementView, String>;
    /// Every alert raised: (period, threshold).
    fn alerts(&mut self, tenant: &str) -> Result<Vec<(String, Decimal)>, String>;
}

/// The outcome of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail(Vec<String>),
    Skip(String),
    /// The scenario uses rules daybook does not implement yet (the features named).
    Unsupported(String),
}

/// How a run of scenario files ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    /// Skipped by the target (e.g. `now` over gRPC).
    pub skipped: usize,
    /// Using rules not implemented yet (RULEBOOK part two).
    pub unsupported: usize,
}

/// The features of RULEBOOK part two a scenario uses (several meters, event and outcome
/// meters, corrections), found from the format's keys alone. The engine rates them; a
/// target that cannot serve them yet (a live server in Redis mode, or the gRPC runner
/// until the API reads them back) reports such a scenario as unsupported rather than
/// run, so that the runner's caller decides whether that fails its run.
pub fn part_two_features(scenario: &Value) -> Vec<&'static str> {
    let mut found = Vec::new();
    let tenant = &scenario["tenant"];
    if tenant.get("meters").is_some() {
        found.push("tenant.meters (MS-1)");
    }
    let changes = tenant.get("changes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if changes.iter().any(|c| c["set"].get("add_meter").is_some() || c["set"].get("retire_meter").is_some()) {
        found.push("add_meter/retire_meter (MS-6)");
    }
    if tenant["plan"].get("meter").is_some() {
        found.push("plan.meter (MS-5)");
    }
    let events = scenario.get("events").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (kind, feature) in [("outcome", "outcome events (OUT)"), ("void", "void events (COR)")] {
        if events.iter().any(|e| e["type"] == kind) {
            found.push(feature);
        }
    }
    for (key, feature) in [("voided", "expect.voided (COR-2)"), ("meters", "expect.meters (MS-3)")] {
        if scenario["expect"].get(key).is_some() {
            found.push(feature);
        }
    }
    found
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
        Scenario::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Scenario, String> {
        let obj = value.as_object().ok_or("a scenario is a JSON object")?;
        let name = obj.get("name").and_then(Value::as_str).ok_or("missing `name`")?.to_string();
        let rules = obj
            .get("rules")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let part_two = part_two_features(value);
        let now = match obj.get("now").and_then(Value::as_str) {
            Some(s) => Some(time::parse_instant(s).map_err(|e| format!("`now`: {e}"))?),
            None => None,
        };
        let (tenant, refused_changes) =
            tenant_from_value(obj.get("tenant").ok_or("missing `tenant`")?).map_err(|e| format!("tenant: {e}"))?;
        let mut events = Vec::new();
        for event in obj.get("events").and_then(Value::as_array).ok_or("missing `events`")? {
            for expanded in expand_repeat(event)? {
                events.push(raw_event(&tenant.id, &expanded));
            }
        }
        let expect = obj.get("expect").and_then(Value::as_object).cloned().unwrap_or_default();
        Ok(Scenario { name, rules, now, tenant, refused_changes, events, expect, part_two })
    }

    /// Runs the scenario and compares every expectation.
    pub fn run(&self, target: &mut dyn Target) -> Result<Vec<String>, String> {
        target.create_tenant(&self.tenant)?;
        let tenant = self.tenant.id.as_str();
        let mut rejected: BTreeSet<(String, String)> = BTreeSet::new();
        for refused in &self.refused_changes {
            if let Some(id) = &refused.id {
                rejected.insert((id.clone(), "INVALID_ARGUMENT".into()));
            }
        }
        for event in &self.events {
            let id = event.event_id.clone();
            match target.ingest(event.clone(), self.now) {
                Ok(()) => {}
                // The target does not serve this event: not a refusal by the rules.
                Err(code) if code.starts_with(UNSUPPORTED) => return Err(code),
                Err(code) => {
                    rejected.insert((id, code));
                }
            }
        }

        let mut diffs = Vec::new();
        let with_meter =
            !self.tenant.meters.is_empty() || self.tenant.changes.iter().any(|c| c.patch.add_meter.is_some());
        let listing = target.interactions(tenant, with_meter)?;
        let interactions = &listing.standing;
        for (key, actual) in [("interactions", &listing.standing), ("voided", &listing.voided)] {
            if let Some(expected) = self.expect.get(key) {
                let expected: BTreeSet<InteractionView> =
                    expected.as_array().ok_or(format!("`{key}` must be a list"))?.iter().map(string_map).collect();
                let actual: BTreeSet<InteractionView> = actual.iter().cloned().collect();
                set_diff(key, &expected, &actual, &mut diffs);
            }
        }
        if let Some(expected) = self.expect.get("meters") {
            let actual = target.meters(tenant)?;
            for (id, want) in expected.as_object().ok_or("`meters` must be an object")? {
                let have = actual.get(id).copied().unwrap_or_default();
                if let Some(n) = want.get("interactions") {
                    let n = n.as_i64().ok_or("`meters.*.interactions` must be a number")?;
                    if n != have.interactions {
                        diffs.push(format!("meters.{id}.interactions: expected {n}, got {}", have.interactions));
                    }
                }
                if let Some(n) = want.get("units") {
                    let n = n.as_u64().ok_or("`meters.*.units` must be a number")?;
                    if n != have.units {
                        diffs.push(format!("meters.{id}.units: expected {n}, got {}", have.units));
                    }
                }
                if let Some(c) = want.get("credits") {
                    decimal_diff(&format!("meters.{id}.credits"), c, have.credits, &mut diffs)?;
                }
            }
        }
        if let Some(expected) = self.expect.get("interaction_count") {
            let expected = expected.as_u64().ok_or("`interaction_count` must be a number")?;
            if expected != interactions.len() as u64 {
                diffs.push(format!("interaction_count: expected {expected}, got {}", interactions.len()));
            }
        }
        if self.expect.contains_key("credits") || self.expect.contains_key("pass_through") {
            let (credits, pass_through) = target.usage(tenant)?;
            if let Some(expected) = self.expect.get("credits") {
                decimal_diff("credits", expected, credits, &mut diffs)?;
            }
            if let Some(expected) = self.expect.get("pass_through") {
                money_diff("pass_through", expected, &pass_through, &mut diffs)?;
            }
        }
        if let Some(expected) = self.expect.get("rejected") {
            let expected: BTreeSet<(String, String)> = expected
                .as_array()
                .ok_or("`rejected` must be a list")?
                .iter()
                .map(|r| {
                    let m = string_map(r);
                    (m.get("id").cloned().unwrap_or_default(), m.get("code").cloned().unwrap_or_default())
                })
                .collect();
            set_diff("rejected", &expected, &rejected, &mut diffs);
        }
        if let Some(expected) = self.expect.get("statements") {
            for statement in expected.as_array().ok_or("`statements` must be a list")? {
                let period = statement.get("period").and_then(Value::as_str).ok_or("statement without `period`")?;
                let actual = target.statement(tenant, period)?;
                statement_diff(period, statement.as_object().expect("object"), &actual, &mut diffs)?;
            }
        }
        if let Some(expected) = self.expect.get("alerts") {
            let expected: BTreeSet<(String, Decimal)> = expected
                .as_array()
                .ok_or("`alerts` must be a list")?
                .iter()
                .map(|a| {
                    let m = string_map(a);
                    let threshold =
                        m.get("threshold").and_then(|t| parse_decimal(t)).map(|d| d.normalize()).unwrap_or_default();
                    (m.get("period").cloned().unwrap_or_default(), threshold)
                })
                .collect();
            let actual: BTreeSet<(String, Decimal)> =
                target.alerts(tenant)?.into_iter().map(|(p, t)| (p, t.normalize())).collect();
            set_diff("alerts", &expected, &actual, &mut diffs);
        }
        Ok(diffs)
    }
}

/// Expands `"repeat": N`: N events with `{n}` replaced by 1..N, zero-padded to N's width.
fn expand_repeat(event: &Value) -> Result<Vec<Value>, String> {
    let Some(n) = event.get("repeat") else {
        return Ok(vec![event.clone()]);
    };
    let n = n.as_u64().ok_or("`repeat` must be a whole number")?;
    let width = n.to_string().len();
    let mut out = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let mut copy = event.as_object().ok_or("an event is an object")?.clone();
        copy.remove("repeat");
        for value in copy.values_mut() {
            if let Value::String(s) = value {
                *s = s.replace("{n}", &format!("{i:0width$}"));
            }
        }
        out.push(Value::Object(copy));
    }
    Ok(out)
}

/// Converts a scenario event to the transport-neutral raw form. Nothing is validated
/// here: that is the engine's job, exactly as for the server.
pub fn raw_event(tenant: &str, event: &Value) -> RawEvent {
    let s = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let channel = || match event.get("channel").and_then(Value::as_str) {
        None => RawEnum::Missing,
        Some(c) => Channel::parse(c).map(RawEnum::Known).unwrap_or_else(|| RawEnum::Unknown(c.into())),
    };
    let body = match event.get("type").and_then(Value::as_str).unwrap_or_default() {
        "message" => RawBody::Message(RawMessage {
            consumer_id: s("consumer"),
            conversation_id: s("conversation"),
            sender_role: match event.get("sender").and_then(Value::as_str) {
                None => RawEnum::Missing,
                Some(r) => SenderRole::parse(r).map(RawEnum::Known).unwrap_or_else(|| RawEnum::Unknown(r.into())),
            },
            sender_id: s("sender_id"),
            channel: channel(),
            integration_id: s("integration"),
            provider_price: event.get("provider_price").filter(|p| !p.is_null()).map(|p| RawMoney {
                amount: match p.get("amount") {
                    Some(Value::String(a)) => a.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                },
                currency: p.get("currency").and_then(Value::as_str).unwrap_or_default().to_string(),
            }),
        }),
        "conversation_opened" => RawBody::ConversationOpened(RawConversation {
            consumer_id: s("consumer"),
            conversation_id: s("conversation"),
            channel: channel(),
            integration_id: s("integration"),
        }),
        "cobrowse" => RawBody::Cobrowse(RawCobrowse {
            consumer_id: s("consumer"),
            conversation_id: s("conversation"),
            session_id: s("session"),
            established: event.get("established").and_then(Value::as_bool).unwrap_or(false),
        }),
        "function_invocations" => RawBody::FunctionInvocations { count: event.get("count").and_then(Value::as_i64) },
        "outcome" => RawBody::Outcome(RawOutcome {
            consumer_id: s("consumer"),
            conversation_id: s("conversation"),
            outcome_type: s("outcome_type"),
            revoked: event.get("revoked").and_then(Value::as_bool).unwrap_or(false),
        }),
        "void" => {
            // Absent and empty selectors differ (COR-4): only present ones are passed.
            let given = |name: &str| event.get(name).map(|v| v.as_str().unwrap_or_default().to_string());
            RawBody::Void(RawVoid {
                from: s("from"),
                to: s("to"),
                reason: s("reason"),
                meter: given("meter"),
                consumer_id: given("consumer"),
                conversation_id: given("conversation"),
                integration_id: given("integration"),
                outcome_type: given("outcome_type"),
                by: None,
            })
        }
        other => RawBody::Unknown(other.to_string()),
    };
    RawEvent { tenant_id: tenant.to_string(), event_id: s("id"), event_time: s("at"), body }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn set_diff<T: Ord + std::fmt::Debug>(
    what: &str,
    expected: &BTreeSet<T>,
    actual: &BTreeSet<T>,
    diffs: &mut Vec<String>,
) {
    let missing: Vec<_> = expected.difference(actual).collect();
    let extra: Vec<_> = actual.difference(expected).collect();
    if !missing.is_empty() {
        diffs.push(format!("{what}: missing {missing:?}"));
    }
    if !extra.is_empty() {
        diffs.push(format!("{what}: unexpected {extra:?}"));
    }
}

fn expected_decimal(what: &str, value: &Value) -> Result<Decimal, String> {
    match value {
        Value::String(s) => parse_decimal(s).ok_or_else(|| format!("{what}: `{s}` is not a decimal")),
        Value::Number(n) => parse_decimal(&n.to_string()).ok_or_else(|| format!("{what}: `{n}` is not a decimal")),
        _ => Err(format!("{what}: expected a decimal string")),
    }
}

fn decimal_diff(what: &str, expected: &Value, actual: Decimal, diffs: &mut Vec<String>) -> Result<(), String> {
    let expected = expected_decimal(what, expected)?;
    if expected != actual {
        diffs.push(format!("{what}: expected {expected}, got {actual}"));
    }
    Ok(())
}

/// Money per currency; a currency absent on one side is zero.
fn money_diff(
    what: &str,
    expected: &Value,
    actual: &BTreeMap<String, Decimal>,
    diffs: &mut Vec<String>,
) -> Result<(), String> {
    let expected = expected.as_object().ok_or_else(|| format!("{what}: expected a map of currency to amount"))?;
    let mut currencies: BTreeSet<&str> = expected.keys().map(String::as_str).collect();
    currencies.extend(actual.keys().map(String::as_str));
    for currency in currencies {
        let want = match expected.get(currency) {
            Some(v) => expected_decimal(what, v)?,
            None => Decimal::ZERO,
        };
        let got = actual.get(currency).copied().unwrap_or_default();
        if want != got {
            diffs.push(format!("{what} {currency}: expected {want}, got {got}"));
        }
    }
    Ok(())
}

fn statement_diff(
    period: &str,
    expected: &Map<String, Value>,
    actual: &StatementView,
    diffs: &mut Vec<String>,
) -> Result<(), String> {
    let what = |field: &str| format!("statement {period} {field}");
    for (field, value) in expected {
        match field.as_str() {
            "period" => {}
            "dars" => {
                let want = value.as_u64().ok_or_else(|| what("dars must be a number"))?;
                if want != actual.dars {
                    diffs.push(format!("{}: expected {want}, got {}", what("dars"), actual.dars));
                }
            }
            "credits" => decimal_diff(&what("credits"), value, actual.credits, diffs)?,
            "overage_credits" => decimal_diff(&what("overage_credits"), value, actual.overage_credits, diffs)?,
            "expired_credits" => decimal_diff(&what("expired_credits"), value, actual.expired_credits, diffs)?,
            "overage" => money_diff(&what("overage"), value, &actual.overage, diffs)?,
            "platform_users_over_limit" => {
                let want = value.as_bool().ok_or_else(|| what("platform_users_over_limit must be a boolean"))?;
                if want != actual.platform_users_over_limit {
                    diffs.push(format!(
                        "{}: expected {want}, got {}",
                        what("platform_users_over_limit"),
                        actual.platform_users_over_limit
                    ));
                }
            }
            other => return Err(format!("{}: unknown statement field", what(other))),
        }
    }
    Ok(())
}

/// Every `*.json` file of the directories, sorted by path.
pub fn scenario_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for dir in dirs {
        if dir.is_file() {
            files.push(dir.clone());
            continue;
        }
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A target's error that means "this target does not serve what the scenario uses"
/// (a tenant a shared Redis store refuses), not a wrong answer.
pub const UNSUPPORTED: &str = "UNSUPPORTED: ";

/// Runs every scenario file, printing `PASS name`, `FAIL name: ...`, `SKIP name: ...` or
/// `UNSUPPORTED name: ...` per scenario and `N passed, M failed` (`, K skipped` when any
/// was skipped or unsupported) last.
pub fn run_files(
    files: &[PathBuf],
    mut target_for: impl FnMut(&Scenario) -> Result<Box<dyn Target>, Verdict>,
    out: &mut dyn std::io::Write,
) -> Tally {
    let mut tally = Tally::default();
    for file in files {
        let label = file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let (name, verdict) = match Scenario::load(file) {
            Err(e) => (label, Verdict::Fail(vec![e])),
            Ok(scenario) => {
                let verdict = match target_for(&scenario) {
                    Err(verdict) => verdict,
                    Ok(mut target) => match scenario.run(target.as_mut()) {
                        Ok(diffs) if diffs.is_empty() => Verdict::Pass,
                        Ok(diffs) => Verdict::Fail(diffs),
                        Err(e) => match e.strip_prefix(UNSUPPORTED) {
                            Some(why) => Verdict::Unsupported(why.to_string()),
                            None => Verdict::Fail(vec![e]),
                        },
                    },
                };
                (scenario.name, verdict)
            }
        };
        let _ = match verdict {
            Verdict::Pass => {
                tally.passed += 1;
                writeln!(out, "PASS {name}")
            }
            Verdict::Fail(diffs) => {
                tally.failed += 1;
                writeln!(out, "FAIL {name}: {}", diffs.join("; "))
            }
            Verdict::Skip(why) => {
                tally.skipped += 1;
                writeln!(out, "SKIP {name}: {why}")
            }
            Verdict::Unsupported(why) => {
                tally.unsupported += 1;
                writeln!(out, "UNSUPPORTED {name}: {why}")
            }
        };
    }
    let (passed, failed, skipped) = (tally.passed, tally.failed, tally.skipped + tally.unsupported);
    let _ = if skipped > 0 {
        writeln!(out, "{passed} passed, {failed} failed, {skipped} skipped")
    } else {
        writeln!(out, "{passed} passed, {failed} failed")
    };
    tally
}

/// Runs scenarios on an in-process engine: the code path the server calls.
pub struct EngineTarget {
    engine: crate::rating::Engine,
    records: Vec<crate::rating::Record>,
}

impl Default for EngineTarget {
    fn default() -> Self {
        EngineTarget { engine: crate::rating::Engine::new(crate::rating::EngineConfig::default()), records: Vec::new() }
    }
}

impl EngineTarget {
    pub fn engine(&self) -> &crate::rating::Engine {
        &self.engine
    }

    pub fn records(&self) -> &[crate::rating::Record] {
        &self.records
    }
}

/// The scenario view of an interaction.
pub fn interaction_view(i: &crate::rating::outcome::Interaction, with_meter: bool) -> InteractionView {
    let mut view = BTreeMap::new();
    if with_meter {
        view.insert("meter".to_string(), i.meter_id.to_string());
    }
    if let Some(t) = &i.outcome_type {
        view.insert("outcome_type".to_string(), t.clone());
    }
    view.insert("consumer".to_string(), i.key.consumer.clone());
    view.insert("period".to_string(), i.period.label.clone());
    if let Some(c) = &i.key.conversation {
        view.insert("conversation".to_string(), c.clone());
    }
    if let Some(c) = &i.key.integration {
        view.insert("integration".to_string(), c.clone());
    }
    view
}

/// The scenario view of a statement.
pub fn statement_view(s: &crate::rating::ledger::Statement) -> StatementView {
    StatementView {
        dars: s.dars,
        credits: s.totals.credits(),
        overage: s.overage.iter().map(|(c, a)| (c.to_string(), a)).collect(),
        overage_credits: s.overage_credits,
        expired_credits: s.expired_credits,
        platform_users_over_limit: s.platform_users_over_limit,
    }
}

impl Target for EngineTarget {
    fn create_tenant(&mut self, spec: &TenantSpec) -> Result<(), String> {
        self.engine.put_tenant(spec.clone()).map(|_| ()).map_err(|e| e.to_string())
    }

    fn ingest(&mut self, event: RawEvent, now: Option<Instant>) -> Result<(), String> {
        self.engine.ingest(event, now, &mut self.records).map(|_| ()).map_err(|r| r.code.name().to_string())
    }

    fn interactions(&mut self, tenant: &str, with_meter: bool) -> Result<Listing, String> {
        use crate::rating::RecordBody;
        // The records in order: interactions start (some voided from the start), are
        // withdrawn when their billed outcome moves (OUT-4), or voided later (COR-2).
        let mut standing: BTreeMap<crate::rating::ids::RecordId, (InteractionView, bool)> = BTreeMap::new();
        for r in self.records.iter().filter(|r| &*r.tenant == tenant) {
            match &r.body {
                RecordBody::Interaction(i) => {
                    standing.insert(i.id, (interaction_view(i, with_meter), i.voided_by.is_some()));
                }
                RecordBody::Withdrawn(w) if w.voided => {
                    if let Some(entry) = standing.get_mut(&w.interaction_id) {
                        entry.1 = true;
                    }
                }
                RecordBody::Withdrawn(w) => {
                    standing.remove(&w.interaction_id);
                }
                _ => {}
            }
        }
        let mut listing = Listing::default();
        for (view, voided) in standing.into_values() {
            if voided { listing.voided.push(view) } else { listing.standing.push(view) }
        }
        Ok(listing)
    }

    fn meters(&mut self, tenant: &str) -> Result<BTreeMap<String, MeterView>, String> {
        let t = self.engine.tenant(tenant).ok_or("unknown tenant")?;
        let totals = self.engine.usage(tenant, None, None).ok_or("unknown tenant")?;
        Ok(t.meters
            .iter()
            .map(|m| {
                let figures = totals.meter(&t, m.index);
                let view =
                    MeterView { interactions: figures.interactions, units: figures.units, credits: figures.credits };
                (m.id.to_string(), view)
            })
            .collect())
    }

    fn usage(&mut self, tenant: &str) -> Result<(Decimal, BTreeMap<String, Decimal>), String> {
        let totals = self.engine.usage(tenant, None, None).ok_or("unknown tenant")?;
        Ok((totals.credits(), totals.pass_through.iter().map(|(c, a)| (c.to_string(), a)).collect()))
    }

    fn statement(&mut self, tenant: &str, period: &str) -> Result<StatementView, String> {
        let period = crate::rating::ledger::StatementPeriod::parse(period)
            .ok_or_else(|| format!("bad statement period `{period}`"))?;
        self.engine.statement(tenant, &period).map(|s| statement_view(&s)).ok_or_else(|| "unknown tenant".to_string())
    }

    fn alerts(&mut self, tenant: &str) -> Result<Vec<(String, Decimal)>, String> {
        let statements = self.engine.statements(tenant).ok_or("unknown tenant")?;
        Ok(statements.iter().flat_map(|s| s.alerts.iter().map(|a| (a.period.clone(), a.threshold))).collect())
    }
}

mod grpc;
pub use grpc::GrpcTarget;
