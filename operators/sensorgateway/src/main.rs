//! `sensorgateway-controller`: settings from the environment (see
//! `homelab_kit::settings`), logs, run until SIGTERM.

use homelab_sensorgateway::{CONTROLLER_NAME, Controller};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::error::exit_code(run().await)
}

async fn run() -> Result<(), homelab_kit::Error> {
    homelab_kit::telemetry::init()?;
    let settings = homelab_kit::Settings::from_env(CONTROLLER_NAME)?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| homelab_kit::Error::kube("connect to the API server", e))?;
    Controller::new(client, settings).run().await
}
