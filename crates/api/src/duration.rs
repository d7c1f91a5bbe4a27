//! Go duration strings (`24h`, `90m`, `1h30m`, `1.5h`, `300ms`), as Eraser's config uses them.
//!
//! The grammar is Go's `time.ParseDuration`, so a file Eraser accepts is accepted here and a
//! file Eraser rejects is rejected here: units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, a unit
//! after every number, fractions allowed, a bare `0` allowed, and no days (`1d` is an error in
//! Go too). Values are kept to nanoseconds within Go's `int64` range. Durations in a config
//! are never negative here: Eraser would accept `-1h` and then requeue in a loop.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MINUTE: u128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MINUTE;
/// Go's `time.Duration` is an `int64` of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Units Go accepts, for messages.
pub const UNITS: &str = "ns, us, µs, ms, s, m, h";

/// Why a string is not a Go duration. Every variant carries the input as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Empty input.
    #[error("invalid duration {input:?}: empty")]
    Empty {
        /// The offending input.
        input: String,
    },
    /// A number without a unit, other than a bare `0`.
    #[error("invalid duration {input:?}: missing unit (one of {UNITS})")]
    MissingUnit {
        /// The offending input.
        input: String,
    },
    /// A unit Go does not know, such as `d` or `w`.
    #[error(
        "invalid duration {input:?}: unknown unit {unit:?} (one of {UNITS}; days are not accepted)"
    )]
    UnknownUnit {
        /// The offending input.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// Anything else that is not `[-+]?(number unit)+`.
    #[error("invalid duration {input:?}: expected numbers with units, e.g. 24h, 90m, 1h30m")]
    Malformed {
        /// The offending input.
        input: String,
    },
    /// More than Go's `int64` nanoseconds (about 292 years).
    #[error("invalid duration {input:?}: too large")]
    Overflow {
        /// The offending input.
        input: String,
    },
    /// A leading `-` with a non-zero value.
    #[error("invalid duration {input:?}: must not be negative")]
    Negative {
        /// The offending input.
        input: String,
    },
}

/// A non-negative duration read from, and written back as, a Go duration string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(Duration);

impl GoDuration {
    /// Zero.
    pub const ZERO: GoDuration = GoDuration(Duration::ZERO);

    /// Whole hours.
    pub const fn from_hours(hours: u64) -> GoDuration {
        GoDuration(Duration::from_secs(hours * 3600))
    }

    /// Whole minutes.
    pub const fn from_minutes(minutes: u64) -> GoDuration {
        GoDuration(Duration::from_secs(minutes * 60))
    }

    /// Whole seconds.
    pub const fn from_secs(seconds: u64) -> GoDuration {
        GoDuration(Duration::from_secs(seconds))
    }

    /// The duration.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// Whether it is zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<GoDuration> for Duration {
    fn from(value: GoDuration) -> Duration {
        value.0
    }
}

impl TryFrom<Duration> for GoDuration {
    type Error = DurationError;

    /// Fails above Go's range, so every value can be written back for Eraser to read.
    fn try_from(value: Duration) -> Result<GoDuration, DurationError> {
        if value.as_nanos() > MAX_NANOS {
            return Err(DurationError::Overflow {
                input: format!("{value:?}"),
            });
        }
        Ok(GoDuration(value))
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<GoDuration, DurationError> {
        let (negative, nanos) = parse_go_duration(input)?;
        if negative && nanos != 0 {
            return Err(DurationError::Negative {
                input: input.to_owned(),
            });
        }
        // parse_go_duration keeps nanos within MAX_NANOS, so this cannot truncate.
        let seconds = (nanos / NANOS_PER_SECOND) as u64;
        let subsec = (nanos % NANOS_PER_SECOND) as u32;
        Ok(GoDuration(Duration::new(seconds, subsec)))
    }
}

/// Parses Go's grammar into a sign and a magnitude in nanoseconds.
fn parse_go_duration(input: &str) -> Result<(bool, u128), DurationError> {
    let malformed = || DurationError::Malformed {
        input: input.to_owned(),
    };
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    if input.is_empty() {
        return Err(DurationError::Empty {
            input: input.to_owned(),
        });
    }
    let mut rest = input;
    let mut negative = false;
    if let Some(stripped) = rest.strip_prefix('-') {
        negative = true;
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    // Go special-cases a bare zero, the one number that needs no unit.
    if rest == "0" {
        return Ok((negative, 0));
    }
    if rest.is_empty() {
        return Err(malformed());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let integer_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (integer, after) = rest.split_at(integer_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after_dot) => {
                let fraction_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(fraction_len)
            }
            None => ("", after),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(malformed());
        }
        let unit_len = after
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(after.len(), |(index, _)| index);
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
            });
        }
        let unit_nanos = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => NANOS_PER_MICRO,
            "ms" => NANOS_PER_MILLI,
            "s" => NANOS_PER_SECOND,
            "m" => NANOS_PER_MINUTE,
            "h" => NANOS_PER_HOUR,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        let mut value: u128 = 0;
        for digit in integer.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(digit - b'0')))
                .filter(|v| *v <= MAX_NANOS)
                .ok_or_else(overflow)?;
        }
        let mut nanos = value.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // Like Go, the fraction is scaled by the unit and truncated to whole nanoseconds;
        // digits past nanosecond precision cannot change the result.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            if scale < 10 {
                break;
            }
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        if total > MAX_NANOS {
            return Err(overflow());
        }
        rest = after;
    }
    Ok((negative, total))
}

impl fmt::Display for GoDuration {
    /// The shortest Go duration string for the value: `24h`, `1h30m`, `90s`, `1.5s`, `300ms`,
    /// `0s`. Go's `time.ParseDuration` reads every output back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < NANOS_PER_SECOND {
            let (unit, per) = if nanos < NANOS_PER_MICRO {
                ("ns", 1)
            } else if nanos < NANOS_PER_MILLI {
                ("us", NANOS_PER_MICRO)
            } else {
                ("ms", NANOS_PER_MILLI)
            };
            write_decimal(f, nanos / per, nanos % per, per)?;
            return f.write_str(unit);
        }
        let hours = nanos / NANOS_PER_HOUR;
        let minutes = (nanos % NANOS_PER_HOUR) / NANOS_PER_MINUTE;
        let seconds_nanos = nanos % NANOS_PER_MINUTE;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if seconds_nanos > 0 {
            write_decimal(
                f,
                seconds_nanos / NANOS_PER_SECOND,
                seconds_nanos % NANOS_PER_SECOND,
                NANOS_PER_SECOND,
            )?;
            f.write_str("s")?;
        }
        Ok(())
    }
}

/// Writes `whole.fraction` with the fraction's trailing zeros dropped.
fn write_decimal(
    f: &mut fmt::Formatter<'_>,
    whole: u128,
    fraction: u128,
    per: u128,
) -> fmt::Result {
    write!(f, "{whole}")?;
    if fraction == 0 {
        return Ok(());
    }
    let width = per.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    write!(f, ".{}", digits.trim_end_matches('0'))
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> Result<u128, DurationError> {
        text.parse::<GoDuration>()
            .map(|d| d.as_duration().as_nanos())
    }

    #[test]
    fn parses_what_go_parses() {
        let cases: &[(&str, u128)] = &[
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0s", 0),
            ("24h", 24 * NANOS_PER_HOUR),
            ("90m", 90 * NANOS_PER_MINUTE),
            ("1h30m", 90 * NANOS_PER_MINUTE),
            ("1.5h", 90 * NANOS_PER_MINUTE),
            ("300ms", 300 * NANOS_PER_MILLI),
            ("1h0m0s", NANOS_PER_HOUR),
            (
                "2h45m30.5s",
                2 * NANOS_PER_HOUR + 45 * NANOS_PER_MINUTE + 30_500_000_000,
            ),
            (".5s", 500_000_000),
            ("1.s", NANOS_PER_SECOND),
            ("+5s", 5 * NANOS_PER_SECOND),
            ("10ns", 10),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("10μs", 10_000),
            ("1.000000001s", 1_000_000_001),
            ("1.0000000019s", 1_000_000_001),
            ("0.1ns", 0),
            ("1m1m", 2 * NANOS_PER_MINUTE),
            ("2562047h47m16.854775807s", MAX_NANOS),
        ];
        for (text, expected) in cases {
            assert_eq!(nanos(text), Ok(*expected), "{text}");
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        type Check = fn(&DurationError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, DurationError::Empty { .. })),
            ("1", |e| matches!(e, DurationError::MissingUnit { .. })),
            ("1h30", |e| matches!(e, DurationError::MissingUnit { .. })),
            (
                "1d",
                |e| matches!(e, DurationError::UnknownUnit { unit, .. } if unit == "d"),
            ),
            ("2w", |e| matches!(e, DurationError::UnknownUnit { .. })),
            ("1H", |e| matches!(e, DurationError::UnknownUnit { .. })),
            ("h", |e| matches!(e, DurationError::Malformed { .. })),
            (".h", |e| matches!(e, DurationError::Malformed { .. })),
            ("-", |e| matches!(e, DurationError::Malformed { .. })),
            ("1 h", |e| matches!(e, DurationError::UnknownUnit { .. })),
            (" 1h", |e| matches!(e, DurationError::Malformed { .. })),
            ("-1h", |e| matches!(e, DurationError::Negative { .. })),
            ("2562047h47m16.854775808s", |e| {
                matches!(e, DurationError::Overflow { .. })
            }),
            ("9999999999999999999999h", |e| {
                matches!(e, DurationError::Overflow { .. })
            }),
        ];
        for (text, expected) in cases {
            let error = nanos(text).expect_err(text);
            assert!(expected(&error), "{text}: {error:?}");
            assert!(error.to_string().contains(&format!("{text:?}")), "{error}");
        }
    }

    #[test]
    fn writes_the_shortest_form_that_reads_back() {
        let cases: &[(&str, &str)] = &[
            ("0s", "0s"),
            ("24h", "24h"),
            ("1h0m0s", "1h"),
            ("90m", "1h30m"),
            ("1.5h", "1h30m"),
            ("61s", "1m1s"),
            ("1h0m5s", "1h5s"),
            ("1.5s", "1.5s"),
            ("300ms", "300ms"),
            ("1.25ms", "1.25ms"),
            ("1500ns", "1.5us"),
            ("7ns", "7ns"),
            ("100000h", "100000h"),
        ];
        for (input, written) in cases {
            let duration: GoDuration = input.parse().expect(input);
            assert_eq!(duration.to_string(), *written, "{input}");
            assert_eq!(written.parse::<GoDuration>(), Ok(duration), "{written}");
        }
    }

    #[test]
    fn round_trips_through_serde() {
        let duration: GoDuration = serde_json::from_str("\"1h30m\"").expect("parses");
        assert_eq!(duration, GoDuration::from_minutes(90));
        assert_eq!(
            serde_json::to_string(&duration).expect("writes"),
            "\"1h30m\""
        );
        assert!(serde_json::from_str::<GoDuration>("\"1d\"").is_err());
    }
}
