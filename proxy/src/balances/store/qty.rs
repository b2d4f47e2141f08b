//! Quantities as the store keeps them: 8 bytes per value when it fits (`Packed`: a 58-bit
//! mantissa and the display scale), which is nearly always for inventory quantities, else a
//! wide [`Decimal`] kept in a side map, else "not servable" (NaN, ±Infinity, more than 38
//! digits: PostgreSQL has the value, we cannot reproduce it exactly).
//!
//! `Small` follows `Decimal`'s rules exactly (same parser, PostgreSQL's addition rule: result
//! scale = the larger scale) and falls back to `Decimal` whenever a result leaves its range,
//! so the packed form never changes an answer; the tests check it against `Decimal`.

use super::super::decimal::Decimal;

/// `Decimal`'s largest scale (its `MAX_SCALE`); larger scales are not servable either way.
const MAX_SCALE: u8 = 38;
/// Bits of the scale field in [`Packed`]; the all-ones value tags "see the side map".
const SCALE_BITS: u32 = 6;
const WIDE_TAG: u64 = (1 << SCALE_BITS) - 1;
const MANT_MAX: i64 = (1 << (63 - SCALE_BITS)) - 1;
const MANT_MIN: i64 = -(1 << (63 - SCALE_BITS));

/// `mant / 10^scale` with `|mant| < 2^57` (17 full digits) and `scale ≤ 38`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Small {
    mant: i64,
    scale: u8,
}

impl Small {
    pub(super) const ZERO: Small = Small { mant: 0, scale: 0 };

    fn new(mant: i64, scale: u8) -> Option<Small> {
        ((MANT_MIN..=MANT_MAX).contains(&mant) && scale <= MAX_SCALE)
            .then_some(Small { mant, scale })
    }

    /// `Decimal::parse`'s grammar, but only values that fit; `None` means "try `Decimal`".
    pub(super) fn parse(s: &str) -> Option<Small> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let scale = u8::try_from(frac.len()).ok()?;
        let mut mant: i64 = 0;
        for c in int.bytes().chain(frac.bytes()) {
            if !c.is_ascii_digit() {
                return None;
            }
            mant = mant.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
        }
        Small::new(if neg { -mant } else { mant }, scale)
    }

    /// `self + other` with PostgreSQL's scale rule; `None` when the result does not fit.
    fn checked_add(self, other: Small) -> Option<Small> {
        let scale = self.scale.max(other.scale);
        let widen = |v: Small| {
            v.mant
                .checked_mul(10i64.checked_pow(u32::from(scale - v.scale))?)
        };
        Small::new(widen(self)?.checked_add(widen(other)?)?, scale)
    }

    /// The same value as a `Decimal` (through `Decimal`'s own parser: its fields are private
    /// to `decimal.rs`; the text is built on the stack, no allocation).
    pub(super) fn to_decimal(self) -> Option<Decimal> {
        let mut buf = [0u8; 48];
        let len = self.write_text(&mut buf);
        Decimal::parse(std::str::from_utf8(&buf[..len]).ok()?)
    }

    /// Writes `[-]digits` with a `.` before the last `scale` digits (zero-padded so there are
    /// at least `scale` of them; `Decimal::parse` reads `.05` as 0.05). Returns the length.
    fn write_text(self, out: &mut [u8; 48]) -> usize {
        let scale = usize::from(self.scale);
        let mut rev = [b'0'; 40]; // digits, least significant first; scale ≤ 38, 18 digits max
        let mut n = self.mant.unsigned_abs();
        let mut k = 0;
        while n > 0 || k < scale.max(1) {
            rev[k] = b'0' + (n % 10) as u8;
            n /= 10;
            k += 1;
        }
        let mut len = 0;
        if self.mant < 0 {
            out[0] = b'-';
            len = 1;
        }
        for i in (0..k).rev() {
            if scale > 0 && i + 1 == scale {
                out[len] = b'.';
                len += 1;
            }
            out[len] = rev[i];
            len += 1;
        }
        len
    }
}

/// A quantity in any of its three forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    Small(Small),
    Wide(Decimal),
    Unservable,
}

impl Value {
    pub(super) fn parse(text: &str) -> Value {
        match Small::parse(text) {
            Some(s) => Value::Small(s),
            None => Decimal::parse(text).map_or(Value::Unservable, Value::from_decimal),
        }
    }

    /// A `Decimal`, packed when it fits (wide values are rare: the text detour is fine).
    fn from_decimal(d: Decimal) -> Value {
        Small::parse(&d.to_text()).map_or(Value::Wide(d), Value::Small)
    }

    fn decimal(self) -> Option<Decimal> {
        match self {
            Value::Small(s) => s.to_decimal(),
            Value::Wide(d) => Some(d),
            Value::Unservable => None,
        }
    }

    /// `-self` (same display scale).
    pub(super) fn negated(self) -> Value {
        match self {
            Value::Small(s) => s
                .mant
                .checked_neg()
                .and_then(|m| Small::new(m, s.scale))
                .map_or_else(
                    || {
                        s.to_decimal()
                            .map_or(Value::Unservable, |d| Value::Wide(d.negated()))
                    },
                    Value::Small,
                ),
            Value::Wide(d) => Value::from_decimal(d.negated()),
            Value::Unservable => Value::Unservable,
        }
    }

    /// The display scale (`None`: unservable).
    pub(super) fn scale(self) -> Option<u16> {
        match self {
            Value::Small(s) => Some(u16::from(s.scale)),
            Value::Wide(d) => Some(d.scale()),
            Value::Unservable => None,
        }
    }

    /// `self + delta`: packed while it fits, `Decimal` past that, unservable past `Decimal`.
    pub(super) fn add(self, delta: Value) -> Value {
        if let (Value::Small(a), Value::Small(b)) = (self, delta) {
            if let Some(sum) = a.checked_add(b) {
                return Value::Small(sum);
            }
        }
        self.decimal()
            .zip(delta.decimal())
            .and_then(|(a, b)| a.checked_add(b))
            .map_or(Value::Unservable, Value::from_decimal)
    }
}

/// A value as stored in a map slot: 8 bytes at 4-byte alignment, so a slot of
/// `(Key, Packed)` is 24 bytes. Either a `Small` (`mant << 6 | scale`) or the wide tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Packed([u32; 2]);

impl Packed {
    /// The value lives in the side map (wide or unservable).
    pub(super) const WIDE: Packed = Packed([WIDE_TAG as u32, 0]);

    pub(super) fn small(s: Small) -> Packed {
        let bits = ((s.mant as u64) << SCALE_BITS) | u64::from(s.scale);
        Packed([bits as u32, (bits >> 32) as u32])
    }

    /// The packed value, or `None` for the wide tag.
    pub(super) fn get(self) -> Option<Small> {
        let bits = u64::from(self.0[0]) | (u64::from(self.0[1]) << 32);
        let scale = bits & WIDE_TAG;
        (scale != WIDE_TAG).then_some(Small {
            mant: (bits as i64) >> SCALE_BITS,
            scale: scale as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(v: Value) -> String {
        match v {
            Value::Unservable => "unservable".into(),
            v => v.decimal().map_or("bad".into(), Decimal::to_text),
        }
    }

    /// What `Decimal` alone would answer.
    fn reference(a: &str, b: &str) -> String {
        match Decimal::parse(a).zip(Decimal::parse(b)) {
            Some((a, b)) => a
                .checked_add(b)
                .map_or("unservable".into(), Decimal::to_text),
            None => "unservable".into(),
        }
    }

    #[test]
    fn packs_and_unpacks_the_extremes() {
        for (mant, scale) in [(0, 0), (1, 38), (-1, 0), (MANT_MAX, 3), (MANT_MIN, 38)] {
            let s = Small::new(mant, scale).expect("in range");
            assert_eq!(Packed::small(s).get(), Some(s));
        }
        assert_eq!(Packed::WIDE.get(), None);
        assert_eq!(Small::new(MANT_MAX + 1, 0), None);
        assert_eq!(Small::new(1, MAX_SCALE + 1), None);
        assert_eq!(std::mem::size_of::<Packed>(), 8);
        assert_eq!(std::mem::align_of::<Packed>(), 4);
    }

    #[test]
    fn falls_back_to_decimal_and_to_unservable() {
        let big = "100000000000000000000.000001";
        assert!(matches!(Value::parse(big), Value::Wide(_)));
        assert_eq!(text(Value::parse(big)), big);
        assert!(matches!(Value::parse("NaN"), Value::Unservable));
        assert!(matches!(Value::parse("1e5"), Value::Unservable));
        let near = Value::parse("144115188075855871"); // MANT_MAX
        assert!(matches!(near, Value::Small(_)));
        let over = near.add(Value::parse("1"));
        assert!(matches!(over, Value::Wide(_)));
        assert_eq!(text(over), "144115188075855872");
        // Back into range: packed again.
        assert!(matches!(over.add(Value::parse("-1")), Value::Small(_)));
        let max38 = Value::parse("99999999999999999999999999999999999999");
        assert!(matches!(max38.add(max38), Value::Unservable));
        assert_eq!(text(Value::parse("-0.050")), "-0.050");
        assert_eq!(text(Value::parse(".5")), "0.5");
        assert_eq!(
            text(Value::parse("0.00000000000000000000000000000000000001")),
            "0.00000000000000000000000000000000000001"
        );
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            // Typical quantities.
            (-100_000i64..100_000, 0u32..5).prop_map(|(m, s)| {
                let d = 10i64.pow(s);
                let sign = if m < 0 { "-" } else { "" };
                let (i, f) = (m.unsigned_abs() / d as u64, m.unsigned_abs() % d as u64);
                if s == 0 {
                    format!("{sign}{i}")
                } else {
                    format!("{sign}{i}.{f:0>w$}", w = s as usize)
                }
            }),
            // Around the packed range and past it, any scale.
            "-?[0-9]{1,22}(\\.[0-9]{0,40})?",
            "-?[0-9]{16,19}",
            Just("NaN".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Parsing, addition and text output agree with `Decimal` on everything.
        #[test]
        fn agrees_with_decimal(a in number(), b in number()) {
            let want_a = Decimal::parse(&a).map_or("unservable".into(), Decimal::to_text);
            prop_assert_eq!(text(Value::parse(&a)), want_a);
            prop_assert_eq!(text(Value::parse(&a).add(Value::parse(&b))), reference(&a, &b));
        }

        /// A stored value reads back as the same `Decimal`, text and binary.
        #[test]
        fn packed_round_trip(mant in MANT_MIN..=MANT_MAX, scale in 0u8..=MAX_SCALE) {
            let s = Small::new(mant, scale).expect("in range");
            let back = Packed::small(s).get().expect("small");
            prop_assert_eq!(back, s);
            let d = back.to_decimal().expect("decimal");
            prop_assert_eq!(Small::parse(&d.to_text()), Some(s));
        }
    }
}
