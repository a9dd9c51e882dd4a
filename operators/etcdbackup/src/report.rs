//! What a run tells the controller: one JSON object written as the container's
//! termination message, which the kubelet copies into the Pod's status. The runner
//! thereby needs no API access at all (its Pod mounts no ServiceAccount token), and
//! the controller only reads Pods. The kubelet keeps at most 4096 bytes, so the
//! report drops its oldest backups and members until it fits.

use std::path::Path;

use homelab_api::etcdbackup::{BackupRecord, EtcdClusterStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

/// The kubelet's limit for a termination message.
pub const MAX_REPORT_BYTES: usize = 4096;

/// The result of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// Whether a backup was written and verified.
    pub ok: bool,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The backup this run wrote and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupRecord>,
    /// The verified backups kept after pruning, newest first (may be cut short).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<BackupRecord>,
    /// How many backups this run pruned.
    #[serde(default)]
    pub pruned: u32,
    /// The etcd members as seen during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdClusterStatus>,
}

impl RunReport {
    /// The JSON, trimmed to fit [`MAX_REPORT_BYTES`].
    #[must_use]
    pub fn to_message(&self) -> String {
        let mut report = self.clone();
        loop {
            let text = serde_json::to_string(&report).unwrap_or_else(|_| "{}".into());
            if text.len() <= MAX_REPORT_BYTES {
                return text;
            }
            if report.recent.len() > 1 {
                report.recent.pop();
            } else if let Some(members) = report.etcd.as_mut().filter(|e| !e.members.is_empty()) {
                members.members.pop();
            } else if let Some(error) = report.error.as_mut().filter(|e| e.len() > 256) {
                let mut cut = 256;
                while !error.is_char_boundary(cut) {
                    cut -= 1;
                }
                error.truncate(cut);
            } else {
                return text;
            }
        }
    }

    /// Writes the report for the kubelet (or a test) to pick up.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_message())
    }

    /// Reads a report from a termination message; None when it is not one.
    #[must_use]
    pub fn parse(message: &str) -> Option<Self> {
        serde_json::from_str(message).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: i64) -> BackupRecord {
        BackupRecord {
            time: Time(jiff::Timestamp::from_second(1_800_000_000 + i).unwrap()),
            location: format!("s3://bucket/homelab/etcd/cluster-backup-{i:05}.db.zst"),
            size_bytes: 12_345_678,
            sha256: "ab".repeat(32),
            revision: Some(123_456 + i),
            duration_millis: Some(2345),
        }
    }

    #[test]
    fn long_reports_are_cut_to_fit() {
        let report = RunReport {
            ok: true,
            backup: Some(record(99)),
            recent: (0..100).map(record).collect(),
            ..RunReport::default()
        };
        let message = report.to_message();
        assert!(message.len() <= MAX_REPORT_BYTES);
        let back = RunReport::parse(&message).unwrap();
        assert_eq!(back.backup, report.backup);
        assert!(back.recent.len() > 5 && back.recent.len() < 100);
        assert_eq!(back.recent[0], report.recent[0]);
    }
}
