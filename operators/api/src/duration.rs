//! Durations written the way Kubernetes users already write them: `30s`, `10m`, `1h30m`.
//!
//! [`GoDuration`] keeps the text exactly as the user wrote it, so an object read from the
//! API server serializes back unchanged (GitOps tools see no drift), and parses it on
//! demand. The API server checks the syntax with a CEL rule that accepts exactly the
//! language [`GoDuration::to_std`] parses.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Longest duration string the API server accepts (keeps CEL cost estimates small).
pub const MAX_LEN: usize = 32;

/// The regular expression (RE2 and Rust `regex` compatible) that a duration matches:
/// `0`, or one or more `<number><unit>` parts, units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
pub const PATTERN: &str = r"^(0|([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+)$";

/// The CEL rule the API server evaluates on every duration field.
pub const CEL_RULE: &str = r"self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+)$')";

/// The message a person sees when [`CEL_RULE`] fails.
pub const CEL_MESSAGE: &str =
    "must be a duration such as 30s, 10m or 1h30m (units: ns, us, ms, s, m, h)";

/// A duration in Go's `time.ParseDuration` syntax, as Kubernetes writes durations:
/// `90s`, `10m`, `1h30m`, `1.5h`. Negative durations are not accepted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(String);

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// Something other than digits, a dot and a unit.
    #[error("invalid duration {0:?}: expected something like 30s, 10m or 1h30m")]
    Syntax(String),
    /// A number without a unit (`30` instead of `30s`).
    #[error("duration {0:?} has a number without a unit (ns, us, ms, s, m or h)")]
    MissingUnit(String),
    /// Longer than the type can hold.
    #[error("duration {0:?} is too long")]
    Overflow(String),
}

impl GoDuration {
    /// A duration from a string already known to be valid (a constant in code); use
    /// [`str::parse`] for anything that came from a user.
    pub fn from_static(text: &'static str) -> Self {
        Self(text.to_owned())
    }

    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The duration as a [`std::time::Duration`].
    pub fn to_std(&self) -> Result<Duration, DurationError> {
        parse(&self.0)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<GoDuration> for Duration {
    type Error = DurationError;

    fn try_from(value: GoDuration) -> Result<Self, Self::Error> {
        value.to_std()
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": MAX_LEN,
            "x-kubernetes-validations": [{ "rule": CEL_RULE, "message": CEL_MESSAGE }],
        })
    }
}

const NANOS_PER_UNIT: [(&str, u128); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses the language of [`PATTERN`].
fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let syntax = || DurationError::Syntax(text.to_owned());
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return Err(syntax());
        }
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                if frac_len == 0 {
                    return Err(syntax());
                }
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        // Longest unit first, so `ms` is not read as `m` followed by `s`.
        let (unit, unit_nanos) = NANOS_PER_UNIT
            .iter()
            .filter(|(unit, _)| after_number.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())
            .ok_or_else(|| {
                if after_number.is_empty() {
                    DurationError::MissingUnit(text.to_owned())
                } else {
                    syntax()
                }
            })?;
        let overflow = || DurationError::Overflow(text.to_owned());
        let whole: u128 = int_part.parse().map_err(|_| overflow())?;
        let mut nanos = whole.checked_mul(*unit_nanos).ok_or_else(overflow)?;
        if !frac_part.is_empty() {
            // Go keeps at most nanosecond precision; so do we.
            let digits = frac_part.len().min(18);
            let frac: u128 = frac_part[..digits].parse().map_err(|_| overflow())?;
            let scale = 10u128.pow(u32::try_from(digits).map_err(|_| overflow())?);
            nanos = nanos
                .checked_add(frac * unit_nanos / scale)
                .ok_or_else(overflow)?;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
        rest = &after_number[unit.len()..];
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    let subsec = u32::try_from(total_nanos % 1_000_000_000)
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    Ok(Duration::new(secs, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> f64 {
        text.parse::<GoDuration>()
            .unwrap()
            .to_std()
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn parses_what_people_write() {
        assert_eq!(secs("30s"), 30.0);
        assert_eq!(secs("10m"), 600.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs("1.5h"), 5400.0);
        assert_eq!(secs("250ms"), 0.25);
        assert_eq!(secs("2m3.5s"), 123.5);
        assert_eq!(secs("100us"), 0.0001);
        assert_eq!(secs("100µs"), 0.0001);
        assert_eq!(secs("0"), 0.0);
        assert_eq!(secs("0s"), 0.0);
        assert_eq!(secs("1h1h"), 7200.0);
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in [
            "", "30", "s", "-5s", "+5s", "1d", "5 m", "1.s", ".5s", "1h30", "10M", "ms",
        ] {
            assert!(
                bad.parse::<GoDuration>().is_err(),
                "{bad:?} should not parse"
            );
        }
        assert!(matches!(
            "30".parse::<GoDuration>(),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            "99999999999999999999999h".parse::<GoDuration>(),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn keeps_the_text_as_written() {
        let d: GoDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        assert_eq!(d.to_string(), "1h30m");
    }

    #[test]
    fn cel_rule_uses_the_same_pattern() {
        assert!(CEL_RULE.contains(PATTERN));
    }
}
