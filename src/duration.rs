//! The one duration parser for every duration field: strict ISO 8601, Vault style, or seconds.
//!
//! Accepted: ISO 8601 durations made of weeks, days, hours, minutes and seconds (`PT12H`,
//! `P1D`, `P1DT6H`, `PT1.5H`); Vault-style strings (`12h`, `90m`, `1h30m`, `2d`); and whole
//! seconds (`3600`). Rejected, with a message that lists the accepted forms: trailing text,
//! signs, zero, sub-second precision, fractional days, and the calendar units `Y` and `M`
//! (before `T`), whose length depends on the start date.
//!
//! Why not the `iso8601` crate: it reads `P1DXYZ` as one day (trailing text ignored), `PT0.5H`
//! and `PT4294967296S` as zero, and `PT-1S` as zero. For a field that decides when a key
//! expires, silent misreads are worse than errors; jiff's ISO 8601 parser is strict and exact.

use std::fmt;
use std::str::FromStr;

use jiff::fmt::temporal::SpanParser;

/// The accepted forms, quoted in every error message.
pub const ACCEPTED_FORMS: &str = "an ISO 8601 duration such as PT12H, P1D or P1DT6H (weeks, \
days, hours, minutes, seconds), a Vault-style duration such as 12h, 90m or 1h30m, or a whole \
number of seconds";

/// The longest duration accepted: 100 years of days. Far above any Qlik tenant setting, and
/// well inside Vault's nanosecond TTL range.
pub const MAX_SECONDS: u64 = 36_500 * 86_400;

/// A positive whole number of seconds, parsed strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyDuration(u64);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid duration: {reason}; expected {ACCEPTED_FORMS}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl DurationError {
    fn new(input: &str, reason: &'static str) -> Self {
        // Keep messages short even for huge inputs.
        let input: String = input.chars().take(64).collect();
        Self { input, reason }
    }
}

impl KeyDuration {
    /// A duration of `secs` seconds, if within (0, [`MAX_SECONDS`]].
    pub fn from_secs(secs: u64) -> Option<Self> {
        (1..=MAX_SECONDS).contains(&secs).then_some(Self(secs))
    }

    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// As a std duration.
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }

    /// As a jiff signed duration (for timestamp arithmetic).
    pub fn as_signed(self) -> jiff::SignedDuration {
        // MAX_SECONDS fits in i64.
        jiff::SignedDuration::from_secs(self.0 as i64)
    }

    /// The canonical ISO 8601 form in one unit: `PnD`, `PTnH`, `PTnM` or `PTnS`. This is what
    /// is echoed back to users and sent to Qlik as `expiry`.
    pub fn to_iso(self) -> String {
        let s = self.0;
        if s.is_multiple_of(86_400) {
            format!("P{}D", s / 86_400)
        } else if s.is_multiple_of(3_600) {
            format!("PT{}H", s / 3_600)
        } else if s.is_multiple_of(60) {
            format!("PT{}M", s / 60)
        } else {
            format!("PT{s}S")
        }
    }

    /// Half of this duration, rounded down to whole seconds (at least one second).
    pub fn half(self) -> Self {
        Self((self.0 / 2).max(1))
    }

    /// Parses any accepted form.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        if input.is_empty() {
            return Err(DurationError::new(input, "it is empty"));
        }
        if input.len() > 64 {
            return Err(DurationError::new(input, "it is too long"));
        }
        let secs = match input.as_bytes()[0] {
            b'P' | b'p' => parse_iso(input)?,
            b'0'..=b'9' => parse_vault_style(input)?,
            b'+' | b'-' => return Err(DurationError::new(input, "signs are not allowed")),
            _ => return Err(DurationError::new(input, "it is not a recognised form")),
        };
        if secs == 0 {
            return Err(DurationError::new(input, "it must be longer than zero"));
        }
        Self::from_secs(secs)
            .ok_or_else(|| DurationError::new(input, "it is longer than 36500 days"))
    }
}

fn parse_iso(input: &str) -> Result<u64, DurationError> {
    let err = |reason| DurationError::new(input, reason);
    let span = SpanParser::new()
        .parse_span(input)
        .map_err(|_| err("it is not a valid ISO 8601 duration"))?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(err(
            "years and months (P1Y, P1M) are not allowed: their length depends on the start date",
        ));
    }
    if span.get_milliseconds() != 0 || span.get_microseconds() != 0 || span.get_nanoseconds() != 0 {
        return Err(err("it must be a whole number of seconds"));
    }
    let parts = [
        (i64::from(span.get_weeks()), 7 * 86_400),
        (i64::from(span.get_days()), 86_400),
        (i64::from(span.get_hours()), 3_600),
        (span.get_minutes(), 60),
        (span.get_seconds(), 1),
    ];
    let mut total: i64 = 0;
    for (value, unit) in parts {
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("it is too large"))?;
    }
    u64::try_from(total).map_err(|_| err("it must not be negative"))
}

/// `<int>d`, `<int>h`, `<int>m`, `<int>s` in that order, each at most once; or bare seconds.
fn parse_vault_style(input: &str) -> Result<u64, DurationError> {
    let err = |reason| DurationError::new(input, reason);
    if input.bytes().all(|b| b.is_ascii_digit()) {
        return input.parse::<u64>().map_err(|_| err("it is too large"));
    }
    const UNITS: [(u8, u64); 4] = [(b'd', 86_400), (b'h', 3_600), (b'm', 60), (b's', 1)];
    let bytes = input.as_bytes();
    let (mut pos, mut next_unit, mut total) = (0usize, 0usize, 0u64);
    while pos < bytes.len() {
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if start == pos {
            return Err(err("each unit needs a whole number in front of it"));
        }
        let number: u64 = input[start..pos]
            .parse()
            .map_err(|_| err("it is too large"))?;
        let Some(&unit) = bytes.get(pos) else {
            return Err(err(
                "a number after another unit needs its own unit (d, h, m, s)",
            ));
        };
        let Some(index) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            return Err(err(
                "units must be d, h, m, s, each at most once and in that order (fractions and ms are not allowed)",
            ));
        };
        let seconds = UNITS[next_unit + index].1;
        total = number
            .checked_mul(seconds)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("it is too large"))?;
        next_unit += index + 1;
        pos += 1;
    }
    Ok(total)
}

impl FromStr for KeyDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for KeyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso())
    }
}

impl serde::Serialize for KeyDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_iso())
    }
}

impl<'de> serde::Deserialize<'de> for KeyDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: &str) -> u64 {
        KeyDuration::parse(s)
            .map(KeyDuration::as_secs)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(secs("PT12H"), 12 * 3600);
        assert_eq!(secs("P1D"), 86_400);
        assert_eq!(secs("P1DT6H"), 30 * 3600);
        assert_eq!(secs("P2W"), 14 * 86_400);
        assert_eq!(secs("PT1.5H"), 5400);
        assert_eq!(secs("PT90M"), 5400);
        assert_eq!(secs("PT45S"), 45);
        assert_eq!(secs("12h"), 12 * 3600);
        assert_eq!(secs("90m"), 5400);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("2d"), 2 * 86_400);
        assert_eq!(secs("1d2h3m4s"), 93_784);
        assert_eq!(secs("3600"), 3600);
    }

    #[test]
    fn rejected_forms_name_the_accepted_ones() {
        for bad in [
            "",
            "P1DXYZ",
            "PT0.5S",
            "PT1H ",
            " PT1H",
            "PT",
            "P",
            "P1DT",
            "-P1D",
            "+P1D",
            "PT-1S",
            "P0D",
            "PT0S",
            "0",
            "0h",
            "P1M",
            "P1Y",
            "P1Y2D",
            "P1.5D",
            "1.5h",
            "500ms",
            "1m1h",
            "1h1h",
            "h",
            "1x",
            "12 h",
            "P99999999D",
            "99999999999999999999",
            "PT1H30",
            "1h30",
            "abc",
            "P1W\u{0}",
        ] {
            let err = KeyDuration::parse(bad).expect_err(bad);
            let msg = err.to_string();
            assert!(
                msg.contains("ISO 8601 duration such as PT12H"),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn canonical_iso_uses_one_unit() {
        let iso = |s| KeyDuration::from_secs(s).expect("in range").to_iso();
        assert_eq!(iso(86_400), "P1D");
        assert_eq!(iso(3 * 86_400), "P3D");
        assert_eq!(iso(25 * 3600), "PT25H");
        assert_eq!(iso(5400), "PT90M");
        assert_eq!(iso(61), "PT61S");
    }

    proptest! {
        #[test]
        fn canonical_iso_round_trips(s in 1u64..=MAX_SECONDS) {
            let d = KeyDuration::from_secs(s).expect("in range");
            prop_assert_eq!(KeyDuration::parse(&d.to_iso()), Ok(d));
            prop_assert_eq!(KeyDuration::parse(&s.to_string()), Ok(d));
        }

        #[test]
        fn vault_style_adds_up(d in 0u64..400, h in 0u64..48, m in 0u64..120, s in 0u64..120) {
            prop_assume!(d + h + m + s > 0);
            let mut text = String::new();
            for (n, u) in [(d, 'd'), (h, 'h'), (m, 'm'), (s, 's')] {
                if n > 0 { text.push_str(&format!("{n}{u}")); }
            }
            let expected = d * 86_400 + h * 3600 + m * 60 + s;
            prop_assert_eq!(KeyDuration::parse(&text).map(KeyDuration::as_secs), Ok(expected));
        }

        #[test]
        fn iso_components_add_up(d in 0u64..400, h in 0u64..48, m in 0u64..120, s in 0u64..120) {
            prop_assume!(d + h + m + s > 0);
            let mut text = String::from("P");
            if d > 0 { text.push_str(&format!("{d}D")); }
            if h + m + s > 0 {
                text.push('T');
                for (n, u) in [(h, 'H'), (m, 'M'), (s, 'S')] {
                    if n > 0 { text.push_str(&format!("{n}{u}")); }
                }
            }
            let expected = d * 86_400 + h * 3600 + m * 60 + s;
            prop_assert_eq!(KeyDuration::parse(&text).map(KeyDuration::as_secs), Ok(expected));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,80}") {
            let _ = KeyDuration::parse(&text);
        }

        #[test]
        fn trailing_text_is_always_rejected(s in 1u64..1_000_000, tail in "[A-Za-z !.,]{1,5}") {
            let iso = KeyDuration::from_secs(s).expect("in range").to_iso();
            let input = format!("{iso}{tail}");
            prop_assert!(KeyDuration::parse(&input).is_err(), "{}", input);
        }
    }
}
