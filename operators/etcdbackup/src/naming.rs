//! Object names: `<backup name>-<UTC time>.<kind>[.zst]`, so that a listing sorts by
//! time and one EtcdBackup never mistakes another's files (say `a` and `a-b`) for
//! its own.

use homelab_api::etcdbackup::{Compression, Datastore};
use jiff::Timestamp;

const STAMP: &str = "%Y%m%dT%H%M%SZ";
/// Length of a stamp such as 20260101T000000Z.
const STAMP_LEN: usize = 16;

/// The object name of a backup taken at `at`.
#[must_use]
pub fn object_key(
    name: &str,
    at: Timestamp,
    datastore: Datastore,
    compression: Compression,
) -> String {
    let kind = match datastore {
        Datastore::Etcd => "db",
        Datastore::Sqlite => "sqlite",
    };
    let suffix = match compression {
        Compression::Zstd => ".zst",
        Compression::None => "",
    };
    format!("{name}-{}.{kind}{suffix}", at.strftime(STAMP))
}

/// The time in `key` when it is one of `name`'s backups (or their manifests).
#[must_use]
pub fn taken_at(name: &str, key: &str) -> Option<Timestamp> {
    let rest = key.strip_prefix(name)?.strip_prefix('-')?;
    let stamp = rest.get(..STAMP_LEN)?;
    if !rest[STAMP_LEN..].starts_with('.') {
        return None;
    }
    let local = jiff::fmt::strtime::parse(STAMP, stamp)
        .ok()?
        .to_datetime()
        .ok()?;
    Some(local.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_stay_apart() {
        let at: Timestamp = "2026-03-04T05:06:07Z".parse().unwrap();
        let key = object_key("a", at, Datastore::Etcd, Compression::Zstd);
        assert_eq!(key, "a-20260304T050607Z.db.zst");
        assert_eq!(taken_at("a", &key), Some(at));
        assert_eq!(taken_at("a", &format!("{key}.json")), Some(at));
        let other = object_key("a-b", at, Datastore::Sqlite, Compression::None);
        assert_eq!(other, "a-b-20260304T050607Z.sqlite");
        assert_eq!(taken_at("a", &other), None);
    }
}
