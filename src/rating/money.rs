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
/// no spaces. `Decimal::from_str` alone accepts a few forms a billing contract should not
/// (underscores).
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits_ok = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (frac.is_empty() != body.contains('.'));
    if !digits_ok {
        return None;
    }
    text.parse::<Decimal>().ok()
}

/// A map from currency to an exact amount, kept sorted so output is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amounts(Vec<(Currency, Decimal)>);

impl Amounts {
    pub fn add(&mut self, currency: Currency, amount: Decimal) {
        match self.0.binary_search_by_key(&currency, |(c, _)| *c) {
            Ok(i) => self.0[i].1 += amount,
            Err(i) => self.0.insert(i, (currency, amount)),
        }
    }

    pub fn add_all(&mut self, other: &Amounts) {
        for (c, a) in &other.0 {
            self.add(*c, *a);
        }
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
    fn decimals_are_strict() {
        assert_eq!(parse_decimal("0.0079").unwrap().to_string(), "0.0079");
        assert_eq!(parse_decimal("-1.5").unwrap().to_string(), "-1.5");
        for bad in ["1e3", "1_000", " 1", "1.", ".5", "", "abc", "1.2.3"] {
            assert!(parse_decimal(bad).is_none(), "{bad}");
        }
    }
}
