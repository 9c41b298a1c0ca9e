//! Rules: what a valid rule is (every error names the field that is wrong and why), the rules plugwatch
//! ships, name patterns, and the placeholders of a rule's summary and runbook.

use std::collections::BTreeMap;

use plugwatch_model::Outcome;
use plugwatch_model::alerts::{Comparison, HeadroomLimit, Metric, NoData, RuleSpec, Scope, Severity};

/// A field of a rule, silence or channel that is wrong: `field` is its name in the API (`threshold`,
/// `labels.team`), `reason` what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), reason: reason.into() }
    }
}

/// The shortest and longest window a rule may aggregate over. The longest is telemetry's live window:
/// what memory holds at 10 s resolution, so evaluation never reads the database.
pub const MIN_WINDOW_SECS: u32 = 10;
pub const MAX_WINDOW_SECS: u32 = 15 * 60;
/// The longest `for` and `keep_firing_for`.
pub const MAX_FOR_SECS: u32 = 7 * 24 * 3600;
/// The placeholders a summary or runbook may use.
pub const PLACEHOLDERS: &[&str] = &["plugin", "version", "value", "threshold", "rule", "severity", "metric"];

const MAX_NAME: usize = 100;
const MAX_TEXT: usize = 2000;
const MAX_LABELS: usize = 20;

/// Checks a rule as written.
pub fn validate(spec: &RuleSpec) -> Result<(), FieldError> {
    let name = spec.name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name != spec.name {
        return Err(FieldError::new(
            "name",
            format!("must be 1 to {MAX_NAME} characters without leading or trailing spaces"),
        ));
    }
    if spec.metric.scope() != spec.scope {
        return Err(FieldError::new(
            "metric",
            format!("`{}` is measured on scope `{}`, not `{}`", spec.metric, spec.metric.scope(), spec.scope),
        ));
    }
    match spec.scope {
        Scope::Plugins => check_pattern("plugins", &spec.plugins)?,
        Scope::Host if !spec.plugins.is_empty() => {
            return Err(FieldError::new("plugins", "must be empty for scope `host`"));
        }
        Scope::Host => {}
    }
    if spec.metric == Metric::ErrorRate {
        if spec.outcomes.contains(&Outcome::Ok) {
            return Err(FieldError::new("outcomes", "`ok` is not an error outcome"));
        }
    } else if !spec.outcomes.is_empty() {
        return Err(FieldError::new("outcomes", "only metric `error_rate` counts outcomes"));
    }
    match (spec.metric, spec.limit) {
        (Metric::Headroom, None) => {
            return Err(FieldError::new("limit", format!("metric `headroom` needs a limit: one of {}", limits())));
        }
        (Metric::Headroom, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(FieldError::new("limit", "only metric `headroom` has a limit")),
    }
    if !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&spec.window_secs) || !spec.window_secs.is_multiple_of(10) {
        return Err(FieldError::new(
            "window_secs",
            format!(
                "must be a multiple of 10 from {MIN_WINDOW_SECS} to {MAX_WINDOW_SECS} seconds (the live window telemetry \
                 keeps), not {}",
                spec.window_secs
            ),
        ));
    }
    if !spec.threshold.is_finite() {
        return Err(FieldError::new("threshold", "must be a finite number"));
    }
    let ratio = matches!(spec.metric.unit(), "ratio");
    if spec.threshold < 0.0 || (ratio && spec.metric != Metric::Headroom && spec.threshold > 1.0) {
        let range =
            if ratio && spec.metric != Metric::Headroom { "from 0 to 1 (a ratio: 0.05 is 5 %)" } else { "0 or more" };
        return Err(FieldError::new("threshold", format!("must be {range}, not {}", spec.threshold)));
    }
    if spec.for_secs > MAX_FOR_SECS {
        return Err(FieldError::new("for_secs", format!("must be at most {MAX_FOR_SECS} seconds (7 days)")));
    }
    if spec.keep_firing_for_secs > MAX_FOR_SECS {
        return Err(FieldError::new(
            "keep_firing_for_secs",
            format!("must be at most {MAX_FOR_SECS} seconds (7 days)"),
        ));
    }
    check_labels("labels", &spec.labels)?;
    check_template("summary", &spec.summary)?;
    check_template("runbook", &spec.runbook)?;
    let link = spec.runbook.starts_with("https://") || spec.runbook.starts_with("http://");
    if !spec.runbook.is_empty() && !link {
        return Err(FieldError::new("runbook", "must be an http(s) link"));
    }
    Ok(())
}

fn limits() -> String {
    HeadroomLimit::ALL.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks a plugin name or pattern (`*`, `?` and the characters of plugin names).
pub fn check_pattern(field: &str, pattern: &str) -> Result<(), FieldError> {
    let valid = !pattern.is_empty()
        && pattern.len() <= MAX_NAME
        && pattern.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.*?".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be a plugin name or a pattern of lowercase letters, digits, `-`, `_`, `.`, `*` (any run) and `?` \
             (one character); `*` is every plugin",
        ))
    }
}

/// Checks labels: at most 20, keys like `team_name`, values up to 200 characters.
pub fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(FieldError::new(field, format!("at most {MAX_LABELS} labels")));
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= 50
            && key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(FieldError::new(
                format!("{field}.{}", bounded(key)),
                "a label name is 1 to 50 letters, digits and `_`, not starting with a digit",
            ));
        }
        if value.len() > 200 {
            return Err(FieldError::new(format!("{field}.{key}"), "a label value is at most 200 characters"));
        }
    }
    Ok(())
}

fn bounded(s: &str) -> String {
    s.chars().take(50).collect()
}

/// Checks that every `{{…}}` in a summary or runbook is a known placeholder.
fn check_template(field: &str, text: &str) -> Result<(), FieldError> {
    if text.len() > MAX_TEXT {
        return Err(FieldError::new(field, format!("must be at most {MAX_TEXT} characters")));
    }
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(FieldError::new(field, "a `{{` is not closed by `}}`"));
        };
        let name = after[..close].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(FieldError::new(
                field,
                format!("unknown placeholder `{{{{{}}}}}`; known: {}", bounded(name), PLACEHOLDERS.join(", ")),
            ));
        }
        rest = &after[close + 2..];
    }
    Ok(())
}

/// Fills a summary or runbook's placeholders (`{{plugin}}`, `{{value}}`, …) from `values`.
pub fn render(text: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let name = after[..close].trim();
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => out.push_str(&rest[open..open + 2 + close + 2]),
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A compiled plugin-name pattern.
#[derive(Clone, Debug)]
pub struct Pattern(globset::GlobMatcher);

impl Pattern {
    /// Compiles a pattern already [checked](check_pattern).
    pub fn new(pattern: &str) -> Pattern {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(false)
            .build()
            .unwrap_or_else(|_| globset::Glob::new("").expect("the empty glob compiles"));
        Pattern(glob.compile_matcher())
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.is_match(name)
    }
}

/// The rule that tells when scheduled backups fail: installed once per database, like the defaults.
pub fn backup_rules() -> Vec<RuleSpec> {
    vec![RuleSpec {
        name: "Scheduled backup failed".to_owned(),
        enabled: true,
        scope: Scope::Host,
        plugins: String::new(),
        metric: Metric::BackupFailures,
        outcomes: Vec::new(),
        limit: None,
        window_secs: 60,
        comparison: Comparison::Above,
        threshold: 0.0,
        for_secs: 0,
        keep_firing_for_secs: 0,
        no_data: NoData::Ok,
        severity: Severity::Critical,
        labels: BTreeMap::new(),
        summary: "{{value}} scheduled backups failed in a row: see the backup page and the server log".to_owned(),
        runbook: String::new(),
    }]
}

/// The rules a new database starts with: enabled, editable, and installed only once (a deleted one stays
/// deleted).
pub fn default_rules() -> Vec<RuleSpec> {
    let plugin_rule = |name: &str, metric: Metric, threshold: f64, window: u32, for_secs: u32| RuleSpec {
        name: name.to_owned(),
        enabled: true,
        scope: metric.scope(),
        plugins: if metric.scope() == Scope::Plugins { "*".to_owned() } else { String::new() },
        metric,
        outcomes: Vec::new(),
        limit: None,
        window_secs: window,
        comparison: Comparison::Above,
        threshold,
        for_secs,
        keep_firing_for_secs: 60,
        no_data: NoData::Ok,
        severity: Severity::Warning,
        labels: BTreeMap::new(),
        summary: String::new(),
        runbook: String::new(),
    };
    vec![
        RuleSpec {
            severity: Severity::Critical,
            summary: "{{plugin}} {{version}}: {{value}} of invocations fail (threshold {{threshold}})".to_owned(),
            ..plugin_rule("Error rate above 5 %", Metric::ErrorRate, 0.05, 60, 60)
        },
        RuleSpec {
            outcomes: vec![Outcome::Timeout, Outcome::Trap],
            severity: Severity::Critical,
            summary: "{{plugin}} {{version}}: {{value}} of invocations time out or trap".to_owned(),
            ..plugin_rule("Timeouts and traps above 1 %", Metric::ErrorRate, 0.01, 300, 300)
        },
        RuleSpec {
            limit: Some(HeadroomLimit::Any),
            summary: "{{plugin}} {{version}} uses {{value}} of one of its limits: it will fail when it reaches it"
                .to_owned(),
            ..plugin_rule("Headroom above 80 %", Metric::Headroom, 0.8, 300, 300)
        },
        RuleSpec {
            severity: Severity::Critical,
            summary: "The data directory's disk is {{value}} full".to_owned(),
            ..plugin_rule("Data directory disk above 90 %", Metric::HostDisk, 0.9, 60, 60)
        },
        RuleSpec {
            summary: "{{plugin}} {{version}} had traffic and has had none for {{value}}".to_owned(),
            keep_firing_for_secs: 0,
            ..plugin_rule("Traffic stopped for 10 min", Metric::Idle, 600.0, 60, 0)
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RuleSpec {
        default_rules().remove(0)
    }

    #[test]
    fn the_default_rules_are_valid_and_distinct() {
        let rules = default_rules();
        for rule in &rules {
            validate(rule).unwrap_or_else(|e| panic!("{}: {e}", rule.name));
        }
        let names: std::collections::BTreeSet<_> = rules.iter().map(|r| &r.name).collect();
        assert_eq!(names.len(), rules.len());
    }

    #[test]
    fn validation_names_the_field_and_the_reason() {
        type Change = Box<dyn Fn(&mut RuleSpec)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (Box::new(|s| s.name = " x".into()), "name", "spaces"),
            (Box::new(|s| s.metric = Metric::HostCpu), "metric", "scope `host`"),
            (Box::new(|s| s.plugins = "Promo!".into()), "plugins", "pattern"),
            (Box::new(|s| s.outcomes = vec![Outcome::Ok]), "outcomes", "not an error"),
            (Box::new(|s| s.limit = Some(HeadroomLimit::Memory)), "limit", "only metric `headroom`"),
            (Box::new(|s| s.window_secs = 5), "window_secs", "multiple of 10"),
            (Box::new(|s| s.window_secs = 3600), "window_secs", "live window"),
            (Box::new(|s| s.threshold = 5.0), "threshold", "0.05 is 5 %"),
            (Box::new(|s| s.threshold = f64::NAN), "threshold", "finite"),
            (Box::new(|s| s.for_secs = MAX_FOR_SECS + 1), "for_secs", "7 days"),
            (Box::new(|s| s.summary = "{{plugn}}".into()), "summary", "unknown placeholder `{{plugn}}`"),
            (Box::new(|s| s.summary = "{{plugin".into()), "summary", "not closed"),
            (Box::new(|s| s.runbook = "javascript:alert(1)".into()), "runbook", "http(s) link"),
            (Box::new(|s| _ = s.labels.insert("1x".into(), "v".into())), "labels.1x", "label name"),
        ];
        for (change, field, reason) in cases {
            let mut s = spec();
            change(&mut s);
            let error = validate(&s).expect_err(field);
            assert_eq!(error.field, field, "{error}");
            assert!(error.reason.contains(reason), "{field}: {error}");
        }
        let mut host = spec();
        host.scope = Scope::Host;
        host.metric = Metric::HostCpu;
        host.plugins = String::new();
        host.threshold = 0.9;
        validate(&host).unwrap();
        let mut headroom = spec();
        headroom.metric = Metric::Headroom;
        assert_eq!(validate(&headroom).unwrap_err().field, "limit");
    }

    #[test]
    fn patterns_match_names_and_wildcards() {
        assert!(Pattern::new("*").matches("promo-engine"));
        assert!(Pattern::new("promo-*").matches("promo-engine"));
        assert!(!Pattern::new("promo-*").matches("loyalty"));
        assert!(Pattern::new("promo-engine").matches("promo-engine"));
        assert!(!Pattern::new("promo").matches("promo-engine"));
        assert!(Pattern::new("deliver?").matches("delivery"));
    }

    #[test]
    fn placeholders_are_filled_and_unknown_text_is_kept() {
        let values = [("plugin", "promo".to_owned()), ("value", "7.0 %".to_owned())];
        assert_eq!(render("{{plugin}} at {{ value }} {{x", &values), "promo at 7.0 % {{x");
    }
}
