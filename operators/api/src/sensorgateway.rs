//! SensorGateway: a bridge between radios or sensors and MQTT (zigbee2mqtt, zwave-js-ui,
//! an ESPHome-style hub, or any image), watched where it speaks: MQTT.
//!
//! The operator runs the gateway (one replica, `Recreate`) unless it is `external`, and
//! reads its availability topic (with its Last Will) and its sensors' topics. A gateway
//! offline over MQTT while its pod looks healthy is restarted, or moved, per its
//! failover policy.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::impl_conditioned_status;
use crate::duration::GoDuration;
use crate::failover::{FailoverPolicy, FailoverRecord, impl_failover};
use crate::formats::{
    DNS_SUBDOMAIN_RULE, POSITIVE_DURATION_RULE, PRINTABLE_WORD_RULE, SECRET_NAME_MESSAGE,
    URL_PORT_RULE,
};
use crate::references::{SecretKeyRef, UsbDevicePinRef};
use crate::storage::{
    STATE_CLASS_IMMUTABLE_MESSAGE, STATE_CLASS_IMMUTABLE_RULE, STATE_HOST_PATH_IMMUTABLE_MESSAGE,
    STATE_HOST_PATH_IMMUTABLE_RULE, STATE_KIND_IMMUTABLE_MESSAGE, STATE_KIND_IMMUTABLE_RULE,
    StateVolume,
};
use crate::workload::ServiceSettings;

/// Default for [`Availability::restart_after`].
pub const DEFAULT_RESTART_AFTER: &str = "2m";
/// Default size of the claim for a gateway's data.
pub const DEFAULT_DATA_SIZE: &str = "1Gi";

/// An MQTT topic filter: `+` only as a whole level, `#` only as the whole last level.
const TOPIC_FILTER_RULE: &str = r"self.matches('^(#|(\\+|[^+#/]*)(/(\\+|[^+#/]*))*(/#)?)$')";
const TOPIC_FILTER_MESSAGE: &str = "must be an MQTT topic filter: + only as a whole level, # only as the whole last level (such as garden/+/moisture or garden/#)";

/// A filter that names at least one level: `#`, `+/#` or `+/+` would subscribe the
/// operator to everything on the broker (every other gateway's traffic, every retained
/// message), for one sensor.
const TOPIC_NOT_ONLY_WILDCARDS_RULE: &str = "!self.matches('^[+/#]*$')";
const TOPIC_NOT_ONLY_WILDCARDS_MESSAGE: &str = "must name at least one topic level: a filter of only wildcards (such as # or +/#) subscribes to everything on the broker; use the sensor's own topic, such as garden/+/moisture or garden/#";

/// Topics may hold spaces (zigbee2mqtt's friendly names do), but neither control
/// characters nor leading or trailing spaces, which no client shows and nobody types
/// on purpose.
const TOPIC_CHARACTERS_RULE: &str =
    r"!self.matches('\\p{Cc}') && !self.startsWith(' ') && !self.endsWith(' ')";
const TOPIC_CHARACTERS_MESSAGE: &str =
    "must not contain control characters (newlines, tabs) or start or end with a space";

/// A user name or password goes to the broker only over mqtts://, unless the user
/// says the plain path is trusted: over mqtt:// anyone on the way can read them.
const PLAINTEXT_CREDENTIALS_RULE: &str = "self.url.startsWith('mqtts://') || (!has(self.usernameSecretRef) && !has(self.passwordSecretRef)) || (has(self.allowPlaintextCredentials) && self.allowPlaintextCredentials)";
const PLAINTEXT_CREDENTIALS_MESSAGE: &str = "credentials over a plain mqtt:// url travel unencrypted: use an mqtts:// broker url, or set allowPlaintextCredentials: true if the broker is on a trusted LAN";

/// zigbee-herdsman detects a USB stick's type by probing it, but a coordinator
/// behind `tcp://` cannot be probed: zigbee2mqtt refuses to start without its type.
const ADAPTER_FOR_NETWORK_COORDINATOR_RULE: &str = "self.preset != 'Zigbee2MQTT' || !has(self.radio) || !has(self.radio.networkAddress) || has(self.radio.adapter)";
const ADAPTER_FOR_NETWORK_COORDINATOR_MESSAGE: &str = "zigbee2mqtt cannot detect the type of a coordinator on the network: set radio.adapter (zstack, ember, deconz, zigate, zboss, zoh or ezsp; the coordinator's manual names its chip, such as ember for an SLZB-06M)";

/// zwave-js-ui strips every character but letters, digits, '-' and '_' from its
/// client name before it uses it in topics; allowing only those keeps the watched
/// topic the one it really publishes on.
const CLIENT_NAME_RULE: &str = "self.matches('^[A-Za-z0-9_-]+$')";
const CLIENT_NAME_MESSAGE: &str =
    "must be letters, digits, '-' and '_' only, such as zwave-js-ui or zwave-attic";

const IMAGE_MESSAGE: &str =
    "must be a container image reference without spaces, such as ghcr.io/koenkk/zigbee2mqtt:2.1.3";

/// A gateway between radios or sensors and MQTT (zigbee2mqtt, zwave-js-ui, an
/// ESPHome-style hub, or any image), watched over MQTT itself.
// Each printcolumn(...) repeats keys such as `type_ = "string"`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "homelab.home.arpa",
    version = "v1alpha1",
    kind = "SensorGateway",
    namespaced,
    status = "SensorGatewayStatus",
    derive = "PartialEq",
    shortname = "sgw",
    category = "homelab",
    doc = "A gateway between radios or sensors and MQTT (zigbee2mqtt, zwave-js-ui, an ESPHome-style hub, or any image), run by the operator and watched over MQTT itself: its availability topic and its sensors' freshness.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the gateway is up and online"
    ),
    printcolumn(
        name = "Online",
        type_ = "boolean",
        json_path = ".status.online",
        description = "What the gateway's availability topic says"
    ),
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".status.node",
        description = "Node the gateway runs on"
    ),
    printcolumn(
        name = "Since",
        type_ = "date",
        json_path = ".status.since",
        description = "When online last changed"
    ),
    printcolumn(
        name = "Sensors",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="SensorsFresh")].status"#,
        description = "Whether every listed sensor reported in time"
    ),
    printcolumn(
        name = "Stale",
        type_ = "integer",
        json_path = ".status.staleSensors",
        description = "How many listed sensors went quiet for longer than their staleAfter"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = 1,
        description = "Why it is (not) ready"
    ),
    printcolumn(
        name = "Preset",
        type_ = "string",
        json_path = ".spec.preset",
        priority = 1,
        description = "Which gateway"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.preset != 'Generic' || self.external || has(self.image)").message("the Generic preset has no default image: set image (or external: true)"))]
#[x_kube(validation = Rule::new("self.preset != 'Generic' || has(self.availability.topic)").message("the Generic preset has no default availability topic: set availability.topic"))]
#[x_kube(validation = Rule::new("self.preset != 'ESPHome' || has(self.topicPrefix) || has(self.availability.topic)").message("ESPHome devices publish under their own name: set topicPrefix (such as garden-hub)"))]
#[x_kube(validation = Rule::new("!self.external || !has(self.radio) || !has(self.radio.usbDevicePin)").message("an external gateway runs outside the cluster and cannot use a UsbDevicePin"))]
#[x_kube(validation = Rule::new(ADAPTER_FOR_NETWORK_COORDINATOR_RULE).message(ADAPTER_FOR_NETWORK_COORDINATOR_MESSAGE))]
#[x_kube(validation = Rule::new("self.preset != 'ZWaveJSUI' || !has(self.radio) || !has(self.radio.adapter)").message("radio.adapter names a Zigbee coordinator's type; zwave-js-ui finds its Z-Wave controller by itself: remove adapter"))]
pub struct SensorGatewaySpec {
    /// Which gateway: Zigbee2MQTT, ZWaveJSUI, ESPHome, or Generic. The preset gives the
    /// image, the web UI port, the data path, and where and how the gateway announces
    /// that it is online (zigbee2mqtt: <topicPrefix>/bridge/state; zwave-js-ui:
    /// <topicPrefix>/_CLIENTS/ZWAVE_GATEWAY-<mqtt.clientName>/status; ESPHome:
    /// <topicPrefix>/status). zigbee2mqtt and zwave-js-ui also get their broker, credentials,
    /// base topic and radio from the spec.
    pub preset: GatewayPreset,

    /// The gateway runs outside the cluster (an ESPHome device, a hub on the LAN): the
    /// operator runs no pod and only watches it over MQTT. Failover and restarts do not
    /// apply. Defaults to false.
    #[serde(default)]
    pub external: bool,

    /// Container image, overriding the preset's, such as
    /// ghcr.io/koenkk/zigbee2mqtt:2.1.3. Required for Generic unless external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(PRINTABLE_WORD_RULE).message(IMAGE_MESSAGE))]
    pub image: Option<String>,

    /// The MQTT broker the gateway publishes to, and the operator reads from.
    pub mqtt: MqttSettings,

    /// The gateway's base topic. Defaults to the preset's (zigbee2mqtt, zwave); an
    /// ESPHome device's is its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("!self.contains('+') && !self.contains('#') && !self.startsWith('/') && !self.endsWith('/')").message("must be a topic without wildcards (+, #) and without a leading or trailing /"))]
    #[x_kube(validation = Rule::new(TOPIC_CHARACTERS_RULE).message(TOPIC_CHARACTERS_MESSAGE))]
    pub topic_prefix: Option<String>,

    /// Where and how the gateway says whether it is online, and how long it may be
    /// offline before the operator restarts it.
    #[serde(default)]
    pub availability: Availability,

    /// Sensors whose messages must not go stale (the garden moisture sensor that reports
    /// every 10 minutes). The status names those that went quiet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub sensors: Vec<Sensor>,

    /// The radio (Zigbee or Z-Wave coordinator) the gateway drives: a USB stick pinned by
    /// a UsbDevicePin, or a coordinator on the network. Unset for gateways without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio: Option<Radio>,

    /// Where the gateway keeps its state (zigbee2mqtt's configuration, network key and
    /// coordinator backup; zwave-js-ui's store). Fixed at creation. Defaults to a 1Gi
    /// claim from the default StorageClass. Ignored for external gateways.
    #[serde(default = "default_data")]
    #[x_kube(validation = Rule::new(STATE_KIND_IMMUTABLE_RULE).message(STATE_KIND_IMMUTABLE_MESSAGE))]
    #[x_kube(validation = Rule::new(STATE_CLASS_IMMUTABLE_RULE).message(STATE_CLASS_IMMUTABLE_MESSAGE))]
    #[x_kube(validation = Rule::new(STATE_HOST_PATH_IMMUTABLE_RULE).message(STATE_HOST_PATH_IMMUTABLE_MESSAGE))]
    pub data: StateVolume,

    /// The Service in front of the gateway's web UI. Defaults to a ClusterIP Service on
    /// the preset's port (zigbee2mqtt 8080, zwave-js-ui 8091, which also serves its
    /// Z-Wave JS websocket for Home Assistant on 3000); a Generic gateway without a port
    /// gets no Service.
    #[serde(default)]
    pub service: ServiceSettings,

    /// Extra environment variables for the gateway container (for example TZ).
    /// Take secrets from a Secret with valueFrom.secretKeyRef, never as a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,

    /// CPU and memory requests and limits of the gateway container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Taints the gateway's pods tolerate, as in a pod's spec: a node kept for one
    /// workload (`dedicated=zigbee:NoSchedule`), a k3s server's
    /// `CriticalAddonsOnly`. The operator adds its own NoExecute tolerations of
    /// `node.kubernetes.io/not-ready` and `unreachable` for the failover grace,
    /// unless one here already tolerates that taint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// What the operator may do when the gateway's node is lost, or when the gateway
    /// keeps failing on one node.
    #[serde(default)]
    pub failover: FailoverPolicy,
}

fn default_data() -> StateVolume {
    StateVolume::claim(DEFAULT_DATA_SIZE)
}

/// Which gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum GatewayPreset {
    /// zigbee2mqtt (Zigbee).
    #[serde(rename = "Zigbee2MQTT")]
    Zigbee2Mqtt,
    /// zwave-js-ui (Z-Wave).
    #[serde(rename = "ZWaveJSUI")]
    ZwaveJsUi,
    /// An ESPHome device or an ESPHome-style hub (`<topicPrefix>/status`).
    #[serde(rename = "ESPHome")]
    Esphome,
    /// Any image; set image and availability.topic.
    Generic,
}

/// The MQTT broker. Credentials come only from Secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.passwordSecretRef) || has(self.usernameSecretRef)").message("a password needs a username: set usernameSecretRef too"))]
#[x_kube(validation = Rule::new("!has(self.tls) || self.url.startsWith('mqtts://')").message("tls settings need an mqtts:// broker url"))]
#[x_kube(validation = Rule::new(PLAINTEXT_CREDENTIALS_RULE).message(PLAINTEXT_CREDENTIALS_MESSAGE))]
pub struct MqttSettings {
    /// Broker URL: mqtt://host:port, or mqtts://host:port for TLS, such as
    /// mqtt://mosquitto.home.svc:1883. The port defaults to 1883 (mqtt) or 8883 (mqtts).
    /// A name without a dot (mqtt://mosquitto:1883) is the Service of that name in
    /// the gateway's namespace, for the operator as for the gateway's pod, or, with
    /// no such Service, the name as written.
    #[schemars(length(min = 1, max = 270))]
    #[x_kube(validation = Rule::new(r"self.matches('^mqtts?://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?/?$')").message("must be a broker URL such as mqtt://mosquitto.home.svc:1883 or mqtts://broker.home.arpa:8883"))]
    #[x_kube(validation = Rule::new(URL_PORT_RULE).message("the broker's port must be 1 to 65535, without leading zeros, such as mqtt://mosquitto.home.svc:1883; leave it out for 1883 (mqtt) or 8883 (mqtts)"))]
    pub url: String,

    /// The gateway's MQTT client name. zwave-js-ui connects as
    /// ZWAVE_GATEWAY-<clientName> and announces itself on
    /// <topicPrefix>/_CLIENTS/ZWAVE_GATEWAY-<clientName>/status; defaults to its
    /// own default, zwave-js-ui. zigbee2mqtt takes it as its client id (random when
    /// unset); other images read it from HOMELAB_MQTT_CLIENT_NAME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(CLIENT_NAME_RULE).message(CLIENT_NAME_MESSAGE))]
    pub client_name: Option<String>,

    /// The MQTT user name, from a key of a Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeyRef>,

    /// The MQTT password, from a key of a Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// TLS settings for an mqtts:// broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<MqttTls>,

    /// Send the user name and password over a plain mqtt:// url, where anyone on the
    /// network path can read them. Only for a broker on a trusted LAN; prefer
    /// mqtts://. Defaults to false: credentials need an mqtts:// url.
    #[serde(default)]
    pub allow_plaintext_credentials: bool,
}

/// TLS to the broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MqttTls {
    /// CA certificate (PEM) that signed the broker's certificate, from a Secret. The
    /// system's trusted CAs when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,

    /// A kubernetes.io/tls Secret (tls.crt, tls.key) with a client certificate, for
    /// brokers that authenticate clients by certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message(SECRET_NAME_MESSAGE))]
    pub client_certificate_secret_name: Option<String>,
}

/// How the gateway announces that it is online.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// Topic the gateway publishes its state on, with a retained message and a Last
    /// Will. Defaults to the preset's topic under topicPrefix. Required for Generic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("!self.contains('+') && !self.contains('#')").message("must be a single topic, without the wildcards + or #"))]
    #[x_kube(validation = Rule::new(TOPIC_CHARACTERS_RULE).message(TOPIC_CHARACTERS_MESSAGE))]
    pub topic: Option<String>,

    /// Payload that means online. Defaults to the preset's (online; zigbee2mqtt 2.x's
    /// JSON {"state":"online"} is understood too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub online_payload: Option<String>,

    /// Payload that means offline. Defaults to the preset's (offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub offline_payload: Option<String>,

    /// How long the gateway may say offline while its pod looks healthy before the
    /// operator restarts the pod (Manual failover mode only reports it). Defaults
    /// to 2m.
    #[serde(default = "default_restart_after")]
    #[x_kube(validation = Rule::new(POSITIVE_DURATION_RULE).message("must be longer than 0, such as 2m: a gateway would be restarted the moment it says offline, even while it reconnects"))]
    pub restart_after: GoDuration,
}

impl Default for Availability {
    fn default() -> Self {
        Self {
            topic: None,
            online_payload: None,
            offline_payload: None,
            restart_after: default_restart_after(),
        }
    }
}

fn default_restart_after() -> GoDuration {
    GoDuration::from_static(DEFAULT_RESTART_AFTER)
}

/// A sensor whose messages must keep coming.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sensor {
    /// Name of the sensor, unique in this list (a DNS label such as tomato-bed).
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("must be a DNS label: lowercase letters, digits and '-', such as tomato-bed"))]
    pub name: String,

    /// Topic (or topic filter) the sensor publishes on, such as
    /// zigbee2mqtt/garden-moisture-1 or garden-hub/sensor/+/state.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new(TOPIC_FILTER_RULE).message(TOPIC_FILTER_MESSAGE))]
    #[x_kube(validation = Rule::new(TOPIC_NOT_ONLY_WILDCARDS_RULE).message(TOPIC_NOT_ONLY_WILDCARDS_MESSAGE))]
    #[x_kube(validation = Rule::new(TOPIC_CHARACTERS_RULE).message(TOPIC_CHARACTERS_MESSAGE))]
    pub topic: String,

    /// The sensor is stale when nothing arrived on its topic for this long, such as
    /// 10m for a sensor that reports every 5 minutes.
    #[x_kube(validation = Rule::new(POSITIVE_DURATION_RULE).message("must be longer than 0, such as 10m for a sensor that reports every 5 minutes: with 0 the sensor would always be stale"))]
    pub stale_after: GoDuration,
}

/// The gateway's radio: exactly one of usbDevicePin or networkAddress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.usbDevicePin) != has(self.networkAddress)").message("set exactly one of usbDevicePin or networkAddress"))]
pub struct Radio {
    /// A USB coordinator stick, pinned by a UsbDevicePin: the gateway runs where the
    /// stick is and finds it at the pin's containerPath, without a privileged pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usb_device_pin: Option<UsbDevicePinRef>,

    /// A coordinator on the network (an Ethernet or Wi-Fi Zigbee/Z-Wave coordinator),
    /// as tcp://host:port, such as tcp://192.168.1.40:6638. The gateway can then run on
    /// any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 270))]
    #[x_kube(validation = Rule::new(r"self.matches('^tcp://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$')").message("must be tcp://host:port, such as tcp://192.168.1.40:6638"))]
    #[x_kube(validation = Rule::new(URL_PORT_RULE).message("the coordinator's port must be 1 to 65535, without leading zeros, such as tcp://192.168.1.40:6638"))]
    pub network_address: Option<String>,

    /// The Zigbee coordinator's type, for zigbee2mqtt (its serial.adapter):
    /// zstack (Texas Instruments CC2652/CC1352), ember (Silicon Labs EFR32),
    /// deconz (ConBee, RaspBee), zigate, zboss (Nordic nRF52840), zoh (Zigbee on
    /// Host) or ezsp (the older Silicon Labs driver; zigbee2mqtt 2.x prefers ember).
    /// Required with networkAddress: a coordinator on the network cannot be
    /// probed. Optional for a USB stick, which zigbee2mqtt detects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<ZigbeeAdapter>,
}

/// The Zigbee coordinator's type, for zigbee2mqtt (its serial.adapter): zstack
/// (Texas Instruments CC2652/CC1352), ember (Silicon Labs EFR32), deconz (ConBee,
/// RaspBee), zigate, zboss (Nordic nRF52840), zoh (Zigbee on Host) or ezsp (the older
/// Silicon Labs driver; zigbee2mqtt 2.x prefers ember). Required with networkAddress
/// for zigbee2mqtt: a coordinator on the network cannot be probed. Optional for a USB
/// stick, which zigbee2mqtt detects. Not for zwave-js-ui.
// The schema shows this text for the `adapter` field: the field's own doc comment
// gives way to the type's when the schema is inlined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZigbeeAdapter {
    /// Texas Instruments Z-Stack (CC2652, CC1352, CC2531).
    Zstack,
    /// Silicon Labs EmberZNet (EFR32: SkyConnect, Sonoff ZBDongle-E, SLZB-06M).
    Ember,
    /// dresden elektronik deCONZ (ConBee, RaspBee).
    Deconz,
    /// ZiGate.
    Zigate,
    /// Nordic ZBOSS (nRF52840).
    Zboss,
    /// Zigbee on Host.
    Zoh,
    /// The older Silicon Labs EZSP driver.
    Ezsp,
}

impl ZigbeeAdapter {
    /// The name zigbee2mqtt reads in `serial.adapter`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Zstack => "zstack",
            Self::Ember => "ember",
            Self::Deconz => "deconz",
            Self::Zigate => "zigate",
            Self::Zboss => "zboss",
            Self::Zoh => "zoh",
            Self::Ezsp => "ezsp",
        }
    }
}

/// What the operator observed about a SensorGateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SensorGatewayStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (pod ready and gateway online), Reconciling, Stalled, GatewayOnline,
    /// SensorsFresh and BrokerConnected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// What the availability topic last said: true for online, false for offline
    /// (including the Last Will). Unset until the first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,

    /// When online last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,

    /// Node the gateway's pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,

    /// Name of the gateway's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,

    /// The operator's connection to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerStatus>,

    /// Freshness of each listed sensor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub sensors: Vec<SensorStatus>,

    /// How many listed sensors are stale, for `kubectl get`'s Stale column. Unset
    /// for a gateway without sensors, and while the operator cannot tell (its
    /// broker is away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_sensors: Option<i32>,

    /// The last time the operator restarted the gateway's pod because it was offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<GatewayRestart>,

    /// The last time the operator moved the gateway to another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
}

/// The operator's connection to the broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Whether the operator is connected.
    pub connected: bool,

    /// When connected last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,

    /// The last connection error, for a person (never contains credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Freshness of one sensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SensorStatus {
    /// The sensor's name, as in spec.sensors.
    pub name: String,

    /// When a message last arrived on its topic, as of the last status update (the
    /// status is not rewritten for every message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,

    /// Whether nothing arrived for longer than its staleAfter.
    pub stale: bool,
}

/// A restart of the gateway's pod by the operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRestart {
    /// When the pod was restarted.
    pub time: Time,

    /// Why, for a person.
    pub reason: String,

    /// Node the restarted pod ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,

    /// Restarts in a row on that node without the gateway coming back online.
    #[serde(default)]
    pub count: i32,

    /// The node the gateway is kept off: where it was restarted three times in a
    /// row (when it may run elsewhere). It stays avoided until three restarts in a
    /// row on another node replace it, so the gateway never moves back and forth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avoided_node: Option<String>,
}

impl_conditioned_status!(SensorGatewayStatus);
impl_failover!(SensorGateway => SensorGatewayStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec: SensorGatewaySpec = serde_json::from_value(serde_json::json!({
            "preset": "Zigbee2MQTT",
            "mqtt": { "url": "mqtt://mosquitto:1883" },
        }))
        .unwrap();
        assert!(!spec.external);
        assert_eq!(spec.availability, Availability::default());
        assert_eq!(spec.availability.restart_after.as_str(), "2m");
        assert_eq!(spec.data, StateVolume::claim("1Gi"));
        assert_eq!(spec.failover, FailoverPolicy::default());
    }

    #[test]
    fn presets_use_the_names_people_know() {
        let names: Vec<String> = [
            GatewayPreset::Zigbee2Mqtt,
            GatewayPreset::ZwaveJsUi,
            GatewayPreset::Esphome,
            GatewayPreset::Generic,
        ]
        .iter()
        .map(|p| {
            serde_json::to_value(p)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
        assert_eq!(names, ["Zigbee2MQTT", "ZWaveJSUI", "ESPHome", "Generic"]);
    }
}
