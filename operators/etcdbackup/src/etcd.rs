//! The etcd client: a TLS gRPC channel to one member, the snapshot stream, and the
//! members' health. Generated from `third_party/proto/etcd.proto` (a trimmed copy of etcd's
//! rpc.proto) rather than taken from the etcd-client crate: three RPCs need no
//! watch/lease/lock/election machinery, and our tonic version stays the one the
//! workspace already builds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use homelab_api::etcdbackup::{EtcdClusterStatus, EtcdMember};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The generated client and messages.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

pub use pb::cluster_client::ClusterClient;
pub use pb::kv_client::KvClient;
pub use pb::maintenance_client::MaintenanceClient;

/// The client certificate files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA that signed the server certificate.
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client key.
    pub key: PathBuf,
}

/// Why etcd could not be reached or answered badly.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A certificate file could not be read.
    #[error("could not read {}", path.display())]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The endpoint or TLS settings are unusable.
    #[error("endpoint {endpoint}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// A request failed.
    #[error("{what} at {endpoint}: {status}")]
    Rpc {
        /// The request.
        what: &'static str,
        /// The endpoint.
        endpoint: String,
        /// gRPC status.
        status: Box<tonic::Status>,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::ReadCert {
        path: path.to_owned(),
        source,
    })
}

/// A lazily connected channel to `endpoint` (http:// or https://).
///
/// # Errors
/// When the certificates cannot be read or the URL is unusable.
pub fn channel(endpoint: &str, tls: Option<&TlsFiles>) -> Result<Channel, EtcdError> {
    let bad = |source| EtcdError::Endpoint {
        endpoint: endpoint.to_owned(),
        source,
    };
    let mut ep = Endpoint::from_shared(endpoint.to_owned())
        .map_err(bad)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // Snapshot chunks are small (32 KiB); bigger windows keep the stream busy.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20));
    if let Some(tls) = tls {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
            .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        ep = ep.tls_config(config).map_err(bad)?;
    }
    Ok(ep.connect_lazy())
}

/// The members etcd knows and which of them answered, asked through `endpoint`. A
/// member that does not answer within a few seconds is unhealthy, not an error.
///
/// # Errors
/// When `endpoint` itself cannot list the members.
pub async fn cluster_status(
    endpoint: &str,
    tls: Option<&TlsFiles>,
) -> Result<EtcdClusterStatus, EtcdError> {
    let rpc = |what, status| EtcdError::Rpc {
        what,
        endpoint: endpoint.to_owned(),
        status: Box::new(status),
    };
    let mut cluster = ClusterClient::new(channel(endpoint, tls)?);
    let members = cluster
        .member_list(pb::MemberListRequest {
            linearizable: false,
        })
        .await
        .map_err(|s| rpc("list members", s))?
        .into_inner()
        .members;
    let mut status = EtcdClusterStatus {
        member_count: i32::try_from(members.len()).unwrap_or(i32::MAX),
        ..EtcdClusterStatus::default()
    };
    let mut leader_id = None;
    for member in &members {
        let url = member.client_ur_ls.first().cloned();
        let answer = match &url {
            Some(url) => member_status(url, tls).await.ok(),
            None => None,
        };
        if let Some(s) = &answer {
            status.healthy_members += 1;
            leader_id = leader_id.or(Some(s.leader));
            if s.leader == member.id {
                status.db_size_bytes = Some(s.db_size);
                status.db_quota_bytes = (s.db_size_quota > 0).then_some(s.db_size_quota);
            }
        }
        status.members.push(EtcdMember {
            name: if member.name.is_empty() {
                format!("{:x}", member.id)
            } else {
                member.name.clone()
            },
            endpoint: url,
            healthy: answer.is_some(),
            leader: false,
        });
    }
    for (member, seen) in members.iter().zip(status.members.iter_mut()) {
        if Some(member.id) == leader_id {
            seen.leader = true;
            status.leader = Some(seen.name.clone());
        }
    }
    Ok(status)
}

async fn member_status(url: &str, tls: Option<&TlsFiles>) -> Result<pb::StatusResponse, EtcdError> {
    let mut client = MaintenanceClient::new(channel(url, tls)?);
    let call = client.status(pb::StatusRequest {});
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(EtcdError::Rpc {
            what: "member status",
            endpoint: url.to_owned(),
            status: Box::new(status),
        }),
        Err(_) => Err(EtcdError::Rpc {
            what: "member status",
            endpoint: url.to_owned(),
            status: Box::new(tonic::Status::deadline_exceeded("no answer within 5s")),
        }),
    }
}
