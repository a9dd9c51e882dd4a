//! `mediaserver-controller`: settings from the environment (see
//! `homelab_kit::settings`), logs, run until SIGTERM.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::operator::main::<homelab_mediaserver::Controller>().await
}
