//! One storage contract, one conformance suite (restic's backend tests in spirit): every kind of
//! location — a local directory, S3 with signature checking (s3s-fs), S3 with Object Lock
//! (moto) — must store, list, read (whole and in part) and delete repository files the same way.

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use common::s3::{S3Server, credential_files};
use custodian::config::{LockMode, ObjectLock, S3Location};
use custodian::location::{LocalStorage, S3Storage};
use custodian::secret::SecretRef;
use rustic_core::{BytesList, FileType, Id, ReadBackend, WriteBackend};

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn id(hex_byte: &str) -> Id {
    hex_byte.repeat(32).parse().unwrap()
}

/// The suite every storage must pass.
fn conformance(storage: &dyn WriteBackend) {
    storage.create().unwrap();
    assert!(
        storage
            .list_with_size(FileType::Snapshot)
            .unwrap()
            .is_empty()
    );
    assert!(storage.list_with_size(FileType::Config).unwrap().is_empty());

    // Config: the single file of its type.
    storage
        .write_bytes(
            FileType::Config,
            &Id::default(),
            false,
            BytesList::from(b"cfg".to_vec()),
        )
        .unwrap();
    assert_eq!(storage.list_with_size(FileType::Config).unwrap().len(), 1);
    assert_eq!(
        storage
            .read_full(FileType::Config, &Id::default())
            .unwrap()
            .as_ref(),
        b"cfg"
    );

    // Packs live in data/xx/; sizes are listed; reads whole and partial are exact.
    let small = content(1000, 1);
    let pack = id("ab");
    let mut parts = BytesList::from(Bytes::from(small[..400].to_vec()));
    parts.add(Bytes::from(small[400..].to_vec()));
    storage
        .write_bytes(FileType::Pack, &pack, false, parts)
        .unwrap();
    let listed = storage.list_with_size(FileType::Pack).unwrap();
    assert_eq!(listed, vec![(pack, 1000)]);
    assert_eq!(
        storage.read_full(FileType::Pack, &pack).unwrap().as_ref(),
        &small[..]
    );
    assert_eq!(
        storage
            .read_partial(FileType::Pack, &pack, false, 10, 20)
            .unwrap()
            .as_ref(),
        &small[10..30]
    );
    assert_eq!(
        storage
            .read_partial(FileType::Pack, &pack, false, 999, 1)
            .unwrap()
            .as_ref(),
        &small[999..]
    );

    // A large file (uploaded in parts on S3) round-trips.
    let large = content(40 << 20, 7);
    let big = id("cd");
    storage
        .write_bytes(FileType::Pack, &big, false, BytesList::from(large.clone()))
        .unwrap();
    let mut listed = storage.list_with_size(FileType::Pack).unwrap();
    listed.sort();
    assert_eq!(listed, vec![(pack, 1000), (big, 40 << 20)]);
    let read = storage.read_full(FileType::Pack, &big).unwrap();
    assert!(read.as_ref() == &large[..], "large file differs");
    let middle = (20 << 20) - 5;
    assert_eq!(
        storage
            .read_partial(FileType::Pack, &big, false, middle, 100)
            .unwrap()
            .as_ref(),
        &large[middle as usize..middle as usize + 100]
    );

    // Other types by id; writing the same id again is allowed (content addressing).
    let snap = id("12");
    for _ in 0..2 {
        storage
            .write_bytes(
                FileType::Snapshot,
                &snap,
                false,
                BytesList::from(b"{}".to_vec()),
            )
            .unwrap();
    }
    assert_eq!(
        storage.list_with_size(FileType::Snapshot).unwrap(),
        vec![(snap, 2)]
    );

    // Removal: gone from listings and reads.
    storage.remove(FileType::Snapshot, &snap, false).unwrap();
    assert!(
        storage
            .list_with_size(FileType::Snapshot)
            .unwrap()
            .is_empty()
    );
    assert!(storage.read_full(FileType::Snapshot, &snap).is_err());
    // Missing files are errors, not empty reads.
    assert!(storage.read_full(FileType::Index, &id("99")).is_err());
}

fn s3_storage(
    server: &S3Server,
    bucket: &str,
    prefix: &str,
    lock: Option<ObjectLock>,
) -> S3Storage {
    let dir = tempfile::tempdir().unwrap();
    let (akid, secret) = credential_files(dir.path());
    let cfg = S3Location {
        bucket: bucket.into(),
        prefix: prefix.into(),
        region: "us-east-1".into(),
        endpoint: Some(server.endpoint()),
        path_style: true,
        credentials: Some((SecretRef::File(akid), SecretRef::File(secret))),
        object_lock: lock,
    };
    S3Storage::new(
        "conformance",
        &cfg,
        &format!("s3:{}/{bucket}/{prefix}", server.endpoint()),
    )
    .unwrap()
}

#[test]
fn local_directories_conform() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn WriteBackend> =
        Arc::new(LocalStorage::new(&dir.path().join("repo")).unwrap());
    conformance(storage.as_ref());
}

#[test]
fn s3_with_signature_checks_conforms() {
    let server = S3Server::s3s_fs();
    server.create_bucket("conformance", false);
    conformance(&s3_storage(&server, "conformance", "some/prefix", None));
    // Without a prefix too.
    server.create_bucket("bare", false);
    conformance(&s3_storage(&server, "bare", "", None));
}

#[test]
fn s3_with_object_lock_conforms() {
    let server = S3Server::moto();
    server.create_bucket("locked", true);
    let lock = ObjectLock {
        mode: LockMode::Compliance,
        days: 1,
    };
    conformance(&s3_storage(&server, "locked", "repo", Some(lock)));
    // Every object written carries the retention (read back from the store, not trusted).
    let modes = server.boto(
        "out = []\n\
         for o in s3.list_objects_v2(Bucket='locked', Prefix='repo/').get('Contents', []):\n\
         \x20   h = s3.head_object(Bucket='locked', Key=o['Key'])\n\
         \x20   out.append(h.get('ObjectLockMode', 'NONE'))\n\
         print(','.join(sorted(set(out))))",
    );
    assert_eq!(modes, "COMPLIANCE");
}

#[test]
fn wrong_credentials_and_missing_buckets_fail_fast_and_clearly() {
    let server = S3Server::s3s_fs();
    server.create_bucket("exists", false);
    let dir = tempfile::tempdir().unwrap();
    let akid = dir.path().join("akid");
    let secret = dir.path().join("secret");
    std::fs::write(&akid, "custodian-test-access-key\n").unwrap();
    std::fs::write(&secret, "not-the-secret\n").unwrap();
    let cfg = S3Location {
        bucket: "exists".into(),
        prefix: String::new(),
        region: "us-east-1".into(),
        endpoint: Some(server.endpoint()),
        path_style: true,
        credentials: Some((SecretRef::File(akid), SecretRef::File(secret))),
        object_lock: None,
    };
    let storage = S3Storage::new("offsite", &cfg, "s3:test").unwrap();
    let started = std::time::Instant::now();
    let err = storage
        .list_with_size(FileType::Snapshot)
        .unwrap_err()
        .display_log();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "permanent errors are not retried"
    );
    assert!(err.contains("location offsite"), "{err}");
    assert!(
        err.contains("secret access key") || err.contains("access denied"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "{err}");

    let missing = s3_storage(&server, "no-such-bucket", "", None);
    let err = missing.create().unwrap_err().display_log();
    assert!(
        err.contains("bucket `no-such-bucket` does not exist"),
        "{err}"
    );
}
