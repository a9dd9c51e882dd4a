//! `node-agent`: see the crate docs of homelab-node-agent.

use homelab_node_agent::{Error, Settings, agent};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::error::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    homelab_kit::telemetry::init()?;
    let settings = Settings::from_env()?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::kube("connect to the API server", e))?;
    agent::run(client, settings, terminated()).await?;
    Ok(())
}

/// Completes on SIGTERM (the DaemonSet's pod stopping) or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
