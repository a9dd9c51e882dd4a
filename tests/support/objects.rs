//! Writing objects as a user writes them: a spec applied with server-side apply
//! under the tests' own field manager (as `kubectl apply --server-side` or a
//! GitOps tool would), or an object created from its JSON.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::namespace::Namespaced;
use crate::status::{Kind, wait_condition, wait_reason};
use crate::{Error, TestNamespace, wait_for};

/// The field manager the tests apply with, as a person or a GitOps tool would.
pub const TEST_MANAGER: &str = "homelab-tests";

/// Applies `spec` to object `name` of kind `K` as a user would; returns the
/// stored object, or the API server's refusal (which some tests expect).
pub async fn apply<K>(api: &Api<K>, name: &str, spec: Value) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    apply_object(
        api,
        name,
        json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"name": name},
            "spec": spec,
        }),
    )
    .await
}

/// Applies a whole object (its `apiVersion`, `kind` and `metadata` included) as a
/// user would.
pub async fn apply_object<K>(api: &Api<K>, name: &str, object: Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    api.patch(
        name,
        &PatchParams::apply(TEST_MANAGER),
        &Patch::Apply(&object),
    )
    .await
}

/// Makes the object's controller reconcile it without a spec change: an
/// annotation, under a field manager of its own (the spec's stays the test's).
pub async fn nudge<K>(api: &Api<K>, name: &str) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let annotation = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "annotations": {"example.org/nudge": "1"}},
    });
    api.patch(
        name,
        &PatchParams::apply("nudge"),
        &Patch::Apply(&annotation),
    )
    .await
}

/// Creates an object written as JSON; returns it as stored.
pub async fn create<K>(api: &Api<K>, object: Value) -> Result<K, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let object: K = serde_json::from_value(object).map_err(Error::Json)?;
    let name = object.meta().name.clone().unwrap_or_default();
    api.create(&PostParams::default(), &object)
        .await
        .map_err(Error::api(format!("creating {name}")))
}

/// A Navidrome MediaServer, the whole object, with its config and music on the
/// NAS: what the benchmark and the controller-kill burst apply by the hundred.
pub fn navidrome_on_nas(name: &str) -> Value {
    json!({
        "apiVersion": "homelab.home.arpa/v1alpha1",
        "kind": "MediaServer",
        "metadata": {"name": name},
        "spec": {
            "preset": "Navidrome",
            "config": {"nfs": {"server": "nas.home.arpa", "path": format!("/volume1/config/{name}")}},
            "media": [{"name": "music", "mountPath": "/music",
                       "nfs": {"server": "nas.home.arpa", "path": "/volume1/music"}}],
        }
    })
}

/// The objects of one of the project's kinds in a test's namespace, with how
/// long the test waits for them: a scenario's verbs in one place. Each panics
/// with what went wrong (a refusal, or what was last seen at the deadline).
pub struct Objects<K> {
    api: Api<K>,
    wait: Duration,
}

impl<K> Objects<K>
where
    K: Kind + Serialize + Namespaced,
{
    /// The kind's objects in `ns`, waited for up to `wait`.
    pub fn new(ns: &TestNamespace, wait: Duration) -> Self {
        Objects {
            api: ns.api(),
            wait,
        }
    }

    /// The `Api` beneath, for what these verbs do not cover.
    pub fn api(&self) -> &Api<K> {
        &self.api
    }

    /// Applies `spec` as a user would; the stored object.
    pub async fn apply(&self, name: &str, spec: Value) -> K {
        apply(&self.api, name, spec)
            .await
            .unwrap_or_else(|e| panic!("applying {} {name}: {e}", K::kind(&())))
    }

    /// Applies `spec` as a user would; the stored object or the refusal.
    pub async fn try_apply(&self, name: &str, spec: Value) -> Result<K, kube::Error> {
        apply(&self.api, name, spec).await
    }

    /// Waits until `ready` holds for the object, whatever its status's generation.
    pub async fn wait_for(&self, name: &str, ready: impl Fn(&K) -> bool + Send + 'static) -> K {
        wait_for(&self.api, name, self.wait, ready)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until condition `type_` has `status` for the current generation.
    pub async fn wait_condition(&self, name: &str, type_: &'static str, status: &'static str) -> K {
        wait_condition(&self.api, name, type_, status, self.wait)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until condition `type_` has `reason` for the current generation,
    /// with a message that mentions `conclusive` (see [`wait_reason`]).
    pub async fn wait_reason(
        &self,
        name: &str,
        type_: &'static str,
        reason: &'static str,
        conclusive: &str,
    ) -> K {
        wait_reason(&self.api, name, type_, reason, conclusive, self.wait)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
