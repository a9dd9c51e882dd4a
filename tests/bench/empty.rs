//! The limit of the apply → reconcile latency: a `homelab_kit::Runner` of
//! MediaServers running in this process whose reconcile sends no request. It
//! notes when it was called and waits for the next change; what remains is the
//! API server, the watch and the runner's own queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use homelab_api::MediaServer;
use homelab_kit::{Action, Context, Runner, Settings};
use homelab_test_support::TestNamespace;
use kube::api::{Patch, PatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Field manager of the benchmark's own writes.
const MANAGER: &str = "homelab-bench";

/// When the empty reconcile was called, by object name.
type Calls = UnboundedSender<(String, Instant)>;

/// Applies `n` MediaServers one at a time (as `load::apply_to_deployment`
/// does); for each, the time from the apply call returning to the empty
/// reconcile being called for it.
pub async fn apply_to_reconcile(client: &Client, ns: &TestNamespace, n: usize) -> Vec<Duration> {
    let mut settings = Settings::new("bench-empty-reconcile");
    settings.namespace = Some(ns.name().to_owned());
    settings.http_addr = "127.0.0.1:0".parse().expect("a loopback address");
    settings.leader_election = false;
    let (calls, mut called) = unbounded_channel::<(String, Instant)>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = Runner::<MediaServer>::new(client.clone(), settings);
    let running = tokio::spawn(runner.run_until(
        calls,
        |server: Arc<MediaServer>, ctx: Arc<Context<Calls>>| {
            let _ = ctx.state.send((server.name_any(), Instant::now()));
            std::future::ready(Ok::<_, homelab_kit::Error>(Action::await_change()))
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let servers = ns.api::<MediaServer>();
    // One server first: its reconcile shows the runner's watch has listed.
    apply(&servers, "warmup").await;
    wait_called(&mut called, "warmup").await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("e{i:03}");
        let started = Instant::now();
        apply(&servers, &name).await;
        let at = wait_called(&mut called, &name).await;
        samples.push(at.duration_since(started));
    }
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(30), running).await {
        Ok(Ok(Ok(()))) => {}
        other => eprintln!("the empty-reconcile runner stopped badly: {other:?}"),
    }
    samples
}

async fn apply(servers: &kube::Api<MediaServer>, name: &str) {
    servers
        .patch(
            name,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(homelab_test_support::objects::navidrome_on_nas(name)),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

/// When `name` was reconciled; other servers' reconciles before it are passed over.
async fn wait_called(called: &mut UnboundedReceiver<(String, Instant)>, name: &str) -> Instant {
    let mut others = Vec::new();
    let of_name = async {
        loop {
            let (server, at) = called.recv().await.expect("the runner stopped");
            if server == name {
                return at;
            }
            others.push(server);
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), of_name).await {
        Ok(at) => at,
        Err(_) => panic!("no reconcile of {name} within 30 s; reconciled instead: {others:?}"),
    }
}
