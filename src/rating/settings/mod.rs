//! Tenant settings and how they change over time (T-5).
//!
//! A tenant is compiled once into two timelines:
//! - instant-effective settings (zone, feature flags, windows, prices), looked up by an
//!   event's instant;
//! - structural settings (`relationship`, `cycle_anchor_day`, `feature_attribution`,
//!   `gai_multiplies_addons`, the rounding modes), which take effect at the start of the
//!   first period that begins at or after the change, looked up by a period's first local
//!   date.

use std::sync::Arc;

use chrono::{NaiveDate, TimeDelta};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::meter::{Meter, MeterDef, MeterKind, MeterSpec, Window};
use super::money::{self, parse_decimal};
use super::plan::Plan;
pub use super::terms::Rounding;
use super::time::{self, Instant};

/// DAR-6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    Consumer,
    Conversation,
}

/// DAR-5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProactiveOutboundDay {
    ReplyDayOnly,
    Retroactive,
}

/// CR-6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureAttribution {
    AnyEvent,
    FirstEvent,
}

/// Surcharge features as bits, so an interaction's union of features is one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Features(pub u8);

impl Features {
    pub const GENERATIVE_AI: u8 = 1;
    pub const INTENT_LISTENING: u8 = 2;
    pub const PERFORMANCE_OPTIMIZER: u8 = 4;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    pub fn with(self, bit: u8, on: bool) -> Self {
        if on { Features(self.0 | bit) } else { Features(self.0 & !bit) }
    }

    pub fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }
}

/// Every setting, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub time_zone: Tz,
    pub features: Features,
    pub relationship: Relationship,
    pub proactive_outbound_day: ProactiveOutboundDay,
    pub proactive_reply_window: TimeDelta,
    pub lateness_horizon: TimeDelta,
    pub max_clock_skew: TimeDelta,
    pub proactive_requires_reply: bool,
    pub cycle_anchor_day: u32,
    pub cobrowse_credits: Decimal,
    pub functions_rounding: Rounding,
    pub overage_rounding: Rounding,
    pub gai_multiplies_addons: bool,
    pub feature_attribution: FeatureAttribution,
}

impl Settings {
    /// RULEBOOK defaults in `zone`.
    pub fn defaults(zone: Tz) -> Self {
        Settings {
            time_zone: zone,
            features: Features::default(),
            relationship: Relationship::Consumer,
            proactive_outbound_day: ProactiveOutboundDay::ReplyDayOnly,
            proactive_reply_window: TimeDelta::days(7),
            lateness_horizon: TimeDelta::days(35),
            max_clock_skew: TimeDelta::minutes(5),
            proactive_requires_reply: false,
            cycle_anchor_day: 1,
            cobrowse_credits: Decimal::ONE,
            functions_rounding: Rounding::ProRata,
            overage_rounding: Rounding::CeilBlock,
            gai_multiplies_addons: false,
            feature_attribution: FeatureAttribution::AnyEvent,
        }
    }

    /// Every setting as a patch that sets it (to report the settings in force).
    pub fn as_patch(&self) -> SettingsPatch {
        SettingsPatch {
            time_zone: Some(self.time_zone),
            generative_ai: Some(self.features.has(Features::GENERATIVE_AI)),
            intent_listening: Some(self.features.has(Features::INTENT_LISTENING)),
            performance_optimizer: Some(self.features.has(Features::PERFORMANCE_OPTIMIZER)),
            relationship: Some(self.relationship),
            proactive_outbound_day: Some(self.proactive_outbound_day),
            proactive_reply_window: Some(self.proactive_reply_window),
            lateness_horizon: Some(self.lateness_horizon),
            max_clock_skew: Some(self.max_clock_skew),
            proactive_requires_reply: Some(self.proactive_requires_reply),
            cycle_anchor_day: Some(self.cycle_anchor_day),
            cobrowse_credits: Some(self.cobrowse_credits),
            functions_rounding: Some(self.functions_rounding),
            overage_rounding: Some(self.overage_rounding),
            gai_multiplies_addons: Some(self.gai_multiplies_addons),
            feature_attribution: Some(self.feature_attribution),
            add_meter: None,
            retire_meter: None,
        }
    }

    pub fn apply(&mut self, patch: &SettingsPatch) {
        let p = patch;
        if let Some(v) = p.time_zone {
            self.time_zone = v;
        }
        if let Some(v) = p.generative_ai {
            self.features = self.features.with(Features::GENERATIVE_AI, v);
        }
        if let Some(v) = p.intent_listening {
            self.features = self.features.with(Features::INTENT_LISTENING, v);
        }
        if let Some(v) = p.performance_optimizer {
            self.features = self.features.with(Features::PERFORMANCE_OPTIMIZER, v);
        }
        set(&mut self.relationship, p.relationship);
        set(&mut self.proactive_outbound_day, p.proactive_outbound_day);
        set(&mut self.proactive_reply_window, p.proactive_reply_window);
        set(&mut self.lateness_horizon, p.lateness_horizon);
        set(&mut self.max_clock_skew, p.max_clock_skew);
        set(&mut self.proactive_requires_reply, p.proactive_requires_reply);
        set(&mut self.cycle_anchor_day, p.cycle_anchor_day);
        set(&mut self.cobrowse_credits, p.cobrowse_credits);
        set(&mut self.functions_rounding, p.functions_rounding);
        set(&mut self.overage_rounding, p.overage_rounding);
        set(&mut self.gai_multiplies_addons, p.gai_multiplies_addons);
        set(&mut self.feature_attribution, p.feature_attribution);
    }
}

fn set<T: Copy>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// A partial set of settings: the initial values of a tenant, or one change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsPatch {
    pub time_zone: Option<Tz>,
    pub generative_ai: Option<bool>,
    pub intent_listening: Option<bool>,
    pub performance_optimizer: Option<bool>,
    pub relationship: Option<Relationship>,
    pub proactive_outbound_day: Option<ProactiveOutboundDay>,
    pub proactive_reply_window: Option<TimeDelta>,
    pub lateness_horizon: Option<TimeDelta>,
    pub max_clock_skew: Option<TimeDelta>,
    pub proactive_requires_reply: Option<bool>,
    pub cycle_anchor_day: Option<u32>,
    pub cobrowse_credits: Option<Decimal>,
    pub functions_rounding: Option<Rounding>,
    pub overage_rounding: Option<Rounding>,
    pub gai_multiplies_addons: Option<bool>,
    pub feature_attribution: Option<FeatureAttribution>,
    /// MS-6: a meter added by this change (a whole definition with a new id).
    pub add_meter: Option<MeterDef>,
    /// MS-6: the id of a meter this change retires.
    pub retire_meter: Option<String>,
}

/// A setting value as read from a file (JSON scenario, TOML tenants file).
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

/// A refused setting: which one and why (T-5: INVALID_ARGUMENT naming the setting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{setting}`: {reason}")]
pub struct SettingError {
    pub setting: String,
    pub reason: String,
}

impl SettingError {
    pub fn new(setting: &str, reason: impl Into<String>) -> Self {
        SettingError { setting: setting.to_string(), reason: reason.into() }
    }
}

/// The names every setting is known by, in files and in the API.
pub const SETTING_NAMES: &[&str] = &[
    "time_zone",
    "generative_ai",
    "intent_listening",
    "performance_optimizer",
    "relationship",
    "proactive_outbound_day",
    "proactive_reply_window",
    "lateness_horizon",
    "max_clock_skew",
    "proactive_requires_reply",
    "cycle_anchor_day",
    "cobrowse_credits",
    "functions_rounding",
    "overage_rounding",
    "gai_multiplies_addons",
    "feature_attribution",
];

impl SettingsPatch {
    /// Sets one setting by name, validating its value.
    pub fn set(&mut self, name: &str, value: &SettingValue) -> Result<(), SettingError> {
        let err = |reason: &str| SettingError::new(name, reason);
        let as_bool = || match value {
            SettingValue::Bool(b) => Ok(*b),
            _ => Err(err("expected true or false")),
        };
        let as_text = || match value {
            SettingValue::Text(s) => Ok(s.as_str()),
            _ => Err(err("expected a string")),
        };
        let as_duration = || -> Result<TimeDelta, SettingError> {
            let d = time::parse_duration(as_text()?).map_err(|e| err(&e.to_string()))?;
            if d < TimeDelta::zero() {
                return Err(err("must not be negative"));
            }
            Ok(d)
        };
        let as_rounding = || match as_text()? {
            "pro_rata" => Ok(Rounding::ProRata),
            "ceil_block" => Ok(Rounding::CeilBlock),
            "floor_block" => Ok(Rounding::FloorBlock),
            _ => Err(err("expected pro_rata, ceil_block or floor_block")),
        };
        match name {
            "time_zone" => self.time_zone = Some(time::parse_zone(as_text()?).map_err(|e| err(&e.to_string()))?),
            "generative_ai" => self.generative_ai = Some(as_bool()?),
            "intent_listening" => self.intent_listening = Some(as_bool()?),
            "performance_optimizer" => self.performance_optimizer = Some(as_bool()?),
            "relationship" => {
                self.relationship = Some(match as_text()? {
                    "consumer" => Relationship::Consumer,
                    "conversation" => Relationship::Conversation,
                    _ => return Err(err("expected consumer or conversation")),
                })
            }
            "proactive_outbound_day" => {
                self.proactive_outbound_day = Some(match as_text()? {
                    "reply_day_only" => ProactiveOutboundDay::ReplyDayOnly,
                    "retroactive" => ProactiveOutboundDay::Retroactive,
                    _ => return Err(err("expected reply_day_only or retroactive")),
                })
            }
            "proactive_reply_window" => self.proactive_reply_window = Some(as_duration()?),
            "lateness_horizon" => self.lateness_horizon = Some(as_duration()?),
            "max_clock_skew" => self.max_clock_skew = Some(as_duration()?),
            "proactive_requires_reply" => self.proactive_requires_reply = Some(as_bool()?),
            "cycle_anchor_day" => {
                let day = match value {
                    SettingValue::Int(n) => *n,
                    _ => return Err(err("expected a whole number from 1 to 31")),
                };
                if !(1..=31).contains(&day) {
                    return Err(err("expected a whole number from 1 to 31"));
                }
                self.cycle_anchor_day = Some(day as u32);
            }
            "cobrowse_credits" => {
                let amount = match value {
                    SettingValue::Text(s) => parse_decimal(s),
                    SettingValue::Int(n) => Some(Decimal::from(*n)),
                    SettingValue::Bool(_) => None,
                }
                .ok_or_else(|| err("expected a decimal string"))?;
                if amount.is_sign_negative() && !amount.is_zero() {
                    return Err(err("must not be negative"));
                }
                if let Some(why) = money::amount_limit_violation(amount) {
                    return Err(err(&why));
                }
                self.cobrowse_credits = Some(amount);
            }
            "functions_rounding" => self.functions_rounding = Some(as_rounding()?),
            "overage_rounding" => self.overage_rounding = Some(as_rounding()?),
            "gai_multiplies_addons" => self.gai_multiplies_addons = Some(as_bool()?),
            "feature_attribution" => {
                self.feature_attribution = Some(match as_text()? {
                    "any_event" => FeatureAttribution::AnyEvent,
                    "first_event" => FeatureAttribution::FirstEvent,
                    _ => return Err(err("expected any_event or first_event")),
                })
            }
            "meter" => return Err(err("a tenant's meter never changes (T-5)")),
            "retire_meter" => self.retire_meter = Some(as_text()?.to_string()),
            "add_meter" => return Err(err("expected a meter definition (a table)")),
            _ => return Err(err("unknown setting")),
        }
        Ok(())
    }

    /// Whether the patch touches any structural setting.
    fn structural(&self) -> bool {
        self.relationship.is_some()
            || self.cycle_anchor_day.is_some()
            || self.feature_attribution.is_some()
            || self.gai_multiplies_addons.is_some()
            || self.functions_rounding.is_some()
            || self.overage_rounding.is_some()
    }
}

mod meters;

pub use meters::MAX_METERS;
use meters::{check_meters, counted_meter};

/// A tenant as configured: what the tenants file, the scenario format and the tenants API
/// all describe.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSpec {
    pub id: String,
    /// The preset of a tenant defined with one `meter` (MS-1). Ignored when `meters` is
    /// given.
    pub meter: MeterKind,
    /// The meters in force from the beginning (MS-1); empty: the one meter `meter`.
    pub meters: Vec<MeterDef>,
    /// Must set `time_zone`.
    pub initial: SettingsPatch,
    /// Sorted by instant when compiled; equal instants apply in the given order.
    pub changes: Vec<SettingsChange>,
    pub plan: Option<Plan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SettingsChange {
    pub id: Option<String>,
    pub at: Instant,
    pub patch: SettingsPatch,
}

/// A value of a structural setting from the first local date of the period it starts in.
#[derive(Debug, Clone)]
struct DatedTimeline<T>(Vec<(NaiveDate, T)>);

impl<T: Copy> DatedTimeline<T> {
    fn new(initial: T) -> Self {
        DatedTimeline(vec![(NaiveDate::MIN, initial)])
    }

    fn at(&self, date: NaiveDate) -> T {
        let i = self.0.partition_point(|(d, _)| *d <= date);
        self.0[i.saturating_sub(1)].1
    }

    /// A later change replaces whatever was scheduled on or after its date.
    fn push(&mut self, from: NaiveDate, value: T) {
        self.0.retain(|(d, _)| *d < from || *d == NaiveDate::MIN && from == NaiveDate::MIN);
        self.0.push((from, value));
    }

    /// The first scheduled date after `date`, if any.
    fn next_after(&self, date: NaiveDate) -> Option<NaiveDate> {
        self.0.iter().map(|(d, _)| *d).find(|d| *d > date)
    }
}

/// The local window of an interaction or a line, in the zone in force at its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub window: Window,
    /// First local date; the period's identity within a tenant.
    pub start_date: NaiveDate,
    /// First local date after the period.
    pub end_date: NaiveDate,
    pub zone: Tz,
}

impl Period {
    /// `2025-06-10` for a day and a cycle, `2025-06` for a month.
    pub fn label(&self) -> String {
        let mut buf = [0u8; 10];
        self.label_into(&mut buf).to_string()
    }

    /// The label written into a stack buffer: the hot path names interactions without
    /// allocating.
    pub fn label_into<'b>(&self, buf: &'b mut [u8; 10]) -> &'b str {
        use chrono::Datelike;
        let d = self.start_date;
        let year = d.year().clamp(0, 9999) as u32;
        let digits = [
            year / 1000,
            year / 100 % 10,
            year / 10 % 10,
            year % 10,
            d.month() / 10,
            d.month() % 10,
            d.day() / 10,
            d.day() % 10,
        ];
        let positions = [0, 1, 2, 3, 5, 6, 8, 9];
        for (pos, digit) in positions.iter().zip(digits) {
            buf[*pos] = b'0' + digit as u8;
        }
        buf[4] = b'-';
        buf[7] = b'-';
        let len = if self.window == Window::LocalMonth { 7 } else { 10 };
        std::str::from_utf8(&buf[..len]).expect("ASCII digits")
    }

    pub fn start(&self) -> Instant {
        time::start_of_local_date(self.start_date, self.zone)
    }

    pub fn end(&self) -> Instant {
        time::start_of_local_date(self.end_date, self.zone)
    }
}

/// Structural settings in force for one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Structure {
    pub relationship: Relationship,
    pub feature_attribution: FeatureAttribution,
    pub gai_multiplies_addons: bool,
}

/// A compiled tenant: its spec and the timelines events are judged by.
#[derive(Debug)]
pub struct Tenant {
    pub id: Arc<str>,
    /// Dense index for compact state entries; stable for the life of the engine.
    pub index: u32,
    /// The first meter's description (what a single-meter tenant counts by).
    pub meter: &'static MeterSpec,
    /// Every meter ever defined, by index: the initial ones, then those added (MS-6).
    pub meters: Vec<Meter>,
    /// The meter a statement's `dars` and a Starter plan count (MS-5), if any.
    pub counted_meter: Option<u8>,
    pub spec: TenantSpec,
    instant: Vec<(Instant, Settings)>,
    anchors: DatedTimeline<u32>,
    /// Per window (see [`window_slot`]): structural settings by the first local date of
    /// the period of that window they start in (T-5, MS-6).
    structures: [StructureTimelines; 3],
    functions_rounding: DatedTimeline<Rounding>,
    overage_rounding: DatedTimeline<Rounding>,
    /// Whether `proactive_outbound_day = retroactive` is ever in force, so that reply
    /// bookkeeping (DAR-5) is kept only for tenants that need it.
    pub any_retroactive: bool,
}

#[derive(Debug, Clone)]
struct StructureTimelines {
    relationship: DatedTimeline<Relationship>,
    attribution: DatedTimeline<FeatureAttribution>,
    gai_multiplies_addons: DatedTimeline<bool>,
}

fn window_slot(window: Window) -> usize {
    match window {
        Window::LocalDay => 0,
        Window::LocalMonth => 1,
        Window::BillingCycle => 2,
    }
}

const WINDOWS: [Window; 3] = [Window::LocalDay, Window::LocalMonth, Window::BillingCycle];

/// Why a tenant spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("tenant id: {0}")]
    BadId(String),
    #[error("initial settings must name a time_zone")]
    NoZone,
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("plan: {0}")]
    Plan(String),
}

impl Tenant {
    /// Compiles a spec. Changes are applied in instant order; a structural change is
    /// scheduled from the first period that begins at or after its instant.
    pub fn compile(spec: TenantSpec, index: u32) -> Result<Tenant, TenantError> {
        validate_tenant_id(&spec.id).map_err(TenantError::BadId)?;
        let zone = spec.initial.time_zone.ok_or(TenantError::NoZone)?;
        let defs = spec.initial_meters();
        check_meters(&defs, &spec.changes).map_err(|(_, e)| TenantError::Setting(e))?;
        let meter = defs[0].kind.spec();
        let counted_meter = counted_meter(&spec, &defs)?;
        let mut base = Settings::defaults(zone);
        base.apply(&spec.initial);
        if let Some(Plan::Commitment(c)) = &spec.plan
            && c.term_end < c.term_start
        {
            return Err(TenantError::Plan("term_end is before term_start".into()));
        }

        let mut changes = spec.changes.clone();
        changes.sort_by_key(|c| c.at);

        let timelines = StructureTimelines {
            relationship: DatedTimeline::new(base.relationship),
            attribution: DatedTimeline::new(base.feature_attribution),
            gai_multiplies_addons: DatedTimeline::new(base.gai_multiplies_addons),
        };
        let meters = defs
            .into_iter()
            .enumerate()
            .map(|(i, def)| Meter {
                index: i as u8,
                id: Arc::from(def.id.as_str()),
                spec: def.kind.spec(),
                def,
                from: None,
                until: None,
            })
            .collect();
        let mut tenant = Tenant {
            id: Arc::from(spec.id.as_str()),
            index,
            meter,
            meters,
            counted_meter,
            instant: vec![(Instant::MIN_UTC, base.clone())],
            anchors: DatedTimeline::new(base.cycle_anchor_day),
            structures: [timelines.clone(), timelines.clone(), timelines],
            functions_rounding: DatedTimeline::new(base.functions_rounding),
            overage_rounding: DatedTimeline::new(base.overage_rounding),
            any_retroactive: base.proactive_outbound_day == ProactiveOutboundDay::Retroactive,
            spec,
        };

        for change in &changes {
            let mut next = tenant.instant.last().expect("never empty").1.clone();
            next.apply(&change.patch);
            tenant.any_retroactive |= next.proactive_outbound_day == ProactiveOutboundDay::Retroactive;
            if tenant.instant.last().is_some_and(|(at, _)| *at == change.at) {
                tenant.instant.last_mut().expect("never empty").1 = next;
            } else {
                tenant.instant.push((change.at, next));
            }
            if change.patch.structural() {
                tenant.schedule_structural(change);
            }
            tenant.schedule_meter_change(change);
        }
        Ok(tenant)
    }

    fn schedule_structural(&mut self, change: &SettingsChange) {
        let p = &change.patch;
        // The anchor first: the meter's own periods after it depend on it (CYC-6).
        if let Some(anchor) = p.cycle_anchor_day {
            let from = self.first_period_start_at_or_after(change.at, Window::BillingCycle);
            self.anchors.push(from, anchor);
        }
        // Each meter's structure switches at its own next period start (MS-6): one timeline
        // per window.
        for window in WINDOWS {
            let from = self.first_period_start_at_or_after(change.at, window);
            let t = &mut self.structures[window_slot(window)];
            if let Some(v) = p.relationship {
                t.relationship.push(from, v);
            }
            if let Some(v) = p.feature_attribution {
                t.attribution.push(from, v);
            }
            if let Some(v) = p.gai_multiplies_addons {
                t.gai_multiplies_addons.push(from, v);
            }
        }
        let month_from = self.first_period_start_at_or_after(change.at, Window::LocalMonth);
        if let Some(v) = p.functions_rounding {
            self.functions_rounding.push(month_from, v);
        }
        if let Some(v) = p.overage_rounding {
            self.overage_rounding.push(month_from, v);
        }
    }

    /// T-5: the first local date of the first period (of `window`) that begins at or
    /// after `at`, judged in the zone in force at `at`.
    fn first_period_start_at_or_after(&self, at: Instant, window: Window) -> NaiveDate {
        let period = self.period_in(window, at);
        if period.start() == at { period.start_date } else { period.end_date }
    }

    /// The settings in force at an instant.
    pub fn settings_at(&self, at: Instant) -> &Settings {
        let i = self.instant.partition_point(|(from, _)| *from <= at);
        &self.instant[i.saturating_sub(1)].1
    }

    /// The longest `lateness_horizon` any of the tenant's settings sets: how long state
    /// must be kept after its period ends (T-3).
    pub fn max_lateness_horizon(&self) -> TimeDelta {
        self.instant.iter().map(|(_, s)| s.lateness_horizon).max().unwrap_or_default()
    }

    /// The longest `max_clock_skew` any of the tenant's settings sets: how far ahead of
    /// its arrival an accepted event may be dated (T-4).
    pub fn max_clock_skew(&self) -> TimeDelta {
        self.instant.iter().map(|(_, s)| s.max_clock_skew).max().unwrap_or_default()
    }

    /// The meter's period of an event at `at`.
    pub fn period(&self, at: Instant) -> Period {
        self.period_in(self.meter.window, at)
    }

    /// The period of `window` containing `at`, in the zone in force at `at`.
    pub fn period_in(&self, window: Window, at: Instant) -> Period {
        let zone = self.settings_at(at).time_zone;
        let date = time::local_date(at, zone);
        self.period_of_date(window, date, zone)
    }

    /// The period of `window` containing the local `date`.
    pub fn period_of_date(&self, window: Window, date: NaiveDate, zone: Tz) -> Period {
        let (start_date, end_date) = match window {
            Window::LocalDay => (date, date.succ_opt().unwrap_or(date)),
            Window::LocalMonth => (time::first_of_month(date), time::first_of_next_month(date)),
            Window::BillingCycle => {
                let segment = self.anchors.0.partition_point(|(d, _)| *d <= date).saturating_sub(1);
                let (segment_start, anchor) = self.anchors.0[segment];
                let start = time::anchor_on_or_before(date, anchor).max(segment_start);
                let mut end = time::anchor_after(date, anchor);
                if let Some(next_segment) = self.anchors.next_after(date) {
                    end = end.min(next_segment);
                }
                (start, end)
            }
        };
        Period { window, start_date, end_date, zone }
    }

    /// Structural settings of the first meter's period starting on `start_date`.
    pub fn structure(&self, start_date: NaiveDate) -> Structure {
        self.structure_in(self.meter.window, start_date)
    }

    /// Structural settings of a period of `window` starting on `start_date`.
    pub fn structure_in(&self, window: Window, start_date: NaiveDate) -> Structure {
        let t = &self.structures[window_slot(window)];
        Structure {
            relationship: t.relationship.at(start_date),
            feature_attribution: t.attribution.at(start_date),
            gai_multiplies_addons: t.gai_multiplies_addons.at(start_date),
        }
    }

    /// The meter of a dense index.
    pub fn meter_at(&self, index: u8) -> &Meter {
        &self.meters[usize::from(index).min(self.meters.len() - 1)]
    }

    /// The meter of an id, if the tenant ever defined it.
    pub fn meter_named(&self, id: &str) -> Option<&Meter> {
        self.meters.iter().find(|m| &*m.id == id)
    }

    /// Whether the tenant is the single-meter shape of part one: one interaction meter,
    /// never changed. Its books need no per-meter breakdown.
    pub fn single_meter(&self) -> bool {
        self.meters.len() == 1 && self.meters[0].kind().is_interaction()
    }

    /// The first meter in force at an instant (T-3: a co-browse event is judged by its
    /// period).
    pub fn first_meter_at(&self, at: Instant) -> Option<&Meter> {
        self.meters.iter().find(|m| m.in_force(at))
    }

    /// CR-8 rounding for the local month starting on `month_start`.
    pub fn functions_rounding(&self, month_start: NaiveDate) -> Rounding {
        self.functions_rounding.at(month_start)
    }

    /// PL-1 overage rounding for the local month starting on `month_start`.
    pub fn overage_rounding(&self, month_start: NaiveDate) -> Rounding {
        self.overage_rounding.at(month_start)
    }

    pub fn plan(&self) -> Option<&Plan> {
        self.spec.plan.as_ref()
    }

    /// The zone in force at an instant.
    pub fn zone_at(&self, at: Instant) -> Tz {
        self.settings_at(at).time_zone
    }
}

/// Tenant ids: 1..=128 bytes of letters, digits, '-', '_', '.'.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 128 {
        return Err("longer than 128 bytes".into());
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("only letters, digits, '-', '_' and '.' are allowed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
