//! `timestamptz` values of the mirrored `updated_at` column: read from PostgreSQL's ISO text
//! (any UTC offset), kept as PostgreSQL's own binary form (microseconds since 2000-01-01
//! 00:00 UTC), and written back as `timestamptz_send` bytes or as the text PostgreSQL would
//! print for a session whose `TimeZone` is UTC and whose `DateStyle` is ISO. Pure.
//!
//! Text for any other session setting (another zone, another `DateStyle`) is not produced
//! here: the caller then leaves the statement to PostgreSQL. Years outside 1–9999, BC dates
//! and ±infinity are not kept (they read as [`UNSERVABLE`]).

/// A NULL `updated_at`.
pub const NULL: i64 = i64::MIN;
/// A value this module does not reproduce (±infinity, BC, years past 9999, unparsable).
pub const UNSERVABLE: i64 = i64::MAX;

const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i64 = 10_957;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn digits(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses `timestamptz` text in the ISO `DateStyle` (`2026-12-05 04:21:17.123456+00`, offsets
/// `±HH`, `±HH:MM` or `±HH:MM:SS`). [`UNSERVABLE`] for anything else.
pub fn parse_iso(text: &str) -> i64 {
    parse(text).unwrap_or(UNSERVABLE)
}

fn parse(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once(' ')?;
    let mut d = date.split('-');
    let (y, m, day) = (digits(d.next()?)?, digits(d.next()?)?, digits(d.next()?)?);
    if d.next().is_some() || date.len() != 10 || !(1..=9999).contains(&y) {
        return None;
    }
    let at = rest.find(['+', '-'])?;
    let (time, offset) = rest.split_at(at);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, mi, s) = (digits(t.next()?)?, digits(t.next()?)?, digits(t.next()?)?);
    if t.next().is_some()
        || hms.len() != 8
        || frac.len() > 6
        || (!frac.is_empty() && digits(frac).is_none())
    {
        return None;
    }
    let micros = format!("{frac:0<6}").parse::<i64>().ok()?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut o = offset[1..].split(':');
    let oh = digits(o.next()?)?;
    let om = o.next().map_or(Some(0), digits)?;
    let os = o.next().map_or(Some(0), digits)?;
    if o.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || h > 23
        || mi > 59
        || s > 59
    {
        return None;
    }
    let days = days_from_civil(y, m, day);
    if civil_from_days(days) != (y, m, day) {
        return None;
    }
    let local =
        (days - PG_EPOCH_DAYS) * USECS_PER_DAY + ((h * 60 + mi) * 60 + s) * 1_000_000 + micros;
    Some(local - sign * ((oh * 60 + om) * 60 + os) * 1_000_000)
}

/// `timestamptz_send`: the value as 8 big-endian bytes.
pub fn to_binary(us: i64) -> [u8; 8] {
    us.to_be_bytes()
}

/// `timestamptz_out` for `TimeZone` UTC and `DateStyle` ISO: seconds' fraction without
/// trailing zeros, offset `+00`. `None` for [`NULL`] and [`UNSERVABLE`].
pub fn to_text_utc(us: i64) -> Option<String> {
    let mut buf = [0u8; 32];
    let n = write_text_utc(us, &mut buf)?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// [`to_text_utc`] into `out` (no allocation: the cache's hot path); returns the length.
pub fn write_text_utc(us: i64, out: &mut [u8; 32]) -> Option<usize> {
    if us == NULL || us == UNSERVABLE {
        return None;
    }
    let days = us.div_euclid(USECS_PER_DAY);
    let in_day = us.rem_euclid(USECS_PER_DAY);
    let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
    if !(1..=9999).contains(&y) {
        return None;
    }
    let secs = in_day / 1_000_000;
    let mut micros = in_day % 1_000_000;
    fn put(out: &mut [u8; 32], at: usize, mut v: i64, width: usize) {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    out[..19].copy_from_slice(b"0000-00-00 00:00:00");
    put(out, 0, y, 4);
    put(out, 5, m, 2);
    put(out, 8, d, 2);
    put(out, 11, secs / 3600, 2);
    put(out, 14, secs / 60 % 60, 2);
    put(out, 17, secs % 60, 2);
    let mut n = 19;
    if micros != 0 {
        let mut digits = 6;
        while micros % 10 == 0 {
            micros /= 10;
            digits -= 1;
        }
        out[n] = b'.';
        put(out, n + 1, micros, digits);
        n += 1 + digits;
    }
    out[n..n + 3].copy_from_slice(b"+00");
    Some(n + 3)
}

/// How a session's `timestamptz` text looks, from the ParameterStatus values it was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeStyle {
    timezone: Option<String>,
    datestyle: Option<String>,
}

/// `TimeZone` names whose offset is zero at every instant (as PostgreSQL reports them).
const UTC_ZONES: &[&str] = &[
    "UTC",
    "Etc/UTC",
    "UCT",
    "Etc/UCT",
    "Universal",
    "Etc/Universal",
    "Zulu",
    "Etc/Zulu",
    "GMT",
    "Etc/GMT",
    "GMT0",
    "Etc/GMT0",
    "GMT+0",
    "GMT-0",
    "Etc/GMT+0",
    "Etc/GMT-0",
    "Greenwich",
    "Etc/Greenwich",
];

impl TimeStyle {
    /// From the ParameterStatus values sent at login.
    pub fn from_reported<'a>(reported: impl IntoIterator<Item = (&'a str, &'a str)>) -> TimeStyle {
        let mut s = TimeStyle::default();
        for (name, value) in reported {
            s.note(name, value);
        }
        s
    }

    /// A ParameterStatus the client was sent.
    pub fn note(&mut self, name: &str, value: &str) {
        match name {
            "TimeZone" => self.timezone = Some(value.to_string()),
            "DateStyle" => self.datestyle = Some(value.to_string()),
            _ => {}
        }
    }

    /// A ParameterStatus message (`S` frame, header included) the client was sent.
    pub fn note_frame(&mut self, frame: &[u8]) {
        let mut fields = frame.get(5..).unwrap_or_default().split(|&b| b == 0);
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
            return;
        };
        if let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
            self.note(name, value);
        }
    }

    /// Whether [`to_text_utc`] is what PostgreSQL prints for this session.
    pub fn utc_iso(&self) -> bool {
        self.timezone
            .as_deref()
            .is_some_and(|z| UTC_ZONES.contains(&z))
            && self
                .datestyle
                .as_deref()
                .is_some_and(|d| d == "ISO" || d.starts_with("ISO,"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_postgres_iso_text() {
        for (text, us, utc) in [
            ("2000-01-01 00:00:00+00", 0, "2000-01-01 00:00:00+00"),
            (
                "1999-12-31 23:59:59.999999+00",
                -1,
                "1999-12-31 23:59:59.999999+00",
            ),
            (
                "2026-12-05 05:21:17.5+01",
                849_759_677_500_000,
                "2026-12-05 04:21:17.5+00",
            ),
            (
                "2026-12-04 22:51:17.12-05:30",
                849_759_677_120_000,
                "2026-12-05 04:21:17.12+00",
            ),
            (
                "2024-02-29 12:00:00+00:00:10",
                762_523_190_000_000,
                "2024-02-29 11:59:50+00",
            ),
            (
                "0001-01-01 00:00:00+00",
                -63_082_281_600_000_000,
                "0001-01-01 00:00:00+00",
            ),
        ] {
            assert_eq!(parse_iso(text), us, "{text}");
            assert_eq!(to_text_utc(us).as_deref(), Some(utc), "{text}");
            assert_eq!(parse_iso(utc), us, "{utc}");
        }
        assert_eq!(to_binary(1), [0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        for text in [
            "infinity",
            "-infinity",
            "0001-01-01 00:00:00+00 BC",
            "10000-01-01 00:00:00+00",
            "2023-02-29 00:00:00+00",
            "2023-13-01 00:00:00+00",
            "2023-01-01 24:00:00+00",
            "2023-01-01 00:00:00.1234567+00",
            "2023-01-01 00:00:00",
            "Sat Dec 05 04:21:17 2026 UTC",
            "12/05/2026 04:21:17 UTC",
        ] {
            assert_eq!(parse_iso(text), UNSERVABLE, "{text}");
        }
        assert_eq!(to_text_utc(NULL), None);
        assert_eq!(to_text_utc(UNSERVABLE), None);
        assert_eq!(to_text_utc(-63_082_281_600_000_001), None, "year 0");
    }

    #[test]
    fn text_only_for_utc_sessions_in_iso_style() {
        let s = TimeStyle::from_reported([("TimeZone", "Etc/UTC"), ("DateStyle", "ISO, MDY")]);
        assert!(s.utc_iso());
        let mut t = s.clone();
        t.note_frame(b"S\0\0\0\x1cTimeZone\0Europe/Paris\0");
        assert!(!t.utc_iso());
        t.note("TimeZone", "UTC");
        assert!(t.utc_iso());
        t.note("DateStyle", "Postgres, MDY");
        assert!(!t.utc_iso());
        assert!(
            !TimeStyle::default().utc_iso(),
            "unknown: PostgreSQL answers"
        );
        assert!(!TimeStyle::from_reported([("TimeZone", "UTC")]).utc_iso());
    }
}
