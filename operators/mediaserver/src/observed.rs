//! Dereference: everything a MediaServer's reconcile reads from the API
//! server, read once up front so that validating, building and computing
//! status are pure functions of the spec and this.

use std::collections::BTreeMap;

use homelab_api::MediaServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::build::names;

/// What the cluster looked like when the reconcile started.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Every node, for placement.
    pub nodes: Vec<Node>,
    /// The claims the server mounts (referenced and owned) that exist, by name.
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    /// The volumes those claims are bound to, by name.
    pub volumes: BTreeMap<String, PersistentVolume>,
    /// Every StorageClass, to tell where an unbound claim's volume will live.
    pub storage_classes: Vec<StorageClass>,
    /// Every CSIDriver, to tell whether a volume's driver attaches it to one
    /// node at a time.
    pub drivers: Vec<CSIDriver>,
    /// The Deployment as it is now.
    pub deployment: Option<Deployment>,
    /// The Service as it is now.
    pub service: Option<Service>,
    /// The server's pods.
    pub pods: Vec<Pod>,
}

impl Observed {
    /// Reads what `ms` depends on, in its namespace `ns`.
    ///
    /// # Errors
    /// A kit error naming the request that failed.
    pub async fn read(
        client: &Client,
        ns: &str,
        ms: &MediaServer,
    ) -> Result<Self, homelab_kit::Error> {
        let name = ms.name_any();
        let fail = |what: String| move |e| homelab_kit::Error::kube(what, e);

        // Independent reads, at once: on a busy API server (or a Raspberry Pi) a
        // chain of seven round trips is most of a reconcile's time.
        let nodes = async {
            Api::<Node>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .map_err(fail("list nodes".into()))
        };
        let claims = async {
            let claims_api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
            let volumes_api = Api::<PersistentVolume>::all(client.clone());
            let mut claims = BTreeMap::new();
            let mut volumes = BTreeMap::new();
            for claim in names::claims_of(ms) {
                let found = claims_api
                    .get_opt(&claim)
                    .await
                    .map_err(fail(format!("get PersistentVolumeClaim {ns}/{claim}")))?;
                let Some(found) = found else { continue };
                let bound = found.spec.as_ref().and_then(|s| s.volume_name.clone());
                if let Some(volume) = bound.filter(|v| !v.is_empty()) {
                    let pv = volumes_api
                        .get_opt(&volume)
                        .await
                        .map_err(fail(format!("get PersistentVolume {volume}")))?;
                    if let Some(pv) = pv {
                        volumes.insert(volume, pv);
                    }
                }
                claims.insert(claim, found);
            }
            Ok((claims, volumes))
        };
        let storage = homelab_kit::failover::claims::classes_and_drivers(client);
        let deployment = async {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt(&name)
                .await
                .map_err(fail(format!("get Deployment {ns}/{name}")))
        };
        let service = async {
            Api::<Service>::namespaced(client.clone(), ns)
                .get_opt(&name)
                .await
                .map_err(fail(format!("get Service {ns}/{name}")))
        };
        let pods = async {
            match names::selector(&name) {
                Some(selector) => Api::<Pod>::namespaced(client.clone(), ns)
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map(|l| l.items)
                    .map_err(fail(format!("list pods of {ns}/{name}"))),
                None => Ok(Vec::new()),
            }
        };
        let (nodes, (claims, volumes), (storage_classes, drivers), deployment, service, pods) =
            futures::try_join!(nodes, claims, storage, deployment, service, pods)?;

        Ok(Self {
            nodes,
            claims,
            volumes,
            storage_classes,
            drivers,
            deployment,
            service,
            pods,
        })
    }
}
