//! The pinned command-line tools `e2e/cluster` builds (`kubectl`, `helm`, ...), run
//! as a user runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Cluster, Error};

/// The path of `binary` in the pinned tool `name` (as `e2e/cluster tools` lists
/// them: `kubernetes`, `helm`, `etcd`, `containerd`, ...), built on first use.
pub fn tool(name: &str, binary: &str) -> Result<PathBuf, Error> {
    let listing = Cluster::default().run(&["tools"])?;
    listing
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(|dir| Path::new(dir.trim()).join(binary))
        .ok_or_else(|| Error::ClusterCommand {
            command: "tools".into(),
            output: format!("no {name} in: {listing}"),
        })
}

/// Runs a command that must succeed; returns its standard output.
pub fn run_ok(program: &Path, args: &[&str]) -> Result<String, Error> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Command {
            command,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

/// `kubectl` with the test cluster's admin kubeconfig.
pub fn kubectl(args: &[&str]) -> Result<String, Error> {
    let kubeconfig = Cluster::default().kubeconfig_path()?;
    let kubeconfig = format!("--kubeconfig={}", kubeconfig.display());
    let mut all = vec![kubeconfig.as_str()];
    all.extend_from_slice(args);
    run_ok(&tool("kubernetes", "kubectl")?, &all)
}

/// `helm` with the test cluster's admin kubeconfig.
pub fn helm(args: &[&str]) -> Result<String, Error> {
    let kubeconfig = Cluster::default().kubeconfig_path()?;
    let kubeconfig = format!("--kubeconfig={}", kubeconfig.display());
    let mut all = vec![kubeconfig.as_str()];
    all.extend_from_slice(args);
    run_ok(&tool("helm", "helm")?, &all)
}

/// The project's Helm chart, `charts/homelab-operators`.
pub fn chart_dir() -> PathBuf {
    crate::workspace_root()
        .join("charts")
        .join("homelab-operators")
}

/// The arguments that render the chart as `charts/sync` does (release
/// `homelab-operators` in namespace `homelab`, for Kubernetes 1.36).
pub const TEMPLATE_ARGS: &[&str] = &[
    "template",
    "homelab-operators",
    "--namespace",
    "homelab",
    "--kube-version",
    "1.36.0",
];

/// The chart rendered by the pinned `helm template`, with `extra` arguments
/// (`--set ...`); the YAML.
pub fn helm_template(extra: &[&str]) -> Result<String, Error> {
    let chart = chart_dir();
    let chart = chart.to_string_lossy();
    let mut args = TEMPLATE_ARGS.to_vec();
    args.push(&chart);
    args.extend_from_slice(extra);
    run_ok(&tool("helm", "helm")?, &args)
}

/// The documents of a multi-document YAML stream, empty ones left out.
pub fn documents(yaml: &str) -> Result<Vec<serde_json::Value>, Error> {
    let docs: Vec<Option<serde_json::Value>> =
        serde_saphyr::from_multiple(yaml).map_err(|e| Error::Parse {
            path: "a YAML stream".into(),
            source: Box::new(e),
        })?;
    Ok(docs
        .into_iter()
        .flatten()
        .filter(|d| !d.is_null())
        .collect())
}
