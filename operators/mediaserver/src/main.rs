//! `mediaserver-controller`: settings from the environment (see
//! `homelab_kit::settings`), logs, run until SIGTERM.

use homelab_mediaserver::{CONTROLLER_NAME, Controller};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::error::exit_code(run().await)
}

async fn run() -> Result<(), homelab_kit::Error> {
    homelab_kit::telemetry::init()?;
    let settings = homelab_kit::Settings::from_env(CONTROLLER_NAME)?;
    let client = homelab_kit::client::connect(&settings).await?;
    Controller::new(client, settings).run().await
}
