//! The tests' own MQTT clients, against [`crate::mosquitto::Mosquitto`]: a
//! stand-in for a gateway (with its Last Will) and a one-shot publisher (a
//! sensor).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::mosquitto::Mosquitto;
use crate::{Error, TestNamespace, create};

/// The name of the Secret [`credentials_secret`] creates and [`mqtt_spec`] names.
pub const CREDENTIALS_SECRET: &str = "mqtt";

/// Secret `mqtt` in the test's namespace, with the broker's user name and
/// password, as a user keeps them.
pub async fn credentials_secret(
    ns: &TestNamespace,
    (user, password): (&str, &str),
) -> Result<Secret, Error> {
    create(
        &ns.api::<Secret>(),
        json!({
            "metadata": {"name": CREDENTIALS_SECRET},
            "stringData": {"username": user, "password": password},
        }),
    )
    .await
}

/// A SensorGateway's `mqtt` for the broker at `url`, the credentials by
/// reference to [`credentials_secret`]'s keys, plain-text MQTT allowed (the test
/// broker listens without TLS).
pub fn mqtt_spec(url: &str) -> Value {
    json!({
        "url": url,
        "usernameSecretRef": {"name": CREDENTIALS_SECRET, "key": "username"},
        "passwordSecretRef": {"name": CREDENTIALS_SECRET, "key": "password"},
        "allowPlaintextCredentials": true,
    })
}

fn options(broker: &Mosquitto, id: &str, (user, password): (&str, &str)) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", broker.port());
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// A stand-in for zigbee2mqtt's MQTT side: connects with a retained Last Will
/// of `{"state":"offline"}` on its state topic, and says `{"state":"online"}`
/// (retained) on every connect, as zigbee2mqtt 2.x does.
pub struct FakeGateway {
    task: tokio::task::JoinHandle<()>,
}

impl FakeGateway {
    /// Connects (and reconnects) as `id` with `credentials`.
    #[must_use]
    pub fn start(
        broker: &Mosquitto,
        credentials: (&str, &str),
        id: &str,
        state_topic: &str,
    ) -> Self {
        let mut o = options(broker, id, credentials);
        o.set_last_will(LastWill::new(
            state_topic,
            r#"{"state":"offline"}"#,
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(o, 16);
        let topic = state_topic.to_owned();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_publish(
                            &topic,
                            QoS::AtLeastOnce,
                            true,
                            r#"{"state":"online"}"#,
                        );
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Self { task }
    }

    /// Drops the TCP connection without a DISCONNECT, as a crashed gateway
    /// would: the broker publishes the Last Will.
    pub fn crash(self) {
        self.task.abort();
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes one message and waits for the broker's acknowledgement.
///
/// # Panics
/// When the broker does not acknowledge within 10 s (a test failure).
pub async fn publish(
    broker: &Mosquitto,
    credentials: (&str, &str),
    topic: &str,
    payload: &str,
    retain: bool,
) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let (client, mut eventloop) = AsyncClient::new(
        options(broker, &format!("test-pub-{nanos}"), credentials),
        16,
    );
    let sent = client
        .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
        .await;
    assert!(sent.is_ok(), "queueing a publish to {topic}: {sent:?}");
    let acked = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let result = tokio::time::timeout(Duration::from_secs(10), acked).await;
    assert!(
        matches!(result, Ok(Ok(()))),
        "publishing to {topic}: {result:?}"
    );
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
}
