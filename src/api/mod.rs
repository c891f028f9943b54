//! The v1 API: generated types, and the conversions between them and the rating core.
//!
//! Conversions into the core never validate: they carry what was sent (unknown enum
//! values included) so that the core refuses it with the field named, exactly as it does
//! for every other transport.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::rating::credits::LineKind;
use crate::rating::event::{
    Channel, FieldViolation, RawBody, RawCobrowse, RawConversation, RawEnum, RawEvent, RawMessage, RawMoney,
    RawOutcome, RawVoid, SenderRole,
};
use crate::rating::ledger::{BUCKET_KINDS, Statement, Totals};
use crate::rating::meter::{MeterDef, MeterKind};
use crate::rating::money::{Amounts, Currency, Money, amount_limit_violation, parse_decimal};
use crate::rating::outcome::{
    Alert, Code, CreditLine, DeadLetter, Disposition, Interaction, NotBillableReason, Outcome, PassThroughCharge,
    PeriodInfo, Record, RecordBody, Refusal,
};
use crate::rating::plan::{CommitmentPlan, Plan, StarterPlan, TopUp};
use crate::rating::settings::{
    FeatureAttribution, ProactiveOutboundDay, Relationship, Rounding, SettingError, SettingValue, SettingsChange,
    SettingsPatch, TenantSpec,
};
use crate::rating::time;

/// Generated from `proto/daybook/v1`.
mod json;
mod tenants;

pub use json::{from_json, to_json};

pub use tenants::{
    change_in, change_out, meter_def_out, meter_in, plan_in, plan_out, settings_in, settings_out, tenant_in, tenant_out,
};

pub mod pb {
    pub use daybook_client::pb::*;
    tonic::include_proto!("daybook.v1");
}

/// The encoded `FileDescriptorSet` of the API, for reflection and the JSON mapping.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/daybook_descriptor.bin"));

// ---- Events in ----

fn enum_in<T>(value: i32, known: impl Fn(i32) -> Option<Option<T>>) -> RawEnum<T> {
    match known(value) {
        Some(Some(v)) => RawEnum::Known(v),
        Some(None) => RawEnum::Missing,
        None => RawEnum::Unknown(value.to_string()),
    }
}

fn sender_in(value: i32) -> RawEnum<SenderRole> {
    enum_in(value, |v| {
        Some(match pb::SenderRole::try_from(v).ok()? {
            pb::SenderRole::Unspecified => None,
            pb::SenderRole::Consumer => Some(SenderRole::Consumer),
            pb::SenderRole::Agent => Some(SenderRole::Agent),
            pb::SenderRole::Bot => Some(SenderRole::Bot),
            pb::SenderRole::Proactive => Some(SenderRole::Proactive),
            pb::SenderRole::System => Some(SenderRole::System),
        })
    })
}

fn channel_in(value: i32) -> RawEnum<Channel> {
    enum_in(value, |v| {
        Some(match pb::Channel::try_from(v).ok()? {
            pb::Channel::Unspecified => None,
            pb::Channel::Web => Some(Channel::Web),
            pb::Channel::Sms => Some(Channel::Sms),
            pb::Channel::Whatsapp => Some(Channel::Whatsapp),
            pb::Channel::Facebook => Some(Channel::Facebook),
            pb::Channel::Email => Some(Channel::Email),
            pb::Channel::Apple => Some(Channel::Apple),
            pb::Channel::Other => Some(Channel::Other),
        })
    })
}

fn message_in(m: pb::MessageEvent) -> RawBody {
    RawBody::Message(RawMessage {
        consumer_id: m.consumer_id,
        conversation_id: m.conversation_id,
        sender_role: sender_in(m.sender_role),
        sender_id: m.sender_id,
        channel: channel_in(m.channel),
        integration_id: m.integration_id,
        provider_price: m.provider_price.map(|p| RawMoney { amount: p.amount, currency: p.currency }),
    })
}

fn conversation_in(o: pb::ConversationOpenedEvent) -> RawBody {
    RawBody::ConversationOpened(RawConversation {
        consumer_id: o.consumer_id,
        conversation_id: o.conversation_id,
        channel: channel_in(o.channel),
        integration_id: o.integration_id,
    })
}

fn cobrowse_in(c: pb::CobrowseEvent) -> RawBody {
    RawBody::Cobrowse(RawCobrowse {
        consumer_id: c.consumer_id,
        conversation_id: c.conversation_id,
        session_id: c.session_id,
        established: c.established,
    })
}

pub fn outcome_in(o: pb::OutcomeEvent) -> RawBody {
    RawBody::Outcome(RawOutcome {
        consumer_id: o.consumer_id,
        conversation_id: o.conversation_id,
        outcome_type: o.outcome_type,
        revoked: o.revoked,
    })
}

pub fn void_in(v: pb::VoidEvent) -> RawBody {
    RawBody::Void(RawVoid {
        from: v.from,
        to: v.to,
        reason: v.reason,
        meter: v.meter,
        consumer_id: v.consumer_id,
        conversation_id: v.conversation_id,
        integration_id: v.integration_id,
        outcome_type: v.outcome_type,
        by: Some(v.made_by).filter(|b| !b.is_empty()),
    })
}

impl From<pb::Event> for RawEvent {
    fn from(e: pb::Event) -> Self {
        use pb::event::Kind;
        let body = match e.kind {
            Some(Kind::Message(m)) => message_in(m),
            Some(Kind::ConversationOpened(o)) => conversation_in(o),
            Some(Kind::Cobrowse(c)) => cobrowse_in(c),
            Some(Kind::FunctionInvocations(f)) => RawBody::FunctionInvocations { count: Some(f.count) },
            Some(Kind::Outcome(o)) => outcome_in(o),
            Some(Kind::Void(v)) => void_in(v),
            None => RawBody::default(),
        };
        RawEvent { tenant_id: e.tenant_id, event_id: e.event_id, event_time: e.event_time, body }
    }
}

/// The proto form of a raw event (for clients, the scenario runner and event logs).
pub fn event_out(e: &RawEvent) -> pb::Event {
    use pb::event::Kind;
    let sender = |r: &RawEnum<SenderRole>| match r {
        RawEnum::Known(s) => match s {
            SenderRole::Consumer => pb::SenderRole::Consumer as i32,
            SenderRole::Agent => pb::SenderRole::Agent as i32,
            SenderRole::Bot => pb::SenderRole::Bot as i32,
            SenderRole::Proactive => pb::SenderRole::Proactive as i32,
            SenderRole::System => pb::SenderRole::System as i32,
        },
        RawEnum::Missing => 0,
        RawEnum::Unknown(v) => v.parse().unwrap_or(-1),
    };
    let channel = |c: &RawEnum<Channel>| match c {
        RawEnum::Known(c) => channel_number(*c),
        RawEnum::Missing => 0,
        RawEnum::Unknown(v) => v.parse().unwrap_or(-1),
    };
    let kind = match &e.body {
        RawBody::Message(m) => Some(Kind::Message(pb::MessageEvent {
            consumer_id: m.consumer_id.clone(),
            conversation_id: m.conversation_id.clone(),
            sender_role: sender(&m.sender_role),
            sender_id: m.sender_id.clone(),
            channel: channel(&m.channel),
            integration_id: m.integration_id.clone(),
            provider_price: m
                .provider_price
                .as_ref()
                .map(|p| pb::Money { amount: p.amount.clone(), currency: p.currency.clone() }),
        })),
        RawBody::ConversationOpened(o) => Some(Kind::ConversationOpened(pb::ConversationOpenedEvent {
            consumer_id: o.consumer_id.clone(),
            conversation_id: o.conversation_id.clone(),
            channel: channel(&o.channel),
            integration_id: o.integration_id.clone(),
        })),
        RawBody::Cobrowse(c) => Some(Kind::Cobrowse(pb::CobrowseEvent {
            consumer_id: c.consumer_id.clone(),
            conversation_id: c.conversation_id.clone(),
            session_id: c.session_id.clone(),
            established: c.established,
        })),
        RawBody::FunctionInvocations { count } => {
            Some(Kind::FunctionInvocations(pb::FunctionInvocationsEvent { count: count.unwrap_or(0) }))
        }
        RawBody::Outcome(o) => Some(Kind::Outcome(pb::OutcomeEvent {
            consumer_id: o.consumer_id.clone(),
            conversation_id: o.conversation_id.clone(),
            outcome_type: o.outcome_type.clone(),
            revoked: o.revoked,
        })),
        RawBody::Void(v) => Some(Kind::Void(pb::VoidEvent {
            from: v.from.clone(),
            to: v.to.clone(),
            reason: v.reason.clone(),
            meter: v.meter.clone(),
            consumer_id: v.consumer_id.clone(),
            conversation_id: v.conversation_id.clone(),
            integration_id: v.integration_id.clone(),
            outcome_type: v.outcome_type.clone(),
            made_by: v.by.clone().unwrap_or_default(),
        })),
        RawBody::Unknown(_) => None,
    };
    pb::Event { tenant_id: e.tenant_id.clone(), event_id: e.event_id.clone(), event_time: e.event_time.clone(), kind }
}

fn channel_number(c: Channel) -> i32 {
    (match c {
        Channel::Web => pb::Channel::Web,
        Channel::Sms => pb::Channel::Sms,
        Channel::Whatsapp => pb::Channel::Whatsapp,
        Channel::Facebook => pb::Channel::Facebook,
        Channel::Email => pb::Channel::Email,
        Channel::Apple => pb::Channel::Apple,
        Channel::Other => pb::Channel::Other,
    }) as i32
}

// ---- Outcomes and records out ----

fn money_out(m: &Money) -> pb::Money {
    pb::Money { amount: m.amount.normalize().to_string(), currency: m.currency.to_string() }
}

fn amounts_out(a: &Amounts) -> Vec<pb::Money> {
    a.iter().map(|(c, amount)| money_out(&Money::new(amount, c))).collect()
}

fn period_out(p: &PeriodInfo) -> pb::Period {
    pb::Period {
        label: p.label.clone(),
        start_time: time::format_local(p.start, p.zone),
        end_time: time::format_local(p.end, p.zone),
        time_zone: p.zone.name().to_string(),
    }
}

fn line_kind_out(k: LineKind) -> i32 {
    (match k {
        LineKind::Base => pb::LineKind::Base,
        LineKind::GenerativeAi => pb::LineKind::GenerativeAi,
        LineKind::IntentListening => pb::LineKind::IntentListening,
        LineKind::PerformanceOptimizer => pb::LineKind::PerformanceOptimizer,
        LineKind::Cobrowse => pb::LineKind::Cobrowse,
        LineKind::Functions => pb::LineKind::Functions,
        LineKind::Outcome => pb::LineKind::Outcome,
        LineKind::Units => pb::LineKind::Units,
    }) as i32
}

pub fn meter_out(m: MeterKind) -> i32 {
    (match m {
        MeterKind::Dar => pb::Meter::Dar,
        MeterKind::Cycle => pb::Meter::Cycle,
        MeterKind::Mau => pb::Meter::Mau,
        MeterKind::Event => pb::Meter::Event,
        MeterKind::Outcome => pb::Meter::Outcome,
    }) as i32
}

/// The periods one answer or record has already written: an interaction and its lines
/// usually share one, and writing a period's bounds in its zone is the costly part.
#[derive(Default)]
pub struct Periods<'a>(Vec<(&'a PeriodInfo, pb::Period)>);

impl<'a> Periods<'a> {
    fn out(&mut self, p: &'a PeriodInfo) -> pb::Period {
        if let Some((_, done)) = self.0.iter().find(|(q, _)| *q == p) {
            return done.clone();
        }
        let done = period_out(p);
        self.0.push((p, done.clone()));
        done
    }
}

pub fn line_out<'a>(l: &'a CreditLine, periods: &mut Periods<'a>) -> pb::CreditLine {
    pb::CreditLine {
        line_id: l.id.to_string(),
        interaction_id: l.interaction_id.map(|i| i.to_string()).unwrap_or_default(),
        kind: line_kind_out(l.kind),
        applies_to: l.applies_to.map(line_kind_out).unwrap_or_default(),
        credits: l.credits.normalize().to_string(),
        rule: l.rule.to_string(),
        period: Some(periods.out(&l.period)),
        event_id: l.event_id.clone(),
        reverses_line_id: l.reverses.map(|r| r.to_string()).unwrap_or_default(),
        meter_id: l.meter.as_deref().unwrap_or_default().to_string(),
    }
}

pub fn interaction_out<'a>(i: &'a Interaction, periods: &mut Periods<'a>) -> pb::Interaction {
    pb::Interaction {
        interaction_id: i.id.to_string(),
        tenant_id: i.tenant.to_string(),
        meter: meter_out(i.meter),
        key: Some(pb::InteractionKey {
            consumer_id: i.key.consumer.clone(),
            conversation_id: i.key.conversation.clone().unwrap_or_default(),
            integration_id: i.key.integration.clone().unwrap_or_default(),
        }),
        period: Some(periods.out(&i.period)),
        rule: i.rule.to_string(),
        lines: i.lines.iter().map(|l| line_out(l, periods)).collect(),
        event_id: i.event_id.clone(),
        meter_id: i.meter_id.to_string(),
        outcome_type: i.outcome_type.clone().unwrap_or_default(),
        voided_by: i.voided_by.clone().unwrap_or_default(),
        origin: i.origin.as_ref().map(origin_out),
    }
}

fn origin_out(o: &crate::rating::outcome::Origin) -> pb::Origin {
    pb::Origin { channel: o.channel.name().to_string(), integration_id: o.integration.clone().unwrap_or_default() }
}

fn pass_through_out(p: &PassThroughCharge) -> pb::PassThroughCharge {
    pb::PassThroughCharge {
        charge_id: p.id.to_string(),
        provider_price: Some(money_out(&p.price)),
        charge: Some(money_out(&p.charge)),
        period: Some(period_out(&p.period)),
        event_id: p.event_id.clone(),
        origin: p.origin.as_ref().map(origin_out),
    }
}

/// An alert read back from a journaled record (replay restores alerts exactly as raised).
/// Whether an encoded `daybook.v1.Record` is an alert, read from its field keys alone
/// (no decoding): replay looks for the few alerts among millions of records.
pub fn is_alert_record(mut buf: &[u8]) -> bool {
    use prost::encoding::{DecodeContext, decode_key, skip_field};
    /// `Record.body.alert` in records.proto.
    const ALERT: u32 = 13;
    while !buf.is_empty() {
        let Ok((tag, wire_type)) = decode_key(&mut buf) else { return false };
        if tag == ALERT {
            return true;
        }
        if skip_field(wire_type, tag, &mut buf, DecodeContext::default()).is_err() {
            return false;
        }
    }
    false
}

pub fn alert_in(a: &pb::Alert) -> Option<Alert> {
    Some(Alert {
        id: crate::rating::ids::RecordId::parse(&a.alert_id)?,
        period: a.period.clone(),
        threshold: a.threshold.parse().ok()?,
        usage: a.usage.parse().ok()?,
        base: a.base.parse().ok()?,
        event_id: a.event_id.clone(),
    })
}

fn alert_out(a: &Alert) -> pb::Alert {
    pb::Alert {
        alert_id: a.id.to_string(),
        period: a.period.clone(),
        threshold: a.threshold.normalize().to_string(),
        usage: a.usage.normalize().to_string(),
        base: a.base.normalize().to_string(),
        event_id: a.event_id.clone(),
    }
}

fn dead_letter_out(tenant: &str, d: &DeadLetter) -> pb::DeadLetter {
    let raw = accepted_event_to_raw(tenant, &d.event);
    pb::DeadLetter {
        dead_letter_id: d.id.to_string(),
        event_id: d.event.event_id.clone(),
        code: d.code.name().to_string(),
        reason: d.reason.clone(),
        event_json: to_json(&event_out(&raw)).to_string(),
    }
}

/// Back from an accepted event to its raw form (for dead letters and journals).
pub fn accepted_event_to_raw(tenant: &str, e: &crate::rating::event::Event) -> RawEvent {
    use crate::rating::event::Body;
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    let body = match &e.body {
        Body::Message(m) => RawBody::Message(RawMessage {
            consumer_id: m.consumer.clone(),
            conversation_id: opt(&m.conversation),
            sender_role: RawEnum::Known(m.sender),
            sender_id: opt(&m.sender_id),
            channel: RawEnum::Known(m.channel),
            integration_id: opt(&m.integration),
            provider_price: m
                .price
                .map(|p| RawMoney { amount: p.amount.to_string(), currency: p.currency.to_string() }),
        }),
        Body::ConversationOpened(o) => RawBody::ConversationOpened(RawConversation {
            consumer_id: o.consumer.clone(),
            conversation_id: o.conversation.clone(),
            channel: RawEnum::Known(o.channel),
            integration_id: opt(&o.integration),
        }),
        Body::Cobrowse(c) => RawBody::Cobrowse(RawCobrowse {
            consumer_id: c.consumer.clone(),
            conversation_id: c.conversation.clone(),
            session_id: c.session.clone(),
            established: c.established,
        }),
        Body::FunctionInvocations { count } => RawBody::FunctionInvocations { count: Some(*count as i64) },
        Body::Outcome(o) => RawBody::Outcome(RawOutcome {
            consumer_id: o.consumer.clone(),
            conversation_id: o.conversation.clone(),
            outcome_type: o.outcome_type.clone(),
            revoked: o.revoked,
        }),
        Body::Void(v) => RawBody::Void(RawVoid {
            from: v.from.to_string(),
            to: v.to.to_string(),
            reason: v.reason.clone(),
            meter: v.meter.clone(),
            consumer_id: v.consumer.clone(),
            conversation_id: v.conversation.clone(),
            integration_id: v.integration.clone(),
            outcome_type: v.outcome_type.clone(),
            by: v.by.clone(),
        }),
    };
    RawEvent { tenant_id: tenant.to_string(), event_id: e.event_id.clone(), event_time: e.at.to_rfc3339(), body }
}

/// A record in the proto form; `cursor` is the stream position the caller assigned.
pub fn record_out(r: &Record, cursor: String) -> pb::Record {
    use pb::record::Body;
    let body = match &r.body {
        RecordBody::Interaction(i) => Body::Interaction(interaction_out(i, &mut Periods::default())),
        RecordBody::Line(l) => Body::Line(line_out(l, &mut Periods::default())),
        RecordBody::PassThrough(p) => Body::PassThrough(pass_through_out(p)),
        RecordBody::Alert(a) => Body::Alert(alert_out(a)),
        RecordBody::DeadLetter(d) => Body::DeadLetter(dead_letter_out(&r.tenant, d)),
        RecordBody::Withdrawn(w) => Body::Withdrawal(pb::Withdrawal {
            withdrawal_id: w.id.to_string(),
            interaction_id: w.interaction_id.to_string(),
            period: Some(period_out(&w.period)),
            event_id: w.event_id.clone(),
            voided: w.voided,
        }),
        RecordBody::Void(v) => Body::Void(void_audit_out(v)),
    };
    pb::Record {
        cursor,
        record_id: r.id().to_string(),
        tenant_id: r.tenant.to_string(),
        rule: r.rule.to_string(),
        body: Some(body),
    }
}

fn void_audit_out(v: &crate::rating::outcome::VoidRecord) -> pb::VoidAudit {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    pb::VoidAudit {
        void_id: v.id.to_string(),
        event_id: v.event_id.clone(),
        event_time: v.at.to_rfc3339(),
        arrived_time: v.arrived.map(|t| t.to_rfc3339()).unwrap_or_default(),
        made_by: opt(&v.void.by),
        reason: v.void.reason.clone(),
        from: v.void.from.to_string(),
        to: v.void.to.to_string(),
        meter: opt(&v.void.meter),
        consumer_id: opt(&v.void.consumer),
        conversation_id: opt(&v.void.conversation),
        integration_id: opt(&v.void.integration),
        outcome_type: opt(&v.void.outcome_type),
        selected_interaction_ids: v.selected.iter().map(|i| i.to_string()).collect(),
    }
}

fn not_billable_out(r: NotBillableReason) -> i32 {
    (match r {
        NotBillableReason::SystemMessage => pb::NotBillableReason::SystemMessage,
        NotBillableReason::ProactiveAwaitingReply => pb::NotBillableReason::ProactiveAwaitingReply,
        NotBillableReason::CobrowseNotEstablished => pb::NotBillableReason::CobrowseNotEstablished,
        NotBillableReason::CobrowseSessionCounted => pb::NotBillableReason::CobrowseSessionCounted,
        NotBillableReason::FunctionsFreeTier => pb::NotBillableReason::FunctionsFreeTier,
        NotBillableReason::NotMetered => pb::NotBillableReason::NotMetered,
        NotBillableReason::OutcomeNotBilled => pb::NotBillableReason::OutcomeNotBilled,
        NotBillableReason::Correction => pb::NotBillableReason::Correction,
    }) as i32
}

pub fn outcome_out(o: &Outcome) -> pb::EventOutcome {
    let (disposition, reason) = match o.disposition {
        Disposition::NewInteraction => (pb::Disposition::NewInteraction, 0),
        Disposition::AlreadyCounted => (pb::Disposition::AlreadyCounted, 0),
        Disposition::Charged => (pb::Disposition::Charged, 0),
        Disposition::NotBillable(r) => (pb::Disposition::NotBillable, not_billable_out(r)),
    };
    let mut periods = Periods::default();
    pb::EventOutcome {
        event_id: o.event_id.clone(),
        disposition: disposition as i32,
        retry: o.retry,
        interactions: o.interactions.iter().map(|i| interaction_out(i, &mut periods)).collect(),
        counted_in: o.counted_in.iter().map(|i| i.to_string()).collect(),
        lines: o.lines.iter().map(|l| line_out(l, &mut periods)).collect(),
        pass_through: o.pass_through.as_ref().map(pass_through_out),
        not_billable_reason: reason,
        refusal: None,
    }
}

pub fn refusal_out(event_id: &str, r: &Refusal) -> pb::EventOutcome {
    pb::EventOutcome {
        event_id: event_id.to_string(),
        disposition: pb::Disposition::Refused as i32,
        refusal: Some(pb::Refusal {
            code: r.code.name().to_string(),
            reason: r.reason.clone(),
            field_violations: r
                .violations
                .iter()
                .map(|v| pb::FieldViolation { field: v.field.clone(), description: v.description.clone() })
                .collect(),
            rule: r.rule.to_string(),
        }),
        ..Default::default()
    }
}

/// The ErrorInfo reason of a refusal (and its metric label).
pub fn refusal_reason(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "INVALID_EVENT",
        Code::AlreadyExists => "EVENT_ID_REUSED",
        Code::FailedPrecondition => "EVENT_TOO_LATE",
        Code::OutOfRange => "EVENT_IN_FUTURE",
        Code::NotFound => "TENANT_NOT_FOUND",
        Code::Unimplemented => "NOT_SERVED_IN_THIS_MODE",
        Code::Unavailable => "STORE_UNAVAILABLE",
    }
}

/// A refusal as a gRPC status, with google.rpc details: BadRequest field violations and
/// ErrorInfo carrying the rule (AIP-193).
pub fn refusal_status(r: &Refusal) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let code = match r.code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::OutOfRange => tonic::Code::OutOfRange,
        Code::NotFound => tonic::Code::NotFound,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Unavailable => tonic::Code::Unavailable,
    };
    let mut details = ErrorDetails::new();
    for v in &r.violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    details.set_error_info(refusal_reason(r.code), "daybook", [("rule".to_string(), r.rule.to_string())]);
    tonic::Status::with_error_details(code, r.reason.clone(), details)
}

/// Field violations as INVALID_ARGUMENT (for requests other than events).
pub fn invalid_argument(violations: Vec<FieldViolation>) -> tonic::Status {
    refusal_status(&Refusal::invalid(violations))
}

/// The ledger's credit bucket of a line, by its kind and what it applies to.
pub fn bucket_of(line: &pb::CreditLine) -> Option<usize> {
    BUCKET_KINDS.iter().position(|(kind, applies_to)| {
        (line_kind_out(*kind), applies_to.map(line_kind_out).unwrap_or_default()) == (line.kind, line.applies_to)
    })
}

fn credits_by_kind(t: &Totals) -> Vec<pb::CreditsByKind> {
    BUCKET_KINDS
        .iter()
        .zip(t.credits.iter())
        .filter(|(_, c)| !c.is_zero())
        .map(|((kind, applies_to), credits)| pb::CreditsByKind {
            kind: line_kind_out(*kind),
            applies_to: applies_to.map(line_kind_out).unwrap_or_default(),
            credits: credits.normalize().to_string(),
        })
        .collect()
}

pub fn usage_out(t: &Totals, tenant: Option<&crate::rating::Tenant>) -> pb::Usage {
    let meters = tenant
        .map(|tenant| {
            tenant
                .meters
                .iter()
                .map(|m| {
                    let figures = t.meter(tenant, m.index);
                    pb::MeterUsage {
                        meter_id: m.id.to_string(),
                        preset: meter_out(m.kind()),
                        interactions: figures.interactions,
                        units: figures.units,
                        credits: figures.credits.normalize().to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    pb::Usage {
        interactions: t.interactions,
        credits: t.credits().normalize().to_string(),
        credits_by_kind: credits_by_kind(t),
        pass_through: amounts_out(&t.pass_through),
        meters,
    }
}

/// Usage broken down by meter (MS-3): each meter's figures, and a group with an empty
/// key for what belongs to no meter (co-browse, Functions, pass-through), so that the
/// groups sum to the totals. A meter's credits by kind are known where the ledger keeps
/// its lines apart, for a tenant of one interaction meter.
pub fn usage_by_meter(t: &Totals, tenant: &crate::rating::Tenant) -> Vec<pb::UsageGroup> {
    let whole = usage_out(t, Some(tenant));
    let mut groups = Vec::new();
    let (mut interactions, mut credits) = (0i64, Decimal::ZERO);
    for (meter, m) in whole.meters.into_iter().zip(&tenant.meters) {
        let figures = t.meter(tenant, m.index);
        interactions += figures.interactions;
        credits += figures.credits;
        let by_kind = if tenant.single_meter() {
            let mut lines = Totals::default();
            lines.credits[..crate::rating::ledger::COBROWSE_BUCKET]
                .copy_from_slice(&t.credits[..crate::rating::ledger::COBROWSE_BUCKET]);
            credits_by_kind(&lines)
        } else {
            Vec::new()
        };
        let usage = pb::Usage {
            interactions: meter.interactions.max(0) as u64,
            credits: meter.credits.clone(),
            credits_by_kind: by_kind,
            pass_through: Vec::new(),
            meters: vec![meter.clone()],
        };
        groups.push(pb::UsageGroup { key: meter.meter_id, usage: Some(usage) });
    }
    let rest_credits = t.credits() - credits;
    let mut rest = Totals::default();
    for bucket in [crate::rating::ledger::COBROWSE_BUCKET, crate::rating::ledger::FUNCTIONS_BUCKET] {
        rest.credits[bucket] = t.credits[bucket];
    }
    let by_kind = if rest.credits() == rest_credits { credits_by_kind(&rest) } else { Vec::new() };
    let usage = pb::Usage {
        interactions: (t.interactions as i64 - interactions).max(0) as u64,
        credits: rest_credits.normalize().to_string(),
        credits_by_kind: by_kind,
        pass_through: amounts_out(&t.pass_through),
        meters: Vec::new(),
    };
    if usage.interactions > 0 || !rest_credits.is_zero() || !usage.pass_through.is_empty() {
        groups.insert(0, pb::UsageGroup { key: String::new(), usage: Some(usage) });
    }
    groups
}

pub fn statement_out(s: &Statement) -> pb::Statement {
    let d = |d: Decimal| d.normalize().to_string();
    pb::Statement {
        period: s.period.clone(),
        dars: s.dars,
        credits: d(s.totals.credits()),
        credits_by_kind: credits_by_kind(&s.totals),
        overage: amounts_out(&s.overage),
        overage_credits: d(s.overage_credits),
        expired_credits: d(s.expired_credits),
        committed_credits: d(s.committed_credits),
        top_up_credits: d(s.top_up_credits),
        drawn_committed: d(s.drawn_committed),
        drawn_top_ups: d(s.drawn_top_ups),
        included: s.included,
        overage_interactions: s.overage_interactions,
        platform_users: s.platform_users,
        platform_users_over_limit: s.platform_users_over_limit,
        alerts: s.alerts.iter().map(alert_out).collect(),
        pass_through: amounts_out(&s.totals.pass_through),
    }
}

// ---- Tenants ----

/// The co-browse session an event belongs to ("" for other events).
pub fn cobrowse_session(event: &pb::Event) -> &str {
    match &event.kind {
        Some(pb::event::Kind::Cobrowse(c)) => &c.session_id,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_proto3_json() {
        let json = r#"{"tenant_id": "acme", "event_id": "m1", "event_time": "2025-06-10T09:00:00-04:00",
            "message": {"consumer_id": "c1", "conversation_id": "A", "sender_role": "SENDER_ROLE_CONSUMER",
                        "channel": "CHANNEL_WEB", "provider_price": {"amount": "0.0079", "currency": "USD"}}}"#;
        let event: pb::Event = from_json(json).unwrap();
        let raw = RawEvent::from(event.clone());
        assert_eq!(event_out(&raw), event);
        let camel = r#"{"tenantId": "acme", "eventId": "m1", "eventTime": "2025-06-10T09:00:00-04:00",
            "functionInvocations": {"count": "12"}}"#;
        let event: pb::Event = from_json(camel).unwrap();
        assert_eq!(RawEvent::from(event).body, RawBody::FunctionInvocations { count: Some(12) });
        assert!(from_json::<pb::Event>(r#"{"tenant_id": 5}"#).is_err());
    }

    #[test]
    fn t_5_settings_are_refused_by_name() {
        let s = pb::Settings {
            time_zone: Some("Nowhere/Land".into()),
            cycle_anchor_day: Some(0),
            relationship: 9,
            ..Default::default()
        };
        let fields: Vec<String> =
            settings_in(&s, "change.settings").unwrap_err().into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            ["change.settings.time_zone", "change.settings.cycle_anchor_day", "change.settings.relationship"]
        );
    }

    #[test]
    fn tenants_round_trip() {
        let value = serde_json::json!({"id": "acme", "time_zone": "Europe/Berlin", "meter": "cycle",
            "settings": {"cycle_anchor_day": 15, "lateness_horizon": "P40D", "generative_ai": true},
            "changes": [{"id": "c1", "at": "2025-06-10T12:00:00Z", "set": {"relationship": "conversation"}}],
            "plan": {"kind": "commitment", "term_start": "2025-01-01", "term_end": "2025-12-31", "credits": "1000",
                     "overage_price": {"USD": "1.10"}, "top_ups": [{"at": "2025-09-01T00:00:00Z", "credits": "50"}]}});
        let (spec, _) = crate::tenants::tenant_from_value(&value).unwrap();
        let back = tenant_in(&tenant_out(&spec)).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn alert_records_are_found_from_their_field_keys() {
        use prost::Message as _;
        let record = |body| pb::Record {
            cursor: "7.0".into(),
            record_id: "r-1".into(),
            tenant_id: "acme".into(),
            rule: "PL-3".into(),
            body: Some(body),
        };
        let alert = record(pb::record::Body::Alert(pb::Alert { threshold: "0.8".into(), ..Default::default() }));
        assert!(is_alert_record(&alert.encode_to_vec()));
        let line = record(pb::record::Body::Line(pb::CreditLine { credits: "1.5".into(), ..Default::default() }));
        assert!(!is_alert_record(&line.encode_to_vec()));
        let interaction = record(pb::record::Body::Interaction(pb::Interaction::default()));
        assert!(!is_alert_record(&interaction.encode_to_vec()));
        assert!(!is_alert_record(&[0xff, 0xff]), "damage is not an alert");
        // The field number the scan looks for is the one the proto gives `alert`.
        let alert_field =
            json::pool().get_message_by_name("daybook.v1.Record").unwrap().get_field_by_name("alert").unwrap();
        assert_eq!(alert_field.number(), 13);
    }
}
