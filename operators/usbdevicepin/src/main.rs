//! `usbdevicepin-controller`: see the crate docs of homelab-usbdevicepin.

use homelab_kit::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::error::exit_code(run().await)
}

async fn run() -> Result<(), homelab_kit::Error> {
    homelab_kit::telemetry::init()?;
    let settings = Settings::from_env(homelab_usbdevicepin::NAME)?;
    let client = homelab_kit::client::connect(&settings).await?;
    let (runner, state) = homelab_usbdevicepin::runner(client, settings);
    runner.run(state, homelab_usbdevicepin::reconcile).await
}
