//! The interaction rules: messages and conversations opened touch their interaction
//! (DAR, CYC, MAU presets of one mechanism), features seen (CR-2..CR-6), and proactive
//! outbounds and their replies (DAR-5).

use super::*;

impl Engine {
    /// Messages and conversations opened: pass-through, platform users, the interaction,
    /// and the proactive reply rules (DAR-4, DAR-5, CYC-5, CR-9, PL-1).
    pub(super) fn rate_conversational(
        &self,
        (tenant, settings): (&Tenant, &Settings),
        event: &Event,
        tie: u32,
        event_fp: Fp,
        fx: &mut Effects,
    ) -> Disposition {
        let (integration, sender) = match &event.body {
            Body::Message(m) => (m.integration.as_deref(), Some(m.sender)),
            Body::ConversationOpened(o) => (o.integration.as_deref(), None),
            _ => unreachable!("only conversational events"),
        };

        if let Body::Message(m) = &event.body {
            if let Some(price) = m.price {
                self.charge_pass_through(tenant, event, price, event_fp, fx);
            }
            // Inserted only if the event is committed (`commit_sets`), here or from its claim.
            if let (Some(sender_id), SenderRole::Agent | SenderRole::Bot) = (&m.sender_id, m.sender) {
                let month = tenant.period_in(Window::LocalMonth, event.at).start_date;
                let key = self.users_key(tenant, month);
                let sender = self.fingerprinter.start(domain::PLATFORM_USER).str(sender_id).finish();
                fx.user = Some((key, time::date_to_days(month), sender));
            }
        }

        // Every meter that sees the event rates it alone (MS-3).
        let event_type = if sender.is_some() { EventType::Message } else { EventType::ConversationOpened };
        let channel = match &event.body {
            Body::Message(m) => Some(m.channel),
            Body::ConversationOpened(o) => Some(o.channel),
            _ => None,
        };
        let seen = Seen { event_type, sender, channel, integration };
        let mut created = false;
        let mut charged = false;
        let mut proactive_waits = false;
        for meter in tenant.meters.iter().filter(|m| m.sees(event.at, &seen)) {
            match meter.kind() {
                MeterKind::Event => {
                    // EV-1: every message but SYSTEM ones is a unit, proactive ones included.
                    if sender != Some(SenderRole::System) {
                        charged |= self.count_unit(tenant, meter, event, event_fp, fx);
                    }
                }
                MeterKind::Outcome => {}
                _ => {
                    let (made, waits) = self.rate_interaction_meter((tenant, settings), meter, event, tie, sender, fx);
                    created |= made;
                    proactive_waits |= waits;
                }
            }
        }
        fx.prior.get_or_insert(Prior::Interaction(None));
        if !tenant.single_meter() {
            // Several meters, or units: the outcome is kept whole for retries (MS-3).
            fx.keep_whole = true;
        }

        if created {
            Disposition::NewInteraction
        } else if !fx.counted_in.is_empty() {
            Disposition::AlreadyCounted
        } else if charged {
            Disposition::Charged
        } else if sender == Some(SenderRole::System) {
            Disposition::NotBillable(NotBillableReason::SystemMessage)
        } else if proactive_waits {
            Disposition::NotBillable(NotBillableReason::ProactiveAwaitingReply)
        } else {
            Disposition::NotBillable(NotBillableReason::NotMetered)
        }
    }

    /// One interaction meter's rules for a message or conversation opened: the touch of
    /// its interaction (DAR-4, CYC-5) and the proactive outbound and reply (DAR-5).
    /// Returns whether it created an interaction, and whether a proactive message waits.
    fn rate_interaction_meter(
        &self,
        (tenant, settings): (&Tenant, &Settings),
        meter: &Meter,
        event: &Event,
        tie: u32,
        sender: Option<SenderRole>,
        fx: &mut Effects,
    ) -> (bool, bool) {
        let (consumer, conversation, integration, channel) = match &event.body {
            Body::Message(m) => (m.consumer.as_str(), m.conversation.as_deref(), m.integration.as_deref(), m.channel),
            Body::ConversationOpened(o) => {
                (o.consumer.as_str(), Some(o.conversation.as_str()), o.integration.as_deref(), o.channel)
            }
            _ => unreachable!("only conversational events"),
        };
        let qualifies = match sender {
            None | Some(SenderRole::Consumer | SenderRole::Agent | SenderRole::Bot) => true,
            Some(SenderRole::System) => false,
            Some(SenderRole::Proactive) => {
                meter.spec.proactive == ProactivePolicy::QualifiesUnlessRequiresReply
                    && !settings.proactive_requires_reply
            }
        };

        let mut created = false;
        if qualifies {
            let touch = Touch {
                tenant,
                meter,
                consumer,
                conversation,
                integration,
                channel: Some(channel),
                at: event.at,
                tie,
                features: settings.features,
                horizon: settings.lateness_horizon,
                rule: meter.spec.rule,
                event_id: &event.event_id,
            };
            created |= self.touch(&touch, fx);
        }

        // DAR-5 (retroactive) keeps per-consumer logs that are not shared: a shared store
        // refuses such tenants (ARCHITECTURE.md, "Redis").
        if tenant.any_retroactive && fx.mode.is_whole() {
            match sender {
                Some(SenderRole::Proactive)
                    if !qualifies && settings.proactive_outbound_day == ProactiveOutboundDay::Retroactive =>
                {
                    let outbound = Outbound {
                        at: event.at,
                        tie,
                        event_id: event.event_id.clone(),
                        conversation: conversation.map(str::to_string),
                        integration: integration.map(str::to_string),
                        window: settings.proactive_reply_window,
                        charged_to: None,
                    };
                    created |= self.record_outbound(tenant, meter, consumer, outbound, fx);
                }
                Some(SenderRole::Consumer) => {
                    created |=
                        self.record_reply(tenant, meter, consumer, event.at, conversation.unwrap_or_default(), fx);
                }
                _ => {}
            }
        }
        (created, sender == Some(SenderRole::Proactive) && !qualifies)
    }

    /// A consumer's DAR-5 log on one meter (DAR-5 pairs an outbound and a reply that the
    /// same meter sees, MS-3). The first meter's key is part one's.
    pub(super) fn reply_log(
        &self,
        tenant: &Tenant,
        meter: &Meter,
        consumer: &str,
    ) -> dashmap::mapref::one::RefMut<'_, Fp, ReplyLog> {
        let mut key = self.fingerprinter.start(domain::CONSUMER).str(&tenant.id).str(consumer);
        if meter.index > 0 {
            key = key.u64(u64::from(meter.index));
        }
        let key = key.finish();
        self.replies.entry(key).or_insert_with(|| ReplyLog {
            tenant: tenant.index,
            meter: meter.index,
            consumer: consumer.to_string(),
            ..ReplyLog::default()
        })
    }

    /// DAR-5 (retroactive): a new outbound is charged at once if a reply is already known.
    pub(super) fn record_outbound(
        &self,
        tenant: &Tenant,
        meter: &Meter,
        consumer: &str,
        mut outbound: Outbound,
        fx: &mut Effects,
    ) -> bool {
        let mut log = self.reply_log(tenant, meter, consumer);
        let reply = log.first_reply_within(outbound.at, outbound.window).map(|(_, c)| c.clone());
        let mut created = false;
        if let Some(reply_conversation) = reply {
            created = self.charge_outbound(tenant, meter, consumer, &mut outbound, &reply_conversation, fx);
        }
        log.outbounds.push(outbound);
        created
    }

    /// DAR-5 (retroactive): a consumer message charges every waiting outbound it answers.
    pub(super) fn record_reply(
        &self,
        tenant: &Tenant,
        meter: &Meter,
        consumer: &str,
        at: Instant,
        conversation: &str,
        fx: &mut Effects,
    ) -> bool {
        let mut log = self.reply_log(tenant, meter, consumer);
        log.add_reply(at, conversation.to_string());
        let mut created = false;
        let log = &mut *log;
        for outbound in log.outbounds.iter_mut() {
            if outbound.charged_to.is_none() && outbound.at <= at && at <= outbound.at + outbound.window {
                created |= self.charge_outbound(tenant, meter, consumer, outbound, conversation, fx);
            }
        }
        created
    }

    /// Charges the outbound's own period, priced at the outbound's instant; it belongs to
    /// the outbound's conversation, or the reply's if it has none (DAR-5).
    pub(super) fn charge_outbound(
        &self,
        tenant: &Tenant,
        meter: &Meter,
        consumer: &str,
        outbound: &mut Outbound,
        reply_conversation: &str,
        fx: &mut Effects,
    ) -> bool {
        // The outbound's period may have closed while it waited (a late reply): its
        // statement is final, so it is not charged (ARCHITECTURE.md, "Rulebook gaps").
        let period = tenant.period_in(meter.window(), outbound.at);
        let settings = tenant.settings_at(outbound.at);
        let past_horizon = fx.now.is_some_and(|now| period.end() + settings.lateness_horizon < now);
        if past_horizon || fx.closed_before.is_some_and(|c| time::to_millis(period.end()) <= c) {
            return false;
        }
        let conversation =
            outbound.conversation.clone().or_else(|| Some(reply_conversation.to_string()).filter(|c| !c.is_empty()));
        let touch = Touch {
            tenant,
            meter,
            consumer,
            conversation: conversation.as_deref(),
            integration: outbound.integration.as_deref(),
            channel: None,
            at: outbound.at,
            tie: outbound.tie,
            features: settings.features,
            horizon: settings.lateness_horizon,
            rule: "DAR-5",
            event_id: &outbound.event_id,
        };
        let created = self.touch(&touch, fx);
        outbound.charged_to = Some(conversation);
        fx.keep_whole = true;
        created
    }

    /// The key of an interaction: the meter's key fields, and the conversation when the
    /// period's `relationship` is per conversation (DAR-6). Borrowed, so repeats do not
    /// allocate.
    pub(super) fn key_of<'t>(touch: &Touch<'t>, structure: &Structure) -> KeyRef<'t> {
        let meter = touch.meter.spec;
        let by_conversation = meter.honours_relationship && structure.relationship == Relationship::Conversation;
        let wants = |field| meter.key_fields.contains(&field);
        KeyRef {
            consumer: touch.consumer,
            conversation: (by_conversation || wants(KeyField::Conversation))
                .then(|| touch.conversation.unwrap_or_default()),
            integration: wants(KeyField::Integration).then(|| touch.integration.unwrap_or_default()),
        }
    }

    /// A single-meter tenant's meter id is its preset's name, so part one's ids stand.
    pub(super) fn interaction_id(tenant: &Tenant, meter: &Meter, key: &KeyRef<'_>, period: &Period) -> RecordId {
        let mut label = [0u8; 10];
        RecordId::of(&[
            b"interaction",
            tenant.id.as_bytes(),
            meter.id.as_bytes(),
            key.consumer.as_bytes(),
            key.conversation.unwrap_or("\0").as_bytes(),
            key.integration.unwrap_or("\0").as_bytes(),
            period.label_into(&mut label).as_bytes(),
        ])
    }

    /// Adds a qualifying event to its interaction. Returns whether it created it.
    pub(super) fn touch(&self, touch: &Touch<'_>, fx: &mut Effects) -> bool {
        let tenant = touch.tenant;
        let meter = touch.meter;
        let period = tenant.period_in(meter.window(), touch.at);
        let structure = tenant.structure_in(meter.window(), period.start_date);
        let key = Self::key_of(touch, &structure);
        let fp = self.interaction_fp(tenant, meter.index, &key, period.start_date);
        let contribution = InteractionEntry::contribution(
            tenant.index,
            meter.index,
            period.start_date,
            touch.at,
            touch.tie,
            touch.features,
        );
        let lines_of = |e: &InteractionEntry| lines_of(&structure, e);
        let voided_by = fx.void_selecting(&Selected {
            meter: &meter.id,
            start: period.start_date,
            consumer: Some(key.consumer),
            conversation: key.conversation,
            integration: key.integration,
            outcome_type: None,
        });

        // A voided interaction gains no line (COR-2), so its entry stays as billed: under
        // a shared store, what a void withdraws is read from it after the void is known
        // everywhere.
        let next = |old: InteractionEntry| {
            if voided_by.is_some() {
                return old;
            }
            let mut new = old.join(contribution);
            let replaced =
                structure.feature_attribution == FeatureAttribution::FirstEvent && lines_of(&old) != lines_of(&new);
            if replaced && new != old {
                new.generation = old.generation.wrapping_add(1);
            }
            new
        };
        // The event's own interaction is the first it touches; a DAR-5 touch comes after
        // (and only where the tenant's whole state is at hand).
        let own = fx.shared.is_none();
        let (old, new) = fx.mode.move_interaction(self, (fp, tenant.index, own), contribution, next);
        fx.share(|| SharedTouch {
            place: Place::Interaction { period_start: period.start_date },
            entry: fp,
            before: Shared::Interaction(old),
            after: Shared::Interaction(Some(new)),
            expires: period.end() + touch.horizon + TimeDelta::days(1),
        });
        // The event's own interaction is the first it touches; DAR-5 touches come after.
        fx.prior.get_or_insert(Prior::Interaction(old));
        if old == Some(new) {
            fx.counted_in.push(Self::interaction_id(tenant, meter, &key, &period));
            return false;
        }

        self.emit_touch(touch, fx, (fp, &key), (&period, &structure), (old, new), voided_by)
    }

    /// The hot key of an interaction. The first meter's is part one's, so state written
    /// before meters stands.
    pub(super) fn interaction_fp(&self, tenant: &Tenant, meter: u8, key: &KeyRef<'_>, start: NaiveDate) -> Fp {
        let mut b = self
            .fingerprinter
            .start(domain::INTERACTION)
            .str(&tenant.id)
            .str(key.consumer)
            .str(key.conversation.unwrap_or("\0"))
            .str(key.integration.unwrap_or("\0"))
            .i64(time::date_to_days(start).into());
        if meter > 0 {
            b = b.u64(u64::from(meter));
        }
        b.finish()
    }

    /// The records and lines of a touch that changed its interaction: a new interaction
    /// with its lines, or the lines a new feature adds (and, under first-event pricing,
    /// the reversals of the lines an earlier event replaces). An interaction a void
    /// selects (`voided_by`) gains no line (COR-2). Returns whether it created the
    /// interaction.
    fn emit_touch(
        &self,
        touch: &Touch<'_>,
        fx: &mut Effects,
        (state, key): (Fp, &KeyRef<'_>),
        (period, structure): (&Period, &Structure),
        (old, new): (Option<InteractionEntry>, InteractionEntry),
        voided_by: Option<String>,
    ) -> bool {
        let (tenant, meter) = (touch.tenant, touch.meter);
        let lines_of = |e: &InteractionEntry| lines_of(structure, e);
        let id = Self::interaction_id(tenant, meter, key, period);
        let info = PeriodInfo::from(period);
        let line = |slot: &credits::InteractionLine, generation: u8, reversal: bool| {
            interaction_line(id, meter, slot, generation, reversal, &info, touch.event_id)
        };
        let date = period.start_date;

        match old {
            None => {
                let lines: Vec<CreditLine> = match voided_by {
                    Some(_) => Vec::new(),
                    None => lines_of(&new).lines().map(|s| line(s, new.generation, false)).collect(),
                };
                for (l, s) in lines.iter().zip(lines_of(&new).lines()) {
                    fx.ledger.push((date, Entry::Credits(s.slot as usize, l.credits)));
                }
                if voided_by.is_none() {
                    fx.ledger.push((date, Entry::Interaction));
                    let credits = lines.iter().map(|l| l.credits).sum();
                    fx.meter_entry(tenant, date, meter.index, 1, 0, credits);
                }
                let interaction = Interaction {
                    id,
                    tenant: tenant.id.clone(),
                    meter: meter.kind(),
                    meter_id: meter.id.clone(),
                    key: key.to_owned(),
                    outcome_type: None,
                    voided_by: voided_by.clone(),
                    period: info.clone(),
                    rule: touch.rule,
                    lines: lines.clone(),
                    event_id: touch.event_id.to_string(),
                    origin: touch
                        .channel
                        .map(|channel| Origin { channel, integration: touch.integration.map(str::to_string) }),
                };
                // Only a tenant that voids keeps a catalogue: no fingerprints on the hot
                // path otherwise.
                if fx.catalogues() {
                    let listed = Listed {
                        consumer: key.consumer,
                        conversation: key.conversation,
                        integration: key.integration,
                        outcome_type: None,
                    };
                    let entry = self.catalogued(id, state, meter.index, period.start_date, Source::Hot, listed);
                    fx.catalogue(entry, voided_by.clone());
                }
                fx.emit(|| Record {
                    tenant: tenant.id.clone(),
                    rule: touch.rule,
                    body: RecordBody::Interaction(interaction.clone()),
                });
                fx.lines.extend(lines);
                fx.interactions.push(interaction);
                true
            }
            Some(old) => {
                fx.counted_in.push(id);
                if voided_by.is_some() {
                    return false;
                }
                let (before, after) = (lines_of(&old), lines_of(&new));
                let mut added = Vec::new();
                if new.generation != old.generation {
                    // First-event pricing moved to an earlier event with other features:
                    // cancel the old surcharge lines and add the new set (CR-6).
                    for s in before.minus(LineSet(1)).lines() {
                        added.push((line(s, old.generation, true), s.slot));
                    }
                    for s in after.minus(LineSet(1)).lines() {
                        added.push((line(s, new.generation, false), s.slot));
                    }
                } else {
                    for s in after.minus(before).lines() {
                        added.push((line(s, new.generation, false), s.slot));
                    }
                }
                let credits: Decimal = added.iter().map(|(l, _)| l.credits).sum();
                fx.meter_entry(tenant, date, meter.index, 0, 0, credits);
                for (l, slot) in added {
                    fx.ledger.push((date, Entry::Credits(slot as usize, l.credits)));
                    fx.emit(|| Record { tenant: tenant.id.clone(), rule: l.rule, body: RecordBody::Line(l.clone()) });
                    fx.lines.push(l);
                }
                false
            }
        }
    }
}

/// One line of an interaction (CR-1..CR-5), or its reversal: ids are a function of the
/// interaction, the line's slot and the entry's generation, so every replica and every
/// withdrawal (CR-6, COR-2) names the same line.
pub(super) fn interaction_line(
    id: RecordId,
    meter: &Meter,
    slot: &credits::InteractionLine,
    generation: u8,
    reversal: bool,
    period: &PeriodInfo,
    event_id: &str,
) -> CreditLine {
    // Part one's ids hashed the generation as two bytes.
    let id_of = |generation: u8| RecordId::of(&[b"line", &id.0, &[slot.slot], &u16::from(generation).to_le_bytes()]);
    let (line_id, credits) = if reversal {
        (RecordId::of(&[b"reversal", &id_of(generation).0]), -slot.credits)
    } else {
        (id_of(generation), slot.credits)
    };
    CreditLine {
        id: line_id,
        interaction_id: Some(id),
        kind: slot.kind,
        applies_to: slot.applies_to,
        credits,
        rule: slot.rule,
        period: period.clone(),
        event_id: event_id.to_string(),
        reverses: reversal.then(|| id_of(generation)),
        meter: Some(meter.id.clone()),
    }
}

/// The credit lines an interaction's entry is priced at under its period's structure:
/// the features of any event or of the first (CR-6).
pub(super) fn lines_of(structure: &Structure, e: &InteractionEntry) -> LineSet {
    let features = match structure.feature_attribution {
        FeatureAttribution::AnyEvent => e.any,
        FeatureAttribution::FirstEvent => e.first,
    };
    interaction_lines(features, structure.gai_multiplies_addons)
}
