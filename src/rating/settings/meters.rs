//! A tenant's meters as settings: the checks of MS-1, MS-2 and MS-6 on a tenant's
//! definition and its changes, the meter a plan counts (MS-5), and when an added or
//! retired meter takes effect (MS-6).

use super::*;

/// The most meters a tenant has in force (MS-1).
pub const MAX_METERS: usize = 8;

impl TenantSpec {
    /// The meters in force from the beginning (MS-1).
    pub fn initial_meters(&self) -> Vec<MeterDef> {
        if self.meters.is_empty() { vec![MeterDef::single(self.meter)] } else { self.meters.clone() }
    }

    /// Why replicas sharing state must rate this tenant's events in one order (a tenant
    /// log, `store::log`) rather than by claims on one shared entry per event, if they
    /// must: an event's outcome depends on more than one entry. DAR-5's retroactive
    /// outbound days pair outbounds and replies of a consumer across days; several meters,
    /// event and outcome meters (MS, EV, OUT) and meter changes keep state beside the
    /// interaction an event touches.
    pub fn needs_log(&self) -> Option<&'static str> {
        let retroactive = std::iter::once(&self.initial)
            .chain(self.changes.iter().map(|c| &c.patch))
            .any(|s| s.proactive_outbound_day == Some(super::ProactiveOutboundDay::Retroactive));
        if retroactive {
            return Some("proactive_outbound_day = retroactive (DAR-5)");
        }
        let meters = self.initial_meters();
        let single = meters.len() == 1 && meters[0].kind.is_interaction();
        if !single || self.changes.iter().any(|c| c.patch.add_meter.is_some() || c.patch.retire_meter.is_some()) {
            return Some("several meters, an event or outcome meter, or meter changes (MS, EV, OUT)");
        }
        None
    }

    /// MS-6: drops the changes that would add a meter with a used id, retire an unknown or
    /// retired meter, or leave no meter or more than eight, judged in instant order each
    /// against those accepted before it. Returns the refused changes with why.
    pub fn admit_meter_changes(&mut self) -> Vec<(Option<String>, SettingError)> {
        let mut refused = Vec::new();
        let defs = self.initial_meters();
        loop {
            match check_meters(&defs, &self.changes) {
                Ok(()) => return refused,
                Err((None, e)) => {
                    refused.push((None, e));
                    return refused;
                }
                Err((Some(i), e)) => {
                    let change = self.changes.remove(i);
                    refused.push((change.id, e));
                }
            }
        }
    }
}

/// Checks the initial meters and the meter changes (MS-1, MS-2, MS-6). On error: the index
/// in `changes` of the first refused change (`None`: the initial meters are wrong).
pub(super) fn check_meters(defs: &[MeterDef], changes: &[SettingsChange]) -> Result<(), (Option<usize>, SettingError)> {
    if defs.is_empty() {
        return Err((None, SettingError::new("meters", "a tenant has at least one meter (MS-1)")));
    }
    if defs.len() > MAX_METERS {
        return Err((None, SettingError::new("meters", "a tenant has at most eight meters in force (MS-1)")));
    }
    let mut ever: Vec<&str> = Vec::new();
    for def in defs {
        check_def(def, "meters").map_err(|e| (None, e))?;
        if ever.contains(&def.id.as_str()) {
            return Err((None, SettingError::new("meters", format!("meter id `{}` is used twice (MS-1)", def.id))));
        }
        ever.push(&def.id);
    }
    let mut in_force: Vec<&str> = ever.clone();
    let mut order: Vec<usize> = (0..changes.len()).collect();
    order.sort_by_key(|&i| changes[i].at);
    for i in order {
        let p = &changes[i].patch;
        if let Some(def) = &p.add_meter {
            check_def(def, "add_meter").map_err(|e| (Some(i), e))?;
            if ever.contains(&def.id.as_str()) {
                let e = SettingError::new("add_meter", format!("meter id `{}` is already used (MS-6)", def.id));
                return Err((Some(i), e));
            }
            ever.push(&def.id);
            in_force.push(&def.id);
        }
        if let Some(id) = &p.retire_meter {
            let Some(at) = in_force.iter().position(|m| m == id) else {
                let e = SettingError::new("retire_meter", format!("no meter `{id}` in force to retire (MS-6)"));
                return Err((Some(i), e));
            };
            in_force.remove(at);
        }
        if in_force.is_empty() {
            return Err((Some(i), SettingError::new("retire_meter", "a tenant keeps at least one meter (MS-6)")));
        }
        if in_force.len() > MAX_METERS {
            return Err((Some(i), SettingError::new("add_meter", "a tenant has at most eight meters in force (MS-6)")));
        }
    }
    Ok(())
}

fn check_def(def: &MeterDef, setting: &str) -> Result<(), SettingError> {
    let err = |reason: String| SettingError::new(setting, reason);
    MeterDef::check_id(&def.id).map_err(err)?;
    let f = &def.filter;
    let empty = [
        f.event_types.as_ref().is_some_and(Vec::is_empty),
        f.sender_roles.as_ref().is_some_and(Vec::is_empty),
        f.channels.as_ref().is_some_and(Vec::is_empty),
        f.integrations.as_ref().is_some_and(Vec::is_empty),
    ];
    if empty.iter().any(|e| *e) {
        return Err(err(format!("meter `{}`: a filter's list must not be empty (MS-2)", def.id)));
    }
    if def.units.units_per_credit == 0 {
        return Err(err(format!("meter `{}`: units_per_credit is at least 1 (EV-2)", def.id)));
    }
    if def.outcomes.prices.values().any(|p| p.is_sign_negative() && !p.is_zero()) {
        return Err(err(format!("meter `{}`: an outcome price must not be negative (OUT-2)", def.id)));
    }
    if def.outcomes.prices.keys().any(|t| t.is_empty() || t.len() > 64) {
        return Err(err(format!("meter `{}`: an outcome type is 1 to 64 characters (OUT-2)", def.id)));
    }
    Ok(())
}

/// MS-5: the meter a Starter plan counts (named, or the first `dar`, `cycle` or `mau`
/// meter), which is also the one a statement's `dars` count.
pub(super) fn counted_meter(spec: &TenantSpec, defs: &[MeterDef]) -> Result<Option<u8>, TenantError> {
    let mut all: Vec<&MeterDef> = defs.iter().collect();
    let mut added: Vec<&SettingsChange> = spec.changes.iter().filter(|c| c.patch.add_meter.is_some()).collect();
    added.sort_by_key(|c| c.at);
    all.extend(added.iter().filter_map(|c| c.patch.add_meter.as_ref()));
    let first = all.iter().position(|d| d.kind.is_interaction()).map(|i| i as u8);
    let Some(Plan::Starter(plan)) = &spec.plan else { return Ok(first) };
    match &plan.meter {
        Some(id) => match all.iter().position(|d| &d.id == id) {
            Some(i) if all[i].kind.is_interaction() => Ok(Some(i as u8)),
            Some(_) => Err(TenantError::Plan(format!("meter `{id}` is not a dar, cycle or mau meter (MS-5)"))),
            None => Err(TenantError::Plan(format!("meter `{id}` is not a meter of the tenant (MS-5)"))),
        },
        None if first.is_none() => {
            Err(TenantError::Plan("a Starter plan needs a dar, cycle or mau meter to count (MS-5)".into()))
        }
        None => Ok(first),
    }
}

impl Tenant {
    /// MS-6: an added meter sees events from the start of its first period that begins at
    /// or after the change; a retired one stops seeing them there.
    pub(super) fn schedule_meter_change(&mut self, change: &SettingsChange) {
        if let Some(def) = &change.patch.add_meter {
            let from = self.first_period_start_at_or_after(change.at, def.kind.window());
            let zone = self.zone_at(change.at);
            self.meters.push(Meter {
                index: self.meters.len() as u8,
                id: Arc::from(def.id.as_str()),
                spec: def.kind.spec(),
                def: def.clone(),
                from: Some(time::start_of_local_date(from, zone)),
                until: None,
            });
        }
        if let Some(id) = &change.patch.retire_meter {
            let Some(i) = self.meters.iter().position(|m| &*m.id == id.as_str()) else { return };
            let from = self.first_period_start_at_or_after(change.at, self.meters[i].window());
            let zone = self.zone_at(change.at);
            self.meters[i].until = Some(time::start_of_local_date(from, zone));
        }
    }
}
