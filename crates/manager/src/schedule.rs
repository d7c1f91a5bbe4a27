//! When the next scheduled run starts: a pure function of the config, the start of the
//! previous run and the manager's own start.
//!
//! Eraser waits `repeatInterval` after the previous job *finished*, so runs drift by their
//! own length, and every restart starts a run at once (eraser#568, #1055, #1169). Here the
//! interval is measured on the wall clock from the previous run's *start*, which a restarted
//! manager reads back (from its state ConfigMap, or the newest scheduled ImageJob), so a
//! restart neither starts an extra run nor resets the timer. `beginImmediately` only applies
//! when no run was ever recorded. A cron schedule, when set, replaces the interval.

use image_cleaner_api::config::SchedulingConfig;
use jiff::{SignedDuration, Timestamp};

/// What the schedule depends on.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// `manager.scheduling`.
    pub scheduling: &'a SchedulingConfig,
    /// `components.collector.enabled`: without it there are no scheduled runs (Eraser's rule).
    pub enabled: bool,
    /// When the previous scheduled run started, if any is known.
    pub last_start: Option<Timestamp>,
    /// When this manager started.
    pub manager_start: Timestamp,
}

/// When the next scheduled run is due (it may be in the past: then it is due now), or
/// `None` when scheduled runs are off or a cron schedule never fires again.
pub fn next_run(inputs: Inputs<'_>) -> Option<Timestamp> {
    if !inputs.enabled {
        return None;
    }
    let scheduling = inputs.scheduling;
    if let Some(cron) = &scheduling.schedule {
        return match inputs.last_start {
            Some(last) => cron.next_after(last),
            None if scheduling.begin_immediately => Some(inputs.manager_start),
            None => cron.next_after(inputs.manager_start),
        };
    }
    let interval = SignedDuration::try_from(scheduling.repeat_interval.as_duration())
        .unwrap_or(SignedDuration::MAX);
    match inputs.last_start {
        Some(last) => Some(last.checked_add(interval).unwrap_or(Timestamp::MAX)),
        None if scheduling.begin_immediately => Some(inputs.manager_start),
        None => Some(
            inputs
                .manager_start
                .checked_add(interval)
                .unwrap_or(Timestamp::MAX),
        ),
    }
}

/// Whether a run is due at `now`.
pub fn is_due(next: Option<Timestamp>, now: Timestamp) -> bool {
    next.is_some_and(|next| next <= now)
}

#[cfg(test)]
mod tests {
    use image_cleaner_api::GoDuration;

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn scheduling(interval_hours: u64, begin: bool, cron: Option<&str>) -> SchedulingConfig {
        SchedulingConfig {
            repeat_interval: GoDuration::from_hours(interval_hours),
            begin_immediately: begin,
            schedule: cron.map(|c| c.parse().expect("cron")),
            min_unused_setting: None,
        }
    }

    #[test]
    fn table() {
        let start = at("2025-03-01T10:00:00Z");
        type Case<'a> = (
            &'a str,
            SchedulingConfig,
            bool,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "first run at once",
                scheduling(24, true, None),
                true,
                None,
                Some("2025-03-01T10:00:00Z"),
            ),
            (
                "first run after an interval",
                scheduling(24, false, None),
                true,
                None,
                Some("2025-03-02T10:00:00Z"),
            ),
            (
                "from the previous START, not its end",
                scheduling(24, true, None),
                true,
                Some("2025-03-01T08:00:00Z"),
                Some("2025-03-02T08:00:00Z"),
            ),
            (
                "a restart does not run again before the interval",
                scheduling(1, true, None),
                true,
                Some("2025-03-01T09:30:00Z"),
                Some("2025-03-01T10:30:00Z"),
            ),
            (
                "a run missed while down is due at once",
                scheduling(1, false, None),
                true,
                Some("2025-02-28T00:00:00Z"),
                Some("2025-02-28T01:00:00Z"),
            ),
            (
                "collector off: never",
                scheduling(24, true, None),
                false,
                None,
                None,
            ),
            (
                "cron, first run at once",
                scheduling(24, true, Some("0 3 * * *")),
                true,
                None,
                Some("2025-03-01T10:00:00Z"),
            ),
            (
                "cron, first run at the next firing",
                scheduling(24, false, Some("0 3 * * *")),
                true,
                None,
                Some("2025-03-02T03:00:00Z"),
            ),
            (
                "cron after the previous start",
                scheduling(24, true, Some("*/15 * * * *")),
                true,
                Some("2025-03-01T09:50:00Z"),
                Some("2025-03-01T10:00:00Z"),
            ),
        ];
        for (name, scheduling, enabled, last, expected) in cases {
            let next = next_run(Inputs {
                scheduling: &scheduling,
                enabled,
                last_start: last.map(at),
                manager_start: start,
            });
            assert_eq!(next, expected.map(at), "{name}");
        }
    }

    #[test]
    fn due() {
        let now = at("2025-03-01T10:00:00Z");
        assert!(is_due(Some(now), now));
        assert!(is_due(Some(at("2025-03-01T09:00:00Z")), now));
        assert!(!is_due(Some(at("2025-03-01T10:00:01Z")), now));
        assert!(!is_due(None, now));
    }
}
