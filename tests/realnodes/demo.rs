//! `make demo` as a newcomer meets it: `e2e/demo up` brings the example home up
//! on the real nodes, every object Ready with nothing done by hand; then the
//! Zigbee stick moves to the other node and zigbee2mqtt follows it, and a garden
//! sensor that falls silent is named stale. `e2e/demo down` takes it away.

use std::process::Command;
use std::time::{Duration, Instant};

use homelab_api::{ConditionedStatus, SensorGateway, UsbDevicePin};
use homelab_test_support::{client, wait_for, workspace_root};
use kube::Api;

use crate::home::WORKERS;

/// Namespaces of their own, beside a demo a person may have up.
const OPERATORS: &str = "rn-demo";
const HOME: &str = "rn-demo-home";

fn demo(args: &[&str]) -> Result<String, String> {
    let mut command = Command::new(workspace_root().join("e2e/demo"));
    command
        .args(args)
        .env("DEMO_NAMESPACE", OPERATORS)
        .env("DEMO_HOME", HOME);
    // The stick tool, an example of the node agent, built with this test (its
    // `cargo test` holds cargo's lock: the demo must not build it again).
    if let Some(tool) = std::env::current_exe().ok().and_then(|exe| {
        let tool = exe.parent()?.parent()?.join("examples/demo-usb-sticks");
        tool.exists().then_some(tool)
    }) {
        command.env("DEMO_STICK_TOOL", tool);
    }
    let output = command
        .output()
        .map_err(|e| format!("e2e/demo {}: {e}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!("e2e/demo {} failed:\n{text}", args.join(" ")))
    }
}

/// `e2e/demo down` however the test ends.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = demo(&["down"]) {
            eprintln!("{e}");
        }
    }
}

fn condition<'a>(sg: &'a SensorGateway, type_: &str) -> Option<(&'a str, &'a str)> {
    let c = sg.status.as_ref()?.condition(type_)?;
    Some((c.status.as_str(), c.reason.as_str()))
}

#[tokio::test]
async fn the_demo_home_comes_up_ready_and_its_gateway_follows_the_stick() {
    let _one = crate::exclusive().await;
    let _down = Down;
    let started = Instant::now();
    let up = demo(&["up"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(up.contains("Every object is Ready"), "{up}");
    println!(
        "e2e/demo up: every object Ready after {:.0}s",
        started.elapsed().as_secs_f64()
    );

    let client = client().await.unwrap();
    let pins: Api<UsbDevicePin> = Api::namespaced(client.clone(), HOME);
    let gateways: Api<SensorGateway> = Api::namespaced(client, HOME);
    let pin = pins.get("sonoff-zigbee").await.unwrap();
    let from = pin.status.and_then(|s| s.current_node).unwrap();
    let to = WORKERS.iter().find(|n| **n != from).unwrap();

    let moved = Instant::now();
    demo(&["plug", "sonoff-zigbee", to]).unwrap_or_else(|e| panic!("{e}"));
    wait_for(&gateways, "zigbee2mqtt", Duration::from_secs(120), |sg| {
        condition(sg, "Ready") == Some(("True", "Online"))
            && sg.status.as_ref().and_then(|s| s.node.as_deref()) == Some(*to)
    })
    .await
    .unwrap_or_else(|e| panic!("zigbee2mqtt did not follow its stick to {to}: {e}"));
    println!(
        "stick moved {from} → {to}: zigbee2mqtt online on {to} after {:.1}s",
        moved.elapsed().as_secs_f64()
    );

    let silenced = Instant::now();
    demo(&["silence", "tomato-bed"]).unwrap_or_else(|e| panic!("{e}"));
    let garden = wait_for(&gateways, "garden", Duration::from_secs(150), |sg| {
        condition(sg, "SensorsFresh") == Some(("False", "SensorStale"))
    })
    .await
    .unwrap_or_else(|e| panic!("tomato-bed was not named stale: {e}"));
    let stale = garden
        .status
        .as_ref()
        .and_then(|s| s.condition("SensorsFresh"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(stale.contains("tomato-bed"), "{stale}");
    // A silent sensor is news, not an outage: the gateway stays Ready.
    assert_eq!(condition(&garden, "Ready"), Some(("True", "Online")));
    println!(
        "tomato-bed silenced: stale after {:.1}s ({stale})",
        silenced.elapsed().as_secs_f64()
    );
    demo(&["unsilence", "tomato-bed"]).unwrap_or_else(|e| panic!("{e}"));
    wait_for(&gateways, "garden", Duration::from_secs(60), |sg| {
        condition(sg, "SensorsFresh").is_some_and(|(s, _)| s == "True")
    })
    .await
    .unwrap_or_else(|e| panic!("tomato-bed did not report again: {e}"));
}
