//! What the backup tests share: a plugin version with a component, config and a sealed secret, and
//! re-packing an archive the way a damaged or foreign one would look.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::Path;

use plugwatch_backup::Manifest;
use plugwatch_model::Limits;
use plugwatch_store::{Artifacts, FailurePolicy, NewVersion, Store};

/// Stores version `1.0.<n>` of `plugin` (a component of its own; config `region`; secret `api_key` =
/// `s3cr3t-<plugin>-<n>`); returns the component's sha256.
pub async fn version(store: &Store, artifacts: &Artifacts, plugin: &str, n: usize, activate: bool) -> String {
    let component = format!("component {plugin} {n}").into_bytes();
    let sha256 = artifacts.put(&component).unwrap();
    let v = NewVersion {
        plugin: plugin.into(),
        version: format!("1.0.{n}"),
        sha256: sha256.clone(),
        size: component.len() as u64,
        description: Some(format!("<b>{plugin}</b> release {n}")),
        failure_policy: FailurePolicy::FailOpen,
        limits: Limits::default(),
        hooks: vec![],
        config: [("region".to_owned(), format!("kr-{n}"))].into(),
        secrets: [("api_key".to_owned(), format!("s3cr3t-{plugin}-{n}").as_str().into())].into(),
    };
    store.insert_version(&v, activate).await.unwrap();
    sha256
}

/// Re-packs an archive, changing its manifest and, with `corrupt`, the content of its artifacts.
pub fn repack(src: &Path, dst: &Path, edit: impl FnOnce(&mut Manifest), corrupt: bool) {
    let mut archive = tar::Archive::new(zstd::Decoder::new(std::fs::File::open(src).unwrap()).unwrap());
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        members.push((name, content));
    }
    let mut manifest: Manifest = serde_json::from_slice(&members[0].1).unwrap();
    edit(&mut manifest);
    members[0].1 = serde_json::to_vec(&manifest).unwrap();
    let out = zstd::Encoder::new(std::fs::File::create(dst).unwrap(), 3).unwrap();
    let mut builder = tar::Builder::new(out);
    for (name, mut content) in members {
        if corrupt && name.ends_with(".wasm") {
            content[0] ^= 1;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_cksum();
        builder.append_data(&mut header, name, content.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}
