//! What the engine answers for one event ([`Outcome`], [`Refusal`]) and what it emits
//! downstream ([`Record`]). Every record carries a deterministic id.

use std::sync::Arc;

use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::credits::LineKind;
use super::event::{Event, FieldViolation};
use super::ids::RecordId;
use super::meter::MeterKind;
use super::money::Money;
use super::settings::Period;
use super::time::Instant;

/// Why an accepted event starts nothing billable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBillableReason {
    SystemMessage,
    ProactiveAwaitingReply,
    CobrowseNotEstablished,
    CobrowseSessionCounted,
    FunctionsFreeTier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    NewInteraction,
    AlreadyCounted,
    Charged,
    NotBillable(NotBillableReason),
}

/// The decision for one accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub event_id: String,
    pub disposition: Disposition,
    /// True when answering a retry with the stored original outcome (T-2).
    pub retry: bool,
    pub interactions: Vec<Interaction>,
    pub counted_in: Vec<RecordId>,
    pub lines: Vec<CreditLine>,
    pub pass_through: Option<PassThroughCharge>,
}

/// The gRPC status a refusal maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    AlreadyExists,
    FailedPrecondition,
    OutOfRange,
    NotFound,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::NotFound => "NOT_FOUND",
        }
    }
}

/// A refused event. It changed nothing and reserved nothing (T-2, T-6).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: Code,
    pub reason: String,
    pub rule: &'static str,
    pub violations: Vec<FieldViolation>,
}

impl Refusal {
    pub fn new(code: Code, rule: &'static str, reason: impl Into<String>) -> Self {
        Refusal { code, reason: reason.into(), rule, violations: Vec::new() }
    }

    pub fn invalid(violations: Vec<FieldViolation>) -> Self {
        let reason =
            violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
        Refusal { code: Code::InvalidArgument, reason, rule: "T-6", violations }
    }
}

/// A period as reported: label, window and zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodInfo {
    pub label: String,
    pub start: Instant,
    pub end: Instant,
    pub zone: Tz,
}

impl From<&Period> for PeriodInfo {
    fn from(p: &Period) -> Self {
        PeriodInfo { label: p.label(), start: p.start(), end: p.end(), zone: p.zone }
    }
}

/// The fields that identify an interaction within its tenant and period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InteractionKey {
    pub consumer: String,
    pub conversation: Option<String>,
    pub integration: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub id: RecordId,
    pub tenant: Arc<str>,
    pub meter: MeterKind,
    pub key: InteractionKey,
    pub period: PeriodInfo,
    pub rule: &'static str,
    pub lines: Vec<CreditLine>,
    pub event_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreditLine {
    pub id: RecordId,
    pub interaction_id: Option<RecordId>,
    pub kind: LineKind,
    pub applies_to: Option<LineKind>,
    pub credits: Decimal,
    pub rule: &'static str,
    pub period: PeriodInfo,
    pub event_id: String,
    pub reverses: Option<RecordId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PassThroughCharge {
    pub id: RecordId,
    pub price: Money,
    pub charge: Money,
    pub period: PeriodInfo,
    pub event_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: RecordId,
    pub period: String,
    pub threshold: Decimal,
    pub usage: Decimal,
    pub base: Decimal,
    pub event_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: RecordId,
    pub code: Code,
    pub reason: String,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordBody {
    Interaction(Interaction),
    Line(CreditLine),
    PassThrough(PassThroughCharge),
    Alert(Alert),
    DeadLetter(DeadLetter),
}

/// One emitted record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub tenant: Arc<str>,
    pub rule: &'static str,
    pub body: RecordBody,
}

impl Record {
    pub fn id(&self) -> RecordId {
        match &self.body {
            RecordBody::Interaction(i) => i.id,
            RecordBody::Line(l) => l.id,
            RecordBody::PassThrough(p) => p.id,
            RecordBody::Alert(a) => a.id,
            RecordBody::DeadLetter(d) => d.id,
        }
    }
}
