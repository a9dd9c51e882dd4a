//! `usbdevicepin-controller`: see the crate docs of homelab-usbdevicepin.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    homelab_kit::operator::main::<homelab_usbdevicepin::Controller>().await
}
