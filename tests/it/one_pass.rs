//! One pass per event (issue 15, item 4): under a shared store, an event whose claim the
//! store applied is committed as it was rated for the claim (`Engine::commit_claim`),
//! not rated a second time. This holds it to the second rating it replaces
//! (`Engine::ingest_claimed`): the same outcomes, records and books, event by event, over
//! a stream of every event kind (agents and bots, pass-through prices, co-browse,
//! Functions, settings changes, retries and reuses).

use daybook::rating::engine::Rated;
use daybook::rating::{Engine, RawEvent};

use super::replicas::{TENANT_IDS, offline_engine, stream};

/// Rates `raw` as a replica whose store applies every claim, committing claims with
/// `commit` (the one pass, or the second rating).
/// Returns the answer and records, and whether the event claimed.
fn rate(engine: &Engine, raw: RawEvent, once: bool) -> (String, bool) {
    let mut records = Vec::new();
    let admitted = match engine.admit(raw.clone(), None) {
        Ok(admitted) => admitted,
        Err(refusal) => return (format!("{refusal:?}"), false),
    };
    let near = engine.ingest_shared(&admitted, None, false, &mut records);
    let (result, claimed) = match near.rated {
        Rated::Done(result) => (result, false),
        Rated::Claim(claim) if once => {
            (engine.commit_claim(&claim, &mut records).expect("not accepted meanwhile"), true)
        }
        Rated::Claim(claim) => (engine.ingest_claimed(raw, None, claim.before.clone(), None, &mut records), true),
        Rated::Void(_) => unreachable!("no voids in this stream"),
    };
    (format!("{result:?} {records:?}"), claimed)
}

#[test]
fn a_claimed_event_committed_as_rated_matches_its_second_rating() {
    let (once, twice) = (offline_engine(), offline_engine());
    let mut events = stream(11, 1500);
    // Retries and reuses of ids, committed events answered from what they met.
    let again: Vec<_> = events.iter().step_by(7).cloned().collect();
    events.extend(again);
    let mut claimed = 0;
    for event in events {
        let raw = RawEvent::from(event);
        let (answer, claims) = rate(&once, raw.clone(), true);
        assert_eq!(answer, rate(&twice, raw, false).0);
        claimed += usize::from(claims);
    }
    assert!(claimed > 100, "first touches claim: {claimed}");
    for tenant in TENANT_IDS {
        assert_eq!(format!("{:?}", once.usage(tenant, None, None)), format!("{:?}", twice.usage(tenant, None, None)));
        assert_eq!(format!("{:?}", once.statements(tenant)), format!("{:?}", twice.statements(tenant)));
    }
}
