//! Backup endpoints (admins only: an archive holds every user, token hash and sealed secret): list with
//! the schedule's state, take one now, inspect, verify, download, delete, and restore into the running
//! server — staged and verified while it serves, then finished by an in-place restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use plugwatch_access::{AuditEntry, AuditResult, Principal};
use plugwatch_backup::{BackupInfo, Reason, Restored};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiErrors;
use crate::AppState;
use crate::auth::AuditTarget;
use crate::dto::rfc3339_secs;
use crate::error::ApiError;
use crate::extract::ApiPath;

/// A backup as listed.
#[derive(Serialize, ToSchema)]
pub struct BackupDto {
    /// The archive's file name.
    pub id: String,
    pub created_at: String,
    /// `manual`, `scheduled` or `pre_restore` (the state a restore replaced).
    pub reason: String,
    /// Compressed size.
    pub size_bytes: u64,
    pub product_version: String,
    pub schema_version: i64,
    /// The key its secrets are sealed with (an id, never the key).
    pub secret_key_id: Option<String>,
    /// Rows per kind of data.
    pub counts: BTreeMap<String, i64>,
    /// The database and the plugin artifacts, uncompressed.
    pub database_bytes: u64,
    pub artifacts: usize,
}

impl From<&BackupInfo> for BackupDto {
    fn from(b: &BackupInfo) -> Self {
        let m = &b.manifest;
        BackupDto {
            id: b.id.clone(),
            created_at: rfc3339_secs(m.created_at as i64),
            reason: m.reason.as_str().to_owned(),
            size_bytes: b.size,
            product_version: m.product_version.clone(),
            schema_version: m.schema_version,
            secret_key_id: m.secret_key_id.clone(),
            counts: m.counts.clone(),
            database_bytes: m.members.iter().filter(|x| x.name == "plugwatch.db").map(|x| x.size).sum(),
            artifacts: m.members.iter().filter(|x| x.name.starts_with("artifacts/")).count(),
        }
    }
}

/// The schedule and what it did last.
#[derive(Serialize, ToSchema)]
pub struct ScheduleDto {
    pub enabled: bool,
    pub interval_secs: u64,
    pub keep_last: u32,
    pub keep_days: u32,
    pub next_due_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    pub last_error: Option<String>,
    /// Scheduled backups failed in a row (the `backup_failures` alert metric).
    pub consecutive_failures: u32,
}

/// The backups, newest first.
#[derive(Serialize, ToSchema)]
pub struct BackupListDto {
    /// `local:<dir>` or `s3://<bucket>/<prefix>`.
    pub destination: String,
    pub schedule: ScheduleDto,
    pub backups: Vec<BackupDto>,
    /// Why the destination could not be listed (the schedule's state is still shown), if it could not.
    pub problem: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/backups", tag = "backups", responses((status = 200, body = BackupListDto), ApiErrors))]
pub async fn list(State(state): State<AppState>) -> Result<Json<BackupListDto>, ApiError> {
    let (backups, problem) = match state.backups.list().await {
        Ok(backups) => (backups, None),
        Err(error) => {
            tracing::warn!(message = "Cannot list the backups.", %error);
            (Vec::new(), Some(error.to_string()))
        }
    };
    let (config, status) = (state.backups.config(), state.backups.status());
    Ok(Json(BackupListDto {
        destination: state.backups.describe(),
        schedule: ScheduleDto {
            enabled: config.enabled,
            interval_secs: config.interval_secs,
            keep_last: config.keep_last,
            keep_days: config.keep_days,
            next_due_at: status.next_due_at.filter(|_| config.enabled).map(|s| rfc3339_secs(s as i64)),
            last_success_at: status.last_success_at.map(|s| rfc3339_secs(s as i64)),
            last_failure_at: status.last_failure_at.map(|s| rfc3339_secs(s as i64)),
            last_error: status.last_error,
            consecutive_failures: status.consecutive_failures,
        },
        backups: backups.iter().map(BackupDto::from).collect(),
        problem,
    }))
}

/// Takes a backup now (while the server keeps serving) and answers when it is complete.
#[utoipa::path(post, path = "/api/v1/backups", tag = "backups", responses((status = 201, body = BackupDto), ApiErrors))]
pub async fn create(State(state): State<AppState>) -> Result<Response, ApiError> {
    let info = state.backups.create(state.registry.store(), Reason::Manual).await?;
    let mut response = (StatusCode::CREATED, Json(BackupDto::from(&info))).into_response();
    response.extensions_mut().insert(AuditTarget(info.id));
    Ok(response)
}

/// A member of an archive.
#[derive(Serialize, ToSchema)]
pub struct MemberDto {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// A backup's manifest.
#[derive(Serialize, ToSchema)]
pub struct BackupDetailDto {
    #[serde(flatten)]
    pub backup: BackupDto,
    pub members: Vec<MemberDto>,
}

#[utoipa::path(get, path = "/api/v1/backups/{id}", tag = "backups", params(("id" = String, Path)),
    responses((status = 200, body = BackupDetailDto), ApiErrors))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BackupDetailDto>, ApiError> {
    let info = state.backups.get(&id).await?;
    let members = info
        .manifest
        .members
        .iter()
        .map(|m| MemberDto { name: m.name.clone(), size: m.size, sha256: m.sha256.clone() })
        .collect();
    Ok(Json(BackupDetailDto { backup: BackupDto::from(&info), members }))
}

#[utoipa::path(delete, path = "/api/v1/backups/{id}", tag = "backups", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), ApiErrors))]
pub async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.backups.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a verification checked.
#[derive(Serialize, ToSchema)]
pub struct VerifiedDto {
    pub id: String,
    /// Members whose size and sha256 match the manifest.
    pub members: usize,
    pub bytes: u64,
    /// SQLite's integrity check on the database passed.
    pub integrity: bool,
}

/// Checks every member's size and sha256 and the database's integrity; 422 with the reason otherwise.
#[utoipa::path(post, path = "/api/v1/backups/{id}/verify", tag = "backups", params(("id" = String, Path)),
    responses((status = 200, body = VerifiedDto), ApiErrors))]
pub async fn verify(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<VerifiedDto>, ApiError> {
    let verified = state.backups.verify(&id).await?;
    Ok(Json(VerifiedDto { id, members: verified.members, bytes: verified.bytes, integrity: true }))
}

/// The archive itself (`application/zstd`, a tar inside).
#[utoipa::path(get, path = "/api/v1/backups/{id}/download", tag = "backups", params(("id" = String, Path)),
    responses((status = 200, description = "The archive", content_type = "application/zstd"), ApiErrors))]
pub async fn download(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let fetched = state.backups.fetch(&id).await?;
    let file = tokio::fs::File::open(&fetched.path).await.map_err(|e| crate::error::internal(&e))?;
    let length = file.metadata().await.map_err(|e| crate::error::internal(&e))?.len();
    // The guard (a downloaded copy, for S3) lives as long as the body streams.
    let stream = tokio_util::io::ReaderStream::new(file);
    let stream = futures::StreamExt::map(stream, move |chunk| {
        let _keep = &fetched;
        chunk
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// What a restore restored; the server restarts in place to finish it.
#[derive(Serialize, ToSchema)]
pub struct RestoredDto {
    pub restored_from: String,
    pub created_at: String,
    /// The archive's schema, and the one it was migrated to.
    pub schema_from: i64,
    pub schema_to: i64,
    /// Rows per kind of data now in place.
    pub counts: BTreeMap<String, i64>,
    pub artifacts: usize,
    /// The backup of the state it replaced.
    pub safety_backup: Option<String>,
    /// The server restarts to swap the restored state in: it answers again within seconds.
    pub restarting: bool,
}

impl From<Restored> for RestoredDto {
    fn from(r: Restored) -> Self {
        RestoredDto {
            restored_from: r.archive,
            created_at: rfc3339_secs(r.created_at as i64),
            schema_from: r.schema_from,
            schema_to: r.schema_to,
            counts: r.counts,
            artifacts: r.artifacts,
            safety_backup: r.safety_backup,
            restarting: true,
        }
    }
}

/// Restores a backup into the running server: verifies every checksum, the database's integrity, the
/// versions and the secret key, and migrates an older archive, all before touching live data; takes a
/// safety backup of the current state; then restarts in place to swap the restored state in atomically.
/// Changes made between this answer and the restart are discarded with the state they were made to.
#[utoipa::path(post, path = "/api/v1/backups/{id}/restore", tag = "backups", params(("id" = String, Path)),
    responses((status = 202, body = RestoredDto), ApiErrors))]
pub async fn restore(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    if state.registry.store().is_shared() {
        // An unknown or malformed id is that first (404), on a cluster too.
        state.backups.get(&id).await?;
        // Every replica serves from the database: they must all stop before it is replaced.
        return Err(plugwatch_store::StoreError::Unsupported(
            "restoring into a running cluster: stop every replica, then run `plugwatch backup restore` with \
             the database URL",
        )
        .into());
    }
    let keys = state.config.key_source().map_err(|e| crate::error::internal(&e))?;
    let entry = |result, detail| AuditEntry {
        actor: Some(principal.clone()),
        action: "backup.restore".to_owned(),
        target: id.clone(),
        source: Some(peer.ip().to_string()),
        result,
        detail: Some(detail),
    };
    let access_config = state.config.access.access_config();
    let restored = state
        .backups
        .restore(Some(state.registry.store()), &id, keys, |staged, restored| {
            // Recorded in the restored database: an entry in the replaced one would be lost with it.
            let entry = entry(AuditResult::Ok, summary(restored));
            async move { plugwatch_access::Access::new(staged, access_config).record(entry).await.map_err(Into::into) }
        })
        .await;
    match restored {
        Ok(restored) => {
            state.request_restart();
            Ok((StatusCode::ACCEPTED, Json(RestoredDto::from(restored))).into_response())
        }
        Err(error) => {
            let api = ApiError::from(error);
            if let Err(e) = state.access.record(entry(AuditResult::Failed, api.message().to_owned())).await {
                tracing::error!(message = "Cannot write to the audit log.", error = %e);
            }
            Err(api)
        }
    }
}

/// `from <archive> (schema a→b): 3 plugins, …; safety backup <id>`.
fn summary(r: &Restored) -> String {
    let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    format!(
        "from {} taken {} (schema {}→{}): {}",
        r.archive,
        rfc3339_secs(r.created_at as i64),
        r.schema_from,
        r.schema_to,
        counts.join(", ")
    )
}
