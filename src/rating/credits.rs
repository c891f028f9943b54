//! Credit lines (CR-1..CR-8) and plan overage (PL-1). Exact decimals only.

use rust_decimal::Decimal;

use super::settings::Features;
use super::terms::Rounding;

/// The kind of a credit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineKind {
    Base,
    GenerativeAi,
    IntentListening,
    PerformanceOptimizer,
    Cobrowse,
    Functions,
    /// An outcome meter's billed outcome (OUT-2).
    Outcome,
    /// An event meter's units beyond its allowance (EV-2).
    Units,
}

impl LineKind {
    pub fn name(self) -> &'static str {
        match self {
            LineKind::Base => "base",
            LineKind::GenerativeAi => "generative_ai",
            LineKind::IntentListening => "intent_listening",
            LineKind::PerformanceOptimizer => "performance_optimizer",
            LineKind::Cobrowse => "cobrowse",
            LineKind::Functions => "functions",
            LineKind::Outcome => "outcome",
            LineKind::Units => "units",
        }
    }
}

/// One of the lines an interaction can carry. An interaction's lines are a pure function
/// of its features and the period's `gai_multiplies_addons`, so the set only grows as
/// features are seen (CR-6) and every replica derives the same lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InteractionLine {
    /// Bit in a [`LineSet`].
    pub slot: u8,
    pub kind: LineKind,
    /// For Generative-AI uplifts: the line the uplift applies to.
    pub applies_to: Option<LineKind>,
    pub credits: Decimal,
    pub rule: &'static str,
}

/// Which interaction lines are present, as bits of [`INTERACTION_LINES`] slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineSet(pub u8);

impl LineSet {
    pub fn contains(self, slot: u8) -> bool {
        self.0 & (1 << slot) != 0
    }

    pub fn minus(self, other: LineSet) -> LineSet {
        LineSet(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn lines(self) -> impl Iterator<Item = &'static InteractionLine> {
        INTERACTION_LINES.iter().filter(move |l| self.contains(l.slot))
    }
}

/// CR-1..CR-5 in one table: 1 + 0.5 + 0.2 + 0.05, and with `gai_multiplies_addons` the
/// add-ons' own 0.5x uplifts (0.1 and 0.025), so 1.875 in all.
pub static INTERACTION_LINES: [InteractionLine; 6] = [
    InteractionLine { slot: 0, kind: LineKind::Base, applies_to: None, credits: Decimal::ONE, rule: "CR-1" },
    InteractionLine {
        slot: 1,
        kind: LineKind::GenerativeAi,
        applies_to: Some(LineKind::Base),
        credits: Decimal::from_parts(5, 0, 0, false, 1),
        rule: "CR-2",
    },
    InteractionLine {
        slot: 2,
        kind: LineKind::IntentListening,
        applies_to: None,
        credits: Decimal::from_parts(2, 0, 0, false, 1),
        rule: "CR-3",
    },
    InteractionLine {
        slot: 3,
        kind: LineKind::PerformanceOptimizer,
        applies_to: None,
        credits: Decimal::from_parts(5, 0, 0, false, 2),
        rule: "CR-4",
    },
    InteractionLine {
        slot: 4,
        kind: LineKind::GenerativeAi,
        applies_to: Some(LineKind::IntentListening),
        credits: Decimal::from_parts(1, 0, 0, false, 1),
        rule: "CR-5",
    },
    InteractionLine {
        slot: 5,
        kind: LineKind::GenerativeAi,
        applies_to: Some(LineKind::PerformanceOptimizer),
        credits: Decimal::from_parts(25, 0, 0, false, 3),
        rule: "CR-5",
    },
];

/// The lines of an interaction with these features.
pub fn interaction_lines(features: Features, gai_multiplies_addons: bool) -> LineSet {
    let gai = features.has(Features::GENERATIVE_AI);
    let intent = features.has(Features::INTENT_LISTENING);
    let optimizer = features.has(Features::PERFORMANCE_OPTIMIZER);
    let mut bits = 1u8;
    bits |= u8::from(gai) << 1;
    bits |= u8::from(intent) << 2;
    bits |= u8::from(optimizer) << 3;
    bits |= u8::from(gai && intent && gai_multiplies_addons) << 4;
    bits |= u8::from(gai && optimizer && gai_multiplies_addons) << 5;
    LineSet(bits)
}

/// CR-8: invocations free per local month.
pub const FUNCTIONS_FREE_PER_MONTH: u64 = 150_000;
/// CR-8: invocations per credit.
pub const FUNCTIONS_PER_CREDIT: u64 = 250;

/// CR-8: the credits owed for a month's total invocations.
pub fn functions_credits(total: u64, rounding: Rounding) -> Decimal {
    blocks(total.saturating_sub(FUNCTIONS_FREE_PER_MONTH), FUNCTIONS_PER_CREDIT, rounding)
}

/// `count / block` rounded as the setting says, exactly.
pub fn blocks(count: u64, block: u64, rounding: Rounding) -> Decimal {
    let block = block.max(1);
    match rounding {
        Rounding::ProRata => Decimal::from(count) / Decimal::from(block),
        Rounding::CeilBlock => Decimal::from(count.div_ceil(block)),
        Rounding::FloorBlock => Decimal::from(count / block),
    }
}

/// CR-9: daybook's pass-through charge for a provider price (15% handling), exact.
pub fn pass_through(price: Decimal) -> Decimal {
    price * Decimal::from_parts(115, 0, 0, false, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(set: LineSet) -> Decimal {
        set.lines().map(|l| l.credits).sum()
    }

    #[test]
    fn cr_5_uplifts_are_not_multiplied_by_default() {
        let all = Features(Features::GENERATIVE_AI | Features::INTENT_LISTENING | Features::PERFORMANCE_OPTIMIZER);
        assert_eq!(total(interaction_lines(all, false)), "1.75".parse().unwrap());
        assert_eq!(total(interaction_lines(all, true)), "1.875".parse().unwrap());
        assert_eq!(total(interaction_lines(Features(Features::GENERATIVE_AI), true)), "1.5".parse().unwrap());
        assert_eq!(total(interaction_lines(Features::default(), true)), Decimal::ONE);
    }

    #[test]
    fn cr_8_functions_rounding() {
        assert_eq!(functions_credits(150_000, Rounding::ProRata), Decimal::ZERO);
        assert_eq!(functions_credits(151_000, Rounding::ProRata), Decimal::from(4));
        assert_eq!(functions_credits(150_001, Rounding::ProRata), "0.004".parse().unwrap());
        assert_eq!(functions_credits(150_001, Rounding::CeilBlock), Decimal::ONE);
        assert_eq!(functions_credits(150_249, Rounding::FloorBlock), Decimal::ZERO);
        assert_eq!(functions_credits(150_500, Rounding::FloorBlock), Decimal::from(2));
    }

    #[test]
    fn cr_9_pass_through_is_never_rounded() {
        assert_eq!(pass_through("0.0079".parse().unwrap()), "0.009085".parse().unwrap());
    }

    #[test]
    fn pl_1_overage_blocks() {
        assert_eq!(blocks(150, 100, Rounding::CeilBlock) * Decimal::from(39), Decimal::from(78));
        assert_eq!(blocks(150, 100, Rounding::FloorBlock) * Decimal::from(39), Decimal::from(39));
        assert_eq!(blocks(150, 100, Rounding::ProRata) * Decimal::from(39), "58.5".parse().unwrap());
    }
}
