//! Every example in `deploy/examples/` parses into its Rust type and serializes back
//! equivalent: nothing in the file is lost or changed (a misspelt field would be
//! dropped silently by serde, and fails here), and only documented defaults are added.

// Test helpers panic on purpose: a panic is how a test reports a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use homelab_api::{EtcdBackup, MediaServer, SensorGateway, UsbDevicePin};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples")
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("deploy/examples exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "yaml")
                && path.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

/// Where `original` is not contained in `serialized`: each field of the file must be in
/// the serialization with the same value; the serialization may add defaults.
fn not_contained(path: &str, original: &Value, serialized: &Value, out: &mut Vec<String>) {
    match (original, serialized) {
        (Value::Object(o), Value::Object(s)) => {
            for (key, value) in o {
                match s.get(key) {
                    Some(other) => not_contained(&format!("{path}.{key}"), value, other, out),
                    None => out.push(format!("{path}.{key} is lost")),
                }
            }
        }
        (Value::Array(o), Value::Array(s)) if o.len() == s.len() => {
            for (i, (a, b)) in o.iter().zip(s).enumerate() {
                not_contained(&format!("{path}[{i}]"), a, b, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

fn round_trip<K>(file: &Path, original: &Value) -> Vec<String>
where
    K: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let typed: K = match serde_json::from_value(original.clone()) {
        Ok(typed) => typed,
        Err(error) => return vec![format!("does not parse: {error}")],
    };
    let serialized = serde_json::to_value(&typed).expect("serializes");
    let mut problems = Vec::new();
    not_contained("", original, &serialized, &mut problems);
    let again: K = serde_json::from_value(serialized).expect("parses its own output");
    if again != typed {
        problems.push(format!("{} changes on a second round trip", file.display()));
    }
    problems
}

#[test]
fn every_example_round_trips_through_its_type() {
    let files = example_files();
    let mut kinds = BTreeSet::new();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable example");
        let original: Value = match serde_saphyr::from_str(&text) {
            Ok(value) => value,
            Err(error) => {
                problems.push(format!("{}: not YAML: {error}", file.display()));
                continue;
            }
        };
        let kind = original["kind"].as_str().unwrap_or_default().to_owned();
        let found = match kind.as_str() {
            "MediaServer" => round_trip::<MediaServer>(file, &original),
            "SensorGateway" => round_trip::<SensorGateway>(file, &original),
            "UsbDevicePin" => round_trip::<UsbDevicePin>(file, &original),
            "EtcdBackup" => round_trip::<EtcdBackup>(file, &original),
            other => vec![format!("unknown kind {other:?}")],
        };
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        problems.extend(
            found
                .into_iter()
                .map(|p| format!("deploy/examples/{name}: {p}")),
        );
        assert_eq!(
            original["apiVersion"],
            homelab_api::API_VERSION,
            "{}",
            file.display()
        );
        kinds.insert(kind);
    }
    assert!(
        problems.is_empty(),
        "examples do not round-trip:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        kinds,
        ["EtcdBackup", "MediaServer", "SensorGateway", "UsbDevicePin"]
            .map(String::from)
            .into(),
        "every kind has an example"
    );
}

#[test]
fn kustomization_lists_every_example() {
    let text = std::fs::read_to_string(examples_dir().join("kustomization.yaml"))
        .expect("deploy/examples/kustomization.yaml");
    let kustomization: Value = serde_saphyr::from_str(&text).expect("YAML");
    assert!(
        kustomization.get("namespace").is_none(),
        "the namespace is left to the user"
    );
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    let present: BTreeSet<String> = example_files()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(listed, present);
}
