//! Two kinds of identity.
//!
//! - [`Fp`]: a 128-bit keyed fingerprint (SipHash-1-3) used as the key of hot state. It
//!   is cheap to compute on every message, and keyed so that a caller cannot craft
//!   consumer ids that collide with another tenant's keys. Replicas that share state
//!   share the key.
//! - [`RecordId`]: a deterministic id (BLAKE3 over the readable fields, 128 bits) for
//!   everything emitted downstream. It is the same on every replica and in every offline
//!   replay, so consumers dedupe by it. Computed only when something is emitted.

use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use siphasher::sip128::{Hasher128, SipHasher13};

/// A keyed 128-bit fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fp(pub u64, pub u64);

impl Hash for Fp {
    // Already uniformly distributed: hand one word to the map's hasher as is.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 ^ self.1.rotate_left(17));
    }
}

/// The key of the hot map of relationships: a fingerprint's first 96 bits, packed to
/// 4-byte alignment, so that a key and its 20-byte entry fill 32 bytes instead of 40
/// (P4). 96 bits keep a collision improbable: about 2^-37 among a billion keys.
///
/// Everything that names a relationship from outside the map (an event, the shared
/// store's field, a snapshot) carries the whole [`Fp`]; it becomes a key only here, the
/// same way every time, so a snapshot written with either form reads back alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct HotKey {
    high: u64,
    low: u32,
}

impl From<Fp> for HotKey {
    fn from(fp: Fp) -> Self {
        HotKey { high: fp.0, low: fp.1 as u32 }
    }
}

impl HotKey {
    /// The fingerprint this key keeps (its last 32 bits zero).
    pub fn fp(self) -> Fp {
        Fp(self.high, u64::from(self.low))
    }
}

impl Hash for HotKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (high, low) = (self.high, self.low);
        state.write_u64(high ^ u64::from(low).rotate_left(17));
    }
}

/// A hasher for keys that are already fingerprints: passes the word through, except for
/// the three bits that choose a map's shard group (see [`stagger`]).
#[derive(Default)]
pub struct FpHasher(u64);

impl Hasher for FpHasher {
    fn finish(&self) -> u64 {
        stagger(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than `Fp`; fold bytes so it stays correct.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type FpBuildHasher = BuildHasherDefault<FpHasher>;

/// Where DashMap reads a key's shard: the bits just under hashbrown's 7-bit tag (bits 57
/// to 63), `log2(shards)` of them. The top three of those pick one of eight shard groups.
const GROUP_SHIFT: u32 = 54;

/// Cumulative shares of the eight shard groups, out of 65,536: group `g` holds a share
/// proportional to `2^(g/8)`, so from the smallest group to the largest the share grows
/// by a factor of `2^(7/8)` in eight even steps (checked in a test).
const GROUP_THRESHOLDS: [u16; 7] = [5932, 12400, 19454, 27146, 35534, 44682, 54658];

/// Gives the shards of a map unequal, staggered shares of the keys.
///
/// With equal shares every shard of a DashMap reaches its growth threshold at the same
/// size and doubles at once, so just past each power of two the whole map is at 44% load
/// (hashbrown doubles at 7/8 full): at 1M relationship-days, about 71 bytes each for a
/// 32-byte slot, against 56 at 10M. With shares spread over one doubling, the shards grow
/// one after another and the map's load stays near its average (about 0.6) at every size.
///
/// The group comes from bits 32 to 47 of the fingerprint, which neither the shard choice
/// nor hashbrown's bucket index (low bits) nor its tag (top bits) reads, so keys stay
/// uniform within a shard. The largest group holds 17% of the keys against 12.5%.
pub fn stagger(word: u64) -> u64 {
    let draw = (word >> 32) as u16;
    let group = GROUP_THRESHOLDS.iter().filter(|t| draw >= **t).count() as u64;
    (word & !(7 << GROUP_SHIFT)) | (group << GROUP_SHIFT)
}

/// The width of shard group `group` (0 to 7), out of 65,536: its share of the keys.
fn group_width(group: usize) -> u64 {
    let bound = |g: usize| match g {
        0 => 0,
        8.. => 65_536,
        g => u64::from(GROUP_THRESHOLDS[g - 1]),
    };
    bound(group + 1) - bound(group)
}

/// How many of `total` keys shard `shard` of `shards` can expect: its group's share,
/// split evenly among the group's shards (the shard index's top three bits are the group,
/// [`GROUP_SHIFT`]).
pub fn expected_in_shard(total: usize, shard: usize, shards: usize) -> usize {
    let per_group = (shards / 8).max(1) as u128;
    let group = shard * 8 / shards.max(8);
    (total as u128 * u128::from(group_width(group)) / 65_536 / per_group) as usize
}

/// Makes room in every shard of `map` for its share of `total` keys before they are
/// inserted (a snapshot being read says how many it holds).
///
/// A snapshot lists each map shard by shard in slot order, the order hashbrown's slots
/// are indexed by the hash's low bits. Into a shard already at its final size those keys
/// land in ascending slots, one cache line after another, and no shard rehashes on the
/// way: inserting 9M remembered event ids took 2.0 s of a start's 3.0 s with the shards
/// growing as they filled (issue 19, P6). The size reserved is the one growth would have
/// reached, so memory is unchanged.
pub fn presize<K: Hash + Eq, V>(map: &dashmap::DashMap<K, V, FpBuildHasher>, total: usize) {
    use std::hash::BuildHasher;
    let shards = map.shards();
    for (i, shard) in shards.iter().enumerate() {
        let mut table = shard.write();
        let additional = expected_in_shard(total, i, shards.len()).saturating_sub(table.len());
        table.reserve(additional, |(key, _)| map.hasher().hash_one(key));
    }
}

/// Shards for a map keyed by fingerprints: DashMap's default for this machine (four per
/// core, a power of two), and never fewer than the eight groups [`stagger`] spreads keys
/// over.
pub fn shard_amount() -> usize {
    (std::thread::available_parallelism().map_or(1, usize::from) * 4).next_power_of_two().max(8)
}

/// Computes fingerprints with one deployment key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprinter {
    k0: u64,
    k1: u64,
}

impl Fingerprinter {
    pub fn new(key: [u8; 16]) -> Self {
        let (a, b) = key.split_at(8);
        Fingerprinter {
            k0: u64::from_le_bytes(a.try_into().expect("8 bytes")),
            k1: u64::from_le_bytes(b.try_into().expect("8 bytes")),
        }
    }

    pub fn key(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.k0.to_le_bytes());
        out[8..].copy_from_slice(&self.k1.to_le_bytes());
        out
    }

    /// Starts a fingerprint of a domain (a short tag keeping kinds of keys apart).
    pub fn start(&self, domain: u8) -> FpBuilder {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(domain);
        FpBuilder(h)
    }
}

/// Accumulates the parts of a fingerprint; each part is length-prefixed so that
/// ("ab", "c") and ("a", "bc") differ.
pub struct FpBuilder(SipHasher13);

impl FpBuilder {
    pub fn str(mut self, s: &str) -> Self {
        self.0.write_u32(s.len() as u32);
        self.0.write(s.as_bytes());
        self
    }

    pub fn u64(mut self, n: u64) -> Self {
        self.0.write_u64(n);
        self
    }

    pub fn i64(mut self, n: i64) -> Self {
        self.0.write_i64(n);
        self
    }

    pub fn finish(self) -> Fp {
        let h = self.0.finish128();
        Fp(h.h1, h.h2)
    }
}

/// Domains of fingerprints.
pub mod domain {
    pub const EVENT: u8 = 1;
    pub const INTERACTION: u8 = 2;
    pub const COBROWSE: u8 = 3;
    pub const FUNCTIONS: u8 = 4;
    pub const PLATFORM_USER: u8 = 5;
    pub const PAYLOAD: u8 = 6;
    pub const CONSUMER: u8 = 7;
    pub const UNITS: u8 = 8;
    pub const OUTCOME: u8 = 9;
    pub const FIELD: u8 = 10;
    pub const LOG_ENTRY: u8 = 11;
    pub const PAGE_TOKEN: u8 = 12;
}

/// A deterministic 128-bit id, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(pub [u8; 16]);

impl RecordId {
    /// BLAKE3 over length-prefixed parts, truncated to 128 bits. Short inputs (every id
    /// on the hot path) are laid out on the stack and hashed in one call.
    pub fn of(parts: &[&[u8]]) -> RecordId {
        let mut buf = [0u8; 256];
        let mut len = 0;
        for part in parts {
            let end = len + 4 + part.len();
            if end > buf.len() {
                return Self::of_long(parts);
            }
            buf[len..len + 4].copy_from_slice(&(part.len() as u32).to_le_bytes());
            buf[len + 4..end].copy_from_slice(part);
            len = end;
        }
        Self::truncate(blake3::hash(&buf[..len]))
    }

    fn of_long(parts: &[&[u8]]) -> RecordId {
        let mut h = blake3::Hasher::new();
        for part in parts {
            h.update(&(part.len() as u32).to_le_bytes());
            h.update(part);
        }
        Self::truncate(h.finalize())
    }

    fn truncate(hash: blake3::Hash) -> RecordId {
        let mut out = [0u8; 16];
        out.copy_from_slice(&hash.as_bytes()[..16]);
        RecordId(out)
    }

    pub fn parse(hex: &str) -> Option<RecordId> {
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(RecordId(out))
    }
}

impl RecordId {
    /// The 32 hex digits, without going through the formatting machinery per byte.
    pub fn hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        out
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).expect("hex digits"))
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        let f = Fingerprinter::new([7; 16]);
        assert_ne!(f.start(1).str("ab").str("c").finish(), f.start(1).str("a").str("bc").finish());
        assert_ne!(RecordId::of(&[b"ab", b"c"]), RecordId::of(&[b"a", b"bc"]));
    }

    #[test]
    fn a_hot_key_is_the_same_from_a_fingerprint_or_from_what_it_wrote() {
        // A snapshot writes `key.fp()`; reading it back must give the key a fresh event's
        // fingerprint gives, or a restored relationship would be counted again.
        let f = Fingerprinter::new([3; 16]);
        for consumer in ["a", "b", "consumer-42"] {
            let fp = f.start(1).str(consumer).finish();
            let key = HotKey::from(fp);
            assert_eq!(HotKey::from(key.fp()), key);
            assert_eq!(key.fp().0, fp.0);
        }
        let (a, b) = (f.start(1).str("a").finish(), f.start(1).str("b").finish());
        assert_ne!(HotKey::from(a), HotKey::from(b));
        assert_eq!(std::mem::size_of::<HotKey>(), 12);
        assert_eq!(std::mem::align_of::<HotKey>(), 4);
    }

    #[test]
    fn shard_groups_take_staggered_shares_over_one_doubling() {
        // Each group's width (out of 65,536) is 2^(1/8) times the one before: in integers,
        // width[g+1]^8 is twice width[g]^8, within 1% (the thresholds are rounded to units).
        let widths: Vec<i128> = (0..8).map(|g| i128::from(group_width(g))).collect();
        assert_eq!(widths.iter().sum::<i128>(), 65536);
        for pair in widths.windows(2) {
            let (before, after) = (pair[0].pow(8), pair[1].pow(8));
            assert!((after - 2 * before).abs() * 100 <= 2 * before, "widths {} then {}", pair[0], pair[1]);
        }
        // Fingerprints are uniform: each group's share is its weight's, within sampling.
        let f = Fingerprinter::new([7; 16]);
        let n = 400_000;
        let mut counts = [0u32; 8];
        for i in 0..n {
            let fp = f.start(1).u64(i).finish();
            let hash = stagger(fp.0);
            counts[(hash >> GROUP_SHIFT & 7) as usize] += 1;
            // Everything else is the fingerprint's own.
            assert_eq!(hash & !(7 << GROUP_SHIFT), fp.0 & !(7 << GROUP_SHIFT));
        }
        // Each group's sampled share is its width's, within half a percentage point.
        for (g, (count, width)) in counts.iter().zip(&widths).enumerate() {
            let off = (i128::from(*count) * 65536 - i128::from(n) * width).abs();
            assert!(off * 200 < i128::from(n) * 65536, "group {g}: {count} of {n} against a width of {width}");
        }
        assert!(shard_amount() >= 8 && shard_amount().is_power_of_two());
    }

    #[test]
    fn presized_shards_hold_what_their_keys_need_without_growing() {
        // Each shard's expectation is what sampled keys put in it, within five standard
        // deviations of a binomial count; a map presized for them holds them all in the
        // room it reserved.
        let f = Fingerprinter::new([9; 16]);
        let n = 200_000;
        for shards in [8, 16, 64] {
            let map: dashmap::DashMap<Fp, u8, FpBuildHasher> =
                dashmap::DashMap::with_hasher_and_shard_amount(FpBuildHasher::default(), shards);
            presize(&map, n);
            let reserved: Vec<usize> = map.shards().iter().map(|s| s.read().capacity()).collect();
            for i in 0..n {
                map.insert(f.start(2).u64(i as u64).finish(), 0);
            }
            let total: usize = (0..shards).map(|s| expected_in_shard(n, s, shards)).sum();
            assert!(total.abs_diff(n) < shards, "{shards} shards expect {total} of {n}");
            for (s, shard) in map.shards().iter().enumerate() {
                let (held, expected) = (shard.read().len(), expected_in_shard(n, s, shards));
                assert!(
                    held.abs_diff(expected).pow(2) <= 25 * expected,
                    "shard {s} of {shards}: {held} against {expected}"
                );
                assert!(reserved[s] >= expected, "shard {s} of {shards} reserved {} for {expected}", reserved[s]);
                if held <= reserved[s] {
                    assert_eq!(shard.read().capacity(), reserved[s], "shard {s} of {shards} grew");
                }
            }
        }
    }

    #[test]
    fn long_and_short_ids_hash_the_same_layout() {
        let long = vec![b'x'; 300];
        let parts: [&[u8]; 2] = [b"a", &long];
        let mut h = blake3::Hasher::new();
        for part in parts {
            h.update(&(part.len() as u32).to_le_bytes());
            h.update(part);
        }
        assert_eq!(RecordId::of(&parts), RecordId::truncate(h.finalize()));
        assert_eq!(RecordId::of(&[b"a", b"b"]), RecordId::of_long(&[b"a", b"b"]));
    }

    #[test]
    fn keys_change_fingerprints_but_not_record_ids() {
        let a = Fingerprinter::new([1; 16]).start(1).str("x").finish();
        let b = Fingerprinter::new([2; 16]).start(1).str("x").finish();
        assert_ne!(a, b);
        let id = RecordId::of(&[b"x"]);
        assert_eq!(RecordId::parse(&id.to_string()), Some(id));
    }
}
