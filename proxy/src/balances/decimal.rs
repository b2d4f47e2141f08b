//! Exact decimals for balances: a fixed-point `i128` mantissa and PostgreSQL's display scale,
//! with PostgreSQL `numeric`'s addition rule (result scale = the larger scale), text output and
//! binary (`numeric_send`) encoding. No floats anywhere.
//!
//! Values that do not fit (more than 38 significant digits, NaN, ±Infinity) are refused at
//! parse or add time; the store then marks the key as not servable and reads go upstream.

/// An exact decimal: `mant / 10^scale`, displayed with exactly `scale` fractional digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    mant: i128,
    scale: u16,
}

/// The largest scale we represent (10^38 still fits in an i128).
const MAX_SCALE: u16 = 38;

fn pow10(n: u16) -> Option<i128> {
    10i128.checked_pow(u32::from(n))
}

impl Decimal {
    pub const ZERO: Decimal = Decimal { mant: 0, scale: 0 };

    /// Parses PostgreSQL's text output of a `numeric` (`-12.340`); `None` for NaN, Infinity,
    /// exponents or values past 38 digits.
    pub fn parse(s: &str) -> Option<Decimal> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let scale = u16::try_from(frac.len()).ok().filter(|&s| s <= MAX_SCALE)?;
        let mut mant: i128 = 0;
        for c in int.bytes().chain(frac.bytes()) {
            if !c.is_ascii_digit() {
                return None;
            }
            mant = mant.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
        }
        Some(Decimal {
            mant: if neg { -mant } else { mant },
            scale,
        })
    }

    /// `self + other` with PostgreSQL's scale rule; `None` on overflow.
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let a = self.mant.checked_mul(pow10(scale - self.scale)?)?;
        let b = other.mant.checked_mul(pow10(scale - other.scale)?)?;
        Some(Decimal {
            mant: a.checked_add(b)?,
            scale,
        })
    }

    /// `-self`, same display scale (as PostgreSQL's `numeric_uminus`).
    pub fn negated(self) -> Decimal {
        Decimal {
            mant: -self.mant,
            scale: self.scale,
        }
    }

    /// The display scale (digits after the decimal point).
    pub fn scale(self) -> u16 {
        self.scale
    }

    /// PostgreSQL's text output (`numeric_out`).
    pub fn to_text(self) -> String {
        let digits = self.mant.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        let mut out = String::with_capacity(digits.len() + scale + 3);
        if self.mant < 0 {
            out.push('-');
        }
        if scale == 0 {
            out.push_str(&digits);
            return out;
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
        out
    }

    /// PostgreSQL's binary output (`numeric_send`): ndigits, weight, sign, dscale, then base-10000
    /// digits with leading and trailing zero digits stripped, as PostgreSQL stores them.
    pub fn to_binary(self) -> Vec<u8> {
        let abs = self.mant.unsigned_abs();
        let scale_pow = 10u128.pow(u32::from(self.scale));
        let (mut int, frac) = (abs / scale_pow, abs % scale_pow);
        let mut int_groups = Vec::new();
        while int > 0 {
            int_groups.push((int % 10_000) as i16);
            int /= 10_000;
        }
        int_groups.reverse();
        let mut frac_digits = format!("{frac:0>width$}", width = usize::from(self.scale));
        if self.scale == 0 {
            frac_digits.clear();
        }
        while frac_digits.len() % 4 != 0 {
            frac_digits.push('0');
        }
        let frac_groups = frac_digits
            .as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')));
        let mut weight = int_groups.len() as i16 - 1;
        let mut groups: Vec<i16> = int_groups.into_iter().chain(frac_groups).collect();
        let lead = groups.iter().take_while(|&&g| g == 0).count();
        groups.drain(..lead);
        weight -= lead as i16;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let mut sign: u16 = if self.mant < 0 { 0x4000 } else { 0 };
        if groups.is_empty() {
            weight = 0;
            sign = 0;
        }
        let mut out = Vec::with_capacity(8 + 2 * groups.len());
        out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&self.scale.to_be_bytes());
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(input: &str, want: &str) {
        let d = Decimal::parse(input).unwrap_or_else(|| panic!("parse {input}"));
        assert_eq!(d.to_text(), want, "{input}");
    }

    #[test]
    fn text_round_trips() {
        for (input, want) in [
            ("0", "0"),
            ("0.00", "0.00"),
            ("-0.50", "-0.50"),
            ("12.340", "12.340"),
            ("-12", "-12"),
            (
                "100000000000000000000.000001",
                "100000000000000000000.000001",
            ),
            (".5", "0.5"),
        ] {
            check_text(input, want);
        }
    }

    #[test]
    fn addition_keeps_the_larger_scale() {
        let cases = [
            ("5", "-5.00", "0.00"),
            ("1.5", "2.25", "3.75"),
            ("-3", "1.000", "-2.000"),
            ("0.1", "-0.2", "-0.1"),
            ("99999999", "1", "100000000"),
        ];
        for (a, b, want) in cases {
            let sum = Decimal::parse(a)
                .and_then(|a| a.checked_add(Decimal::parse(b)?))
                .expect("sum");
            assert_eq!(sum.to_text(), want, "{a} + {b}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_represent() {
        for s in [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e5",
            "",
            "-",
            "1.2.3",
            "1234567890123456789012345678901234567890",
        ] {
            assert!(Decimal::parse(s).is_none(), "{s}");
        }
        let big = Decimal::parse("99999999999999999999999999999999999999").expect("38 digits");
        assert!(big.checked_add(big).is_none());
    }

    /// Expected bytes computed by hand from PostgreSQL's `numeric_send` rules (and checked
    /// against a real server in tests/balances.rs).
    #[test]
    fn binary_matches_numeric_send() {
        let cases: &[(&str, &[i16], i16, u16, u16)] = &[
            ("0", &[], 0, 0, 0),
            ("0.00", &[], 0, 0, 2),
            ("12345.6", &[1, 2345, 6000], 1, 0, 1),
            ("-0.0001", &[1], -1, 0x4000, 4),
            ("10000", &[1], 1, 0, 0),
            ("1.10", &[1, 1000], 0, 0, 2),
            ("-42", &[42], 0, 0x4000, 0),
        ];
        for &(s, digits, weight, sign, dscale) in cases {
            let mut want = Vec::new();
            want.extend_from_slice(&(digits.len() as i16).to_be_bytes());
            want.extend_from_slice(&weight.to_be_bytes());
            want.extend_from_slice(&sign.to_be_bytes());
            want.extend_from_slice(&dscale.to_be_bytes());
            for d in digits {
                want.extend_from_slice(&d.to_be_bytes());
            }
            assert_eq!(Decimal::parse(s).expect("parse").to_binary(), want, "{s}");
        }
    }
}
