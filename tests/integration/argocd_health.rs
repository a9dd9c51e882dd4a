//! The Argo CD health checks in deploy/argocd/health/ run under a real Lua
//! (Debian's lua5.4, as `.ci/run` installs) against the statuses our
//! controllers write, and say what Argo CD should show.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

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

/// Runs one health check with `obj` set, as Argo CD does; returns (status, message).
fn health(kind: &str, obj: &Value) -> (String, String) {
    let script = homelab_test_support::workspace_root()
        .join("deploy/argocd/health")
        .join(format!("{kind}.lua"));
    let driver = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, '\\n', hs.message or '')",
        lua(obj),
        PathBuf::from(&script).display().to_string()
    );
    let output = Command::new("lua5.4")
        .args(["-e", &driver])
        .output()
        .expect("lua5.4 is needed for this test: apt-get install lua5.4 (.ci/run does)");
    assert!(
        output.status.success(),
        "{kind}.lua failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = String::from_utf8_lossy(&output.stdout).to_string();
    let (status, message) = out.split_once('\n').unwrap_or((&out, ""));
    (status.to_owned(), message.to_owned())
}

fn object(generation: i64, status: Value) -> Value {
    json!({"metadata": {"name": "x", "generation": generation}, "spec": {}, "status": status})
}

fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": format!("{type_} is {status}"),
           "observedGeneration": generation, "lastTransitionTime": "2026-11-22T00:00:00Z"})
}

#[test]
fn every_kind_reads_kstatus_conditions_as_argo_cd_health() {
    for kind in ["mediaserver", "sensorgateway", "usbdevicepin", "etcdbackup"] {
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
    }
}
