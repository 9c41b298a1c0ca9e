//! Backups in S3-compatible object storage (AWS S3, MinIO, Ceph, moto and others): the same archives
//! as on disk, one object per archive, `<prefix>plugwatch-backup-<UTC time>.tar.zst`.
//!
//! An archive goes up as a multipart upload read from the local file part by part (a small one as a
//! single put), so it is never held in memory whole; S3 shows an object only once the upload completes,
//! and a failed upload is aborted, so a backup that died part-way is never listed. A download streams
//! into `<local>.partial`, is fsynced and renamed, like a local backup.
//!
//! Credentials never appear in [`S3Config`], in an error or in Debug output: [`S3::new`] takes them
//! from the environment as the AWS tools do, [`S3::with_credentials`] from its caller.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{PREFIX, SUFFIX};

/// The size of each part of a multipart upload (S3 allows 10,000 parts: archives up to ~80 GB).
pub const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once during an upload (memory held: about this many parts plus one).
const PARTS_IN_FLIGHT: usize = 2;
/// Retries of one failed request (connection errors, 5xx, throttling), with exponential backoff, as
/// the AWS SDKs' standard mode does.
const RETRIES: usize = 3;
/// The most time spent retrying one request.
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an S3 operation failed. No variant holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// A field of [`S3Config`] is invalid.
    #[error("S3 configuration: `{field}` {problem}")]
    InvalidConfig { field: &'static str, problem: String },
    /// The id is not an archive's file name.
    #[error("`{id}` is not a backup archive name ({PREFIX}<time>{SUFFIX})")]
    InvalidId { id: String },
    /// No such archive in the bucket.
    #[error("no backup `{id}` in S3")]
    NotFound { id: String },
    /// The object store (or the network to it) failed. The message ends with the root cause (such as
    /// "Connection refused"), which object_store's own message leaves out.
    #[error("S3 bucket {bucket}: {}", with_root_cause(source))]
    Store {
        bucket: String,
        #[source]
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `error`'s message, then that of its innermost source when there is one.
fn with_root_cause(error: &object_store::Error) -> String {
    let mut root: &dyn std::error::Error = error;
    while let Some(next) = root.source() {
        root = next;
    }
    let (message, cause) = (error.to_string(), root.to_string());
    if std::ptr::addr_eq(root, error) || message.contains(&cause) { message } else { format!("{message} ({cause})") }
}

/// Where archives go in S3-compatible storage. Credentials are never here: they come from the
/// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN), like the AWS tools.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix, e.g. "plugwatch/" (may be empty). Normalised to end with '/' when non-empty.
    #[serde(default)]
    pub prefix: String,
    /// Region [default "us-east-1"].
    #[serde(default = "default_region")]
    pub region: String,
    /// For MinIO, moto, Ceph and others: e.g. "http://127.0.0.1:9000". Path-style addressing is used when set.
    #[serde(default)]
    pub endpoint: Option<String>,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

impl S3Config {
    /// Checks the fields (bucket non-empty and a valid bucket name; endpoint a valid http(s) URL) and
    /// returns an error naming the field.
    pub fn validate(&self) -> Result<(), S3Error> {
        let invalid = |field, problem: &str| Err(S3Error::InvalidConfig { field, problem: problem.to_owned() });
        if let Some(problem) = bucket_problem(&self.bucket) {
            return invalid("bucket", &problem);
        }
        if let Some(problem) = prefix_problem(&self.prefix) {
            return invalid("prefix", &problem);
        }
        if self.region.is_empty()
            || !self.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return invalid("region", "must be a region name such as us-east-1");
        }
        if let Some(endpoint) = &self.endpoint
            && let Some(problem) = endpoint_problem(endpoint)
        {
            return invalid("endpoint", &problem);
        }
        Ok(())
    }

    /// "s3://bucket/prefix" for display.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, normalised_prefix(&self.prefix))
    }
}

/// What is wrong with a bucket name, by S3's rules for new buckets.
fn bucket_problem(bucket: &str) -> Option<String> {
    if bucket.is_empty() {
        return Some("is empty".to_owned());
    }
    let bytes = bucket.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = (3..=63).contains(&bytes.len())
        && bytes.iter().all(|&b| alnum(b) || b == b'.' || b == b'-')
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && !bucket.contains("..")
        && bucket.parse::<std::net::Ipv4Addr>().is_err();
    (!ok).then(|| {
        format!(
            "`{bucket}` is not a valid bucket name (3 to 63 lowercase letters, digits, '.' and '-', \
             starting and ending with a letter or digit)"
        )
    })
}

/// What is wrong with a key prefix: it must be plain path segments.
fn prefix_problem(prefix: &str) -> Option<String> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return None;
    }
    // S3's "safe characters" for keys, which need no escaping anywhere.
    let safe = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
    let bad_segment = trimmed.split('/').any(|s| s.is_empty() || s == "." || s == ".." || !s.chars().all(safe));
    if bad_segment || ObjectPath::parse(trimmed).is_err() {
        return Some(format!(
            "`{prefix}` is not a key prefix (segments of letters, digits and !-_.*'() separated by single \
             '/', no leading '/', no '.' or '..')"
        ));
    }
    None
}

/// What is wrong with an endpoint URL.
fn endpoint_problem(endpoint: &str) -> Option<String> {
    let uri = match endpoint.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => return Some(format!("is not a URL: {e}")),
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Some("must be an http:// or https:// URL".to_owned());
    }
    match uri.authority() {
        None => Some("has no host".to_owned()),
        Some(a) if a.host().is_empty() => Some("has no host".to_owned()),
        // Credentials come from the environment only: in a URL they would show in errors and logs.
        Some(a) if a.as_str().contains('@') => Some("must not hold credentials (user@host)".to_owned()),
        Some(_) if uri.query().is_some() => Some("must not have a query".to_owned()),
        Some(_) => None,
    }
}

/// The prefix with a trailing '/' when non-empty.
fn normalised_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("{trimmed}/") }
}

/// Whether `id` is a plain archive file name, which is also safe as a key segment unescaped.
fn is_archive_name(id: &str) -> bool {
    id.len() > PREFIX.len() + SUFFIX.len()
        && id.starts_with(PREFIX)
        && id.ends_with(SUFFIX)
        && !id.contains("..")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A bucket (and prefix) that holds archives.
pub struct S3 {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    /// Normalised: empty or ending with '/'.
    prefix: String,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the store: its configuration holds the credentials.
        f.debug_struct("S3").field("bucket", &self.bucket).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl S3 {
    /// Builds the client from the config and the environment credentials (`AmazonS3Builder::from_env()`
    /// then the config's fields override). allow_http only when the endpoint is http://.
    ///
    /// Without AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the other sources object_store knows are
    /// tried when a request is made (web identity, the ECS task role, then the EC2 instance metadata).
    pub fn new(config: &S3Config) -> Result<S3, S3Error> {
        S3::build(AmazonS3Builder::from_env(), config)
    }

    /// Like [`S3::new`] with these static credentials and nothing from the environment (for tests, and
    /// for callers that keep the credentials elsewhere).
    pub fn with_credentials(config: &S3Config, access_key_id: &str, secret_access_key: &str) -> Result<S3, S3Error> {
        let builder =
            AmazonS3Builder::new().with_access_key_id(access_key_id).with_secret_access_key(secret_access_key);
        S3::build(builder, config)
    }

    fn build(mut builder: AmazonS3Builder, config: &S3Config) -> Result<S3, S3Error> {
        config.validate()?;
        builder = builder.with_bucket_name(&config.bucket).with_region(&config.region);
        if let Some(endpoint) = &config.endpoint {
            // AWS_ENDPOINT_URL_S3 would take precedence over the plain endpoint: set both.
            builder = builder
                .with_endpoint(endpoint)
                .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let effective = builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        let http = effective.is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"));
        let retry = RetryConfig { max_retries: RETRIES, retry_timeout: RETRY_TIMEOUT, ..RetryConfig::default() };
        let store = builder
            .with_allow_http(http)
            .with_retry(retry)
            .build()
            .map_err(|source| S3Error::Store { bucket: config.bucket.clone(), source })?;
        Ok(S3 { store: Arc::new(store), bucket: config.bucket.clone(), prefix: normalised_prefix(&config.prefix) })
    }

    /// Uploads a finished local archive as `<prefix><id>`. Uses multipart upload (object_store's
    /// `put_multipart`, parts of [`PART_SIZE`] read from the file as they go, at most two in flight) so a
    /// large archive is not held in memory; on any error the multipart upload is aborted. An object appears
    /// only when complete (S3 semantics), so a backup that dies part-way is never listed.
    ///
    /// An archive smaller than one part goes up as a single put.
    pub async fn upload(&self, local: &Path, id: &str) -> Result<(), S3Error> {
        let location = self.location(id)?;
        let io = |source| S3Error::Io { path: local.to_owned(), source };
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let first = read_part(&mut file).await.map_err(io)?;
        if first.len() < PART_SIZE {
            self.store.put(&location, PutPayload::from(first)).await.map_err(|e| self.store_error(e))?;
            return Ok(());
        }
        let mut upload = self.store.put_multipart(&location).await.map_err(|e| self.store_error(e))?;
        match send_parts(upload.as_mut(), first, &mut file, local).await {
            Ok(()) => match upload.complete().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    abort(upload.as_mut(), &location).await;
                    Err(self.store_error(e))
                }
            },
            Err(e) => {
                abort(upload.as_mut(), &location).await;
                Err(e.into_s3(self))
            }
        }
    }

    /// The archives under the prefix whose names start with crate::PREFIX and end with crate::SUFFIX
    /// (directly under the prefix, not deeper), as (id, size in bytes), newest name first.
    pub async fn list(&self) -> Result<Vec<(String, u64)>, S3Error> {
        let prefix = self.prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(ObjectPath::parse(prefix).map_err(|e| self.store_error(e.into()))?)
        };
        let listed = self.store.list_with_delimiter(prefix.as_ref()).await.map_err(|e| self.store_error(e))?;
        let mut out: Vec<(String, u64)> = listed
            .objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                is_archive_name(name).then(|| (name.to_owned(), meta.size))
            })
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(out)
    }

    /// Downloads `<prefix><id>` to `local`, streaming (not in memory), through `local` + ".partial" then
    /// rename, fsynced. A missing object is S3Error::NotFound { id }.
    pub async fn download(&self, id: &str, local: &Path) -> Result<u64, S3Error> {
        let location = self.location(id)?;
        let result = self.store.get(&location).await.map_err(|e| self.id_error(id, e))?;
        let expected = result.meta.size;
        let mut partial = local.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let outcome = async {
            let mut file = tokio::fs::File::create(&partial).await.map_err(|e| Fetch::Io(partial.clone(), e))?;
            let mut stream = result.into_stream();
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(Fetch::Store)?;
                file.write_all(&chunk).await.map_err(|e| Fetch::Io(partial.clone(), e))?;
                written += chunk.len() as u64;
            }
            if written != expected {
                let problem = format!("the download ended after {written} of {expected} bytes");
                return Err(Fetch::Io(
                    partial.clone(),
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, problem),
                ));
            }
            file.sync_all().await.map_err(|e| Fetch::Io(partial.clone(), e))?;
            drop(file);
            tokio::fs::rename(&partial, local).await.map_err(|e| Fetch::Io(local.to_owned(), e))?;
            let dir = crate::dir_of(local);
            let synced = tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            synced.map_err(|e| Fetch::Io(crate::dir_of(local), e))?;
            Ok(written)
        }
        .await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        outcome.map_err(|e| e.into_s3(self))
    }

    /// The first `n` bytes of the object (a range request), for reading an archive's manifest without
    /// downloading it whole. Fewer when the object is smaller.
    pub async fn head_bytes(&self, id: &str, n: u64) -> Result<Bytes, S3Error> {
        let location = self.location(id)?;
        if n == 0 {
            // An empty range is not a valid request; still say whether the object exists.
            self.store.head(&location).await.map_err(|e| self.id_error(id, e))?;
            return Ok(Bytes::new());
        }
        self.store.get_range(&location, 0..n).await.map_err(|e| self.id_error(id, e))
    }

    /// Deletes the object; NotFound when it does not exist.
    ///
    /// S3 itself reports success deleting a missing key, so this asks first (two requests).
    pub async fn delete(&self, id: &str) -> Result<(), S3Error> {
        let location = self.location(id)?;
        self.store.head(&location).await.map_err(|e| self.id_error(id, e))?;
        self.store.delete(&location).await.map_err(|e| self.id_error(id, e))
    }

    /// The key of archive `id`.
    fn location(&self, id: &str) -> Result<ObjectPath, S3Error> {
        if !is_archive_name(id) {
            return Err(S3Error::InvalidId { id: id.to_owned() });
        }
        ObjectPath::parse(format!("{}{id}", self.prefix)).map_err(|e| self.store_error(e.into()))
    }

    fn store_error(&self, source: object_store::Error) -> S3Error {
        S3Error::Store { bucket: self.bucket.clone(), source }
    }

    /// A store error, or NotFound for a missing object.
    fn id_error(&self, id: &str, source: object_store::Error) -> S3Error {
        match source {
            object_store::Error::NotFound { .. } => S3Error::NotFound { id: id.to_owned() },
            source => self.store_error(source),
        }
    }
}

/// A failure part-way through a transfer, before it is tied to the bucket.
enum Fetch {
    Io(PathBuf, std::io::Error),
    Store(object_store::Error),
}

impl Fetch {
    fn into_s3(self, s3: &S3) -> S3Error {
        match self {
            Fetch::Io(path, source) => S3Error::Io { path, source },
            Fetch::Store(source) => s3.store_error(source),
        }
    }
}

/// Reads up to [`PART_SIZE`] bytes: a full part unless the file ends first.
async fn read_part(file: &mut tokio::fs::File) -> std::io::Result<Vec<u8>> {
    let mut part = Vec::with_capacity(PART_SIZE);
    while part.len() < PART_SIZE {
        // `take` bounds this read to what the part still lacks.
        let want = (PART_SIZE - part.len()) as u64;
        if AsyncReadExt::take(&mut *file, want).read_to_end(&mut part).await? == 0 {
            break;
        }
    }
    Ok(part)
}

/// Sends `first` then the rest of `file` as parts, at most [`PARTS_IN_FLIGHT`] at once.
async fn send_parts(
    upload: &mut dyn MultipartUpload,
    first: Vec<u8>,
    file: &mut tokio::fs::File,
    local: &Path,
) -> Result<(), Fetch> {
    let mut in_flight = FuturesUnordered::new();
    let mut part = first;
    while !part.is_empty() {
        // Parts are numbered in the order `put_part` is called, whatever order they finish in.
        in_flight.push(upload.put_part(PutPayload::from(part)));
        while in_flight.len() >= PARTS_IN_FLIGHT {
            if let Some(done) = in_flight.next().await {
                done.map_err(Fetch::Store)?;
            }
        }
        part = read_part(file).await.map_err(|e| Fetch::Io(local.to_owned(), e))?;
    }
    while let Some(done) = in_flight.next().await {
        done.map_err(Fetch::Store)?;
    }
    Ok(())
}

/// Aborts a failed multipart upload so its parts are not kept (and billed); a failure to abort is only
/// logged, as the upload's own error is the one to report.
async fn abort(upload: &mut dyn MultipartUpload, location: &ObjectPath) {
    if let Err(e) = upload.abort().await {
        tracing::warn!(key = %location, error = %e, "could not abort a failed multipart upload");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bucket: &str) -> S3Config {
        S3Config { bucket: bucket.to_owned(), prefix: String::new(), region: default_region(), endpoint: None }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "my-bucket.backups", "a1b2c3"] {
            assert!(bucket_problem(good).is_none(), "{good}");
        }
        for bad in ["", "ab", "My-Bucket", "-abc", "abc-", "a..b", "a_b", "192.168.1.1", &"a".repeat(64)] {
            assert!(bucket_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn prefixes_are_normalised_and_checked() {
        assert_eq!(normalised_prefix(""), "");
        assert_eq!(normalised_prefix("plugwatch"), "plugwatch/");
        assert_eq!(normalised_prefix("a/b/"), "a/b/");
        let mut c = config("backups");
        c.prefix = "team/plugwatch".into();
        assert_eq!(c.describe(), "s3://backups/team/plugwatch/");
        for bad in ["/abs", "a//b", "a/../b", "./a", "a{b}"] {
            c.prefix = bad.into();
            assert!(matches!(c.validate(), Err(S3Error::InvalidConfig { field: "prefix", .. })), "{bad}");
        }
    }

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        let mut c = config("backups");
        for good in ["http://127.0.0.1:9000", "https://s3.example.com", "https://minio.local/base"] {
            c.endpoint = Some(good.into());
            assert!(c.validate().is_ok(), "{good}");
        }
        for bad in ["ftp://x", "127.0.0.1:9000", "http://", "https://key:secret@host", "not a url"] {
            c.endpoint = Some(bad.into());
            let e = c.validate().expect_err(bad);
            assert!(matches!(e, S3Error::InvalidConfig { field: "endpoint", .. }), "{bad}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn ids_are_plain_archive_names() {
        assert!(is_archive_name("plugwatch-backup-20261201T120000Z.tar.zst"));
        for bad in [
            "plugwatch-backup-.tar.zst",
            "notes.txt",
            "plugwatch-backup-x/../y.tar.zst",
            "plugwatch-backup-a/b.tar.zst",
            "plugwatch-backup-..tar.zst",
            "plugwatch-backup-x.tar.zst.partial",
            "plugwatch-backup-a b.tar.zst",
        ] {
            assert!(!is_archive_name(bad), "{bad}");
        }
    }

    #[test]
    fn config_reads_with_defaults_and_rejects_unknown_fields() {
        let c: S3Config = serde_json::from_str(r#"{"bucket": "backups"}"#).expect("a minimal config");
        assert_eq!(c, config("backups"));
        let e = serde_json::from_str::<S3Config>(r#"{"bucket": "b", "secret_access_key": "x"}"#);
        assert!(e.is_err());
    }
}
