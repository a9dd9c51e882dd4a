//! MediaServer: Jellyfin, Plex, Navidrome (or any image) placed where it can run, with
//! hardware transcoding, and honest about whether it can fail over.
//!
//! The controller runs one replica with the `Recreate` strategy (these servers keep a
//! SQLite database and do not scale out), a Service, and the claims it owns.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::impl_conditioned_status;
use crate::failover::{FailoverPolicy, FailoverRecord, impl_failover};
use crate::formats::{
    ABSOLUTE_PATH_RULE, CLAIM_NAME_MESSAGE, DNS_SUBDOMAIN_RULE, PRINTABLE_WORD_RULE,
};
use crate::storage::{
    HostPathVolume, NfsVolume, STATE_CLASS_IMMUTABLE_MESSAGE, STATE_CLASS_IMMUTABLE_RULE,
    STATE_HOST_PATH_IMMUTABLE_MESSAGE, STATE_HOST_PATH_IMMUTABLE_RULE,
    STATE_KIND_IMMUTABLE_MESSAGE, STATE_KIND_IMMUTABLE_RULE, StateVolume, VolumeClaim,
};
use crate::workload::{Architecture, ServiceSettings};

/// A media server (Jellyfin, Plex, Navidrome or any image) with its config, media and
/// Service, placed on a node that can run its image and its transcoding.
// Each printcolumn(...) repeats keys such as `type_ = "string"`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "homelab.home.arpa",
    version = "v1alpha1",
    kind = "MediaServer",
    namespaced,
    status = "MediaServerStatus",
    derive = "PartialEq",
    shortname = "ms",
    category = "homelab",
    doc = "A media server (Jellyfin, Plex, Navidrome or any image) with its config, media and Service, placed on a node that can run its image and its transcoding, and honest about whether it can fail over.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the server is up"
    ),
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".status.node",
        description = "Node the server runs on"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        description = "In-cluster URL of the server"
    ),
    printcolumn(
        name = "Failover",
        type_ = "boolean",
        json_path = ".status.failoverPossible",
        description = "Whether the server could move if its node died"
    ),
    printcolumn(
        name = "Since",
        type_ = "date",
        json_path = r#".status.conditions[?(@.type=="Ready")].lastTransitionTime"#,
        description = "When Ready last changed"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = 1,
        description = "Why it is (not) ready"
    ),
    printcolumn(
        name = "Preset",
        type_ = "string",
        json_path = ".spec.preset",
        priority = 1,
        description = "Which server"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.preset != 'Generic' || (has(self.image) && has(self.port))").message("the Generic preset has no default image or port: set image and port"))]
#[x_kube(validation = Rule::new("self.preset != 'Navidrome' || !has(self.transcoding)").message("Navidrome transcodes audio on the CPU: remove transcoding"))]
#[x_kube(validation = Rule::new(
    "!has(self.transcoding) || self.transcoding.hardware != 'IntelQuickSync' || !has(self.architectures) || self.architectures.size() == 0 || 'amd64' in self.architectures"
).message("Intel Quick Sync needs an Intel (amd64) node: add amd64 to architectures"))]
#[x_kube(validation = Rule::new(
    "!has(self.media) || self.media.all(m, !has(m.hostPath) || ((!has(self.config.hostPath) || self.config.hostPath.node == m.hostPath.node) && self.media.all(o, !has(o.hostPath) || o.hostPath.node == m.hostPath.node)))"
).message("all hostPath volumes (config and media) must be on the same node: the server can only run on one"))]
pub struct MediaServerSpec {
    /// Which server: Jellyfin, Plex or Navidrome (image, ports, paths, health check
    /// and supported architectures come from the preset), or Generic (set image and
    /// port yourself).
    pub preset: MediaPreset,

    /// Container image, overriding the preset's, such as
    /// docker.io/jellyfin/jellyfin:10.10.7. Required for Generic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(PRINTABLE_WORD_RULE).message("must be a container image reference without spaces, such as docker.io/jellyfin/jellyfin:10.10.7"))]
    pub image: Option<String>,

    /// CPU architectures the image runs on, overriding the preset's. The server is
    /// only scheduled on nodes whose kubernetes.io/arch is listed, so an amd64-only
    /// image never lands on a Raspberry Pi.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub architectures: Vec<Architecture>,

    /// Port the server listens on inside the container. Defaults to the preset's
    /// (Jellyfin 8096, Plex 32400, Navidrome 4533). Required for Generic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Where the server keeps its config and database. Fixed at creation. A hostPath
    /// pins the server to that node (no failover); NFS works but risks the SQLite
    /// database (the status warns).
    #[x_kube(validation = Rule::new(STATE_KIND_IMMUTABLE_RULE).message(STATE_KIND_IMMUTABLE_MESSAGE))]
    #[x_kube(validation = Rule::new(STATE_CLASS_IMMUTABLE_RULE).message(STATE_CLASS_IMMUTABLE_MESSAGE))]
    #[x_kube(validation = Rule::new(STATE_HOST_PATH_IMMUTABLE_RULE).message(STATE_HOST_PATH_IMMUTABLE_MESSAGE))]
    pub config: StateVolume,

    /// A claim for the transcoding and image cache. When unset, the cache is an
    /// emptyDir and is rebuilt after every restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<VolumeClaim>,

    /// Media libraries mounted into the server, each from exactly one source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub media: Vec<MediaVolume>,

    /// Hardware transcoding. The server is placed only on nodes that offer the device
    /// through its device plugin, and needs no privileged pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcoding: Option<Transcoding>,

    /// The Service in front of the server.
    #[serde(default)]
    pub service: ServiceSettings,

    /// Extra environment variables for the server container (for example TZ).
    /// Take secrets from a Secret with valueFrom.secretKeyRef, never as a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,

    /// CPU and memory requests and limits of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Taints the server's pods tolerate, as in a pod's spec: a node kept for one
    /// workload (`dedicated=zigbee:NoSchedule`), a k3s server's
    /// `CriticalAddonsOnly`. The operator adds its own NoExecute tolerations of
    /// `node.kubernetes.io/not-ready` and `unreachable` for the failover grace,
    /// unless one here already tolerates that taint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// What the operator may do when the server's node is lost.
    #[serde(default)]
    pub failover: FailoverPolicy,
}

/// Which media server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum MediaPreset {
    /// Jellyfin: films, series, music and photos; amd64 and arm64.
    Jellyfin,
    /// Plex Media Server; amd64 and arm64.
    Plex,
    /// Navidrome: music streaming; amd64, arm64 and arm.
    Navidrome,
    /// Any image; set image and port.
    Generic,
}

/// A media library mounted into the server. Set exactly one of existingClaim, nfs or
/// hostPath.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.existingClaim), has(self.nfs), has(self.hostPath)].filter(x, x).size() == 1"
).message("set exactly one media source: existingClaim, nfs or hostPath"))]
pub struct MediaVolume {
    /// Name of the library, unique in this list (a DNS label such as movies).
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("must be a DNS label: lowercase letters, digits and '-', such as movies"))]
    pub name: String,

    /// Where the library appears inside the container, such as /media/movies.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message("must be an absolute path without . or .. segments or control characters, such as /media/movies"))]
    pub mount_path: String,

    /// Mount read-only. Defaults to true: a media server reads media, and a bug or a
    /// wrong click cannot delete your films.
    #[serde(default = "default_true")]
    pub read_only: bool,

    /// A PersistentVolumeClaim you created, in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message(CLAIM_NAME_MESSAGE))]
    pub existing_claim: Option<String>,

    /// An NFS export, mounted directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NfsVolume>,

    /// A directory on one node (a USB disk on a Raspberry Pi). Pins the server to that
    /// node: it cannot fail over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolume>,
}

fn default_true() -> bool {
    true
}

/// Hardware transcoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transcoding {
    /// The transcoding hardware: IntelQuickSync (the iGPU of an Intel CPU, through the
    /// Intel GPU device plugin's gpu.intel.com/i915 resource) or Nvidia (through
    /// nvidia.com/gpu).
    pub hardware: TranscodingHardware,

    /// Group ID owning the render device (/dev/dri/renderD128) on the GPU node; find it
    /// with `ls -ln /dev/dri`. Given to the container as a supplemental group so it can
    /// open the device without privileges. When unset, the preset's usual render and
    /// video group IDs are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 2147483647))]
    #[x_kube(validation = Rule::new("self >= 1").message("must be the group id that owns /dev/dri/renderD128 (see ls -ln /dev/dri), such as 993; 0 is the root group, which would give the server every file root's group can open"))]
    pub render_group_id: Option<i64>,
}

/// Transcoding hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TranscodingHardware {
    /// Intel Quick Sync (VA-API/QSV on an Intel iGPU).
    IntelQuickSync,
    /// An NVIDIA GPU (NVENC/NVDEC).
    Nvidia,
}

/// What the operator observed about a MediaServer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaServerStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling, Stalled, FailoverReady, and ConfigOnNFS when the database is
    /// on NFS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Node the server runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,

    /// Name of the server's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,

    /// In-cluster URL of the server, such as http://jellyfin.media.svc:8096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Whether the server could move to another node if its node died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_possible: Option<bool>,

    /// Why failover is (not) possible, and what to change if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_reason: Option<String>,

    /// The last time the operator moved the server to another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
}

impl_conditioned_status!(MediaServerStatus);
impl_failover!(MediaServer => MediaServerStatus);

impl MediaServerSpec {
    /// The node every hostPath volume (config or media) ties the server to, if any.
    pub fn pinned_node(&self) -> Option<&str> {
        self.config.pinned_node().or_else(|| {
            self.media
                .iter()
                .find_map(|m| m.host_path.as_ref().map(|h| h.node.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec: MediaServerSpec = serde_json::from_value(serde_json::json!({
            "preset": "Jellyfin",
            "config": { "volumeClaim": { "size": "10Gi" } },
            "media": [{ "name": "movies", "mountPath": "/media/movies",
                        "nfs": { "server": "nas.home.arpa", "path": "/volume1/movies" } }],
        }))
        .unwrap();
        assert!(spec.media[0].read_only, "media is read-only by default");
        assert_eq!(spec.service, ServiceSettings::default());
        assert_eq!(spec.failover, FailoverPolicy::default());
        assert_eq!(spec.pinned_node(), None);
    }

    #[test]
    fn host_path_media_pins_the_server() {
        let spec: MediaServerSpec = serde_json::from_value(serde_json::json!({
            "preset": "Navidrome",
            "config": { "volumeClaim": { "size": "1Gi" } },
            "media": [{ "name": "music", "mountPath": "/music",
                        "hostPath": { "node": "pi-2", "path": "/mnt/usb/music" } }],
        }))
        .unwrap();
        assert_eq!(spec.pinned_node(), Some("pi-2"));
    }
}
