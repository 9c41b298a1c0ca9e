//! Persisting telemetry: continuing from what the store kept after a restart, and flushing, so that every
//! stored row holds its whole interval and a write that failed is retried rather than lost.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use plugwatch_telemetry::{Flush, Rollup};

use crate::series::unix;
use crate::{Registry, Result};

impl Registry {
    /// Hands telemetry what an earlier process stored (the live window's 10 s buckets, the current minute
    /// and hour, each series' last invocation), so that what this process records adds to it. Call once,
    /// before the first invocation and the first flush.
    pub async fn restore_telemetry(&self, now: SystemTime) -> Result<()> {
        let telemetry = &self.inner.telemetry;
        let persisted = self.inner.store.persisted_telemetry(now, telemetry.live_window()).await?;
        telemetry.restore(now, persisted);
        Ok(())
    }

    /// Closes the buckets that ended at or before `now` and writes what telemetry hands out, together with
    /// what an earlier flush failed to write (every row is an upsert of its whole interval, written oldest
    /// first, so a retry is exact). On failure what is not written is kept for the next call.
    pub async fn flush_telemetry(&self, now: SystemTime) -> Result<()> {
        let mut pending = self.inner.unwritten.lock().await;
        let mut flush = pending.take().unwrap_or_default();
        let Flush { closed, open, rollups, runs } = self.inner.telemetry.flush(now);
        // Rows still open at the failed flush were superseded by this one's, which hold all they held.
        flush.open = open;
        flush.closed.extend(closed);
        flush.rollups.extend(rollups);
        flush.runs.extend(runs);
        match self.inner.store.write_flush(&flush).await {
            Ok(()) => {
                drop(pending);
                let wrote = !(flush.rollups.is_empty() && flush.closed.is_empty());
                if wrote
                    && self.inner.store.is_shared()
                    && let Err(error) = self.inner.store.announce_live(crate::TELEMETRY_CHANGE).await
                {
                    // The others read it at their next periodic read.
                    tracing::debug!(message = "Cannot announce a flush.", %error);
                }
                Ok(())
            }
            Err(error) => {
                *pending = Some(flush);
                Err(error.into())
            }
        }
    }
}

/// How far back a refresh of the other replicas' telemetry reads again, at least: their rows older than
/// two flush intervals and two buckets no longer change (a late record lands in the open bucket, and each
/// flush writes the buckets it closed), except after a flush that failed and was retried; a refresh at
/// least `PEERS_FULL_EVERY` after the last full one rereads all.
const PEERS_REREAD: Duration = Duration::from_secs(60);
const PEERS_FULL_EVERY: Duration = Duration::from_secs(60);

/// The other replicas' 10 s rows of the live window, by replica, plugin, version and start.
#[derive(Default)]
pub(crate) struct PeerRows {
    rows: BTreeMap<(String, String, String, i64), Rollup>,
    /// When the last full reread was (none yet: the first refresh is one).
    full_at: Option<SystemTime>,
}

impl Registry {
    /// Reads what the other replicas on the same database have flushed of the live window and hands it
    /// to telemetry, so that its windows (the overview, alert rules) are the cluster's: all of it on the
    /// first call and once every `PEERS_FULL_EVERY`, else only the rows that may still change (the
    /// replicas flush every `flush_interval`). A no-op on SQLite.
    pub async fn refresh_peers(&self, now: SystemTime, flush_interval: Duration) -> Result<()> {
        if !self.inner.store.is_shared() {
            return Ok(());
        }
        let telemetry = &self.inner.telemetry;
        let mut peers = self.inner.peers.lock().await;
        let full = peers.full_at.is_none_or(|at| now.duration_since(at).unwrap_or_default() >= PEERS_FULL_EVERY);
        let oldest = now - telemetry.live_window();
        let reread = PEERS_REREAD.max(2 * flush_interval + Duration::from_secs(20));
        let since = if full { oldest } else { (now - reread).max(oldest) };
        let fetched = self.inner.store.peer_rollups(since).await?;
        let (since, oldest) = (unix(since), unix(oldest));
        peers.rows.retain(|(_, _, _, start), _| *start >= oldest && *start < since);
        for stored in fetched {
            let r = stored.rollup;
            peers.rows.insert((stored.replica, r.plugin.clone(), r.version.clone(), r.start), r);
        }
        if full {
            peers.full_at = Some(now);
        }
        telemetry.set_peers(peers.rows.values().cloned().collect());
        Ok(())
    }
}
