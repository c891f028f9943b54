//! The encoding of RULEBOOK part two's state: outcome meters' states (OUT), voids and
//! the catalogue of interactions they select from (COR).

use std::io::{Read, Write};

use super::super::engine::{Catalogued, Source, VoidRule};
use super::super::event::Void;
use super::super::state::{Billed, Occurrence, OutcomeState};
use super::super::time::{self, Instant};
use super::{ReadResult, Reader, Writer, date_in};

fn opt_instant_out<W: Write>(w: &mut Writer<W>, t: Option<Instant>) -> std::io::Result<()> {
    match t {
        None => w.u8(0),
        Some(t) => {
            w.u8(1)?;
            w.instant(t)
        }
    }
}

fn opt_instant_in<R: Read>(r: &mut Reader<R>) -> ReadResult<Option<Instant>> {
    Ok(if r.u8()? == 1 { Some(r.instant()?) } else { None })
}

pub fn outcome_state_out<W: Write>(w: &mut Writer<W>, e: &OutcomeState) -> std::io::Result<()> {
    w.u32(e.tenant)?;
    w.u8(e.meter)?;
    w.str(&e.conversation)?;
    w.str(&e.outcome_type)?;
    w.u32(e.occurrences.len() as u32)?;
    for o in &e.occurrences {
        w.instant(o.at)?;
        w.str(&o.event_id)?;
        w.str(&o.consumer)?;
        w.u8(u8::from(o.cancelled))?;
    }
    w.u32(e.revocations.len() as u32)?;
    for r in &e.revocations {
        w.instant(*r)?;
    }
    match &e.billed {
        None => w.u8(0)?,
        Some(b) => {
            w.u8(1)?;
            w.str(&b.event_id)?;
            w.str(&b.consumer)?;
            w.instant(b.at)?;
            w.id(b.interaction)?;
            w.opt_id(b.line)?;
            w.decimal(b.credits)?;
        }
    }
    w.u32(e.generation)
}

pub fn outcome_state_in<R: Read>(r: &mut Reader<R>) -> ReadResult<OutcomeState> {
    let (tenant, meter, conversation, outcome_type) = (r.u32()?, r.u8()?, r.str()?, r.str()?);
    let mut occurrences = Vec::new();
    for _ in 0..r.u32()? {
        let (at, event_id, consumer, cancelled) = (r.instant()?, r.str()?, r.str()?, r.u8()? == 1);
        occurrences.push(Occurrence { at, event_id, consumer, cancelled });
    }
    let mut revocations = Vec::new();
    for _ in 0..r.u32()? {
        revocations.push(r.instant()?);
    }
    let billed = if r.u8()? == 1 {
        Some(Billed {
            event_id: r.str()?,
            consumer: r.str()?,
            at: r.instant()?,
            interaction: r.id()?,
            line: r.opt_id()?,
            credits: r.decimal()?,
        })
    } else {
        None
    };
    Ok(OutcomeState {
        tenant,
        meter,
        conversation,
        outcome_type,
        occurrences,
        revocations,
        billed,
        generation: r.u32()?,
    })
}

pub fn void_rule_out<W: Write>(w: &mut Writer<W>, v: &VoidRule) -> std::io::Result<()> {
    w.str(&v.event_id)?;
    w.u32(time::date_to_days(v.void.from) as u32)?;
    w.u32(time::date_to_days(v.void.to) as u32)?;
    w.str(&v.void.reason)?;
    for s in
        [&v.void.meter, &v.void.consumer, &v.void.conversation, &v.void.integration, &v.void.outcome_type, &v.void.by]
    {
        w.opt_str(s.as_deref())?;
    }
    opt_instant_out(w, v.arrived)
}

pub fn void_rule_in<R: Read>(r: &mut Reader<R>) -> ReadResult<VoidRule> {
    let event_id = r.str()?;
    let (from, to) = (date_in(r)?, date_in(r)?);
    let reason = r.str()?;
    let void = Void {
        from,
        to,
        reason,
        meter: r.opt_str()?,
        consumer: r.opt_str()?,
        conversation: r.opt_str()?,
        integration: r.opt_str()?,
        outcome_type: r.opt_str()?,
        by: r.opt_str()?,
    };
    Ok(VoidRule { event_id, void, arrived: opt_instant_in(r)? })
}

pub fn catalogued_out<W: Write>(w: &mut Writer<W>, c: &Catalogued) -> std::io::Result<()> {
    w.id(c.id)?;
    w.fp(c.state)?;
    for f in c.fields {
        w.u64(f)?;
    }
    w.u32(c.start as u32)?;
    w.u8(c.meter)?;
    w.u8(match c.source {
        Source::Hot => 0,
        Source::Outcome => 1,
    })
}

pub fn catalogued_in<R: Read>(r: &mut Reader<R>) -> ReadResult<Catalogued> {
    let (id, state) = (r.id()?, r.fp()?);
    let fields = [r.u64()?, r.u64()?, r.u64()?, r.u64()?];
    let start = date_in(r)?;
    let meter = r.u8()?;
    let source = match r.u8()? {
        0 => Source::Hot,
        1 => Source::Outcome,
        n => return Err(format!("unknown source {n}")),
    };
    Ok(Catalogued { id, state, fields, start: time::date_to_days(start), meter, source })
}
