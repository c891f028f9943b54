//! What the engine answers for one event ([`Outcome`], [`Refusal`]) and what it emits
//! downstream ([`Record`]). Every record carries a deterministic id.

use std::sync::Arc;

use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::credits::LineKind;
use super::event::{Channel, Event, FieldViolation};
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
    /// No meter in force sees the event (MS-2), or it only counted units within an event
    /// meter's allowance (EV-2).
    NotMetered,
    /// An outcome that is not the billed occurrence, or a revocation (OUT-1, OUT-3).
    OutcomeNotBilled,
    /// A correction: it bills nothing itself (COR).
    Correction,
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
    /// Not served in this mode (a void of a tenant metered by claims under a shared
    /// Redis store).
    Unimplemented,
    /// The shared store, which orders this tenant's events, did not answer: retry.
    Unavailable,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::NotFound => "NOT_FOUND",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Unavailable => "UNAVAILABLE",
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

/// Where an interaction started or a pass-through charge was made: the channel and the
/// integration (a WhatsApp number, a web site) of its event, for usage by dimension.
/// Unknown for what no message started (outcomes, a DAR-5 charge of a proactive day).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub channel: Channel,
    pub integration: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub id: RecordId,
    pub tenant: Arc<str>,
    pub meter: MeterKind,
    /// The meter's id (MS-3).
    pub meter_id: Arc<str>,
    pub key: InteractionKey,
    /// An outcome meter's interactions: the outcome type (OUT-1).
    pub outcome_type: Option<String>,
    /// The void that selected it when it started (COR-2): it counts in no total and has no
    /// lines.
    pub voided_by: Option<String>,
    pub period: PeriodInfo,
    pub rule: &'static str,
    pub lines: Vec<CreditLine>,
    pub event_id: String,
    pub origin: Option<Origin>,
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
    /// The event that brought the line; for a reversal, the event that withdrew it (a
    /// void, a revocation, an earlier event).
    pub event_id: String,
    pub reverses: Option<RecordId>,
    /// The meter whose interaction or units the line prices (MS-3); `None` for tenant
    /// charges (co-browse, Functions: MS-4).
    pub meter: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PassThroughCharge {
    pub id: RecordId,
    pub price: Money,
    pub charge: Money,
    pub period: PeriodInfo,
    pub event_id: String,
    pub origin: Option<Origin>,
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

/// An interaction that no longer stands (OUT-4: its billed occurrence moved) or that a
/// void selected after it started (COR-2). Its lines are withdrawn by reversal lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Withdrawal {
    pub id: RecordId,
    pub interaction_id: RecordId,
    pub period: PeriodInfo,
    /// The event that withdrew it: a void's id, a revocation's, an earlier occurrence's.
    pub event_id: String,
    /// Voided (COR-2: it stays listed, marked with the void) rather than replaced (OUT-4).
    pub voided: bool,
}

/// A correction, as accepted: who made it, when, why, and what it selected on arrival
/// (COR). Interactions it selects later are marked when they start.
#[derive(Debug, Clone, PartialEq)]
pub struct VoidRecord {
    pub id: RecordId,
    pub event_id: String,
    pub at: Instant,
    pub arrived: Option<Instant>,
    pub void: super::event::Void,
    pub selected: Vec<RecordId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordBody {
    Interaction(Interaction),
    Line(CreditLine),
    PassThrough(PassThroughCharge),
    Alert(Alert),
    DeadLetter(DeadLetter),
    Withdrawn(Withdrawal),
    Void(VoidRecord),
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
            RecordBody::Withdrawn(w) => w.id,
            RecordBody::Void(v) => v.id,
        }
    }
}
