//! The queries for plugins, their versions, subscriptions and configuration (compiled once per database,
//! see `backend.rs`).

use crate::secrets::{SecretError, context};
use crate::{NewVersion, PluginRecord, Result, StoreError, Stored, Subscription, VersionRecord, unix};
use plugwatch_model::Limits;
use sqlx::Row;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{Conn, Db, DbRow};
#[allow(unused_imports)]
use crate::plugins::*;

impl Db {
    /// Stores a new version (creating the plugin on its first version, which becomes active), and with
    /// `activate` makes it the active version, in one transaction. The same name, version and hash again
    /// stores nothing (but is still activated if asked); the same name and version with another hash is
    /// refused.
    pub async fn insert_version(&self, v: &NewVersion, activate: bool) -> Result<Stored> {
        let now = unix(SystemTime::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO plugins (name, created_at, updated_at) VALUES ($1, $2, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&v.plugin)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (plugin_id, active): (i64, Option<i64>) =
            sqlx::query_as("SELECT id, active_version_id FROM plugins WHERE name = $1")
                .bind(&v.plugin)
                .fetch_one(&mut *tx)
                .await?;
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT sha256 FROM plugin_versions WHERE plugin_id = $1 AND version = $2")
                .bind(plugin_id)
                .bind(&v.version)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((sha256,)) = existing {
            if sha256 == v.sha256 {
                if activate {
                    activate_in(&mut tx, plugin_id, &v.plugin, &v.version).await?;
                    tx.commit().await?;
                }
                return Ok(Stored::AlreadyPresent);
            }
            return Err(StoreError::VersionConflict {
                plugin: v.plugin.clone(),
                version: v.version.clone(),
                existing: sha256,
            });
        }
        let l = &v.limits;
        let version_id: i64 = sqlx::query(
            "INSERT INTO plugin_versions (plugin_id, version, sha256, size, description, failure_policy, timeout_us, fuel,
                memory_bytes, max_input_bytes, max_output_bytes, max_log_bytes, max_concurrency, max_queue, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        )
        .bind(plugin_id)
        .bind(&v.version)
        .bind(&v.sha256)
        .bind(v.size as i64)
        .bind(&v.description)
        .bind(v.failure_policy.as_str())
        .bind(l.timeout.as_micros() as i64)
        .bind(l.fuel.map(|f| f as i64))
        .bind(l.memory_bytes as i64)
        .bind(l.max_input_bytes as i64)
        .bind(l.max_output_bytes as i64)
        .bind(l.max_log_bytes as i64)
        .bind(i64::from(l.max_concurrency))
        .bind(i64::from(l.max_queue))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        for s in &v.hooks {
            sqlx::query("INSERT INTO subscriptions (version_id, hook, priority) VALUES ($1, $2, $3)")
                .bind(version_id)
                .bind(&s.hook)
                .bind(s.priority)
                .execute(&mut *tx)
                .await?;
        }
        for (key, value) in &v.config {
            sqlx::query(
                "INSERT INTO plugin_config (version_id, key, value, secret, sealed) VALUES ($1, $2, $3, FALSE, FALSE)",
            )
            .bind(version_id)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        for (key, value) in &v.secrets {
            let sealed = self.seal(&secret_context(&v.plugin, &v.version, key), value)?;
            sqlx::query(
                "INSERT INTO plugin_config (version_id, key, value, secret, sealed) VALUES ($1, $2, $3, TRUE, TRUE)",
            )
            .bind(version_id)
            .bind(key)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        }
        let activated = active.is_none() || activate;
        if activated {
            activate_in(&mut tx, plugin_id, &v.plugin, &v.version).await?;
        }
        tx.commit().await?;
        Ok(Stored::Created { activated })
    }

    /// Every plugin, by name.
    pub async fn plugins(&self) -> Result<Vec<PluginRecord>> {
        let rows = sqlx::query(&format!("{PLUGIN_SELECT} ORDER BY p.name")).fetch_all(&self.pool).await?;
        rows.iter().map(plugin_record).collect()
    }

    pub async fn plugin(&self, name: &str) -> Result<PluginRecord> {
        let row = sqlx::query(&format!("{PLUGIN_SELECT} WHERE p.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::UnknownPlugin(name.to_owned()))?;
        plugin_record(&row)
    }

    /// A plugin's versions, oldest first.
    pub async fn versions(&self, plugin: &str) -> Result<Vec<VersionRecord>> {
        let rows = sqlx::query(&format!("{VERSION_SELECT} WHERE p.name = $1 ORDER BY v.id"))
            .bind(plugin)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.version_record(row).await?);
        }
        Ok(out)
    }

    pub async fn version(&self, plugin: &str, version: &str) -> Result<VersionRecord> {
        let row = sqlx::query(&format!("{VERSION_SELECT} WHERE p.name = $1 AND v.version = $2"))
            .bind(plugin)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::UnknownVersion { plugin: plugin.to_owned(), version: version.to_owned() })?;
        self.version_record(&row).await
    }

    /// Makes `version` the active one; the one it replaces becomes the rollback target.
    pub async fn activate(&self, plugin: &str, version: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let (plugin_id,): (i64,) = sqlx::query_as("SELECT id FROM plugins WHERE name = $1")
            .bind(plugin)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::UnknownPlugin(plugin.to_owned()))?;
        activate_in(&mut tx, plugin_id, plugin, version).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Swaps the active version with the previous one; returns the version now active.
    pub async fn rollback(&self, plugin: &str) -> Result<String> {
        let record = self.plugin(plugin).await?;
        let previous = record.previous_version.ok_or_else(|| StoreError::NoPreviousVersion(plugin.to_owned()))?;
        self.activate(plugin, &previous).await?;
        Ok(previous)
    }

    pub async fn set_enabled(&self, plugin: &str, enabled: bool) -> Result<()> {
        let done = sqlx::query("UPDATE plugins SET enabled = $1, updated_at = $2 WHERE name = $3")
            .bind(enabled)
            .bind(unix(SystemTime::now()))
            .bind(plugin)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownPlugin(plugin.to_owned()));
        }
        Ok(())
    }

    /// Deletes a plugin with its versions, telemetry and run log; returns the hashes its versions used.
    pub async fn delete_plugin(&self, plugin: &str) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let hashes: Vec<(String,)> = sqlx::query_as(
            "SELECT v.sha256 FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id WHERE p.name = $1",
        )
        .bind(plugin)
        .fetch_all(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM plugins WHERE name = $1").bind(plugin).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownPlugin(plugin.to_owned()));
        }
        sqlx::query("DELETE FROM rollups WHERE series_id IN (SELECT id FROM series WHERE plugin = $1)")
            .bind(plugin)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM ten_second_sketches WHERE series_id IN (SELECT id FROM series WHERE plugin = $1)")
            .bind(plugin)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM series WHERE plugin = $1").bind(plugin).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM runs WHERE plugin = $1").bind(plugin).execute(&mut *tx).await?;
        tx.commit().await?;
        self.series.lock().unwrap_or_else(|e| e.into_inner()).retain(|(p, _), _| p != plugin);
        // A hash still used by another plugin's version stays on disk.
        let mut unused = Vec::new();
        for (sha256,) in hashes {
            let (users,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM plugin_versions WHERE sha256 = $1")
                .bind(&sha256)
                .fetch_one(&self.pool)
                .await?;
            if users == 0 {
                unused.push(sha256);
            }
        }
        Ok(unused)
    }

    async fn version_record(&self, row: &DbRow) -> Result<VersionRecord> {
        let id: i64 = row.get("id");
        let hooks: Vec<(String, i64)> =
            sqlx::query_as("SELECT hook, priority FROM subscriptions WHERE version_id = $1 ORDER BY priority, hook")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let pairs: Vec<(String, String, bool, bool)> =
            sqlx::query_as("SELECT key, value, secret, sealed FROM plugin_config WHERE version_id = $1 ORDER BY key")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let (plugin, version): (String, String) = (row.get("name"), row.get("version"));
        let (mut config, mut secrets) = (BTreeMap::new(), BTreeMap::new());
        for (key, value, secret, sealed) in pairs {
            if !secret {
                config.insert(key, value);
                continue;
            }
            let context = secret_context(&plugin, &version, &key);
            if !sealed {
                // Sealed on open; a clear row now was written behind the store's back.
                return Err(SecretError::Malformed { context, reason: "it is stored in clear" }.into());
            }
            let value = self.unseal(&context, &value)?;
            secrets.insert(key, value);
        }
        let policy: String = row.get("failure_policy");
        Ok(VersionRecord {
            plugin,
            version,
            sha256: row.get("sha256"),
            size: row.get::<i64, _>("size") as u64,
            description: row.get("description"),
            failure_policy: policy.parse().map_err(StoreError::Corrupt)?,
            limits: Limits {
                timeout: Duration::from_micros(row.get::<i64, _>("timeout_us") as u64),
                fuel: row.get::<Option<i64>, _>("fuel").map(|f| f as u64),
                memory_bytes: row.get::<i64, _>("memory_bytes") as u64,
                max_input_bytes: row.get::<i64, _>("max_input_bytes") as usize,
                max_output_bytes: row.get::<i64, _>("max_output_bytes") as usize,
                max_log_bytes: row.get::<i64, _>("max_log_bytes") as usize,
                max_concurrency: row.get::<i64, _>("max_concurrency") as u32,
                max_queue: row.get::<i64, _>("max_queue") as u32,
            },
            hooks: hooks
                .into_iter()
                .map(|(hook, priority)| {
                    let priority = i32::try_from(priority)
                        .map_err(|_| StoreError::Corrupt(format!("subscriptions.priority {priority}")))?;
                    Ok(Subscription { hook, priority })
                })
                .collect::<Result<_>>()?,
            config,
            secrets,
            created_at: row.get("created_at"),
        })
    }
}

/// Makes `version` of `plugin` (whose id is `plugin_id`) the active one inside a transaction; the one it
/// replaces becomes the rollback target.
async fn activate_in(tx: &mut Conn, plugin_id: i64, plugin: &str, version: &str) -> Result<()> {
    let (version_id, active): (i64, Option<i64>) = sqlx::query_as(
        "SELECT v.id, p.active_version_id FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id
         WHERE v.plugin_id = $1 AND v.version = $2",
    )
    .bind(plugin_id)
    .bind(version)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::UnknownVersion { plugin: plugin.to_owned(), version: version.to_owned() })?;
    if active != Some(version_id) {
        sqlx::query(
            "UPDATE plugins SET previous_version_id = active_version_id, active_version_id = $1, updated_at = $2
             WHERE id = $3",
        )
        .bind(version_id)
        .bind(unix(SystemTime::now()))
        .bind(plugin_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// What a secret config value is sealed for: its plugin, version and key.
fn secret_context(plugin: &str, version: &str, key: &str) -> String {
    context("plugin_config", &[plugin, version, key])
}

const PLUGIN_SELECT: &str = "SELECT p.name, p.enabled, p.created_at, p.updated_at,
        a.version AS active_version, b.version AS previous_version
    FROM plugins p
    LEFT JOIN plugin_versions a ON a.id = p.active_version_id
    LEFT JOIN plugin_versions b ON b.id = p.previous_version_id";

const VERSION_SELECT: &str = "SELECT v.*, p.name FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id";

fn plugin_record(row: &DbRow) -> Result<PluginRecord> {
    Ok(PluginRecord {
        name: row.get("name"),
        enabled: row.get("enabled"),
        active_version: row.get("active_version"),
        previous_version: row.get("previous_version"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}
