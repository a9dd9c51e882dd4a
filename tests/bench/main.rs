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
//!   seen by a watch, one at a time;
//! - `converge_1000_s`: 1,000 MediaServers applied at once → all Ready (kwok makes
//!   the pods Ready; bench nodes are added so that 1,000 pods fit);
//! - `rss_mib_1000.<binary>`: memory with 1,000 objects of its kind ([`LOADS`]);
//! - `steady_writes_per_min`: writes the API server counts (`apiserver_request_total`)
//!   to what the controllers write, over two quiet minutes with those objects.

// A benchmark that cannot measure fails loudly; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
        running.push(p);
    }
    for (load, ns) in &namespaces {
        let took = load.converge(&client, ns, OBJECTS).await;
        if *load == Load::MediaServers {
            record("converge_1000_s", took.as_secs_f64()).unwrap();
        }
    }
    // What the controllers did meanwhile: how many reconciles, how long each.
    for p in &running {
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
    for p in &running {
        record(&format!("rss_mib_1000.{}", p.name), p.rss_mib()).unwrap();
    }
    steady_writes(&client, &running).await;

    // Namespaces first, while the controllers run: the UsbDevicePin controller
    // takes its finalizer off each pin.
    for (_, ns) in namespaces {
        let name = ns.name().to_owned();
        drop(ns);
        load::wait_gone(&client, &name).await;
    }
    for p in running {
        p.stop();
    }
    nodes.remove().await;
}

/// Apply → Deployment, one server at a time, with a fresh controller.
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
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    record("reconcile_p50_ms", at(0.5)).unwrap();
    record("reconcile_p99_ms", at(0.99)).unwrap();
    p.stop();
    // Gone before the next measurement shares the API server with its cleanup.
    let name = ns.name().to_owned();
    drop(ns);
    load::wait_gone(client, &name).await;
}

/// Writes to what the controllers write (their kinds, Deployments, Services,
/// claims, Events, node labels), by anyone, over a quiet window: the controllers'
/// writes are at most this. Their own write counters are printed beside it.
async fn steady_writes(client: &Client, running: &[Process]) {
    let before = load::apiserver_writes(client).await;
    let own_before: f64 = futures::future::join_all(
        running
            .iter()
            .map(|p| p.metric("homelab_mediaserver_writes_total")),
    )
    .await
    .iter()
    .sum();
    let reconciles_before: f64 =
        futures::future::join_all(running.iter().map(|p| p.metric("homelab_reconciles_total")))
            .await
            .iter()
            .sum();
    let started = Instant::now();
    tokio::time::sleep(STEADY_WINDOW).await;
    let after = load::apiserver_writes(client).await;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let own_after: f64 = futures::future::join_all(
        running
            .iter()
            .map(|p| p.metric("homelab_mediaserver_writes_total")),
    )
    .await
    .iter()
    .sum();
    let reconciles_after: f64 =
        futures::future::join_all(running.iter().map(|p| p.metric("homelab_reconciles_total")))
            .await
            .iter()
            .sum();
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
