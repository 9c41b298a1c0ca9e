//! Alerting's storage against real SQLite files: rules (and the built-in ones installed once), alert states
//! and their history, silences, channels with sealed secrets (never in the files in clear, re-sealed by
//! rotation, refused under a wrong key), and the outbox: grouping, delivery transitions, failures, paging
//! and pruning.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use plugwatch_model::Outcome;
use plugwatch_model::alerts::{
    AlertNotice, AlertRecord, ChannelKind, ChannelSpec, Comparison, DeliveryStatus, HeadroomLimit, HistoryFilter,
    Metric, NoData, Notification, NotificationKind, RuleSpec, Schedule, Scope, SeriesKey, Severity, SilenceSpec, State,
    Transition,
};
use plugwatch_store::{FailurePolicy, KeySource, NewVersion, SecretKey, SecretValue, Store, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Pool, Sqlite};

const WEBHOOK_SECRET: &str = "hook-signing-Kq83vLmZ0pWx7Rt2Ys";
const SMTP_SECRET: &str = "smtp-pass-Nw41bVcX9zQe6Tu8Jh";
const NEW_SECRET: &str = "rotated-token-Pf27dSa5gHj3Kl9Mn";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes([byte; 32])
}

fn configured(byte: u8) -> KeySource {
    KeySource::Configured { key: key(byte), origin: "the test".into() }
}

async fn raw(dir: &Path) -> Pool<Sqlite> {
    let options = SqliteConnectOptions::from_str("sqlite://").unwrap().filename(dir.join("plugwatch.db"));
    SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap()
}

/// The names of the database files in `dir` (the database, its -wal) that contain `needle`, its base64 or hex.
fn leaks(dir: &Path, needle: &str) -> Vec<String> {
    let forms = [
        needle.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD.encode(needle).into_bytes(),
        hex::encode(needle).into_bytes(),
    ];
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("plugwatch.db"))
        // A -wal or -shm file that a closing connection removed meanwhile holds nothing.
        .filter(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            forms.iter().any(|f| bytes.windows(f.len()).any(|w| w == f.as_slice()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn rule_spec(name: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        enabled: true,
        scope: Scope::Plugins,
        plugins: "promo-*".into(),
        metric: Metric::ErrorRate,
        outcomes: vec![Outcome::Timeout, Outcome::Trap],
        limit: None,
        window_secs: 300,
        comparison: Comparison::Above,
        threshold: 0.05,
        for_secs: 60,
        keep_firing_for_secs: 120,
        no_data: NoData::Ok,
        severity: Severity::Critical,
        labels: [("team".to_owned(), "payments".to_owned()), ("tier".to_owned(), "1".to_owned())].into(),
        summary: "{{plugin}} fails {{value}}".into(),
        runbook: "https://runbooks.example/errors".into(),
    }
}

fn plugin_series(plugin: &str, version: &str) -> SeriesKey {
    SeriesKey { plugin: Some(plugin.into()), version: Some(version.into()) }
}

fn record(rule_id: i64, series: SeriesKey, state: State, since: u64) -> AlertRecord {
    AlertRecord {
        rule_id,
        series,
        state,
        since: at(since),
        last_true: Some(at(since + 5)),
        value: Some(0.25),
        notified_at: None,
    }
}

fn transition(rule_id: i64, plugin: Option<&str>, from: State, to: State, secs: u64) -> Transition {
    Transition {
        at: at(secs),
        rule_id,
        rule_name: format!("rule-{rule_id}"),
        series: SeriesKey { plugin: plugin.map(Into::into), version: plugin.map(|_| "1.0.0".into()) },
        from,
        to,
        value: Some(secs as f64),
        threshold: 0.5,
        severity: Severity::Warning,
        silenced: secs.is_multiple_of(2),
    }
}

fn channel_spec(name: &str) -> ChannelSpec {
    ChannelSpec {
        name: name.into(),
        kind: ChannelKind::Webhook,
        enabled: true,
        settings: [("url".to_owned(), "https://hooks.example/in".to_owned())].into(),
        min_severity: Severity::Warning,
        rule_ids: vec![],
        labels: [("team".to_owned(), "payments".to_owned())].into(),
        group_wait_secs: 30,
        repeat_interval_secs: 3600,
    }
}

fn notice(rule_id: i64, plugin: &str, value: f64) -> AlertNotice {
    AlertNotice {
        rule_id,
        rule_name: format!("rule-{rule_id}"),
        series: plugin_series(plugin, "1.0.0"),
        state: State::Firing,
        severity: Severity::Critical,
        metric: Metric::LatencyP99,
        comparison: Comparison::AtLeast,
        threshold: 0.5,
        value: Some(value),
        since: at(1_000),
        summary: format!("{plugin} is slow"),
        runbook: "rb".into(),
        labels: [("plugin".to_owned(), plugin.to_owned())].into(),
    }
}

fn notification(group: &str, alerts: Vec<AlertNotice>, created: u64) -> Notification {
    Notification { kind: NotificationKind::Alerts, group: group.into(), alerts, text: None, created_at: at(created) }
}

#[tokio::test]
async fn rules_round_trip_update_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    let spec = rule_spec("errors");
    let rule = store.create_rule(&spec, false, at(1_000)).await.unwrap();
    assert_eq!(
        (rule.spec.clone(), rule.builtin, rule.created_at, rule.updated_at),
        (spec.clone(), false, at(1_000), at(1_000))
    );
    let headroom = RuleSpec {
        metric: Metric::Headroom,
        limit: Some(HeadroomLimit::Memory),
        outcomes: vec![],
        labels: BTreeMap::new(),
        comparison: Comparison::AtMost,
        no_data: NoData::NoData,
        severity: Severity::Info,
        enabled: false,
        ..rule_spec("headroom")
    };
    let host = RuleSpec { scope: Scope::Host, plugins: String::new(), metric: Metric::HostDisk, ..rule_spec("disk") };
    let second = store.create_rule(&headroom, true, at(1_001)).await.unwrap();
    let third = store.create_rule(&host, false, at(1_002)).await.unwrap();
    assert_eq!(store.rule(second.id).await.unwrap().spec, headroom);
    assert_eq!(store.rules().await.unwrap(), vec![rule.clone(), second.clone(), third.clone()]);

    let taken = store.create_rule(&rule_spec("errors"), false, at(1_003)).await.unwrap_err();
    assert!(matches!(&taken, StoreError::Conflict(m) if m == "a rule named `errors` already exists"), "{taken}");
    assert_eq!(store.rules().await.unwrap().len(), 3, "nothing was stored");

    // An unchanged spec keeps the rule's alert states and its updated_at; a changed one drops the states.
    let series = plugin_series("promo-a", "1.0.0");
    store.apply_alert_changes(&[record(rule.id, series.clone(), State::Firing, 900)], &[], &[]).await.unwrap();
    let same = store.update_rule(rule.id, &spec, at(2_000)).await.unwrap();
    assert_eq!(same, rule);
    assert_eq!(store.alert_records().await.unwrap().len(), 1);
    let changed = RuleSpec {
        name: "headroom".into(),
        threshold: 0.1,
        labels: [("team".to_owned(), "checkout".to_owned())].into(),
        outcomes: vec![Outcome::PluginError],
        ..spec.clone()
    };
    let updated = store.update_rule(second.id, &changed, at(2_000)).await.unwrap();
    assert_eq!(
        (updated.spec.clone(), updated.builtin, updated.created_at, updated.updated_at),
        (changed.clone(), true, at(1_001), at(2_000))
    );
    let renamed = RuleSpec { name: "errors-2".into(), ..changed.clone() };
    let updated = store.update_rule(second.id, &renamed, at(2_000)).await.unwrap();
    assert!(updated.builtin, "the builtin flag stays");
    assert_eq!(updated.spec, renamed);
    let conflict = store.update_rule(second.id, &rule_spec("disk"), at(2_001)).await.unwrap_err();
    assert!(matches!(&conflict, StoreError::Conflict(m) if m.contains("`disk`")), "{conflict}");
    let changed_first = RuleSpec { for_secs: 0, ..spec.clone() };
    store.update_rule(rule.id, &changed_first, at(2_002)).await.unwrap();
    assert_eq!(store.alert_records().await.unwrap(), vec![], "the changed rule's states are gone");
    assert!(matches!(
        store.update_rule(999, &spec, at(2_003)).await,
        Err(StoreError::NotFound { kind: "rule", id: 999 })
    ));

    // Deleting a rule drops its states and channel filters; its history stays.
    store
        .apply_alert_changes(
            &[record(third.id, SeriesKey::default(), State::Pending, 3_000)],
            &[],
            &[transition(third.id, None, State::Inactive, State::Pending, 3_000)],
        )
        .await
        .unwrap();
    let channel = store
        .create_channel(
            &ChannelSpec { rule_ids: vec![third.id, rule.id], ..channel_spec("ops") },
            &BTreeMap::new(),
            at(3_000),
        )
        .await
        .unwrap();
    assert_eq!(channel.spec.rule_ids, vec![rule.id, third.id]);
    store.delete_rule(third.id).await.unwrap();
    assert!(matches!(store.rule(third.id).await, Err(StoreError::NotFound { kind: "rule", .. })));
    assert!(matches!(store.delete_rule(third.id).await, Err(StoreError::NotFound { kind: "rule", .. })));
    assert_eq!(store.alert_records().await.unwrap(), vec![]);
    assert_eq!(store.channel(channel.id).await.unwrap().spec.rule_ids, vec![rule.id]);
    let history =
        store.history(&HistoryFilter { rule_id: Some(third.id), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].transition.rule_name, format!("rule-{}", third.id));
    // A state for the deleted rule is skipped, its transition is still recorded.
    store
        .apply_alert_changes(
            &[record(third.id, SeriesKey::default(), State::Firing, 3_100)],
            &[],
            &[transition(third.id, None, State::Pending, State::Firing, 3_100)],
        )
        .await
        .unwrap();
    assert_eq!(store.alert_records().await.unwrap(), vec![]);

    // A name the model does not know is a corrupt row naming the column and the value.
    support::execute(dir.path(), "UPDATE alert_rules SET metric = 'latency_p42' WHERE id = $1", rule.id).await;
    let corrupt = store.rule(rule.id).await.unwrap_err().to_string();
    assert!(corrupt.contains("alert_rules.metric") && corrupt.contains("latency_p42"), "{corrupt}");
    assert!(store.rules().await.is_err());
}

#[tokio::test]
async fn default_rules_are_installed_once_per_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    store.create_rule(&rule_spec("mine"), false, at(10)).await.unwrap();
    let defaults = [rule_spec("mine"), rule_spec("latency"), rule_spec("errors")];
    assert_eq!(
        store.install_default_rules("defaults_installed", &defaults, at(20)).await.unwrap(),
        2,
        "an existing name is skipped"
    );
    let rules = store.rules().await.unwrap();
    let names: Vec<_> = rules.iter().map(|r| (r.spec.name.as_str(), r.builtin)).collect();
    assert_eq!(names, vec![("mine", false), ("latency", true), ("errors", true)]);
    assert_eq!(store.install_default_rules("defaults_installed", &defaults, at(30)).await.unwrap(), 0);
    store.delete_rule(rules[1].id).await.unwrap();
    store.close().await;
    let store = support::open(dir.path()).await;
    assert_eq!(
        store.install_default_rules("defaults_installed", &defaults, at(40)).await.unwrap(),
        0,
        "a deleted default stays deleted"
    );
    assert_eq!(store.rules().await.unwrap().len(), 2);
}

#[tokio::test]
async fn alert_states_and_transitions_change_together_and_history_pages_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    let a = store.create_rule(&rule_spec("a"), false, at(1)).await.unwrap().id;
    let b = store.create_rule(&rule_spec("b"), false, at(1)).await.unwrap().id;
    let host = SeriesKey::default();
    let promo = plugin_series("promo", "1.0.0");
    let promo2 = plugin_series("promo", "2.0.0");
    store
        .apply_alert_changes(
            &[
                record(a, promo.clone(), State::Pending, 100),
                record(a, promo2.clone(), State::Firing, 100),
                AlertRecord {
                    value: None,
                    last_true: None,
                    notified_at: Some(at(150)),
                    ..record(b, host.clone(), State::NoData, 110)
                },
            ],
            &[],
            &[transition(a, Some("promo"), State::Inactive, State::Pending, 100)],
        )
        .await
        .unwrap();
    let records = store.alert_records().await.unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[2],
        AlertRecord {
            rule_id: b,
            series: SeriesKey::default(),
            state: State::NoData,
            since: at(110),
            last_true: None,
            value: None,
            notified_at: Some(at(150)),
        }
    );
    // Upsert in place, remove one, two transitions: one transaction.
    let firing = AlertRecord { notified_at: Some(at(200)), ..record(a, promo.clone(), State::Firing, 200) };
    store
        .apply_alert_changes(
            std::slice::from_ref(&firing),
            &[(a, promo2.clone()), (b, host.clone())],
            &[
                transition(a, Some("promo"), State::Pending, State::Firing, 200),
                transition(a, Some("promo"), State::Firing, State::Resolved, 201),
            ],
        )
        .await
        .unwrap();
    assert_eq!(store.alert_records().await.unwrap(), vec![firing]);
    // A failing step (a transition without a rule name is fine; a NaN threshold is not storable) rolls back.
    let broken = Transition { threshold: f64::NAN, ..transition(a, None, State::Inactive, State::Firing, 300) };
    assert!(store.apply_alert_changes(&[], &[(a, promo.clone())], &[broken]).await.is_err());
    assert_eq!(store.alert_records().await.unwrap().len(), 1, "the removal was rolled back");

    // History: 3 entries so far (ids 1..=3), then 40 more over two rules, plugins and states.
    let mut more = Vec::new();
    for i in 0..40u64 {
        let (rule, plugin) =
            if i % 3 == 0 { (b, None) } else { (a, Some(if i % 2 == 0 { "promo" } else { "courier" })) };
        let to = if i % 4 == 0 { State::Firing } else { State::Pending };
        more.push(transition(rule, plugin, State::Inactive, to, 1_000 + i));
    }
    store.apply_alert_changes(&[], &[], &more).await.unwrap();
    let all = store.history(&HistoryFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 43);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all[0].transition, more[39]);
    assert_eq!(all[42].transition, transition(a, Some("promo"), State::Inactive, State::Pending, 100));

    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store.history(&HistoryFilter { before, limit: 7, ..Default::default() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        before = Some(page.last().unwrap().id);
        pages.extend(page);
    }
    assert_eq!(pages, all, "pages cover everything once, in order");
    assert_eq!(store.history(&HistoryFilter::default()).await.unwrap().len(), 1, "limit 0 is clamped to 1");

    let by = |f: HistoryFilter| {
        let store = store.clone();
        async move { store.history(&HistoryFilter { limit: 1000, ..f }).await.unwrap() }
    };
    let expect = |keep: &dyn Fn(&Transition) -> bool| -> Vec<Transition> {
        all.iter().map(|e| e.transition.clone()).filter(|t| keep(t)).collect()
    };
    let got = |entries: Vec<plugwatch_model::alerts::HistoryEntry>| -> Vec<Transition> {
        entries.into_iter().map(|e| e.transition).collect()
    };
    assert_eq!(got(by(HistoryFilter { rule_id: Some(b), ..Default::default() }).await), expect(&|t| t.rule_id == b));
    assert_eq!(
        got(by(HistoryFilter { plugin: Some("courier".into()), ..Default::default() }).await),
        expect(&|t| t.series.plugin.as_deref() == Some("courier"))
    );
    assert_eq!(
        got(by(HistoryFilter { state: Some(State::Firing), ..Default::default() }).await),
        expect(&|t| t.to == State::Firing)
    );
    let window = got(by(HistoryFilter { from: Some(at(1_010)), to: Some(at(1_020)), ..Default::default() }).await);
    assert_eq!(window, expect(&|t| t.at >= at(1_010) && t.at < at(1_020)));
    assert_eq!(window.len(), 10);
    let combined = got(by(HistoryFilter {
        rule_id: Some(a),
        plugin: Some("promo".into()),
        state: Some(State::Firing),
        from: Some(at(1_000)),
        ..Default::default()
    })
    .await);
    assert_eq!(
        combined,
        expect(&|t| t.rule_id == a
            && t.series.plugin.as_deref() == Some("promo")
            && t.to == State::Firing
            && t.at >= at(1_000))
    );
    assert!(!combined.is_empty());
}

#[tokio::test]
async fn silences_are_created_expired_and_listed_by_when_they_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    let rule = store.create_rule(&rule_spec("a"), false, at(1)).await.unwrap().id;
    let maintenance = SilenceSpec {
        rule_id: Some(rule),
        plugins: Some("promo-*".into()),
        labels: [("team".to_owned(), "payments".to_owned())].into(),
        starts_at: at(1_000),
        ends_at: at(100_000),
        schedule: Some(Schedule { weekdays: 0b001_0101, start_minute: 120, duration_minutes: 90 }),
        comment: "weekly deploys".into(),
    };
    let everything = SilenceSpec {
        rule_id: None,
        plugins: None,
        labels: BTreeMap::new(),
        starts_at: at(2_000),
        ends_at: at(5_000),
        schedule: None,
        comment: String::new(),
    };
    let future = SilenceSpec { starts_at: at(50_000), ends_at: at(60_000), ..everything.clone() };
    let s1 = store.create_silence(&maintenance, "alice", at(900)).await.unwrap();
    let s2 = store.create_silence(&everything, "bob", at(901)).await.unwrap();
    let s3 = store.create_silence(&future, "bob", at(902)).await.unwrap();
    assert_eq!(
        (s1.spec.clone(), s1.author.as_str(), s1.created_at, s1.expired_at),
        (maintenance, "alice", at(900), None)
    );
    assert_eq!(store.silence(s2.id).await.unwrap(), s2);

    let ids = |list: Vec<plugwatch_model::alerts::Silence>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(store.silences(at(3_000)).await.unwrap()), vec![s3.id, s2.id, s1.id], "newest first");
    assert_eq!(ids(store.silences(at(5_000)).await.unwrap()), vec![s3.id, s2.id, s1.id], "ending at it counts");
    assert_eq!(ids(store.silences(at(5_001)).await.unwrap()), vec![s3.id, s1.id]);

    // Expiring sets expired_at and brings ends_at forward; a second expiry changes nothing.
    let expired = store.expire_silence(s1.id, at(4_000)).await.unwrap();
    assert_eq!((expired.expired_at, expired.spec.ends_at), (Some(at(4_000)), at(4_000)));
    assert_eq!(store.expire_silence(s1.id, at(4_500)).await.unwrap(), expired);
    // A silence that already ended keeps its end when expired later; it counts as recently expired.
    let late = store.expire_silence(s2.id, at(8_000)).await.unwrap();
    assert_eq!((late.expired_at, late.spec.ends_at), (Some(at(8_000)), at(5_000)));
    assert_eq!(ids(store.silences(at(4_001)).await.unwrap()), vec![s3.id, s2.id]);
    assert_eq!(ids(store.silences(at(8_001)).await.unwrap()), vec![s3.id]);
    assert!(matches!(store.expire_silence(99, at(1)).await, Err(StoreError::NotFound { kind: "silence", id: 99 })));
    assert!(matches!(store.silence(99).await, Err(StoreError::NotFound { kind: "silence", id: 99 })));
}

#[tokio::test]
async fn channel_secrets_are_sealed_named_only_updated_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    let rule = store.create_rule(&rule_spec("a"), false, at(1)).await.unwrap().id;
    let spec = ChannelSpec { rule_ids: vec![rule], ..channel_spec("ops") };
    let secrets: BTreeMap<String, SecretValue> = [
        ("signing_key".to_owned(), SecretValue::from(WEBHOOK_SECRET)),
        ("password".to_owned(), SecretValue::from(SMTP_SECRET)),
    ]
    .into();
    let channel = store.create_channel(&spec, &secrets, at(100)).await.unwrap();
    assert_eq!(channel.spec, spec);
    assert_eq!(channel.secrets_set, vec!["password".to_owned(), "signing_key".to_owned()]);
    assert_eq!((channel.created_at, channel.updated_at), (at(100), at(100)));
    assert!(!format!("{channel:?}").contains(WEBHOOK_SECRET));
    assert_eq!(store.channels().await.unwrap(), vec![channel.clone()]);
    let opened = store.channel_secrets(channel.id).await.unwrap();
    assert_eq!(opened, secrets);

    // The rows sit in the WAL while the store is open: neither file holds a secret in clear.
    assert!(std::fs::metadata(dir.path().join("plugwatch.db-wal")).unwrap().len() > 0, "the WAL is in use");
    for secret in [WEBHOOK_SECRET, SMTP_SECRET] {
        assert_eq!(leaks(dir.path(), secret), Vec::<String>::new());
    }
    assert!(!leaks(dir.path(), "hooks.example").is_empty(), "the search finds what is stored in clear");

    assert!(matches!(
        store.create_channel(&channel_spec("ops"), &BTreeMap::new(), at(101)).await,
        Err(StoreError::Conflict(m)) if m == "a channel named `ops` already exists"
    ));
    let both = BTreeMap::from([("url".to_owned(), SecretValue::from("x"))]);
    assert!(matches!(store.create_channel(&channel_spec("x"), &both, at(101)).await, Err(StoreError::Conflict(_))));
    let missing_rule = ChannelSpec { rule_ids: vec![404], ..channel_spec("y") };
    assert!(matches!(
        store.create_channel(&missing_rule, &BTreeMap::new(), at(101)).await,
        Err(StoreError::NotFound { kind: "rule", id: 404 })
    ));
    assert_eq!(store.channels().await.unwrap().len(), 1, "nothing was stored");

    // Update: keep `password`, replace `signing_key`, add `token`, replace the plain settings.
    let spec2 = ChannelSpec {
        name: "ops-2".into(),
        kind: ChannelKind::Slack,
        enabled: false,
        settings: [("channel".to_owned(), "#ops".to_owned())].into(),
        min_severity: Severity::Critical,
        rule_ids: vec![],
        labels: BTreeMap::new(),
        group_wait_secs: 0,
        repeat_interval_secs: 0,
    };
    let changes: BTreeMap<String, Option<SecretValue>> = [
        ("signing_key".to_owned(), Some(SecretValue::from(NEW_SECRET))),
        ("token".to_owned(), Some(SecretValue::from(WEBHOOK_SECRET))),
    ]
    .into();
    let updated = store.update_channel(channel.id, &spec2, &changes, at(200)).await.unwrap();
    assert_eq!(updated.spec, spec2);
    assert_eq!(updated.secrets_set, vec!["password", "signing_key", "token"]);
    assert_eq!((updated.created_at, updated.updated_at), (at(100), at(200)));
    let opened = store.channel_secrets(channel.id).await.unwrap();
    assert_eq!(opened["password"].expose(), SMTP_SECRET);
    assert_eq!(opened["signing_key"].expose(), NEW_SECRET);
    assert_eq!(opened["token"].expose(), WEBHOOK_SECRET);
    // Clear one; a plain setting named like a kept secret is refused, changing nothing.
    let clear: BTreeMap<String, Option<SecretValue>> = [("token".to_owned(), None)].into();
    let updated = store.update_channel(channel.id, &spec2, &clear, at(300)).await.unwrap();
    assert_eq!(updated.secrets_set, vec!["password", "signing_key"]);
    let clash = ChannelSpec { settings: [("password".to_owned(), "plain".to_owned())].into(), ..spec2.clone() };
    assert!(matches!(
        store.update_channel(channel.id, &clash, &BTreeMap::new(), at(301)).await,
        Err(StoreError::Conflict(_))
    ));
    let other = store.create_channel(&channel_spec("other"), &BTreeMap::new(), at(302)).await.unwrap();
    assert!(matches!(
        store.update_channel(other.id, &spec2, &BTreeMap::new(), at(303)).await,
        Err(StoreError::Conflict(m)) if m.contains("ops-2")
    ));
    assert_eq!(store.channel(channel.id).await.unwrap(), updated);
    assert!(matches!(
        store.update_channel(999, &spec2, &BTreeMap::new(), at(303)).await,
        Err(StoreError::NotFound { kind: "channel", id: 999 })
    ));
    for secret in [WEBHOOK_SECRET, SMTP_SECRET, NEW_SECRET] {
        assert_eq!(leaks(dir.path(), secret), Vec::<String>::new());
    }

    // Rotation re-seals channel secrets with the plugin config ones; they open under the new key only.
    let db = raw(dir.path()).await;
    let old: Vec<(String,)> =
        sqlx::query_as("SELECT value FROM alert_channel_settings WHERE secret = 1").fetch_all(&db).await.unwrap();
    db.close().await;
    assert_eq!(old.len(), 2);
    assert!(old.iter().all(|(v,)| v.starts_with(&format!("pw1:{}:", key(1).id()))));
    let rotated = store.rotate_secret_key(&key(2)).await.unwrap();
    assert_eq!(rotated.values, 2);
    assert_eq!(store.channel_secrets(channel.id).await.unwrap()["password"].expose(), SMTP_SECRET);
    for (value,) in &old {
        assert_eq!(leaks(dir.path(), value), Vec::<String>::new(), "an old ciphertext is left in the files");
    }
    store.close().await;
    let error = Store::open_with(dir.path(), configured(1)).await.err().expect("a wrong key is refused").to_string();
    assert!(error.contains(key(2).id()) && error.contains(key(1).id()), "{error}");
    let store = Store::open_with(dir.path(), configured(2)).await.unwrap();
    assert_eq!(store.channel_secrets(channel.id).await.unwrap()["signing_key"].expose(), NEW_SECRET);

    // A value moved to another channel's row does not open there.
    store
        .update_channel(
            other.id,
            &channel_spec("other"),
            &BTreeMap::from([("signing_key".to_owned(), Some(SecretValue::from("x")))]),
            at(400),
        )
        .await
        .unwrap();
    store.close().await;
    let db = raw(dir.path()).await;
    sqlx::query(
        "UPDATE alert_channel_settings SET value = (SELECT value FROM alert_channel_settings WHERE channel_id = $1 AND key = 'signing_key')
         WHERE channel_id = $2 AND key = 'signing_key'",
    )
    .bind(channel.id)
    .bind(other.id)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    let store = Store::open_with(dir.path(), configured(2)).await.unwrap();
    let moved = store.channel_secrets(other.id).await.unwrap_err().to_string();
    assert!(moved.contains(&format!("alert_channel/{}/signing_key", other.id)) && moved.contains("altered"), "{moved}");
    assert!(!moved.contains(NEW_SECRET));

    store.delete_channel(channel.id).await.unwrap();
    assert!(matches!(store.channel(channel.id).await, Err(StoreError::NotFound { kind: "channel", .. })));
    assert!(matches!(store.channel_secrets(channel.id).await, Err(StoreError::NotFound { kind: "channel", .. })));
    assert!(matches!(store.delete_channel(channel.id).await, Err(StoreError::NotFound { kind: "channel", .. })));
}

#[tokio::test]
async fn a_database_from_before_alerting_opens_and_its_key_is_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    let version = NewVersion {
        plugin: "promo".into(),
        version: "1.0.0".into(),
        sha256: "a".repeat(64),
        size: 1,
        description: None,
        failure_policy: FailurePolicy::FailOpen,
        limits: Default::default(),
        hooks: vec![],
        config: BTreeMap::new(),
        secrets: [("api_key".to_owned(), SecretValue::from(SMTP_SECRET))].into(),
    };
    store.insert_version(&version, false).await.unwrap();
    store.close().await;
    // Undo migration 0007: the database as the previous release left it.
    let db = raw(dir.path()).await;
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND (name LIKE 'alert%' OR name LIKE 'silence%')",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(tables.len(), 14);
    sqlx::query("PRAGMA foreign_keys = OFF").execute(&db).await.unwrap();
    for (table,) in tables {
        sqlx::query(&format!("DROP TABLE {table}")).execute(&db).await.unwrap();
    }
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 7").execute(&db).await.unwrap();
    db.close().await;

    let error = Store::open_with(dir.path(), configured(2)).await.err().expect("a wrong key is refused");
    assert!(error.to_string().contains(key(1).id()), "{error}");
    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    assert_eq!(store.version("promo", "1.0.0").await.unwrap().secrets["api_key"].expose(), SMTP_SECRET);
    assert_eq!(store.channels().await.unwrap(), vec![]);
}

#[tokio::test]
async fn the_outbox_groups_delivers_retries_and_counts_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    let ch = store.create_channel(&channel_spec("ops"), &BTreeMap::new(), at(1)).await.unwrap().id;
    let other = store.create_channel(&channel_spec("other"), &BTreeMap::new(), at(1)).await.unwrap().id;
    assert_eq!(store.next_delivery_at().await.unwrap(), None);

    // Within the group window: merged, the same alert replaced in place, a new one appended, text replaced.
    let first = store
        .enqueue_notification(
            ch,
            &notification("rule-1", vec![notice(1, "a", 1.0), notice(1, "b", 2.0)], 100),
            at(130),
            at(100),
        )
        .await
        .unwrap();
    let with_text = Notification {
        text: Some("more".into()),
        ..notification("rule-1", vec![notice(1, "a", 9.0), notice(1, "c", 3.0)], 110)
    };
    assert_eq!(store.enqueue_notification(ch, &with_text, at(140), at(110)).await.unwrap(), first);
    let merged = store.delivery(first).await.unwrap();
    assert_eq!(merged.notification.alerts, vec![notice(1, "a", 9.0), notice(1, "b", 2.0), notice(1, "c", 3.0)]);
    assert_eq!(merged.notification.text.as_deref(), Some("more"));
    assert_eq!((merged.notification.created_at, merged.created_at), (at(100), at(100)));
    assert_eq!((merged.status, merged.attempts, merged.next_attempt_at), (DeliveryStatus::Pending, 0, at(130)));
    // Another group, another kind, another channel: separate deliveries.
    let group2 = store
        .enqueue_notification(ch, &notification("rule-2", vec![notice(2, "a", 1.0)], 111), at(120), at(111))
        .await
        .unwrap();
    let test = Notification {
        kind: NotificationKind::Test,
        text: Some("hello".into()),
        ..notification("rule-1", vec![], 112)
    };
    let test = store.enqueue_notification(ch, &test, at(112), at(112)).await.unwrap();
    let elsewhere = store
        .enqueue_notification(other, &notification("rule-1", vec![notice(1, "a", 1.0)], 113), at(125), at(113))
        .await
        .unwrap();
    assert_eq!(BTreeSet::from([first, group2, test, elsewhere]).len(), 4);
    assert!(matches!(
        store.enqueue_notification(999, &notification("g", vec![], 1), at(1), at(1)).await,
        Err(StoreError::NotFound { kind: "channel", id: 999 })
    ));

    // Due: pending with next_attempt_at <= now, oldest first, at most `limit`.
    assert_eq!(store.next_delivery_at().await.unwrap(), Some(at(112)));
    let ids = |d: Vec<plugwatch_model::alerts::Delivery>| d.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(store.due_deliveries(at(111), 10).await.unwrap()), Vec::<i64>::new());
    assert_eq!(ids(store.due_deliveries(at(125), 10).await.unwrap()), vec![group2, test, elsewhere]);
    assert_eq!(ids(store.due_deliveries(at(200), 2).await.unwrap()), vec![first, group2]);
    assert_eq!(store.due_deliveries(at(200), 10).await.unwrap()[0], merged);

    // After not_before has passed the group is closed: a new delivery.
    let late = store
        .enqueue_notification(ch, &notification("rule-1", vec![notice(1, "d", 4.0)], 130), at(160), at(130))
        .await
        .unwrap();
    assert_ne!(late, first);
    // After an attempt too, even within the window.
    store.delivery_failed(late, "connection refused", None, Some(at(170))).await.unwrap();
    let retrying = store.delivery(late).await.unwrap();
    assert_eq!((retrying.status, retrying.attempts, retrying.next_attempt_at), (DeliveryStatus::Pending, 1, at(170)));
    assert_eq!(retrying.last_error.as_deref(), Some("connection refused"));
    let after_attempt = store
        .enqueue_notification(ch, &notification("rule-1", vec![notice(1, "d", 5.0)], 131), at(165), at(131))
        .await
        .unwrap();
    assert_ne!(after_attempt, late);

    // Sent, failed for good, and the count of failures since the last sent one.
    assert_eq!(store.consecutive_failures(ch).await.unwrap(), 0);
    store.delivery_sent(first, "200 OK", at(131)).await.unwrap();
    let sent = store.delivery(first).await.unwrap();
    assert_eq!((sent.status, sent.attempts, sent.sent_at), (DeliveryStatus::Sent, 1, Some(at(131))));
    assert_eq!(sent.last_response.as_deref(), Some("200 OK"));
    assert!(matches!(store.delivery_sent(first, "again", at(132)).await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        store.delivery_failed(999, "x", None, None).await,
        Err(StoreError::NotFound { kind: "delivery", .. })
    ));
    store.delivery_failed(group2, "HTTP 500", Some("500 Internal Server Error"), None).await.unwrap();
    store.delivery_failed(late, "HTTP 502", Some("502 Bad Gateway"), None).await.unwrap();
    let failed = store.delivery(late).await.unwrap();
    assert_eq!((failed.status, failed.attempts, failed.sent_at), (DeliveryStatus::Failed, 2, None));
    assert_eq!(
        (failed.last_error.as_deref(), failed.last_response.as_deref()),
        (Some("HTTP 502"), Some("502 Bad Gateway"))
    );
    assert_eq!(store.consecutive_failures(ch).await.unwrap(), 2);
    assert_eq!(store.consecutive_failures(other).await.unwrap(), 0);
    // A delivery older than the failures that is sent after them resets the count.
    store.delivery_sent(test, "200 OK", at(140)).await.unwrap();
    assert_eq!(store.consecutive_failures(ch).await.unwrap(), 0);
    store.delivery_failed(after_attempt, "timeout", None, None).await.unwrap();
    assert_eq!(store.consecutive_failures(ch).await.unwrap(), 1);
    assert_eq!(ids(store.due_deliveries(at(1_000), 10).await.unwrap()), vec![elsewhere]);
    assert_eq!(store.next_delivery_at().await.unwrap(), Some(at(125)));

    // The delivery log, newest first, by id cursor.
    let log = ids(store.deliveries(ch, None, 100).await.unwrap());
    assert_eq!(log, vec![after_attempt, late, test, group2, first]);
    let page1 = ids(store.deliveries(ch, None, 2).await.unwrap());
    let page2 = ids(store.deliveries(ch, page1.last().copied(), 2).await.unwrap());
    let page3 = ids(store.deliveries(ch, page2.last().copied(), 2).await.unwrap());
    assert_eq!([page1, page2, page3].concat(), log);
    assert_eq!(store.deliveries(ch, None, 0).await.unwrap().len(), 1, "limit 0 is clamped to 1");

    // Deleting the channel takes its outbox along.
    store.delete_channel(other).await.unwrap();
    assert!(matches!(store.delivery(elsewhere).await, Err(StoreError::NotFound { kind: "delivery", .. })));
    assert_eq!(store.next_delivery_at().await.unwrap(), None);
}

#[tokio::test]
async fn pruning_drops_old_history_finished_deliveries_and_ended_silences() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    let rule = store.create_rule(&rule_spec("a"), false, at(1)).await.unwrap().id;
    let ch = store.create_channel(&channel_spec("ops"), &BTreeMap::new(), at(1)).await.unwrap().id;
    store
        .apply_alert_changes(
            &[],
            &[],
            &[100, 200, 300].map(|t| transition(rule, Some("promo"), State::Inactive, State::Firing, t)),
        )
        .await
        .unwrap();
    let old_sent = store
        .enqueue_notification(ch, &notification("g1", vec![notice(rule, "a", 1.0)], 100), at(100), at(100))
        .await
        .unwrap();
    let old_failed = store.enqueue_notification(ch, &notification("g2", vec![], 100), at(100), at(100)).await.unwrap();
    let old_pending = store.enqueue_notification(ch, &notification("g3", vec![], 100), at(100), at(100)).await.unwrap();
    let new_sent = store.enqueue_notification(ch, &notification("g4", vec![], 300), at(300), at(300)).await.unwrap();
    store.delivery_sent(old_sent, "ok", at(101)).await.unwrap();
    store.delivery_failed(old_failed, "no", None, None).await.unwrap();
    store.delivery_sent(new_sent, "ok", at(301)).await.unwrap();
    let silence = |starts: u64, ends: u64| SilenceSpec {
        rule_id: None,
        plugins: None,
        labels: [("a".to_owned(), "b".to_owned())].into(),
        starts_at: at(starts),
        ends_at: at(ends),
        schedule: None,
        comment: String::new(),
    };
    let ended = store.create_silence(&silence(0, 150), "x", at(0)).await.unwrap().id;
    let expired_early = store.create_silence(&silence(0, 1_000), "x", at(0)).await.unwrap().id;
    store.expire_silence(expired_early, at(120)).await.unwrap();
    let active = store.create_silence(&silence(0, 1_000), "x", at(0)).await.unwrap().id;
    let ended_then_expired = store.create_silence(&silence(0, 100), "x", at(0)).await.unwrap().id;
    store.expire_silence(ended_then_expired, at(250)).await.unwrap();

    assert_eq!(store.prune_alerting(at(200), at(200), at(200)).await.unwrap(), 1 + 2 + 2);
    let history = store.history(&HistoryFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(history.iter().map(|e| e.transition.at).collect::<Vec<_>>(), vec![at(300), at(200)]);
    let log: Vec<_> = store.deliveries(ch, None, 10).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(log, vec![new_sent, old_pending], "a pending delivery is never pruned");
    let left: Vec<_> = store.silences(at(0)).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(left, vec![ended_then_expired, active]);
    assert!(matches!(store.silence(ended).await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.prune_alerting(at(200), at(200), at(200)).await.unwrap(), 0);
    // The children went with their rows.
    let alerts = support::count(dir.path(), "SELECT COUNT(*) FROM alert_outbox_alerts").await;
    let labels = support::count(dir.path(), "SELECT COUNT(*) FROM silence_labels").await;
    assert_eq!((alerts, labels), (0, 2));
}
