//! EtcdBackup: scheduled, streamed, checksummed, verified snapshots of the cluster's
//! datastore (etcd of k3s, kubeadm or Talos, or k3s's SQLite), to a PVC, a host path or
//! S3-compatible storage, pruned only after a new backup verified.
//!
//! There is no `failover` block: each backup is a fresh Job that the scheduler places on
//! any healthy control-plane node, so nothing runs long enough to be moved. A lost node
//! shows as a missed backup (`Stale`) and as an etcd member at risk (`QuorumAtRisk`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::impl_conditioned_status;
use crate::duration::GoDuration;
use crate::formats::{
    ABSOLUTE_PATH_RULE, CLAIM_NAME_MESSAGE, DNS_SUBDOMAIN_RULE, NO_CONTROL_CHARACTERS_RULE,
    NODE_NAME_MESSAGE, POSITIVE_DURATION_RULE, SECRET_NAME_MESSAGE, URL_PORT_RULE,
    dot_segment_pattern, host_pattern, port_pattern,
};
use crate::references::SecretKeyRef;

/// Default for [`Retention::keep_last`].
pub const DEFAULT_KEEP_LAST: i32 = 24;

/// A schedule's shape: five fields of cron characters, or a macro. A schedule of the
/// wrong shape gets this rule's message only; [`CRON_RANGES_RULE`] checks the rest.
macro_rules! cron_shape_pattern {
    () => {
        "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4})$"
    };
}

/// One cron field whose values match `$value`: `*` or `?`, a value or a range of
/// values, each with an optional step of 1 or more, and comma-separated lists of those;
/// what the CronJob controller and the EtcdBackup controller both read.
macro_rules! cron_field_pattern {
    ($value:literal) => {
        concat!(
            "([*?]|",
            $value,
            "(-",
            $value,
            ")?)(/[1-9][0-9]{0,2})?",
            "(,([*?]|",
            $value,
            "(-",
            $value,
            ")?)(/[1-9][0-9]{0,2})?)*"
        )
    };
}

const CRON_SHAPE_RULE: &str = concat!("self.matches('", cron_shape_pattern!(), "')");

/// Each field of a five-field schedule within its range: minute 0-59, hour 0-23, day
/// of month 1-31, month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT (names in any
/// case). Day of week 7, Sunday in some crons, is refused: the CronJob API that runs
/// the backups reads weekdays as 0-6 and would refuse the CronJob after the
/// EtcdBackup was accepted. Guarded by the shape, so a malformed schedule gets one
/// message.
const CRON_RANGES_RULE: &str = concat!(
    "!self.matches('",
    cron_shape_pattern!(),
    "') || self.startsWith('@') || self.matches('^",
    cron_field_pattern!("[0-5]?[0-9]"),
    " +",
    cron_field_pattern!("([01]?[0-9]|2[0-3])"),
    " +",
    cron_field_pattern!("(0?[1-9]|[12][0-9]|3[01])"),
    " +",
    cron_field_pattern!("(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))"),
    " +",
    cron_field_pattern!("(0?[0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))"),
    "$')"
);

const CRON_RANGES_MESSAGE: &str = "each field of the schedule must be within its range: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT (Sunday is 0, not 7); use *, ranges (1-5), steps of 1 or more (*/15) and lists (1,15), such as \"30 2 * * MON-FRI\"";

/// An etcd client URL: http(s), a host, an optional port, nothing after it.
const ETCD_ENDPOINTS_RULE: &str = concat!(
    "self.all(e, e.matches('^https?://",
    host_pattern!(),
    "(:[0-9]{1,5})?$'))"
);

/// The port, where an endpoint names one, is 1 to 65535.
const ETCD_ENDPOINT_PORTS_RULE: &str = concat!(
    "self.all(e, !e.matches('^https?://[^/]*:[0-9]+$') || e.matches('^https?://[^/]*:",
    port_pattern!(),
    "$'))"
);

/// An S3 endpoint: http(s), a host, an optional port, an optional path, all printable.
const S3_ENDPOINT_RULE: &str = concat!(
    "self.matches('^https?://",
    host_pattern!(),
    "(:[0-9]{1,5})?(/[!-~]*)?$')"
);

/// A key prefix: printable, not absolute, no `.` or `..` segment (HTTP clients and
/// S3-compatible servers resolve those, writing outside the prefix).
const S3_PREFIX_RULE: &str = concat!(
    "self.matches('^[!-~]+$') && !self.startsWith('/') && !self.matches('",
    dot_segment_pattern!(),
    "')"
);

/// Scheduled, verified snapshots of the cluster's etcd (or k3s's SQLite datastore) to a
/// PVC, a host path or S3-compatible storage, with a retention policy that never deletes
/// the newest verified backup.
// Each printcolumn(...) repeats keys such as `type_ = "string"`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "homelab.home.arpa",
    version = "v1alpha1",
    kind = "EtcdBackup",
    namespaced,
    status = "EtcdBackupStatus",
    derive = "PartialEq",
    shortname = "etcdbak",
    category = "homelab",
    doc = "Scheduled, streamed, checksummed and verified snapshots of the cluster's etcd (k3s, kubeadm, Talos) or k3s's SQLite datastore, to a PVC, a host path or S3-compatible storage, with a retention policy that never deletes the newest verified backup.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the last backup succeeded and verified"
    ),
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.schedule",
        description = "When backups run"
    ),
    printcolumn(
        name = "Last Backup",
        type_ = "date",
        json_path = ".status.lastSuccessfulBackup.time",
        description = "When the newest verified backup was taken"
    ),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.lastSuccessfulBackup.sizeBytes",
        description = "Size in bytes of the newest verified backup"
    ),
    printcolumn(
        name = "Stale",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Stale")].status"#,
        description = "Whether the newest verified backup is too old"
    ),
    printcolumn(
        name = "Members",
        type_ = "integer",
        json_path = ".status.etcd.memberCount",
        priority = 1,
        description = "etcd members seen"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = 1,
        description = "Why it is (not) ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupSpec {
    /// When to back up, as a cron schedule with five fields (minute hour day-of-month
    /// month day-of-week), such as "0 * * * *" for hourly, or a macro such as @daily.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(CRON_SHAPE_RULE).message("must be a cron schedule with five fields (minute hour day-of-month month day-of-week), such as \"0 * * * *\", or a macro such as @hourly"))]
    #[x_kube(validation = Rule::new(CRON_RANGES_RULE).message(CRON_RANGES_MESSAGE))]
    pub schedule: String,

    /// Time zone of the schedule, as an IANA name such as Europe/Berlin. The
    /// controller-manager's time zone (usually UTC) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$')").message("must be an IANA time zone name, such as Europe/Berlin or UTC"))]
    pub time_zone: Option<String>,

    /// Pause scheduled backups without deleting anything. Defaults to false.
    #[serde(default)]
    pub suspend: bool,

    /// The datastore to back up.
    pub source: EtcdSource,

    /// Where backups go: exactly one of pvc, hostPath or s3. The kind of destination is
    /// fixed at creation.
    #[x_kube(validation = Rule::new(
        "[has(self.pvc), has(self.hostPath), has(self.s3)] == [has(oldSelf.pvc), has(oldSelf.hostPath), has(oldSelf.s3)]"
    ).message("the kind of destination (pvc, hostPath or s3) cannot change: retention would lose track of the existing backups; create a new EtcdBackup"))]
    pub destination: BackupDestination,

    /// How many backups to keep. Pruning happens only after a new backup verified, and
    /// never deletes the newest verified backup.
    #[serde(default)]
    pub retention: Retention,

    /// Compression of the snapshot: Zstd (default) or None.
    #[serde(default)]
    pub compression: Compression,

    /// How each backup is verified beyond its checksum and snapshot integrity.
    #[serde(default)]
    pub verification: Verification,

    /// The Stale condition turns true when the newest verified backup is older than
    /// this, as a duration such as 3h. Defaults to twice the schedule's interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(POSITIVE_DURATION_RULE).message("must be longer than 0, such as 3h: every backup would be stale the moment it is taken; leave staleAfter unset for twice the schedule's interval"))]
    pub stale_after: Option<GoDuration>,
}

/// The datastore to back up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.datastore != 'SQLite' || self.distribution == 'K3s'").message("the SQLite datastore exists only on k3s: use distribution K3s or datastore Etcd"))]
#[x_kube(validation = Rule::new("self.distribution != 'Custom' || self.datastore == 'SQLite' || (has(self.endpoints) && self.endpoints.size() > 0)").message("a Custom distribution has no known etcd endpoints: set endpoints"))]
#[x_kube(validation = Rule::new("self.distribution != 'Talos' || (has(self.tls) && has(self.tls.secretName))").message("Talos keeps etcd's certificates out of reach of pods: put an etcd client certificate in a Secret and set tls.secretName"))]
#[x_kube(validation = Rule::new("!has(self.sqlitePath) || self.datastore == 'SQLite'").message("sqlitePath is only used with datastore SQLite"))]
pub struct EtcdSource {
    /// Where etcd runs, which sets the default endpoints, certificate paths and the
    /// control-plane node selector: K3s, Kubeadm, Talos, or Custom (set endpoints and
    /// tls yourself).
    pub distribution: Distribution,

    /// What k3s stores the cluster in: Etcd (default; embedded etcd, or etcd on the
    /// other distributions) or SQLite (k3s's default for a single server, backed up with
    /// SQLite's online backup API).
    #[serde(default)]
    pub datastore: Datastore,

    /// etcd client URLs, such as https://10.0.0.10:2379, overriding the distribution's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = Rule::new(ETCD_ENDPOINTS_RULE).message("each endpoint must be a URL without a path, such as https://10.0.0.10:2379"))]
    #[x_kube(validation = Rule::new(ETCD_ENDPOINT_PORTS_RULE).message("each endpoint's port must be 1 to 65535, without leading zeros, such as https://10.0.0.10:2379"))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub endpoints: Vec<String>,

    /// The etcd client certificate, overriding the distribution's host paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTls>,

    /// Path of the SQLite database on the server node. Defaults to k3s's
    /// /var/lib/rancher/k3s/server/db/state.db.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message("must be an absolute path without . or .. segments or control characters, such as /var/lib/rancher/k3s/server/db/state.db"))]
    pub sqlite_path: Option<String>,
}

/// Where etcd runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Distribution {
    /// k3s (embedded etcd, or SQLite).
    K3s,
    /// kubeadm (static-pod etcd).
    Kubeadm,
    /// Talos Linux.
    Talos,
    /// Anything else; set endpoints and tls.
    Custom,
}

/// What the cluster is stored in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Datastore {
    /// etcd.
    #[default]
    Etcd,
    /// k3s's SQLite (kine).
    #[serde(rename = "SQLite")]
    Sqlite,
}

/// The etcd client certificate: exactly one of secretName or hostPath.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretName) != has(self.hostPath)").message("set exactly one of secretName or hostPath"))]
pub struct EtcdTls {
    /// A Secret in the same namespace with ca.crt, tls.crt and tls.key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message(SECRET_NAME_MESSAGE))]
    pub secret_name: Option<String>,

    /// Files on the control-plane node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<EtcdTlsFiles>,
}

/// Certificate files on the control-plane node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdTlsFiles {
    /// CA certificate that signed etcd's server certificate.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message("must be an absolute path without . or .. segments or control characters, such as /etc/etcd/pki/ca.crt"))]
    pub ca_file: String,

    /// Client certificate.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message("must be an absolute path without . or .. segments or control characters, such as /etc/etcd/pki/ca.crt"))]
    pub cert_file: String,

    /// Client private key.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message("must be an absolute path without . or .. segments or control characters, such as /etc/etcd/pki/ca.crt"))]
    pub key_file: String,
}

/// Where backups go: exactly one of pvc, hostPath or s3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.pvc), has(self.hostPath), has(self.s3)].filter(x, x).size() == 1").message("set exactly one destination: pvc, hostPath or s3"))]
pub struct BackupDestination {
    /// A PersistentVolumeClaim you created, in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcDestination>,

    /// A directory on the control-plane node the backup runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathDestination>,

    /// An S3-compatible bucket (AWS S3, MinIO, Garage, Backblaze B2, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
}

/// Backups on a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcDestination {
    /// Name of the PersistentVolumeClaim.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message(CLAIM_NAME_MESSAGE))]
    pub claim_name: String,

    /// Directory inside the claim. The claim's root when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.contains('..')").message("must be a relative path inside the claim, without .."))]
    #[x_kube(validation = Rule::new(NO_CONTROL_CHARACTERS_RULE).message("must be a path without control characters (newlines, tabs), such as etcd/cluster-a"))]
    pub sub_path: Option<String>,
}

/// Backups in a directory of a control-plane node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPathDestination {
    /// Absolute path of the directory.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message("must be an absolute path without . or .. segments or control characters, such as /var/backups/etcd"))]
    pub path: String,

    /// The control-plane node to run on, so all backups land in one place. Any
    /// control-plane node when unset (then each node keeps the backups it took).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message(NODE_NAME_MESSAGE))]
    pub node: Option<String>,
}

/// Backups in an S3-compatible bucket. Credentials come only from Secrets.
// No API-server defaults inside this one-of member: see the note on `VolumeClaim`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]*[a-z0-9]$') && !self.contains('..')").message("must be an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, without two dots in a row, such as homelab-backups"))]
    pub bucket: String,

    /// Endpoint URL for S3-compatible servers, such as http://minio.storage.svc:9000.
    /// AWS S3 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(S3_ENDPOINT_RULE).message("must be an http:// or https:// URL, such as https://s3.eu-central-1.amazonaws.com or http://minio.storage.svc:9000"))]
    #[x_kube(validation = Rule::new(URL_PORT_RULE).message("the port must be 1 to 65535, without leading zeros, such as http://minio.storage.svc:9000"))]
    pub endpoint: Option<String>,

    /// Region of the bucket. us-east-1 when unset (what most S3-compatible servers
    /// expect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$')").message("must be a region name: letters, digits, '-', '_' and '.', such as us-east-1 or eu-central-003"))]
    pub region: Option<String>,

    /// Key prefix for the backups, such as homelab/etcd/. The bucket's root when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(S3_PREFIX_RULE).message("must be a key prefix such as homelab/etcd/: printable characters without spaces, not starting with /, without . or .. segments"))]
    pub prefix: Option<String>,

    /// Address the bucket as endpoint/bucket instead of bucket.endpoint; most
    /// self-hosted servers (MinIO, Garage) need this. False when unset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_path_style: bool,

    /// The access key id, from a Secret.
    pub access_key_id_secret_ref: SecretKeyRef,

    /// The secret access key, from a Secret.
    pub secret_access_key_secret_ref: SecretKeyRef,

    /// CA certificate (PEM) of a self-signed endpoint, from a Secret. The system's
    /// trusted CAs when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// The region used when `s3.region` is unset.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

impl S3Destination {
    /// The bucket's region, [`DEFAULT_S3_REGION`] when unset.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(DEFAULT_S3_REGION)
    }
}

/// How many backups to keep. A backup is kept when any rule keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep this many newest verified backups; at least 1. Defaults to 24.
    #[serde(default = "default_keep_last")]
    #[schemars(range(max = 10000))]
    #[x_kube(validation = Rule::new("self >= 1").message("must keep at least 1 backup"))]
    pub keep_last: i32,

    /// Also keep the newest backup of each of this many last days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3660))]
    pub keep_daily: Option<i32>,

    /// Also keep the newest backup of each of this many last weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 520))]
    pub keep_weekly: Option<i32>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_last: DEFAULT_KEEP_LAST,
            keep_daily: None,
            keep_weekly: None,
        }
    }
}

fn default_keep_last() -> i32 {
    DEFAULT_KEEP_LAST
}

/// Compression of a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Compression {
    /// zstd.
    #[default]
    Zstd,
    /// Stored as etcd wrote it.
    None,
}

/// How backups are verified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// After each backup, also restore it into a scratch directory and open it (with
    /// etcdutl when the runner's image has it; otherwise by reading every page of every
    /// bucket of the snapshot). Slower, and proves the backup restores. Defaults to false
    /// (the checksum re-read from the destination and the snapshot's integrity are
    /// always checked).
    #[serde(default)]
    pub trial_restore: bool,
}

/// What the operator observed about an EtcdBackup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling, Stalled, Stale and QuorumAtRisk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The newest backup that was written and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<BackupRecord>,

    /// When the next backup is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled_time: Option<Time>,

    /// Verified backups the retention policy keeps, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_backups: Vec<BackupRecord>,

    /// The etcd members the last backup saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdClusterStatus>,

    /// The command that restores the newest verified backup on this distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_command: Option<String>,

    /// The newest failed run the controller announced (a BackupFailed Event, one
    /// count in the failures metric). Only runs that finished after it are news, so a
    /// restarted controller does not announce it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_run: Option<FailedRun>,

    /// Pods that carry the backup's label but are no run of its CronJob, whose
    /// reports are ignored; each was announced once (an UntrustedReport Event). A
    /// pod leaves the list when it is deleted. At most 20 are listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["pod".into()]))]
    pub ignored_pods: Vec<IgnoredPod>,
}

/// A failed backup run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedRun {
    /// The run's pod.
    pub pod: String,

    /// When it ended.
    pub finished_at: Time,

    /// What went wrong, as the run reported it.
    pub message: String,
}

/// A pod whose report is not believed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredPod {
    /// The pod's name.
    pub pod: String,

    /// Why its report does not count.
    pub reason: String,
}

/// One backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// When the snapshot was taken.
    pub time: Time,

    /// Where it is: a path in the claim or on the node, or s3://bucket/key.
    pub location: String,

    /// Size in bytes as stored (after compression).
    pub size_bytes: i64,

    /// SHA-256 of the stored file, in hex, re-read from the destination.
    pub sha256: String,

    /// etcd revision of the snapshot (unset for SQLite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,

    /// How long the backup took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_millis: Option<i64>,
}

/// The etcd cluster as the last backup saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterStatus {
    /// Number of members.
    pub member_count: i32,

    /// Number of members that answered.
    pub healthy_members: i32,

    /// Name of the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,

    /// Size of the leader's database in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_size_bytes: Option<i64>,

    /// The database size quota in bytes (etcd refuses writes above it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_quota_bytes: Option<i64>,

    /// Each member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub members: Vec<EtcdMember>,
}

/// One etcd member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMember {
    /// Member name (usually the node name).
    pub name: String,

    /// Client URL of the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Whether it answered.
    pub healthy: bool,

    /// Whether it is the leader.
    #[serde(default)]
    pub leader: bool,
}

impl_conditioned_status!(EtcdBackupStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec: EtcdBackupSpec = serde_json::from_value(serde_json::json!({
            "schedule": "@hourly",
            "source": { "distribution": "K3s" },
            "destination": { "hostPath": { "path": "/var/backups/etcd" } },
        }))
        .unwrap();
        assert_eq!(spec.retention.keep_last, DEFAULT_KEEP_LAST);
        assert_eq!(spec.source.datastore, Datastore::Etcd);
        assert_eq!(spec.compression, Compression::Zstd);
        assert!(!spec.verification.trial_restore);
        assert!(!spec.suspend);
    }

    #[test]
    fn s3_region_defaults() {
        let s3: S3Destination = serde_json::from_value(serde_json::json!({
            "bucket": "homelab-backups",
            "accessKeyIdSecretRef": { "name": "s3", "key": "id" },
            "secretAccessKeySecretRef": { "name": "s3", "key": "secret" },
        }))
        .unwrap();
        assert_eq!(s3.region(), "us-east-1");
        assert!(!s3.force_path_style);
    }
}
