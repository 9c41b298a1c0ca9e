//! The audit log: appending entries and reading them back. It is append-only; only retention
//! (`Access::prune`) deletes.

use std::time::SystemTime;

use plugwatch_store::{AuditFilter, AuditRow, NewAuditRow, Store};

use crate::{Access, ActorKind, AuditEntry, AuditQuery, AuditRecord, Result, parse_stored};

/// The most entries one query returns.
const MAX_LIMIT: u32 = 500;

impl Access {
    /// Appends an entry to the audit log, stamped with the current time.
    pub async fn record(&self, entry: AuditEntry) -> Result<()> {
        record_at(&self.store, self.now(), entry).await
    }

    /// Audit entries matching `query`, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let filter = AuditFilter {
            actor: query.actor.clone(),
            action_prefix: query.action.clone(),
            target: query.target.clone(),
            result: query.result.map(|r| r.as_str().to_owned()),
            from: query.from,
            to: query.to,
            before_id: query.before_id,
            limit: query.limit.min(MAX_LIMIT),
        };
        self.store.audit(&filter).await?.into_iter().map(record).collect()
    }
}

pub(crate) async fn record_at(store: &Store, at: SystemTime, entry: AuditEntry) -> Result<()> {
    store.insert_audit(&row(at, entry)).await?;
    Ok(())
}

/// The row an entry is stored as.
pub(crate) fn row(at: SystemTime, entry: AuditEntry) -> NewAuditRow {
    let (actor_kind, actor, role) = match &entry.actor {
        Some(p) => (p.kind, p.name.clone(), Some(p.role.as_str().to_owned())),
        None => (ActorKind::Anonymous, String::new(), None),
    };
    NewAuditRow {
        at,
        actor_kind: actor_kind.as_str().to_owned(),
        actor,
        role,
        action: entry.action,
        target: entry.target,
        source: entry.source,
        result: entry.result.as_str().to_owned(),
        detail: entry.detail,
    }
}

fn record(row: AuditRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.id,
        at: row.at,
        actor_kind: parse_stored(&row.actor_kind, "actor kind")?,
        actor: row.actor,
        role: row.role.as_deref().map(|r| parse_stored(r, "role")).transpose()?,
        action: row.action,
        target: row.target,
        source: row.source,
        result: parse_stored(&row.result, "audit result")?,
        detail: row.detail,
        count: row.count,
    })
}
