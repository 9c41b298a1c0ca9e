//! Backups through the API, end to end: taken while serving, listed, inspected, verified, downloaded
//! byte for byte, deleted; a restore into the running server reports what it restored, keeps a safety
//! backup, and is audited in the restored history; a damaged archive is refused and audited; a failed
//! scheduled backup fires the backup alert through a real notification channel.

use std::time::Duration;

use serde_json::{Value, json};

use crate::alerts::Receiver;
use crate::support::*;

async fn audit(server: &TestServer, action: &str) -> Vec<Value> {
    let (status, page) = server.get(&format!("/api/v1/audit?action={action}")).await;
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_backup_is_taken_listed_inspected_verified_downloaded_and_deleted() {
    let server = TestServer::start_with(|c| c.backup.enabled = false).await;
    assert_eq!(server.upload(manifest("echo", "1.0.0", &[("order.created", 0)]), echo()).await.0, 201);
    assert_eq!(server.invoke("echo", "order.created", json!({"order": 1})).await.0, 200);

    let (status, taken) = server.post_empty("/api/v1/backups").await;
    assert_eq!(status, 201, "{taken}");
    let id = taken["id"].as_str().unwrap().to_owned();
    assert_eq!(taken["reason"], "manual");
    assert_eq!(taken["counts"]["plugins"], 1);
    assert_eq!(taken["counts"]["users"], 1);
    assert_eq!(taken["artifacts"], 1);

    let (_, list) = server.get("/api/v1/backups").await;
    assert!(list["destination"].as_str().unwrap().starts_with("local:"), "{list}");
    assert_eq!(list["schedule"]["enabled"], false);
    assert_eq!(list["schedule"]["next_due_at"], Value::Null);
    assert_eq!(list["backups"].as_array().unwrap().len(), 1);
    assert_eq!(list["backups"][0]["id"], id.as_str());

    let (status, detail) = server.get(&format!("/api/v1/backups/{id}")).await;
    assert_eq!(status, 200, "{detail}");
    let members = detail["members"].as_array().unwrap();
    assert_eq!(members[0]["name"], "plugwatch.db");
    assert!(members[1]["name"].as_str().unwrap().starts_with("artifacts/"));

    let (status, verified) = server.post_empty(&format!("/api/v1/backups/{id}/verify")).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["members"], members.len());
    assert_eq!(verified["integrity"], true);

    // The download is the archive, byte for byte, with its manifest.
    let response = server.client.get(server.url(&format!("/api/v1/backups/{id}/download"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zstd");
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains(&id));
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, taken["size_bytes"].as_u64().unwrap());
    let downloaded = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(downloaded.path(), &bytes).unwrap();
    let manifest = plugwatch_backup::inspect(downloaded.path()).unwrap();
    assert_eq!(manifest.members.len(), members.len());
    assert_eq!(manifest.members[0].sha256, members[0]["sha256"].as_str().unwrap());

    // Ids are names in the destination, never paths.
    for bad in ["..%2Fplugwatch.db", "plugwatch.db", "nothing-here.tar.zst"] {
        assert_eq!(server.get(&format!("/api/v1/backups/{bad}")).await.0, 404, "{bad}");
        assert_eq!(server.post_empty(&format!("/api/v1/backups/{bad}/restore")).await.0, 404, "{bad}");
    }
    assert_eq!(server.delete(&format!("/api/v1/backups/{id}")).await.0, 204);
    assert_eq!(server.delete(&format!("/api/v1/backups/{id}")).await.0, 404);
    assert_eq!(server.get(&format!("/api/v1/backups/{id}")).await.0, 404);
    assert_eq!(audit(&server, "backup.create").await[0]["target"], id.as_str());
    assert_eq!(audit(&server, "backup.delete").await.len(), 2, "the refused second delete too");
    server.stop().await;
}

#[tokio::test]
async fn a_restore_into_the_running_server_reports_what_it_restored_and_is_audited_in_the_restored_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path().to_owned(), |c| c.backup.enabled = false).await;
    assert_eq!(server.upload(manifest("echo", "1.0.0", &[("order.created", 0)]), echo()).await.0, 201);
    let (_, taken) = server.post_empty("/api/v1/backups").await;
    let id = taken["id"].as_str().unwrap().to_owned();
    assert_eq!(server.upload(manifest("prefixer", "1.0.0", &[("order.created", 0)]), prefixer()).await.0, 201);

    // A damaged archive in the destination is refused with the reason, audited, and changes nothing.
    let archive = dir.path().join("backups").join(&id);
    let mut bytes = std::fs::read(&archive).unwrap();
    let damaged = id.replace(".tar.zst", "-1.tar.zst");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(dir.path().join("backups").join(&damaged), &bytes).unwrap();
    let (status, refused) = server.post_empty(&format!("/api/v1/backups/{damaged}/restore")).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "backup_invalid");
    let failed = audit(&server, "backup.restore").await;
    assert_eq!(failed[0]["result"], "failed");
    assert_eq!(failed[0]["target"], damaged.as_str());
    assert_eq!(server.get("/api/v1/plugins").await.1["plugins"].as_array().unwrap().len(), 2);
    std::fs::remove_file(dir.path().join("backups").join(&damaged)).unwrap();

    let (status, restored) = server.post_empty(&format!("/api/v1/backups/{id}/restore")).await;
    assert_eq!(status, 202, "{restored}");
    assert_eq!(restored["restored_from"], id.as_str());
    assert_eq!(restored["counts"]["plugins"], 1);
    assert_eq!(restored["artifacts"], 1);
    assert_eq!(restored["restarting"], true);
    let safety = restored["safety_backup"].as_str().unwrap().to_owned();
    // The server stops by itself to swap the restored state in; the binary binds again (see the `serve`
    // tests); here the next start does.
    server.stop().await;
    let server = TestServer::start_in(dir.path().to_owned(), |c| c.backup.enabled = false).await;
    let (_, plugins) = server.get("/api/v1/plugins").await;
    let names: Vec<&str> = plugins["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo"], "the backup's state is live");
    assert_eq!(server.invoke("echo", "order.created", json!({"order": 2})).await.0, 200);
    let entries = audit(&server, "backup.restore").await;
    assert_eq!(entries[0]["result"], "ok", "{entries:?}");
    assert_eq!(entries[0]["actor"], "admin-tests", "the admin's token");
    assert!(entries[0]["detail"].as_str().unwrap().contains(&id), "{entries:?}");
    let (_, list) = server.get("/api/v1/backups").await;
    let safety = list["backups"].as_array().unwrap().iter().find(|b| b["id"] == safety.as_str()).unwrap().clone();
    assert_eq!(safety["reason"], "pre_restore");
    assert_eq!(safety["counts"]["plugins"], 2, "the replaced state is kept");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_scheduled_backup_fires_the_backup_alert_through_a_channel() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("elsewhere");
    let server = TestServer::start_in(dir.path().join("data"), |c| {
        c.alerts.interval_secs = 1;
        c.backup.first_after_secs = 2;
        c.backup.dir = Some(backups.clone());
    })
    .await;
    let (status, channel) = server
        .post(
            "/api/v1/alerts/channels",
            json!({
                "name": "ops", "kind": "webhook", "group_wait_secs": 0,
                "secrets": {"url": format!("{}/hooks/ops", receiver.url)}
            }),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    // The destination becomes unwritable before the first scheduled backup.
    std::fs::remove_dir_all(&backups).unwrap();
    std::fs::write(&backups, b"not a directory").unwrap();

    let got = receiver
        .wait_for("/hooks/ops", 1, Duration::from_secs(60), |r| r.text().contains("Scheduled backup failed"))
        .await;
    let message = got[0].json();
    assert_eq!(message["status"], "firing", "{message}");
    let (_, list) = server.get("/api/v1/backups").await;
    assert!(list["schedule"]["consecutive_failures"].as_u64().unwrap() >= 1, "{list}");
    let error = list["schedule"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("backup destination") && error.contains("elsewhere"), "the path is named: {list}");
    let retry = humantime::parse_rfc3339_weak(list["schedule"]["next_due_at"].as_str().unwrap()).unwrap();
    let failed = humantime::parse_rfc3339_weak(list["schedule"]["last_failure_at"].as_str().unwrap()).unwrap();
    assert_eq!(retry.duration_since(failed).unwrap(), plugwatch_backup::backups::RETRY_AFTER_FAILURE);
    assert!(list["problem"].as_str().is_some_and(|p| p.contains("elsewhere")), "the listing says why: {list}");
    let entries = audit(&server, "backup.scheduled").await;
    assert_eq!(entries.last().unwrap()["result"], "failed");
    server.stop().await;
}
