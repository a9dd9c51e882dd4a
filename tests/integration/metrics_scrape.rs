//! Every metric the dashboard and the alerts name is exported by some binary.
//!
//! Each binary's runtime starts in-process with its real HTTP server, watching a
//! test namespace; once `/readyz` answers, its `/metrics` is scraped. The chart is
//! rendered with the real `helm` (dashboard and PrometheusRule switched on), and
//! every metric name in a panel query or an alert expression must be one a binary
//! exports (a family seen in `# TYPE`, with its sample suffixes), or one Prometheus
//! makes itself (`up`). One object of each kind that has per-object series (a pin,
//! a gateway on a real mosquitto, a backup) makes those series exist.
//!
//! A new binary is one line in [`BINARIES`].

use homelab_kit::Operator as _;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use homelab_api::{EtcdBackup, SensorGateway, UsbDevicePin};
use homelab_kit::Settings;
use homelab_test_support::http::{get, wait_ok};
use homelab_test_support::mosquitto::Mosquitto;
use homelab_test_support::mqtt::publish;
use homelab_test_support::tools::{documents, helm_template};
use homelab_test_support::{TestNamespace, apply_object, poll_until, wait_deleted};
use kube::Client;
use kube::api::DeleteParams;
use serde_json::Value;
use tokio::sync::oneshot;

/// Stops a runtime when sent (or dropped).
type Stop = oneshot::Receiver<()>;

/// Starts one binary's runtime: client, watched namespace, HTTP address, stop.
type Start = fn(Client, String, SocketAddr, Stop) -> BoxFuture<'static, ()>;

/// Every binary of the project, by name, with how to run it in-process.
const BINARIES: &[(&str, Start)] = &[
    ("mediaserver-controller", |c, ns, addr, stop| {
        Box::pin(async move {
            let s = settings(homelab_mediaserver::CONTROLLER_NAME, ns, addr);
            ended(
                homelab_mediaserver::Controller::new(c, s)
                    .run_until(stopped(stop))
                    .await,
            );
        })
    }),
    ("usbdevicepin-controller", |c, ns, addr, stop| {
        Box::pin(async move {
            let s = settings(homelab_usbdevicepin::CONTROLLER_NAME, ns, addr);
            ended(
                homelab_usbdevicepin::Controller::new(c, s)
                    .run_until(stopped(stop))
                    .await,
            );
        })
    }),
    ("sensorgateway-controller", |c, ns, addr, stop| {
        Box::pin(async move {
            let s = settings(homelab_sensorgateway::CONTROLLER_NAME, ns, addr);
            ended(
                homelab_sensorgateway::Controller::new(c, s)
                    .run_until(stopped(stop))
                    .await,
            );
        })
    }),
    ("etcd-backup controller", |c, ns, addr, stop| {
        Box::pin(async move {
            let policy = homelab_etcdbackup::Policy::new([ns.clone()], [BACKUP_DIR]).unwrap();
            let s = settings(homelab_etcdbackup::CONTROLLER_NAME, ns, addr);
            let image = homelab_etcdbackup::Image {
                name: "ghcr.io/homelab-operators/homelab-operators:test".to_owned(),
                pull_policy: "IfNotPresent".to_owned(),
            };
            ended(
                homelab_etcdbackup::Controller::new(c, s, image)
                    .with_policy(policy)
                    .run_until(stopped(stop))
                    .await,
            );
        })
    }),
    ("node-agent", |c, ns, addr, stop| {
        Box::pin(node_agent(c, ns, addr, stop))
    }),
];

/// Where the test's EtcdBackup would write (it never runs: its series come from
/// its status and its reconcile).
const BACKUP_DIR: &str = "/var/backups";

/// A gateway's sensor topic the test publishes on, so its last-seen series exists.
const SENSOR_TOPIC: &str = "garden-hub/sensor/tomato-bed/moisture";

/// Names Prometheus itself gives every scrape target.
const PROMETHEUS_OWN: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

/// A controller's settings for a test: one namespace, no election, our port.
fn settings(name: &str, namespace: String, addr: SocketAddr) -> Settings {
    let mut settings = Settings::new(name);
    settings.namespace = Some(namespace);
    settings.http_addr = addr;
    settings.leader_election = false;
    settings
}

async fn stopped(stop: Stop) {
    let _ = stop.await;
}

fn ended<E: std::fmt::Debug>(result: Result<(), E>) {
    if let Err(err) = result {
        eprintln!("runtime stopped with an error: {err:?}");
    }
}

/// The node agent on a fake Raspberry Pi's sysfs, without device plugins.
async fn node_agent(client: Client, namespace: String, addr: SocketAddr, stop: Stop) {
    let dir = std::env::temp_dir().join(format!("homelab-metrics-{namespace}"));
    let tree = homelab_node_agent::fixtures::Tree::raspberry_pi4(&dir).unwrap();
    let mut settings = homelab_node_agent::Settings::new("pi4-1");
    settings.roots = tree.roots();
    settings.device_plugins = false;
    settings.namespace = Some(namespace);
    settings.http_addr = Some(addr);
    ended(homelab_node_agent::agent::run(client, settings, stopped(stop)).await);
    let _ = std::fs::remove_dir_all(dir);
}

/// A port free right now on the loopback.
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Waits for `/readyz`, then returns `/metrics`.
async fn scrape_when_ready(name: &str, addr: SocketAddr) -> String {
    wait_ok(addr, "/readyz", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{name} never became ready: {e}"));
    wait_ok(addr, "/metrics", Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{name} /metrics: {e}"))
}

/// The sample names a scrape can produce: each `# TYPE` family with its
/// type's suffixes, and every sample line's name.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                "summary" => &["", "_count", "_sum", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// PromQL words that are not metric names; the first group takes a label list.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan", // operators, literals
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio", // aggregations (`sum by (x) (...)`)
];

/// The metric names a PromQL expression (or a Grafana query) reads: identifiers
/// that are not functions, keywords, label names, strings, label matchers,
/// ranges or Grafana variables.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < chars.len() {
            if chars[i] == open {
                depth += 1;
            } else if chars[i] == close {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            } else if matches!(chars[i], '"' | '\'' | '`') {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if matches!(c, '"' | '\'' | '`') {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '$' || c.is_ascii_digit() {
            // A Grafana variable or a number (1e3, 0.5): not a name.
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.'))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                if call {
                    i = skip_group(next, '(', ')');
                }
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every `expr` (and Grafana variable query) in a JSON dashboard, nested rows too.
fn dashboard_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("definition", Value::String(s)) => out.push(grafana_variable_query(s)),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The PromQL inside a Grafana variable query: `label_values(METRIC, label)` reads
/// METRIC (the label is not a metric).
fn grafana_variable_query(query: &str) -> String {
    match query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.rsplit_once(','))
    {
        Some((metric, _label)) => metric.to_owned(),
        None => query.to_owned(),
    }
}

/// The chart rendered with the dashboard and the alerts on.
fn rendered_chart() -> Vec<Value> {
    let rendered = helm_template(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "grafana.dashboard.enabled=true",
    ])
    .unwrap();
    documents(&rendered).unwrap()
}

/// (where, expression) of every alert and every dashboard query in the chart.
fn chart_expressions() -> Vec<(String, String)> {
    let docs = rendered_chart();
    let mut found = Vec::new();
    let rules = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("the chart renders a PrometheusRule");
    for group in rules["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            assert!(
                rule["alert"].is_null() || rule["annotations"]["runbook"].is_string(),
                "alert {name} has no runbook"
            );
            found.push((
                format!("alert {name}"),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let dashboards = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the chart renders a dashboard ConfigMap labelled for Grafana's sidecar");
    for (file, json) in dashboards["data"].as_object().unwrap() {
        let dashboard: Value = serde_json::from_str(json.as_str().unwrap()).unwrap();
        let mut queries = Vec::new();
        dashboard_queries(&dashboard, &mut queries);
        assert!(!queries.is_empty(), "{file} has no query");
        found.extend(
            queries
                .into_iter()
                .map(|q| (format!("dashboard {file}"), q)),
        );
    }
    found
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_name_is_exported() {
    let ns = TestNamespace::with_crds("metrics").await.unwrap();
    let client = ns.client().clone();

    // One object, so the per-object series exist too.
    let pin = serde_json::json!({
        "apiVersion": "homelab.home.arpa/v1alpha1",
        "kind": "UsbDevicePin",
        "metadata": {"name": "zigbee"},
        "spec": {"vendorId": "10c4", "productId": "ea60", "containerPath": "/dev/zigbee"},
    });
    apply_object(&ns.api::<UsbDevicePin>(), "zigbee", pin)
        .await
        .unwrap();

    // A gateway on a real broker (online, one listed sensor) and a backup, so the
    // SensorGateway's and EtcdBackup's per-object series exist too.
    let broker = Mosquitto::start(None).unwrap();
    publish(&broker, ("", ""), "garden-hub/status", "online", true).await;
    let objects = [
        serde_json::json!({
            "apiVersion": "homelab.home.arpa/v1alpha1",
            "kind": "SensorGateway",
            "metadata": {"name": "garden-hub"},
            "spec": {
                "preset": "ESPHome",
                "external": true,
                "topicPrefix": "garden-hub",
                "mqtt": {"url": broker.url()},
                "sensors": [{"name": "tomato-bed", "topic": SENSOR_TOPIC, "staleAfter": "1h"}],
            },
        }),
        serde_json::json!({
            "apiVersion": "homelab.home.arpa/v1alpha1",
            "kind": "EtcdBackup",
            "metadata": {"name": "hourly"},
            "spec": {
                "schedule": "@hourly",
                "source": {"distribution": "Kubeadm"},
                "destination": {"hostPath": {"path": format!("{BACKUP_DIR}/etcd")}},
            },
        }),
    ];
    let [gateway, backup] = objects;
    apply_object(&ns.api::<SensorGateway>(), "garden-hub", gateway)
        .await
        .unwrap();
    apply_object(&ns.api::<EtcdBackup>(), "hourly", backup)
        .await
        .unwrap();

    let mut running = Vec::new();
    for (name, start) in BINARIES {
        let addr = free_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(start(client.clone(), ns.name().to_owned(), addr, stopped));
        let text = scrape_when_ready(name, addr).await;
        assert!(
            text.ends_with("# EOF\n"),
            "{name}: not OpenMetrics:\n{text}"
        );
        assert!(
            exported_names(&text)
                .iter()
                .any(|n| n.starts_with("homelab_")),
            "{name} exports no homelab_ metric:\n{text}"
        );
        running.push((name, addr, stop, task));
    }

    // The binaries fill their series as they work (the agent's first sysfs pass,
    // the pin's first status): check until every name is found, or the deadline.
    let expressions = chart_expressions();
    let exported = poll_until(
        "every metric the chart names to be exported",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            // Until the gateway has subscribed, a message may go unheard: say it again.
            publish(&broker, ("", ""), SENSOR_TOPIC, "41", false).await;
            let mut exported = BTreeSet::new();
            for (name, addr, ..) in &running {
                let (_, text) = get(*addr, "/metrics")
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                exported.extend(exported_names(&text));
            }
            let mut unknown = Vec::new();
            for (place, expr) in &expressions {
                for metric in metric_names(expr) {
                    if !exported.contains(&metric) && !PROMETHEUS_OWN.contains(&metric.as_str()) {
                        unknown.push(format!("{place}: {metric} in `{expr}`"));
                    }
                }
            }
            if unknown.is_empty() {
                Ok(exported)
            } else {
                Err(format!(
                    "metrics no binary exports:\n{}\n\nexported: {exported:?}",
                    unknown.join("\n")
                ))
            }
        },
    )
    .await
    .unwrap();
    eprintln!(
        "{} expressions checked against {} names exported by {} binaries",
        expressions.len(),
        exported.len(),
        running.len()
    );

    // The pin goes while its controller still runs: it takes its finalizer off.
    let pins = ns.api::<UsbDevicePin>();
    pins.delete("zigbee", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(&pins, "zigbee", Duration::from_secs(60))
        .await
        .unwrap();
    for (_, _, stop, task) in running {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
}

#[test]
fn names_are_read_from_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (controller, le) (rate(homelab_reconcile_duration_seconds_bucket{job=~"a.*"}[5m])))"#
        ),
        ["homelab_reconcile_duration_seconds_bucket"]
    );
    assert_eq!(
        names(
            r#"count(max by (kind, namespace, name) (homelab_object_ready{namespace=~"$namespace"}) == 0) or vector(0)"#
        ),
        ["homelab_object_ready"]
    );
    assert_eq!(
        names("sum(a_total) by (x) > on (y) group_left (z) b offset 5m and c[$__rate_interval]"),
        ["a_total", "b", "c"]
    );
    assert_eq!(
        names(&grafana_variable_query(
            r#"label_values(homelab_object_ready{kind="X"}, namespace)"#
        )),
        ["homelab_object_ready"]
    );
}
