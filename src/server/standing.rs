//! A tenant's interactions as its journaled records show them: what its catalogue for
//! voids is built from at its first void (COR), live and on replay. The journal itself
//! knows nothing of records; this reads them back.

use std::collections::HashMap;

use crate::api::pb;
use crate::rating::engine::Standing;
use crate::rating::ids::RecordId;

/// Journal entries read per step.
const STEP: u64 = 4096;

/// The tenant's interactions as its journaled records show them (entries `1..=until`),
/// to seed its catalogue for voids at its first void (`Daybook::prepare_void`, and
/// replay). Synchronous: the caller holds what must not move meanwhile.
pub(super) fn from_journal(
    dir: &std::path::Path,
    tenant: &str,
    until: u64,
) -> Result<Vec<crate::rating::engine::Standing>, std::io::Error> {
    let mut standing: Vec<Standing> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut from = 1;
    while from <= until {
        let to = until.min(from + STEP);
        for entry in super::journal::read_from(dir, from, to)? {
            for bytes in &entry.records {
                let Ok(record) = <pb::Record as prost::Message>::decode(bytes.as_ref()) else { continue };
                if record.tenant_id != tenant {
                    continue;
                }
                match record.body {
                    Some(pb::record::Body::Interaction(i)) => {
                        let Some(s) = of_interaction(i) else { continue };
                        index.insert(s.id.to_string(), standing.len());
                        standing.push(s);
                    }
                    Some(pb::record::Body::Withdrawal(w)) => {
                        if let Some(&n) = index.get(&w.interaction_id) {
                            if w.voided {
                                standing[n].voided_by = Some(w.event_id);
                            } else {
                                standing[n].withdrawn = true;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        from = to + 1;
    }
    Ok(standing)
}

/// An interaction record as a void selects it: its id, meter, fields and its period's
/// first local date (`None`: not a record this version wrote).
pub(super) fn of_interaction(i: pb::Interaction) -> Option<Standing> {
    let id = RecordId::parse(&i.interaction_id)?;
    // The period's start is written in its local time: its first ten characters are the
    // local date.
    let start = i.period.as_ref().and_then(|p| p.start_time.get(..10)?.parse().ok())?;
    let key = i.key.unwrap_or_default();
    let opt = |s: String| (!s.is_empty()).then_some(s);
    Some(Standing {
        id,
        meter_id: i.meter_id,
        consumer: key.consumer_id,
        conversation: opt(key.conversation_id),
        integration: opt(key.integration_id),
        outcome_type: opt(i.outcome_type),
        start,
        voided_by: opt(i.voided_by),
        withdrawn: false,
    })
}
