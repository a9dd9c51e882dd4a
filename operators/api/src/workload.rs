//! Settings shared by the kinds that run a workload: CPU architectures and the Service
//! in front of it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A CPU architecture, as in the node label `kubernetes.io/arch`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// 64-bit x86 (Intel and AMD mini PCs).
    Amd64,
    /// 64-bit ARM (Raspberry Pi 4 and 5 on a 64-bit OS).
    Arm64,
    /// 32-bit ARM (older Raspberry Pis).
    Arm,
}

impl Architecture {
    /// The value of the `kubernetes.io/arch` node label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
            Self::Arm => "arm",
        }
    }
}

/// The Service in front of a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// How the Service is reached: ClusterIP (default, inside the cluster), NodePort
    /// (on every node's address) or LoadBalancer (an address of its own, from MetalLB,
    /// kube-vip or k3s's ServiceLB).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Port the Service listens on. Defaults to the preset's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// The type of a Service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster.
    #[default]
    ClusterIP,
    /// Reachable on a port of every node.
    NodePort,
    /// Reachable on an address of its own.
    LoadBalancer,
}

impl ServiceType {
    /// The value Kubernetes uses in `spec.type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}
