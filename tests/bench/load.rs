//! What the benchmark applies and waits for: MediaServers and UsbDevicePins by the
//! thousand, nodes to hold their pods, and the API server's own write counts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use homelab_api::{ConditionedStatus, MediaServer, UsbDevicePin};
use homelab_mediaserver::build::names::SERVER_LABEL;
use homelab_test_support::objects::navidrome_on_nas;
use homelab_test_support::{Cluster, TestNamespace, wait_deleted};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// The objects one controller is measured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Load {
    /// Navidrome servers on NFS (so every pod schedules; kwok makes it Ready).
    MediaServers,
    /// Pins of sticks that are plugged in nowhere.
    UsbDevicePins,
}

/// Field manager of the benchmark's own writes.
const MANAGER: &str = "homelab-bench";
/// Applies in flight at once.
const PARALLEL: usize = 16;
/// The longest a 1,000-object run may take.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(900);

impl Load {
    /// The namespace prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::MediaServers => "bench-mediaservers",
            Self::UsbDevicePins => "bench-pins",
        }
    }

    /// Applies `n` objects at once and returns how long until all are done: every
    /// MediaServer Ready, every pin reconciled (a status for its generation). For
    /// MediaServers, also how long until every Deployment existed (the
    /// controller's own part).
    pub async fn converge(
        self,
        client: &Client,
        ns: &TestNamespace,
        n: usize,
    ) -> (Duration, Option<Duration>) {
        let started = Instant::now();
        let (done, applied) = match self {
            Self::MediaServers => {
                // The controller's part (every Deployment applied) beside the
                // whole (every server Ready: the cluster's controllers and kwok too).
                let deployments = tokio::spawn(wait_all(
                    Api::<Deployment>::namespaced(client.clone(), ns.name()),
                    n,
                    |_: &Deployment| true,
                ));
                apply_all(ns.api::<MediaServer>(), n, navidrome_on_nas).await;
                let ready = wait_all(ns.api::<MediaServer>(), n, |ms: &MediaServer| {
                    ms.status.as_ref().is_some_and(|s| {
                        s.observed_generation == ms.metadata.generation
                            && s.is_condition_true(homelab_api::conditions::types::READY)
                    })
                })
                .await;
                let applied = deployments.await.unwrap().duration_since(started);
                (ready, Some(applied))
            }
            Self::UsbDevicePins => {
                apply_all(ns.api::<UsbDevicePin>(), n, pin).await;
                let done = wait_all(ns.api::<UsbDevicePin>(), n, |p: &UsbDevicePin| {
                    p.status.as_ref().is_some_and(|s| {
                        s.observed_generation == p.metadata.generation && !s.conditions.is_empty()
                    })
                })
                .await;
                (done, None)
            }
        };
        let took = done.duration_since(started);
        eprintln!(
            "{n} {self:?} applied at once: all done after {:.1} s{}",
            took.as_secs_f64(),
            applied.map_or_else(String::new, |a| format!(
                " (every Deployment after {:.1} s)",
                a.as_secs_f64()
            ))
        );
        (took, applied)
    }
}

/// The Deployments the controller made in `namespace`, as a user would write
/// them: what the server sets (status, managedFields, uid, resourceVersion,
/// creationTimestamp, generation, ownerReferences, the revision annotation) and
/// the namespace stripped.
pub async fn rendered_deployments(client: &Client, namespace: &str) -> Vec<Value> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .map(|d| {
            let mut v = serde_json::to_value(d).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("status");
                o.insert("apiVersion".into(), json!("apps/v1"));
                o.insert("kind".into(), json!("Deployment"));
            }
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                for key in [
                    "managedFields",
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                    "generation",
                    "ownerReferences",
                    "namespace",
                    "selfLink",
                ] {
                    meta.remove(key);
                }
                if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                    a.remove("deployment.kubernetes.io/revision");
                }
            }
            v
        })
        .collect()
}

/// Whether a Deployment has all its replicas available, for its generation.
fn available(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.status.as_ref().is_some_and(|s| {
        s.observed_generation == d.metadata.generation && s.available_replicas.unwrap_or(0) >= want
    })
}

/// The limit of the 1,000-object run, in the same cluster: the same rendered
/// Deployments applied into a fresh namespace with the real `kubectl apply
/// --server-side`, split over as many kubectl processes as the MediaServer
/// applies have in flight ([`PARALLEL`]), each applying its share as one
/// multi-document file. Returns (all exist in a watch, all Available), from the
/// start of the kubectl processes; the namespace is gone when it returns.
pub async fn kubectl_apply_limit(client: &Client, docs: &[Value]) -> (Duration, Duration) {
    let ns = TestNamespace::new(client, "bench-limit").await.unwrap();
    let dir = crate::process::bench_dir().join(format!("limit-{}", ns.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for part in 0..PARALLEL {
        let text: Vec<String> = docs
            .iter()
            .skip(part)
            .step_by(PARALLEL)
            .map(|d| serde_json::to_string(d).unwrap())
            .collect();
        if text.is_empty() {
            continue;
        }
        let file = dir.join(format!("part-{part:02}.yaml"));
        std::fs::write(&file, text.join("\n---\n") + "\n").unwrap();
        files.push(file);
    }
    let n = docs.len();
    let api = Api::<Deployment>::namespaced(client.clone(), ns.name());
    let exist = tokio::spawn(wait_all(api.clone(), n, |_: &Deployment| true));
    let ready = tokio::spawn(wait_all(api, n, available));
    // Both watches list the empty namespace before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let namespace = ns.name().to_owned();
    let applies: Vec<_> = files
        .into_iter()
        .map(|file| {
            let namespace = namespace.clone();
            tokio::task::spawn_blocking(move || {
                let file = file.to_string_lossy().into_owned();
                Cluster::default()
                    .run(&[
                        "kubectl",
                        "apply",
                        "--server-side",
                        "--field-manager=homelab-bench-limit",
                        "-n",
                        &namespace,
                        "-f",
                        &file,
                    ])
                    .unwrap_or_else(|e| panic!("kubectl apply -f {file}: {e}"))
            })
        })
        .collect();
    for apply in applies {
        apply.await.unwrap();
    }
    let applied = started.elapsed();
    let exist = exist.await.unwrap().duration_since(started);
    let ready = ready.await.unwrap().duration_since(started);
    eprintln!(
        "limit: {n} Deployments with kubectl apply --server-side ({PARALLEL} processes): kubectl done after {:.1} s, all exist after {:.1} s, all Available after {:.1} s",
        applied.as_secs_f64(),
        exist.as_secs_f64(),
        ready.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
    wait_gone(client, &namespace).await;
    (exist, ready)
}

/// A Zigbee stick's pin, each with its own serial.
fn pin(name: &str) -> Value {
    json!({
        "apiVersion": "homelab.home.arpa/v1alpha1",
        "kind": "UsbDevicePin",
        "metadata": {"name": name},
        "spec": {"vendorId": "10c4", "productId": "ea60",
                 "serial": format!("bench{name}"), "containerPath": "/dev/zigbee"},
    })
}

async fn apply_all<K>(api: Api<K>, n: usize, object: fn(&str) -> Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("o{i:04}");
                api.patch(
                    &name,
                    &PatchParams::apply(MANAGER),
                    &Patch::Apply(object(&name)),
                )
                .await
                .unwrap_or_else(|e| panic!("applying {name}: {e}"));
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<()>>()
        .await;
}

/// Waits until `n` objects pass `done`, from a watch's cache; returns when.
async fn wait_all<K>(api: Api<K>, n: usize, done: fn(&K) -> bool) -> Instant
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let watch = tokio::spawn(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .for_each(|_| async {}),
    );
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    let mut said = Instant::now();
    let finished = loop {
        let count = store.state().iter().filter(|o| done(o)).count();
        if count >= n {
            break Instant::now();
        }
        if said.elapsed() > Duration::from_secs(10) {
            eprintln!("  {count}/{n} done");
            said = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "only {count}/{n} done after {CONVERGE_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    watch.abort();
    finished
}

/// Applies `n` MediaServers one by one; for each, the time from the apply call to
/// its Deployment appearing in a watch.
pub async fn apply_to_deployment(client: &Client, ns: &TestNamespace, n: usize) -> Vec<Duration> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let (listed_tx, listed) = tokio::sync::oneshot::channel::<()>();
    let watch = tokio::spawn(async move {
        let mut listed_tx = Some(listed_tx);
        let stream = watcher(deployments, watcher::Config::default().labels(SERVER_LABEL));
        futures::pin_mut!(stream);
        while let Ok(Some(event)) = stream.try_next().await {
            let at = Instant::now();
            match event {
                watcher::Event::InitDone => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                watcher::Event::Apply(d) => {
                    if let Some(server) = d.labels().get(SERVER_LABEL) {
                        let _ = seen_tx.send((server.clone(), at));
                    }
                }
                _ => {}
            }
        }
    });
    listed.await.expect("the Deployment watch listed");
    let servers = ns.api::<MediaServer>();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("l{i:03}");
        let started = Instant::now();
        servers
            .patch(
                &name,
                &PatchParams::apply(MANAGER),
                &Patch::Apply(navidrome_on_nas(&name)),
            )
            .await
            .unwrap();
        let at = loop {
            let (server, at) = tokio::time::timeout(Duration::from_secs(30), seen.recv())
                .await
                .unwrap_or_else(|_| panic!("no Deployment for {name} within 30 s"))
                .expect("the watch ended");
            if server == name {
                break at;
            }
        };
        samples.push(at.duration_since(started));
    }
    watch.abort();
    samples
}

/// Extra kwok nodes so that 1,000 pods fit (the home's six nodes take 110 each).
pub struct BenchNodes(Api<Node>, Vec<String>);

impl BenchNodes {
    /// Adds four amd64 nodes of 300 pods each, run by kwok like the home's.
    pub async fn add(client: &Client) -> Self {
        let api: Api<Node> = Api::all(client.clone());
        let mut names = Vec::new();
        for i in 1..=4 {
            let name = format!("bench-{i}");
            let capacity =
                json!({"cpu": "64", "memory": "256Gi", "pods": "300", "ephemeral-storage": "1Ti"});
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {
                    "e2e.homelab.home.arpa/kubelet": "alive",
                    "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": name, "type": "kwok",
                }},
                "status": {"capacity": capacity, "allocatable": capacity,
                           "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"}},
            }))
            .unwrap();
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => panic!("creating node {name}: {e}"),
            }
            names.push(name);
        }
        Self(api, names)
    }

    /// Removes them (the pods on them go with their namespaces).
    pub async fn remove(self) {
        for name in &self.1 {
            let _ = self.0.delete(name, &DeleteParams::default()).await;
        }
    }
}

/// Waits (up to 10 minutes) until a namespace being deleted is gone, so the next
/// measurement does not share the API server with its garbage collection.
pub async fn wait_gone(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = wait_deleted(&api, name, Duration::from_secs(600)).await {
        eprintln!("namespace {name} still terminating: {e}");
    }
}

/// Resources the controllers write; writes to others (pods' status by kwok,
/// leases) are not theirs.
const WRITTEN: &[&str] = &[
    "mediaservers",
    "usbdevicepins",
    "deployments",
    "services",
    "persistentvolumeclaims",
    "events",
    "nodes",
];
const WRITE_VERBS: &[&str] = &[
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// `apiserver_request_total` of write verbs to [`WRITTEN`] resources, by
/// "VERB resource[/subresource]", from the API server's own `/metrics`.
pub async fn apiserver_writes(_client: &Client) -> BTreeMap<String, f64> {
    apiserver_requests(|verb, resource, sub| {
        // Node status is the kubelet's (kwok's) heartbeat; node labels are ours.
        WRITE_VERBS.contains(&verb)
            && WRITTEN.contains(&resource)
            && (resource != "nodes" || sub.is_empty())
    })
    .await
}

/// `apiserver_request_total` of every verb to what a MediaServer's reconcile
/// reads or writes, by "VERB resource[/subresource]": where its requests go.
pub async fn apiserver_reads_and_writes() -> BTreeMap<String, f64> {
    const READ_OR_WRITTEN: &[&str] = &[
        "mediaservers",
        "deployments",
        "services",
        "pods",
        "nodes",
        "persistentvolumeclaims",
        "persistentvolumes",
        "storageclasses",
        "csidrivers",
        "leases",
        "events",
    ];
    apiserver_requests(|verb, resource, _| verb != "WATCH" && READ_OR_WRITTEN.contains(&resource))
        .await
}

/// `apiserver_request_total` where `keep(verb, resource, subresource)`, summed
/// by "VERB resource[/subresource]".
async fn apiserver_requests(keep: impl Fn(&str, &str, &str) -> bool) -> BTreeMap<String, f64> {
    let text = tokio::task::spawn_blocking(|| {
        Cluster::default()
            .run(&["kubectl", "get", "--raw", "/metrics"])
            .expect("the API server's /metrics")
    })
    .await
    .unwrap();
    let mut requests = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(&format!("{key}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let (verb, resource, sub) = (label("verb"), label("resource"), label("subresource"));
        if !keep(&verb, &resource, &sub) {
            continue;
        }
        let key = if sub.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{sub}")
        };
        *requests.entry(key).or_default() += value.parse::<f64>().unwrap_or_default();
    }
    requests
}
