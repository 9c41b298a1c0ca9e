//! The alerting vocabulary: rules, alert states and transitions, silences, channels and notifications, as
//! plain data. The `alerts` crate gives them behaviour (validation, evaluation, routing, delivery), the
//! store keeps them, the server turns them into JSON. Names (`as_str`) are stable API values.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::Outcome;

/// Defines a fieldless enum with stable names: `as_str`, `ALL`, `FromStr` (naming the allowed values on
/// error) and `Display`.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| UnknownName {
                    value: s.to_owned(),
                    allowed: $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A name that is not one of an enum's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of: {allowed}")]
pub struct UnknownName {
    pub value: String,
    pub allowed: String,
}

named_enum! {
    /// What a rule is evaluated over.
    Scope {
        /// Every plugin version whose plugin name matches the rule's `plugins` pattern, one alert each.
        Plugins = "plugins",
        /// The host plugwatch runs on, one alert.
        Host = "host",
    }
}

named_enum! {
    /// What a rule measures over its window.
    Metric {
        /// Wall-time quantiles, in seconds.
        LatencyP50 = "latency_p50",
        LatencyP95 = "latency_p95",
        LatencyP99 = "latency_p99",
        /// The share of requests whose outcome is in the rule's outcome set (0 to 1).
        ErrorRate = "error_rate",
        /// Invocations that timed out in the window (a count; zero without traffic).
        Timeouts = "timeouts",
        /// Invocations refused for overload in the window (a count; zero without traffic).
        Rejected = "rejected",
        /// Requests per second (zero without traffic: too low is a condition too).
        Throughput = "throughput",
        /// Mean CPU seconds per invocation.
        CpuTime = "cpu_time",
        /// Mean instructions per invocation.
        Instructions = "instructions",
        /// The highest peak linear memory of any invocation, in bytes.
        MemoryPeak = "memory_peak",
        /// The share of one of its own limits (the rule's `limit`) that a plugin uses (0 to 1 and beyond).
        Headroom = "headroom",
        /// Seconds since the plugin's last invocation (no data if it never had one).
        Idle = "idle",
        /// Host CPU in use (0 to 1).
        HostCpu = "host_cpu",
        /// Host memory in use (0 to 1).
        HostMemory = "host_memory",
        /// The data directory's disk in use (0 to 1).
        HostDisk = "host_disk",
        /// Scheduled backups that failed in a row (zero once one succeeds; no data when backups are not
        /// scheduled).
        BackupFailures = "backup_failures",
    }
}

impl Metric {
    /// The scope the metric belongs to.
    pub fn scope(self) -> Scope {
        match self {
            Metric::HostCpu | Metric::HostMemory | Metric::HostDisk | Metric::BackupFailures => Scope::Host,
            _ => Scope::Plugins,
        }
    }

    /// The unit its values are in, for messages: `seconds`, `ratio`, `count`, `per_second`, `bytes` or
    /// `instructions`.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::LatencyP50 | Metric::LatencyP95 | Metric::LatencyP99 | Metric::CpuTime | Metric::Idle => "seconds",
            Metric::ErrorRate | Metric::Headroom | Metric::HostCpu | Metric::HostMemory | Metric::HostDisk => "ratio",
            Metric::Timeouts | Metric::Rejected | Metric::BackupFailures => "count",
            Metric::Throughput => "per_second",
            Metric::Instructions => "instructions",
            Metric::MemoryPeak => "bytes",
        }
    }
}

named_enum! {
    /// One of a plugin's limits, as headroom measures it.
    HeadroomLimit {
        /// p99 wall time over the timeout. Wall time includes waiting, so this errs on the side of warning.
        WallTime = "wall_time",
        /// The most instructions any invocation executed, over the fuel budget.
        Instructions = "instructions",
        /// The highest peak linear memory, over the memory cap.
        Memory = "memory",
        /// The largest output, over `max_output_bytes`.
        Output = "output",
        /// The most invocations executing at once, over `max_concurrency`.
        Concurrency = "concurrency",
        /// The highest of the others.
        Any = "any",
    }
}

named_enum! {
    Comparison {
        Above = ">",
        AtLeast = ">=",
        Below = "<",
        AtMost = "<=",
    }
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::AtLeast => value >= threshold,
            Comparison::Below => value < threshold,
            Comparison::AtMost => value <= threshold,
        }
    }
}

named_enum! {
    /// What a rule does with a series that has no value (no traffic in the window, no host sample yet).
    NoData {
        /// The alert goes to its own `no_data` state, visible and notified as such.
        NoData = "no_data",
        /// As if the condition did not hold.
        Ok = "ok",
        /// As if the condition held.
        Alerting = "alerting",
    }
}

named_enum! {
    Severity {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

/// A rule as written: what to select, measure and compare, and how to say it.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    pub enabled: bool,
    pub scope: Scope,
    /// For [`Scope::Plugins`]: a plugin name, or a pattern with `*` and `?` (`*` is every plugin).
    pub plugins: String,
    pub metric: Metric,
    /// For [`Metric::ErrorRate`]: the outcomes that count as errors (empty: every failing outcome).
    pub outcomes: Vec<Outcome>,
    /// For [`Metric::Headroom`].
    pub limit: Option<HeadroomLimit>,
    pub window_secs: u32,
    pub comparison: Comparison,
    pub threshold: f64,
    pub for_secs: u32,
    /// How long an alert keeps firing after its condition stopped holding (damps flapping).
    pub keep_firing_for_secs: u32,
    pub no_data: NoData,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    /// With `{{plugin}}`, `{{version}}`, `{{value}}`, `{{threshold}}`, `{{rule}}`, `{{severity}}` placeholders.
    pub summary: String,
    pub runbook: String,
}

/// A stored rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: i64,
    pub spec: RuleSpec,
    /// Shipped with plugwatch (editable, and recreated only when the database is new).
    pub builtin: bool,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

named_enum! {
    /// Where an alert is in its life.
    State {
        /// The condition does not hold (an alert in this state is not kept, but transitions to it are).
        Inactive = "inactive",
        /// The condition holds, not yet for the rule's `for`.
        Pending = "pending",
        Firing = "firing",
        /// The series had no value and the rule says to show that.
        NoData = "no_data",
        /// It fired and no longer does (the history's word for firing → inactive).
        Resolved = "resolved",
    }
}

/// Which series of a rule an alert is about: the host (both `None`), or a plugin version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SeriesKey {
    pub plugin: Option<String>,
    pub version: Option<String>,
}

/// The state of one alert: one rule on one series, while it is not inactive.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRecord {
    pub rule_id: i64,
    pub series: SeriesKey,
    pub state: State,
    /// When the current state began.
    pub since: SystemTime,
    /// When the condition last held (for `keep_firing_for`).
    pub last_true: Option<SystemTime>,
    /// The last value evaluated (`None`: no data).
    pub value: Option<f64>,
    /// When it was last notified while firing (for the repeat interval).
    pub notified_at: Option<SystemTime>,
}

/// One line of the alert history: a transition, with the value that caused it.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub at: SystemTime,
    pub rule_id: i64,
    pub rule_name: String,
    pub series: SeriesKey,
    pub from: State,
    pub to: State,
    pub value: Option<f64>,
    pub threshold: f64,
    pub severity: Severity,
    /// A silence matched: the transition notified nobody.
    pub silenced: bool,
}

/// A stored transition.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    pub id: i64,
    pub transition: Transition,
}

/// Which history entries to read, newest first.
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub rule_id: Option<i64>,
    pub plugin: Option<String>,
    pub state: Option<State>,
    pub from: Option<SystemTime>,
    pub to: Option<SystemTime>,
    /// Entries with an id below this (the cursor of the next page).
    pub before: Option<i64>,
    pub limit: u32,
}

/// A silence as written: which alerts it matches and when.
#[derive(Clone, Debug, PartialEq)]
pub struct SilenceSpec {
    /// Matches alerts of this rule only.
    pub rule_id: Option<i64>,
    /// A plugin name or pattern (`*`, `?`); `None` matches every alert, host alerts included.
    pub plugins: Option<String>,
    /// Every label here must be on the alert with this value.
    pub labels: BTreeMap<String, String>,
    pub starts_at: SystemTime,
    pub ends_at: SystemTime,
    /// A maintenance window: within `starts_at..ends_at`, active only during these weekly occurrences.
    pub schedule: Option<Schedule>,
    pub comment: String,
}

/// A weekly window, in UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Bit 0 is Monday … bit 6 Sunday.
    pub weekdays: u8,
    /// Minutes after midnight UTC.
    pub start_minute: u16,
    pub duration_minutes: u32,
}

/// A stored silence.
#[derive(Clone, Debug, PartialEq)]
pub struct Silence {
    pub id: i64,
    pub spec: SilenceSpec,
    pub author: String,
    pub created_at: SystemTime,
    /// Set when it was ended early.
    pub expired_at: Option<SystemTime>,
}

named_enum! {
    ChannelKind {
        Webhook = "webhook",
        Slack = "slack",
        Email = "email",
        Sms = "sms",
    }
}

/// A channel as written. Settings are by name (see the alerts crate's `channels` module for each kind's);
/// secret settings are only ever written, and stored sealed.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelSpec {
    pub name: String,
    pub kind: ChannelKind,
    pub enabled: bool,
    pub settings: BTreeMap<String, String>,
    /// Routing: the lowest severity sent here.
    pub min_severity: Severity,
    /// Routing: only these rules (empty: every rule).
    pub rule_ids: Vec<i64>,
    /// Routing: every label here must be on the alert with this value.
    pub labels: BTreeMap<String, String>,
    /// Alerts of one rule becoming due within this time go out as one message.
    pub group_wait_secs: u32,
    /// How often an alert that stays firing is notified again (0: never).
    pub repeat_interval_secs: u32,
}

/// A stored channel: its secret settings only by name, as set.
#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub id: i64,
    pub spec: ChannelSpec,
    /// The names of the secret settings that are set.
    pub secrets_set: Vec<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

named_enum! {
    /// What a notification is about.
    NotificationKind {
        /// Alerts that fire, resolve, have no data or repeat.
        Alerts = "alerts",
        /// A test a user asked for.
        Test = "test",
        /// Another channel keeps failing.
        ChannelFailing = "channel_failing",
    }
}

/// One alert in a notification.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertNotice {
    pub rule_id: i64,
    pub rule_name: String,
    pub series: SeriesKey,
    /// `firing`, `no_data` or `resolved`.
    pub state: State,
    pub severity: Severity,
    pub metric: Metric,
    pub comparison: Comparison,
    pub threshold: f64,
    pub value: Option<f64>,
    /// When the alert entered its state.
    pub since: SystemTime,
    pub summary: String,
    pub runbook: String,
    pub labels: BTreeMap<String, String>,
}

/// What a channel is asked to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub kind: NotificationKind,
    /// Alerts of one rule (or the failing channel's name) share a group.
    pub group: String,
    pub alerts: Vec<AlertNotice>,
    /// For [`NotificationKind::ChannelFailing`] and [`NotificationKind::Test`]: what to say.
    pub text: Option<String>,
    pub created_at: SystemTime,
}

named_enum! {
    DeliveryStatus {
        /// Waiting for its group to close or for its next attempt.
        Pending = "pending",
        Sent = "sent",
        /// Every attempt failed.
        Failed = "failed",
    }
}

/// One notification in a channel's outbox, with its delivery so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub channel_id: i64,
    pub notification: Notification,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: SystemTime,
    pub last_error: Option<String>,
    /// What the receiver answered last (status line or SMTP reply), bounded.
    pub last_response: Option<String>,
    pub sent_at: Option<SystemTime>,
    pub created_at: SystemTime,
}
