//! Rollups: what a tenant's events added to usage, summed per (shard, local date) in the
//! same script step that claims or emits the event. Usage, statements and alert judging
//! then read one hash per date that has usage, O(periods), instead of one entry per
//! event. The step is guarded by the event's id like the rest of the claim, so an event
//! is added once however often it is sent (retries, reconciliation, replay).
//!
//! Amounts are exact: decimal strings added digit by digit in Lua (Lua's numbers are
//! doubles, never used for money here). Counts are `HINCRBY` integers.
//!
//! A rollup hash `dbk:{tenant|shard}:r:<local date as days>` has the fields `n`
//! (interactions), `c<bucket>` (credits by line bucket) and `p<currency>` (pass-through);
//! the set `dbk:{tenant|shard}:r` lists its dates.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::keys::ShardKeys;
use crate::rating::ledger::{BUCKETS, Entry, Totals};
use crate::rating::money::Currency;
use crate::rating::time;

/// The Lua that scripts which add to rollups start with: `dadd(x, y)`, the exact sum of
/// two decimal strings, and `rollup(index, at)`, which applies the rollup operations in
/// ARGV from position `at` (a count, then key number, date, field, amount for each),
/// recording each date in the index key `KEYS[index]`, and returns the position after
/// them.
macro_rules! rollup_lua {
    () => {
        r#"
local function split(s)
  local neg = false
  if string.sub(s, 1, 1) == '-' then neg = true; s = string.sub(s, 2) end
  local i, f = string.match(s, '^(%d*)%.?(%d*)$')
  return neg, i, f
end
local function add_digits(a, b)
  local out, carry = {}, 0
  for k = #a, 1, -1 do
    local d = string.byte(a, k) + string.byte(b, k) - 96 + carry
    if d >= 10 then d = d - 10; carry = 1 else carry = 0 end
    out[#out + 1] = string.char(48 + d)
  end
  if carry == 1 then out[#out + 1] = '1' end
  return string.reverse(table.concat(out))
end
local function sub_digits(a, b)
  local out, borrow = {}, 0
  for k = #a, 1, -1 do
    local d = string.byte(a, k) - string.byte(b, k) - borrow
    if d < 0 then d = d + 10; borrow = 1 else borrow = 0 end
    out[#out + 1] = string.char(48 + d)
  end
  return string.reverse(table.concat(out))
end
local function dadd(x, y)
  local xn, xi, xf = split(x)
  local yn, yi, yf = split(y)
  local fl = math.max(#xf, #yf)
  xf = xf .. string.rep('0', fl - #xf)
  yf = yf .. string.rep('0', fl - #yf)
  local il = math.max(#xi, #yi)
  local a = string.rep('0', il - #xi) .. xi .. xf
  local b = string.rep('0', il - #yi) .. yi .. yf
  local neg, m
  if xn == yn then m = add_digits(a, b); neg = xn
  elseif a >= b then m = sub_digits(a, b); neg = xn
  else m = sub_digits(b, a); neg = yn end
  local ip = string.gsub(string.sub(m, 1, #m - fl), '^0+', '')
  local fp = string.gsub(string.sub(m, #m - fl + 1), '0+$', '')
  if ip == '' then ip = '0' end
  local r = ip
  if fp ~= '' then r = r .. '.' .. fp end
  if r == '0' then neg = false end
  if neg then r = '-' .. r end
  return r
end
local function rollup(index, at)
  local n = tonumber(ARGV[at])
  local i = at + 1
  for _ = 1, n do
    local key = KEYS[tonumber(ARGV[i])]
    local field, amount = ARGV[i + 2], ARGV[i + 3]
    if field == 'n' then
      redis.call('HINCRBY', key, 'n', amount)
    else
      local current = redis.call('HGET', key, field)
      if not current then current = '0' end
      redis.call('HSET', key, field, dadd(current, amount))
    end
    redis.call('SADD', KEYS[index], ARGV[i + 1])
    i = i + 4
  end
  return i
end
"#
    };
}
pub(super) use rollup_lua;

/// The rollups' decimal adder alone: `ARGV[1] + ARGV[2]`, exact. For tests that hold it
/// to `rust_decimal` on a real Redis.
pub const DECIMAL_SUM: &str = concat!(rollup_lua!(), "return dadd(ARGV[1], ARGV[2])");

/// Reads the rollups of one shard whose dates are within `ARGV[2]..=ARGV[3]` (days; empty
/// for open): KEYS[1] is the shard's date index, ARGV[1] the rollup keys' prefix (the
/// key without its date). Every key it reads carries KEYS[1]'s hash tag: one slot.
/// Returns, per date, the date and the hash's fields and values.
pub(super) const READ: &str = r#"
local out = {}
local from, to = tonumber(ARGV[2]), tonumber(ARGV[3])
for _, day in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local d = tonumber(day)
  if (not from or d >= from) and (not to or d <= to) then
    out[#out + 1] = day
    out[#out + 1] = redis.call('HGETALL', ARGV[1] .. day)
  end
end
return out
"#;

/// The rollup operations of one event's aggregate entries: the keys they touch (to be
/// given after the script's fixed keys, the first as key number `first_key`) and the
/// arguments (a count, then key number, date, field and amount each). Entries of one date
/// and field are summed here first, exactly.
pub(super) fn operations(
    keys: &ShardKeys,
    first_key: usize,
    ledger: &[(NaiveDate, Entry)],
) -> (Vec<String>, Vec<String>) {
    // Interactions net of those voided (COR-2), which a void's step takes away.
    let mut by_date: BTreeMap<NaiveDate, (i64, Totals)> = BTreeMap::new();
    for (date, entry) in ledger {
        let (count, totals) = by_date.entry(*date).or_default();
        match entry {
            Entry::Interaction => *count += 1,
            Entry::Uncount => *count -= 1,
            Entry::Credits(..) | Entry::PassThrough(..) => totals.apply(*entry),
            // Never metered by claims: a tenant with several meters follows its log
            // (`server::shared::logged`), and its books are its replicas' own.
            Entry::Meter(..) => {}
        }
    }
    let (mut key_names, mut ops) = (Vec::new(), Vec::new());
    for (n, (date, (count, totals))) in by_date.iter().enumerate() {
        let days = time::date_to_days(*date).to_string();
        let key_number = (first_key + n).to_string();
        key_names.push(keys.rollup(*date));
        let mut op = |field: String, amount: String| {
            ops.extend([key_number.clone(), days.clone(), field, amount]);
        };
        if *count != 0 {
            op("n".into(), count.to_string());
        }
        for (bucket, amount) in totals.credits.iter().enumerate().filter(|(_, a)| !a.is_zero()) {
            op(format!("c{bucket}"), amount.normalize().to_string());
        }
        for (currency, amount) in totals.pass_through.iter().filter(|(_, a)| !a.is_zero()) {
            op(format!("p{}", currency.as_str()), amount.normalize().to_string());
        }
    }
    let mut args = vec![(ops.len() / 4).to_string()];
    args.extend(ops);
    (key_names, args)
}

/// One date's rollup fields as totals. `None`: a field this version does not write, or
/// an amount beyond what a decimal holds exactly.
pub(super) fn totals_of(fields: &[(String, String)]) -> Option<Totals> {
    let mut totals = Totals::default();
    for (field, value) in fields {
        match field.split_at(1) {
            ("n", "") => totals.interactions = value.parse().ok()?,
            ("c", bucket) => {
                let bucket: usize = bucket.parse().ok().filter(|b| *b < BUCKETS)?;
                totals.credits[bucket] = Decimal::from_str_exact(value).ok()?;
            }
            ("p", currency) => {
                if !totals.pass_through.add(Currency::parse(currency)?, Decimal::from_str_exact(value).ok()?) {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_entries_become_one_operation_per_date_and_field() {
        let keys = ShardKeys::new("acme", 3);
        let d1: NaiveDate = "2025-06-10".parse().unwrap();
        let d2: NaiveDate = "2025-06-01".parse().unwrap();
        let usd = Currency::parse("USD").unwrap();
        let ledger = [
            (d1, Entry::Interaction),
            (d1, Entry::Credits(0, Decimal::ONE)),
            (d1, Entry::Credits(1, Decimal::new(5, 1))),
            (d2, Entry::Credits(0, Decimal::ONE)),
            (d1, Entry::PassThrough(usd, Decimal::new(9085, 6))),
            (d1, Entry::Credits(1, Decimal::new(-5, 1))),
        ];
        let (keys_out, args) = operations(&keys, 4, &ledger);
        assert_eq!(keys_out, vec![keys.rollup(d2), keys.rollup(d1)]);
        let d1s = time::date_to_days(d1).to_string();
        let d2s = time::date_to_days(d2).to_string();
        assert_eq!(
            args,
            vec!["4", "4", &d2s, "c0", "1", "5", &d1s, "n", "1", "5", &d1s, "c0", "1", "5", &d1s, "pUSD", "0.009085"]
        );
        let fields: Vec<(String, String)> =
            [("n", "3"), ("c0", "3"), ("c1", "-0.5"), ("pUSD", "0.009085")].map(|(f, v)| (f.into(), v.into())).into();
        let totals = totals_of(&fields).unwrap();
        assert_eq!((totals.interactions, totals.credits[1]), (3, Decimal::new(-5, 1)));
        assert!(totals_of(&[("x".into(), "1".into())]).is_none());
        assert!(totals_of(&[("c0".into(), "1.00000000000000000000000000001".into())]).is_none(), "never rounded");
    }
}
