//! A whole controller on the kit, small enough to read in a minute: every
//! ConfigMap annotated `example.homelab.home.arpa/copy: "true"` gets an
//! owned copy named `<name>-copy`.
//!
//! Run it against a cluster with `cargo run -p homelab-kit --example configmap_copy`
//! (set `HOMELAB_LEADER_ELECTION=false` outside a pod).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use homelab_kit::apply::owned_metadata;
use homelab_kit::{Action, Context, ReconcileError, Runner, Settings};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};

const ANNOTATION: &str = "example.homelab.home.arpa/copy";

/// What can go wrong in this controller.
#[derive(Debug, thiserror::Error)]
enum Error {
    /// The ConfigMap was read without a namespace.
    #[error("ConfigMap has no namespace")]
    NoNamespace,
    /// Building or applying the copy failed.
    #[error("could not apply the copy")]
    Apply(#[source] homelab_kit::Error),
}

impl ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::Apply(e) => e.metric_label(),
        }
    }
}

/// The controller's own state.
struct State {
    /// How often to look again without a change.
    resync: Duration,
}

/// Pure: the copy of a ConfigMap (its data, owned by it).
fn desired_copy(cm: &ConfigMap, ctx: &Context<State>) -> Result<ConfigMap, homelab_kit::Error> {
    Ok(ConfigMap {
        metadata: owned_metadata(cm, format!("{}-copy", cm.name_any()), &ctx.manager)?,
        data: cm.data.clone().or_else(|| Some(BTreeMap::new())),
        ..ConfigMap::default()
    })
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Context<State>>) -> Result<Action, Error> {
    if cm.annotations().get(ANNOTATION).map(String::as_str) != Some("true") {
        return Ok(Action::await_change());
    }
    let namespace = cm.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let copy = desired_copy(&cm, &ctx).map_err(Error::Apply)?;
    ctx.manager.apply(&api, &copy).await.map_err(Error::Apply)?;
    Ok(Action::requeue(ctx.state.resync))
}

#[tokio::main]
async fn main() -> Result<(), homelab_kit::Error> {
    homelab_kit::telemetry::init()?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| homelab_kit::Error::kube("connect to the API server", e))?;
    let state = State {
        resync: Duration::from_secs(3600),
    };
    Runner::<ConfigMap>::new(client, Settings::from_env("configmap-copy")?)
        .owns::<ConfigMap>()
        .run(state, reconcile)
        .await
}
