//! Plugin components on disk, content-addressed: `artifacts/ab/abcdef….wasm`, written atomically and
//! checked against their hash when read. The `artifacts` directory is created once, when the store is
//! opened; a later write never recreates it (or the data directory above it) if it has been deleted.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Result, StoreError};

#[derive(Clone, Debug)]
pub struct Artifacts {
    dir: PathBuf,
}

impl Artifacts {
    pub fn new(data_dir: &Path) -> Result<Artifacts> {
        let dir = data_dir.join("artifacts");
        std::fs::create_dir_all(&dir)?;
        Ok(Artifacts { dir })
    }

    fn path(&self, sha256: &str) -> Result<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(StoreError::BadArtifact(sha256.to_owned()));
        }
        Ok(self.dir.join(&sha256[..2]).join(format!("{sha256}.wasm")))
    }

    /// Stores `bytes` under their sha256 (a no-op when already present) and returns the hash. Fails with
    /// [`StoreError::DirectoryGone`] if the artifacts directory no longer exists.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha256)?;
        if !path.exists() {
            // Only the one-level shard directory is made here, never its parents.
            match std::fs::create_dir(path.parent().expect("artifact paths have a parent")) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::DirectoryGone(self.dir.clone()));
                }
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e.into()),
                _ => {}
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(sha256)
    }

    /// Reads the artifact with this hash, refusing it if its content no longer matches.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>> {
        let bytes = std::fs::read(self.path(sha256)?).map_err(|_| StoreError::BadArtifact(sha256.to_owned()))?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(StoreError::BadArtifact(sha256.to_owned()));
        }
        Ok(bytes)
    }

    /// Whether the artifact with this hash is here (not checked: [`Artifacts::get`] checks it).
    pub fn has(&self, sha256: &str) -> bool {
        self.path(sha256).is_ok_and(|p| p.exists())
    }

    /// Removes the artifact with this hash, if present.
    pub fn remove(&self, sha256: &str) -> Result<()> {
        match std::fs::remove_file(self.path(sha256)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::new(dir.path()).unwrap();
        let sha = artifacts.put(b"\0asm component").unwrap();
        assert_eq!(artifacts.put(b"\0asm component").unwrap(), sha, "idempotent");
        assert_eq!(artifacts.get(&sha).unwrap(), b"\0asm component");
        std::fs::write(dir.path().join("artifacts").join(&sha[..2]).join(format!("{sha}.wasm")), b"tampered").unwrap();
        assert!(matches!(artifacts.get(&sha), Err(StoreError::BadArtifact(_))));
        assert!(matches!(artifacts.get("../../etc/passwd"), Err(StoreError::BadArtifact(_))));
    }

    #[test]
    fn a_deleted_data_directory_is_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let artifacts = Artifacts::new(&data).unwrap();
        std::fs::remove_dir_all(&data).unwrap();
        let error = artifacts.put(b"\0asm component").unwrap_err();
        assert!(matches!(&error, StoreError::DirectoryGone(path) if *path == data.join("artifacts")), "{error}");
        assert!(error.to_string().contains("no longer exists"), "{error}");
        assert!(!data.exists(), "the data directory stays deleted");
    }
}
