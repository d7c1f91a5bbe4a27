//! `manager.scheduling.schedule`: a cron schedule beside Eraser's repeat interval.
//!
//! Eraser starts the next run `repeatInterval` after the previous one finished, so runs drift
//! and a restart resets the timer (eraser#568, #1055). A cron schedule pins runs to the wall
//! clock instead, in UTC, with the five fields of Kubernetes CronJobs and crontab
//! (`minute hour day-of-month month day-of-week`) or `@hourly`, `@daily`, `@weekly`,
//! `@monthly`, `@yearly`.

use std::fmt;
use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Serialize, Serializer};

/// Why a string is not a cron schedule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron schedule {input:?}: {reason}")]
pub struct CronError {
    /// The schedule as written.
    pub input: String,
    /// The parser's explanation.
    pub reason: String,
}

/// A parsed cron schedule, evaluated in UTC.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    text: String,
    cron: Cron,
}

impl CronSchedule {
    /// The schedule as written, without surrounding whitespace.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` that the schedule fires, or `None` if it never
    /// fires again (such as the 30th of February).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(TimeZone::UTC);
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|next| next.timestamp())
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &CronSchedule) -> bool {
        self.text == other.text
    }
}

impl Eq for CronSchedule {}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for CronSchedule {
    type Err = CronError;

    fn from_str(input: &str) -> Result<CronSchedule, CronError> {
        let text = input.trim();
        // Five fields as in crontab and CronJobs: a seconds field would allow a run every
        // second, and a year field is not cron as operators know it.
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        match parser.parse(text) {
            Ok(cron) => Ok(CronSchedule {
                text: text.to_owned(),
                cron,
            }),
            Err(error) => Err(CronError {
                input: input.to_owned(),
                reason: error.to_string(),
            }),
        }
    }
}

impl Serialize for CronSchedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn fires_on_the_wall_clock_in_utc() {
        let cases = [
            ("0 3 * * *", "2025-01-01T10:00:00Z", "2025-01-02T03:00:00Z"),
            ("0 3 * * *", "2025-01-01T02:59:00Z", "2025-01-01T03:00:00Z"),
            ("0 3 * * *", "2025-01-01T03:00:00Z", "2025-01-02T03:00:00Z"),
            (
                "*/15 * * * *",
                "2025-01-01T10:07:30Z",
                "2025-01-01T10:15:00Z",
            ),
            (
                "0 2 * * SUN",
                "2025-01-01T00:00:00Z",
                "2025-01-05T02:00:00Z",
            ),
            ("@daily", "2025-01-01T10:00:00Z", "2025-01-02T00:00:00Z"),
            ("@weekly", "2025-01-01T10:00:00Z", "2025-01-05T00:00:00Z"),
        ];
        for (schedule, after, next) in cases {
            let cron: CronSchedule = schedule.parse().expect(schedule);
            assert_eq!(
                cron.next_after(at(after)),
                Some(at(next)),
                "{schedule} after {after}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_five_field_cron() {
        for text in [
            "",
            "* * * *",
            "0 0 3 * * *",
            "0 0 3 * * * 2025",
            "61 * * * *",
            "daily",
            "@often",
        ] {
            let error = text.parse::<CronSchedule>().expect_err(text);
            assert_eq!(error.input, text);
        }
    }
}
