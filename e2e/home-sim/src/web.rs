//! The web UI's port, answered with one plain page: the pod's readiness probe
//! and a person with `kubectl port-forward` both see that it is a simulation.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::config::{Config, Kind};

/// The page: what is simulated, and with which settings.
#[must_use]
pub fn page(c: &Config) -> String {
    let name = match c.kind {
        Kind::Zigbee2Mqtt => "zigbee2mqtt",
        Kind::ZwaveJsUi => "zwave-js-ui",
        Kind::Esphome => "ESPHome",
    };
    format!(
        "{name}, simulated by the homelab-operators demo (home-sim)\nbroker {}:{}\nbase topic {}\nradio {}\ndevices {}\n",
        c.broker.0,
        c.broker.1,
        c.prefix,
        c.radio.as_deref().unwrap_or("none"),
        c.devices.join(", "),
    )
}

/// Answers every connection on `port` with `body`.
pub async fn serve(port: u16, body: String) {
    let listener = match TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("web UI port {port}: {e}");
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    loop {
        if let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}
