//! Plans (PL-1, PL-2) and their alert thresholds (PL-3).

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::money::{Currency, Money};
use super::time::Instant;

/// The tenant's plan, which decides how statements are cut and priced.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Starter(StarterPlan),
    Commitment(CommitmentPlan),
}

/// PL-1: included interactions per local month, overage in blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct StarterPlan {
    pub included: u64,
    pub block_size: u64,
    pub block_price: Money,
    pub max_platform_users: u64,
    /// PL-3 thresholds, fractions of `included`.
    pub alerts: Vec<Decimal>,
    /// MS-5: the meter whose interactions the plan counts (default: the first `dar`,
    /// `cycle` or `mau` meter).
    pub meter: Option<String>,
}

impl Default for StarterPlan {
    fn default() -> Self {
        StarterPlan {
            included: 2000,
            block_size: 100,
            block_price: Money::new(Decimal::from(39), Currency::USD),
            max_platform_users: 10,
            alerts: Vec::new(),
            meter: None,
        }
    }
}

/// PL-2: committed credits per term, top-ups, overage price.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitmentPlan {
    pub term_start: NaiveDate,
    /// Inclusive.
    pub term_end: NaiveDate,
    pub credits: Decimal,
    pub overage_price: Vec<Money>,
    pub top_ups: Vec<TopUp>,
    /// PL-3 thresholds, fractions of `credits` (top-ups excluded).
    pub alerts: Vec<Decimal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopUp {
    pub at: Instant,
    pub credits: Decimal,
}

impl CommitmentPlan {
    /// The statement label of the term: `TERM_START/TERM_END`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.term_start, self.term_end)
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.term_start <= date && date <= self.term_end
    }
}

impl Plan {
    pub fn alerts(&self) -> &[Decimal] {
        match self {
            Plan::Starter(p) => &p.alerts,
            Plan::Commitment(p) => &p.alerts,
        }
    }
}
