//! Meters are data: which fields key an interaction, which window it lives in, and which
//! events qualify. DAR, CYC and MAU are presets of this one description; the engine has
//! no code path per vendor.

use std::fmt;

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

/// The three presets, as named in tenant settings and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterKind {
    Dar,
    Cycle,
    Mau,
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

impl MeterKind {
    pub fn spec(self) -> &'static MeterSpec {
        match self {
            MeterKind::Dar => &DAR,
            MeterKind::Cycle => &CYCLE,
            MeterKind::Mau => &MAU,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MeterKind::Dar => "dar",
            MeterKind::Cycle => "cycle",
            MeterKind::Mau => "mau",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "dar" => Some(MeterKind::Dar),
            "cycle" => Some(MeterKind::Cycle),
            "mau" => Some(MeterKind::Mau),
            _ => None,
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
