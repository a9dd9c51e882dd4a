//! The Helm chart, with the real `helm` and `kubectl` pinned in `e2e/versions.env`:
//! it lints and renders; what is generated from it (the kustomize base, its copy of
//! the CRDs) is in step; its RBAC is what each controller's `rbac.yaml` lists and
//! nothing more; it installs, upgrades its CRDs on `helm upgrade`, and uninstalls
//! leaving the CRDs; and each controller's ServiceAccount is refused what it must
//! not do (asked with SubjectAccessReviews and `kubectl auth can-i`).
//!
//! The cluster shares its CRDs with every other test, which apply them with
//! server-side apply (field manager `homelab-tests`). So the install test first
//! installs with `crds.install=false`, then takes the CRDs over with
//! `--take-ownership` (what a user does after installing the CRDs by hand), changes
//! a description, changes it back, and uninstalls: the CRDs stay, as designed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use homelab_test_support::{Cluster, TestNamespace, client, install_crds, workspace_root};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::Value;

/// The arguments that render `deploy/base/homelab-operators.yaml` (as in `charts/sync`).
const BASE_ARGS: &[&str] = homelab_test_support::tools::TEMPLATE_ARGS;
/// The header `charts/sync` writes above the rendering.
const BASE_HEADER_LINES: usize = 3;
const MEDIASERVER: &str = "mediaserver-controller";
const USBDEVICEPIN: &str = "usbdevicepin-controller";
const SENSORGATEWAY: &str = "sensorgateway-controller";
const NODE_AGENT: &str = "node-agent";
const ETCDBACKUP: &str = "etcdbackup-controller";
const CRD_MARKER: &str = "CHART-UPGRADE-TEST";

pub(crate) use homelab_test_support::tools::chart_dir;

/// The path of a pinned tool's binary (`helm`, `kubernetes`), built on first use.
fn tool(name: &str, binary: &str) -> PathBuf {
    homelab_test_support::tools::tool(name, binary).unwrap()
}

/// Runs a command; returns (success, stdout, stderr).
fn run(program: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", program.display()));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a command that must succeed; returns its stdout.
fn ok(program: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = run(program, args);
    assert!(
        success,
        "{} {} failed:\n{stdout}\n{stderr}",
        program.display(),
        args.join(" ")
    );
    stdout
}

fn helm_template(extra: &[&str]) -> String {
    homelab_test_support::tools::helm_template(extra).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    homelab_test_support::tools::documents(yaml).unwrap()
}

/// Numbers as f64: crds/ says `maximum: 65535.0` where Helm's YAML round trip
/// says `65535`, the same number to the API server.
fn normalized(value: &Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| d["kind"] == kind)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// (apiGroup, resource, verb) for every rule, resourceNames ignored.
fn permissions<'a>(roles: impl Iterator<Item = &'a Value>) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for role in roles {
        for rule in role["rules"].as_array().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        set.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    set
}

fn component(doc: &Value) -> &str {
    doc["metadata"]["labels"]["app.kubernetes.io/component"]
        .as_str()
        .unwrap_or_default()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn chart_lints_renders_and_generated_files_are_in_step() {
    let helm = tool("helm", "helm");
    let chart = chart_dir();
    let lint = ok(&helm, &["lint", "--strict", chart.to_str().unwrap()]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    // files/crds are byte copies of crds/.
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".yaml"))
            .collect()
    };
    let crds = workspace_root().join("crds");
    let copies = chart.join("files").join("crds");
    assert_eq!(
        names(&crds),
        names(&copies),
        "run `make chart` after `make crds`"
    );
    for name in names(&crds) {
        assert_eq!(
            read(&crds.join(&name)),
            read(&copies.join(&name)),
            "charts/homelab-operators/files/crds/{name} differs from crds/{name}: run `make chart`"
        );
    }

    // The kustomize base is the default rendering.
    let rendered = helm_template(&[]);
    let base = read(&workspace_root().join("deploy/base/homelab-operators.yaml"));
    let base: String = base.split_inclusive('\n').skip(BASE_HEADER_LINES).collect();
    assert!(
        base == rendered,
        "deploy/base/homelab-operators.yaml is not the chart's default rendering: run `make chart`"
    );

    // kustomize builds the base (kubectl's built-in kustomize).
    let kubectl = tool("kubernetes", "kubectl");
    let built = ok(
        &kubectl,
        &[
            "kustomize",
            workspace_root().join("deploy/base").to_str().unwrap(),
        ],
    );
    assert_eq!(
        of_kind(&documents(&built), "Deployment").count(),
        of_kind(&documents(&rendered), "Deployment").count()
    );

    // argocd-cm.yaml is what deploy/argocd/render makes of deploy/argocd/src/, and
    // it has a health check for every kind and nothing else.
    let argocd = workspace_root().join("deploy/argocd");
    let written = read(&argocd.join("argocd-cm.yaml"));
    let render = argocd.join("render");
    assert!(
        written == ok(&render, &["-"]),
        "deploy/argocd/argocd-cm.yaml is not what deploy/argocd/render makes: run `make chart`"
    );
    let config = documents(&written);
    let keys: BTreeSet<String> = config[0]["data"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let kinds: BTreeSet<String> = of_kind(&documents(&rendered), "CustomResourceDefinition")
        .map(|crd| {
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
            format!("resource.customizations.health.homelab.home.arpa_{kind}")
        })
        .collect();
    assert_eq!(
        keys, kinds,
        "deploy/argocd/render's KINDS differ from the chart's CRDs"
    );

    // The rendered CRDs are crds/ plus labels and the keep annotation.
    let docs = documents(&rendered);
    let mut rendered_crds: Vec<Value> = of_kind(&docs, "CustomResourceDefinition")
        .cloned()
        .collect();
    assert_eq!(rendered_crds.len(), names(&crds).len());
    for crd in &mut rendered_crds {
        let meta = crd["metadata"].as_object_mut().unwrap();
        let annotations = meta.remove("annotations").unwrap_or_default();
        assert_eq!(annotations["helm.sh/resource-policy"], "keep");
        meta.remove("labels");
        let name = meta["name"].as_str().unwrap().to_owned();
        let source = documents(&read(&crds.join(format!("{name}.yaml"))));
        // Compared without printing: a CRD is tens of kilobytes.
        assert!(
            normalized(&source[0]) == normalized(crd),
            "the chart renders {name} differently from crds/"
        );
    }
    let without = documents(&helm_template(&["--set", "crds.install=false"]));
    assert_eq!(of_kind(&without, "CustomResourceDefinition").count(), 0);

    // Each binary gets exactly what its rbac.yaml lists (Lease rules included).
    for (component_name, crate_dir) in [
        (MEDIASERVER, "mediaserver"),
        (USBDEVICEPIN, "usbdevicepin"),
        (SENSORGATEWAY, "sensorgateway"),
        (NODE_AGENT, "node-agent"),
        (ETCDBACKUP, "etcdbackup"),
    ] {
        let wanted = documents(&read(
            &workspace_root().join(format!("operators/{crate_dir}/rbac.yaml")),
        ));
        let granted = docs.iter().filter(|d| {
            (d["kind"] == "ClusterRole" || d["kind"] == "Role") && component(d) == component_name
        });
        assert_eq!(
            permissions(granted),
            permissions(wanted.iter()),
            "the chart's RBAC for {component_name} differs from operators/{crate_dir}/rbac.yaml"
        );
    }

    // No wildcards; Secrets only ever `get`.
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for (group, resource, verb) in permissions(std::iter::once(role)) {
            let name = &role["metadata"]["name"];
            assert!(
                !group.contains('*') && !resource.contains('*') && !verb.contains('*'),
                "{name} has a wildcard"
            );
            if group.is_empty() && resource == "secrets" {
                assert_eq!(verb, "get", "{name} may {verb} secrets");
            }
        }
    }

    // Every controller pod meets Pod Security "restricted".
    let deployments: Vec<&Value> = of_kind(&docs, "Deployment").collect();
    assert!(!deployments.is_empty());
    for deployment in deployments {
        let pod = &deployment["spec"]["template"]["spec"];
        let name = &deployment["metadata"]["name"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        assert!(pod["volumes"].is_null(), "{name} mounts volumes");
        for container in pod["containers"].as_array().unwrap() {
            let sc = &container["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
            assert!(sc["capabilities"]["add"].is_null(), "{name}");
            let env = strings(
                &container["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["name"].clone())
                    .collect(),
            );
            assert!(
                env.iter().any(|e| e == "POD_NAME") && env.iter().any(|e| e == "POD_NAMESPACE")
            );
            for probe in ["livenessProbe", "readinessProbe"] {
                assert!(
                    container[probe]["httpGet"]["path"].is_string(),
                    "{name} {probe}"
                );
            }
        }
    }

    // The node agent, the one exception: host mounts, in a namespace of its own
    // that admits them, and still no privileged container nor capabilities.
    let agent = of_kind(&docs, "DaemonSet").next().unwrap();
    let agent_ns = agent["metadata"]["namespace"].as_str().unwrap();
    assert_ne!(agent_ns, "homelab");
    let namespace = of_kind(&docs, "Namespace")
        .find(|n| n["metadata"]["name"] == agent_ns)
        .unwrap();
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    let pod = &agent["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &pod["containers"][0]["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"]["add"].is_null());
    let host_paths: BTreeSet<String> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["hostPath"]["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        host_paths,
        ["/dev", "/sys", "/var/lib/kubelet/device-plugins"]
            .map(str::to_owned)
            .into()
    );
    for mount in pod["containers"][0]["volumeMounts"].as_array().unwrap() {
        if mount["name"] != "device-plugins" {
            assert_eq!(mount["readOnly"], true, "{mount}");
        }
    }
    // Nothing else in that namespace.
    for doc in &docs {
        if doc["metadata"]["namespace"] == agent_ns {
            assert_eq!(component(doc), NODE_AGENT, "{}", doc["metadata"]["name"]);
        }
    }

    // Controllers without a binary cannot be switched on.
    let chart_path = chart.to_str().unwrap().to_owned();
    for key in ["sensorGateway", "etcdBackup"] {
        if !chart.join("templates").join(key.to_lowercase()).exists() {
            let set = format!("{key}.enabled=true");
            let (success, _, stderr) = run(
                &helm,
                &[BASE_ARGS, &[chart_path.as_str(), "--set", set.as_str()]].concat(),
            );
            assert!(
                !success,
                "{set} renders, but there is no such controller yet"
            );
            assert!(stderr.contains("must be false"), "{stderr}");
        }
    }
}

/// A release in its own namespace, uninstalled when dropped (before the namespace).
pub(crate) struct Release {
    helm: PathBuf,
    kubeconfig: String,
    pub(crate) name: String,
}

impl Release {
    fn helm(&self, args: &[&str]) -> String {
        let mut all = vec!["--kubeconfig", &self.kubeconfig, "--namespace", &self.name];
        all.extend_from_slice(args);
        ok(&self.helm, &all)
    }

    /// `helm upgrade --install`. The node agent and EtcdBackups go into the
    /// release's own namespace: their default namespaces are one per cluster, and
    /// tests run in parallel. For the same reason the cluster-wide admission
    /// policies are off unless a test turns them on (tests/disruptive/trust.rs,
    /// which runs alone): one release's EtcdBackup allow-list would refuse the
    /// other tests' EtcdBackups.
    pub(crate) fn install(&self, chart: &Path, extra: &[&str]) -> String {
        let agent_namespace = format!("nodeAgent.namespace.name={}", self.name);
        let backup_namespaces = format!("etcdBackup.namespaces={{{}}}", self.name);
        let mut args = vec![
            "upgrade",
            "--install",
            &self.name,
            chart.to_str().unwrap(),
            "--timeout",
            "2m",
            "--set",
            "nodeAgent.namespace.create=false",
            "--set",
            &agent_namespace,
            "--set",
            "etcdBackup.createNamespaces=false",
            "--set",
            &backup_namespaces,
            "--set",
            "admissionPolicies.enabled=false",
        ];
        args.extend_from_slice(extra);
        self.helm(&args)
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let (success, _, stderr) = run(
            &self.helm,
            &[
                "--kubeconfig",
                &self.kubeconfig,
                "--namespace",
                &self.name,
                "uninstall",
                &self.name,
                "--ignore-not-found",
                "--wait",
            ],
        );
        if !success {
            eprintln!("could not uninstall release {}: {stderr}", self.name);
        }
    }
}

pub(crate) async fn release(client: &Client, prefix: &str) -> (TestNamespace, Release) {
    let namespace = TestNamespace::new(client, prefix).await.unwrap();
    let kubeconfig = Cluster::default().kubeconfig_path().unwrap();
    let release = Release {
        helm: tool("helm", "helm"),
        kubeconfig: kubeconfig.to_str().unwrap().to_owned(),
        name: namespace.name().to_owned(),
    };
    (namespace, release)
}

fn description(crd: &CustomResourceDefinition) -> String {
    crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| s.description.clone())
        .unwrap_or_default()
}

fn owner(crd: &CustomResourceDefinition) -> Option<String> {
    crd.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("meta.helm.sh/release-name").cloned())
}

/// The chart with one CRD's description changed, in a temporary directory.
fn chart_with_changed_crd(dir: &Path) -> PathBuf {
    let copy = dir.join("homelab-operators");
    ok(
        Path::new("cp"),
        &["-r", chart_dir().to_str().unwrap(), copy.to_str().unwrap()],
    );
    let crd = copy.join("files/crds/mediaservers.homelab.home.arpa.yaml");
    let text = read(&crd);
    let changed = text.replacen(
        "A media server (Jellyfin",
        &format!("{CRD_MARKER} A media server (Jellyfin"),
        1,
    );
    assert_ne!(
        text, changed,
        "the MediaServer CRD's description moved; update this test"
    );
    std::fs::write(&crd, changed).unwrap();
    copy
}

#[tokio::test]
async fn chart_installs_upgrades_its_crds_and_uninstalls_keeping_them() {
    let client = client().await.unwrap();
    // The CRDs exist, applied by the tests' field manager, before helm sees them.
    install_crds(&client).await.unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let mediaservers = "mediaservers.homelab.home.arpa";
    let (namespace, release) = release(&client, "chart").await;
    let chart = chart_dir();

    // 1. CRDs managed elsewhere: the release leaves them alone.
    release.install(&chart, &["--set", "crds.install=false"]);
    let deployments: Api<Deployment> = namespace.api();
    let deployment = format!("{}-homelab-operators-{MEDIASERVER}", release.name);
    deployments.get(&deployment).await.unwrap();
    assert_ne!(
        owner(&crds.get(mediaservers).await.unwrap()).as_deref(),
        Some(release.name.as_str())
    );

    // 2. The release takes the existing CRDs over.
    release.install(&chart, &["--take-ownership"]);
    let crd = crds.get(mediaservers).await.unwrap();
    assert_eq!(owner(&crd).as_deref(), Some(release.name.as_str()));
    assert!(!description(&crd).contains(CRD_MARKER));

    // 3. `helm upgrade` with a changed CRD changes the CRD in the cluster.
    let temp = TempDir::new(&release.name);
    let changed = chart_with_changed_crd(&temp.0);
    let out = release.install(&changed, &[]);
    assert!(out.contains("has been upgraded"), "{out}");
    let crd = crds.get(mediaservers).await.unwrap();
    assert!(
        description(&crd).starts_with(CRD_MARKER),
        "helm upgrade did not upgrade the CRD: {}",
        description(&crd)
    );

    // 4. And back, leaving the shared CRDs as crds/ has them.
    release.install(&chart, &[]);
    let crd = crds.get(mediaservers).await.unwrap();
    assert!(!description(&crd).contains(CRD_MARKER));
    let history = release.helm(&["history", &release.name, "-o", "json"]);
    assert_eq!(documents(&history)[0].as_array().unwrap().len(), 4);

    // 5. Uninstall: the controller goes, the CRDs stay.
    release.helm(&["uninstall", &release.name, "--wait"]);
    for name in [
        mediaservers,
        "sensorgateways.homelab.home.arpa",
        "usbdevicepins.homelab.home.arpa",
        "etcdbackups.homelab.home.arpa",
    ] {
        let crd = crds.get(name).await.unwrap();
        assert!(
            crd.metadata.deletion_timestamp.is_none(),
            "{name} is being deleted"
        );
    }
    assert!(deployments.get_opt(&deployment).await.unwrap().is_none());
    let roles = Api::<ClusterRole>::all(client.clone());
    assert!(roles.get_opt(&deployment).await.unwrap().is_none());
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("homelab-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One question to the authorizer about a ServiceAccount.
struct Ask<'a> {
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    /// `None`: across all namespaces (or a cluster-scoped kind).
    namespace: Option<&'a str>,
    name: Option<&'a str>,
}

fn ask<'a>(verb: &'a str, group: &'a str, resource: &'a str) -> Ask<'a> {
    Ask {
        verb,
        group,
        resource,
        namespace: None,
        name: None,
    }
}

impl<'a> Ask<'a> {
    fn ns(mut self, namespace: &'a str) -> Self {
        self.namespace = Some(namespace);
        self
    }
    fn named(mut self, name: &'a str) -> Self {
        self.name = Some(name);
        self
    }
    fn describe(&self) -> String {
        format!(
            "{} {}{}{} in {}",
            self.verb,
            if self.group.is_empty() {
                ""
            } else {
                self.group
            },
            if self.group.is_empty() { "" } else { "/" },
            match self.name {
                Some(name) => format!("{}/{name}", self.resource),
                None => self.resource.to_owned(),
            },
            self.namespace.unwrap_or("all namespaces")
        )
    }
}

async fn allowed(client: &Client, namespace: &str, account: &str, q: &Ask<'_>) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{namespace}:{account}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(q.verb.into()),
                group: Some(q.group.into()),
                resource: Some(q.resource.split('/').next().unwrap_or_default().into()),
                subresource: q.resource.split('/').nth(1).map(str::to_owned),
                namespace: q.namespace.map(str::to_owned),
                name: q.name.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.is_some_and(|s| s.allowed)
}

async fn assert_access(
    client: &Client,
    namespace: &str,
    account: &str,
    allow: &[Ask<'_>],
    deny: &[Ask<'_>],
) {
    let mut wrong = Vec::new();
    for q in allow {
        if !allowed(client, namespace, account, q).await {
            wrong.push(format!("refused, but needs: {}", q.describe()));
        }
    }
    for q in deny {
        if allowed(client, namespace, account, q).await {
            wrong.push(format!("allowed, but must not: {}", q.describe()));
        }
    }
    assert!(wrong.is_empty(), "{account}:\n  {}", wrong.join("\n  "));
}

#[tokio::test]
async fn chart_service_accounts_have_least_privilege() {
    let client = client().await.unwrap();
    let (namespace, release) = release(&client, "chart-rbac").await;
    release.install(&chart_dir(), &["--set", "crds.install=false"]);
    let ns = namespace.name();
    let account = |component: &str| format!("{}-homelab-operators-{component}", release.name);
    let home = "home";
    let g = "homelab.home.arpa";
    let coordination = "coordination.k8s.io";

    // What no controller may do.
    let nobody = || {
        vec![
            // Secrets: nobody by default (`namespaces` is empty).
            ask("list", "", "secrets"),
            ask("watch", "", "secrets"),
            ask("get", "", "secrets").ns(home),
            ask("get", "", "secrets").ns(ns),
            // Nothing that leads to more.
            ask("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
            ask("create", "rbac.authorization.k8s.io", "rolebindings").ns(ns),
            ask("bind", "rbac.authorization.k8s.io", "clusterroles"),
            ask("escalate", "rbac.authorization.k8s.io", "clusterroles"),
            ask("impersonate", "", "serviceaccounts"),
            ask("create", "", "serviceaccounts/token").ns(ns),
            ask("create", "", "pods").ns(home),
            ask("create", "", "pods/exec").ns(home),
            ask("patch", "apiextensions.k8s.io", "customresourcedefinitions"),
            ask("delete", "", "nodes"),
            ask("update", "", "nodes"),
            ask("patch", "", "configmaps").ns(home),
            ask("patch", "apps", "daemonsets").ns(home),
            ask("patch", "apps", "statefulsets").ns(home),
            // Never another controller's kind, never a spec.
            ask("patch", g, "sensorgateways").ns(home),
            ask("patch", g, "etcdbackups/status").ns(home),
            ask("update", g, "mediaservers").ns(home),
            ask("delete", g, "usbdevicepins").ns(home),
            ask("delete", g, "mediaservers").ns(home),
            // Leases: never list or delete in its namespace, never another's.
            ask("list", coordination, "leases").ns(ns),
            ask("delete", coordination, "leases")
                .ns(ns)
                .named(MEDIASERVER),
            ask("create", coordination, "leases").ns("kube-system"),
            ask("update", coordination, "leases")
                .ns("kube-node-lease")
                .named("pi4-1"),
        ]
    };

    // What both workload controllers need: their Deployments and claims, the
    // nodes they mark, what storage is behind a claim and who holds its volume
    // (all watched into their caches, not fetched per reconcile), the
    // kubelets' heartbeats, Events, and their own Lease.
    let runs_workloads = |controller| {
        vec![
            ask("patch", "apps", "deployments").ns(home),
            ask("create", "", "persistentvolumeclaims").ns(home),
            ask("watch", "", "nodes"),
            ask("patch", "", "nodes"),
            ask("get", "", "persistentvolumes"),
            ask("watch", "", "persistentvolumes"),
            ask("list", "storage.k8s.io", "storageclasses"),
            ask("watch", "storage.k8s.io", "storageclasses"),
            ask("list", "storage.k8s.io", "csidrivers"),
            ask("watch", "storage.k8s.io", "csidrivers"),
            ask("list", "storage.k8s.io", "volumeattachments"),
            ask("watch", coordination, "leases").ns("kube-node-lease"),
            ask("create", "events.k8s.io", "events").ns(home),
            ask("update", coordination, "leases")
                .ns(ns)
                .named(controller),
        ]
    };

    let mut mediaserver_needs = runs_workloads(MEDIASERVER);
    mediaserver_needs.extend([
        ask("list", g, "mediaservers"),
        ask("watch", g, "mediaservers"),
        ask("patch", g, "mediaservers/status").ns(home),
        ask("create", "apps", "deployments").ns(home),
        ask("watch", "apps", "deployments"),
        ask("patch", "", "services").ns(home),
        ask("list", "", "pods"),
        ask("create", coordination, "leases").ns(ns),
        ask("get", coordination, "leases").ns(ns).named(MEDIASERVER),
    ]);
    let mut mediaserver_not = nobody();
    mediaserver_not.extend([
        ask("patch", g, "mediaservers").ns(home),
        ask("list", g, "usbdevicepins"),
        // Pods are deleted only in `namespaces` (none by default; see below).
        ask("delete", "", "pods").ns(home),
        // Deletion of what it owns is the garbage collector's job.
        ask("delete", "apps", "deployments").ns(home),
        ask("delete", "", "services").ns(home),
        ask("delete", "", "persistentvolumeclaims").ns(home),
        ask("update", "apps", "deployments").ns(home),
        ask("delete", "", "persistentvolumes"),
        // Storage is read, never changed: a VolumeAttachment is the attacher's.
        ask("patch", "storage.k8s.io", "volumeattachments"),
        ask("delete", "storage.k8s.io", "volumeattachments"),
        ask("patch", "storage.k8s.io", "storageclasses"),
        ask("get", coordination, "leases")
            .ns(ns)
            .named(USBDEVICEPIN),
        ask("update", coordination, "leases").ns(ns).named("other"),
        ask("watch", coordination, "leases").ns("kube-system"),
    ]);
    assert_access(
        &client,
        ns,
        &account(MEDIASERVER),
        &mediaserver_needs,
        &mediaserver_not,
    )
    .await;

    let usbdevicepin_needs = [
        ask("watch", g, "usbdevicepins"),
        ask("get", coordination, "leases")
            .ns("kube-node-lease")
            .named("pi4-1"),
        ask("update", g, "usbdevicepins").ns(home),
        ask("patch", g, "usbdevicepins/status").ns(home),
        ask("patch", "", "nodes"),
        // Nodes and the kubelets' heartbeats are watched into its caches.
        ask("watch", "", "nodes"),
        ask("watch", coordination, "leases").ns("kube-node-lease"),
        ask("list", coordination, "leases").ns("kube-node-lease"),
        ask("create", "events.k8s.io", "events").ns(home),
        ask("update", coordination, "leases")
            .ns(ns)
            .named(USBDEVICEPIN),
    ];
    let mut usbdevicepin_not = nobody();
    usbdevicepin_not.extend([
        ask("list", g, "mediaservers"),
        ask("patch", "apps", "deployments").ns(home),
        ask("delete", "", "pods").ns(home),
        ask("get", coordination, "leases").ns(ns).named(MEDIASERVER),
        ask("watch", coordination, "leases").ns("kube-system"),
    ]);
    assert_access(
        &client,
        ns,
        &account(USBDEVICEPIN),
        &usbdevicepin_needs,
        &usbdevicepin_not,
    )
    .await;

    // SensorGateway: the one controller that reads Secrets, and only by name.
    let mut sensorgateway_needs = runs_workloads(SENSORGATEWAY);
    sensorgateway_needs.extend([
        ask("watch", g, "sensorgateways"),
        ask("patch", g, "sensorgateways/status").ns(home),
        ask("get", g, "usbdevicepins").ns(home),
        // Watched: a gateway whose stick is in no node is not Ready.
        ask("watch", g, "usbdevicepins"),
        ask("watch", "storage.k8s.io", "volumeattachments"),
    ]);
    let mut sensorgateway_not = nobody();
    sensorgateway_not.extend([
        ask("delete", "", "pods").ns(home),
        ask("get", "", "secrets").ns("kube-system"),
        ask("patch", g, "sensorgateways").ns(home),
        ask("update", g, "usbdevicepins").ns(home),
        ask("patch", g, "usbdevicepins/status").ns(home),
        ask("list", g, "mediaservers"),
        ask("delete", "apps", "deployments").ns(home),
        ask("create", "", "secrets").ns(home),
        ask("update", "", "secrets").ns(home),
        ask("get", coordination, "leases").ns(ns).named(MEDIASERVER),
        ask("delete", "", "persistentvolumes"),
        ask("delete", "storage.k8s.io", "volumeattachments"),
    ]);
    assert_access(
        &client,
        ns,
        &account(SENSORGATEWAY),
        &sensorgateway_needs,
        &sensorgateway_not,
    )
    .await;

    // `namespaces`: Secret reads (by name) and pod deletes there, and nowhere else.
    let restricted = TestNamespace::new(&client, "chart-secrets").await.unwrap();
    let there = restricted.name();
    release.install(
        &chart_dir(),
        &[
            "--reuse-values",
            "--set",
            &format!("namespaces={{{there}}}"),
        ],
    );
    assert_access(
        &client,
        ns,
        &account(SENSORGATEWAY),
        &[
            ask("get", "", "secrets").ns(there),
            ask("delete", "", "pods").ns(there),
        ],
        &[
            ask("get", "", "secrets").ns(ns),
            ask("get", "", "secrets").ns(home),
            ask("get", "", "secrets").ns("kube-system"),
            ask("list", "", "secrets").ns(there),
            ask("delete", "", "pods").ns("kube-system"),
        ],
    )
    .await;
    for component_name in [MEDIASERVER, USBDEVICEPIN] {
        assert_access(
            &client,
            ns,
            &account(component_name),
            &[ask("delete", "", "pods").ns(there)],
            &[
                ask("delete", "", "pods").ns("kube-system"),
                ask("get", "", "secrets").ns(there),
            ],
        )
        .await;
    }
    // clusterWideAccess: the administrator's explicit opt-in to everywhere.
    release.install(
        &chart_dir(),
        &["--reuse-values", "--set", "clusterWideAccess=true"],
    );
    assert_access(
        &client,
        ns,
        &account(SENSORGATEWAY),
        &[
            ask("get", "", "secrets").ns("kube-system"),
            ask("delete", "", "pods").ns(home),
        ],
        &[ask("list", "", "secrets")],
    )
    .await;
    release.install(
        &chart_dir(),
        &[
            "--reuse-values",
            "--set",
            "clusterWideAccess=false",
            "--set-json",
            "namespaces=[]",
        ],
    );

    // The node agent (in the release namespace here: see Release::install).
    let agent_needs = [
        ask("watch", g, "usbdevicepins"),
        ask("patch", g, "usbdevicepins/status").ns(home),
    ];
    let mut agent_not = nobody();
    agent_not.extend([
        ask("patch", g, "usbdevicepins").ns(home),
        ask("update", g, "usbdevicepins/status").ns(home),
        ask("list", "", "pods"),
        ask("patch", "", "nodes"),
        ask("list", "", "nodes"),
        ask("create", "events.k8s.io", "events").ns(home),
        ask("create", coordination, "leases").ns(ns),
    ]);
    assert_access(&client, ns, &account(NODE_AGENT), &agent_needs, &agent_not).await;

    // The EtcdBackup controller: its CronJobs, its runs' pods (read only) and
    // the Secrets its objects name (get only); the runs themselves get no token.
    // Its writes and Secret reads only in etcdBackup.namespaces (here the
    // release's own namespace, see Release::install).
    let etcdbackup_needs = [
        ask("watch", g, "etcdbackups"),
        ask("patch", g, "etcdbackups/status").ns(home),
        ask("create", "batch", "cronjobs").ns(ns),
        ask("patch", "batch", "cronjobs").ns(ns),
        ask("watch", "batch", "cronjobs"),
        ask("watch", "batch", "jobs"),
        ask("list", "", "pods"),
        ask("get", "", "secrets").ns(ns),
        ask("get", "", "persistentvolumeclaims").ns(ns),
        ask("create", "events.k8s.io", "events").ns(home),
        ask("update", coordination, "leases")
            .ns(ns)
            .named(ETCDBACKUP),
    ];
    let mut etcdbackup_not: Vec<Ask> = nobody()
        .into_iter()
        .filter(|a| !(a.resource == "secrets" && a.verb == "get" && a.namespace == Some(ns)))
        .filter(|a| a.resource != "etcdbackups/status")
        .collect();
    etcdbackup_not.extend([
        ask("create", "batch", "cronjobs").ns(home),
        ask("get", "", "secrets").ns("kube-system"),
        ask("patch", g, "etcdbackups").ns(home),
        ask("delete", "batch", "cronjobs").ns(home),
        ask("create", "batch", "jobs").ns(home),
        ask("delete", "", "pods").ns(home),
        ask("patch", "", "pods/status").ns(home),
        ask("list", g, "mediaservers"),
        ask("list", "", "nodes"),
    ]);
    assert_access(
        &client,
        ns,
        &account(ETCDBACKUP),
        &etcdbackup_needs,
        &etcdbackup_not,
    )
    .await;

    // The issue's own question, through the real kubectl.
    let kubectl = tool("kubernetes", "kubectl");
    let kubeconfig = release.kubeconfig.clone();
    for component_name in [
        MEDIASERVER,
        USBDEVICEPIN,
        SENSORGATEWAY,
        NODE_AGENT,
        ETCDBACKUP,
    ] {
        let as_user = format!(
            "--as=system:serviceaccount:{ns}:{}",
            account(component_name)
        );
        let (_, answer, _) = run(
            &kubectl,
            &[
                "--kubeconfig",
                &kubeconfig,
                "auth",
                "can-i",
                "list",
                "secrets",
                "--all-namespaces",
                &as_user,
            ],
        );
        assert_eq!(answer.trim(), "no", "{component_name} may list secrets");
    }

    // watchNamespace: the namespaced permissions shrink to that namespace.
    let watched = TestNamespace::new(&client, "chart-watched").await.unwrap();
    let home = watched.name();
    release.install(
        &chart_dir(),
        &["--reuse-values", "--set", &format!("watchNamespace={home}")],
    );
    assert_access(
        &client,
        ns,
        &account(MEDIASERVER),
        &[
            ask("patch", "apps", "deployments").ns(home),
            ask("list", g, "mediaservers").ns(home),
            ask("list", "", "nodes"),
        ],
        &[
            ask("patch", "apps", "deployments").ns("default"),
            ask("list", g, "mediaservers"),
            ask("list", "", "pods").ns("default"),
        ],
    )
    .await;
    assert_access(
        &client,
        ns,
        &account(NODE_AGENT),
        &[ask("patch", g, "usbdevicepins/status").ns(home)],
        &[ask("patch", g, "usbdevicepins/status").ns("default")],
    )
    .await;
}
