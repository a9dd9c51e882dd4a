//! The chart's alerts under `promtool`, both pinned in `e2e/versions.env`: the
//! PrometheusRule as the real `helm template` renders it is checked (`promtool
//! check rules`: PromQL, durations, annotation templates) and tested (`promtool
//! test rules` with `charts/homelab-operators/tests/*.test.yaml`: each alert fires
//! on the series it is for, after its `for:`, with its labels and summary, and not
//! on the others).
//!
//! promtool compares an alert's annotations whole, so the rules under test keep
//! only `summary`; the full annotations are what `check rules` reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use homelab_test_support::tools::{documents, helm_template, tool};
use serde_json::{Value, json};

use crate::chart::chart_dir;

/// The PrometheusRule's `spec.groups`, rendered by the pinned helm with the rule on.
fn rendered_groups() -> Value {
    let rendered = helm_template(&["--set", "metrics.prometheusRule.enabled=true"]).unwrap();
    let rule = documents(&rendered)
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("the chart renders a PrometheusRule with metrics.prometheusRule.enabled");
    rule["spec"]["groups"].clone()
}

/// The groups with each alert's annotations cut to its summary.
fn summaries_only(groups: &Value) -> Value {
    let mut groups = groups.clone();
    for group in groups.as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            if let Some(summary) = rule.pointer("/annotations/summary").cloned() {
                rule["annotations"] = json!({ "summary": summary });
            }
        }
    }
    groups
}

/// A fresh directory for one run's files.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("homelab-alert-rules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `groups` as a Prometheus rule file (JSON is YAML).
fn write_rules(path: &Path, groups: &Value) {
    let file = json!({ "groups": groups });
    std::fs::write(path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
}

/// Runs promtool; panics with everything it said unless it succeeds.
fn promtool(args: &[&str], cwd: &Path) -> String {
    let promtool = tool("promtool", "promtool").unwrap();
    let output = Command::new(&promtool)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", promtool.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {} failed:\n{said}",
        args.join(" ")
    );
    said
}

#[test]
fn the_alert_rules_pass_promtool_check_and_test() {
    let groups = rendered_groups();
    let dir = scratch_dir();

    let full = dir.join("rendered-rules.yaml");
    write_rules(&full, &groups);
    let checked = promtool(&["check", "rules", "rendered-rules.yaml"], &dir);
    eprintln!("{checked}");

    write_rules(&dir.join("rules.yaml"), &summaries_only(&groups));
    let mut tests = Vec::new();
    for entry in std::fs::read_dir(chart_dir().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".test.yaml") {
            std::fs::copy(&path, dir.join(&name)).unwrap();
            tests.push(name);
        }
    }
    assert!(!tests.is_empty(), "no *.test.yaml in the chart's tests/");
    tests.sort();
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let tested = promtool(&args, &dir);
    eprintln!("{tested}");

    // Every alert is tested: a new one without a case fails here.
    let cases: String = tests
        .iter()
        .map(|t| std::fs::read_to_string(dir.join(t)).unwrap())
        .collect();
    let untested: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .filter(|alert| !cases.contains(&format!("alertname: {alert}\n")))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        untested.is_empty(),
        "alerts without a promtool test case: {untested:?}"
    );
}
