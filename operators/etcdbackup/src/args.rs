//! The runner's command line: `etcd-backup snapshot --flag value ...`, as the
//! controller writes it into the CronJob. Flags, not a config file, so that
//! `kubectl get cronjob -o yaml` shows what a run does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use homelab_api::etcdbackup::{Compression, Datastore};

use crate::etcd::TlsFiles;
use crate::retention::Policy;
use crate::store::{S3Settings, Target};

/// Environment variables the runner reads S3 credentials from (set from Secrets).
pub const ENV_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// See [`ENV_ACCESS_KEY_ID`].
pub const ENV_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// Where the kubelet reads a container's termination message.
pub const DEFAULT_REPORT_FILE: &str = "/dev/termination-log";

/// What one run does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The EtcdBackup's name: every object name starts with it.
    pub name: String,
    /// etcd or SQLite.
    pub datastore: Datastore,
    /// etcd client URLs, tried in order.
    pub endpoints: Vec<String>,
    /// Client certificate, for https endpoints.
    pub tls: Option<TlsFiles>,
    /// The SQLite database.
    pub sqlite_path: Option<PathBuf>,
    /// Destination.
    pub target: Target,
    /// Compression.
    pub compression: Compression,
    /// Retention.
    pub retention: Policy,
    /// Restore into a scratch directory with etcdutl after verifying.
    pub trial_restore: bool,
    /// Scratch space for verification.
    pub scratch_dir: PathBuf,
    /// Where the result is written for the controller.
    pub report_file: PathBuf,
}

/// A command line the runner cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ArgsError(String);

/// Parses the flags after `snapshot`; S3 credentials come from `env`.
///
/// # Errors
/// On unknown, missing or malformed flags.
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Config, ArgsError> {
    const SWITCHES: [&str; 2] = ["--trial-restore", "--s3-path-style"];
    let mut flags: BTreeMap<&str, &str> = BTreeMap::new();
    let mut switches = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if SWITCHES.contains(&flag.as_str()) {
            switches.push(flag.as_str());
            continue;
        }
        if !flag.starts_with("--") {
            return Err(ArgsError(format!("unexpected argument {flag:?}")));
        }
        let value = it
            .next()
            .ok_or_else(|| ArgsError(format!("{flag} needs a value")))?;
        flags.insert(flag.as_str(), value.as_str());
    }
    let mut take = |flag: &str| flags.remove(flag).map(str::to_owned);
    let name = take("--name").ok_or_else(|| ArgsError("--name is required".into()))?;
    let datastore = match take("--datastore").as_deref() {
        None | Some("etcd") => Datastore::Etcd,
        Some("sqlite") => Datastore::Sqlite,
        Some(other) => return Err(ArgsError(format!("--datastore {other:?}: etcd or sqlite"))),
    };
    let endpoints: Vec<String> = take("--endpoints")
        .map(|e| e.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let tls = match (take("--cacert"), take("--cert"), take("--key")) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: ca.into(),
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None, None) => None,
        _ => return Err(ArgsError("--cacert, --cert and --key go together".into())),
    };
    let sqlite_path = take("--sqlite-path").map(PathBuf::from);
    match datastore {
        Datastore::Etcd if endpoints.is_empty() => {
            return Err(ArgsError("--endpoints is required for etcd".into()));
        }
        Datastore::Sqlite if sqlite_path.is_none() => {
            return Err(ArgsError("--sqlite-path is required for sqlite".into()));
        }
        _ => {}
    }
    let target = match (take("--dest-dir"), take("--s3-bucket")) {
        (Some(dir), None) => Target::Dir(dir.into()),
        (None, Some(bucket)) => Target::S3(S3Settings {
            bucket,
            endpoint: take("--s3-endpoint"),
            region: take("--s3-region").unwrap_or_else(|| "us-east-1".into()),
            prefix: take("--s3-prefix").unwrap_or_default(),
            path_style: switches.contains(&"--s3-path-style"),
            ca_file: take("--s3-ca").map(PathBuf::from),
            access_key_id: env(ENV_ACCESS_KEY_ID)
                .ok_or_else(|| ArgsError(format!("{ENV_ACCESS_KEY_ID} is not set")))?,
            secret_access_key: env(ENV_SECRET_ACCESS_KEY)
                .ok_or_else(|| ArgsError(format!("{ENV_SECRET_ACCESS_KEY} is not set")))?,
        }),
        _ => {
            return Err(ArgsError(
                "set exactly one of --dest-dir or --s3-bucket".into(),
            ));
        }
    };
    let compression = match take("--compression").as_deref() {
        None | Some("zstd") => Compression::Zstd,
        Some("none") => Compression::None,
        Some(other) => return Err(ArgsError(format!("--compression {other:?}: zstd or none"))),
    };
    let mut count = |flag: &str, default: usize| -> Result<usize, ArgsError> {
        take(flag).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ArgsError(format!("{flag} {v:?} is not a count")))
        })
    };
    let retention = Policy {
        keep_last: count("--keep-last", 24)?,
        keep_daily: count("--keep-daily", 0)?,
        keep_weekly: count("--keep-weekly", 0)?,
    };
    let scratch_dir = take("--scratch-dir").map_or_else(std::env::temp_dir, PathBuf::from);
    let report_file = take("--report-file")
        .unwrap_or_else(|| DEFAULT_REPORT_FILE.into())
        .into();
    if let Some(flag) = flags.keys().next() {
        return Err(ArgsError(format!("unknown flag {flag}")));
    }
    Ok(Config {
        name,
        datastore,
        endpoints,
        tls,
        sqlite_path,
        target,
        compression,
        retention,
        trial_restore: switches.contains(&"--trial-restore"),
        scratch_dir,
        report_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn etcd_to_a_directory() {
        let c = parse(
            &args("--name b --endpoints https://a:2379,https://b:2379 --cacert /p/ca --cert /p/c --key /p/k --dest-dir /backup --keep-last 3 --trial-restore"),
            |_| None,
        )
        .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.target, Target::Dir("/backup".into()));
        assert_eq!(c.retention.keep_last, 3);
        assert!(c.trial_restore);
        assert_eq!(c.report_file, PathBuf::from(DEFAULT_REPORT_FILE));
    }

    #[test]
    fn s3_needs_credentials() {
        let a = args("--name b --endpoints http://a:2379 --s3-bucket x --s3-path-style");
        assert!(
            parse(&a, |_| None)
                .unwrap_err()
                .0
                .contains(ENV_ACCESS_KEY_ID)
        );
        let c = parse(&a, |k| Some(format!("v-{k}"))).unwrap();
        let Target::S3(s3) = c.target else { panic!() };
        assert!(s3.path_style);
        assert_eq!(s3.region, "us-east-1");
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse(
            &args("--name b --endpoints x --dest-dir /d --bogus 1"),
            |_| None,
        );
        assert_eq!(e.unwrap_err().0, "unknown flag --bogus");
        let e = parse(&args("--name b --datastore sqlite --dest-dir /d"), |_| None);
        assert!(e.unwrap_err().0.contains("--sqlite-path"));
        let e = parse(
            &args("--name b --endpoints x --cacert /a --dest-dir /d"),
            |_| None,
        );
        assert!(e.unwrap_err().0.contains("go together"));
    }
}
