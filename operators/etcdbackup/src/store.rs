//! Where backups live: a directory (a claim or a host path) or an S3 bucket, behind
//! one object-store interface. Both write atomically: a directory through a staging
//! file renamed into place when complete, S3 through a multipart upload that becomes
//! an object only when completed. A run killed halfway leaves no object under a
//! backup's name.
//!
//! A backup counts only when its manifest (`<object>.json`, written after the object
//! verified) exists beside an object of the recorded size; an object without a
//! manifest is the leftover of a failed run.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use homelab_api::etcdbackup::BackupRecord;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, WriteMultipart};

/// Manifests end with this after the object's name.
pub const MANIFEST_SUFFIX: &str = ".json";

/// The S3 settings of a run (credentials come from the environment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Bucket.
    pub bucket: String,
    /// Endpoint URL; AWS when unset.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Key prefix, such as `homelab/etcd/`.
    pub prefix: String,
    /// endpoint/bucket addressing.
    pub path_style: bool,
    /// PEM file of a CA to trust.
    pub ca_file: Option<PathBuf>,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// Where to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A directory.
    Dir(PathBuf),
    /// A bucket.
    S3(S3Settings),
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An object store request failed.
    #[error("{what}")]
    Request {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn request(what: impl Into<String>) -> impl FnOnce(object_store::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Request { what, source }
}

/// A verified backup as found in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The object's key inside the store.
    pub key: String,
    /// Its manifest.
    pub record: BackupRecord,
}

/// An opened destination.
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Key prefix inside the store.
    prefix: String,
    /// How a key is shown to a person: a path, or s3://bucket/key.
    base: String,
    /// The directory, for fsync and sweeping staging files.
    dir: Option<PathBuf>,
}

impl Store {
    /// Opens `target`, creating a directory if needed.
    ///
    /// # Errors
    /// When the directory cannot be created or the S3 settings are unusable.
    pub fn open(target: &Target) -> Result<Self, StoreError> {
        match target {
            Target::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    what: format!("create {}", dir.display()),
                    source,
                })?;
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(request(format!("open {}", dir.display())))?;
                Ok(Self {
                    inner: Arc::new(fs),
                    prefix: String::new(),
                    base: format!("{}/", dir.display()),
                    dir: Some(dir.clone()),
                })
            }
            Target::S3(s3) => {
                let mut options = ClientOptions::new().with_allow_http(true);
                if let Some(ca) = &s3.ca_file {
                    let pem = std::fs::read(ca).map_err(|source| StoreError::Io {
                        what: format!("read the S3 CA {}", ca.display()),
                        source,
                    })?;
                    let cert = object_store::Certificate::from_pem(&pem)
                        .map_err(request(format!("read the S3 CA {}", ca.display())))?;
                    options = options.with_root_certificate(cert);
                }
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(&s3.secret_access_key)
                    .with_virtual_hosted_style_request(!s3.path_style)
                    .with_client_options(options);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                let inner = builder
                    .build()
                    .map_err(request(format!("configure bucket {}", s3.bucket)))?;
                Ok(Self {
                    inner: Arc::new(inner),
                    prefix: s3.prefix.clone(),
                    base: format!("s3://{}/{}", s3.bucket, s3.prefix),
                    dir: None,
                })
            }
        }
    }

    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    /// How a person finds `key`: a file path or an s3:// URL.
    #[must_use]
    pub fn location(&self, key: &str) -> String {
        format!("{}{key}", self.base)
    }

    /// Starts an atomic upload of `key` in parts of `part_size` bytes.
    ///
    /// # Errors
    /// When the upload cannot start.
    pub async fn create(&self, key: &str, part_size: usize) -> Result<WriteMultipart, StoreError> {
        let upload = self
            .inner
            .put_multipart(&self.path(key))
            .await
            .map_err(request(format!("start writing {}", self.location(key))))?;
        Ok(WriteMultipart::new_with_chunk_size(upload, part_size))
    }

    /// Makes a completed file durable (a directory's rename is not durable until the
    /// directory is synced); nothing to do for S3.
    ///
    /// # Errors
    /// When syncing fails.
    pub fn sync(&self, key: &str) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let io = |what: String| move |source| StoreError::Io { what, source };
        let file = dir.join(key);
        std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("sync {}", file.display())))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("sync {}", dir.display())))
    }

    /// Reads `key` as a stream of chunks.
    ///
    /// # Errors
    /// When it cannot be opened.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<impl futures::Stream<Item = Result<Bytes, StoreError>> + use<>, StoreError> {
        let what = format!("read {}", self.location(key));
        let got = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(request(what.clone()))?;
        Ok(got
            .into_stream()
            .map_err(move |source| StoreError::Request {
                what: what.clone(),
                source,
            }))
    }

    /// Reads `key` back and returns its SHA-256 (hex) and size: a directory's file
    /// straight from disk in large reads (object_store's local reads go in small
    /// chunks, each a task of its own), an S3 object as a stream.
    ///
    /// # Errors
    /// When it cannot be read.
    pub async fn sha256(&self, key: &str) -> Result<(String, u64), StoreError> {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let mut size = 0u64;
        if let Some(dir) = &self.dir {
            let file = dir.join(key);
            let what = format!("read {}", file.display());
            return tokio::task::spawn_blocking(move || {
                let mut reader = std::fs::File::open(&file)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut reader, &mut buf)?;
                    if n == 0 {
                        return Ok((format!("{:x}", hash.finalize()), size));
                    }
                    hash.update(&buf[..n]);
                    size += n as u64;
                }
            })
            .await
            .map_err(|e| StoreError::Io {
                what: what.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| StoreError::Io { what, source });
        }
        let mut stream = self.read(key).await?;
        while let Some(chunk) = stream.try_next().await? {
            hash.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok((format!("{:x}", hash.finalize()), size))
    }

    /// The size of the stored `key`.
    ///
    /// # Errors
    /// When it cannot be found.
    pub async fn size(&self, key: &str) -> Result<u64, StoreError> {
        let meta = self
            .inner
            .head(&self.path(key))
            .await
            .map_err(request(format!("look at {}", self.location(key))))?;
        Ok(meta.size)
    }

    /// Writes a small object in one request (atomic as well).
    ///
    /// # Errors
    /// When the write fails.
    pub async fn put_small(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.inner
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map_err(request(format!("write {}", self.location(key))))?;
        self.sync(key)
    }

    /// Deletes `key`; a missing one is fine.
    ///
    /// # Errors
    /// When the delete fails.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(request(format!("delete {}", self.location(key)))(e)),
        }
    }

    /// Every key under the prefix starting with `name_prefix`, with its size.
    ///
    /// # Errors
    /// When listing fails.
    pub async fn list(&self, name_prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix =
            (!self.prefix.is_empty()).then(|| Path::from(self.prefix.trim_end_matches('/')));
        let objects: Vec<_> = self
            .inner
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(request(format!("list {}", self.base)))?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let key = o.location.as_ref().strip_prefix(&self.prefix)?.to_owned();
                (!key.contains('/') && key.starts_with(name_prefix)).then_some((key, o.size))
            })
            .collect())
    }

    /// The verified backups whose names start with `name_prefix`: objects with a
    /// manifest that agrees with the object's size. Also returns the keys of objects
    /// without a good manifest (failed runs' leftovers).
    ///
    /// # Errors
    /// When listing or reading a manifest fails.
    pub async fn verified(
        &self,
        name_prefix: &str,
    ) -> Result<(Vec<Stored>, Vec<String>), StoreError> {
        let all = self.list(name_prefix).await?;
        let sizes: std::collections::HashMap<&str, u64> =
            all.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        let mut good = Vec::new();
        let mut leftovers = Vec::new();
        for (key, _) in &all {
            if key.ends_with(MANIFEST_SUFFIX) {
                continue;
            }
            let manifest = format!("{key}{MANIFEST_SUFFIX}");
            let record = if sizes.contains_key(manifest.as_str()) {
                self.read_manifest(&manifest).await?
            } else {
                None
            };
            match record {
                Some(record)
                    if u64::try_from(record.size_bytes).ok()
                        == sizes.get(key.as_str()).copied() =>
                {
                    good.push(Stored {
                        key: key.clone(),
                        record,
                    });
                }
                _ => leftovers.push(key.clone()),
            }
        }
        // Manifests whose object is gone are leftovers too.
        for (key, _) in &all {
            if let Some(object) = key.strip_suffix(MANIFEST_SUFFIX)
                && !sizes.contains_key(object)
            {
                leftovers.push(key.clone());
            }
        }
        Ok((good, leftovers))
    }

    async fn read_manifest(&self, key: &str) -> Result<Option<BackupRecord>, StoreError> {
        let bytes: Vec<Bytes> = self.read(key).await?.try_collect().await?;
        let bytes = bytes.concat();
        // A manifest that does not parse makes its backup not count; it is not an error.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Removes staging files of runs killed halfway (directories only: an S3 server
    /// expires incomplete multipart uploads by its own lifecycle rules).
    pub fn sweep_staging(&self, name_prefix: &str) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(name_prefix)
                && is_staging(&name)
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(file = %entry.path().display(), error = %e, "could not remove a staging file");
            }
        }
    }

    /// The local directory, when the store is one.
    #[must_use]
    pub fn dir(&self) -> Option<&FsPath> {
        self.dir.as_deref()
    }
}

/// object_store's staging files are `<name>#<digits>`.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        assert!(is_staging("etcd-20260101T000000Z.db.zst#1"));
        assert!(!is_staging("etcd-20260101T000000Z.db.zst"));
        assert!(!is_staging("a#b"));
    }
}
