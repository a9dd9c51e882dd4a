//! One namespace per test, deleted when the test ends, pass or fail, with the
//! cluster-wide objects the test made for it (volumes, StorageClasses).

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::{Cluster, Error, client, install_crds};

/// A kind whose objects live in a namespace, as the helpers below read them.
pub trait Namespaced:
    kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType: Default>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType: Default>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
{
}

/// The label on a test's namespace (its prefix) and on the cluster-wide
/// objects made for it (the namespace's name), by which they are cleaned up.
pub const TEST_LABEL: &str = "homelab.home.arpa/test";

/// A namespace created for one test; dropping it deletes it (in the background:
/// the API server finishes the cascade on its own), and the volumes and
/// StorageClasses labelled as made for it.
pub struct TestNamespace {
    name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates `<prefix>-<random suffix>`, labelled so leftovers can be found.
    pub async fn new(client: &Client, prefix: &str) -> Result<Self, Error> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                labels: Some([(TEST_LABEL.to_string(), prefix.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(Error::api(format!(
                "creating a test namespace for {prefix}"
            )))?;
        Ok(TestNamespace {
            name: created.metadata.name.unwrap_or_default(),
            client: client.clone(),
        })
    }

    /// A test's start: a client for the cluster, the project's CRDs installed,
    /// and a fresh namespace `<prefix>-<random suffix>`.
    pub async fn with_crds(prefix: &str) -> Result<Self, Error> {
        let client = client().await?;
        install_crds(&client).await?;
        TestNamespace::new(&client, prefix).await
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client the namespace was made with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether object `name` of kind `K` exists in this namespace.
    pub async fn has<K: Namespaced>(&self, name: &str) -> Result<bool, Error> {
        let found = self
            .api::<K>()
            .get_opt(name)
            .await
            .map_err(Error::api(format!(
                "reading {} {name} in {}",
                K::kind(&Default::default()),
                self.name
            )))?;
        Ok(found.is_some())
    }

    /// The names of the objects of kind `K` in this namespace.
    pub async fn names<K: Namespaced>(&self) -> Result<Vec<String>, Error> {
        let listed = self
            .api::<K>()
            .list(&kube::api::ListParams::default())
            .await
            .map_err(Error::api(format!(
                "listing {} in {}",
                K::kind(&Default::default()),
                self.name
            )))?;
        Ok(listed
            .items
            .iter()
            .filter_map(|o| o.meta().name.clone())
            .collect())
    }

    /// An `Api` for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime is blocked while we wait here,
        // so the test's client (whose worker runs on that runtime) cannot be used:
        // delete from a thread with its own runtime and its own client.
        let name = std::mem::take(&mut self.name);
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let client = Cluster::default()
                    .connect()
                    .await
                    .map_err(std::io::Error::other)?;
                // Best effort: a volume or class left behind only costs a
                // name that the next test's namespace will not reuse.
                let made_for = ListParams::default().labels(&format!("{TEST_LABEL}={name}"));
                let _ = Api::<PersistentVolume>::all(client.clone())
                    .delete_collection(&DeleteParams::default(), &made_for)
                    .await;
                let _ = Api::<StorageClass>::all(client.clone())
                    .delete_collection(&DeleteParams::default(), &made_for)
                    .await;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map(drop)
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if let Ok(Err(e)) = deleted {
            eprintln!("could not delete test namespace: {e}");
        }
    }
}
