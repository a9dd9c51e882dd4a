//! One backup run, as the CronJob's container does it: take the snapshot (etcd's
//! stream, or SQLite's online backup), hash and compress it while streaming, write
//! it atomically, verify it from the destination, write its manifest, then prune by
//! the retention policy. A run that fails at any step prunes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use homelab_api::etcdbackup::{BackupRecord, Compression, Datastore, EtcdClusterStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use object_store::WriteMultipart;
use sha2::{Digest, Sha256};

use crate::args::Config;
use crate::bbolt;
use crate::etcd::{self, EtcdError, MaintenanceClient, pb};
use crate::naming;
use crate::report::RunReport;
use crate::retention;
use crate::sqlite;
use crate::store::{MANIFEST_SUFFIX, Store, StoreError};

/// Part size of uploads: S3's minimum is 5 MiB.
const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 2;
/// zstd level 3: zstd's default, fast enough to keep up with etcd's stream.
const ZSTD_LEVEL: i32 = 3;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The destination failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// etcd could not be reached.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// No endpoint gave a snapshot.
    #[error("no endpoint gave a snapshot; last error: {0}")]
    NoSnapshot(String),
    /// The snapshot stream broke.
    #[error("the snapshot stream from {endpoint} broke: {status}")]
    Stream {
        /// The endpoint.
        endpoint: String,
        /// gRPC status.
        status: Box<tonic::Status>,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] sqlite::SqliteError),
    /// A local file failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The written backup did not verify.
    #[error("verification failed: {0}")]
    Verify(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Runs one backup and says how it went; never fails itself.
pub async fn run(config: &Config) -> RunReport {
    let started = Timestamp::now();
    let scratch = config.scratch_dir.join(format!(
        "etcd-backup-{}-{}",
        config.name,
        std::process::id()
    ));
    let result = attempt(config, started, &scratch).await;
    if let Err(e) = std::fs::remove_dir_all(&scratch)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %scratch.display(), error = %e, "could not remove the scratch directory");
    }
    let etcd = match config.datastore {
        Datastore::Etcd => members(config).await,
        Datastore::Sqlite => None,
    };
    let finished = Some(Time(Timestamp::now()));
    match result {
        Ok((backup, recent, pruned)) => RunReport {
            ok: true,
            finished,
            error: None,
            backup: Some(backup),
            recent,
            pruned,
            etcd,
        },
        Err(e) => RunReport {
            ok: false,
            finished,
            error: Some(homelab_kit::error::report(&e)),
            etcd,
            ..RunReport::default()
        },
    }
}

async fn attempt(
    config: &Config,
    started: Timestamp,
    scratch: &Path,
) -> Result<(BackupRecord, Vec<BackupRecord>, u32), RunError> {
    let clock = Instant::now();
    std::fs::create_dir_all(scratch).map_err(io(format!("create {}", scratch.display())))?;
    let store = Store::open(&config.target)?;
    let key = naming::object_key(&config.name, started, config.datastore, config.compression);
    tracing::info!(location = %store.location(&key), "backup started");

    let writer = store.create(&key, PART_SIZE).await?;
    let mut sink = Sink::new(writer, config.compression)?;
    let streamed = match config.datastore {
        Datastore::Etcd => stream_etcd(config, &mut sink).await,
        Datastore::Sqlite => stream_sqlite(config, scratch, &mut sink).await,
    };
    let (sha256, size) = match streamed {
        Ok(()) => sink.finish().await?,
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    };
    store.sync(&key)?;
    tracing::info!(bytes = size, "written; verifying from the destination");

    let revision = match verify(config, &store, &key, &sha256, scratch).await {
        Ok(revision) => revision,
        Err(e) => {
            // Not a good backup: leave nothing that looks like one.
            if let Err(d) = store.delete(&key).await {
                tracing::warn!(error = %d, "could not delete the backup that failed verification");
            }
            return Err(e);
        }
    };
    let record = BackupRecord {
        time: Time(started),
        location: store.location(&key),
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        sha256,
        revision,
        duration_millis: Some(i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX)),
    };
    let manifest = serde_json::to_vec(&record).map_err(|e| RunError::Verify(e.to_string()))?;
    store
        .put_small(&format!("{key}{MANIFEST_SUFFIX}"), manifest)
        .await?;
    tracing::info!(location = %record.location, revision = ?record.revision, "backup verified");

    let (recent, pruned) = prune(config, &store, &key, started).await?;
    Ok((record, recent, pruned))
}

/// Compresses, hashes and uploads what it is fed.
struct Sink {
    writer: WriteMultipart,
    encoder: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    hash: Sha256,
    written: u64,
    reported: u64,
}

impl Sink {
    fn new(writer: WriteMultipart, compression: Compression) -> Result<Self, RunError> {
        let encoder = match compression {
            Compression::Zstd => Some(
                zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)
                    .map_err(io("start zstd"))?,
            ),
            Compression::None => None,
        };
        Ok(Self {
            writer,
            encoder,
            hash: Sha256::new(),
            written: 0,
            reported: 0,
        })
    }

    async fn feed(&mut self, chunk: &[u8]) -> Result<(), RunError> {
        match &mut self.encoder {
            Some(encoder) => {
                encoder.write_all(chunk).map_err(io("compress"))?;
                let out = std::mem::take(encoder.get_mut());
                self.put(&out).await
            }
            None => self.put(chunk).await,
        }
    }

    async fn put(&mut self, bytes: &[u8]) -> Result<(), RunError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.hash.update(bytes);
        self.writer.write(bytes);
        self.written += bytes.len() as u64;
        self.writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|source| StoreError::Request {
                what: "upload a part".into(),
                source,
            })?;
        if self.written - self.reported >= PART_SIZE as u64 {
            self.reported = self.written;
            tracing::info!(bytes = self.written, "progress");
        }
        Ok(())
    }

    /// Completes the object; returns its SHA-256 (hex) and size.
    async fn finish(mut self) -> Result<(String, u64), RunError> {
        if let Some(encoder) = self.encoder.take() {
            let rest = encoder.finish().map_err(io("finish zstd"))?;
            self.put(&rest).await?;
        }
        self.writer
            .finish()
            .await
            .map_err(|source| StoreError::Request {
                what: "complete the upload".into(),
                source,
            })?;
        Ok((format!("{:x}", self.hash.finalize()), self.written))
    }

    async fn abort(self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(error = %e, "could not abort the upload");
        }
    }
}

/// Streams a snapshot from the first endpoint that gives one.
async fn stream_etcd(config: &Config, sink: &mut Sink) -> Result<(), RunError> {
    let mut last = String::from("no endpoints");
    for endpoint in &config.endpoints {
        let channel = etcd::channel(endpoint, config.tls.as_ref())?;
        let mut client = MaintenanceClient::new(channel).max_decoding_message_size(64 << 20);
        let mut stream = match client.snapshot(pb::SnapshotRequest {}).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(endpoint, %status, "no snapshot from this endpoint");
                last = format!("{endpoint}: {status}");
                continue;
            }
        };
        // Once bytes flowed, a broken stream is the run's failure: another member's
        // snapshot would start over at another revision.
        while let Some(message) = stream.next().await {
            let message = message.map_err(|status| RunError::Stream {
                endpoint: endpoint.clone(),
                status: Box::new(status),
            })?;
            sink.feed(&message.blob).await?;
        }
        return Ok(());
    }
    Err(RunError::NoSnapshot(last))
}

/// Copies the SQLite database online into scratch, then streams the copy.
async fn stream_sqlite(config: &Config, scratch: &Path, sink: &mut Sink) -> Result<(), RunError> {
    let source = config
        .sqlite_path
        .clone()
        .ok_or_else(|| RunError::Verify("no SQLite path".into()))?;
    let copy = scratch.join("state.db");
    let target = copy.clone();
    tokio::task::spawn_blocking(move || sqlite::backup(&source, &target))
        .await
        .map_err(|e| RunError::Verify(format!("the SQLite backup task failed: {e}")))??;
    let mut file = tokio::fs::File::open(&copy)
        .await
        .map_err(io(format!("open {}", copy.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf)
            .await
            .map_err(io(format!("read {}", copy.display())))?;
        if n == 0 {
            return Ok(());
        }
        sink.feed(&buf[..n]).await?;
    }
}

/// Re-reads the object, checks its hash, unpacks it into scratch and checks the
/// database inside; returns the etcd revision.
async fn verify(
    config: &Config,
    store: &Store,
    key: &str,
    sha256: &str,
    scratch: &Path,
) -> Result<Option<i64>, RunError> {
    let raw = scratch.join("verify.db");
    let file = std::io::BufWriter::new(
        std::fs::File::create(&raw).map_err(io(format!("create {}", raw.display())))?,
    );
    let mut out: Box<dyn Write + Send> = match config.compression {
        Compression::Zstd => {
            Box::new(zstd::stream::write::Decoder::new(file).map_err(io("start zstd decoding"))?)
        }
        Compression::None => Box::new(file),
    };
    let mut hash = Sha256::new();
    let mut stream = store.read(key).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hash.update(&chunk);
        out.write_all(&chunk)
            .map_err(|e| RunError::Verify(format!("the stored file does not decompress: {e}")))?;
    }
    out.flush()
        .map_err(|e| RunError::Verify(format!("the stored file does not decompress: {e}")))?;
    drop(out);
    let reread = format!("{:x}", hash.finalize());
    if reread != sha256 {
        return Err(RunError::Verify(format!(
            "SHA-256 read back from the destination is {reread}, written was {sha256}"
        )));
    }
    match config.datastore {
        Datastore::Etcd => {
            let checked = raw.clone();
            let info = tokio::task::spawn_blocking(move || bbolt::check(&checked))
                .await
                .map_err(|e| RunError::Verify(format!("the integrity check task failed: {e}")))?
                .map_err(|e| RunError::Verify(homelab_kit::error::report(&e)))?;
            tracing::info!(
                revision = info.revision,
                key_revisions = info.key_revisions,
                hash_checked = info.hash_checked,
                "snapshot integrity"
            );
            if config.trial_restore {
                trial_restore(&raw, &scratch.join("restore")).await?;
            }
            Ok(Some(info.revision))
        }
        Datastore::Sqlite => {
            let checked = raw.clone();
            let answer = tokio::task::spawn_blocking(move || sqlite::integrity_check(&checked))
                .await
                .map_err(|e| RunError::Verify(format!("the integrity check task failed: {e}")))??;
            if answer != "ok" {
                return Err(RunError::Verify(format!(
                    "PRAGMA integrity_check: {answer}"
                )));
            }
            Ok(None)
        }
    }
}

/// Restores the snapshot with `etcdutl` (from `$ETCDUTL` or `PATH`) into a scratch
/// data directory: the proof that etcd itself can open it. The project's image has
/// no etcdutl; there the trial reads every page of every bucket instead, and says so.
async fn trial_restore(snapshot: &Path, data_dir: &Path) -> Result<(), RunError> {
    let etcdutl =
        std::env::var_os("ETCDUTL").map_or_else(|| PathBuf::from("etcdutl"), PathBuf::from);
    let output = tokio::process::Command::new(&etcdutl)
        .arg("snapshot")
        .arg("restore")
        .arg(snapshot)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let walked = snapshot.to_owned();
            let entries = tokio::task::spawn_blocking(move || bbolt::walk_everything(&walked))
                .await
                .map_err(|e| RunError::Verify(format!("the trial restore task failed: {e}")))?
                .map_err(|e| {
                    RunError::Verify(format!("trial restore: {}", homelab_kit::error::report(&e)))
                })?;
            tracing::warn!(
                entries,
                "no etcdutl in this image: the trial restore read every bucket of the snapshot instead"
            );
            return Ok(());
        }
        Err(e) => {
            return Err(RunError::Verify(format!(
                "trial restore: could not run {}: {e}",
                etcdutl.display()
            )));
        }
    };
    if !output.status.success() {
        return Err(RunError::Verify(format!(
            "trial restore failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    if !data_dir.join("member/snap/db").is_file() {
        return Err(RunError::Verify(
            "trial restore wrote no member/snap/db".into(),
        ));
    }
    Ok(())
}

/// Applies retention now that `newest` verified; returns the kept backups (newest
/// first) and how many were pruned.
async fn prune(
    config: &Config,
    store: &Store,
    newest: &str,
    started: Timestamp,
) -> Result<(Vec<BackupRecord>, u32), RunError> {
    let prefix = format!("{}-", config.name);
    let (good, leftovers) = store.verified(&prefix).await?;
    let mine: Vec<_> = good
        .into_iter()
        .filter(|s| naming::taken_at(&config.name, &s.key).is_some())
        .collect();
    let times: Vec<Timestamp> = mine.iter().map(|s| s.record.time.0).collect();
    let mut keep = retention::keep(&times, config.retention, &jiff::tz::TimeZone::UTC);
    // This run's backup is the newest verified one; whatever the policy says, it stays.
    if let Some(i) = mine.iter().position(|s| s.key == newest) {
        keep.insert(i);
    }
    let mut pruned = 0;
    let mut recent = Vec::new();
    for (i, stored) in mine.into_iter().enumerate() {
        if keep.contains(&i) {
            recent.push(stored.record);
            continue;
        }
        // The manifest first: a backup half-deleted must not look good.
        store
            .delete(&format!("{}{MANIFEST_SUFFIX}", stored.key))
            .await?;
        store.delete(&stored.key).await?;
        tracing::info!(location = %stored.record.location, "pruned");
        pruned += 1;
    }
    // Leftovers of earlier failed runs (an object without a manifest) are no backups.
    for key in leftovers {
        if naming::taken_at(&config.name, &key).is_some_and(|t| t < started) {
            store.delete(&key).await?;
            tracing::info!(location = %store.location(&key), "removed the leftover of a failed run");
        }
    }
    store.sweep_staging(&prefix);
    recent.sort_by_key(|r| std::cmp::Reverse(r.time.0));
    Ok((recent, pruned))
}

/// The etcd members, from the first endpoint that lists them; None when none does.
async fn members(config: &Config) -> Option<EtcdClusterStatus> {
    for endpoint in &config.endpoints {
        match etcd::cluster_status(endpoint, config.tls.as_ref()).await {
            Ok(status) => return Some(status),
            Err(e) => {
                tracing::warn!(endpoint, error = %homelab_kit::error::report(&e), "could not list etcd members")
            }
        }
    }
    None
}
