//! Installing the project's CRDs from `crds/`, as a user would, once per test binary.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::OnceCell;

use crate::{Error, wait_for};

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Every CRD in `crds/`, parsed.
pub fn read_crds() -> Result<Vec<CustomResourceDefinition>, Error> {
    let dir = crate::workspace_root().join("crds");
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::ReadFile {
        path: dir.display().to_string(),
        source,
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    let mut crds = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadFile {
            path: path.display().to_string(),
            source,
        })?;
        let docs: Vec<CustomResourceDefinition> =
            serde_saphyr::from_multiple(&text).map_err(|source| Error::Parse {
                path: path.display().to_string(),
                source: Box::new(source),
            })?;
        crds.extend(docs);
    }
    Ok(crds)
}

/// Server-side applies the CRDs in `crds/` and waits until each is Established.
/// Runs once per test binary; later calls return at once.
pub async fn install_crds(client: &Client) -> Result<(), Error> {
    INSTALLED
        .get_or_try_init(|| async {
            let api = Api::<CustomResourceDefinition>::all(client.clone());
            let params = PatchParams::apply("homelab-tests").force();
            for crd in read_crds()? {
                let name = crd.name_any();
                api.patch(&name, &params, &Patch::Apply(&crd))
                    .await
                    .map_err(Error::api(format!("applying CRD {name}")))?;
                wait_for(&api, &name, Duration::from_secs(30), |crd| {
                    crd.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|conditions| {
                            conditions
                                .iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        })
                })
                .await?;
            }
            Ok(())
        })
        .await
        .map(drop)
}
