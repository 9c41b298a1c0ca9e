//! Silences and routing: which silences are active when, which alerts they match, and which channels an
//! alert goes to. A silenced alert still changes state and goes into the history; it notifies nobody.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugwatch_model::alerts::{Channel, Schedule, Silence, SilenceSpec};

use crate::rules::{FieldError, Pattern, check_labels, check_pattern};

/// The longest a silence may last (a maintenance window repeats within it).
pub const MAX_SILENCE: Duration = Duration::from_secs(366 * 24 * 3600);

/// Checks a silence as written, at `now`.
pub fn validate(spec: &SilenceSpec, now: SystemTime) -> Result<(), FieldError> {
    if let Some(pattern) = &spec.plugins {
        check_pattern("plugins", pattern)?;
    }
    check_labels("labels", &spec.labels)?;
    if spec.rule_id.is_none() && spec.plugins.is_none() && spec.labels.is_empty() {
        return Err(FieldError::new("rule_id", "a silence must match something: set rule_id, plugins or labels"));
    }
    if spec.ends_at <= spec.starts_at {
        return Err(FieldError::new("ends_at", "must be after starts_at"));
    }
    if spec.ends_at <= now {
        return Err(FieldError::new("ends_at", "is in the past: the silence would never apply"));
    }
    if spec.ends_at.duration_since(spec.starts_at).unwrap_or_default() > MAX_SILENCE {
        return Err(FieldError::new("ends_at", "a silence lasts at most 366 days"));
    }
    if spec.comment.trim().is_empty() || spec.comment.len() > 1000 {
        return Err(FieldError::new("comment", "say why (1 to 1000 characters): the next operator will ask"));
    }
    if let Some(schedule) = &spec.schedule {
        if schedule.weekdays == 0 || schedule.weekdays > 0x7f {
            return Err(FieldError::new("schedule.weekdays", "name at least one day of the week"));
        }
        if schedule.start_minute >= 24 * 60 {
            return Err(FieldError::new("schedule.start", "must be a time of day, 00:00 to 23:59 (UTC)"));
        }
        if schedule.duration_minutes == 0 || schedule.duration_minutes > 7 * 24 * 60 {
            return Err(FieldError::new("schedule.duration_minutes", "must be 1 minute to 7 days"));
        }
    }
    Ok(())
}

/// Whether a silence applies at `now`.
pub fn active(silence: &Silence, now: SystemTime) -> bool {
    let spec = &silence.spec;
    let ends = silence.expired_at.map_or(spec.ends_at, |e| e.min(spec.ends_at));
    if now < spec.starts_at || now >= ends {
        return false;
    }
    spec.schedule.as_ref().is_none_or(|s| in_schedule(s, now))
}

/// Whether `now` falls in one of a weekly schedule's occurrences (which may run past midnight or the end
/// of the week).
pub fn in_schedule(schedule: &Schedule, now: SystemTime) -> bool {
    const WEEK: i64 = 7 * 24 * 60;
    let minutes = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64 / 60);
    // 1970-01-01 was a Thursday: day 3 counting from Monday.
    let minute_of_week = (minutes + 3 * 24 * 60).rem_euclid(WEEK);
    (0..7).filter(|day| schedule.weekdays & (1 << day) != 0).any(|day| {
        let start = day * 24 * 60 + i64::from(schedule.start_minute);
        let since = (minute_of_week - start).rem_euclid(WEEK);
        since < i64::from(schedule.duration_minutes)
    })
}

/// Whether a silence matches an alert of `rule_id` on `plugin` (`None`: the host) with `labels`.
pub fn matches(spec: &SilenceSpec, rule_id: i64, plugin: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
    spec.rule_id.is_none_or(|id| id == rule_id)
        && spec.plugins.as_deref().is_none_or(|p| plugin.is_some_and(|name| Pattern::new(p).matches(name)))
        && labels_match(&spec.labels, labels)
}

/// Whether every wanted label is on the alert with its value.
pub fn labels_match(wanted: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a channel takes an alert of `rule_id` with `labels` (which include `severity`).
pub fn routed(
    channel: &Channel,
    rule_id: i64,
    severity: plugwatch_model::alerts::Severity,
    labels: &BTreeMap<String, String>,
) -> bool {
    let spec = &channel.spec;
    spec.enabled
        && severity >= spec.min_severity
        && (spec.rule_ids.is_empty() || spec.rule_ids.contains(&rule_id))
        && labels_match(&spec.labels, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(day: u64, hour: u64, minute: u64) -> SystemTime {
        // 2026-11-30 is a Monday.
        let monday = 1_795_996_800;
        UNIX_EPOCH + Duration::from_secs(monday + day * 86_400 + hour * 3600 + minute * 60)
    }

    #[test]
    fn a_weekly_window_repeats_and_crosses_midnight() {
        // Saturdays 23:00 for 3 hours.
        let schedule = Schedule { weekdays: 1 << 5, start_minute: 23 * 60, duration_minutes: 180 };
        assert!(!in_schedule(&schedule, utc(5, 22, 59)));
        assert!(in_schedule(&schedule, utc(5, 23, 0)));
        assert!(in_schedule(&schedule, utc(6, 1, 59)));
        assert!(!in_schedule(&schedule, utc(6, 2, 0)));
        assert!(in_schedule(&schedule, utc(12, 23, 30)), "a week later");
        assert!(!in_schedule(&schedule, utc(8, 23, 30)), "not on Tuesday");
        // Sunday 23:00 for 2 hours runs into Monday.
        let sunday = Schedule { weekdays: 1 << 6, start_minute: 23 * 60, duration_minutes: 120 };
        assert!(in_schedule(&sunday, utc(7, 0, 30)));
    }

    #[test]
    fn silences_match_rule_plugin_and_labels() {
        let labels: BTreeMap<String, String> = [("team".to_owned(), "payments".to_owned())].into();
        let spec = SilenceSpec {
            rule_id: Some(3),
            plugins: Some("promo-*".into()),
            labels: labels.clone(),
            starts_at: utc(0, 0, 0),
            ends_at: utc(1, 0, 0),
            schedule: None,
            comment: "deploy".into(),
        };
        assert!(matches(&spec, 3, Some("promo-engine"), &labels));
        assert!(!matches(&spec, 4, Some("promo-engine"), &labels));
        assert!(!matches(&spec, 3, Some("loyalty"), &labels));
        assert!(!matches(&spec, 3, None, &labels), "a plugin pattern does not match host alerts");
        assert!(!matches(&spec, 3, Some("promo-engine"), &BTreeMap::new()));
        let silence = Silence { id: 1, spec, author: "ops".into(), created_at: utc(0, 0, 0), expired_at: None };
        assert!(active(&silence, utc(0, 12, 0)));
        assert!(!active(&silence, utc(1, 0, 0)));
        let expired = Silence { expired_at: Some(utc(0, 6, 0)), ..silence };
        assert!(!active(&expired, utc(0, 12, 0)));
        assert!(validate(&expired.spec, utc(0, 1, 0)).is_ok());
        assert_eq!(validate(&expired.spec, utc(2, 0, 0)).unwrap_err().field, "ends_at");
    }
}
