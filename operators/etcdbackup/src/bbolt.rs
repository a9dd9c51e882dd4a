//! Snapshot integrity without etcd: what `etcdutl snapshot status` reads from the
//! file. An etcd snapshot is a bbolt database followed by the SHA-256 of the database
//! (etcd appends it while streaming); the database's `key` bucket holds one entry per
//! revision of every key, keyed by the revision. So a snapshot is sound when the hash
//! matches and the B+tree can be walked from a valid meta page, and its revision is
//! the newest key in that bucket.
//!
//! The layout (bbolt's `page.go`, `node.go`, `db.go`): pages of `pageSize` bytes, each
//! with a 16-byte header (id, flags, count, overflow); pages 0 and 1 are meta pages
//! (magic, version, page size, root bucket, txid, FNV-64a checksum), the one with the
//! higher txid and a good checksum wins; branch elements point at child pages; leaf
//! elements with the bucket flag hold a sub-bucket (its root page, or inline).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

const MAGIC: u32 = 0xED0C_DAED;
const HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const BUCKET_LEAF: u32 = 0x01;
/// Deeper than any real tree: a guard against cycles in a damaged file.
const MAX_DEPTH: usize = 64;
/// Pages (with their overflow) up to this size are read whole; of larger ones (a
/// large value's) only what the walk needs.
const WHOLE_PAGE: usize = 64 << 10;

/// What a sound snapshot says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The newest revision in the snapshot.
    pub revision: i64,
    /// Entries in the `key` bucket: every stored revision of every key (etcdutl's
    /// TOTAL KEYS counts differently).
    pub key_revisions: u64,
    /// Size of the file in bytes, hash included.
    pub size: u64,
    /// Whether etcd's SHA-256 was appended (and matched; a mismatch is an error).
    pub hash_checked: bool,
}

/// Why a snapshot is not sound.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// Could not read the file.
    #[error("could not read the snapshot")]
    Io(#[from] std::io::Error),
    /// The appended hash does not match the database.
    #[error("the SHA-256 etcd appended to the snapshot does not match its contents")]
    HashMismatch,
    /// The bbolt structure is damaged.
    #[error("the snapshot's database is damaged: {0}")]
    Structure(String),
}

fn damaged(why: impl Into<String>) -> IntegrityError {
    IntegrityError::Structure(why.into())
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, IntegrityError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| damaged("a page ends early"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, IntegrityError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| damaged("a page ends early"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, IntegrityError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| damaged("a page ends early"))
}

fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Checks the snapshot file at `path`.
///
/// # Errors
/// When it cannot be read, its hash does not match, or its structure is damaged.
pub fn check(path: &Path) -> Result<SnapshotInfo, IntegrityError> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    // bbolt files are whole pages (multiples of 512); etcd appends 32 bytes of hash.
    let hash_checked = size % 512 == 32;
    let db_len = if hash_checked { size - 32 } else { size };
    if hash_checked {
        let mut hasher = Sha256::new();
        let mut reader = (&file).take(db_len);
        std::io::copy(&mut reader, &mut hasher)?;
        let mut appended = [0u8; 32];
        file.read_exact_at(&mut appended, db_len)?;
        if hasher.finalize().as_slice() != appended {
            return Err(IntegrityError::HashMismatch);
        }
    }
    structure(file, size, db_len, hash_checked)
}

fn structure(
    file: File,
    size: u64,
    db_len: u64,
    hash_checked: bool,
) -> Result<SnapshotInfo, IntegrityError> {
    let db = Db::open(file, db_len)?;
    let key_bucket = db
        .bucket_root(db.root, b"key")?
        .ok_or_else(|| damaged("no `key` bucket"))?;
    let mut walk = Walk::default();
    db.walk(&key_bucket, 0, &mut walk)?;
    let revision = match &walk.last_key {
        Some(key) if key.len() >= 8 => {
            let main: [u8; 8] = key[..8]
                .try_into()
                .map_err(|_| damaged("short revision key"))?;
            i64::try_from(u64::from_be_bytes(main)).map_err(|_| damaged("revision out of range"))?
        }
        Some(_) => return Err(damaged("a revision key is shorter than 8 bytes")),
        None => 0,
    };
    Ok(SnapshotInfo {
        revision,
        key_revisions: walk.entries,
        size,
        hash_checked,
    })
}

/// The identity of a snapshot, taken while its bytes stream past: the SHA-256 of
/// all but the last 32 bytes (what etcd hashes), those 32 bytes, and the length. Two
/// byte streams with equal fingerprints are equal (as far as SHA-256 tells), and the
/// fingerprint says whether etcd's appended hash matched without reading the file
/// again.
#[derive(Clone, Default)]
pub struct Fingerprint {
    body: Sha256,
    tail: Vec<u8>,
    len: u64,
}

/// A finished [`Fingerprint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest32 {
    body: [u8; 32],
    tail: Vec<u8>,
    len: u64,
}

impl Fingerprint {
    /// Takes in the next bytes of the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if bytes.len() >= 32 {
            self.body.update(&self.tail);
            let (head, tail) = bytes.split_at(bytes.len() - 32);
            self.body.update(head);
            self.tail.clear();
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(bytes);
            let over = self.tail.len().saturating_sub(32);
            self.body.update(&self.tail[..over]);
            self.tail.drain(..over);
        }
    }

    /// The fingerprint of everything taken in.
    #[must_use]
    pub fn finish(self) -> Digest32 {
        Digest32 {
            body: self.body.finalize().into(),
            tail: self.tail,
            len: self.len,
        }
    }
}

impl std::io::Write for Fingerprint {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Digest32 {
    /// The stream's length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the stream was empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether etcd appended its SHA-256 (as [`check`] decides: the size is whole
    /// pages plus 32 bytes); an error when it did and the hash does not match.
    ///
    /// # Errors
    /// When the appended hash does not match.
    pub fn appended_hash(&self) -> Result<bool, IntegrityError> {
        let appended = self.len % 512 == 32;
        if appended && self.tail != self.body {
            return Err(IntegrityError::HashMismatch);
        }
        Ok(appended)
    }
}

/// Checks the structure of the snapshot file at `path` whose appended hash was
/// already checked while it streamed (`hash_checked` from
/// [`Digest32::appended_hash`]): what [`check`] does, without hashing the file again.
///
/// # Errors
/// When it cannot be read or its structure is damaged.
pub fn check_structure(path: &Path, hash_checked: bool) -> Result<SnapshotInfo, IntegrityError> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if hash_checked != (size % 512 == 32) {
        return Err(damaged("the file's size is not the streamed size"));
    }
    let db_len = if hash_checked { size - 32 } else { size };
    structure(file, size, db_len, hash_checked)
}

/// Called with each leaf element's flags, key and value.
type Visitor<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<(), IntegrityError> + 'a;

/// Reads every page of every bucket (nested ones too) of the database at `path`:
/// what opening it for a restore would touch. Returns the number of entries.
///
/// # Errors
/// When the file cannot be read or a page is damaged.
pub fn walk_everything(path: &Path) -> Result<u64, IntegrityError> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let db_len = if size % 512 == 32 { size - 32 } else { size };
    let db = Db::open(file, db_len)?;
    let mut entries = 0;
    db.walk_buckets(&Node::Page(db.root), 0, &mut entries)?;
    Ok(entries)
}

/// A page, or a bucket's inline page.
enum Node {
    Page(u64),
    Inline(Vec<u8>),
}

#[derive(Default)]
struct Walk {
    entries: u64,
    last_key: Option<Vec<u8>>,
}

struct Db {
    file: File,
    len: u64,
    page_size: u64,
    root: u64,
}

impl Db {
    fn open(file: File, len: u64) -> Result<Self, IntegrityError> {
        let mut first = vec![0u8; 4096.min(usize::try_from(len).unwrap_or(4096))];
        file.read_exact_at(&mut first, 0)?;
        let page_size = u64::from(u32_at(&first, HEADER + 8)?);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(damaged(format!("page size {page_size} in meta page 0")));
        }
        let mut best: Option<(u64, u64)> = None;
        for id in 0..2u64 {
            let mut page = vec![0u8; 80];
            file.read_exact_at(&mut page, id * page_size)?;
            if let Ok((txid, root)) = meta(&page)
                && best.is_none_or(|(t, _)| txid > t)
            {
                best = Some((txid, root));
            }
        }
        let (_, root) = best.ok_or_else(|| damaged("neither meta page is valid"))?;
        Ok(Self {
            file,
            len,
            page_size,
            root,
        })
    }

    /// A page and its overflow pages: read whole when small, otherwise only its first
    /// page (header and elements) now and the rest as asked for.
    fn page(&self, id: u64) -> Result<Page, IntegrityError> {
        let at = id
            .checked_mul(self.page_size)
            .filter(|at| at + self.page_size <= self.len)
            .ok_or_else(|| damaged(format!("page {id} lies outside the file")))?;
        let mut header = [0u8; HEADER];
        self.file.read_exact_at(&mut header, at)?;
        if u64_at(&header, 0)? != id {
            return Err(damaged(format!("page {id} carries another id")));
        }
        let overflow = u64::from(u32_at(&header, 12)?);
        let span = (overflow + 1) * self.page_size;
        if at + span > self.len {
            return Err(damaged(format!("page {id} overflows the file")));
        }
        let span = usize::try_from(span).map_err(|_| damaged("page too large"))?;
        let count = usize::from(u16_at(&header, 10)?);
        let elements = HEADER + count * ELEMENT;
        if elements > span {
            return Err(damaged(format!("page {id}'s elements run past it")));
        }
        let head = if span <= WHOLE_PAGE {
            span
        } else {
            elements.max(usize::try_from(self.page_size).unwrap_or(span))
        };
        let mut bytes = vec![0u8; head];
        self.file.read_exact_at(&mut bytes, at)?;
        Ok(Page {
            at,
            span,
            head: bytes,
        })
    }

    /// `len` bytes at `offset` inside `page`.
    fn slice<'p>(
        &self,
        page: &'p Page,
        offset: usize,
        len: usize,
    ) -> Result<std::borrow::Cow<'p, [u8]>, IntegrityError> {
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= page.span)
            .ok_or_else(|| damaged("an element runs past its page"))?;
        if let Some(bytes) = page.head.get(offset..end) {
            return Ok(std::borrow::Cow::Borrowed(bytes));
        }
        let mut bytes = vec![0u8; len];
        self.file
            .read_exact_at(&mut bytes, page.at + offset as u64)?;
        Ok(std::borrow::Cow::Owned(bytes))
    }

    fn node_page(&self, node: &Node) -> Result<Page, IntegrityError> {
        match node {
            Node::Page(id) => self.page(*id),
            Node::Inline(bytes) => Ok(Page {
                at: 0,
                span: bytes.len(),
                head: bytes.clone(),
            }),
        }
    }

    /// Finds the sub-bucket `name` among the leaves of the bucket rooted at `root`.
    fn bucket_root(&self, root: u64, name: &[u8]) -> Result<Option<Node>, IntegrityError> {
        let mut found = None;
        self.for_each_leaf(
            &Node::Page(root),
            0,
            bucket_values,
            &mut |flags, key, value| {
                if flags & BUCKET_LEAF != 0 && key == name {
                    found = Some(bucket_node(value)?);
                }
                Ok(())
            },
        )?;
        Ok(found)
    }

    fn walk_buckets(
        &self,
        node: &Node,
        depth: usize,
        entries: &mut u64,
    ) -> Result<(), IntegrityError> {
        let mut buckets = Vec::new();
        self.for_each_leaf(node, depth, all_values, &mut |flags, _, value| {
            *entries += 1;
            if flags & BUCKET_LEAF != 0 {
                buckets.push(bucket_node(value)?);
            }
            Ok(())
        })?;
        for bucket in &buckets {
            self.walk_buckets(bucket, depth + 1, entries)?;
        }
        Ok(())
    }

    fn walk(&self, node: &Node, depth: usize, walk: &mut Walk) -> Result<(), IntegrityError> {
        self.for_each_leaf(node, depth, no_values, &mut |_, key, _| {
            walk.entries += 1;
            walk.last_key = Some(key.to_vec());
            Ok(())
        })
    }

    /// Calls `visit` with every leaf element under `node`; values are read only for
    /// elements whose flags `wanted` accepts (the others get an empty value, their
    /// bounds still checked): etcd's hash already covered every byte, the walk is about
    /// the tree, and a snapshot's values are most of its size.
    fn for_each_leaf(
        &self,
        node: &Node,
        depth: usize,
        wanted: fn(u32) -> bool,
        visit: &mut Visitor<'_>,
    ) -> Result<(), IntegrityError> {
        if depth > MAX_DEPTH {
            return Err(damaged("the tree is deeper than any real one (a cycle?)"));
        }
        let page = self.node_page(node)?;
        let head = &page.head;
        let flags = u16_at(head, 8)?;
        let count = usize::from(u16_at(head, 10)?);
        for i in 0..count {
            let elem = HEADER + i * ELEMENT;
            if flags & BRANCH != 0 {
                let child = u64_at(head, elem + 8)?;
                self.for_each_leaf(&Node::Page(child), depth + 1, wanted, visit)?;
            } else if flags & LEAF != 0 {
                let leaf_flags = u32_at(head, elem)?;
                let pos = elem + u32_at(head, elem + 4)? as usize;
                let ksize = u32_at(head, elem + 8)? as usize;
                let vsize = u32_at(head, elem + 12)? as usize;
                let key = self
                    .slice(&page, pos, ksize)
                    .map_err(|_| damaged("a key runs past its page"))?;
                let value_at = pos + ksize;
                let value = if wanted(leaf_flags) {
                    self.slice(&page, value_at, vsize)
                        .map_err(|_| damaged("a value runs past its page"))?
                } else if value_at
                    .checked_add(vsize)
                    .is_some_and(|end| end <= page.span)
                {
                    std::borrow::Cow::Borrowed(&[][..])
                } else {
                    return Err(damaged("a value runs past its page"));
                };
                visit(leaf_flags, &key, &value)?;
            } else {
                return Err(damaged(format!("a tree page has flags {flags:#x}")));
            }
        }
        Ok(())
    }
}

/// A page as read: `head` holds its first bytes (all of it when `span` is small).
struct Page {
    /// Offset in the file.
    at: u64,
    /// Length with its overflow pages.
    span: usize,
    head: Vec<u8>,
}

fn all_values(_: u32) -> bool {
    true
}

fn bucket_values(flags: u32) -> bool {
    flags & BUCKET_LEAF != 0
}

fn no_values(_: u32) -> bool {
    false
}

/// A sub-bucket's value: its root page, or (root 0) an inline page after the header.
fn bucket_node(value: &[u8]) -> Result<Node, IntegrityError> {
    let root = u64_at(value, 0)?;
    if root == 0 {
        Ok(Node::Inline(value.get(16..).unwrap_or_default().to_vec()))
    } else {
        Ok(Node::Page(root))
    }
}

/// A meta page's txid and root bucket page, when its magic and checksum are right.
fn meta(page: &[u8]) -> Result<(u64, u64), IntegrityError> {
    if u16_at(page, 8)? & META == 0 || u32_at(page, HEADER)? != MAGIC {
        return Err(damaged("not a meta page"));
    }
    let checksum = u64_at(page, HEADER + 56)?;
    if fnv64a(&page[HEADER..HEADER + 56]) != checksum {
        return Err(damaged("meta checksum mismatch"));
    }
    Ok((u64_at(page, HEADER + 48)?, u64_at(page, HEADER + 16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference() {
        // FNV-1a 64 of "a" (the reference test vector).
        assert_eq!(fnv64a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn fingerprint_splits_the_appended_hash() {
        let mut db = vec![3u8; 1024];
        db.extend_from_slice(&Sha256::digest(&db));
        for step in [1, 7, 31, 32, 33, 500, 4096] {
            let mut f = Fingerprint::default();
            for chunk in db.chunks(step) {
                f.update(chunk);
            }
            let d = f.finish();
            assert_eq!(d.len(), 1056);
            assert!(d.appended_hash().unwrap(), "step {step}");
            let mut whole = Fingerprint::default();
            whole.update(&db);
            assert_eq!(whole.finish(), d);
        }
        let last = db.len() - 1;
        db[last] ^= 1;
        let mut f = Fingerprint::default();
        f.update(&db);
        assert!(matches!(
            f.finish().appended_hash(),
            Err(IntegrityError::HashMismatch)
        ));
    }

    #[test]
    fn garbage_is_refused() {
        let dir = std::env::temp_dir().join(format!("bbolt-garbage-{}", std::process::id()));
        std::fs::write(&dir, vec![7u8; 8192]).unwrap();
        let e = check(&dir).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(e, IntegrityError::Structure(_)), "{e}");
    }
}
