//! The interaction rules: messages and conversations opened touch their interaction
//! (DAR, CYC, MAU presets of one mechanism), features seen (CR-2..CR-6), and proactive
//! outbounds and their replies (DAR-5).

use super::*;

impl Engine {
    /// Messages and conversations opened: pass-through, platform users, the interaction,
    /// and the proactive reply rules (DAR-4, DAR-5, CYC-5, CR-9, PL-1).
    pub(super) fn rate_conversational(
        &self,
        tenant: &Tenant,
        event: &Event,
        tie: u32,
        event_fp: Fp,
        fx: &mut Effects,
    ) -> Disposition {
        let settings = tenant.settings_at(event.at);
        let (consumer, conversation, integration, sender) = match &event.body {
            Body::Message(m) => {
                (m.consumer.as_str(), m.conversation.as_deref(), m.integration.as_deref(), Some(m.sender))
            }
            Body::ConversationOpened(o) => {
                (o.consumer.as_str(), Some(o.conversation.as_str()), o.integration.as_deref(), None)
            }
            _ => unreachable!("only conversational events"),
        };

        if let Body::Message(m) = &event.body {
            if let Some(price) = m.price {
                self.charge_pass_through(tenant, event, price, event_fp, fx);
            }
            if let (Some(sender_id), SenderRole::Agent | SenderRole::Bot, true) =
                (&m.sender_id, m.sender, fx.mode.commits())
            {
                let month = tenant.period_in(Window::LocalMonth, event.at).start_date;
                let key = self.users_key(tenant, month);
                let sender = self.fingerprinter.start(domain::PLATFORM_USER).str(sender_id).finish();
                fx.user = Some((key, time::date_to_days(month), sender));
            }
        }

        let qualifies = match sender {
            None | Some(SenderRole::Consumer | SenderRole::Agent | SenderRole::Bot) => true,
            Some(SenderRole::System) => false,
            Some(SenderRole::Proactive) => {
                tenant.meter.proactive == ProactivePolicy::QualifiesUnlessRequiresReply
                    && !settings.proactive_requires_reply
            }
        };

        let mut created = false;
        if qualifies {
            let touch = Touch {
                tenant,
                consumer,
                conversation,
                integration,
                at: event.at,
                tie,
                features: settings.features,
                rule: tenant.meter.rule,
                event_id: &event.event_id,
            };
            created |= self.touch(&touch, fx);
        }

        fx.prior.get_or_insert(Prior::Interaction(None));
        // DAR-5 (retroactive) keeps per-consumer logs that are not shared: a shared store
        // refuses such tenants (ARCHITECTURE.md, "Redis").
        if tenant.any_retroactive && matches!(fx.mode, Mode::Live) {
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
                    created |= self.record_outbound(tenant, consumer, outbound, fx);
                }
                Some(SenderRole::Consumer) => {
                    created |= self.record_reply(tenant, consumer, event.at, conversation.unwrap_or_default(), fx);
                }
                _ => {}
            }
        }

        if created {
            Disposition::NewInteraction
        } else if !fx.counted_in.is_empty() {
            Disposition::AlreadyCounted
        } else if sender == Some(SenderRole::System) {
            Disposition::NotBillable(NotBillableReason::SystemMessage)
        } else {
            Disposition::NotBillable(NotBillableReason::ProactiveAwaitingReply)
        }
    }

    pub(super) fn reply_log(&self, tenant: &Tenant, consumer: &str) -> dashmap::mapref::one::RefMut<'_, Fp, ReplyLog> {
        let key = self.fingerprinter.start(domain::CONSUMER).str(&tenant.id).str(consumer).finish();
        self.replies.entry(key).or_insert_with(|| ReplyLog {
            tenant: tenant.index,
            consumer: consumer.to_string(),
            ..ReplyLog::default()
        })
    }

    /// DAR-5 (retroactive): a new outbound is charged at once if a reply is already known.
    pub(super) fn record_outbound(
        &self,
        tenant: &Tenant,
        consumer: &str,
        mut outbound: Outbound,
        fx: &mut Effects,
    ) -> bool {
        let mut log = self.reply_log(tenant, consumer);
        let reply = log.first_reply_within(outbound.at, outbound.window).map(|(_, c)| c.clone());
        let mut created = false;
        if let Some(reply_conversation) = reply {
            created = self.charge_outbound(tenant, consumer, &mut outbound, &reply_conversation, fx);
        }
        log.outbounds.push(outbound);
        created
    }

    /// DAR-5 (retroactive): a consumer message charges every waiting outbound it answers.
    pub(super) fn record_reply(
        &self,
        tenant: &Tenant,
        consumer: &str,
        at: Instant,
        conversation: &str,
        fx: &mut Effects,
    ) -> bool {
        let mut log = self.reply_log(tenant, consumer);
        log.add_reply(at, conversation.to_string());
        let mut created = false;
        let log = &mut *log;
        for outbound in log.outbounds.iter_mut() {
            if outbound.charged_to.is_none() && outbound.at <= at && at <= outbound.at + outbound.window {
                created |= self.charge_outbound(tenant, consumer, outbound, conversation, fx);
            }
        }
        created
    }

    /// Charges the outbound's own period, priced at the outbound's instant; it belongs to
    /// the outbound's conversation, or the reply's if it has none (DAR-5).
    pub(super) fn charge_outbound(
        &self,
        tenant: &Tenant,
        consumer: &str,
        outbound: &mut Outbound,
        reply_conversation: &str,
        fx: &mut Effects,
    ) -> bool {
        // The outbound's period may have closed while it waited (a late reply): its
        // statement is final, so it is not charged (ARCHITECTURE.md, "Rulebook gaps").
        let period = tenant.period(outbound.at);
        let past_horizon =
            fx.now.is_some_and(|now| period.end() + tenant.settings_at(outbound.at).lateness_horizon < now);
        if past_horizon || fx.closed_before.is_some_and(|c| time::to_millis(period.end()) <= c) {
            return false;
        }
        let conversation =
            outbound.conversation.clone().or_else(|| Some(reply_conversation.to_string()).filter(|c| !c.is_empty()));
        let touch = Touch {
            tenant,
            consumer,
            conversation: conversation.as_deref(),
            integration: outbound.integration.as_deref(),
            at: outbound.at,
            tie: outbound.tie,
            features: tenant.settings_at(outbound.at).features,
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
        let meter = touch.tenant.meter;
        let by_conversation = meter.honours_relationship && structure.relationship == Relationship::Conversation;
        let wants = |field| meter.key_fields.contains(&field);
        KeyRef {
            consumer: touch.consumer,
            conversation: (by_conversation || wants(KeyField::Conversation))
                .then(|| touch.conversation.unwrap_or_default()),
            integration: wants(KeyField::Integration).then(|| touch.integration.unwrap_or_default()),
        }
    }

    pub(super) fn interaction_id(tenant: &Tenant, key: &KeyRef<'_>, period: &Period) -> RecordId {
        let mut label = [0u8; 10];
        RecordId::of(&[
            b"interaction",
            tenant.id.as_bytes(),
            tenant.meter.kind.name().as_bytes(),
            key.consumer.as_bytes(),
            key.conversation.unwrap_or("\0").as_bytes(),
            key.integration.unwrap_or("\0").as_bytes(),
            period.label_into(&mut label).as_bytes(),
        ])
    }

    /// Adds a qualifying event to its interaction. Returns whether it created it.
    pub(super) fn touch(&self, touch: &Touch<'_>, fx: &mut Effects) -> bool {
        let tenant = touch.tenant;
        let period = tenant.period(touch.at);
        let structure = tenant.structure(period.start_date);
        let key = Self::key_of(touch, &structure);
        let fp = self
            .fingerprinter
            .start(domain::INTERACTION)
            .str(&tenant.id)
            .str(key.consumer)
            .str(key.conversation.unwrap_or("\0"))
            .str(key.integration.unwrap_or("\0"))
            .i64(time::date_to_days(period.start_date).into())
            .finish();
        let contribution =
            InteractionEntry::contribution(tenant.index, period.start_date, touch.at, touch.tie, touch.features);
        let lines_of = |e: &InteractionEntry| lines_of(&structure, e);

        let next = |old: InteractionEntry| {
            let mut new = old.join(contribution);
            let replaced =
                structure.feature_attribution == FeatureAttribution::FirstEvent && lines_of(&old) != lines_of(&new);
            if replaced && new != old {
                new.generation = old.generation.wrapping_add(1);
            }
            new
        };
        let shared_old = |v: &Shared| match v {
            Shared::Interaction(old) => old.map(|e| InteractionEntry { tenant: tenant.index, ..e }),
            _ => None,
        };
        let (old, new) = match &fx.mode {
            Mode::Retry(Prior::Interaction(old)) => (*old, old.map(next).unwrap_or(contribution)),
            // Only the event's own interaction is shared; DAR-5 touches are not (retroactive
            // tenants are refused under a shared store).
            Mode::Probe(v) | Mode::Claimed(v) if fx.shared.is_none() => {
                let old = shared_old(v);
                (old, old.map(next).unwrap_or(contribution))
            }
            Mode::Guarded | Mode::Probe(_) => {
                let old = self.interactions.get(&fp.into()).map(|e| *e);
                (old, old.map(next).unwrap_or(contribution))
            }
            _ => match self.interactions.entry(fp.into()) {
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
        };
        if let Mode::Claimed(_) = fx.mode {
            self.interactions.entry(fp.into()).and_modify(|mine| *mine = mine.join(new)).or_insert(new);
        }
        if !matches!(fx.mode, Mode::Live | Mode::Retry(_)) && fx.shared.is_none() {
            fx.shared = Some(SharedTouch {
                place: Place::Interaction { period_start: period.start_date },
                entry: fp,
                before: Shared::Interaction(old),
                after: Shared::Interaction(Some(new)),
                expires: period.end() + tenant.settings_at(touch.at).lateness_horizon + TimeDelta::days(1),
            });
        }
        // The event's own interaction is the first it touches; DAR-5 touches come after.
        fx.prior.get_or_insert(Prior::Interaction(old));
        if old == Some(new) {
            fx.counted_in.push(Self::interaction_id(tenant, &key, &period));
            return false;
        }

        self.emit_touch(touch, fx, &key, &period, &structure, old, new)
    }

    /// The records and lines of a touch that changed its interaction: a new interaction
    /// with its lines, or the lines a new feature adds (and, under first-event pricing,
    /// the reversals of the lines an earlier event replaces). Returns whether it created
    /// the interaction.
    #[allow(clippy::too_many_arguments, reason = "the parts of one touch, computed once by `touch`")]
    fn emit_touch(
        &self,
        touch: &Touch<'_>,
        fx: &mut Effects,
        key: &KeyRef<'_>,
        period: &Period,
        structure: &Structure,
        old: Option<InteractionEntry>,
        new: InteractionEntry,
    ) -> bool {
        let tenant = touch.tenant;
        let lines_of = |e: &InteractionEntry| lines_of(structure, e);
        let id = Self::interaction_id(tenant, key, period);
        let info = PeriodInfo::from(period);
        let line = |slot: &credits::InteractionLine, generation: u16, reversal: bool| {
            let id_of = |generation: u16| RecordId::of(&[b"line", &id.0, &[slot.slot], &generation.to_le_bytes()]);
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
                period: info.clone(),
                event_id: touch.event_id.to_string(),
                reverses: reversal.then(|| id_of(generation)),
            }
        };
        let date = period.start_date;
        let emit_line = |fx: &mut Effects, l: CreditLine, slot: u8| {
            fx.ledger.push((date, Entry::Credits(slot as usize, l.credits)));
            fx.records.push(Record { tenant: tenant.id.clone(), rule: l.rule, body: RecordBody::Line(l.clone()) });
            fx.lines.push(l);
        };

        match old {
            None => {
                let lines: Vec<CreditLine> = lines_of(&new).lines().map(|s| line(s, new.generation, false)).collect();
                for (l, s) in lines.iter().zip(lines_of(&new).lines()) {
                    fx.ledger.push((date, Entry::Credits(s.slot as usize, l.credits)));
                }
                fx.ledger.push((date, Entry::Interaction));
                let interaction = Interaction {
                    id,
                    tenant: tenant.id.clone(),
                    meter: tenant.meter.kind,
                    key: key.to_owned(),
                    period: info.clone(),
                    rule: touch.rule,
                    lines: lines.clone(),
                    event_id: touch.event_id.to_string(),
                };
                fx.records.push(Record {
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
                let (before, after) = (lines_of(&old), lines_of(&new));
                if new.generation != old.generation {
                    // First-event pricing moved to an earlier event with other features:
                    // cancel the old surcharge lines and add the new set (CR-6).
                    for s in before.minus(LineSet(1)).lines() {
                        emit_line(fx, line(s, old.generation, true), s.slot);
                    }
                    for s in after.minus(LineSet(1)).lines() {
                        emit_line(fx, line(s, new.generation, false), s.slot);
                    }
                } else {
                    for s in after.minus(before).lines() {
                        emit_line(fx, line(s, new.generation, false), s.slot);
                    }
                }
                false
            }
        }
    }
}

/// The credit lines an interaction's entry is priced at under its period's structure:
/// the features of any event or of the first (CR-6).
fn lines_of(structure: &Structure, e: &InteractionEntry) -> LineSet {
    let features = match structure.feature_attribution {
        FeatureAttribution::AnyEvent => e.any,
        FeatureAttribution::FirstEvent => e.first,
    };
    interaction_lines(features, structure.gai_multiplies_addons)
}
