//! `sensorgateway-controller`: settings from the environment (see
//! `homelab_kit::settings` and, for the MQTT budget,
//! `homelab_sensorgateway::mqtt::budget`), logs, run until SIGTERM.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::operator::main::<homelab_sensorgateway::Controller>().await
}
