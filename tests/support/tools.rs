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
