//! Meters are data: which fields key an interaction, which window it lives in, and which
//! events qualify. DAR, CYC and MAU are presets of this one description; the engine has
//! no code path per vendor. A tenant has one to eight meters (MS-1), each a preset with
//! its settings and a filter of the events it sees (MS-2).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::TimeDelta;
use rust_decimal::Decimal;

use super::terms::{Channel, Rounding, SenderRole};
use super::time::Instant;

/// The window an interaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The local calendar day (DAR-2).
    LocalDay,
    /// The local calendar month (MAU-1, PL-1, CR-8).
    LocalMonth,
    /// The monthly billing cycle starting on the anchor day (CYC-2).
    BillingCycle,
}

/// A field of the event that is part of an interaction's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    Consumer,
    Conversation,
    Integration,
}

/// How a `PROACTIVE` message counts on this meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProactivePolicy {
    /// Never by itself; the consumer's reply counts (DAR-5), and with
    /// `proactive_outbound_day = retroactive` the outbound's own period too.
    AwaitsReply,
    /// Qualifies like any message unless `proactive_requires_reply` is set (CYC-5).
    QualifiesUnlessRequiresReply,
}

/// One meter: key fields + window + qualifying events.
#[derive(Debug)]
pub struct MeterSpec {
    pub kind: MeterKind,
    /// The rule an interaction of this meter is counted by.
    pub rule: &'static str,
    pub window: Window,
    /// Always part of the key.
    pub key_fields: &'static [KeyField],
    /// Whether the `relationship = conversation` setting adds the conversation to the key
    /// (DAR-6).
    pub honours_relationship: bool,
    pub proactive: ProactivePolicy,
}

pub static DAR: MeterSpec = MeterSpec {
    kind: MeterKind::Dar,
    rule: "DAR-1",
    window: Window::LocalDay,
    key_fields: &[KeyField::Consumer],
    honours_relationship: true,
    proactive: ProactivePolicy::AwaitsReply,
};

pub static CYCLE: MeterSpec = MeterSpec {
    kind: MeterKind::Cycle,
    rule: "CYC-1",
    window: Window::BillingCycle,
    key_fields: &[KeyField::Consumer, KeyField::Integration],
    honours_relationship: false,
    proactive: ProactivePolicy::QualifiesUnlessRequiresReply,
};

pub static MAU: MeterSpec = MeterSpec {
    kind: MeterKind::Mau,
    rule: "MAU-1",
    window: Window::LocalMonth,
    key_fields: &[KeyField::Consumer],
    honours_relationship: false,
    proactive: ProactivePolicy::AwaitsReply,
};

/// The presets, as named in tenant settings and the API: three interaction meters, the
/// per-event meter (EV) and the outcome meter (OUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterKind {
    Dar,
    Cycle,
    Mau,
    Event,
    Outcome,
}

impl MeterKind {
    /// The interaction meter's description (DAR, CYC, MAU). Event and outcome meters are
    /// not keyed relationships; their rules are their own (EV, OUT), and this description
    /// only lends them its identity fields.
    pub fn spec(self) -> &'static MeterSpec {
        match self {
            MeterKind::Dar | MeterKind::Event | MeterKind::Outcome => &DAR,
            MeterKind::Cycle => &CYCLE,
            MeterKind::Mau => &MAU,
        }
    }

    /// Whether interactions of this meter are keyed relationships with surcharge lines
    /// (DAR, CYC, MAU), which Starter plans count (MS-5).
    pub fn is_interaction(self) -> bool {
        matches!(self, MeterKind::Dar | MeterKind::Cycle | MeterKind::Mau)
    }

    pub fn name(self) -> &'static str {
        match self {
            MeterKind::Dar => "dar",
            MeterKind::Cycle => "cycle",
            MeterKind::Mau => "mau",
            MeterKind::Event => "event",
            MeterKind::Outcome => "outcome",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "dar" => Some(MeterKind::Dar),
            "cycle" => Some(MeterKind::Cycle),
            "mau" => Some(MeterKind::Mau),
            "event" => Some(MeterKind::Event),
            "outcome" => Some(MeterKind::Outcome),
            _ => None,
        }
    }

    /// The window a meter of this preset counts in: its interactions' periods, or the
    /// local calendar month of event units and outcomes (EV-1, OUT-1).
    pub fn window(self) -> Window {
        match self {
            MeterKind::Event | MeterKind::Outcome => Window::LocalMonth,
            k => k.spec().window,
        }
    }
}

impl fmt::Display for MeterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl MeterSpec {
    /// Whether the key needs the integration, so that events must carry one (T-6).
    pub fn needs_integration(&self) -> bool {
        self.key_fields.contains(&KeyField::Integration)
    }
}

/// The kinds of event a meter filter can name (MS-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Message,
    ConversationOpened,
    Outcome,
}

impl EventType {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "message" => EventType::Message,
            "conversation_opened" => EventType::ConversationOpened,
            "outcome" => EventType::Outcome,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            EventType::Message => "message",
            EventType::ConversationOpened => "conversation_opened",
            EventType::Outcome => "outcome",
        }
    }
}

/// Which events a meter sees (MS-2): for each list given, the event must have the field
/// and its value must be in the list. `None`: the list is not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub event_types: Option<Vec<EventType>>,
    pub sender_roles: Option<Vec<SenderRole>>,
    pub channels: Option<Vec<Channel>>,
    pub integrations: Option<Vec<String>>,
}

/// The fields of an event a filter looks at; `None` where the event has no such field
/// (a conversation opened has no sender role, an outcome no channel).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub event_type: EventType,
    pub sender: Option<SenderRole>,
    pub channel: Option<Channel>,
    pub integration: Option<&'a str>,
}

impl Filter {
    pub fn sees(&self, e: &Seen<'_>) -> bool {
        fn within<T: PartialEq>(list: &Option<Vec<T>>, value: Option<T>) -> bool {
            match list {
                None => true,
                Some(list) => value.is_some_and(|v| list.contains(&v)),
            }
        }
        within(&self.event_types, Some(e.event_type))
            && within(&self.sender_roles, e.sender)
            && within(&self.channels, e.channel)
            && match &self.integrations {
                None => true,
                Some(list) => e.integration.is_some_and(|i| list.iter().any(|l| l == i)),
            }
    }
}

/// EV-2: how an event meter prices a month's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitPricing {
    pub allowance: u64,
    pub units_per_credit: u64,
    pub rounding: Rounding,
}

impl Default for UnitPricing {
    fn default() -> Self {
        UnitPricing { allowance: 0, units_per_credit: 1, rounding: Rounding::ProRata }
    }
}

impl UnitPricing {
    /// EV-2: the credits of a month's unit count, a pure function of the count (so each
    /// event adds the difference it makes, whatever the order). Pro rata is the quotient
    /// rounded half-even to 6 places.
    pub fn credits(&self, units: u64) -> Decimal {
        let billable = units.saturating_sub(self.allowance);
        let per = self.units_per_credit.max(1);
        match self.rounding {
            Rounding::ProRata => (Decimal::from(billable) / Decimal::from(per))
                .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointNearestEven),
            Rounding::CeilBlock => Decimal::from(billable.div_ceil(per)),
            Rounding::FloorBlock => Decimal::from(billable / per),
        }
    }
}

/// OUT-2, OUT-3: what an outcome meter prices, and how far back a revocation reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomePricing {
    pub prices: BTreeMap<String, Decimal>,
    pub revocation_window: TimeDelta,
}

impl Default for OutcomePricing {
    fn default() -> Self {
        OutcomePricing { prices: BTreeMap::new(), revocation_window: TimeDelta::hours(72) }
    }
}

/// One meter as defined (MS-1): an id, a preset with its settings, a filter. A meter's
/// definition never changes (MS-6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterDef {
    pub id: String,
    pub kind: MeterKind,
    pub filter: Filter,
    /// Event meters only.
    pub units: UnitPricing,
    /// Outcome meters only.
    pub outcomes: OutcomePricing,
}

impl MeterDef {
    /// The one meter of a tenant defined with `meter = "dar"` (MS-1): its id is the
    /// preset's name.
    pub fn single(kind: MeterKind) -> Self {
        MeterDef {
            id: kind.name().to_string(),
            kind,
            filter: Filter::default(),
            units: UnitPricing::default(),
            outcomes: OutcomePricing::default(),
        }
    }

    /// MS-1: 1 to 32 characters of `a-z`, `0-9`, `_`, `-`.
    pub fn check_id(id: &str) -> Result<(), String> {
        if id.is_empty() || id.len() > 32 {
            return Err("a meter id is 1 to 32 characters".into());
        }
        if !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
            return Err(format!("meter id `{id}`: only a-z, 0-9, '_' and '-' are allowed"));
        }
        Ok(())
    }
}

/// A meter of a compiled tenant: its definition, its dense index within the tenant
/// (stable: meters are only ever added), and when it is in force (MS-6).
#[derive(Debug, Clone)]
pub struct Meter {
    pub index: u8,
    pub id: Arc<str>,
    pub def: MeterDef,
    pub spec: &'static MeterSpec,
    /// First instant it sees events (`None`: from the beginning).
    pub from: Option<Instant>,
    /// First instant it no longer sees events (`None`: never retired).
    pub until: Option<Instant>,
}

impl Meter {
    pub fn kind(&self) -> MeterKind {
        self.def.kind
    }

    /// Whether the meter is in force at an instant (MS-6).
    pub fn in_force(&self, at: Instant) -> bool {
        self.from.is_none_or(|f| f <= at) && self.until.is_none_or(|u| at < u)
    }

    /// MS-2: whether the meter sees an event at `at` with these fields.
    pub fn sees(&self, at: Instant, seen: &Seen<'_>) -> bool {
        self.in_force(at) && self.def.filter.sees(seen)
    }

    pub fn window(&self) -> Window {
        self.def.kind.window()
    }
}
