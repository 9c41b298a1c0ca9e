//! Plugins in the store: the sealed config column (the queries are in `sql/plugins.rs`).

use crate::secrets::SealedColumn;

/// Secret config values, for the key check, the clear-text migration and rotation. The context is
/// `secret_context` (in `sql/plugins.rs`) in SQL.
pub(crate) const SECRET_CONFIG: SealedColumn = SealedColumn {
    table: "plugin_config",
    select: "SELECT c.rowid, 'plugin_config/' || p.name || '/' || v.version || '/' || c.key, c.value
        FROM plugin_config c JOIN plugin_versions v ON v.id = c.version_id JOIN plugins p ON p.id = v.plugin_id
        WHERE c.secret = TRUE AND c.sealed = $1",
    update: "UPDATE plugin_config SET value = $1, sealed = TRUE WHERE rowid = $2",
};
