//! Upkeep of the state: sizes, eviction of the near cache, merging engines, rebuilding
//! aggregates from state, and pruning closed periods (T-3).

use super::*;

impl Engine {
    /// Number of hot relationship entries (interactions held in memory).
    pub fn hot_interactions(&self) -> usize {
        self.interactions.len()
    }

    /// Number of remembered event ids.
    pub fn remembered_events(&self) -> usize {
        self.events.len()
    }

    /// Entries that grow with distinct relationships and events: what a memory ceiling
    /// bounds.
    pub fn evictable_entries(&self) -> usize {
        self.interactions.len() + self.events.len() + self.cobrowse.len() + self.pass_through.len()
    }

    /// Forgets about one eighth of the evictable entries: those whose fingerprint falls
    /// in bucket `round % 8` (fingerprints are uniform, so each round takes a fair
    /// sample, and eight rounds cover everything). Returns how many were forgotten.
    ///
    /// Only under a shared store: there, the near cache is a cache. An evicted
    /// relationship is re-read from the store at its next first-touch claim (the claim
    /// finds the store's value and is re-rated against it); an evicted event id is
    /// not known here, so its retry is reserved and answered by the store. In embedded mode these maps *are* the
    /// state, and nothing may be evicted. Aggregates are not touched: they are kept per
    /// tenant and date, not per entry (a later [`Engine::rebuild_ledgers`] would rebuild
    /// them from what is left, which under a shared store only feeds local gauges).
    pub fn evict(&self, round: u64) -> usize {
        assert!(self.evictable, "only an engine made with_eviction evicts");
        let bucket = round % 8;
        // The state of a tenant that follows a log is all there is of it: kept.
        let logged: Vec<bool> =
            self.by_index.read().unpoisoned().iter().map(|slot| slot.logged.load(Ordering::Acquire)).collect();
        let kept = |tenant: u32| logged.get(tenant as usize).copied().unwrap_or(false);
        let cold = |fp: &Fp| (fp.0 >> 61) == bucket;
        let before = self.evictable_entries();
        self.events.retain(|fp, e| !cold(fp) || kept(e.tenant));
        self.interactions.retain(|key, e| !cold(&key.fp()) || kept(e.tenant));
        self.cobrowse.retain(|fp, e| !cold(fp) || kept(e.tenant));
        self.pass_through.retain(|fp, e| !cold(fp) || kept(e.tenant));
        before.saturating_sub(self.evictable_entries())
    }

    /// Merges another engine's state into this one (the replica invariant the shared store
    /// relies on). Call [`Engine::rebuild_ledgers`] once every replica is merged: rebuilding
    /// after each would judge alert thresholds on partial states. Both engines must
    /// use the same fingerprint key and define the same tenants. Returns the records the
    /// merge itself emits (outbound days whose reply was seen by the other replica).
    pub fn merge_from(&self, other: &Engine) -> Vec<Record> {
        assert_eq!(self.fingerprinter, other.fingerprinter, "merged engines must share a fingerprint key");
        let remap: HashMap<u32, u32> = other
            .by_index
            .read()
            .expect("index lock")
            .iter()
            .filter_map(|slot| {
                let theirs = slot.config();
                self.tenant(&theirs.id).map(|ours| (theirs.index, ours.index))
            })
            .collect();
        let tenant_of = |i: u32| *remap.get(&i).expect("merged engines define the same tenants");
        for e in other.events.iter() {
            self.events.entry(*e.key()).or_insert_with(|| e.value().clone());
        }
        for e in other.interactions.iter() {
            let theirs = InteractionEntry { tenant: tenant_of(e.tenant), ..*e.value() };
            self.interactions.entry(*e.key()).and_modify(|mine| *mine = mine.join(theirs)).or_insert(theirs);
        }
        for e in other.cobrowse.iter() {
            let theirs = CobrowseEntry { tenant: tenant_of(e.tenant), ..e.value().clone() };
            self.cobrowse
                .entry(*e.key())
                .and_modify(|mine| *mine = mine.clone().join(theirs.clone()))
                .or_insert(theirs);
        }
        for e in other.functions.iter() {
            let mut mine = self.functions.entry(*e.key()).or_insert_with(|| FunctionsEntry {
                tenant: tenant_of(e.tenant),
                month_start: e.month_start,
                counts: HashMap::new(),
                shared_total: 0,
            });
            for (event, count) in &e.counts {
                mine.counts.insert(*event, *count);
            }
        }
        for e in other.users.iter() {
            self.users
                .entry(*e.key())
                .or_insert_with(|| UsersEntry {
                    tenant: tenant_of(e.tenant),
                    month_start: e.month_start,
                    ..Default::default()
                })
                .senders
                .extend(e.senders.iter().copied());
        }
        for e in other.pass_through.iter() {
            self.pass_through.insert(*e.key(), PassThroughEntry { tenant: tenant_of(e.tenant), ..*e.value() });
        }
        for e in other.replies.iter() {
            let mut mine = self.replies.entry(*e.key()).or_insert_with(|| ReplyLog {
                tenant: tenant_of(e.tenant),
                meter: e.meter,
                consumer: e.consumer.clone(),
                ..ReplyLog::default()
            });
            for (at, conversation) in &e.replies {
                if !mine.replies.iter().any(|(t, c)| t == at && c == conversation) {
                    mine.add_reply(*at, conversation.clone());
                }
            }
            for outbound in &e.outbounds {
                match mine.outbounds.iter_mut().find(|o| o.event_id == outbound.event_id) {
                    Some(o) if o.charged_to.is_none() => o.charged_to = outbound.charged_to.clone(),
                    Some(_) => {}
                    None => mine.outbounds.push(outbound.clone()),
                }
            }
        }
        self.merge_part_two(other, &tenant_of);
        // An outbound seen by one replica and its reply by another: charge it now (DAR-5).
        let mut records = Vec::new();
        for mut log in self.replies.iter_mut() {
            let tenant = self.by_index.read().unpoisoned()[log.tenant as usize].config();
            let log = &mut *log;
            let consumer = log.consumer.clone();
            for outbound in log.outbounds.iter_mut().filter(|o| o.charged_to.is_none()) {
                let reply = log.replies.iter().find(|(t, _)| outbound.at <= *t && *t <= outbound.at + outbound.window);
                if let Some((_, conversation)) = reply {
                    let mut fx = Effects::default();
                    let meter = tenant.meter_at(log.meter);
                    self.charge_outbound(&tenant, meter, &consumer, outbound, &conversation.clone(), &mut fx);
                    records.append(&mut fx.records);
                }
            }
        }
        records
    }

    /// Recomputes every tenant's aggregates from state (after a merge). Alerts already
    /// raised are kept; thresholds the merged usage reaches are raised too.
    pub fn rebuild_ledgers(&self) {
        let slots = self.by_index.read().unpoisoned().clone();
        let mut fresh: Vec<Ledger> = slots
            .iter()
            .map(|s| {
                let old = s.ledger.lock().unpoisoned();
                Ledger::rebuild_base(old.alerts.clone(), old.frozen.clone())
            })
            .collect();
        let tenants: Vec<Arc<Tenant>> = slots.iter().map(|s| s.config()).collect();
        for part in self.interaction_ledgers(&slots, &tenants) {
            for (ledger, part) in fresh.iter_mut().zip(part) {
                ledger.absorb(part);
            }
        }
        for e in self.units.iter() {
            for (date, entry) in units_entries(&tenants[e.tenant as usize], e.value()) {
                fresh[e.tenant as usize].add(date, entry);
            }
        }
        for e in self.outcomes.iter() {
            for (date, entry) in outcome_entries(&tenants[e.tenant as usize], e.value()) {
                fresh[e.tenant as usize].add(date, entry);
            }
        }
        for e in self.cobrowse.iter() {
            let (date, entry) = cobrowse_entry(&tenants[e.tenant as usize], e.value());
            fresh[e.tenant as usize].add(date, entry);
        }
        for e in self.functions.iter() {
            let (date, entry) = functions_entry(&tenants[e.tenant as usize], e.value());
            fresh[e.tenant as usize].add(date, entry);
        }
        for e in self.pass_through.iter() {
            let (date, entry) = pass_through_entry(e.value());
            fresh[e.tenant as usize].add(date, entry);
        }
        for ((slot, tenant), mut ledger) in slots.iter().zip(&tenants).zip(fresh) {
            let dates: Vec<NaiveDate> = ledger.dates().collect();
            let mut sink = Vec::new();
            for date in dates {
                raise_alerts(tenant, &mut ledger, date, "", &mut sink);
            }
            slot.near_limit.store(ledger.near_limit_anywhere(), Ordering::Release);
            *slot.ledger.lock().unpoisoned() = ledger;
        }
    }

    /// The hot interactions' share of every tenant's aggregates, added up in parts on
    /// the machine's cores: they are most of the state, and a start rebuilds from them
    /// (issue 19, P6). Each part takes the keys whose fingerprint falls in it; exact sums
    /// do not depend on the order they are added in, and the parts are merged exactly.
    fn interaction_ledgers(&self, slots: &[Arc<TenantSlot>], tenants: &[Arc<Tenant>]) -> Vec<Vec<Ledger>> {
        let voided = voided_interactions(slots);
        let parts = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4) as u64;
        let part = |which: u64| {
            let mut fresh: Vec<Ledger> = slots.iter().map(|_| Ledger::default()).collect();
            for e in self.interactions.iter() {
                let fp = e.key().fp();
                if fp.0 % parts != which || voided[e.tenant as usize].contains(&fp) {
                    continue;
                }
                let ledger = &mut fresh[e.tenant as usize];
                interaction_entries(&tenants[e.tenant as usize], e.value(), |date, entry| {
                    ledger.add(date, entry);
                });
            }
            fresh
        };
        std::thread::scope(|scope| {
            let others: Vec<_> = (1..parts).map(|which| scope.spawn(move || part(which))).collect();
            let mut all = vec![part(0)];
            all.extend(others.into_iter().map(|other| other.join().expect("a ledger rebuild part panicked")));
            all
        })
    }

    /// Whether [`Engine::close_periods`] would close anything at `now`: a cheap check
    /// that needs no exclusive access, so callers take it only on the day it is needed.
    pub fn has_periods_to_close(&self, now: Instant) -> bool {
        self.by_index.read().unpoisoned().iter().any(|slot| !slot.logged.load(Ordering::Acquire) && due(slot, now))
    }

    /// Whether a tenant is rated in the order of a tenant log shared by replicas
    /// (`store::log`; [`EngineConfig::follow_logs`]): this engine then holds its whole
    /// state. Nothing of it is evicted; [`Engine::close_periods`] leaves it to the log's
    /// own close entries ([`Engine::close_tenant_periods`]), so that every replica closes
    /// it at the same point of the log; and its interactions are catalogued for voids
    /// from the start.
    pub fn follows_log(&self, tenant_id: &str) -> bool {
        self.slot(tenant_id).is_some_and(|slot| slot.logged.load(Ordering::Acquire))
    }

    /// Whether a tenant of this definition follows a log under this engine's
    /// [`LogPolicy`] (decided when the tenant is first put).
    pub fn would_follow_log(&self, spec: &TenantSpec) -> bool {
        match self.follow_logs {
            LogPolicy::None => false,
            LogPolicy::WhenNeeded => spec.needs_log().is_some(),
            LogPolicy::EveryTenant => true,
        }
    }

    /// Whether the tenant has periods to close at `now` (see [`Engine::close_periods`]).
    pub fn tenant_has_periods_to_close(&self, tenant_id: &str, now: Instant) -> bool {
        self.slot(tenant_id).is_some_and(|slot| due(&slot, now))
    }

    /// [`Engine::close_periods`] for one tenant, whether it follows a log or not.
    pub fn close_tenant_periods(&self, tenant_id: &str, now: Instant) -> Pruned {
        self.close_periods_of(now, |slot| &*slot.config().id == tenant_id)
    }

    /// The earliest arrival instant whose events may still be in an open period at `now`:
    /// an event is dated at most its tenant's longest clock skew after it arrives, its
    /// period (at most 31 days, and a day for zones) ends after that, and stays open for the
    /// longest lateness horizon. What arrived before is in closed periods only (the journal
    /// may forget it, `server::journal::retention`).
    pub fn open_periods_arrived_since(&self, now: Instant) -> Instant {
        let slots = self.by_index.read().unpoisoned().clone();
        let longest = slots
            .iter()
            .map(|slot| {
                let tenant = slot.config();
                tenant.max_lateness_horizon() + tenant.max_clock_skew()
            })
            .max()
            .unwrap_or_default();
        now - longest - TimeDelta::days(PERIOD_SLACK_DAYS + 31)
    }

    /// Closes the periods that ended more than each tenant's longest lateness horizon (and
    /// a day's margin for clock steps) before `now`, and prunes their state: no event may
    /// touch them again (T-3), so only their contribution to the aggregates is kept, and
    /// event ids older than that are forgotten (a retry that late is refused as too late).
    ///
    /// Deterministic in `now` and the state: the server journals each call, so replay
    /// prunes at the same points. Call it with no event being rated (the server holds its
    /// ordering stripes). Closes whole UTC days only, so calling it often costs a check.
    ///
    /// Tenants that follow a tenant log ([`Engine::follow_log`]) are left to its entries.
    pub fn close_periods(&self, now: Instant) -> Pruned {
        self.close_periods_of(now, |slot| !slot.logged.load(Ordering::Acquire))
    }

    fn close_periods_of(&self, now: Instant, include: impl Fn(&TenantSlot) -> bool) -> Pruned {
        let slots = self.by_index.read().unpoisoned().clone();
        // Per tenant index: the new cutoff date, when it moved.
        let mut cutoffs: Vec<Option<NaiveDate>> = vec![None; slots.len()];
        for (i, slot) in slots.iter().enumerate().filter(|(_, slot)| include(slot)) {
            let (cutoff, cutoff_ms) = closing_cutoff(&slot.config(), now);
            if cutoff_ms > slot.closed_before.load(Ordering::Acquire) {
                slot.closed_before.store(cutoff_ms, Ordering::Release);
                cutoffs[i] = Some(cutoff);
            }
        }
        let mut pruned = Pruned { tenants: cutoffs.iter().flatten().count() as u64, ..Pruned::default() };
        if cutoffs.iter().all(Option::is_none) {
            return pruned;
        }
        let tenants: Vec<Arc<Tenant>> = slots.iter().map(|s| s.config()).collect();
        let mut ledgers: Vec<_> = slots.iter().map(|s| s.ledger.lock().unpoisoned()).collect();
        // A period is closed when its last local date ends a whole day before the cutoff's
        // UTC midnight (local midnights are within 14 hours of UTC). Other state is kept
        // for as long as any period of its event may still be open: 33 days after it.
        let closed = |tenant: u32, end_date: NaiveDate| {
            cutoffs[tenant as usize].is_some_and(|c| end_date + TimeDelta::days(1) <= c)
        };
        let old_day =
            |tenant: u32, day: i32| closed(tenant, time::days_to_date(day) + TimeDelta::days(PERIOD_SLACK_DAYS));
        let voided = voided_interactions(&slots);
        self.interactions.retain(|key, e| {
            let tenant = &tenants[e.tenant as usize];
            let window = tenant.meter_at(e.meter).window();
            let end = tenant.period_of_date(window, e.period_start_date(), chrono_tz::UTC).end_date;
            if !closed(e.tenant, end) {
                return true;
            }
            if !voided[e.tenant as usize].contains(&key.fp()) {
                interaction_entries(tenant, e, |date, entry| ledgers[e.tenant as usize].frozen.add(date, entry));
            }
            pruned.interactions += 1;
            false
        });
        self.close_meters_and_corrections(&slots, &tenants, &mut ledgers, &closed, &old_day, &mut pruned);
        self.cobrowse.retain(|_, e| {
            if !old_day(e.tenant, utc_day(e.first_at)) {
                return true;
            }
            let (date, entry) = cobrowse_entry(&tenants[e.tenant as usize], e);
            ledgers[e.tenant as usize].frozen.add(date, entry);
            pruned.other += 1;
            false
        });
        self.functions.retain(|_, e| {
            if !closed(e.tenant, time::first_of_next_month(time::days_to_date(e.month_start))) {
                return true;
            }
            let (date, entry) = functions_entry(&tenants[e.tenant as usize], e);
            ledgers[e.tenant as usize].frozen.add(date, entry);
            pruned.other += 1;
            false
        });
        self.users.retain(|_, e| {
            // Any message of the month counts, and a meter period that is still open may
            // hold its last days (a billing cycle): kept as long as other per-event state.
            let month = time::days_to_date(e.month_start);
            if !old_day(e.tenant, time::date_to_days(time::first_of_next_month(month))) {
                return true;
            }
            *ledgers[e.tenant as usize].frozen.users.entry(month).or_default() += e.senders.len() as u64;
            pruned.other += 1;
            false
        });
        self.pass_through.retain(|_, e| {
            if !old_day(e.tenant, e.date) {
                return true;
            }
            let (date, entry) = pass_through_entry(e);
            ledgers[e.tenant as usize].frozen.add(date, entry);
            pruned.other += 1;
            false
        });
        self.replies.retain(|_, log| {
            let tenant = log.tenant;
            let before = log.outbounds.len() + log.replies.len();
            log.outbounds.retain(|o| !old_day(tenant, utc_day(o.at + o.window)));
            log.replies.retain(|(at, _)| !old_day(tenant, utc_day(*at)));
            pruned.other += (before - log.outbounds.len() - log.replies.len()) as u64;
            !(log.outbounds.is_empty() && log.replies.is_empty())
        });
        self.events.retain(|_, e| {
            let keep = !old_day(e.tenant, e.day);
            pruned.events += u64::from(!keep);
            keep
        });
        pruned
    }

    /// [`Engine::close_periods`] for event meters' months, outcome states and the
    /// catalogue voids select from.
    fn close_meters_and_corrections(
        &self,
        slots: &[Arc<TenantSlot>],
        tenants: &[Arc<Tenant>],
        ledgers: &mut [std::sync::MutexGuard<'_, Ledger>],
        closed: &dyn Fn(u32, NaiveDate) -> bool,
        old_day: &dyn Fn(u32, i32) -> bool,
        pruned: &mut Pruned,
    ) {
        self.units.retain(|_, e| {
            if !closed(e.tenant, time::first_of_next_month(time::days_to_date(e.month_start))) {
                return true;
            }
            for (date, entry) in units_entries(&tenants[e.tenant as usize], e) {
                ledgers[e.tenant as usize].frozen.add(date, entry);
            }
            pruned.other += 1;
            false
        });
        self.outcomes.retain(|_, e| {
            // Kept while a revocation could still reach an open occurrence, or a late
            // earlier occurrence arrive: until every month it touches is closed.
            let last = e.occurrences.iter().map(|o| o.at).chain(e.revocations.iter().copied()).max();
            if last.is_some_and(|at| !old_day(e.tenant, utc_day(at))) {
                return true;
            }
            for (date, entry) in outcome_entries(&tenants[e.tenant as usize], e) {
                ledgers[e.tenant as usize].frozen.add(date, entry);
            }
            pruned.other += 1;
            false
        });
        // A tenant whose cutoff did not move has nothing closed (`closed` says no).
        for (i, slot) in slots.iter().enumerate() {
            let tenant = &tenants[i];
            let mut corrections = slot.corrections.lock().unpoisoned();
            // Closed books are left alone by voids (COR-4); listings keep what changed.
            corrections.catalogue.retain(|c| {
                let start = time::days_to_date(c.start);
                let end = tenant.period_of_date(tenant.meter_at(c.meter).window(), start, chrono_tz::UTC).end_date;
                !closed(i as u32, end)
            });
        }
    }

    /// A digest of the whole billing state, for comparing engines: interactions with their
    /// lines, co-browse sessions, Functions months, platform users, pass-through.
    pub fn state_digest(&self) -> Vec<String> {
        let mut out = Vec::new();
        let tenants: Vec<Arc<Tenant>> = self.by_index.read().unpoisoned().iter().map(|s| s.config()).collect();
        for e in self.interactions.iter() {
            let tenant = &tenants[e.tenant as usize];
            let structure = tenant.structure_in(tenant.meter_at(e.meter).window(), e.period_start_date());
            let features = match structure.feature_attribution {
                FeatureAttribution::AnyEvent => e.any,
                FeatureAttribution::FirstEvent => e.first,
            };
            out.push(format!(
                "i {} {:?} {:?}",
                tenant.id,
                e.key(),
                interaction_lines(features, structure.gai_multiplies_addons)
            ));
        }
        for e in self.cobrowse.iter() {
            out.push(format!("c {:?} {} {}", e.key(), e.first_at, e.first_event_id));
        }
        for e in self.functions.iter() {
            out.push(format!("f {:?} {}", e.key(), e.total()));
        }
        for e in self.users.iter() {
            out.push(format!("u {:?} {}", e.key(), e.senders.len()));
        }
        for e in self.pass_through.iter() {
            out.push(format!("p {:?} {} {}", e.key(), e.currency, e.charge));
        }
        for e in self.units.iter() {
            out.push(format!("n {:?} {}", e.key(), e.count()));
        }
        for e in self.outcomes.iter() {
            let billed = e.billed.as_ref().map(|b| (&b.event_id, b.line.is_some()));
            out.push(format!("o {:?} {:?}", e.key(), billed));
        }
        out.sort();
        out
    }
}

/// What an interaction contributes to the aggregates: one interaction and its lines, on
/// its period's first date.
fn interaction_entries(tenant: &Tenant, e: &InteractionEntry, mut add: impl FnMut(NaiveDate, Entry)) {
    let date = e.period_start_date();
    let structure = tenant.structure_in(tenant.meter_at(e.meter).window(), date);
    add(date, Entry::Interaction);
    let mut credits = Decimal::ZERO;
    for s in interactions::lines_of(&structure, e).lines() {
        add(date, Entry::Credits(s.slot as usize, s.credits));
        credits += s.credits;
    }
    if !tenant.single_meter() {
        add(date, Entry::Meter(e.meter, ledger::MeterTotals { interactions: 1, units: 0, credits }));
    }
}

/// An event meter's month: its units and the credits they come to (EV-2).
fn units_entries(tenant: &Tenant, e: &UnitsEntry) -> Vec<(NaiveDate, Entry)> {
    let month = time::days_to_date(e.month_start);
    let credits = tenant.meter_at(e.meter).def.units.credits(e.count());
    let meter = ledger::MeterTotals { interactions: 0, units: e.count(), credits };
    vec![(month, Entry::Credits(UNITS_BUCKET, credits)), (month, Entry::Meter(e.meter, meter))]
}

/// An outcome meter's billed occurrence, while its line stands (OUT-2, COR-2).
fn outcome_entries(tenant: &Tenant, e: &OutcomeState) -> Vec<(NaiveDate, Entry)> {
    let Some(billed) = e.billed.as_ref().filter(|b| b.line.is_some()) else { return Vec::new() };
    let date = tenant.period_in(Window::LocalMonth, billed.at).start_date;
    let meter = ledger::MeterTotals { interactions: 1, units: 0, credits: billed.credits };
    vec![
        (date, Entry::Interaction),
        (date, Entry::Credits(OUTCOME_BUCKET, billed.credits)),
        (date, Entry::Meter(e.meter, meter)),
    ]
}

/// Per tenant index: the hot keys of interactions a void withdrew (COR-2).
fn voided_interactions(slots: &[Arc<TenantSlot>]) -> Vec<std::collections::HashSet<Fp>> {
    slots
        .iter()
        .map(|slot| {
            let corrections = slot.corrections.lock().unpoisoned();
            corrections
                .catalogue
                .iter()
                .filter(|c| c.source == Source::Hot && matches!(corrections.changed.get(&c.id), Some(Some(_))))
                // As the hot map keys it (its [`HotKey`] keeps 96 of the 128 bits).
                .map(|c| HotKey::from(c.state).fp())
                .collect()
        })
        .collect()
}

fn cobrowse_entry(tenant: &Tenant, e: &CobrowseEntry) -> (NaiveDate, Entry) {
    let (line, date) = cobrowse_line(tenant, e);
    (date, Entry::Credits(COBROWSE_BUCKET, line.credits))
}

fn functions_entry(tenant: &Tenant, e: &FunctionsEntry) -> (NaiveDate, Entry) {
    let month = time::days_to_date(e.month_start);
    (month, Entry::Credits(FUNCTIONS_BUCKET, credits::functions_credits(e.total(), tenant.functions_rounding(month))))
}

fn pass_through_entry(e: &PassThroughEntry) -> (NaiveDate, Entry) {
    (time::days_to_date(e.date), Entry::PassThrough(e.currency, e.charge))
}

/// The day before which a tenant's periods are closed at `now` (its longest lateness
/// horizon and a day's margin for clock steps ago), and its UTC midnight in Unix ms.
/// Whether a tenant's closing cutoff at `now` is past where it stands.
fn due(slot: &TenantSlot, now: Instant) -> bool {
    closing_cutoff(&slot.config(), now).1 > slot.closed_before.load(Ordering::Acquire)
}

fn closing_cutoff(tenant: &Tenant, now: Instant) -> (NaiveDate, i64) {
    let cutoff = (now - tenant.max_lateness_horizon() - TimeDelta::days(1)).date_naive();
    (cutoff, time::to_millis(cutoff.and_hms_opt(0, 0, 0).expect("midnight").and_utc()))
}

/// Days after an event's UTC date within which some period of it may still be open: the
/// longest period (31 days), and a day for zones ahead of UTC.
pub(super) const PERIOD_SLACK_DAYS: i64 = 32;

/// What [`Engine::close_periods`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Tenants whose closed periods moved on.
    pub tenants: u64,
    pub interactions: u64,
    pub events: u64,
    /// Co-browse sessions, Functions months, user months, pass-through charges, replies.
    pub other: u64,
}

/// An instant's UTC date, as days from the common era.
pub(super) fn utc_day(at: Instant) -> i32 {
    time::date_to_days(at.date_naive())
}
