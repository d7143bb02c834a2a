//! A restic repository in an S3 (or S3-compatible) bucket, on aws-sdk-s3 — the only place the
//! SDK appears.
//!
//! The layout is restic's (`config`, `keys/`, `snapshots/`, `index/`, `locks/`, `data/xx/`
//! under the prefix), so `restic -r s3:…` reads it. rustic_core calls backends from its own
//! worker threads and expects blocking calls: every request runs on a dedicated tokio runtime
//! that belongs to this module, so it never competes with, or blocks, the daemon's runtime.
//!
//! Transient failures (5xx, throttling, timeouts, connection resets) are retried with
//! exponential backoff by the SDK's standard retry strategy; a response body cut short is
//! retried here. Permanent ones (403, missing bucket, bad request) fail at once with a
//! sentence naming the location and the fix. Large packs are uploaded in parallel parts.
//!
//! With Object Lock every object is written with the configured mode and retain-until date.
//! Deleting (prune) removes only the current version — in a versioned bucket that adds a delete
//! marker, which S3 allows even for locked objects — so a prune never fails because of a lock;
//! the locked versions stay until they expire and are then swept ([`S3Storage::sweep`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, ObjectLockEnabled,
    ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
};
use bytes::Bytes;
use futures_util::StreamExt;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};
use serde::Serialize;

use crate::config::{LockMode, ObjectLock, S3Location};
use crate::secret::Secret;

/// Objects at least this large are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 32 << 20;
/// Size of one part of a multipart upload.
const PART_SIZE: usize = 16 << 20;
/// Parts uploaded at the same time.
const PARALLEL_PARTS: usize = 4;
/// Attempts per request (the SDK's standard strategy backs off exponentially with jitter).
const MAX_ATTEMPTS: u32 = 6;

/// The runtime all S3 requests run on (created once, never dropped).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("custodian-s3")
            .enable_all()
            .build()
            .expect("the S3 runtime must start")
    })
}

/// Runs a future on the S3 runtime from any thread (rustic's workers, blocking tasks) and
/// waits for it.
fn run<F: std::future::Future + Send + 'static>(future: F) -> F::Output
where
    F::Output: Send + 'static,
{
    let handle = runtime().handle().clone();
    // A tokio worker must not block; rustic's threads and blocking tasks may.
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope
                .spawn(|| handle.block_on(future))
                .join()
                .expect("an S3 request thread panicked")
        })
    } else {
        handle.block_on(future)
    }
}

/// How bad an S3 failure is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Failure {
    /// Worth another try later: the store or the network had a problem.
    Transient(String),
    /// Needs a fix (credentials, bucket, permissions); retrying will not help.
    Permanent(String),
    /// The object does not exist.
    NotFound,
}

impl S3Failure {
    fn message(&self) -> String {
        match self {
            Self::Transient(m) | Self::Permanent(m) => m.clone(),
            Self::NotFound => "the object does not exist".into(),
        }
    }
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    bucket: &str,
    err: &SdkError<E, HttpResponse>,
) -> S3Failure {
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("unknown").to_string();
            let detail = service.err().message().unwrap_or("").to_string();
            match (status, code.as_str()) {
                (404, "NoSuchBucket") => S3Failure::Permanent(format!(
                    "bucket `{bucket}` does not exist; create it (with versioning and Object Lock if the location is immutable) or fix `bucket`"
                )),
                (404, _) => S3Failure::NotFound,
                (403, "InvalidAccessKeyId") => S3Failure::Permanent(
                    "the access key id is not known to the store; check the location's credentials".into(),
                ),
                (403, "SignatureDoesNotMatch") => S3Failure::Permanent(
                    "the secret access key does not match the access key id; check the location's credentials".into(),
                ),
                (403, _) => S3Failure::Permanent(format!(
                    "access denied ({code}{}); check the credentials and the bucket policy",
                    if detail.is_empty() { String::new() } else { format!(": {detail}") }
                )),
                (301 | 307 | 400, "PermanentRedirect" | "AuthorizationHeaderMalformed") => {
                    S3Failure::Permanent(format!(
                        "the bucket is in another region ({code}); fix `region`"
                    ))
                }
                (429 | 500..=599, _) | (_, "SlowDown" | "RequestTimeout" | "InternalError") => {
                    S3Failure::Transient(format!("the store answered {status} {code}"))
                }
                _ => S3Failure::Permanent(format!(
                    "the store refused the request ({status} {code}{})",
                    if detail.is_empty() { String::new() } else { format!(": {detail}") }
                )),
            }
        }
        SdkError::TimeoutError(_) => S3Failure::Transient("the request timed out".into()),
        SdkError::DispatchFailure(e) => S3Failure::Transient(format!(
            "the store cannot be reached ({})",
            if e.is_io() {
                "connection failed or reset"
            } else if e.is_timeout() {
                "connection timed out"
            } else {
                "dispatch failure"
            }
        )),
        SdkError::ResponseError(_) => {
            S3Failure::Transient("the store's response was cut short or malformed".into())
        }
        other => S3Failure::Permanent(format!("the request could not be built: {other:?}")),
    }
}

/// A bucket (and prefix) holding one restic repository.
pub struct S3Storage {
    location: String,
    client: Client,
    bucket: String,
    prefix: String,
    lock: Option<ObjectLock>,
    display: String,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("location", &self.location)
            .field("repository", &self.display)
            .finish_non_exhaustive()
    }
}

/// The state of a bucket, as a health check reports it.
#[derive(Clone, Debug, Serialize)]
pub struct BucketState {
    pub reachable: bool,
    pub versioning: Option<String>,
    pub object_lock_enabled: bool,
    /// The bucket's default retention, if any (`compliance 30d`).
    pub default_retention: Option<String>,
    /// An object written with retention reported it back (the store honours locks).
    pub lock_verified: bool,
    pub problems: Vec<String>,
}

/// What a retention extension did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExtendReport {
    pub objects: usize,
    pub extended: usize,
    pub failed: Vec<String>,
}

/// Object versions kept after deletion, and what a sweep removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LockedVersions {
    /// Versions hidden by a delete marker that Object Lock still holds.
    pub still_locked: usize,
    pub still_locked_bytes: u64,
    /// When the last of them becomes deletable.
    pub locked_until: Option<String>,
    /// Expired versions (and their delete markers) removed by the sweep.
    pub swept: usize,
}

impl S3Storage {
    /// Builds the client for a location (credentials resolved now, nothing sent yet).
    ///
    /// # Errors
    /// When credentials cannot be read.
    pub fn new(location: &str, cfg: &S3Location, display: &str) -> Result<Self, String> {
        let static_credentials = match &cfg.credentials {
            Some((akid, secret)) => {
                let akid = akid
                    .resolve()
                    .map_err(|e| format!("reading the access key id: {e}"))?;
                let secret = secret
                    .resolve()
                    .map_err(|e| format!("reading the secret access key: {e}"))?;
                Some((akid, secret))
            }
            None => None,
        };
        let region = Region::new(cfg.region.clone());
        let endpoint = cfg.endpoint.clone();
        let path_style = cfg.path_style;
        let client =
            run(
                async move { build_client(region, endpoint, path_style, static_credentials).await },
            );
        Ok(Self {
            location: location.to_string(),
            client,
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            lock: cfg.object_lock,
            display: display.to_string(),
        })
    }

    /// The object key of a repository file (restic's layout).
    fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let name = match tpe {
            FileType::Config => "config".to_string(),
            FileType::Pack => format!("data/{}/{}", &hex[0..2], hex.as_str()),
            _ => format!("{}/{}", tpe.dirname(), hex.as_str()),
        };
        self.full(&name)
    }

    fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn error(&self, operation: &str, failure: &S3Failure) -> Box<RusticError> {
        let kind = match failure {
            S3Failure::Permanent(_) => ErrorKind::Backend,
            S3Failure::Transient(_) | S3Failure::NotFound => ErrorKind::InputOutput,
        };
        RusticError::new(kind, "location {location}: {operation} failed: {reason}")
            .attach_context("location", self.location.clone())
            .attach_context("operation", operation.to_string())
            .attach_context("reason", failure.message())
    }

    fn retain_until(&self) -> Option<(ObjectLockMode, DateTime)> {
        self.lock.map(|lock| {
            let until =
                std::time::SystemTime::now() + Duration::from_secs(u64::from(lock.days) * 86_400);
            let mode = match lock.mode {
                LockMode::Compliance => ObjectLockMode::Compliance,
                LockMode::Governance => ObjectLockMode::Governance,
            };
            (mode, DateTime::from(until))
        })
    }

    async fn put(&self, key: String, body: Bytes) -> Result<(), S3Failure> {
        let lock = self.retain_until();
        if body.len() >= MULTIPART_THRESHOLD {
            return self.put_multipart(key, body, lock).await;
        }
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
            .body(ByteStream::from(body));
        if let Some((mode, until)) = lock {
            request = request
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&self.bucket, &e))
    }

    async fn put_multipart(
        &self,
        key: String,
        body: Bytes,
        lock: Option<(ObjectLockMode, DateTime)>,
    ) -> Result<(), S3Failure> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key);
        if let Some((mode, until)) = lock.clone() {
            create = create
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until);
        }
        let upload = create
            .send()
            .await
            .map_err(|e| classify(&self.bucket, &e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let chunks: Vec<(i32, Bytes)> = (0..body.len())
            .step_by(PART_SIZE)
            .enumerate()
            .map(|(i, start)| {
                let end = (start + PART_SIZE).min(body.len());
                (
                    i32::try_from(i + 1).unwrap_or(i32::MAX),
                    body.slice(start..end),
                )
            })
            .collect();
        let results: Vec<Result<CompletedPart, S3Failure>> = futures_util::stream::iter(chunks)
            .map(|(number, part)| {
                let (client, bucket, key, upload_id) = (
                    self.client.clone(),
                    self.bucket.clone(),
                    key.clone(),
                    upload_id.clone(),
                );
                async move {
                    let out = client
                        .upload_part()
                        .bucket(&bucket)
                        .key(&key)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .content_length(i64::try_from(part.len()).unwrap_or(i64::MAX))
                        .body(ByteStream::from(part))
                        .send()
                        .await
                        .map_err(|e| classify(&bucket, &e))?;
                    Ok(CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build())
                }
            })
            .buffered(PARALLEL_PARTS)
            .collect()
            .await;
        let parts: Result<Vec<CompletedPart>, S3Failure> = results.into_iter().collect();
        let parts = match parts {
            Ok(parts) => parts,
            Err(failure) => {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(failure);
            }
        };
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(&self.bucket, &e))?;
        // Some stores ignore lock settings given when a multipart upload starts: set the
        // retention on the finished object explicitly (a no-op where it already holds).
        if let Some((mode, until)) = lock {
            let mode = match mode {
                ObjectLockMode::Governance => ObjectLockRetentionMode::Governance,
                _ => ObjectLockRetentionMode::Compliance,
            };
            self.client
                .put_object_retention()
                .bucket(&self.bucket)
                .key(&key)
                .retention(
                    ObjectLockRetention::builder()
                        .mode(mode)
                        .retain_until_date(until)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify(&self.bucket, &e))?;
        }
        Ok(())
    }

    async fn get(&self, key: String, range: Option<(u32, u32)>) -> Result<Bytes, S3Failure> {
        // A body cut short after the headers is not retried by the SDK: retry it here.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.get_object().bucket(&self.bucket).key(&key);
            if let Some((offset, length)) = range {
                let end = u64::from(offset) + u64::from(length).max(1) - 1;
                request = request.range(format!("bytes={offset}-{end}"));
            }
            let out = request
                .send()
                .await
                .map_err(|e| classify(&self.bucket, &e))?;
            let expected = out.content_length();
            match out.body.collect().await {
                Ok(data) => {
                    let bytes = data.into_bytes();
                    let complete = expected.is_none_or(|n| usize::try_from(n) == Ok(bytes.len()));
                    if complete {
                        return Ok(bytes);
                    }
                    if attempt >= MAX_ATTEMPTS {
                        return Err(S3Failure::Transient(format!(
                            "the store sent {} of {} bytes",
                            bytes.len(),
                            expected.unwrap_or_default()
                        )));
                    }
                }
                Err(e) if attempt >= MAX_ATTEMPTS => {
                    return Err(S3Failure::Transient(format!(
                        "reading the response failed: {e}"
                    )));
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt.min(6)))).await;
        }
    }

    async fn list(&self, dir: String) -> Result<Vec<(String, u64)>, S3Failure> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(dir)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(&self.bucket, &e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    out.push((
                        key.to_string(),
                        u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Checks the bucket: reachable with these credentials, versioning and Object Lock as the
    /// configuration declares, and — for a lock — that the store really honours it (some
    /// S3-compatible stores accept lock headers and ignore them).
    #[must_use]
    pub fn bucket_state(&self) -> BucketState {
        let this = Arc::new(self.clone_for_task());
        run(async move { this.bucket_state_async().await })
    }

    fn clone_for_task(&self) -> Self {
        Self {
            location: self.location.clone(),
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            lock: self.lock,
            display: self.display.clone(),
        }
    }

    async fn bucket_state_async(&self) -> BucketState {
        let mut state = BucketState {
            reachable: false,
            versioning: None,
            object_lock_enabled: false,
            default_retention: None,
            lock_verified: false,
            problems: Vec::new(),
        };
        if let Err(e) = self.client.head_bucket().bucket(&self.bucket).send().await {
            let failure = classify(&self.bucket, &e);
            let message = if failure == S3Failure::NotFound {
                format!(
                    "bucket `{}` does not exist or is not visible with these credentials",
                    self.bucket
                )
            } else {
                failure.message()
            };
            state.problems.push(message);
            return state;
        }
        state.reachable = true;
        if let Ok(v) = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            state.versioning = v.status().map(|s| s.as_str().to_string());
        }
        if let Ok(cfg) = self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
            && let Some(cfg) = cfg.object_lock_configuration()
        {
            state.object_lock_enabled =
                cfg.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled);
            state.default_retention = cfg.rule().and_then(|r| r.default_retention()).map(|d| {
                format!(
                    "{} {}",
                    d.mode().map_or("?", |m| m.as_str()).to_lowercase(),
                    d.days()
                        .map(|n| format!("{n}d"))
                        .or_else(|| d.years().map(|n| format!("{n}y")))
                        .unwrap_or_default()
                )
            });
        }
        if let Some(lock) = self.lock {
            if !state.object_lock_enabled {
                state.problems.push(format!(
                    "the location is configured with object-lock but bucket `{}` does not have Object Lock enabled; \
                     create a bucket with Object Lock (it cannot be added to most existing buckets)",
                    self.bucket
                ));
            } else {
                // Write a probe with retention and read the lock back.
                let key = self.full(&format!(
                    "locks/custodian-lock-probe-{}",
                    Id::random().to_hex().as_str()
                ));
                match self
                    .put(key.clone(), Bytes::from_static(b"lock probe"))
                    .await
                {
                    Ok(()) => match self
                        .client
                        .head_object()
                        .bucket(&self.bucket)
                        .key(&key)
                        .send()
                        .await
                    {
                        Ok(head) => {
                            let mode_ok =
                                head.object_lock_mode().map(|m| m.as_str().to_lowercase())
                                    == Some(lock.mode.as_str().to_string());
                            let until_ok = head.object_lock_retain_until_date().is_some();
                            state.lock_verified = mode_ok && until_ok;
                            if !state.lock_verified {
                                state.problems.push(format!(
                                    "bucket `{}` accepted an object with {} retention but does not report it back; \
                                     the store does not honour Object Lock, so this location is not immutable",
                                    self.bucket,
                                    lock.mode.as_str()
                                ));
                            }
                            // Deleting the probe must leave its locked version behind a delete
                            // marker: that proves versioning by behaviour, not by a setting.
                            let _ = self
                                .client
                                .delete_object()
                                .bucket(&self.bucket)
                                .key(&key)
                                .send()
                                .await;
                            let versions = self
                                .client
                                .list_object_versions()
                                .bucket(&self.bucket)
                                .prefix(&key)
                                .send()
                                .await;
                            let kept = versions.as_ref().is_ok_and(|v| {
                                !v.versions().is_empty() && !v.delete_markers().is_empty()
                            });
                            if kept {
                                state.versioning =
                                    Some(BucketVersioningStatus::Enabled.as_str().to_string());
                            } else {
                                state.lock_verified = false;
                                state.problems.push(format!(
                                    "deleting a locked object in bucket `{}` did not keep its version; \
                                     versioning must be enabled (it is, on buckets created with Object Lock)",
                                    self.bucket
                                ));
                            }
                        }
                        Err(e) => state.problems.push(classify(&self.bucket, &e).message()),
                    },
                    Err(failure) => state.problems.push(format!(
                        "writing a locked probe object failed: {}",
                        failure.message()
                    )),
                }
            }
        }
        state
    }

    /// Extends the retention of every current object whose lock ends within `horizon`, to the
    /// full configured period from now: data still referenced by kept snapshots never loses its
    /// protection. Objects already deleted (hidden by a delete marker) are left to expire.
    #[must_use]
    pub fn extend_retention(&self, horizon: Duration) -> ExtendReport {
        let this = Arc::new(self.clone_for_task());
        run(async move { this.extend_async(horizon).await })
    }

    async fn extend_async(&self, horizon: Duration) -> ExtendReport {
        let mut report = ExtendReport::default();
        let Some(lock) = self.lock else {
            return report;
        };
        let objects = match self.list(self.full("")).await {
            Ok(objects) => objects,
            Err(failure) => {
                report
                    .failed
                    .push(format!("listing the bucket: {}", failure.message()));
                return report;
            }
        };
        let deadline = DateTime::from(std::time::SystemTime::now() + horizon);
        let mode = match lock.mode {
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
            LockMode::Governance => ObjectLockRetentionMode::Governance,
        };
        for (key, _) in objects {
            report.objects += 1;
            let head = match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(head) => head,
                Err(e) => {
                    report
                        .failed
                        .push(format!("{key}: {}", classify(&self.bucket, &e).message()));
                    continue;
                }
            };
            let due = head
                .object_lock_retain_until_date()
                .is_none_or(|until| until.secs() < deadline.secs());
            if !due {
                continue;
            }
            let until = DateTime::from(
                std::time::SystemTime::now() + Duration::from_secs(u64::from(lock.days) * 86_400),
            );
            let result = self
                .client
                .put_object_retention()
                .bucket(&self.bucket)
                .key(&key)
                .retention(
                    ObjectLockRetention::builder()
                        .mode(mode.clone())
                        .retain_until_date(until)
                        .build(),
                )
                .send()
                .await;
            match result {
                Ok(_) => report.extended += 1,
                Err(e) => report
                    .failed
                    .push(format!("{key}: {}", classify(&self.bucket, &e).message())),
            }
        }
        report
    }

    /// Looks at versions hidden by delete markers: removes those whose lock has expired (and
    /// the markers left alone), and reports those S3 still holds.
    #[must_use]
    pub fn sweep(&self) -> LockedVersions {
        let this = Arc::new(self.clone_for_task());
        run(async move { this.sweep_async().await })
    }

    async fn sweep_async(&self) -> LockedVersions {
        let mut out = LockedVersions::default();
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(self.full(""))
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await;
            let Ok(page) = page else { return out };
            for v in page.versions() {
                if v.is_latest() != Some(true) {
                    versions.push((
                        v.key().unwrap_or_default().to_string(),
                        v.version_id().unwrap_or_default().to_string(),
                        u64::try_from(v.size().unwrap_or(0)).unwrap_or(0),
                    ));
                }
            }
            for m in page.delete_markers() {
                markers.push((
                    m.key().unwrap_or_default().to_string(),
                    m.version_id().unwrap_or_default().to_string(),
                ));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        let now = DateTime::from(std::time::SystemTime::now());
        let mut latest: Option<DateTime> = None;
        let mut kept_keys = std::collections::HashSet::new();
        for (key, version, size) in versions {
            let head = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&key)
                .version_id(&version)
                .send()
                .await;
            let until = head
                .ok()
                .and_then(|h| h.object_lock_retain_until_date().copied());
            if until.is_some_and(|u| u.secs() > now.secs()) {
                out.still_locked += 1;
                out.still_locked_bytes += size;
                if latest.is_none_or(|l| until.is_some_and(|u| u.secs() > l.secs())) {
                    latest = until;
                }
                kept_keys.insert(key);
                continue;
            }
            let deleted = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .version_id(&version)
                .send()
                .await;
            if deleted.is_ok() {
                out.swept += 1;
            } else {
                kept_keys.insert(key);
            }
        }
        for (key, version) in markers {
            if kept_keys.contains(&key) {
                continue;
            }
            let _ = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .version_id(&version)
                .send()
                .await;
        }
        out.locked_until = latest.map(|d| d.to_string());
        out
    }

    /// Runs one operation on the S3 runtime and turns its failure into a rustic error.
    fn blocking<T, Fut>(
        &self,
        operation: &'static str,
        f: impl FnOnce(Arc<S3Storage>) -> Fut + Send + 'static,
    ) -> RusticResult<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T, S3Failure>> + Send + 'static,
    {
        let this = Arc::new(self.clone_for_task());
        run(async move { f(this).await }).map_err(|failure| self.error(operation, &failure))
    }
}

async fn build_client(
    region: Region,
    endpoint: Option<String>,
    path_style: bool,
    credentials: Option<(Secret, Secret)>,
) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .operation_attempt_timeout(Duration::from_secs(300))
                .build(),
        );
    if let Some((akid, secret)) = credentials {
        loader = loader.credentials_provider(Credentials::new(
            akid.expose(),
            secret.expose(),
            None,
            None,
            "custodian-configuration",
        ));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

impl ReadBackend for S3Storage {
    fn location(&self) -> String {
        self.display.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let key = self.full("config");
            let found = self.blocking(
                "looking for the repository",
                move |s: Arc<S3Storage>| async move {
                    match s
                        .client
                        .head_object()
                        .bucket(&s.bucket)
                        .key(&key)
                        .send()
                        .await
                    {
                        Ok(head) => Ok(Some(
                            u32::try_from(head.content_length().unwrap_or(0)).unwrap_or(0),
                        )),
                        Err(e) => match classify(&s.bucket, &e) {
                            S3Failure::NotFound => Ok(None),
                            other => Err(other),
                        },
                    }
                },
            )?;
            return Ok(found
                .map(|size| (Id::default(), size))
                .into_iter()
                .collect());
        }
        let dir = self.full(&format!("{}/", tpe.dirname()));
        let objects = self.blocking(
            "listing the repository",
            move |s: Arc<S3Storage>| async move { s.list(dir).await },
        )?;
        Ok(objects
            .into_iter()
            .filter_map(|(key, size)| {
                let name = key.rsplit('/').next()?;
                let id: Id = name.parse().ok()?;
                Some((id, u32::try_from(size).unwrap_or(u32::MAX)))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        self.blocking("reading", move |s: Arc<S3Storage>| async move {
            s.get(key, None).await
        })
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        self.blocking("reading", move |s: Arc<S3Storage>| async move {
            s.get(key, Some((offset, length))).await
        })
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for S3Storage {
    fn create(&self) -> RusticResult<()> {
        // The bucket must exist (and, for Object Lock, be created with it): never create one.
        self.blocking("reaching the bucket", |s: Arc<S3Storage>| async move {
            s.client
                .head_bucket()
                .bucket(&s.bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| match classify(&s.bucket, &e) {
                    S3Failure::NotFound => S3Failure::Permanent(format!(
                        "bucket `{}` does not exist; create it first (with versioning and Object Lock for an immutable location)",
                        s.bucket
                    )),
                    other => other,
                })
        })
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let key = self.key(tpe, id);
        let parts = content.into_vec();
        let body = if parts.len() == 1 {
            parts.into_iter().next().unwrap_or_default()
        } else {
            let mut all = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in parts {
                all.extend_from_slice(&part);
            }
            Bytes::from(all)
        };
        self.blocking("writing", move |s: Arc<S3Storage>| async move {
            s.put(key, body).await
        })
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = self.key(tpe, id);
        self.blocking("deleting", move |s: Arc<S3Storage>| async move {
            s.client
                .delete_object()
                .bucket(&s.bucket)
                .key(&key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(&s.bucket, &e))
        })
    }
}
