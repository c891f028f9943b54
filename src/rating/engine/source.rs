//! Where a rule's entry comes from, and where it goes: the one thing replication changes
//! about a rule. A rule reads the value of its entry before the event and commits the
//! value after it through the methods here, whatever the mode; each mode is a source,
//! implemented once here:
//!
//! - `Live`: the engine's maps (embedded mode, a tenant log), read and changed in one step;
//! - `Retry`: what the event met when it was first rated (its `Prior`), changing nothing;
//! - `Guarded`: the maps as a near cache of a shared store, changing nothing until the
//!   event is known to change nothing shared;
//! - `Probe` and `Claimed`: the shared store's value of the event's own entry, changing
//!   nothing (what a claim would do), or folding the result into the near cache once the
//!   store applied it.
//!
//! No rule matches on a mode; `ingest` chooses it and turns its result into a claim.

use super::*;

/// How an event is rated: the source of its entries' values.
#[derive(Debug, Clone, Default)]
pub(super) enum Mode {
    /// Against the maps, changing them.
    #[default]
    Live,
    /// A retry: against what the event met (its `Prior`), changing nothing.
    Retry(Prior),
    /// Under a shared store, against the maps (the near cache): an event that would not
    /// change its shared entry is committed as in `Live`; one that would is not committed,
    /// and asks for a [`Claim`] instead.
    Guarded,
    /// Under a shared store, against this value of the event's shared entry, changing
    /// nothing: what a claim would do.
    Probe(Shared),
    /// Under a shared store, against the value the store held before the event (its claim
    /// succeeded, or changed nothing), folding the result into the maps.
    Claimed(Shared),
}

/// The event's own shared entry, as rating found and left it (modes other than `Live`
/// and `Retry`).
#[derive(Debug)]
pub(super) struct SharedTouch {
    pub place: Place,
    pub entry: Fp,
    pub before: Shared,
    pub after: Shared,
    pub expires: Instant,
}

/// A co-browse session as an event found it.
pub(super) enum SessionBefore {
    /// A retry of an event that found its session already charged.
    Counted,
    /// The session's first established event so far (`None`: none yet).
    Entry(Option<CobrowseEntry>),
}

impl Mode {
    /// Whether rating under this mode may end in a commit (the maps change).
    pub(super) fn commits(&self) -> bool {
        matches!(self, Mode::Live | Mode::Guarded | Mode::Claimed(_))
    }

    /// Whether the event is rated against the whole of its tenant's state, here: embedded
    /// mode, or a tenant log. Rules that span several entries (DAR-5 `retroactive`, the
    /// catalogue voids select from) need it.
    pub(super) fn is_whole(&self) -> bool {
        matches!(self, Mode::Live)
    }

    /// Whether the entry an event moves is shared: a claim carries it.
    fn shares(&self) -> bool {
        !matches!(self, Mode::Live | Mode::Retry(_))
    }

    /// An interaction's entry before the event and after it (`next` of it, or
    /// `contribution` when it is new). `own`: the event's own interaction, the one entry
    /// a shared store's value stands for.
    pub(super) fn move_interaction(
        &self,
        engine: &Engine,
        (fp, tenant, own): (Fp, u32, bool),
        contribution: InteractionEntry,
        next: impl Fn(InteractionEntry) -> InteractionEntry,
    ) -> (Option<InteractionEntry>, InteractionEntry) {
        let moved = |old: Option<InteractionEntry>| (old, old.map(&next).unwrap_or(contribution));
        let fold = |new: InteractionEntry| {
            engine.interactions.entry(fp.into()).and_modify(|mine| *mine = mine.join(new)).or_insert(new);
        };
        match self {
            Mode::Retry(Prior::Interaction(old)) => moved(*old),
            Mode::Retry(_) => moved(None),
            Mode::Probe(v) | Mode::Claimed(v) if own => {
                let old = match v {
                    Shared::Interaction(old) => old.map(|e| InteractionEntry { tenant, ..e }),
                    _ => None,
                };
                let (old, new) = moved(old);
                if let Mode::Claimed(_) = self {
                    fold(new);
                }
                (old, new)
            }
            Mode::Guarded | Mode::Probe(_) => moved(engine.interactions.get(&fp.into()).map(|e| *e)),
            Mode::Live | Mode::Claimed(_) => match engine.interactions.entry(fp.into()) {
                MapEntry::Vacant(v) => {
                    v.insert(contribution);
                    (None, contribution)
                }
                MapEntry::Occupied(mut o) => {
                    let old = *o.get();
                    let new = next(old);
                    if new != old {
                        o.insert(new);
                    }
                    (Some(old), new)
                }
            },
        }
    }

    /// A co-browse session's first established event before the event.
    pub(super) fn cobrowse_before(&self, engine: &Engine, key: Fp, tenant: u32, session: &str) -> SessionBefore {
        match self {
            Mode::Retry(Prior::Cobrowse { counted: true }) => SessionBefore::Counted,
            Mode::Retry(_) => SessionBefore::Entry(None),
            Mode::Probe(v) | Mode::Claimed(v) => SessionBefore::Entry(match v {
                Shared::Cobrowse(Some(e)) => Some(CobrowseEntry { tenant, session: session.to_string(), ..e.clone() }),
                _ => None,
            }),
            Mode::Guarded | Mode::Live => SessionBefore::Entry(engine.cobrowse.get(&key).map(|e| e.clone())),
        }
    }

    /// Commits a co-browse session's first established event after the event.
    pub(super) fn commit_cobrowse(&self, engine: &Engine, key: Fp, new: &CobrowseEntry) {
        if matches!(self, Mode::Live | Mode::Claimed(_)) {
            let mut entry = engine.cobrowse.entry(key).or_insert_with(|| new.clone());
            if *entry != *new {
                *entry = entry.clone().join(new.clone());
            }
        }
    }

    /// A tenant's Functions invocations of one month before the event and after it
    /// (`count` more).
    pub(super) fn move_functions(
        &self,
        engine: &Engine,
        (key, event_fp): (Fp, Fp),
        count: u64,
        empty: impl FnOnce() -> FunctionsEntry,
    ) -> (u64, u64) {
        let local = || engine.functions.entry(key).or_insert_with(empty);
        match self {
            Mode::Retry(Prior::Functions(before)) => (*before, before + count),
            Mode::Probe(v) | Mode::Claimed(v) => {
                let before = match v {
                    Shared::Functions(n) => *n,
                    _ => 0,
                };
                if let Mode::Claimed(_) = self {
                    let mut entry = local();
                    entry.counts.insert(event_fp, count);
                    entry.shared_total = entry.shared_total.max(before + count);
                }
                (before, before + count)
            }
            Mode::Guarded => {
                let before = engine.functions.get(&key).map(|e| e.total().max(e.shared_total)).unwrap_or(0);
                (before, before + count)
            }
            Mode::Live | Mode::Retry(_) => {
                let mut entry = local();
                let before = entry.total();
                entry.counts.insert(event_fp, count);
                (before, entry.total())
            }
        }
    }

    /// An event meter's units of one month, the event's included (EV-1).
    pub(super) fn count_units(
        &self,
        engine: &Engine,
        (key, event_fp): (Fp, Fp),
        empty: impl FnOnce() -> UnitsEntry,
    ) -> u64 {
        match self {
            Mode::Live | Mode::Claimed(_) => {
                let mut entry = engine.units.entry(key).or_insert_with(empty);
                entry.events.insert(event_fp.0);
                entry.count()
            }
            _ => engine.units.get(&key).map_or(1, |e| e.count() + 1),
        }
    }
}

impl Effects {
    /// Notes the event's own shared entry as rating found and left it, where the mode
    /// shares it (the first entry an event moves is its own).
    pub(super) fn share(&mut self, touch: impl FnOnce() -> SharedTouch) {
        if self.mode.shares() && self.shared.is_none() {
            self.shared = Some(touch());
        }
    }
}
