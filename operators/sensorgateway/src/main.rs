//! `sensorgateway-controller`: settings from the environment (see
//! `homelab_kit::settings` and, for the MQTT budget,
//! `homelab_sensorgateway::mqtt::budget`), logs, run until SIGTERM.

use homelab_sensorgateway::{CONTROLLER_NAME, Controller, MqttBudget};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::error::exit_code(run().await)
}

async fn run() -> Result<(), homelab_kit::Error> {
    homelab_kit::telemetry::init()?;
    let settings = homelab_kit::Settings::from_env(CONTROLLER_NAME)?;
    let budget = MqttBudget::from_env()?;
    let client = homelab_kit::client::connect(&settings).await?;
    Controller::with_mqtt_budget(client, settings, budget)
        .run()
        .await
}
