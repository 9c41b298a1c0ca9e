//! Persisting telemetry: continuing from what the store kept after a restart, and flushing, so that every
//! stored row holds its whole interval and a write that failed is retried rather than lost.

use std::time::SystemTime;

use plugwatch_telemetry::Flush;

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
            Ok(()) => Ok(()),
            Err(error) => {
                *pending = Some(flush);
                Err(error.into())
            }
        }
    }
}

impl Registry {
    /// Reads what the other replicas on the same database have flushed of the live window and hands it
    /// to telemetry, so that its windows (the overview, alert rules) are the cluster's. A no-op on SQLite.
    pub async fn refresh_peers(&self, now: SystemTime) -> Result<()> {
        if !self.inner.store.is_shared() {
            return Ok(());
        }
        let telemetry = &self.inner.telemetry;
        let rows = self.inner.store.peer_rollups(now - telemetry.live_window()).await?;
        telemetry.set_peers(rows);
        Ok(())
    }
}
