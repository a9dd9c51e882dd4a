//! home-sim: the gateways of the demo's home, simulated. The demo's cluster can
//! pull no image, so this stands in for zigbee2mqtt and zwave-js-ui inside the
//! pods the SensorGateway operator runs (reading the settings the operator gives
//! them, opening the radio the UsbDevicePin hands them), and for an ESPHome
//! device on the network. Over MQTT it says what the real ones say: availability
//! with a retained Last Will, and sensor reports on a schedule.
//!
//!   home-sim zigbee2mqtt|zwave-js-ui|esphome    (or HOME_SIM_GATEWAY)
//!
//! `e2e/demo silence SENSOR` publishes `<HOME_SIM_CONTROL_TOPIC>/silence/<sensor>`
//! (retained) with a topic filter; reports on matching topics stop until an
//! empty message clears it.

mod config;
mod payloads;
mod web;
mod zwave_store;

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};

use crate::config::{Config, Kind};
use crate::payloads::{Message, availability, matches, report};

/// Topic filters kept quiet, by the sensor name `e2e/demo silence` gave.
type Silenced = Arc<Mutex<BTreeMap<String, String>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let kind = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("HOME_SIM_GATEWAY").ok())
        .unwrap_or_default();
    let config = Kind::parse(&kind).and_then(|kind| {
        let env: config::Env = std::env::vars().collect();
        let env = match kind {
            Kind::ZwaveJsUi => zwave_settings(&env)?,
            _ => env,
        };
        config::from_env(kind, &env)
    });
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("home-sim: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = check_radio(&config) {
        // zigbee2mqtt and zwave-js-ui stop when their adapter is missing, too.
        eprintln!("home-sim: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(port) = config.web_port {
        tokio::spawn(web::serve(port, web::page(&config)));
    }
    run(config).await;
    ExitCode::SUCCESS
}

/// zwave-js-ui's settings as its store holds them (`HOME_SIM_STORE` elsewhere).
fn zwave_settings(env: &config::Env) -> Result<config::Env, String> {
    let store = env
        .get("HOME_SIM_STORE")
        .map_or(zwave_store::STORE, String::as_str);
    let path = std::path::Path::new(store).join("settings.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("zwave-js-ui's settings {}: {e}", path.display()))?;
    let settings = serde_json::from_str(&text)
        .map_err(|e| format!("zwave-js-ui's settings {}: {e}", path.display()))?;
    Ok(zwave_store::overlay(env, &settings))
}

/// The radio must be there, a character device, as the UsbDevicePin hands it over.
fn check_radio(c: &Config) -> Result<(), String> {
    let Some(path) = c.radio.as_deref().filter(|p| p.starts_with('/')) else {
        return Ok(());
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("no radio at {path} ({e}): is the stick plugged in?"))?;
    if !meta.file_type().is_char_device() {
        return Err(format!("{path} is not a character device"));
    }
    println!("radio {path}: a character device, as the node agent handed it over");
    Ok(())
}

async fn run(c: Config) {
    let will = availability(&c, false);
    let mut options = MqttOptions::new(c.client_id.clone(), c.broker.0.clone(), c.broker.1);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_last_will(LastWill::new(
        will.topic,
        will.payload,
        QoS::AtLeastOnce,
        true,
    ));
    if let Some((user, password)) = &c.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    let (client, mut events) = AsyncClient::new(options, 64);
    let silenced: Silenced = Arc::default();
    let control = format!("{}/silence/", c.control_prefix);

    let connection = {
        let (client, c, silenced, control) =
            (client.clone(), c.clone(), silenced.clone(), control.clone());
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        println!(
                            "connected to {}:{} as {}",
                            c.broker.0, c.broker.1, c.client_id
                        );
                        send(&client, &availability(&c, true), QoS::AtLeastOnce).await;
                        let _ = client
                            .subscribe(format!("{control}+"), QoS::AtLeastOnce)
                            .await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(sensor) = p.topic.strip_prefix(&control) {
                            quiet(&silenced, sensor, &String::from_utf8_lossy(&p.payload));
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("broker {}:{}: {e}; retrying", c.broker.0, c.broker.1);
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        })
    };

    let reports = {
        let (client, c, silenced) = (client.clone(), c.clone(), silenced.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(c.interval);
            for tick in 0u64.. {
                every.tick().await;
                for device in &c.devices {
                    let m = report(&c, device, tick);
                    let quiet = silenced
                        .lock()
                        .map(|s| s.values().any(|f| matches(f, &m.topic)))
                        .unwrap_or(false);
                    if !quiet {
                        send(&client, &m, QoS::AtMostOnce).await;
                    }
                }
            }
        })
    };

    shutdown_signal().await;
    reports.abort();
    // As the real gateways do on a clean stop: say offline, then leave.
    send(&client, &availability(&c, false), QoS::AtLeastOnce).await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(3), connection).await;
    println!("stopped");
}

fn quiet(silenced: &Silenced, sensor: &str, filter: &str) {
    let Ok(mut s) = silenced.lock() else { return };
    let filter = filter.trim();
    if filter.is_empty() {
        if s.remove(sensor).is_some() {
            println!("{sensor}: reporting again");
        }
    } else {
        println!("{sensor}: silenced ({filter})");
        s.insert(sensor.to_owned(), filter.to_owned());
    }
}

async fn send(client: &AsyncClient, m: &Message, qos: QoS) {
    if let Err(e) = client
        .publish(m.topic.clone(), qos, m.retain, m.payload.clone())
        .await
    {
        eprintln!("publish {}: {e}", m.topic);
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
