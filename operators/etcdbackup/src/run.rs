//! One backup run, as the CronJob's container does it: take the snapshot (etcd's
//! stream, or SQLite's online backup), hash and compress it while streaming, write
//! it atomically, verify it from the destination, write its manifest, then prune by
//! the retention policy. A run that fails at any step prunes nothing.
//!
//! The stream runs through a pipeline, each stage on its own thread so that they
//! overlap: the network (or the SQLite copy) → a compressor, beside which a keeper
//! writes the raw snapshot to scratch and fingerprints it (etcd's appended SHA-256 is
//! checked from that) → a checker, which hashes the compressed bytes and decompresses them
//! again, comparing the result byte for byte with the snapshot → the upload.
//! Verification then needs no second decompression, and for a directory no second
//! read (see [`verify`]): the stored object must be the bytes the checker hashed and
//! saw decompress to the snapshot, and the raw copy in scratch a sound database.
//! At debug level (`RUST_LOG=homelab_etcdbackup=debug`) each stage logs where its
//! time went, and the run its phases.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;

use futures::StreamExt;
use homelab_api::etcdbackup::{BackupRecord, Compression, Datastore, EtcdClusterStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use object_store::WriteMultipart;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::args::Config;
use crate::bbolt::{self, Digest32, Fingerprint};
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
/// zstd level 1: on a small control-plane node the compressor shares the CPU with
/// etcd and the network; level 3 costs a fifth more CPU for about 3% smaller files.
const ZSTD_LEVEL: i32 = 1;
/// Raw chunks (etcd sends 32 KiB ones) in flight between the network and the
/// compressor.
const RAW_IN_FLIGHT: usize = 128;
/// Compressed pieces in flight between the stages after the compressor.
const OUT_IN_FLIGHT: usize = 8;
/// Pieces in flight between the compressor and the checker: compressed ones and the
/// raw chunks they are compared with.
const CHECK_IN_FLIGHT: usize = 256;
/// The compressor hands its output on in pieces of about this size.
const OUT_PIECE: usize = 1 << 20;
/// The raw snapshot's copy in scratch.
const RAW_FILE: &str = "snapshot.db";

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
    /// A stage of the pipeline stopped because the next one did (whose error is the
    /// one reported).
    #[error("the next stage of the pipeline stopped")]
    Downstream,
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
    let raw = scratch.join(RAW_FILE);
    let streamed = pipeline(config, scratch, &raw, writer).await?;
    let streamed_at = clock.elapsed();
    store.sync(&key)?;
    let synced_at = clock.elapsed();
    tracing::info!(
        bytes = streamed.size,
        raw_bytes = streamed.raw.len(),
        millis = clock.elapsed().as_millis(),
        "written; verifying"
    );

    let verifying = Instant::now();
    let revision = match verify(config, &store, &key, &streamed, &raw, scratch).await {
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
        size_bytes: i64::try_from(streamed.size).unwrap_or(i64::MAX),
        sha256: streamed.sha256,
        revision,
        duration_millis: Some(i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX)),
    };
    let manifest = serde_json::to_vec(&record).map_err(|e| RunError::Verify(e.to_string()))?;
    store
        .put_small(&format!("{key}{MANIFEST_SUFFIX}"), manifest)
        .await?;
    let verified_at = clock.elapsed();
    tracing::info!(
        location = %record.location,
        revision = ?record.revision,
        verify_millis = verifying.elapsed().as_millis(),
        millis = clock.elapsed().as_millis(),
        "backup verified"
    );

    let (recent, pruned) = prune(config, &store, &key, started).await?;
    tracing::debug!(
        stream_ms = streamed_at.as_millis(),
        sync_ms = (synced_at - streamed_at).as_millis(),
        verify_and_manifest_ms = (verified_at - synced_at).as_millis(),
        prune_ms = (clock.elapsed() - verified_at).as_millis(),
        "phase timings"
    );
    Ok((record, recent, pruned))
}

/// What the pipeline wrote.
struct Streamed {
    /// SHA-256 (hex) of the stored object.
    sha256: String,
    /// Its size.
    size: u64,
    /// The fingerprint of the snapshot as it came.
    raw: Digest32,
}

/// What the compressor hands the checker.
enum Piece {
    /// Snapshot bytes, in order, to compare the decompression with.
    Raw(Bytes),
    /// Compressed bytes (or, uncompressed, snapshot bytes) to store.
    Packed(Bytes),
}

/// Streams the snapshot through compressor, checker and upload (see the module's
/// description), keeping the raw snapshot at `raw`; aborts the upload when any stage
/// fails.
async fn pipeline(
    config: &Config,
    scratch: &Path,
    raw: &Path,
    writer: WriteMultipart,
) -> Result<Streamed, RunError> {
    let file = std::fs::File::create(raw).map_err(io(format!("create {}", raw.display())))?;
    let (raw_tx, raw_rx) = mpsc::channel::<Bytes>(RAW_IN_FLIGHT);
    let (packed_tx, packed_rx) = mpsc::channel::<Piece>(CHECK_IN_FLIGHT);
    let (checked_tx, mut checked_rx) = mpsc::channel::<Bytes>(OUT_IN_FLIGHT);
    let compression = config.compression;
    let compressor =
        tokio::task::spawn_blocking(move || compress(raw_rx, packed_tx, compression, file));
    let checker = tokio::task::spawn_blocking(move || check(packed_rx, checked_tx, compression));
    let mut upload = Upload::new(writer);
    let source = async move {
        match config.datastore {
            Datastore::Etcd => stream_etcd(config, &raw_tx).await,
            Datastore::Sqlite => stream_sqlite(config, scratch, &raw_tx).await,
        }
    };
    let uploading = &mut upload;
    let sink = async move {
        while let Some(piece) = checked_rx.recv().await {
            uploading.put(&piece).await?;
        }
        Ok::<(), RunError>(())
    };
    let (sourced, uploaded) = tokio::join!(source, sink);
    let joined = |what: &'static str| {
        move |e: tokio::task::JoinError| RunError::Verify(format!("the {what} task failed: {e}"))
    };
    let compressed = compressor.await.map_err(joined("compression"));
    let checked = checker.await.map_err(joined("check"));
    // The first stage to fail downstream is the cause; the ones before it stopped
    // because it did.
    let outcome = uploaded.and_then(|()| {
        let (sha256, size) = checked??;
        let raw = compressed??;
        sourced?;
        Ok((sha256, size, raw))
    });
    match outcome {
        Ok((sha256, size, raw)) => {
            let finishing = Instant::now();
            upload.finish().await?;
            tracing::debug!(millis = finishing.elapsed().as_millis(), "upload completed");
            Ok(Streamed { sha256, size, raw })
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

/// The compressor stage: hands on the snapshot's compression in pieces, while a
/// thread of its own keeps the raw snapshot in `file` and fingerprints it (writing
/// scratch can wait on the disk, which the compressor must not).
fn compress(
    mut input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Piece>,
    compression: Compression,
    file: std::fs::File,
) -> Result<Digest32, RunError> {
    let (keep_tx, keep_rx) = std::sync::mpsc::sync_channel::<Bytes>(RAW_IN_FLIGHT);
    std::thread::scope(|threads| {
        let keeper = threads.spawn(move || keep(&keep_rx, file));
        let packed = pack(&mut input, &output, compression, keep_tx);
        let kept = keeper
            .join()
            .map_err(|_| RunError::Verify("the scratch copy's thread failed".into()))?;
        // When the keeper failed, the packer stopped because it did.
        let digest = kept?;
        packed?;
        Ok(digest)
    })
}

/// Keeps the raw snapshot in `file` and fingerprints it.
fn keep(
    input: &std::sync::mpsc::Receiver<Bytes>,
    file: std::fs::File,
) -> Result<Digest32, RunError> {
    let mut raw = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut fingerprint = Fingerprint::default();
    let mut busy = Busy::default();
    while let Ok(chunk) = busy.time("waiting", || input.recv()) {
        busy.time("scratch", || raw.write_all(&chunk))
            .map_err(io("write the snapshot to scratch"))?;
        busy.time("fingerprint", || fingerprint.update(&chunk));
    }
    busy.time("scratch", || raw.flush())
        .map_err(io("write the snapshot to scratch"))?;
    busy.log("keeper");
    Ok(fingerprint.finish())
}

/// Compresses what comes from `input`, handing each chunk to the keeper as well.
fn pack(
    input: &mut mpsc::Receiver<Bytes>,
    output: &mpsc::Sender<Piece>,
    compression: Compression,
    keeper: std::sync::mpsc::SyncSender<Bytes>,
) -> Result<(), RunError> {
    let mut encoder = match compression {
        Compression::Zstd => Some(
            zstd::stream::write::Encoder::new(Vec::with_capacity(2 * OUT_PIECE), ZSTD_LEVEL)
                .map_err(io("start zstd"))?,
        ),
        Compression::None => None,
    };
    let mut busy = Busy::default();
    let send = |piece: Piece, busy: &mut Busy| {
        busy.time("waiting", || output.blocking_send(piece))
            .map_err(|_| RunError::Downstream)
    };
    while let Some(chunk) = busy.time("waiting", || input.blocking_recv()) {
        busy.time("waiting", || keeper.send(chunk.clone()))
            .map_err(|_| RunError::Downstream)?;
        match &mut encoder {
            Some(encoder) => {
                busy.time("zstd", || encoder.write_all(&chunk))
                    .map_err(io("compress"))?;
                // The raw chunk first: the checker compares what the compressed
                // pieces decompress to with the chunks that came before them.
                send(Piece::Raw(chunk), &mut busy)?;
                if encoder.get_ref().len() >= OUT_PIECE {
                    let piece =
                        std::mem::replace(encoder.get_mut(), Vec::with_capacity(2 * OUT_PIECE));
                    send(Piece::Packed(Bytes::from(piece)), &mut busy)?;
                }
            }
            None => send(Piece::Packed(chunk), &mut busy)?,
        }
    }
    if let Some(encoder) = encoder {
        let rest = busy
            .time("zstd", || encoder.finish())
            .map_err(io("finish zstd"))?;
        if !rest.is_empty() {
            send(Piece::Packed(Bytes::from(rest)), &mut busy)?;
        }
    }
    busy.log("compressor");
    Ok(())
}

/// Where a stage's thread spent its time, logged at debug level when it ends.
#[derive(Default)]
struct Busy {
    spent: Vec<(&'static str, std::time::Duration)>,
}

impl Busy {
    fn time<T>(&mut self, what: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let took = start.elapsed();
        match self.spent.iter_mut().find(|(w, _)| *w == what) {
            Some((_, d)) => *d += took,
            None => self.spent.push((what, took)),
        }
        out
    }

    fn log(&self, stage: &str) {
        let spent = self
            .spent
            .iter()
            .map(|(w, d)| format!("{w}={}ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::debug!(stage, %spent, "stage timings");
    }
}

/// Compares what is written to it with the snapshot's chunks, in order.
#[derive(Default)]
struct SameAs {
    pending: std::collections::VecDeque<Bytes>,
}

impl Write for SameAs {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let Some(front) = self.pending.front_mut() else {
                return Err(std::io::Error::other("it gives more than the snapshot"));
            };
            let n = front.len().min(buf.len());
            if front[..n] != buf[..n] {
                return Err(std::io::Error::other("it differs from the snapshot"));
            }
            buf = &buf[n..];
            if n == front.len() {
                self.pending.pop_front();
            } else {
                *front = front.slice(n..);
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The checker stage: hashes the bytes that will be stored and, compressed, proves
/// they decompress to the very snapshot; returns the hash (hex) and the size.
fn check(
    mut input: mpsc::Receiver<Piece>,
    output: mpsc::Sender<Bytes>,
    compression: Compression,
) -> Result<(String, u64), RunError> {
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut decoder = match compression {
        Compression::Zstd => Some(
            zstd::stream::write::Decoder::new(SameAs::default())
                .map_err(io("start zstd decoding"))?,
        ),
        Compression::None => None,
    };
    let undecodable = |e: std::io::Error| {
        RunError::Verify(format!(
            "the compressed stream does not decompress to the snapshot: {e}"
        ))
    };
    let mut busy = Busy::default();
    while let Some(piece) = busy.time("waiting", || input.blocking_recv()) {
        let piece = match (piece, &mut decoder) {
            (Piece::Raw(chunk), Some(decoder)) => {
                decoder.get_mut().pending.push_back(chunk);
                continue;
            }
            (Piece::Raw(_), None) => continue,
            (Piece::Packed(piece), _) => piece,
        };
        busy.time("sha256", || hash.update(&piece));
        size += piece.len() as u64;
        if let Some(decoder) = &mut decoder {
            busy.time("unzstd", || decoder.write_all(&piece))
                .map_err(undecodable)?;
        }
        busy.time("waiting", || output.blocking_send(piece))
            .map_err(|_| RunError::Downstream)?;
    }
    busy.log("checker");
    if let Some(mut decoder) = decoder {
        decoder.flush().map_err(undecodable)?;
        if !decoder.get_ref().pending.is_empty() {
            return Err(undecodable(std::io::Error::other(
                "it gives less than the snapshot",
            )));
        }
    }
    Ok((format!("{:x}", hash.finalize()), size))
}

/// The upload stage.
struct Upload {
    writer: WriteMultipart,
    written: u64,
    reported: u64,
}

impl Upload {
    fn new(writer: WriteMultipart) -> Self {
        Self {
            writer,
            written: 0,
            reported: 0,
        }
    }

    async fn put(&mut self, bytes: &[u8]) -> Result<(), RunError> {
        if bytes.is_empty() {
            return Ok(());
        }
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

    /// Completes the object.
    async fn finish(self) -> Result<(), RunError> {
        self.writer
            .finish()
            .await
            .map_err(|source| StoreError::Request {
                what: "complete the upload".into(),
                source,
            })?;
        Ok(())
    }

    async fn abort(self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(error = %e, "could not abort the upload");
        }
    }
}

/// Streams a snapshot from the first endpoint that gives one.
async fn stream_etcd(config: &Config, sink: &mpsc::Sender<Bytes>) -> Result<(), RunError> {
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
            if !message.blob.is_empty() {
                sink.send(message.blob)
                    .await
                    .map_err(|_| RunError::Downstream)?;
            }
        }
        return Ok(());
    }
    Err(RunError::NoSnapshot(last))
}

/// Copies the SQLite database online into scratch, then streams the copy.
async fn stream_sqlite(
    config: &Config,
    scratch: &Path,
    sink: &mpsc::Sender<Bytes>,
) -> Result<(), RunError> {
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
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf)
            .await
            .map_err(io(format!("read {}", copy.display())))?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        sink.send(Bytes::from(buf))
            .await
            .map_err(|_| RunError::Downstream)?;
    }
}

/// Checks the backup: the stored object is the one the pipeline streamed, and the
/// snapshot (its raw copy in scratch) is a sound database; returns the etcd revision.
///
/// The pipeline already proved, in its one pass, that the bytes it handed to the
/// destination (whose SHA-256 it took) decompress to exactly the snapshot, and the
/// snapshot carries etcd's own SHA-256. What is left to check is that the destination
/// kept those bytes:
/// - a directory: the file was written part by part, completed by a rename and synced
///   (file and directory) without error, and has exactly the streamed size. Reading
///   it back right after writing would only read the page cache (not the disk), so it
///   proves nothing the write's success did not.
/// - S3: another machine assembled the object from the parts; it is read back and
///   its SHA-256 compared.
async fn verify(
    config: &Config,
    store: &Store,
    key: &str,
    streamed: &Streamed,
    raw: &Path,
    scratch: &Path,
) -> Result<Option<i64>, RunError> {
    let clock = Instant::now();
    let stored = async {
        if store.dir().is_some() {
            let size = store.size(key).await?;
            if size != streamed.size {
                return Err(RunError::Verify(format!(
                    "the stored file has {size} bytes, written were {}",
                    streamed.size
                )));
            }
            return Ok(());
        }
        let (reread, size) = store.sha256(key).await?;
        tracing::debug!(
            millis = clock.elapsed().as_millis(),
            "re-read from the destination"
        );
        if reread != streamed.sha256 || size != streamed.size {
            return Err(RunError::Verify(format!(
                "SHA-256 read back from the destination is {reread} ({size} bytes), written was {} ({} bytes)",
                streamed.sha256, streamed.size
            )));
        }
        Ok(())
    };
    let checked = async {
        let checked = sound(config, streamed, raw).await;
        tracing::debug!(millis = clock.elapsed().as_millis(), "integrity check");
        checked
    };
    let (stored, checked) = tokio::join!(stored, checked);
    stored?;
    let revision = checked?;
    if let (Datastore::Etcd, true) = (config.datastore, config.trial_restore) {
        trial_restore(raw, &scratch.join("restore")).await?;
    }
    Ok(revision)
}

/// Whether the raw snapshot at `raw` is a sound database; its etcd revision.
async fn sound(config: &Config, streamed: &Streamed, raw: &Path) -> Result<Option<i64>, RunError> {
    match config.datastore {
        Datastore::Etcd => {
            let hash_checked = streamed
                .raw
                .appended_hash()
                .map_err(|e| RunError::Verify(homelab_kit::error::report(&e)))?;
            let checked = raw.to_owned();
            let info =
                tokio::task::spawn_blocking(move || bbolt::check_structure(&checked, hash_checked))
                    .await
                    .map_err(|e| RunError::Verify(format!("the integrity check task failed: {e}")))?
                    .map_err(|e| RunError::Verify(homelab_kit::error::report(&e)))?;
            tracing::info!(
                revision = info.revision,
                key_revisions = info.key_revisions,
                hash_checked = info.hash_checked,
                "snapshot integrity"
            );
            Ok(Some(info.revision))
        }
        Datastore::Sqlite => {
            let checked = raw.to_owned();
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
/// data directory: the proof that etcd itself can open it. The project's image
/// carries etcdutl; in an image without it the trial reads every page of every
/// bucket instead, and says so.
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
    tracing::info!(etcdutl = %etcdutl.display(), "trial restore: etcdutl restored the snapshot");
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
