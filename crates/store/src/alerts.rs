//! Alerting in the store: what the queries share (the sealed channel settings, page sizes); the
//! queries are in `sql/alerts.rs`.
//!
//! The store speaks `plugwatch_model::alerts` types and holds no alerting logic: what a rule means, which
//! silence matches and where a notification goes is the alerts crate's. Enum values are stored by their
//! stable names; an unknown name read back is [`StoreError::Corrupt`], naming the column and the value.
//!
//! Channel secrets are sealed for the context `alert_channel/<channel id>/<key>` ([`CHANNEL_SECRETS`]);
//! reading a channel gives only the names of its secrets, [`Store::channel_secrets`] opens them.

use crate::secrets::{SealedColumn, context};

/// The most rows one page of the history or of a delivery log holds.
pub(crate) const MAX_PAGE: u32 = 1000;

/// Channel secrets, for the key check, the clear-text migration and rotation. The context is
/// [`channel_context`] in SQL.
pub(crate) const CHANNEL_SECRETS: SealedColumn = SealedColumn {
    table: "alert_channel_settings",
    select: "SELECT s.rowid, 'alert_channel/' || CAST(s.channel_id AS TEXT) || '/' || s.key, s.value
        FROM alert_channel_settings s WHERE s.secret = TRUE AND s.sealed = $1",
    update: "UPDATE alert_channel_settings SET value = $1, sealed = TRUE WHERE rowid = $2",
};

/// What a channel's secret setting is sealed for: the channel's id and the setting's name.
pub(crate) fn channel_context(channel_id: i64, key: &str) -> String {
    context("alert_channel", &[&channel_id.to_string(), key])
}
