//! Money: an exact decimal amount in a currency. Never a float, never rounded (CR-9).

use std::fmt;

use rust_decimal::Decimal;

/// An ISO 4217 code: three capital ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    /// Accepts exactly three capital letters (T-6).
    pub fn parse(code: &str) -> Option<Currency> {
        let bytes = code.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Some(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money { amount, currency }
    }
}

/// Parses a decimal string strictly: digits with an optional sign and point, no exponent,
/// no spaces, and at most 28 significant digits. `Decimal::from_str` alone accepts a few
/// forms a billing contract should not (underscores), and rounds what has more digits than
/// it holds: a bill must refuse an amount, never round it.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits_ok = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (frac.is_empty() != body.contains('.'));
    let significant = whole.trim_start_matches('0').len() + frac.len();
    if !digits_ok || significant > MAX_DIGITS || frac.len() > MAX_DIGITS {
        return None;
    }
    text.parse::<Decimal>().ok()
}

/// The digits a `Decimal` holds exactly (its 96-bit mantissa holds any 28-digit number).
const MAX_DIGITS: usize = 28;

/// The largest amount an event or a setting may carry is below 10^12 (a trillion), with
/// at most 10 digits after the point. With a period's totals held below
/// [`PERIOD_TOTAL_LIMIT`], every sum and every 15% pass-through charge (two more
/// decimals) stays exact in a `Decimal`: at 12 decimals it holds 7.9 x 10^16 exactly.
pub const AMOUNT_DIGITS: u32 = 12;
pub const AMOUNT_SCALE: u32 = 10;
/// What one local month's total (credits, or pass-through in one currency) of a tenant may
/// reach: 10^15. An event that would take a total past it is refused.
pub const PERIOD_TOTAL_LIMIT: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);
/// The largest `function_invocations.count` one event may report, and what one local
/// month's invocations may reach.
pub const MAX_INVOCATIONS_PER_EVENT: u64 = 1_000_000_000_000;
pub const MAX_INVOCATIONS_PER_MONTH: u64 = 1_000_000_000_000_000;

/// Why an amount is beyond what daybook bills exactly (a field violation's text).
pub fn amount_limit_violation(amount: Decimal) -> Option<String> {
    if amount.scale() > AMOUNT_SCALE && amount.normalize().scale() > AMOUNT_SCALE {
        return Some(format!("at most {AMOUNT_SCALE} digits after the point"));
    }
    if amount.abs() >= Decimal::from(10u64.pow(AMOUNT_DIGITS)) {
        return Some(format!("must be below 10^{AMOUNT_DIGITS}"));
    }
    None
}

/// `a x b` exactly, or `None`: the product keeps both scales' digits unless `Decimal` had
/// to drop some (past 28 decimals or 96 bits).
pub fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    if a.is_zero() || b.is_zero() {
        return Some(Decimal::ZERO);
    }
    let product = a.checked_mul(b)?;
    (!product.is_zero() && product.scale() >= a.scale() + b.scale()).then_some(product)
}

/// `a + b` exactly, or `None`: `Decimal` addition drops fractional digits to stay within
/// 96 bits, and panics past them; a total must do neither.
pub fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    // Adding zero returns the other operand as it is (whatever the zero's scale), and a
    // sum of zero is exact; any other sum keeps the larger scale unless digits were
    // dropped to make it fit.
    if a.is_zero() {
        return Some(b);
    }
    if b.is_zero() {
        return Some(a);
    }
    let sum = a.checked_add(b)?;
    (sum.is_zero() || sum.scale() >= a.scale().max(b.scale())).then_some(sum)
}

/// A map from currency to an exact amount, kept sorted so output is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amounts(Vec<(Currency, Decimal)>);

impl Amounts {
    /// Adds exactly; `false` (the amount left as it was) when the sum would not be exact.
    #[must_use]
    pub fn add(&mut self, currency: Currency, amount: Decimal) -> bool {
        match self.0.binary_search_by_key(&currency, |(c, _)| *c) {
            Ok(i) => match exact_add(self.0[i].1, amount) {
                Some(sum) => self.0[i].1 = sum,
                None => return false,
            },
            Err(i) => self.0.insert(i, (currency, amount)),
        }
        true
    }

    #[must_use]
    pub fn add_all(&mut self, other: &Amounts) -> bool {
        other.0.iter().fold(true, |exact, (c, a)| self.add(*c, *a) && exact)
    }

    pub fn get(&self, currency: Currency) -> Decimal {
        self.0.binary_search_by_key(&currency, |(c, _)| *c).map(|i| self.0[i].1).unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Currency, Decimal)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr_9_currency_is_three_capital_letters() {
        assert!(Currency::parse("USD").is_some());
        for bad in ["usd", "US", "USDX", "U$D", ""] {
            assert!(Currency::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_decimal_is_refused_rather_than_rounded() {
        let digits28 = "9999999999999999999999999999";
        assert_eq!(parse_decimal(digits28).unwrap().to_string(), digits28);
        assert!(parse_decimal(&format!("{digits28}9")).is_none());
        assert!(parse_decimal("0.99999999999999999999999999999").is_none());
        assert_eq!(parse_decimal("0000000000000000000000000000001.5").unwrap().to_string(), "1.5");
    }

    #[test]
    fn amounts_beyond_the_limits_are_named() {
        assert_eq!(amount_limit_violation(Decimal::new(999_999_999_999_999_999, 6)), None);
        assert!(amount_limit_violation(Decimal::from(1_000_000_000_000u64)).is_some());
        assert!(amount_limit_violation(Decimal::new(1, 28)).is_some());
        // Trailing zeros are not digits of the amount.
        assert_eq!(amount_limit_violation(Decimal::new(15_000_000_000, 19)), None);
        assert_eq!(PERIOD_TOTAL_LIMIT, Decimal::from(1_000_000_000_000_000u64));
    }

    #[test]
    fn exact_add_never_rounds_and_never_panics() {
        let big = Decimal::MAX;
        assert_eq!(exact_add(big, Decimal::ONE), None);
        // 7.9 x 10^16 at 12 decimals plus one at 12 decimals no longer fits: Decimal
        // would drop a digit.
        let edge = Decimal::from_i128_with_scale(79_228_162_514_264_337_593_543_950_335, 12);
        assert_eq!(exact_add(edge, Decimal::new(1, 12)), None);
        assert_eq!(exact_add(Decimal::new(1, 12), Decimal::new(2, 12)), Some(Decimal::new(3, 12)));
        assert_eq!(exact_mul(Decimal::ZERO, Decimal::new(110, 2)), Some(Decimal::ZERO));
        assert_eq!(exact_mul(Decimal::new(1, 20), Decimal::new(1, 10)), None);
        assert_eq!(exact_mul(Decimal::new(3, 1), Decimal::new(115, 2)), Some(Decimal::new(345, 3)));
        // Zeros of any scale, and sums that come back to zero, are exact.
        assert_eq!(exact_add(Decimal::new(0, 1), Decimal::ONE), Some(Decimal::ONE));
        assert_eq!(exact_add(Decimal::ONE, Decimal::new(-10, 1)), Some(Decimal::ZERO));
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(parse_decimal("0.0079").unwrap().to_string(), "0.0079");
        assert_eq!(parse_decimal("-1.5").unwrap().to_string(), "-1.5");
        for bad in ["1e3", "1_000", " 1", "1.", ".5", "", "abc", "1.2.3"] {
            assert!(parse_decimal(bad).is_none(), "{bad}");
        }
    }
}
