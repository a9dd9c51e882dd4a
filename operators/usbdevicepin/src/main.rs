//! `usbdevicepin-controller`: see the crate docs of homelab-usbdevicepin.

use homelab_kit::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::error::exit_code(run().await)
}

async fn run() -> Result<(), homelab_kit::Error> {
    homelab_kit::telemetry::init()?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| homelab_kit::Error::kube("connect to the API server", e))?;
    let (runner, state) =
        homelab_usbdevicepin::runner(client, Settings::from_env(homelab_usbdevicepin::NAME)?);
    runner.run(state, homelab_usbdevicepin::reconcile).await
}
