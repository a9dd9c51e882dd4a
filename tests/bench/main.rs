//! `homelab-bench`: the figures that need the release binaries running as processes
//! against the local cluster. `e2e/bench/run` (`make bench`) builds them and calls
//!
//! ```text
//! homelab-bench <dir of the release binaries> <binary> [<binary> …]
//! ```
//!
//! where a binary is its name and, quoted, its arguments (`"etcd-backup controller"`).
//! It records into `target/bench/results.json` (see `homelab_test_support::bench`):
//!
//! - `idle_rss_mib.<binary>`: resident memory once its watches have listed, with no
//!   object in the namespace it watches;
//! - `reconcile_p50_ms`, `reconcile_p99_ms`: a MediaServer applied → its Deployment
//!   seen by a watch, one at a time; `reconcile_empty_p50_ms`, `_p99_ms`, its
//!   limit: the same applies → a reconcile that sends no request called
//!   (`empty.rs`);
//! - `converge_1000_s`: 1,000 MediaServers applied at once → all Ready (kwok makes
//!   the pods Ready; bench nodes are added so that 1,000 pods fit), and
//!   `converge_1000_deployments_s`: → all 1,000 Deployments exist. Their limits,
//!   `converge_1000_limit_s` and `converge_1000_deployments_limit_s`: the same
//!   1,000 Deployments, as the controller rendered them, applied with `kubectl
//!   apply --server-side` (16 processes) into a fresh namespace → all Available,
//!   → all exist;
//! - `reconciles_per_object_1000` (and `.usbdevicepin-controller`): reconciles
//!   during the 1,000-object converge, per object;
//! - `rss_mib_1000.<binary>`: memory with 1,000 objects of its kind ([`LOADS`]);
//! - `steady_writes_per_min`: writes the API server counts (`apiserver_request_total`)
//!   to what the controllers write, over two quiet minutes with those objects.
//!
//! With `HOMELAB_BENCH_K3S=1` the 1,000-MediaServer converge and its limit run a
//! second time with the controller-manager restarted with a k3s server's flags
//! ([`K3S_CONTROLLER_MANAGER_ARGS`]), recorded with the suffix `.k3s`; the
//! controller-manager is restarted with the defaults after.

// A benchmark that cannot measure fails loudly; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod empty;
mod load;
mod process;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use homelab_test_support::bench::record;
use homelab_test_support::{Cluster, TestNamespace, client, install_crds};
use kube::Client;

use crate::load::Load;
use crate::process::Process;

/// What each binary carries in the 1,000-object run. A new controller: one line
/// (and its objects in `load.rs`).
const LOADS: &[(&str, Load)] = &[
    ("mediaserver-controller", Load::MediaServers),
    ("usbdevicepin-controller", Load::UsbDevicePins),
    ("node-agent", Load::UsbDevicePins),
];

/// What a k3s server passes to kube-controller-manager beyond paths, ports and
/// certificates (k3s-io/k3s `pkg/daemons/control/server.go`, `controllerManager`,
/// in an older version that still imports `github.com/rancher/k3s`):
/// nothing about client rate limits (`--kube-api-qps`, `--kube-api-burst`) or
/// workers (`--concurrent-*-syncs`), so those stay at Kubernetes' defaults.
const K3S_CONTROLLER_MANAGER_ARGS: &str = "--allocate-node-cidrs=true --cluster-cidr=10.42.0.0/16 --configure-cloud-routes=false --controllers=*,-service,-route,-cloud-node-lifecycle";

/// Objects in the big run.
const OBJECTS: usize = 1000;
/// Samples of the apply → Deployment latency.
const LATENCY_SAMPLES: usize = 200;
/// The quiet window in which writes are counted.
const STEADY_WINDOW: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let bin_dir = PathBuf::from(
        args.next()
            .expect("usage: homelab-bench <bin dir> <binary>…"),
    );
    let binaries: Vec<String> = args.collect();
    assert!(!binaries.is_empty(), "no binary to measure");
    let client = client().await.unwrap();
    install_crds(&client).await.unwrap();
    let kubeconfig = Cluster::default().kubeconfig_path().unwrap();

    // Idle memory, one binary at a time, each in an empty namespace.
    for spec in &binaries {
        let ns = TestNamespace::new(&client, "bench-idle").await.unwrap();
        let mut p = Process::spawn(&bin_dir, spec, ns.name(), &kubeconfig);
        p.ready().await;
        // Let the first passes and allocations settle before reading memory.
        tokio::time::sleep(Duration::from_secs(5)).await;
        record(&format!("idle_rss_mib.{}", p.name), p.rss_mib()).unwrap();
        p.stop();
    }

    let mediaserver = binaries
        .iter()
        .find(|b| b.starts_with("mediaserver-controller"))
        .expect("the MediaServer controller is among the binaries");
    latency(&client, &bin_dir, mediaserver, &kubeconfig).await;

    // 1,000 objects of every kind at once, every binary running.
    let nodes = load::BenchNodes::add(&client).await;
    let mut namespaces = BTreeMap::new();
    let mut running = Vec::new();
    for spec in &binaries {
        let name = spec.split_whitespace().next().unwrap_or_default();
        let Some((_, load)) = LOADS.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        if !namespaces.contains_key(load) {
            let ns = TestNamespace::new(&client, load.prefix()).await.unwrap();
            namespaces.insert(*load, ns);
        }
        let mut p = Process::spawn(&bin_dir, spec, namespaces[load].name(), &kubeconfig);
        p.ready().await;
        running.push((p, *load));
    }
    let mut rendered = Vec::new();
    for (load, ns) in &namespaces {
        let before = reconciles(&running, *load).await;
        let requests_before = load::apiserver_reads_and_writes().await;
        let (took, deployments) = load.converge(&client, ns, OBJECTS).await;
        let after = reconciles(&running, *load).await;
        // Where the requests went (every client's, the cluster's own
        // controllers' too): the API server's count by verb and resource.
        if *load == Load::MediaServers {
            let requests_after = load::apiserver_reads_and_writes().await;
            let mut deltas: Vec<(String, f64)> = requests_after
                .iter()
                .map(|(k, a)| {
                    (
                        k.clone(),
                        a - requests_before.get(k).copied().unwrap_or_default(),
                    )
                })
                .filter(|(_, d)| *d > 0.0)
                .collect();
            deltas.sort_by(|a, b| b.1.total_cmp(&a.1));
            for (key, delta) in deltas {
                eprintln!("requests during the converge: {delta:>8} {key}");
            }
        }
        for ((name, b), (_, a)) in before.iter().zip(&after) {
            #[allow(clippy::cast_precision_loss)]
            let per_object = (a - b) / OBJECTS as f64;
            eprintln!(
                "{name}: {} reconciles during the {OBJECTS}-object converge, {per_object:.2} per object",
                a - b
            );
            match name.as_str() {
                "mediaserver-controller" => {
                    record("reconciles_per_object_1000", per_object).unwrap();
                }
                "usbdevicepin-controller" => {
                    record(&format!("reconciles_per_object_1000.{name}"), per_object).unwrap();
                }
                _ => {}
            }
        }
        if *load == Load::MediaServers {
            record("converge_1000_s", took.as_secs_f64()).unwrap();
            if let Some(d) = deployments {
                record("converge_1000_deployments_s", d.as_secs_f64()).unwrap();
            }
            rendered = load::rendered_deployments(&client, ns.name()).await;
        }
    }
    // What the controllers did meanwhile: how many reconciles, how long each.
    for (p, _) in &running {
        let count = p.metric("homelab_reconcile_duration_seconds_count").await;
        let sum = p.metric("homelab_reconcile_duration_seconds_sum").await;
        if count > 0.0 {
            eprintln!(
                "{}: {count} reconciles, {:.0} ms each on average",
                p.name,
                sum / count * 1000.0
            );
        }
    }
    // Quiet: nothing changes from here on.
    tokio::time::sleep(Duration::from_secs(15)).await;
    for (p, _) in &running {
        record(&format!("rss_mib_1000.{}", p.name), p.rss_mib()).unwrap();
    }
    let procs: Vec<&Process> = running.iter().map(|(p, _)| p).collect();
    steady_writes(&client, &procs).await;

    // Namespaces first, while the controllers run: the UsbDevicePin controller
    // takes its finalizer off each pin.
    for (_, ns) in namespaces {
        let name = ns.name().to_owned();
        drop(ns);
        load::wait_gone(&client, &name).await;
    }
    for (p, _) in running {
        p.stop();
    }

    // The limit of the converge: the same Deployments, applied directly, with
    // the cluster as empty as the controller had it.
    limit(&client, &rendered, "").await;

    // The same again with the controller-manager as a k3s server runs it.
    if std::env::var("HOMELAB_BENCH_K3S").is_ok_and(|v| v == "1") {
        restart_controller_manager(K3S_CONTROLLER_MANAGER_ARGS);
        let ns = TestNamespace::new(&client, Load::MediaServers.prefix())
            .await
            .unwrap();
        let mut p = Process::spawn(&bin_dir, mediaserver, ns.name(), &kubeconfig);
        p.ready().await;
        let (took, deployments) = Load::MediaServers.converge(&client, &ns, OBJECTS).await;
        record("converge_1000_s.k3s", took.as_secs_f64()).unwrap();
        if let Some(d) = deployments {
            record("converge_1000_deployments_s.k3s", d.as_secs_f64()).unwrap();
        }
        let rendered = load::rendered_deployments(&client, ns.name()).await;
        let name = ns.name().to_owned();
        drop(ns);
        load::wait_gone(&client, &name).await;
        p.stop();
        limit(&client, &rendered, ".k3s").await;
        restart_controller_manager("");
    }
    nodes.remove().await;
}

/// `homelab_reconciles_total` of every running binary carrying `load`.
async fn reconciles(running: &[(Process, Load)], load: Load) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (p, l) in running {
        if *l == load {
            out.push((p.name.clone(), p.metric("homelab_reconciles_total").await));
        }
    }
    out
}

/// Records the limit of the 1,000-MediaServer converge (see `load.rs`).
async fn limit(client: &Client, rendered: &[serde_json::Value], suffix: &str) {
    assert_eq!(
        rendered.len(),
        OBJECTS,
        "the controller's Deployments were not all read"
    );
    let (exist, available) = load::kubectl_apply_limit(client, rendered).await;
    record(
        &format!("converge_1000_deployments_limit_s{suffix}"),
        exist.as_secs_f64(),
    )
    .unwrap();
    record(
        &format!("converge_1000_limit_s{suffix}"),
        available.as_secs_f64(),
    )
    .unwrap();
}

/// Restarts only the controller-manager with `extra` flags (none: its defaults),
/// through `e2e/cluster restart-controller-manager`.
fn restart_controller_manager(extra: &str) {
    let script = homelab_test_support::workspace_root().join("e2e/cluster");
    let status = std::process::Command::new(&script)
        .arg("restart-controller-manager")
        .env("CONTROLLER_MANAGER_EXTRA_ARGS", extra)
        .status()
        .expect("e2e/cluster restart-controller-manager");
    assert!(
        status.success(),
        "e2e/cluster restart-controller-manager failed"
    );
    eprintln!("controller-manager restarted with extra flags: {extra:?}");
}

/// The p-quantile of sorted samples, in milliseconds.
fn quantile_ms(samples: &[Duration], q: f64) -> f64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i].as_secs_f64() * 1000.0
}

/// Apply → Deployment, one server at a time, with a fresh controller; then its
/// limit, apply → an empty reconcile called, with an in-process runner.
async fn latency(
    client: &Client,
    bin_dir: &std::path::Path,
    spec: &str,
    kubeconfig: &std::path::Path,
) {
    let ns = TestNamespace::new(client, "bench-latency").await.unwrap();
    let mut p = Process::spawn(bin_dir, spec, ns.name(), kubeconfig);
    p.ready().await;
    let mut samples = load::apply_to_deployment(client, &ns, LATENCY_SAMPLES).await;
    samples.sort_unstable();
    record("reconcile_p50_ms", quantile_ms(&samples, 0.5)).unwrap();
    record("reconcile_p99_ms", quantile_ms(&samples, 0.99)).unwrap();
    p.stop();
    // Gone before the next measurement shares the API server with its cleanup.
    let name = ns.name().to_owned();
    drop(ns);
    load::wait_gone(client, &name).await;

    let ns = TestNamespace::new(client, "bench-empty").await.unwrap();
    let mut samples = empty::apply_to_reconcile(client, &ns, LATENCY_SAMPLES).await;
    samples.sort_unstable();
    record("reconcile_empty_p50_ms", quantile_ms(&samples, 0.5)).unwrap();
    record("reconcile_empty_p99_ms", quantile_ms(&samples, 0.99)).unwrap();
    let name = ns.name().to_owned();
    drop(ns);
    load::wait_gone(client, &name).await;
}

/// A metric summed over the running binaries.
async fn summed(running: &[&Process], metric: &str) -> f64 {
    futures::future::join_all(running.iter().map(|p| p.metric(metric)))
        .await
        .iter()
        .sum()
}

/// Writes to what the controllers write (their kinds, Deployments, Services,
/// claims, Events, node labels), by anyone, over a quiet window: the controllers'
/// writes are at most this. Their own write counters are printed beside it.
async fn steady_writes(client: &Client, running: &[&Process]) {
    let before = load::apiserver_writes(client).await;
    let own_before = summed(running, "homelab_mediaserver_writes_total").await;
    let reconciles_before = summed(running, "homelab_reconciles_total").await;
    let started = Instant::now();
    tokio::time::sleep(STEADY_WINDOW).await;
    let after = load::apiserver_writes(client).await;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let own_after = summed(running, "homelab_mediaserver_writes_total").await;
    let reconciles_after = summed(running, "homelab_reconciles_total").await;
    let mut total = 0.0;
    for (key, count) in &after {
        let delta = count - before.get(key).copied().unwrap_or_default();
        if delta > 0.0 {
            eprintln!("steady state: {delta} × {key}");
            total += delta;
        }
    }
    eprintln!(
        "steady state over {:.0} s: {total} writes to the controllers' resources, {} by the MediaServer controller's own count, {} reconciles",
        minutes * 60.0,
        own_after - own_before,
        reconciles_after - reconciles_before
    );
    record("steady_writes_per_min", total / minutes).unwrap();
}
