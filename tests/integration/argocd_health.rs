//! The Argo CD health checks, as deploy/argocd/argocd-cm.yaml carries them (what
//! users merge into Argo CD), run under a real Lua (Debian's lua5.4, as `.ci/run`
//! installs) against the statuses our controllers write, and say what Argo CD
//! should show.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const KEY_PREFIX: &str = "resource.customizations.health.homelab.home.arpa_";

/// Each kind's Lua check, from argocd-cm.yaml's `data`.
fn checks() -> BTreeMap<String, String> {
    let path = homelab_test_support::workspace_root().join("deploy/argocd/argocd-cm.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    let data = config["data"].as_object().unwrap();
    data.iter()
        .map(|(key, lua)| {
            let kind = key
                .strip_prefix(KEY_PREFIX)
                .unwrap_or_else(|| panic!("{key} in argocd-cm.yaml is not a homelab health check"));
            (kind.to_owned(), lua.as_str().unwrap().to_owned())
        })
        .collect()
}

/// A Lua table literal for a JSON value (strings quoted with `%q`-safe escapes).
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs `kind`'s check with `obj` set, as Argo CD does (the check is one chunk
/// with the global `obj`); returns (status, message).
fn health(kind: &str, obj: &Value) -> (String, String) {
    let checks = checks();
    let check = checks
        .get(kind)
        .unwrap_or_else(|| panic!("argocd-cm.yaml has no check for {kind}"));
    // The check arrives on stdin: no quoting of Lua inside Lua.
    let driver = format!(
        "obj = {}\nlocal hs = assert(load(io.read('a'), '={kind}'))()\nio.write(hs.status, '\\n', hs.message or '')",
        lua(obj)
    );
    let mut child = Command::new("lua5.4")
        .args(["-e", &driver])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.4 is needed for this test: apt-get install lua5.4 (.ci/run does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(check.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{kind}'s check failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = String::from_utf8_lossy(&output.stdout).to_string();
    let (status, message) = out.split_once('\n').unwrap_or((&out, ""));
    (status.to_owned(), message.to_owned())
}

fn object(generation: i64, status: Value) -> Value {
    json!({"metadata": {"name": "x", "generation": generation}, "spec": {}, "status": status})
}

fn suspended(mut obj: Value) -> Value {
    obj["spec"]["suspend"] = json!(true);
    obj
}

fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": format!("{type_} is {status}"),
           "observedGeneration": generation, "lastTransitionTime": "2026-11-22T00:00:00Z"})
}

fn ready_and_stale(stale: &str) -> Value {
    object(
        2,
        json!({"observedGeneration": 2, "conditions": [
            condition("Ready", "True", "Reconciled", 2),
            condition("Stale", stale, "NoRecentBackup", 2),
        ]}),
    )
}

#[test]
fn every_kind_reads_kstatus_conditions_as_argo_cd_health() {
    let kinds: Vec<String> = checks().into_keys().collect();
    assert_eq!(
        kinds,
        ["EtcdBackup", "MediaServer", "SensorGateway", "UsbDevicePin"]
    );
    for kind in &kinds {
        let cases = [
            (
                json!({"metadata": {"name": "x", "generation": 1}, "spec": {}}),
                "Progressing",
            ),
            (
                object(
                    2,
                    json!({"observedGeneration": 2, "conditions": [condition("Ready", "True", "Ready", 2)]}),
                ),
                "Healthy",
            ),
            (
                object(
                    3,
                    json!({"observedGeneration": 2, "conditions": [condition("Ready", "True", "Ready", 2)]}),
                ),
                "Progressing",
            ),
            (
                object(
                    2,
                    json!({"observedGeneration": 2, "conditions": [
                        condition("Ready", "False", "ReferenceNotFound", 2),
                        condition("Stalled", "True", "ReferenceNotFound", 2),
                    ]}),
                ),
                "Degraded",
            ),
            (
                object(
                    2,
                    json!({"observedGeneration": 2, "conditions": [
                        condition("Ready", "False", "Progressing", 2),
                        condition("Reconciling", "True", "Progressing", 2),
                    ]}),
                ),
                "Progressing",
            ),
        ];
        for (i, (obj, want)) in cases.iter().enumerate() {
            let (status, message) = health(kind, obj);
            assert_eq!(&status, want, "{kind} case {i}: {message}");
        }
        // A Stalled object's message reaches the Argo CD UI.
        let (_, message) = health(kind, &cases[3].0);
        assert!(message.contains("ReferenceNotFound"), "{kind}: {message}");
        // Who is awaited, as each kind's Progressing message names them.
        let (_, message) = health(kind, &cases[0].0);
        let who = if kind == "UsbDevicePin" {
            "UsbDevicePin controller and node agents"
        } else {
            &format!("{kind} controller")
        };
        assert_eq!(message, format!("Waiting for the {who} to report status"));
    }
}

#[test]
fn a_suspended_etcdbackup_shows_suspended_and_a_stale_one_degraded() {
    let healthy = ready_and_stale("False");
    assert_eq!(health("EtcdBackup", &healthy).0, "Healthy");
    assert_eq!(
        health("EtcdBackup", &suspended(healthy)),
        (
            "Suspended".to_owned(),
            "Backups are suspended (spec.suspend)".to_owned()
        )
    );
    // Suspension outranks a Stalled condition ...
    let stalled = object(
        2,
        json!({"observedGeneration": 2, "conditions": [
            condition("Ready", "False", "InvalidSpec", 2),
            condition("Stalled", "True", "InvalidSpec", 2),
        ]}),
    );
    assert_eq!(health("EtcdBackup", &suspended(stalled)).0, "Suspended");
    // ... but not a controller that has yet to see the object.
    let unseen = json!({"metadata": {"name": "x", "generation": 1}, "spec": {"suspend": true}});
    assert_eq!(health("EtcdBackup", &unseen).0, "Progressing");

    let (status, message) = health("EtcdBackup", &ready_and_stale("True"));
    assert_eq!(status, "Degraded");
    assert_eq!(message, "NoRecentBackup: Stale is True");
    // Stale speaks only over a Ready backup: otherwise Ready's own story is told.
    let progressing = object(
        2,
        json!({"observedGeneration": 2, "conditions": [
            condition("Ready", "False", "Progressing", 2),
            condition("Reconciling", "True", "Progressing", 2),
            condition("Stale", "True", "NoRecentBackup", 2),
        ]}),
    );
    let (status, message) = health("EtcdBackup", &progressing);
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("Progressing", "Progressing: Ready is False")
    );
}

#[test]
fn only_etcdbackup_reads_suspend_and_stale() {
    for (kind, _) in checks()
        .into_iter()
        .filter(|(kind, _)| kind != "EtcdBackup")
    {
        assert_eq!(
            health(&kind, &suspended(ready_and_stale("False"))).0,
            "Healthy",
            "{kind} with spec.suspend"
        );
        assert_eq!(
            health(&kind, &ready_and_stale("True")).0,
            "Healthy",
            "{kind} with Stale=True"
        );
    }
}
