//! Engine state as a byte stream, for snapshots: every map of the engine, tenants by id
//! (so indices may differ on load), and the alerts raised. Pure encoding over `Write` and
//! `Read`; the server decides where the bytes live. Aggregates are not stored: they are
//! rebuilt from the state on load.

use std::io::{Read, Write};
use std::sync::Arc;

use chrono::TimeDelta;
use chrono_tz::Tz;

use super::credits::LineKind;

use super::ledger::{Frozen, Totals};
use super::meter::MeterKind;
use super::money::{Currency, Money};
use super::outcome::{
    Alert, CreditLine, Disposition, Interaction, InteractionKey, NotBillableReason, Origin, Outcome, PassThroughCharge,
    PeriodInfo,
};
use super::settings::Features;
use super::state::{CobrowseEntry, FunctionsEntry, InteractionEntry, Outbound, PassThroughEntry, ReplyLog};
use super::time;

mod corrections;
mod stream;
pub use corrections::{
    catalogued_in, catalogued_out, outcome_state_in, outcome_state_out, void_rule_in, void_rule_out,
};
pub use stream::{ReadResult, Reader, VERSION, Writer};

/// Rules are `&'static str` in the core; snapshots store their names.
const RULES: &[&str] = &[
    "DAR-1", "DAR-2", "DAR-3", "DAR-4", "DAR-5", "DAR-6", "CYC-1", "CYC-2", "CYC-3", "CYC-4", "CYC-5", "CYC-6",
    "MAU-1", "CR-1", "CR-2", "CR-3", "CR-4", "CR-5", "CR-6", "CR-7", "CR-8", "CR-9", "PL-1", "PL-2", "PL-3", "PL-4",
    "T-1", "T-2", "T-3", "T-4", "T-5", "T-6", "", "MS-1", "MS-2", "MS-3", "MS-4", "MS-5", "MS-6", "EV-1", "EV-2",
    "OUT-1", "OUT-2", "OUT-3", "OUT-4", "COR-1", "COR-2", "COR-3", "COR-4",
];

fn rule(name: &str) -> ReadResult<&'static str> {
    RULES.iter().find(|r| **r == name).copied().ok_or_else(|| format!("unknown rule `{name}`"))
}

const KINDS: [LineKind; 8] = [
    LineKind::Base,
    LineKind::GenerativeAi,
    LineKind::IntentListening,
    LineKind::PerformanceOptimizer,
    LineKind::Cobrowse,
    LineKind::Functions,
    LineKind::Outcome,
    LineKind::Units,
];

fn kind_code(k: LineKind) -> u8 {
    KINDS.iter().position(|x| *x == k).expect("every kind is listed") as u8
}

fn kind(code: u8) -> ReadResult<LineKind> {
    KINDS.get(code as usize).copied().ok_or_else(|| format!("unknown line kind {code}"))
}

fn period_out<W: Write>(w: &mut Writer<W>, p: &PeriodInfo) -> std::io::Result<()> {
    w.str(&p.label)?;
    w.instant(p.start)?;
    w.instant(p.end)?;
    w.str(p.zone.name())
}

fn period_in<R: Read>(r: &mut Reader<R>) -> ReadResult<PeriodInfo> {
    let label = r.str()?;
    let (start, end) = (r.instant()?, r.instant()?);
    let zone: Tz = r.str()?.parse().map_err(|_| "unknown zone".to_string())?;
    Ok(PeriodInfo { label, start, end, zone })
}

fn line_out<W: Write>(w: &mut Writer<W>, l: &CreditLine) -> std::io::Result<()> {
    w.id(l.id)?;
    w.opt_id(l.interaction_id)?;
    w.u8(kind_code(l.kind))?;
    w.u8(l.applies_to.map(|k| kind_code(k) + 1).unwrap_or(0))?;
    w.decimal(l.credits)?;
    w.str(l.rule)?;
    period_out(w, &l.period)?;
    w.str(&l.event_id)?;
    w.opt_id(l.reverses)?;
    w.opt_str(l.meter.as_deref())
}

fn line_in<R: Read>(r: &mut Reader<R>) -> ReadResult<CreditLine> {
    let id = r.id()?;
    let interaction_id = r.opt_id()?;
    let kind_value = kind(r.u8()?)?;
    let applies_to = match r.u8()? {
        0 => None,
        n => Some(kind(n - 1)?),
    };
    Ok(CreditLine {
        id,
        interaction_id,
        kind: kind_value,
        applies_to,
        credits: r.decimal()?,
        rule: rule(&r.str()?)?,
        period: period_in(r)?,
        event_id: r.str()?,
        reverses: r.opt_id()?,
        meter: if r.version >= 3 { r.opt_str()?.map(|m| Arc::from(m.as_str())) } else { None },
    })
}

const REASONS: [NotBillableReason; 8] = [
    NotBillableReason::SystemMessage,
    NotBillableReason::ProactiveAwaitingReply,
    NotBillableReason::CobrowseNotEstablished,
    NotBillableReason::CobrowseSessionCounted,
    NotBillableReason::FunctionsFreeTier,
    NotBillableReason::NotMetered,
    NotBillableReason::OutcomeNotBilled,
    NotBillableReason::Correction,
];

/// A whole outcome (only the rare ones that cannot be re-derived are stored whole).
pub fn outcome_out<W: Write>(w: &mut Writer<W>, o: &Outcome) -> std::io::Result<()> {
    w.str(&o.event_id)?;
    match o.disposition {
        Disposition::NewInteraction => w.u8(0)?,
        Disposition::AlreadyCounted => w.u8(1)?,
        Disposition::Charged => w.u8(2)?,
        Disposition::NotBillable(r) => {
            w.u8(3)?;
            w.u8(REASONS.iter().position(|x| *x == r).expect("every reason is listed") as u8)?;
        }
    }
    w.u32(o.interactions.len() as u32)?;
    for i in &o.interactions {
        w.id(i.id)?;
        w.str(&i.tenant)?;
        w.str(i.meter.name())?;
        w.str(&i.key.consumer)?;
        w.opt_str(i.key.conversation.as_deref())?;
        w.opt_str(i.key.integration.as_deref())?;
        period_out(w, &i.period)?;
        w.str(i.rule)?;
        w.u32(i.lines.len() as u32)?;
        for l in &i.lines {
            line_out(w, l)?;
        }
        w.str(&i.event_id)?;
        w.str(&i.meter_id)?;
        w.opt_str(i.outcome_type.as_deref())?;
        w.opt_str(i.voided_by.as_deref())?;
        origin_out(w, i.origin.as_ref())?;
    }
    w.u32(o.counted_in.len() as u32)?;
    for id in &o.counted_in {
        w.id(*id)?;
    }
    w.u32(o.lines.len() as u32)?;
    for l in &o.lines {
        line_out(w, l)?;
    }
    match &o.pass_through {
        None => w.u8(0),
        Some(p) => {
            w.u8(1)?;
            w.id(p.id)?;
            w.decimal(p.price.amount)?;
            w.str(p.price.currency.as_str())?;
            w.decimal(p.charge.amount)?;
            period_out(w, &p.period)?;
            w.str(&p.event_id)?;
            origin_out(w, p.origin.as_ref())
        }
    }
}

fn origin_out<W: Write>(w: &mut Writer<W>, origin: Option<&Origin>) -> std::io::Result<()> {
    match origin {
        None => w.u8(0),
        Some(o) => {
            w.u8(1)?;
            w.str(o.channel.name())?;
            w.opt_str(o.integration.as_deref())
        }
    }
}

fn origin_in<R: Read>(r: &mut Reader<R>) -> ReadResult<Option<Origin>> {
    if r.version < 4 || r.u8()? == 0 {
        return Ok(None);
    }
    let channel = crate::rating::event::Channel::parse(&r.str()?).ok_or("unknown channel")?;
    Ok(Some(Origin { channel, integration: r.opt_str()? }))
}

pub fn outcome_in<R: Read>(r: &mut Reader<R>) -> ReadResult<Outcome> {
    let event_id = r.str()?;
    let disposition = match r.u8()? {
        0 => Disposition::NewInteraction,
        1 => Disposition::AlreadyCounted,
        2 => Disposition::Charged,
        3 => Disposition::NotBillable(*REASONS.get(r.u8()? as usize).ok_or("unknown reason")?),
        n => return Err(format!("unknown disposition {n}")),
    };
    let mut interactions = Vec::new();
    for _ in 0..r.u32()? {
        let id = r.id()?;
        let tenant: Arc<str> = Arc::from(r.str()?.as_str());
        let meter = MeterKind::parse(&r.str()?).ok_or("unknown meter")?;
        let key = InteractionKey { consumer: r.str()?, conversation: r.opt_str()?, integration: r.opt_str()? };
        let period = period_in(r)?;
        let rule_name = rule(&r.str()?)?;
        let mut lines = Vec::new();
        for _ in 0..r.u32()? {
            lines.push(line_in(r)?);
        }
        let event_id = r.str()?;
        let (meter_id, outcome_type, voided_by) = if r.version >= 3 {
            (Arc::from(r.str()?.as_str()), r.opt_str()?, r.opt_str()?)
        } else {
            (Arc::from(meter.name()), None, None)
        };
        interactions.push(Interaction {
            id,
            tenant,
            meter,
            meter_id,
            key,
            outcome_type,
            voided_by,
            period,
            rule: rule_name,
            lines,
            event_id,
            origin: origin_in(r)?,
        });
    }
    let mut counted_in = Vec::new();
    for _ in 0..r.u32()? {
        counted_in.push(r.id()?);
    }
    let mut lines = Vec::new();
    for _ in 0..r.u32()? {
        lines.push(line_in(r)?);
    }
    let pass_through = if r.u8()? == 1 {
        let id = r.id()?;
        let amount = r.decimal()?;
        let currency = Currency::parse(&r.str()?).ok_or("bad currency")?;
        let charge = r.decimal()?;
        Some(PassThroughCharge {
            id,
            price: Money::new(amount, currency),
            charge: Money::new(charge, currency),
            period: period_in(r)?,
            event_id: r.str()?,
            origin: origin_in(r)?,
        })
    } else {
        None
    };
    Ok(Outcome { event_id, disposition, retry: false, interactions, counted_in, lines, pass_through })
}

pub fn interaction_entry_out<W: Write>(w: &mut Writer<W>, e: &InteractionEntry) -> std::io::Result<()> {
    w.u32(e.tenant)?;
    w.u32(e.period_start as u32)?;
    w.u32(e.first_ms)?;
    w.u32(e.first_tie)?;
    w.u8(e.any.0)?;
    w.u8(e.first.0)?;
    // The meter rides above the generation's 16 bits: snapshots written before meters
    // read back as meter 0.
    w.u32(u32::from(e.generation) | u32::from(e.meter) << 16)
}

pub fn interaction_entry_in<R: Read>(r: &mut Reader<R>) -> ReadResult<InteractionEntry> {
    let (tenant, period_start, first_ms, first_tie) = (r.u32()?, r.u32()? as i32, r.u32()?, r.u32()?);
    let (any, first) = (Features(r.u8()?), Features(r.u8()?));
    let packed = r.u32()?;
    Ok(InteractionEntry {
        tenant,
        period_start,
        first_ms,
        first_tie,
        any,
        first,
        generation: (packed & 0xff) as u8,
        meter: (packed >> 16) as u8,
    })
}

pub fn cobrowse_out<W: Write>(w: &mut Writer<W>, e: &CobrowseEntry) -> std::io::Result<()> {
    w.u32(e.tenant)?;
    w.str(&e.session)?;
    w.instant(e.first_at)?;
    w.u32(e.first_tie)?;
    w.str(&e.first_event_id)
}

pub fn cobrowse_in<R: Read>(r: &mut Reader<R>) -> ReadResult<CobrowseEntry> {
    Ok(CobrowseEntry {
        tenant: r.u32()?,
        session: r.str()?,
        first_at: r.instant()?,
        first_tie: r.u32()?,
        first_event_id: r.str()?,
    })
}

pub fn functions_out<W: Write>(w: &mut Writer<W>, e: &FunctionsEntry) -> std::io::Result<()> {
    w.u32(e.tenant)?;
    w.u32(e.month_start as u32)?;
    w.u32(e.counts.len() as u32)?;
    for (fp, n) in &e.counts {
        w.fp(*fp)?;
        w.u64(*n)?;
    }
    Ok(())
}

pub fn functions_in<R: Read>(r: &mut Reader<R>) -> ReadResult<FunctionsEntry> {
    let (tenant, month_start) = (r.u32()?, r.u32()? as i32);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..r.u32()? {
        counts.insert(r.fp()?, r.u64()?);
    }
    Ok(FunctionsEntry { tenant, month_start, counts, shared_total: 0 })
}

pub fn pass_through_out<W: Write>(w: &mut Writer<W>, e: &PassThroughEntry) -> std::io::Result<()> {
    w.u32(e.tenant)?;
    w.u32(e.date as u32)?;
    w.str(e.currency.as_str())?;
    w.decimal(e.charge)
}

pub fn pass_through_in<R: Read>(r: &mut Reader<R>) -> ReadResult<PassThroughEntry> {
    Ok(PassThroughEntry {
        tenant: r.u32()?,
        date: r.u32()? as i32,
        currency: Currency::parse(&r.str()?).ok_or("bad currency")?,
        charge: r.decimal()?,
    })
}

pub fn replies_out<W: Write>(w: &mut Writer<W>, e: &ReplyLog) -> std::io::Result<()> {
    w.u32(e.tenant)?;
    w.str(&e.consumer)?;
    w.u32(e.outbounds.len() as u32)?;
    for o in &e.outbounds {
        w.instant(o.at)?;
        w.u32(o.tie)?;
        w.str(&o.event_id)?;
        w.opt_str(o.conversation.as_deref())?;
        w.opt_str(o.integration.as_deref())?;
        w.i64(o.window.num_milliseconds())?;
        match &o.charged_to {
            None => w.u8(0)?,
            Some(c) => {
                w.u8(1)?;
                w.opt_str(c.as_deref())?;
            }
        }
    }
    w.u32(e.replies.len() as u32)?;
    for (at, conversation) in &e.replies {
        w.instant(*at)?;
        w.str(conversation)?;
    }
    w.u8(e.meter)
}

pub fn replies_in<R: Read>(r: &mut Reader<R>) -> ReadResult<ReplyLog> {
    let (tenant, consumer) = (r.u32()?, r.str()?);
    let mut outbounds = Vec::new();
    for _ in 0..r.u32()? {
        let at = r.instant()?;
        let tie = r.u32()?;
        let event_id = r.str()?;
        let conversation = r.opt_str()?;
        let integration = r.opt_str()?;
        let window = TimeDelta::milliseconds(r.i64()?);
        let charged_to = if r.u8()? == 1 { Some(r.opt_str()?) } else { None };
        outbounds.push(Outbound { at, tie, event_id, conversation, integration, window, charged_to });
    }
    let mut replies = Vec::new();
    for _ in 0..r.u32()? {
        replies.push((r.instant()?, r.str()?));
    }
    let meter = if r.version >= 3 { r.u8()? } else { 0 };
    Ok(ReplyLog { tenant, meter, consumer, outbounds, replies })
}

pub fn alert_out<W: Write>(w: &mut Writer<W>, a: &Alert) -> std::io::Result<()> {
    w.id(a.id)?;
    w.str(&a.period)?;
    w.decimal(a.threshold)?;
    w.decimal(a.usage)?;
    w.decimal(a.base)?;
    w.str(&a.event_id)
}

pub fn alert_in<R: Read>(r: &mut Reader<R>) -> ReadResult<Alert> {
    Ok(Alert {
        id: r.id()?,
        period: r.str()?,
        threshold: r.decimal()?,
        usage: r.decimal()?,
        base: r.decimal()?,
        event_id: r.str()?,
    })
}

/// What pruned state left of a tenant's aggregates.
pub fn frozen_out<W: Write>(w: &mut Writer<W>, f: &Frozen) -> std::io::Result<()> {
    w.u32(f.days.len() as u32)?;
    for (date, totals) in &f.days {
        w.u32(time::date_to_days(*date) as u32)?;
        w.u64(totals.interactions)?;
        for c in &totals.credits {
            w.decimal(*c)?;
        }
        let amounts: Vec<_> = totals.pass_through.iter().collect();
        w.u32(amounts.len() as u32)?;
        for (currency, amount) in amounts {
            w.str(currency.as_str())?;
            w.decimal(amount)?;
        }
        w.u32(totals.meters.len() as u32)?;
        for (meter, t) in &totals.meters {
            w.u8(*meter)?;
            w.i64(t.interactions)?;
            w.u64(t.units)?;
            w.decimal(t.credits)?;
        }
    }
    w.u32(f.users.len() as u32)?;
    for (month, count) in &f.users {
        w.u32(time::date_to_days(*month) as u32)?;
        w.u64(*count)?;
    }
    Ok(())
}

pub fn frozen_in<R: Read>(r: &mut Reader<R>) -> ReadResult<Frozen> {
    let mut f = Frozen::default();
    for _ in 0..r.u32()? {
        let date = date_in(r)?;
        let mut totals = Totals { interactions: r.u64()?, ..Totals::default() };
        // Version 2 had the eight buckets before outcomes and units.
        let buckets = if r.version >= 3 { totals.credits.len() } else { 8 };
        for c in totals.credits.iter_mut().take(buckets) {
            *c = r.decimal()?;
        }
        for _ in 0..r.u32()? {
            let currency = Currency::parse(&r.str()?).ok_or("bad currency")?;
            if !totals.pass_through.add(currency, r.decimal()?) {
                return Err("a pass-through total beyond exact decimals".into());
            }
        }
        if r.version >= 3 {
            for _ in 0..r.u32()? {
                let meter = r.u8()?;
                let t = super::ledger::MeterTotals { interactions: r.i64()?, units: r.u64()?, credits: r.decimal()? };
                totals.meters.insert(meter, t);
            }
        }
        f.days.insert(date, totals);
    }
    for _ in 0..r.u32()? {
        let month = date_in(r)?;
        f.users.insert(month, r.u64()?);
    }
    Ok(f)
}

/// A date, checked: it is read before the checksum is.
pub(super) fn date_in<R: Read>(r: &mut Reader<R>) -> ReadResult<chrono::NaiveDate> {
    chrono::NaiveDate::from_num_days_from_ce_opt(r.u32()? as i32).ok_or_else(|| "bad date".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, as a slow file might: every field then
    /// straddles chunk boundaries.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 3 + 1;
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn written() -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        w.u64(0x0102_0304_0506_0708).unwrap();
        w.blob(b"a snapshot's blob").unwrap();
        w.u8(7).unwrap();
        w.u32(99).unwrap();
        w.finish().unwrap()
    }

    fn read(input: impl Read) -> ReadResult<(u64, Vec<u8>, u8, u32)> {
        let mut r = Reader::new(input);
        let out = (r.u64()?, r.blob()?, r.u8()?, r.u32()?);
        r.finish()?;
        Ok(out)
    }

    #[test]
    fn reads_back_across_chunk_boundaries_and_every_flipped_byte_is_caught() {
        let bytes = written();
        let expected = (0x0102_0304_0506_0708, b"a snapshot's blob".to_vec(), 7, 99);
        assert_eq!(read(bytes.as_slice()).unwrap(), expected);
        assert_eq!(read(Trickle(&bytes, 0)).unwrap(), expected);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            assert!(read(Trickle(&damaged, 0)).is_err(), "a flipped byte at {i} goes unnoticed");
        }
        assert!(read(&bytes[..bytes.len() - 1]).is_err(), "a truncated snapshot is refused");
    }
}
