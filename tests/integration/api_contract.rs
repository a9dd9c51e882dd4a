//! The API contract, proven on the real API server: the CRDs from `crds/` install;
//! every example in `deploy/examples/` applies with server-side apply and reads back
//! unchanged (the API server's defaults are exactly the Rust types' defaults); bad
//! input is refused with a message a person can act on; node agents' presence entries
//! merge instead of overwriting each other.

// Test helpers panic on purpose: a panic is how a test reports a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use homelab_api::{API_VERSION, EtcdBackup, MediaServer, SensorGateway, UsbDevicePin};
use homelab_test_support::{TestNamespace, workspace_root};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The field manager of every write in these tests.
const MANAGER: &str = homelab_test_support::TEST_MANAGER;

fn apply_params() -> PatchParams {
    // Strict: an unknown field is an error, not silently pruned.
    PatchParams::apply(MANAGER).validation_strict()
}

fn api_resource(kind: &str) -> Option<ApiResource> {
    match kind {
        "MediaServer" => Some(MediaServer::api_resource()),
        "SensorGateway" => Some(SensorGateway::api_resource()),
        "UsbDevicePin" => Some(UsbDevicePin::api_resource()),
        "EtcdBackup" => Some(EtcdBackup::api_resource()),
        _ => None,
    }
}

fn dynamic_api(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let resource = api_resource(kind).unwrap_or_else(|| panic!("unknown kind {kind}"));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

async fn apply(api: &Api<DynamicObject>, object: &Value) -> Result<DynamicObject, kube::Error> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(name, &apply_params(), &Patch::Apply(object))
        .await
}

/// Creates with a plain POST and strict field validation (what `kubectl create` and
/// client-side `kubectl apply` send). Used where server-side apply answers malformed
/// input with a 500 "failed to create typed patch object" instead of a validation
/// error: unknown fields and duplicate set entries.
async fn create_strict(
    client: &Client,
    namespace: &str,
    object: &Value,
) -> Result<DynamicObject, kube::Error> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = api_resource(kind).unwrap_or_else(|| panic!("unknown kind {kind}"));
    let url = format!(
        "/apis/{}/namespaces/{namespace}/{}",
        resource.api_version, resource.plural
    );
    let params = PostParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PostParams::default()
    };
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let mut request = kube::core::Request::new(url)
        .create(&params, body)
        .map_err(kube::Error::BuildRequest)?;
    let uri = format!("{}&fieldValidation=Strict", request.uri());
    *request.uri_mut() = uri.parse().unwrap();
    client.request::<DynamicObject>(request).await
}

// ---------------------------------------------------------------------------------
// (a) Every example applies and reads back unchanged.

fn examples() -> Vec<(String, Value)> {
    let dir: PathBuf = workspace_root().join("deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_saphyr::from_str(&text).unwrap())
        })
        .collect()
}

/// Paths where `original` is not in `returned` with the same value.
fn lost_or_changed(path: &str, original: &Value, returned: &Value, out: &mut Vec<String>) {
    match (original, returned) {
        (Value::Object(o), Value::Object(r)) => {
            for (key, value) in o {
                match r.get(key) {
                    Some(other) => lost_or_changed(&format!("{path}.{key}"), value, other, out),
                    None => out.push(format!("{path}.{key} is gone")),
                }
            }
        }
        (Value::Array(o), Value::Array(r)) if o.len() == r.len() => {
            for (i, (a, b)) in o.iter().zip(r).enumerate() {
                lost_or_changed(&format!("{path}[{i}]"), a, b, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} came back as {b}")),
    }
}

/// The spec as the Rust type sees it, serialized: the file's fields plus the Rust
/// defaults.
fn typed_spec<K: DeserializeOwned + Serialize>(object: &Value) -> Result<Value, String> {
    let typed: K = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let value = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    Ok(value["spec"].clone())
}

#[tokio::test]
async fn every_example_applies_and_reads_back_unchanged() {
    let ns = TestNamespace::with_crds("examples").await.unwrap();
    let client = ns.client().clone();

    let mut problems = Vec::new();
    for (file, object) in examples() {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let api = dynamic_api(&client, ns.name(), &kind);
        let applied = match apply(&api, &object).await {
            Ok(applied) => applied,
            Err(error) => {
                problems.push(format!("{file}: refused: {error}"));
                continue;
            }
        };
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let read = api.get(name).await.unwrap();
        let returned_spec = read.data["spec"].clone();

        // Nothing in the file was dropped, pruned or rewritten.
        let mut diffs = Vec::new();
        lost_or_changed(".spec", &object["spec"], &returned_spec, &mut diffs);

        // What the API server defaulted is exactly what the Rust types default.
        let expected_spec = match kind.as_str() {
            "MediaServer" => typed_spec::<MediaServer>(&object),
            "SensorGateway" => typed_spec::<SensorGateway>(&object),
            "UsbDevicePin" => typed_spec::<UsbDevicePin>(&object),
            "EtcdBackup" => typed_spec::<EtcdBackup>(&object),
            other => Err(format!("unknown kind {other}")),
        };
        match expected_spec {
            Ok(expected) if expected == returned_spec => {}
            Ok(expected) => diffs.push(format!(
                "server defaults differ from Rust defaults:\n  rust:   {expected}\n  server: {returned_spec}"
            )),
            Err(error) => diffs.push(format!("does not parse into its type: {error}")),
        }

        // Applying the same file again is a no-op: no write, no new generation (what
        // Flux and Argo CD do every few minutes).
        match apply(&api, &object).await {
            Ok(again) if again.metadata.resource_version == applied.metadata.resource_version => {}
            Ok(again) => diffs.push(format!(
                "re-applying wrote again: resourceVersion {:?} -> {:?}",
                applied.metadata.resource_version, again.metadata.resource_version
            )),
            Err(error) => diffs.push(format!("re-applying was refused: {error}")),
        }

        eprintln!("{file}: applied {kind}/{name}, {} problem(s)", diffs.len());
        problems.extend(diffs.into_iter().map(|d| format!("{file}: {d}")));
    }
    assert!(problems.is_empty(), "examples:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------
// (b) Bad input is refused by the API server, with a message for a person.

/// RFC 7386 merge patch: objects merge, `null` removes, anything else replaces.
fn merge(base: Value, patch: Value) -> Value {
    match (base, patch) {
        (Value::Object(mut base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(&key);
                } else {
                    let current = base.remove(&key).unwrap_or(Value::Null);
                    base.insert(key, merge(current, value));
                }
            }
            Value::Object(base)
        }
        (_, patch) => patch,
    }
}

fn object(kind: &str, spec: Value) -> Value {
    json!({ "apiVersion": API_VERSION, "kind": kind, "metadata": {}, "spec": spec })
}

/// A valid UsbDevicePin, changed by `patch`.
fn pin(patch: Value) -> Value {
    merge(
        object(
            "UsbDevicePin",
            json!({ "vendorId": "10c4", "productId": "ea60" }),
        ),
        patch,
    )
}

/// A valid SensorGateway, changed by `patch`.
fn gateway(patch: Value) -> Value {
    merge(
        object(
            "SensorGateway",
            json!({ "preset": "Zigbee2MQTT", "mqtt": { "url": "mqtt://mosquitto:1883" } }),
        ),
        patch,
    )
}

/// A valid MediaServer, changed by `patch`.
fn media(patch: Value) -> Value {
    merge(
        object(
            "MediaServer",
            json!({ "preset": "Jellyfin", "config": { "volumeClaim": { "size": "10Gi" } } }),
        ),
        patch,
    )
}

/// A valid EtcdBackup, changed by `patch`.
fn backup(patch: Value) -> Value {
    merge(
        object(
            "EtcdBackup",
            json!({
                "schedule": "0 * * * *",
                "source": { "distribution": "K3s" },
                "destination": { "pvc": { "claimName": "etcd-backups" } },
            }),
        ),
        patch,
    )
}

fn spec(spec: Value) -> Value {
    json!({ "spec": spec })
}

/// How an invalid object is sent.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// Server-side apply, as GitOps tools and `kubectl apply --server-side` do.
    Apply,
    /// A POST with strict field validation, as `kubectl create` does.
    Create,
}

/// One invalid object and how the API server must refuse it.
struct Refusal {
    /// What is wrong, for the report.
    what: &'static str,
    /// A valid object applied first (for immutable fields), or none.
    before: Option<Value>,
    /// The object that must be refused.
    object: Value,
    /// How it is sent.
    via: Via,
    /// HTTP status: 422 Invalid for schema and CEL errors; strict field validation
    /// refuses unknown fields (inline credentials) with 400 BadRequest.
    code: u16,
    /// A fragment the message must contain.
    fragment: &'static str,
}

/// Refused when applied: 422 Invalid.
fn invalid(what: &'static str, object: Value, fragment: &'static str) -> Refusal {
    Refusal {
        what,
        before: None,
        object,
        via: Via::Apply,
        code: 422,
        fragment,
    }
}

/// Refused when created: 422 Invalid.
fn invalid_created(what: &'static str, object: Value, fragment: &'static str) -> Refusal {
    Refusal {
        what,
        before: None,
        object,
        via: Via::Create,
        code: 422,
        fragment,
    }
}

/// `before` applies; changing it to `after` is refused: 422 Invalid.
fn invalid_change(
    what: &'static str,
    before: Value,
    after: Value,
    fragment: &'static str,
) -> Refusal {
    Refusal {
        what,
        before: Some(before),
        object: after,
        via: Via::Apply,
        code: 422,
        fragment,
    }
}

/// A field the schema does not have (an inline credential): strict field validation
/// refuses it with 400 BadRequest instead of silently dropping it.
fn unknown_field(what: &'static str, object: Value, fragment: &'static str) -> Refusal {
    Refusal {
        what,
        before: None,
        object,
        via: Via::Create,
        code: 400,
        fragment,
    }
}

fn refusals() -> Vec<Refusal> {
    const HEX: &str = "must be exactly four hexadecimal digits";
    const DURATION: &str = "must be a duration such as 30s, 10m or 1h30m";
    const PIN_IMMUTABLE: &str = "consumers would silently follow a different device";
    let mut cases = vec![
        // UsbDevicePin
        invalid(
            "vendor id written with 0x",
            pin(spec(json!({ "vendorId": "0x10c4" }))),
            HEX,
        ),
        invalid(
            "product id with three digits",
            pin(spec(json!({ "productId": "ea6" }))),
            HEX,
        ),
        invalid(
            "product id that is not hex",
            pin(spec(json!({ "productId": "zz60" }))),
            HEX,
        ),
        invalid(
            "container path outside /dev",
            pin(spec(json!({ "containerPath": "/tmp/zigbee" }))),
            "must be a path under /dev",
        ),
        invalid(
            "pin name too long for an extended resource",
            pin(
                json!({ "metadata": { "name": "a-very-long-usb-device-pin-name-that-cannot-be-an-extended-resource" } }),
            ),
            "must be at most 63 characters",
        ),
        invalid_change(
            "vendor id changed",
            pin(json!({})),
            pin(spec(json!({ "vendorId": "1a86" }))),
            PIN_IMMUTABLE,
        ),
        invalid_change(
            "serial added later",
            pin(json!({})),
            pin(spec(json!({ "serial": "c0e8eeaaf4c9" }))),
            "serial cannot be added or removed",
        ),
        invalid(
            "unknown failover mode",
            pin(spec(json!({ "failover": { "mode": "Sometimes" } }))),
            "supported values: \"Automatic\", \"Manual\", \"Disabled\"",
        ),
        invalid(
            "grace without a unit",
            pin(spec(json!({ "failover": { "unreachableAfter": "30" } }))),
            DURATION,
        ),
        invalid(
            "grace shorter than a heartbeat",
            pin(spec(json!({ "failover": { "unreachableAfter": "5s" } }))),
            "unreachableAfter must be at least 10s",
        ),
        invalid(
            "preferred node that is not allowed",
            pin(spec(
                json!({ "failover": { "allowedNodes": ["pi4-1"], "preferredNodes": ["pi4-2"] } }),
            )),
            "every node in preferredNodes must also be in allowedNodes",
        ),
        invalid_created(
            "the same node twice",
            pin(spec(
                json!({ "failover": { "preferredNodes": ["pi4-1", "pi4-1"] } }),
            )),
            "Duplicate value: \"pi4-1\"",
        ),
        invalid(
            "unknown access mode",
            pin(spec(json!({ "access": "Privileged" }))),
            "supported values: \"DevicePlugin\", \"PrivilegedHostPath\"",
        ),
        // SensorGateway
        invalid(
            "radio both a USB pin and a network coordinator",
            gateway(spec(
                json!({ "radio": { "usbDevicePin": { "name": "sonoff-zigbee" }, "networkAddress": "tcp://192.168.1.40:6638" } }),
            )),
            "set exactly one of usbDevicePin or networkAddress",
        ),
        invalid(
            "radio with neither",
            gateway(spec(json!({ "radio": {} }))),
            "set exactly one of usbDevicePin or networkAddress",
        ),
        invalid(
            "coordinator address without tcp://",
            gateway(spec(
                json!({ "radio": { "networkAddress": "192.168.1.40:6638" } }),
            )),
            "must be tcp://host:port",
        ),
        invalid(
            "broker URL with http://",
            gateway(spec(json!({ "mqtt": { "url": "http://mosquitto:1883" } }))),
            "must be a broker URL such as mqtt://",
        ),
        unknown_field(
            "inline MQTT password",
            gateway(spec(json!({ "mqtt": { "password": "hunter2" } }))),
            "unknown field \"spec.mqtt.password\"",
        ),
        invalid(
            "password without a user name",
            gateway(spec(
                json!({ "mqtt": { "passwordSecretRef": { "name": "mqtt", "key": "password" } } }),
            )),
            "a password needs a username",
        ),
        invalid(
            "Secret reference without a key",
            gateway(spec(
                json!({ "mqtt": { "usernameSecretRef": { "name": "mqtt" } } }),
            )),
            "Required value",
        ),
        invalid(
            "TLS settings on a plain mqtt:// broker",
            gateway(spec(json!({ "mqtt": { "tls": {} } }))),
            "tls settings need an mqtts:// broker url",
        ),
        invalid(
            "preset in the wrong case",
            gateway(spec(json!({ "preset": "zigbee2mqtt" }))),
            "supported values: \"Zigbee2MQTT\"",
        ),
        invalid(
            "Generic preset without an image",
            gateway(spec(
                json!({ "preset": "Generic", "availability": { "topic": "bridge/status" } }),
            )),
            "the Generic preset has no default image",
        ),
        invalid(
            "ESPHome without a topic prefix",
            gateway(spec(json!({ "preset": "ESPHome", "external": true }))),
            "ESPHome devices publish under their own name",
        ),
        invalid(
            "sensor staleness in words",
            gateway(spec(
                json!({ "sensors": [{ "name": "tomato-bed", "topic": "garden/tomato", "staleAfter": "10 minutes" }] }),
            )),
            DURATION,
        ),
        invalid(
            "sensor topic with # in the middle",
            gateway(spec(
                json!({ "sensors": [{ "name": "tomato-bed", "topic": "garden/#/moisture", "staleAfter": "10m" }] }),
            )),
            "must be an MQTT topic filter",
        ),
        invalid(
            "sensor name that is not a DNS label",
            gateway(spec(
                json!({ "sensors": [{ "name": "Tomato Bed", "topic": "garden/tomato", "staleAfter": "10m" }] }),
            )),
            "must be a DNS label",
        ),
        invalid(
            "availability topic with a wildcard",
            gateway(spec(
                json!({ "availability": { "topic": "zigbee2mqtt/+/state" } }),
            )),
            "must be a single topic",
        ),
        invalid(
            "external gateway with a USB pin",
            gateway(spec(
                json!({ "external": true, "radio": { "usbDevicePin": { "name": "sonoff-zigbee" } } }),
            )),
            "an external gateway runs outside the cluster",
        ),
        invalid_change(
            "gateway data moved from a claim to a host path",
            gateway(spec(
                json!({ "data": { "volumeClaim": { "size": "1Gi" } } }),
            )),
            gateway(spec(
                json!({ "data": { "volumeClaim": null, "hostPath": { "node": "pi4-1", "path": "/srv/z2m" } } }),
            )),
            "the kind of storage (existingClaim, volumeClaim, hostPath or nfs) cannot change",
        ),
        // MediaServer
        invalid(
            "media library from NFS and a host path at once",
            media(spec(
                json!({ "media": [{ "name": "movies", "mountPath": "/media/movies",
                "nfs": { "server": "nas.home.arpa", "path": "/volume1/movies" },
                "hostPath": { "node": "pi4-2", "path": "/mnt/movies" } }] }),
            )),
            "set exactly one media source: existingClaim, nfs or hostPath",
        ),
        invalid(
            "config with no source",
            media(spec(json!({ "config": { "volumeClaim": null } }))),
            "set exactly one of existingClaim, volumeClaim, hostPath or nfs",
        ),
        invalid(
            "claim size in words",
            media(spec(
                json!({ "config": { "volumeClaim": { "size": "ten gigs" } } }),
            )),
            "must be a size such as 500Mi or 10Gi",
        ),
        invalid(
            "config and media on host paths of different nodes",
            media(spec(json!({
                "config": { "volumeClaim": null, "hostPath": { "node": "pi4-1", "path": "/srv/jellyfin" } },
                "media": [{ "name": "movies", "mountPath": "/media", "hostPath": { "node": "pi4-2", "path": "/mnt/movies" } }],
            }))),
            "must be on the same node",
        ),
        invalid(
            "Navidrome with hardware transcoding",
            media(spec(
                json!({ "preset": "Navidrome", "transcoding": { "hardware": "IntelQuickSync" } }),
            )),
            "Navidrome transcodes audio on the CPU",
        ),
        invalid(
            "Quick Sync on ARM only",
            media(spec(
                json!({ "architectures": ["arm64"], "transcoding": { "hardware": "IntelQuickSync" } }),
            )),
            "Intel Quick Sync needs an Intel (amd64) node",
        ),
        invalid(
            "port out of range",
            media(spec(json!({ "port": 70000 }))),
            "less than or equal to 65535",
        ),
        invalid(
            "Generic server without image and port",
            media(spec(json!({ "preset": "Generic" }))),
            "the Generic preset has no default image or port",
        ),
        invalid(
            "relative media mount path",
            media(spec(
                json!({ "media": [{ "name": "movies", "mountPath": "media/movies", "existingClaim": "movies" }] }),
            )),
            "must be an absolute path",
        ),
        invalid(
            "unknown Service type",
            media(spec(json!({ "service": { "type": "Ingress" } }))),
            "supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\"",
        ),
        invalid_change(
            "config moved from a claim to a host path",
            media(json!({})),
            media(spec(
                json!({ "config": { "volumeClaim": null, "hostPath": { "node": "n100-1", "path": "/srv/jellyfin" } } }),
            )),
            "the kind of storage (existingClaim, volumeClaim, hostPath or nfs) cannot change",
        ),
        invalid_change(
            "config claim given a new StorageClass",
            media(json!({})),
            media(spec(
                json!({ "config": { "volumeClaim": { "storageClassName": "longhorn" } } }),
            )),
            "storageClassName cannot change after creation",
        ),
        // EtcdBackup
        invalid(
            "two destinations",
            backup(spec(
                json!({ "destination": { "s3": { "bucket": "homelab-backups",
                "accessKeyIdSecretRef": { "name": "s3", "key": "id" },
                "secretAccessKeySecretRef": { "name": "s3", "key": "secret" } } } }),
            )),
            "set exactly one destination: pvc, hostPath or s3",
        ),
        invalid(
            "no destination",
            backup(spec(json!({ "destination": { "pvc": null } }))),
            "set exactly one destination: pvc, hostPath or s3",
        ),
        invalid(
            "cron schedule with four fields",
            backup(spec(json!({ "schedule": "0 * * *" }))),
            "must be a cron schedule with five fields",
        ),
        invalid(
            "schedule in words",
            backup(spec(json!({ "schedule": "every hour" }))),
            "must be a cron schedule with five fields",
        ),
        invalid(
            "retention of zero",
            backup(spec(json!({ "retention": { "keepLast": 0 } }))),
            "must keep at least 1 backup",
        ),
        unknown_field(
            "inline S3 secret key",
            backup(spec(
                json!({ "destination": { "pvc": null, "s3": { "bucket": "homelab-backups",
                "accessKeyIdSecretRef": { "name": "s3", "key": "id" },
                "secretAccessKeySecretRef": { "name": "s3", "key": "secret" },
                "secretAccessKey": "wJalrXUtnFEMI/K7MDENG" } } }),
            )),
            "unknown field \"spec.destination.s3.secretAccessKey\"",
        ),
        invalid(
            "S3 without its secret key reference",
            backup(spec(
                json!({ "destination": { "pvc": null, "s3": { "bucket": "homelab-backups",
                "accessKeyIdSecretRef": { "name": "s3", "key": "id" } } } }),
            )),
            "Required value",
        ),
        invalid_change(
            "destination changed from a claim to S3",
            backup(json!({})),
            backup(spec(
                json!({ "destination": { "pvc": null, "s3": { "bucket": "homelab-backups",
                "accessKeyIdSecretRef": { "name": "s3", "key": "id" },
                "secretAccessKeySecretRef": { "name": "s3", "key": "secret" } } } }),
            )),
            "the kind of destination (pvc, hostPath or s3) cannot change",
        ),
        invalid(
            "SQLite on kubeadm",
            backup(spec(
                json!({ "source": { "distribution": "Kubeadm", "datastore": "SQLite" } }),
            )),
            "the SQLite datastore exists only on k3s",
        ),
        invalid(
            "Talos without a client certificate Secret",
            backup(spec(json!({ "source": { "distribution": "Talos" } }))),
            "Talos keeps etcd's certificates out of reach of pods",
        ),
        invalid(
            "Custom distribution without endpoints",
            backup(spec(json!({ "source": { "distribution": "Custom" } }))),
            "a Custom distribution has no known etcd endpoints",
        ),
        invalid(
            "etcd endpoint without a scheme",
            backup(spec(
                json!({ "source": { "endpoints": ["10.0.0.10:2379"] } }),
            )),
            "each endpoint must be a URL without a path",
        ),
        invalid(
            "staleness in words",
            backup(spec(json!({ "staleAfter": "3 hours" }))),
            DURATION,
        ),
        invalid(
            "bucket name with capitals",
            backup(spec(
                json!({ "destination": { "pvc": null, "s3": { "bucket": "Homelab_Backups",
                "accessKeyIdSecretRef": { "name": "s3", "key": "id" },
                "secretAccessKeySecretRef": { "name": "s3", "key": "secret" } } } }),
            )),
            "must be an S3 bucket name",
        ),
        invalid(
            "time zone with a space",
            backup(spec(json!({ "timeZone": "Europe Berlin" }))),
            "must be an IANA time zone name",
        ),
    ];
    cases.extend(pin_format_refusals());
    cases.extend(gateway_format_refusals());
    cases.extend(media_format_refusals());
    cases.extend(backup_format_refusals());
    cases
}

// What can be checked without looking at the cluster is refused at admission: names
// and paths that are not names and paths, ports that are not ports, zero durations,
// control characters, out-of-range cron fields, credentials in clear text.

const NODE_NAME: &str = "must be a node name as `kubectl get nodes` shows it";
const SECRET_NAME: &str = "must be the name of a Secret in the same namespace";
const CLAIM_NAME: &str = "must be the name of a PersistentVolumeClaim";
const CLEAN_PATH: &str = "must be an absolute path without . or .. segments or control characters";
const NOT_ZERO: &str = "must be longer than 0";
const CONTROL: &str = "must not contain control characters";
const CRON_RANGE: &str = "each field of the schedule must be within its range";
const PLAINTEXT: &str = "credentials over a plain mqtt:// url travel unencrypted: use an mqtts:// broker url, or set allowPlaintextCredentials: true";

/// An S3 destination (replacing the claim), changed by `patch`.
fn s3(patch: Value) -> Value {
    backup(spec(
        json!({ "destination": { "pvc": null, "s3": merge(json!({
        "bucket": "homelab-backups",
        "accessKeyIdSecretRef": { "name": "s3", "key": "id" },
        "secretAccessKeySecretRef": { "name": "s3", "key": "secret" },
    }), patch) } }),
    ))
}

/// MQTT settings with a user name and password from the Secret `mqtt`, changed by
/// `patch`.
fn credentials(patch: Value) -> Value {
    gateway(spec(json!({ "mqtt": merge(json!({
        "usernameSecretRef": { "name": "mqtt", "key": "username" },
        "passwordSecretRef": { "name": "mqtt", "key": "password" },
    }), patch) })))
}

fn pin_format_refusals() -> Vec<Refusal> {
    const DEV_PATH: &str = "must be a path under /dev";
    const SERIAL: &str = "must be the device's USB serial number";
    let mut cases: Vec<Refusal> = [
        ("container path climbing out of /dev", "/dev/../etc/shadow"),
        ("container path ending in ..", "/dev/serial/.."),
        ("container path with a . segment", "/dev/./zigbee"),
        ("container path with //", "/dev//zigbee"),
        ("container path with a trailing /", "/dev/zigbee/"),
        ("container path that is /dev itself", "/dev/"),
        ("container path with a newline", "/dev/zig\nbee"),
    ]
    .into_iter()
    .map(|(what, path)| invalid(what, pin(spec(json!({ "containerPath": path }))), DEV_PATH))
    .collect();
    cases.extend([
        invalid(
            "serial with a space",
            pin(spec(json!({ "serial": "c0e8 eeaa" }))),
            SERIAL,
        ),
        invalid(
            "serial with a newline",
            pin(spec(json!({ "serial": "c0e8eeaa\n" }))),
            SERIAL,
        ),
        invalid_created(
            "serial with a DEL character",
            pin(spec(json!({ "serial": "c0e8\u{7f}eeaa" }))),
            SERIAL,
        ),
        invalid(
            "preferred node in capitals",
            pin(spec(json!({ "failover": { "preferredNodes": ["Pi4-1"] } }))),
            NODE_NAME,
        ),
        invalid(
            "allowed node with an underscore",
            pin(spec(json!({ "failover": { "allowedNodes": ["pi4_1"] } }))),
            NODE_NAME,
        ),
        invalid(
            "allowed node ending in a dot",
            pin(spec(
                json!({ "failover": { "allowedNodes": ["pi4-1", "pi4-2."] } }),
            )),
            NODE_NAME,
        ),
        invalid(
            "preferred node with a newline",
            pin(spec(
                json!({ "failover": { "preferredNodes": ["pi4-1\n"] } }),
            )),
            NODE_NAME,
        ),
        invalid(
            "node name longer than 253",
            pin(spec(
                json!({ "failover": { "preferredNodes": ["a".repeat(254)] } }),
            )),
            "Too long",
        ),
        invalid(
            "grace of zero",
            pin(spec(json!({ "failover": { "unreachableAfter": "0s" } }))),
            "unreachableAfter must be at least 10s",
        ),
    ]);
    cases
}

fn gateway_format_refusals() -> Vec<Refusal> {
    const BROKER_PORT: &str = "the broker's port must be 1 to 65535";
    const RADIO_PORT: &str = "the coordinator's port must be 1 to 65535";
    const ONLY_WILDCARDS: &str = "must name at least one topic level";
    const IMAGE: &str = "must be a container image reference without spaces";
    let sensor = |topic: &str, stale_after: &str| {
        gateway(spec(json!({ "sensors": [
            { "name": "tomato-bed", "topic": topic, "staleAfter": stale_after },
        ] })))
    };
    vec![
        invalid(
            "broker port 0",
            gateway(spec(json!({ "mqtt": { "url": "mqtt://mosquitto:0" } }))),
            BROKER_PORT,
        ),
        invalid(
            "broker port 65536",
            gateway(spec(json!({ "mqtt": { "url": "mqtt://mosquitto:65536" } }))),
            BROKER_PORT,
        ),
        invalid(
            "broker port 99999 on IPv6",
            gateway(spec(
                json!({ "mqtt": { "url": "mqtts://[fd00::1]:99999" } }),
            )),
            BROKER_PORT,
        ),
        invalid(
            "broker port with a leading zero",
            gateway(spec(json!({ "mqtt": { "url": "mqtt://mosquitto:01883" } }))),
            BROKER_PORT,
        ),
        invalid(
            "coordinator port 0",
            gateway(spec(
                json!({ "radio": { "networkAddress": "tcp://192.168.1.40:0" } }),
            )),
            RADIO_PORT,
        ),
        invalid(
            "coordinator port 65536 on IPv6",
            gateway(spec(
                json!({ "radio": { "networkAddress": "tcp://[fd00::40]:65536" } }),
            )),
            RADIO_PORT,
        ),
        invalid("sensor topic #", sensor("#", "10m"), ONLY_WILDCARDS),
        invalid("sensor topic +/#", sensor("+/#", "10m"), ONLY_WILDCARDS),
        invalid("sensor topic +/+", sensor("+/+", "10m"), ONLY_WILDCARDS),
        invalid("sensor topic /#", sensor("/#", "10m"), ONLY_WILDCARDS),
        invalid(
            "sensor topic with a newline",
            sensor("garden/tomato\n", "10m"),
            CONTROL,
        ),
        invalid(
            "sensor topic with a tab",
            sensor("garden/\ttomato", "10m"),
            CONTROL,
        ),
        invalid(
            "sensor topic with a trailing space",
            sensor("garden/tomato ", "10m"),
            CONTROL,
        ),
        invalid(
            "sensor stale after 0",
            sensor("garden/tomato", "0"),
            NOT_ZERO,
        ),
        invalid(
            "sensor stale after 0s",
            sensor("garden/tomato", "0s"),
            NOT_ZERO,
        ),
        invalid(
            "sensor stale after 0h0m0.0s",
            sensor("garden/tomato", "0h0m0.0s"),
            NOT_ZERO,
        ),
        invalid(
            "restart after 0s",
            gateway(spec(json!({ "availability": { "restartAfter": "0s" } }))),
            NOT_ZERO,
        ),
        invalid(
            "availability topic with a newline",
            gateway(spec(
                json!({ "availability": { "topic": "zigbee2mqtt/bridge/state\n" } }),
            )),
            CONTROL,
        ),
        invalid(
            "topic prefix with a newline",
            gateway(spec(json!({ "topicPrefix": "zigbee\n2mqtt" }))),
            CONTROL,
        ),
        invalid(
            "user name and password over plain mqtt://",
            credentials(json!({})),
            PLAINTEXT,
        ),
        invalid(
            "user name alone over plain mqtt://",
            gateway(spec(
                json!({ "mqtt": { "usernameSecretRef": { "name": "mqtt", "key": "username" } } }),
            )),
            PLAINTEXT,
        ),
        invalid(
            "plain mqtt:// credentials with allowPlaintextCredentials false",
            credentials(json!({ "allowPlaintextCredentials": false })),
            PLAINTEXT,
        ),
        invalid(
            "Secret name with capitals and an underscore",
            credentials(json!({ "allowPlaintextCredentials": true,
                "usernameSecretRef": { "name": "MQTT_Credentials", "key": "username" } })),
            SECRET_NAME,
        ),
        invalid(
            "Secret key with a space",
            credentials(json!({ "allowPlaintextCredentials": true,
                "passwordSecretRef": { "name": "mqtt", "key": "pass word" } })),
            "must be a key of the Secret",
        ),
        invalid(
            "Secret key ..",
            credentials(json!({ "allowPlaintextCredentials": true,
                "passwordSecretRef": { "name": "mqtt", "key": ".." } })),
            "must be a key of the Secret",
        ),
        invalid(
            "client certificate Secret name with a space",
            gateway(spec(
                json!({ "mqtt": { "url": "mqtts://broker.home.arpa:8883",
                "tls": { "clientCertificateSecretName": "mqtt client" } } }),
            )),
            SECRET_NAME,
        ),
        invalid(
            "UsbDevicePin reference in capitals",
            gateway(spec(
                json!({ "radio": { "usbDevicePin": { "name": "Sonoff-Zigbee" } } }),
            )),
            "must be the name of a UsbDevicePin",
        ),
        invalid(
            "image with a space",
            gateway(spec(
                json!({ "image": "ghcr.io/koenkk/zigbee2mqtt: 2.1.3" }),
            )),
            IMAGE,
        ),
        invalid(
            "image with a newline",
            gateway(spec(json!({ "image": "ghcr.io/koenkk/zigbee2mqtt\n" }))),
            IMAGE,
        ),
        invalid(
            "gateway data on a node in capitals",
            gateway(spec(
                json!({ "data": { "volumeClaim": null, "hostPath": { "node": "PI4-1", "path": "/srv/z2m" } } }),
            )),
            NODE_NAME,
        ),
        invalid(
            "gateway data in a directory climbing out",
            gateway(spec(
                json!({ "data": { "volumeClaim": null, "hostPath": { "node": "pi4-1", "path": "/srv/../etc" } } }),
            )),
            CLEAN_PATH,
        ),
        invalid(
            "gateway data claim with a space",
            gateway(spec(
                json!({ "data": { "volumeClaim": null, "existingClaim": "z2m data" } }),
            )),
            CLAIM_NAME,
        ),
        invalid(
            "gateway preferred node with a space",
            gateway(spec(json!({ "failover": { "preferredNodes": ["pi4 1"] } }))),
            NODE_NAME,
        ),
        invalid(
            "zigbee2mqtt on a network coordinator without its adapter type",
            gateway(spec(
                json!({ "radio": { "networkAddress": "tcp://192.168.1.40:6638" } }),
            )),
            "zigbee2mqtt cannot detect the type of a coordinator on the network: set radio.adapter",
        ),
        invalid(
            "an adapter type zigbee2mqtt does not know",
            gateway(spec(
                json!({ "radio": { "networkAddress": "tcp://192.168.1.40:6638", "adapter": "cc2652" } }),
            )),
            "supported values: \"zstack\", \"ember\"",
        ),
        invalid(
            "a Zigbee adapter type for zwave-js-ui",
            gateway(spec(
                json!({ "preset": "ZWaveJSUI", "radio": { "networkAddress": "tcp://192.168.1.41:4001", "adapter": "zstack" } }),
            )),
            "zwave-js-ui finds its Z-Wave controller by itself",
        ),
        invalid(
            "an MQTT client name with a dot",
            gateway(spec(
                json!({ "preset": "ZWaveJSUI", "mqtt": { "url": "mqtt://mosquitto:1883", "clientName": "zwave.attic" } }),
            )),
            "must be letters, digits, '-' and '_' only",
        ),
        invalid(
            "an empty MQTT client name",
            gateway(spec(
                json!({ "preset": "ZWaveJSUI", "mqtt": { "url": "mqtt://mosquitto:1883", "clientName": "" } }),
            )),
            "spec.mqtt.clientName",
        ),
    ]
}

fn media_format_refusals() -> Vec<Refusal> {
    const RENDER_GROUP: &str = "must be the group id that owns /dev/dri/renderD128";
    vec![
        invalid(
            "config on a node with an underscore",
            media(spec(
                json!({ "config": { "volumeClaim": null, "hostPath": { "node": "pi4_2", "path": "/srv/jellyfin" } } }),
            )),
            NODE_NAME,
        ),
        invalid(
            "media on a host path climbing out",
            media(spec(
                json!({ "media": [{ "name": "movies", "mountPath": "/media", "hostPath": { "node": "pi4-2", "path": "/mnt/movies/../../etc" } }] }),
            )),
            CLEAN_PATH,
        ),
        invalid(
            "mount path with ..",
            media(spec(
                json!({ "media": [{ "name": "movies", "mountPath": "/media/../etc", "existingClaim": "movies" }] }),
            )),
            CLEAN_PATH,
        ),
        invalid(
            "mount path with a newline",
            media(spec(
                json!({ "media": [{ "name": "movies", "mountPath": "/media/movies\n", "existingClaim": "movies" }] }),
            )),
            CLEAN_PATH,
        ),
        invalid(
            "NFS server with a space",
            media(spec(
                json!({ "media": [{ "name": "movies", "mountPath": "/media", "nfs": { "server": "nas home", "path": "/volume1/movies" } }] }),
            )),
            "must be a host name or IP address",
        ),
        invalid(
            "NFS export ending in ..",
            media(spec(
                json!({ "media": [{ "name": "movies", "mountPath": "/media", "nfs": { "server": "nas.home.arpa", "path": "/volume1/.." } }] }),
            )),
            CLEAN_PATH,
        ),
        invalid(
            "media claim with an exclamation mark",
            media(spec(
                json!({ "media": [{ "name": "movies", "mountPath": "/media", "existingClaim": "movies!" }] }),
            )),
            CLAIM_NAME,
        ),
        invalid(
            "config claim in capitals",
            media(spec(
                json!({ "config": { "volumeClaim": null, "existingClaim": "Jellyfin-Config" } }),
            )),
            CLAIM_NAME,
        ),
        invalid(
            "StorageClass with a space",
            media(spec(
                json!({ "config": { "volumeClaim": { "storageClassName": "longhorn ssd" } } }),
            )),
            "must be the name of a StorageClass",
        ),
        invalid(
            "render group 0 (root)",
            media(spec(
                json!({ "transcoding": { "hardware": "IntelQuickSync", "renderGroupId": 0 } }),
            )),
            RENDER_GROUP,
        ),
        invalid(
            "negative render group",
            media(spec(
                json!({ "transcoding": { "hardware": "Nvidia", "renderGroupId": -1 } }),
            )),
            RENDER_GROUP,
        ),
        invalid(
            "server port 0",
            media(spec(json!({ "port": 0 }))),
            "greater than or equal to 1",
        ),
        invalid(
            "Service port 0",
            media(spec(json!({ "service": { "port": 0 } }))),
            "greater than or equal to 1",
        ),
        invalid(
            "Service port 65536",
            media(spec(json!({ "service": { "port": 65536 } }))),
            "less than or equal to 65535",
        ),
        invalid(
            "image with a tab",
            media(spec(
                json!({ "image": "docker.io/jellyfin/jellyfin:\t10.10.7" }),
            )),
            "must be a container image reference without spaces",
        ),
        invalid(
            "allowed node with a colon",
            media(spec(
                json!({ "failover": { "allowedNodes": ["n100-1:6443"] } }),
            )),
            NODE_NAME,
        ),
    ]
}

fn backup_format_refusals() -> Vec<Refusal> {
    const ENDPOINT_PORT: &str = "each endpoint's port must be 1 to 65535";
    let mut cases: Vec<Refusal> = [
        ("minute 60", "60 * * * *"),
        ("hour 24", "0 24 * * *"),
        ("day of month 0", "0 0 0 * *"),
        ("day of month 32", "0 0 32 * *"),
        ("month 0", "0 0 1 0 *"),
        ("month 13", "0 0 1 13 *"),
        ("day of week 7, which the CronJob API refuses", "30 2 * * 7"),
        ("a weekday range ending in 7", "0 0 * * 0-7"),
        ("day of week 8", "0 0 * * 8"),
        ("a step of 0", "*/0 * * * *"),
        ("a range past the hour", "0-60 * * * *"),
        ("a month that is no month", "0 0 1 FOO *"),
        ("a day that is no day", "0 0 * * MON-FUN"),
        ("a list with one value out of range", "0,15,30,61 * * * *"),
        ("an empty list entry", "0,,30 * * * *"),
        ("a step without a range", "/5 * * * *"),
    ]
    .into_iter()
    .map(|(what, schedule)| {
        invalid(
            what,
            backup(spec(json!({ "schedule": schedule }))),
            CRON_RANGE,
        )
    })
    .collect();
    cases.extend([
        invalid(
            "stale after 0",
            backup(spec(json!({ "staleAfter": "0" }))),
            NOT_ZERO,
        ),
        invalid(
            "stale after 0m0s",
            backup(spec(json!({ "staleAfter": "0m0s" }))),
            NOT_ZERO,
        ),
        invalid(
            "etcd endpoint port 0",
            backup(spec(
                json!({ "source": { "endpoints": ["https://10.0.0.10:0"] } }),
            )),
            ENDPOINT_PORT,
        ),
        invalid(
            "etcd endpoint port 65536",
            backup(spec(
                json!({ "source": { "endpoints": ["https://10.0.0.10:2379", "https://10.0.0.11:65536"] } }),
            )),
            ENDPOINT_PORT,
        ),
        invalid(
            "etcd endpoint with a newline",
            backup(spec(
                json!({ "source": { "endpoints": ["https://10.0.0.10:2379\n"] } }),
            )),
            "each endpoint must be a URL without a path",
        ),
        invalid(
            "S3 endpoint port 0",
            s3(json!({ "endpoint": "http://minio.storage.svc:0" })),
            "the port must be 1 to 65535",
        ),
        invalid(
            "S3 endpoint port 70000 with a path",
            s3(json!({ "endpoint": "http://minio.storage.svc:70000/s3" })),
            "the port must be 1 to 65535",
        ),
        invalid(
            "S3 endpoint with a space",
            s3(json!({ "endpoint": "http://minio storage" })),
            "must be an http:// or https:// URL",
        ),
        invalid(
            "bucket with two dots in a row",
            s3(json!({ "bucket": "homelab..backups" })),
            "must be an S3 bucket name",
        ),
        invalid(
            "region with a space",
            s3(json!({ "region": "eu central" })),
            "must be a region name",
        ),
        invalid(
            "region with a newline",
            s3(json!({ "region": "us-east-1\n" })),
            "must be a region name",
        ),
        invalid(
            "prefix climbing out",
            s3(json!({ "prefix": "../other-cluster/" })),
            "must be a key prefix",
        ),
        invalid(
            "prefix with a .. segment inside",
            s3(json!({ "prefix": "homelab/../etcd/" })),
            "must be a key prefix",
        ),
        invalid(
            "prefix with a space",
            s3(json!({ "prefix": "homelab etcd/" })),
            "must be a key prefix",
        ),
        invalid(
            "S3 key Secret name with a space",
            s3(json!({ "accessKeyIdSecretRef": { "name": "s3 keys", "key": "id" } })),
            SECRET_NAME,
        ),
        invalid(
            "S3 Secret key with a newline",
            s3(json!({ "secretAccessKeySecretRef": { "name": "s3", "key": "secret\n" } })),
            "must be a key of the Secret",
        ),
        invalid(
            "backup node in capitals",
            backup(spec(
                json!({ "destination": { "pvc": null, "hostPath": { "path": "/var/backups/etcd", "node": "CP-1" } } }),
            )),
            NODE_NAME,
        ),
        invalid(
            "backup directory climbing out",
            backup(spec(
                json!({ "destination": { "pvc": null, "hostPath": { "path": "/var/backups/../../etc" } } }),
            )),
            CLEAN_PATH,
        ),
        invalid(
            "backup claim with a space",
            backup(spec(
                json!({ "destination": { "pvc": { "claimName": "etcd backups" } } }),
            )),
            CLAIM_NAME,
        ),
        invalid(
            "backup sub path with a newline",
            backup(spec(
                json!({ "destination": { "pvc": { "claimName": "etcd-backups", "subPath": "etcd\nbackups" } } }),
            )),
            "must be a path without control characters",
        ),
        invalid(
            "client certificate Secret name with a space",
            backup(spec(
                json!({ "source": { "distribution": "Talos", "tls": { "secretName": "etcd client" } } }),
            )),
            SECRET_NAME,
        ),
        invalid(
            "client certificate file climbing out",
            backup(spec(
                json!({ "source": { "distribution": "Custom", "endpoints": ["https://10.0.0.10:2379"],
                "tls": { "hostPath": { "caFile": "/etc/etcd/../../root/ca.crt", "certFile": "/etc/etcd/client.crt", "keyFile": "/etc/etcd/client.key" } } } }),
            )),
            CLEAN_PATH,
        ),
        invalid(
            "SQLite path climbing out",
            backup(spec(
                json!({ "source": { "distribution": "K3s", "datastore": "SQLite", "sqlitePath": "/var/lib/rancher/../state.db" } }),
            )),
            CLEAN_PATH,
        ),
    ]);
    cases
}

#[tokio::test]
async fn invalid_objects_are_refused_with_a_message_for_a_person() {
    let ns = TestNamespace::with_crds("refusals").await.unwrap();
    let client = ns.client().clone();

    // The starting points themselves are valid, so each refusal is the patch's doing.
    for (i, base) in [
        pin(json!({})),
        gateway(json!({})),
        media(json!({})),
        backup(json!({})),
    ]
    .into_iter()
    .enumerate()
    {
        let base = merge(
            base,
            json!({ "metadata": { "name": format!("valid-{i}") } }),
        );
        let api = dynamic_api(
            &client,
            ns.name(),
            base["kind"].as_str().unwrap_or_default(),
        );
        if let Err(error) = apply(&api, &base).await {
            panic!(
                "the valid starting point {} was refused: {error}",
                base["kind"]
            );
        }
    }

    let cases = refusals();
    assert!(cases.len() >= 30, "at least 30 invalid objects");
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let kind = case.object["kind"].as_str().unwrap_or_default().to_owned();
        *per_kind.entry(kind.clone()).or_default() += 1;
        let api = dynamic_api(&client, ns.name(), &kind);
        let name = format!("case-{i:02}");
        let named = |object: &Value| match object["metadata"]["name"] {
            Value::String(_) => object.clone(),
            _ => merge(object.clone(), json!({ "metadata": { "name": name } })),
        };

        if let Some(before) = &case.before
            && let Err(error) = apply(&api, &named(before)).await
        {
            mismatches.push(format!(
                "{:2}. {}: the valid object before the change was refused: {error}",
                i, case.what
            ));
            continue;
        }
        let outcome = match case.via {
            Via::Apply => apply(&api, &named(&case.object)).await,
            Via::Create => create_strict(&client, ns.name(), &named(&case.object)).await,
        };
        match outcome {
            Ok(_) => mismatches.push(format!(
                "{:2}. {}: accepted, expected a refusal containing {:?}",
                i, case.what, case.fragment
            )),
            Err(kube::Error::Api(status)) => {
                let ok = status.code == case.code && status.message.contains(case.fragment);
                eprintln!(
                    "{} {:2}. {} ({} {}): {}",
                    if ok { "ok  " } else { "FAIL" },
                    i,
                    case.what,
                    status.code,
                    status.reason,
                    status.message
                );
                if !ok {
                    mismatches.push(format!(
                        "{:2}. {}: expected {} with {:?}, got {} {}: {}",
                        i,
                        case.what,
                        case.code,
                        case.fragment,
                        status.code,
                        status.reason,
                        status.message
                    ));
                }
            }
            Err(error) => {
                mismatches.push(format!("{:2}. {}: request failed: {error}", i, case.what))
            }
        }
    }
    eprintln!("{} invalid objects per kind: {per_kind:?}", cases.len());
    assert_eq!(per_kind.len(), 4, "every kind has invalid cases");
    assert!(
        mismatches.is_empty(),
        "{} of {} invalid objects were not refused as expected:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

/// Valid input at the edges of the rules above, so no rule is stricter than it says.
fn acceptances() -> Vec<(&'static str, Value)> {
    let mut cases = vec![
        (
            "upper-case hex ids",
            pin(spec(json!({ "vendorId": "10C4", "productId": "EA60" }))),
        ),
        (
            "a nested device path",
            pin(spec(json!({ "containerPath": "/dev/serial/zigbee" }))),
        ),
        (
            "every duration unit",
            pin(spec(
                json!({ "failover": { "unreachableAfter": "1m30.5s", "cooldown": "1h0m0s" } }),
            )),
        ),
        (
            "a fractional hour",
            pin(spec(json!({ "failover": { "cooldown": "1.5h" } }))),
        ),
        (
            "preferred nodes within allowed nodes",
            pin(spec(
                json!({ "failover": { "allowedNodes": ["pi4-1", "pi4-2"], "preferredNodes": ["pi4-2"] } }),
            )),
        ),
        (
            "an IPv6 coordinator",
            gateway(spec(
                json!({ "radio": { "networkAddress": "tcp://[fd00::40]:6638", "adapter": "ember" } }),
            )),
        ),
        (
            "TLS to an mqtts:// broker",
            gateway(spec(
                json!({ "mqtt": { "url": "mqtts://broker.home.arpa:8883",
                "tls": { "caSecretRef": { "name": "mqtt-ca", "key": "ca.crt" } } } }),
            )),
        ),
        (
            "topic filters with wildcards",
            gateway(spec(json!({ "sensors": [
                { "name": "all-garden", "topic": "garden/#", "staleAfter": "10m" },
                { "name": "any-bed", "topic": "garden/+/moisture", "staleAfter": "10m" },
                { "name": "whole-bridge", "topic": "zigbee2mqtt/#", "staleAfter": "1h" },
                { "name": "any-hub-status", "topic": "+/status", "staleAfter": "1h" },
                { "name": "living-room", "topic": "zigbee2mqtt/Living Room Lamp", "staleAfter": "1h" },
            ] }))),
        ),
        (
            "a Generic gateway",
            gateway(spec(
                json!({ "preset": "Generic", "image": "ghcr.io/merbanan/rtl_433:latest", "availability": { "topic": "rtl_433/status" } }),
            )),
        ),
        (
            "config and media on one node",
            media(spec(json!({
                "config": { "volumeClaim": null, "hostPath": { "node": "pi4-2", "path": "/srv/navidrome" } },
                "media": [{ "name": "music", "mountPath": "/music", "hostPath": { "node": "pi4-2", "path": "/mnt/music" } }],
            }))),
        ),
        (
            "Quick Sync on amd64",
            media(spec(
                json!({ "architectures": ["amd64", "arm64"], "transcoding": { "hardware": "IntelQuickSync", "renderGroupId": 993 } }),
            )),
        ),
        (
            "a step schedule",
            backup(spec(json!({ "schedule": "*/15 * * * *" }))),
        ),
        (
            "a named schedule",
            backup(spec(json!({ "schedule": "0 3 * * SUN" }))),
        ),
        (
            "a cron macro",
            backup(spec(
                json!({ "schedule": "@daily", "timeZone": "America/Argentina/Buenos_Aires" }),
            )),
        ),
        (
            "k3s on SQLite",
            backup(spec(
                json!({ "source": { "distribution": "K3s", "datastore": "SQLite" } }),
            )),
        ),
        (
            "Talos with a client certificate Secret",
            backup(spec(
                json!({ "source": { "distribution": "Talos", "tls": { "secretName": "etcd-client" } } }),
            )),
        ),
        (
            "a Custom etcd",
            backup(spec(
                json!({ "source": { "distribution": "Custom", "endpoints": ["https://10.0.0.10:2379", "https://10.0.0.11:2379"],
                "tls": { "hostPath": { "caFile": "/etc/etcd/ca.crt", "certFile": "/etc/etcd/client.crt", "keyFile": "/etc/etcd/client.key" } } } }),
            )),
        ),
    ];
    cases.extend(format_acceptances());
    cases
}

/// Valid input at the edges of the format rules: the largest and smallest ports, names
/// and durations, every cron form, credentials where they are safe or allowed.
fn format_acceptances() -> Vec<(&'static str, Value)> {
    let mut cases: Vec<(&'static str, Value)> = [
        ("the largest value of every field", "59 23 31 12 6"),
        ("names across the week", "0 0 * JAN-DEC/3 SUN-SAT"),
        ("the smallest value of every field", "0 0 1 1 0"),
        (
            "ranges with steps in every field",
            "0-59/5 0-23/2 1-31/3 1-12/4 0-6/2",
        ),
        ("working hours", "0 9-17 * * MON-FRI"),
        ("names in any case", "0 0 * jan,Jul sun"),
        ("leading zeros", "00 03 01 01 *"),
        ("question marks", "*/15 * ? * ?"),
        ("a step from a start", "5/20 * * * *"),
        ("two spaces between fields", "0  3 * * *"),
        ("@midnight", "@midnight"),
        ("@annually", "@annually"),
        ("@weekly", "@weekly"),
        ("@monthly", "@monthly"),
    ]
    .into_iter()
    .map(|(what, schedule)| (what, backup(spec(json!({ "schedule": schedule })))))
    .collect();
    cases.extend([
        (
            "a nested device path with dots and dashes",
            pin(spec(
                json!({ "containerPath": "/dev/serial/by-id/usb-ITead_Sonoff_3.0-if00-port0" }),
            )),
        ),
        (
            "a device file whose name starts with a dot",
            pin(spec(json!({ "containerPath": "/dev/.zigbee" }))),
        ),
        (
            "a serial with punctuation",
            pin(spec(json!({ "serial": "4C00A1B2-01_X:3" }))),
        ),
        (
            "node names with dots, digits and the longest length",
            pin(spec(json!({ "failover": {
                "allowedNodes": ["pi4-1.home.arpa", "1", "a".repeat(253)],
                "preferredNodes": ["1"],
            } }))),
        ),
        (
            "a cooldown of 0: failovers may follow each other",
            pin(spec(json!({ "failover": { "cooldown": "0" } }))),
        ),
        (
            "the smallest and largest broker ports",
            gateway(spec(
                json!({ "mqtt": { "url": "mqtt://mosquitto:1" }, "radio": { "networkAddress": "tcp://coordinator:65535", "adapter": "zstack" } }),
            )),
        ),
        (
            "zigbee2mqtt on a network coordinator with its adapter type",
            gateway(spec(
                json!({ "radio": { "networkAddress": "tcp://192.168.1.40:6638", "adapter": "zstack" } }),
            )),
        ),
        (
            "zigbee2mqtt on a USB stick, its type detected",
            gateway(spec(json!({ "radio": { "usbDevicePin": { "name": "sonoff-zigbee" } } }))),
        ),
        (
            "zwave-js-ui on a network controller needs no adapter type",
            gateway(spec(
                json!({ "preset": "ZWaveJSUI", "radio": { "networkAddress": "tcp://192.168.1.41:4001" } }),
            )),
        ),
        (
            "an MQTT client name of 64 letters, digits, - and _",
            gateway(spec(json!({ "preset": "ZWaveJSUI", "mqtt": {
                "url": "mqtt://mosquitto:1883", "clientName": format!("zwave_attic-{}", "9".repeat(52)),
            } }))),
        ),
        (
            "an IPv6 broker without a port",
            gateway(spec(json!({ "mqtt": { "url": "mqtt://[fd00::1883]" } }))),
        ),
        (
            "an IPv6 broker on the largest port",
            gateway(spec(json!({ "mqtt": { "url": "mqtts://[fd00::1]:65535/" } }))),
        ),
        (
            "credentials over mqtts:// without allowPlaintextCredentials",
            credentials(json!({ "url": "mqtts://broker.home.arpa:8883" })),
        ),
        (
            "credentials over plain mqtt:// on a trusted LAN",
            credentials(json!({ "allowPlaintextCredentials": true })),
        ),
        (
            "Secret keys that start with one dot or hold dots",
            credentials(json!({ "allowPlaintextCredentials": true,
                "usernameSecretRef": { "name": "mqtt.credentials", "key": ".username" },
                "passwordSecretRef": { "name": "mqtt.credentials", "key": "pass.word_2" } })),
        ),
        (
            "the shortest durations",
            gateway(spec(json!({
                "availability": { "restartAfter": "1s" },
                "sensors": [{ "name": "fast", "topic": "garden/fast", "staleAfter": "1ns" }],
            }))),
        ),
        (
            "a topic prefix with a space inside",
            gateway(spec(json!({ "topicPrefix": "garden hub" }))),
        ),
        (
            "an image by digest",
            gateway(spec(json!({ "image": "ghcr.io/koenkk/zigbee2mqtt@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" }))),
        ),
        (
            "host paths with a trailing slash and NFS by IPv4 and IPv6",
            media(spec(json!({
                "config": { "volumeClaim": null, "hostPath": { "node": "pi4-2.lan", "path": "/srv/jellyfin/" } },
                "media": [
                    { "name": "music", "mountPath": "/music", "hostPath": { "node": "pi4-2.lan", "path": "/mnt/music" } },
                    { "name": "films", "mountPath": "/media/films", "nfs": { "server": "192.168.1.10", "path": "/volume1/films" } },
                    { "name": "shows", "mountPath": "/media/shows", "nfs": { "server": "fd00::10", "path": "/volume1/shows" } },
                ],
            }))),
        ),
        (
            "the smallest and largest render group, claim names with dots",
            media(spec(json!({
                "config": { "volumeClaim": null, "existingClaim": "jellyfin.config" },
                "transcoding": { "hardware": "IntelQuickSync", "renderGroupId": 2147483647 },
                "service": { "port": 65535 },
                "port": 1,
            }))),
        ),
        (
            "render group 1",
            media(spec(json!({ "transcoding": { "hardware": "Nvidia", "renderGroupId": 1 } }))),
        ),
        (
            "a StorageClass with dots",
            media(spec(
                json!({ "config": { "volumeClaim": { "size": "10Gi", "storageClassName": "local-path.k3s" } } }),
            )),
        ),
        (
            "etcd endpoints at the edges of the port range, IPv6 with and without a port",
            backup(spec(json!({ "source": { "distribution": "Custom", "endpoints": [
                "https://10.0.0.10:1", "https://10.0.0.11:65535", "http://etcd-0",
                "https://[fd00::10]:2379", "https://[fd00::2379]",
            ] } }))),
        ),
        (
            "the shortest staleness",
            backup(spec(json!({ "staleAfter": "1m" }))),
        ),
        (
            "S3 with an endpoint path, a region and prefix of its own, on the largest port",
            s3(json!({ "endpoint": "https://s3.home.arpa:65535/storage/", "region": "garage",
                "prefix": "homelab/etcd..old/", "bucket": "homelab.backups.1" })),
        ),
        (
            "S3 on IPv6 without a port",
            s3(json!({ "endpoint": "http://[fd00::9000]" })),
        ),
        (
            "a backup node and directory, a sub path",
            backup(spec(json!({ "destination": { "pvc": null, "hostPath": { "path": "/var/backups/etcd/", "node": "cp-1.home.arpa" } } }))),
        ),
        (
            "a nested sub path",
            backup(spec(json!({ "destination": { "pvc": { "claimName": "etcd-backups", "subPath": "etcd/cluster-a" } } }))),
        ),
    ]);
    cases
}

#[tokio::test]
async fn valid_objects_at_the_edges_of_the_rules_are_accepted() {
    let ns = TestNamespace::with_crds("acceptances").await.unwrap();
    let client = ns.client().clone();
    let mut refused = Vec::new();
    for (i, (what, object)) in acceptances().into_iter().enumerate() {
        let object = merge(
            object,
            json!({ "metadata": { "name": format!("edge-{i:02}") } }),
        );
        let api = dynamic_api(
            &client,
            ns.name(),
            object["kind"].as_str().unwrap_or_default(),
        );
        if let Err(error) = apply(&api, &object).await {
            refused.push(format!("{i:2}. {what}: {error}"));
        }
    }
    assert!(
        refused.is_empty(),
        "valid objects were refused:\n{}",
        refused.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// (c) Node agents each write their own presence entry; the entries merge.

#[tokio::test]
async fn node_agents_presence_entries_merge_per_node() {
    let ns = TestNamespace::with_crds("presence").await.unwrap();
    let pins: Api<UsbDevicePin> = ns.api();
    let pin_object = pin(json!({ "metadata": { "name": "zigbee" } }));
    pins.patch("zigbee", &apply_params(), &Patch::Apply(&pin_object))
        .await
        .unwrap();

    let report = |node: &str| {
        json!({
            "apiVersion": API_VERSION,
            "kind": "UsbDevicePin",
            "metadata": { "name": "zigbee" },
            "status": { "presence": [{
                "node": node,
                "byIdPath": "/dev/serial/by-id/usb-ITead_Sonoff_Zigbee_3.0_USB_Dongle_Plus-if00-port0",
                "devNode": "/dev/ttyUSB0",
            }] },
        })
    };
    // The same field manager each real node agent uses.
    let agent = |node: &str| PatchParams::apply(&homelab_node_agent::report::field_manager(node));
    for node in ["pi4-1", "pi4-2"] {
        pins.patch_status("zigbee", &agent(node), &Patch::Apply(report(node)))
            .await
            .unwrap();
    }
    let nodes = crate::usbdevicepin::presence_nodes;
    assert_eq!(
        nodes(&pins.get("zigbee").await.unwrap()),
        ["pi4-1", "pi4-2"]
    );

    // pi4-1's agent no longer sees the stick: it applies an empty list, which removes
    // only the entry it owns.
    let gone = json!({
        "apiVersion": API_VERSION,
        "kind": "UsbDevicePin",
        "metadata": { "name": "zigbee" },
        "status": { "presence": [] },
    });
    pins.patch_status("zigbee", &agent("pi4-1"), &Patch::Apply(gone))
        .await
        .unwrap();
    assert_eq!(nodes(&pins.get("zigbee").await.unwrap()), ["pi4-2"]);
}
