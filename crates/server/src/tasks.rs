//! Background tasks, each stopping on the one shutdown signal: startup (loading the plugins, then with
//! `--demo` installing the examples and driving synthetic traffic), the telemetry flush, the host sampler,
//! retention, scheduled backups, and alerting (evaluation and notification delivery); with several replicas
//! on PostgreSQL also the leader election (only the leader runs alerting, retention and scheduled backups), the
//! other replicas' telemetry, and their change announcements (with a periodic re-read as the fallback).
//! On shutdown the flush runs once more and writes everything telemetry still holds,
//! including the open bucket. A load still in progress is abandoned, not awaited: its compile may go on on
//! a blocking thread until the process exits, and writes nothing but an atomically created cache file.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use plugwatch_access::{AuditEntry, AuditResult, Principal};
use plugwatch_telemetry::HostSampler;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::AppState;

pub struct Tasks {
    handles: Vec<JoinHandle<()>>,
}

pub fn spawn(state: &AppState, stop: watch::Receiver<bool>) -> Tasks {
    let handles = vec![
        tokio::spawn(flush_loop(state.clone(), stop.clone())),
        tokio::spawn(host_loop(state.clone(), stop.clone())),
        tokio::spawn(prune_loop(state.clone(), stop.clone())),
        tokio::spawn(startup(state.clone(), stop.clone())),
        tokio::spawn(crate::live::run(state.clone(), stop.clone())),
    ];
    let mut handles = handles;
    if state.config.backup.enabled {
        handles.push(tokio::spawn(backup_loop(state.clone(), stop.clone())));
    }
    if state.registry.store().is_shared() {
        handles.push(tokio::spawn(leader_loop(state.clone(), stop.clone())));
        handles.push(tokio::spawn(peers_loop(state.clone(), stop.clone())));
        handles.push(tokio::spawn(changes_loop(state.clone(), stop.clone())));
    }
    if state.config.alerts.enabled {
        handles.push(tokio::spawn(state.alerts.clone().run(stop, state.leader.subscribe())));
    }
    Tasks { handles }
}

/// Loads the stored plugins (and installs the demo's), marks the server ready, then runs the demo traffic.
async fn startup(state: AppState, mut stop: watch::Receiver<bool>) {
    let registry = &state.registry;
    let load = async {
        registry.load_all().await;
        if state.config.demo {
            crate::demo::install(registry).await;
        }
    };
    tokio::select! {
        () = load => {}
        _ = stop.wait_for(|stopped| *stopped) => {
            tracing::info!(message = "Startup abandoned: shutting down.", loading = ?registry.loading());
            return;
        }
    }
    state.started.store(true, Ordering::SeqCst);
    tracing::info!(message = "All plugins loaded: ready.", plugins = registry.plugins().len());
    if state.config.demo {
        crate::demo::traffic(registry.clone(), stop).await;
    }
}

/// Waits for every task to stop, then writes what telemetry still holds.
pub async fn join(tasks: Tasks, state: &AppState) {
    for handle in tasks.handles {
        if let Err(error) = handle.await {
            tracing::error!(message = "Background task failed.", %error);
        }
    }
    // Past the open bucket's end, so that it is written as closed, whole.
    let bucket = Duration::from_secs(10);
    flush(state, SystemTime::now() + bucket).await;
}

/// Sleeps for `period` unless shutdown comes first; returns false on shutdown.
async fn tick(stop: &mut watch::Receiver<bool>, period: Duration) -> bool {
    let slept = tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = stop.wait_for(|stopped| *stopped) => false,
    };
    slept && !*stop.borrow()
}

async fn flush_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(state.config.telemetry.flush_interval_secs);
    while tick(&mut stop, period).await {
        flush(&state, SystemTime::now()).await;
    }
}

async fn flush(state: &AppState, now: SystemTime) {
    if let Err(error) = state.registry.flush_telemetry(now).await {
        // What was not written is kept and written by the next flush.
        tracing::error!(message = "Telemetry flush failed; it is retried with the next one.", %error);
    }
}

async fn host_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(state.config.telemetry.host_interval_secs);
    let data_dir = state.config.data_dir.clone();
    let mut sampler = HostSampler::new(&data_dir);
    loop {
        let sample = sampler.sample();
        if let Err(error) = state.registry.store().write_host_sample(&sample).await {
            tracing::warn!(message = "Cannot store a host sample.", %error);
        }
        state.registry.telemetry().record_host(sample);
        if !tick(&mut stop, period).await {
            break;
        }
    }
}

/// Takes the scheduled backups (the first `first_after_secs` after a start with none yet; then one
/// interval after the newest, so that the schedule survives restarts), applies retention and audits each.
async fn backup_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let first = SystemTime::now() + Duration::from_secs(state.config.backup.first_after_secs);
    loop {
        let due = state.backups.next_due(first).await;
        let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
        if !tick(&mut stop, wait).await {
            break;
        }
        if !state.is_leader() {
            // Another replica takes the scheduled backups; look again in a minute.
            if !tick(&mut stop, Duration::from_secs(60)).await {
                break;
            }
            continue;
        }
        let result = state.backups.scheduled(state.registry.store(), SystemTime::now()).await;
        let (result, target, detail) = match &result {
            Ok(info) => (AuditResult::Ok, info.id.clone(), format!("{} bytes", info.size)),
            Err(error) => {
                tracing::error!(message = "The scheduled backup failed.", %error);
                (AuditResult::Failed, String::new(), error.to_string())
            }
        };
        let entry = AuditEntry {
            actor: Some(Principal::system()),
            action: "backup.scheduled".to_owned(),
            target,
            source: None,
            result,
            detail: Some(detail),
        };
        if let Err(error) = state.access.record(entry).await {
            tracing::error!(message = "Cannot write to the audit log.", %error);
        }
    }
}

async fn prune_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(state.config.telemetry.prune_interval_secs);
    let retention = state.config.telemetry.retention.retention();
    loop {
        if !state.is_leader() {
            if !tick(&mut stop, period).await {
                break;
            }
            continue;
        }
        match state.registry.store().prune(&retention, SystemTime::now()).await {
            Ok(report) => tracing::info!(
                message = "Retention enforced.",
                rollups = report.rollups,
                runs = report.runs,
                host_samples = report.host_samples
            ),
            Err(error) => tracing::error!(message = "Retention failed.", %error),
        }
        match state.access.prune(SystemTime::now()).await {
            Ok(rows) => tracing::debug!(message = "Audit log, sessions and sign-in attempts pruned.", rows),
            Err(error) => tracing::error!(message = "Pruning the audit log failed.", %error),
        }
        if !tick(&mut stop, period).await {
            break;
        }
    }
}

/// Keeps `state.leader` true while this replica holds the leader's lock, checking every
/// `cluster.leader_check_secs`; gives the lock up on shutdown, so that another replica takes over at once.
async fn leader_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(state.config.cluster.leader_check_secs);
    let mut leadership = state.registry.store().leadership();
    let replica = state.registry.store().replica();
    loop {
        let leading = leadership.check().await;
        let changed = state.leader.send_if_modified(|was| std::mem::replace(was, leading) != leading);
        if changed && leading {
            tracing::info!(message = "This replica is now the leader: it runs alerting, retention and backups.", %replica);
        } else if changed {
            tracing::warn!(message = "This replica is no longer the leader.", %replica);
        }
        if !tick(&mut stop, period).await {
            break;
        }
    }
    state.leader.send_replace(false);
    leadership.release().await;
}

/// Reads what the other replicas flushed every `cluster.peers_secs`, for cluster-wide live windows.
async fn peers_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(state.config.cluster.peers_secs);
    let flush = Duration::from_secs(state.config.telemetry.flush_interval_secs);
    // However many replicas announce their flushes, at most one read a second.
    let gap = Duration::from_secs(1);
    loop {
        let read_at = tokio::time::Instant::now();
        if let Err(error) = state.registry.refresh_peers(SystemTime::now(), flush).await {
            tracing::warn!(message = "Cannot read the other replicas' telemetry.", %error);
        }
        // The next read at the period's end, or when another replica announces a flush.
        let woken = tokio::select! {
            () = state.peers_flushed.notified() => {
                let rest = gap.saturating_sub(read_at.elapsed());
                rest.is_zero() || tick(&mut stop, rest).await
            }
            slept = tick(&mut stop, period) => slept,
        };
        if !woken || *stop.borrow() {
            break;
        }
    }
}

/// Applies the changes other replicas announce (a plugin, tokens and users, alerting, a flush), heard on
/// the database's channel and, with Redis configured, on the shared cache's; and re-reads all of it every
/// `cluster.poll_secs` and after either listening connection was lost, for announcements missed.
async fn changes_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    use plugwatch_cache::Heard;
    use plugwatch_store::Change;
    let poll = Duration::from_secs(state.config.cluster.poll_secs);
    let replica = state.registry.store().replica();
    let mut subscription = state.cache.as_ref().map(|cache| cache.subscribe());
    let mut listener = None;
    let mut next_poll = tokio::time::Instant::now() + poll;
    // After the listening connection was lost: re-read everything once listening again, so that nothing
    // changed in between is missed.
    let mut missed = false;
    loop {
        if listener.is_none() {
            match state.registry.store().listen().await {
                Ok(l) => listener = l,
                Err(error) => {
                    tracing::warn!(message = "Cannot listen for the other replicas' changes; polling.", %error)
                }
            }
            if listener.is_some() && std::mem::take(&mut missed) {
                apply_change(&state, None).await;
            }
        }
        let heard = async {
            match listener.as_mut() {
                Some(l) => Some(l.recv().await),
                None => std::future::pending().await,
            }
        };
        // The shared cache's channel, which carries the announcements while Redis answers.
        let relayed = async {
            match subscription.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let change = tokio::select! {
            heard = heard => heard,
            relayed = relayed => match relayed {
                Heard::Message(payload) => match plugwatch_store::heard_change(&payload, &replica) {
                    Some(what) => Some(Ok(Change::Changed(what.to_owned()))),
                    None => continue,
                },
                Heard::Missed => Some(Ok(Change::Missed)),
            },
            _ = tokio::time::sleep_until(next_poll) => None,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        match change {
            Some(Ok(Change::Changed(what))) => apply_change(&state, Some(&what)).await,
            Some(Ok(Change::Missed)) => apply_change(&state, None).await,
            Some(Err(error)) => {
                tracing::warn!(message = "Lost the connection that hears the other replicas' changes.", %error);
                (listener, missed) = (None, true);
                // Not in a tight loop while the database is away.
                if !tick(&mut stop, Duration::from_secs(1)).await {
                    break;
                }
            }
            None => {
                next_poll = tokio::time::Instant::now() + poll;
                apply_change(&state, None).await;
            }
        }
    }
}

/// Applies one announced change, or (`None`) re-reads everything another replica may have changed.
async fn apply_change(state: &AppState, what: Option<&str>) {
    if what == Some(plugwatch_registry::TELEMETRY_CHANGE) {
        state.peers_flushed.notify_one();
        return;
    }
    let plugin = what.and_then(|w| w.strip_prefix(plugwatch_registry::REGISTRY_CHANGE));
    if what.is_none() || plugin.is_some() {
        match state.registry.sync(plugin).await {
            Ok(changed) if !changed.is_empty() => {
                tracing::info!(message = "Applied another replica's plugin changes.", plugins = ?changed)
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(message = "Cannot re-read the plugins.", %error),
        }
    }
    if what.is_none() || what == Some(plugwatch_access::ACCESS_CHANGE) {
        state.access.forget_cached_tokens();
    }
    if what.is_none() || what == Some(plugwatch_alerts::ALERTS_CHANGE) {
        state.alerts.reload().await;
    }
}

/// What alerting evaluates: the active version of every enabled plugin, from the registry's snapshot,
/// and the state of the backup schedule.
pub struct Inventory {
    pub registry: plugwatch_registry::Registry,
    pub backups: std::sync::Arc<plugwatch_backup::Backups>,
}

impl plugwatch_alerts::Inventory for Inventory {
    fn targets(&self) -> Vec<plugwatch_alerts::PluginTarget> {
        self.registry
            .plugins()
            .iter()
            .filter(|entry| entry.record.enabled)
            .filter_map(|entry| {
                let active = entry.active.as_ref()?;
                Some(plugwatch_alerts::PluginTarget {
                    plugin: entry.record.name.clone(),
                    version: active.version.version.clone(),
                    limits: active.version.limits.clone(),
                })
            })
            .collect()
    }

    fn backup_failures(&self) -> Option<u32> {
        self.backups.config().enabled.then(|| self.backups.status().consecutive_failures)
    }
}
