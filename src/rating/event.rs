//! Events as received ([`RawEvent`]) and as accepted ([`Event`]), and the validation
//! between them (T-6). Field paths in violations are the proto field paths, so a caller
//! of any transport sees the same names.

use chrono::NaiveDate;

use super::ids::{Fingerprinter, Fp, domain};
use super::meter::{EventType, MeterKind, MeterSpec, Seen};
use super::money::{Currency, MAX_INVOCATIONS_PER_EVENT, Money, amount_limit_violation, parse_decimal};
use super::settings::Tenant;
pub use super::terms::{Channel, SenderRole};
use super::time::{self, Instant};

/// Size caps on every string of an event (stated in the proto docs).
pub const MAX_ID_BYTES: usize = 256;
pub const MAX_TENANT_ID_BYTES: usize = 128;
pub const MAX_TIMESTAMP_BYTES: usize = 64;

/// An event as a transport delivered it: every field still unchecked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEvent {
    pub tenant_id: String,
    pub event_id: String,
    pub event_time: String,
    pub body: RawBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RawBody {
    Message(RawMessage),
    ConversationOpened(RawConversation),
    Cobrowse(RawCobrowse),
    FunctionInvocations {
        count: Option<i64>,
    },
    Outcome(RawOutcome),
    Void(RawVoid),
    /// No body, or one of a type daybook does not meter (typing indicators, read and
    /// delivery receipts). Carries the type's name when the transport had one.
    Unknown(String),
}

impl Default for RawBody {
    fn default() -> Self {
        RawBody::Unknown(String::new())
    }
}

/// Enumerated fields keep what was sent when it is not a known value, so the refusal can
/// say what it was.
#[derive(Debug, Clone, PartialEq)]
pub enum RawEnum<T> {
    Known(T),
    Missing,
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub consumer_id: String,
    pub conversation_id: String,
    pub sender_role: RawEnum<SenderRole>,
    pub sender_id: String,
    pub channel: RawEnum<Channel>,
    pub integration_id: String,
    pub provider_price: Option<RawMoney>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawConversation {
    pub consumer_id: String,
    pub conversation_id: String,
    pub channel: RawEnum<Channel>,
    pub integration_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawCobrowse {
    pub consumer_id: String,
    pub conversation_id: String,
    pub session_id: String,
    pub established: bool,
}

/// An AI agent's outcome in a conversation (OUT).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawOutcome {
    pub consumer_id: String,
    pub conversation_id: String,
    pub outcome_type: String,
    pub revoked: bool,
}

/// A correction (COR). Optional selectors keep absent apart from empty: an empty one is
/// refused, never read as "any" (COR-4).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawVoid {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub meter: Option<String>,
    pub consumer_id: Option<String>,
    pub conversation_id: Option<String>,
    pub integration_id: Option<String>,
    pub outcome_type: Option<String>,
    /// Who made it (the caller's credential, stamped by the server): audit only, not part
    /// of the payload (T-2).
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawMoney {
    pub amount: String,
    pub currency: String,
}

/// An accepted event. Strings are non-empty where present.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub at: Instant,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Message(Message),
    ConversationOpened(Conversation),
    Cobrowse(Cobrowse),
    FunctionInvocations { count: u64 },
    Outcome(OutcomeReport),
    Void(Void),
}

/// OUT: an outcome (or, `revoked`, the revocation of earlier ones).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeReport {
    pub consumer: String,
    pub conversation: String,
    pub outcome_type: String,
    pub revoked: bool,
}

/// COR: what a void selects, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Void {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub reason: String,
    pub meter: Option<String>,
    pub consumer: Option<String>,
    pub conversation: Option<String>,
    pub integration: Option<String>,
    pub outcome_type: Option<String>,
    pub by: Option<String>,
}

/// What validation asks of the tenant's meters (T-6, OUT-2, COR-4).
pub trait Meters {
    /// Whether a meter keyed by integration sees this event (T-6: then it must carry one).
    fn needs_integration(&self, at: Instant, seen: &Seen<'_>) -> bool;
    /// OUT-2: `None` when no outcome meter sees the outcome; else whether one that sees it
    /// prices its type.
    fn prices_outcome(&self, at: Instant, outcome_type: &str) -> Option<bool>;
    /// Whether the tenant ever defined a meter of this id.
    fn knows_meter(&self, id: &str) -> bool;
}

/// A single interaction meter (part one's tenants, and unit tests).
impl Meters for MeterSpec {
    fn needs_integration(&self, _: Instant, _: &Seen<'_>) -> bool {
        MeterSpec::needs_integration(self)
    }

    fn prices_outcome(&self, _: Instant, _: &str) -> Option<bool> {
        None
    }

    fn knows_meter(&self, id: &str) -> bool {
        id == self.kind.name()
    }
}

impl Meters for Tenant {
    fn needs_integration(&self, at: Instant, seen: &Seen<'_>) -> bool {
        self.meters.iter().any(|m| m.spec.needs_integration() && m.kind().is_interaction() && m.sees(at, seen))
    }

    fn prices_outcome(&self, at: Instant, outcome_type: &str) -> Option<bool> {
        let seen = Seen { event_type: EventType::Outcome, sender: None, channel: None, integration: None };
        let mut seeing = self.meters.iter().filter(|m| m.kind() == MeterKind::Outcome && m.sees(at, &seen)).peekable();
        seeing.peek()?;
        Some(seeing.any(|m| m.def.outcomes.prices.contains_key(outcome_type)))
    }

    fn knows_meter(&self, id: &str) -> bool {
        self.meter_named(id).is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub consumer: String,
    pub conversation: Option<String>,
    pub sender: SenderRole,
    pub sender_id: Option<String>,
    pub channel: Channel,
    pub integration: Option<String>,
    /// Present only when non-zero (CR-9: 0 or absent when free).
    pub price: Option<Money>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub consumer: String,
    pub conversation: String,
    pub channel: Channel,
    pub integration: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cobrowse {
    pub consumer: String,
    pub conversation: String,
    pub session: String,
    pub established: bool,
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation { field: field.into(), description: description.into() }
    }
}

struct Checker {
    violations: Vec<FieldViolation>,
}

impl Checker {
    fn violation(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push(FieldViolation::new(field, description));
    }

    fn required(&mut self, field: &str, value: String) -> String {
        self.check_text(field, &value);
        if value.is_empty() {
            self.violation(field, "is required");
        }
        value
    }

    fn optional(&mut self, field: &str, value: String) -> Option<String> {
        self.check_text(field, &value);
        (!value.is_empty()).then_some(value)
    }

    fn check_text(&mut self, field: &str, value: &str) {
        if value.len() > MAX_ID_BYTES {
            self.violation(field, format!("longer than {MAX_ID_BYTES} bytes"));
        }
        // C0 controls and DEL are single bytes; C1 controls (U+0080..U+009F) are 0xC2 0x80..0x9F.
        let bytes = value.as_bytes();
        let control = bytes.iter().enumerate().any(|(i, &b)| {
            b < 0x20 || b == 0x7f || (b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
        });
        if control {
            self.violation(field, "contains control characters");
        }
    }

    fn enumerated<T: Copy>(&mut self, field: &str, value: &RawEnum<T>, known: &str) -> Option<T> {
        match value {
            RawEnum::Known(v) => Some(*v),
            RawEnum::Missing => {
                self.violation(field, format!("is required (one of {known})"));
                None
            }
            RawEnum::Unknown(v) => {
                self.violation(field, format!("unknown value `{v}` (one of {known})"));
                None
            }
        }
    }
}

const SENDERS: &str = "consumer, agent, bot, proactive, system";
const CHANNELS: &str = "web, sms, whatsapp, facebook, email, apple, other";

/// Validates a raw event for a tenant of these `meters` (T-6). All violations are
/// reported at once. The tenant id is checked by the caller, which needs it to find the
/// meters.
pub fn validate<M: Meters + ?Sized>(raw: RawEvent, meters: &M) -> Result<Event, Vec<FieldViolation>> {
    let mut c = Checker { violations: Vec::new() };
    if raw.event_id.is_empty() {
        c.violation("event_id", "is required");
    }
    let event_id = c.required_len("event_id", raw.event_id);
    let at = if raw.event_time.len() > MAX_TIMESTAMP_BYTES {
        c.violation("event_time", "too long for a timestamp");
        None
    } else if raw.event_time.is_empty() {
        c.violation("event_time", "is required (RFC 3339 with an offset)");
        None
    } else {
        match time::parse_instant(&raw.event_time) {
            Ok(t) => Some(t),
            Err(e) => {
                c.violation("event_time", e.to_string());
                None
            }
        }
    };
    let needs_integration = |event_type, sender, channel: Option<Channel>| {
        let seen = Seen { event_type, sender, channel, integration: None };
        at.is_some_and(|at| meters.needs_integration(at, &seen))
    };
    let body = match raw.body {
        RawBody::Message(m) => {
            let sender = c.enumerated("message.sender_role", &m.sender_role, SENDERS);
            let consumer = c.required("message.consumer_id", m.consumer_id);
            let conversation = if sender == Some(SenderRole::Proactive) {
                c.optional("message.conversation_id", m.conversation_id)
            } else {
                Some(c.required("message.conversation_id", m.conversation_id))
            };
            let sender_id = c.optional("message.sender_id", m.sender_id);
            let channel = c.enumerated("message.channel", &m.channel, CHANNELS);
            let integration = if m.integration_id.is_empty() && needs_integration(EventType::Message, sender, channel) {
                Some(c.required("message.integration_id", m.integration_id))
            } else {
                c.optional("message.integration_id", m.integration_id)
            };
            let price = m.provider_price.and_then(|p| c.money("message.provider_price", p));
            match (sender, channel) {
                (Some(sender), Some(channel)) => Some(Body::Message(Message {
                    consumer,
                    conversation,
                    sender,
                    sender_id,
                    channel,
                    integration,
                    price: price.filter(|p| !p.amount.is_zero()),
                })),
                _ => None,
            }
        }
        RawBody::ConversationOpened(o) => {
            let consumer = c.required("conversation_opened.consumer_id", o.consumer_id);
            let conversation = c.required("conversation_opened.conversation_id", o.conversation_id);
            let channel = c.enumerated("conversation_opened.channel", &o.channel, CHANNELS);
            let integration =
                if o.integration_id.is_empty() && needs_integration(EventType::ConversationOpened, None, channel) {
                    Some(c.required("conversation_opened.integration_id", o.integration_id))
                } else {
                    c.optional("conversation_opened.integration_id", o.integration_id)
                };
            channel
                .map(|channel| Body::ConversationOpened(Conversation { consumer, conversation, channel, integration }))
        }
        RawBody::Cobrowse(b) => Some(Body::Cobrowse(Cobrowse {
            consumer: c.required("cobrowse.consumer_id", b.consumer_id),
            conversation: c.required("cobrowse.conversation_id", b.conversation_id),
            session: c.required("cobrowse.session_id", b.session_id),
            established: b.established,
        })),
        RawBody::FunctionInvocations { count } => c.invocations(count).map(|count| Body::FunctionInvocations { count }),
        RawBody::Outcome(o) => {
            let consumer = c.required("outcome.consumer_id", o.consumer_id);
            let conversation = c.required("outcome.conversation_id", o.conversation_id);
            let outcome_type = c.required("outcome.outcome_type", o.outcome_type);
            if outcome_type.chars().count() > 64 {
                c.violation("outcome.outcome_type", "longer than 64 characters");
            }
            if let Some(at) = at
                && !outcome_type.is_empty()
                && meters.prices_outcome(at, &outcome_type) == Some(false)
            {
                c.violation(
                    "outcome.outcome_type",
                    format!("no outcome meter that sees it prices `{outcome_type}` (OUT-2)"),
                );
            }
            Some(Body::Outcome(OutcomeReport { consumer, conversation, outcome_type, revoked: o.revoked }))
        }
        RawBody::Void(v) => c.void(v, meters),
        RawBody::Unknown(name) => {
            let what =
                if name.is_empty() { "no event kind set".to_string() } else { format!("unknown event type `{name}`") };
            c.violation(
                "kind",
                format!("{what}: one of message, conversation_opened, cobrowse, function_invocations, outcome, void (typing indicators and receipts are not metered)"),
            );
            None
        }
    };
    match (c.violations.is_empty(), at, body) {
        (true, Some(at), Some(body)) => Ok(Event { event_id, at, body }),
        _ => Err(c.violations),
    }
}

/// COR: at most this many days from `from` to `to`.
pub const MAX_VOID_DAYS: i64 = 400;

impl Checker {
    fn void<M: Meters + ?Sized>(&mut self, v: RawVoid, meters: &M) -> Option<Body> {
        let mut date = |field: &str, text: &str| match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(d) if text.len() == 10 => Some(d),
            _ if text.is_empty() => {
                self.violation(field, "is required (a local date YYYY-MM-DD)");
                None
            }
            _ => {
                self.violation(field, format!("`{text}` is not a date YYYY-MM-DD"));
                None
            }
        };
        let (from, to) = (date("void.from", &v.from), date("void.to", &v.to));
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                self.violation("void.to", "is before `from`");
            } else if (t - f).num_days() > MAX_VOID_DAYS {
                self.violation("void.to", format!("more than {MAX_VOID_DAYS} days after `from`"));
            }
        }
        let reason = self.required("void.reason", v.reason);
        if reason.chars().count() > 256 {
            self.violation("void.reason", "longer than 256 characters");
        }
        let mut selector = |field: &str, value: Option<String>| {
            let value = value?;
            self.check_text(field, &value);
            if value.is_empty() {
                self.violation(field, "is given empty: leave it out to select any (COR-4)");
            }
            Some(value)
        };
        let meter = selector("void.meter", v.meter);
        let consumer = selector("void.consumer_id", v.consumer_id);
        let conversation = selector("void.conversation_id", v.conversation_id);
        let integration = selector("void.integration_id", v.integration_id);
        let outcome_type = selector("void.outcome_type", v.outcome_type);
        if let Some(m) = &meter
            && !m.is_empty()
            && !meters.knows_meter(m)
        {
            self.violation("void.meter", format!("`{m}` is not a meter of the tenant"));
        }
        Some(Body::Void(Void {
            from: from?,
            to: to?,
            reason,
            meter,
            consumer,
            conversation,
            integration,
            outcome_type,
            by: v.by.filter(|b| !b.is_empty()),
        }))
    }

    fn required_len(&mut self, field: &str, value: String) -> String {
        if value.len() > MAX_ID_BYTES {
            self.violation(field, format!("longer than {MAX_ID_BYTES} bytes"));
        }
        value
    }

    /// A Functions count: present, not negative, at most 10^12 (CR-8, T-6).
    fn invocations(&mut self, count: Option<i64>) -> Option<u64> {
        let field = "function_invocations.count";
        match count {
            None => self.violation(field, "is required"),
            Some(n) if n < 0 => self.violation(field, "must not be negative"),
            Some(n) if n as u64 > MAX_INVOCATIONS_PER_EVENT => {
                self.violation(field, "at most 10^12 invocations in one event")
            }
            Some(n) => return Some(n as u64),
        }
        None
    }

    fn money(&mut self, field: &str, raw: RawMoney) -> Option<Money> {
        let amount = match parse_decimal(&raw.amount) {
            Some(a) if a.is_sign_negative() && !a.is_zero() => {
                self.violation(&format!("{field}.amount"), "must not be negative");
                None
            }
            Some(a) => match amount_limit_violation(a) {
                Some(why) => {
                    self.violation(&format!("{field}.amount"), why);
                    None
                }
                None => Some(a),
            },
            None => {
                self.violation(&format!("{field}.amount"), "not a decimal string of at most 28 digits");
                None
            }
        };
        let currency = Currency::parse(&raw.currency);
        if currency.is_none() {
            self.violation(&format!("{field}.currency"), "must be three capital letters (ISO 4217)");
        }
        Some(Money::new(amount?, currency?))
    }
}

impl Event {
    /// The request field that carries the event's body.
    pub fn kind_field(&self) -> &'static str {
        match &self.body {
            Body::Message(_) => "message",
            Body::ConversationOpened(_) => "conversation_opened",
            Body::Cobrowse(_) => "cobrowse",
            Body::FunctionInvocations { .. } => "function_invocations",
            Body::Outcome(_) => "outcome",
            Body::Void(_) => "void",
        }
    }

    /// The consumer the event is about, if any.
    pub fn consumer(&self) -> Option<&str> {
        match &self.body {
            Body::Message(m) => Some(&m.consumer),
            Body::ConversationOpened(o) => Some(&o.consumer),
            Body::Cobrowse(b) => Some(&b.consumer),
            Body::Outcome(o) => Some(&o.consumer),
            Body::FunctionInvocations { .. } | Body::Void(_) => None,
        }
    }

    /// The canonical payload's fingerprint: two spellings of the same instant, or of the
    /// same decimal price, are the same payload (T-2).
    pub fn payload_fp(&self, fingerprinter: &Fingerprinter) -> Fp {
        fn opt(s: &Option<String>) -> &str {
            s.as_deref().unwrap_or("")
        }
        let b = fingerprinter
            .start(domain::PAYLOAD)
            .i64(self.at.timestamp())
            .u64(u64::from(self.at.timestamp_subsec_nanos()));
        match &self.body {
            Body::Message(m) => {
                // A decimal's normalized mantissa and scale identify its value exactly.
                let price = m.price.map(|p| (p.amount.normalize(), p.currency));
                let (mantissa, scale) = price.map(|(a, _)| (a.mantissa(), a.scale())).unwrap_or_default();
                let currency = price.as_ref().map(|(_, c)| c.as_str()).unwrap_or("");
                b.u64(1)
                    .str(&m.consumer)
                    .str(opt(&m.conversation))
                    .str(m.sender.name())
                    .str(opt(&m.sender_id))
                    .str(m.channel.name())
                    .str(opt(&m.integration))
                    .u64(mantissa as u64)
                    .u64((mantissa >> 64) as u64)
                    .u64(u64::from(scale))
                    .str(currency)
                    .finish()
            }
            Body::ConversationOpened(o) => {
                b.u64(2).str(&o.consumer).str(&o.conversation).str(o.channel.name()).str(opt(&o.integration)).finish()
            }
            Body::Cobrowse(c) => {
                b.u64(3).str(&c.consumer).str(&c.conversation).str(&c.session).u64(u64::from(c.established)).finish()
            }
            Body::FunctionInvocations { count } => b.u64(4).u64(*count).finish(),
            // An absent `revoked` and `false` are one payload (OUT).
            Body::Outcome(o) => {
                b.u64(5).str(&o.consumer).str(&o.conversation).str(&o.outcome_type).u64(u64::from(o.revoked)).finish()
            }
            Body::Void(v) => {
                let present = |s: &Option<String>| (u64::from(s.is_some()), opt(s).to_string());
                let mut b = b.u64(6).str(&v.from.to_string()).str(&v.to.to_string()).str(&v.reason);
                for s in [&v.meter, &v.consumer, &v.conversation, &v.integration, &v.outcome_type] {
                    let (is, text) = present(s);
                    b = b.u64(is).str(&text);
                }
                b.finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rating::meter::{CYCLE, DAR};

    fn message(sender: SenderRole) -> RawEvent {
        RawEvent {
            tenant_id: "t".into(),
            event_id: "m1".into(),
            event_time: "2025-06-10T09:00:00-04:00".into(),
            body: RawBody::Message(RawMessage {
                consumer_id: "c1".into(),
                conversation_id: "A".into(),
                sender_role: RawEnum::Known(sender),
                sender_id: String::new(),
                channel: RawEnum::Known(Channel::Web),
                integration_id: String::new(),
                provider_price: None,
            }),
        }
    }

    fn fields(result: Result<Event, Vec<FieldViolation>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn t_6_every_invalid_field_is_named() {
        let mut raw = message(SenderRole::Consumer);
        raw.event_time = "2025-06-10T09:00:00".into();
        if let RawBody::Message(m) = &mut raw.body {
            m.consumer_id.clear();
            m.channel = RawEnum::Unknown("pigeon".into());
            m.provider_price = Some(RawMoney { amount: "-1".into(), currency: "usd".into() });
        }
        assert_eq!(
            fields(validate(raw, &DAR)),
            [
                "event_time",
                "message.consumer_id",
                "message.channel",
                "message.provider_price.amount",
                "message.provider_price.currency"
            ]
        );
    }

    #[test]
    fn dar_5_only_proactive_messages_may_omit_the_conversation() {
        for (sender, ok) in [(SenderRole::Proactive, true), (SenderRole::Agent, false), (SenderRole::System, false)] {
            let mut raw = message(sender);
            if let RawBody::Message(m) = &mut raw.body {
                m.conversation_id.clear();
            }
            assert_eq!(validate(raw, &DAR).is_ok(), ok, "{sender:?}");
        }
    }

    #[test]
    fn cyc_4_integration_is_required_on_the_cycle_meter() {
        assert_eq!(fields(validate(message(SenderRole::Consumer), &CYCLE)), ["message.integration_id"]);
        assert!(validate(message(SenderRole::Consumer), &DAR).is_ok());
    }

    #[test]
    fn t_6_unknown_event_types_and_negative_counts() {
        let raw = RawEvent { body: RawBody::Unknown("typing".into()), ..message(SenderRole::Consumer) };
        assert_eq!(fields(validate(raw, &DAR)), ["kind"]);
        let raw = RawEvent { body: RawBody::FunctionInvocations { count: Some(-1) }, ..message(SenderRole::Consumer) };
        assert_eq!(fields(validate(raw, &DAR)), ["function_invocations.count"]);
    }

    #[test]
    fn t_6_amounts_and_counts_beyond_the_limits_are_refused_by_field() {
        let priced = |amount: &str| {
            let mut raw = message(SenderRole::Agent);
            if let RawBody::Message(m) = &mut raw.body {
                m.provider_price = Some(RawMoney { amount: amount.into(), currency: "USD".into() });
            }
            validate(raw, &DAR)
        };
        for bad in ["9999999999999999999999999999", "0.0000000000000000000000000001", "1000000000000", "1.00000000001"]
        {
            assert_eq!(fields(priced(bad)), ["message.provider_price.amount"], "{bad}");
        }
        assert!(priced("999999999999.9999999999").is_ok());
        assert!(priced("0.1000000000000").is_ok(), "trailing zeros are no digits");
        let counted =
            |n: i64| RawEvent { body: RawBody::FunctionInvocations { count: Some(n) }, ..message(SenderRole::Agent) };
        assert_eq!(fields(validate(counted(i64::MAX), &DAR)), ["function_invocations.count"]);
        assert!(validate(counted(1_000_000_000_000), &DAR).is_ok());
    }

    #[test]
    fn t_2_payload_ignores_the_spelling_of_the_instant_and_price() {
        let f = Fingerprinter::new([9; 16]);
        let mut a = message(SenderRole::Agent);
        let mut b = message(SenderRole::Agent);
        b.event_time = "2025-06-10T13:00:00Z".into();
        for (raw, amount) in [(&mut a, "0.0079"), (&mut b, "0.00790")] {
            if let RawBody::Message(m) = &mut raw.body {
                m.provider_price = Some(RawMoney { amount: amount.into(), currency: "USD".into() });
            }
        }
        let (a, b) = (validate(a, &DAR).unwrap(), validate(b, &DAR).unwrap());
        assert_eq!(a.payload_fp(&f), b.payload_fp(&f));
        let mut c = a.clone();
        c.at += chrono::TimeDelta::seconds(15);
        assert_ne!(a.payload_fp(&f), c.payload_fp(&f));
    }
}
