//! One release binary running as a process against the local cluster, watching one
//! namespace, with its HTTP port on the loopback: ready, memory, metrics, stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homelab_test_support::http::get;
use homelab_test_support::poll_until;

/// A running binary.
pub struct Process {
    /// The binary's name (`mediaserver-controller`).
    pub name: String,
    /// The process.
    child: Child,
    /// Its `/metrics` `/healthz` `/readyz` port.
    addr: SocketAddr,
    /// The fake sysfs tree of a node agent, removed on stop.
    scratch: Option<PathBuf>,
}

impl Process {
    /// Starts `spec` (`name` or `name args…`) from `bin_dir`, watching `namespace`.
    /// Every binary gets the same environment; each reads what concerns it (the
    /// node agent gets a fake Raspberry Pi's sysfs and no device plugins).
    pub fn spawn(bin_dir: &Path, spec: &str, namespace: &str, kubeconfig: &Path) -> Self {
        let mut words = spec.split_whitespace();
        let name = words.next().expect("an empty binary spec").to_owned();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let scratch = std::env::temp_dir().join(format!("homelab-bench-{name}-{namespace}"));
        let tree = homelab_node_agent::fixtures::Tree::raspberry_pi4(&scratch.join("host"))
            .expect("a fake sysfs tree");
        let roots = tree.roots();
        let log = std::fs::File::create(bench_dir().join(format!("{name}-{namespace}.log")))
            .expect("a log file under target/bench");
        let child = Command::new(bin_dir.join(&name))
            .args(words)
            .env("KUBECONFIG", kubeconfig)
            .env("HOMELAB_WATCH_NAMESPACE", namespace)
            .env("HOMELAB_HTTP_ADDR", addr.to_string())
            .env("HOMELAB_LEADER_ELECTION", "false")
            // As many reconciles in flight as the limit's kubectl processes, and no
            // client-side rate limit: the figures measure the controller against what
            // the API server can take, not against the chart's Raspberry Pi defaults
            // (4 at once, 20 requests/s with bursts of 40).
            .env("HOMELAB_CONCURRENCY", "16")
            .env("HOMELAB_API_QPS", "0")
            .env("HOMELAB_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .env("NODE_NAME", "pi4-1")
            .env("HOMELAB_SYSFS_ROOT", &roots.sysfs)
            .env("HOMELAB_DEV_ROOT", &roots.dev)
            .env("HOMELAB_DEVICE_PLUGINS", "false")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin_dir.join(&name).display()));
        Self {
            name,
            child,
            addr,
            scratch: Some(scratch),
        }
    }

    /// Waits until `/readyz` answers 200 (every watch has listed).
    pub async fn ready(&mut self) {
        let (name, addr, child) = (&self.name, self.addr, &mut self.child);
        poll_until(
            &format!("{name} to be ready"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                if let Ok(status) = child.try_wait() {
                    assert!(status.is_none(), "{name} exited: {status:?}");
                }
                async move {
                    match get(addr, "/readyz").await {
                        Ok((status, _)) if status.contains(" 200 ") => Ok(()),
                        Ok((status, _)) => Err(status),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        )
        .await
        .unwrap();
    }

    /// Resident memory now, in MiB (VmRSS).
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the process's /proc status");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("a VmRSS line");
        kib / 1024.0
    }

    /// The sum of the samples whose line starts with `prefix` (a name, or a name
    /// and the start of its labels).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = get(self.addr, "/metrics").await.expect("a scrape");
        sum_samples(&body, prefix)
    }

    /// SIGTERM, then SIGKILL if it has not stopped after 10 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `target/bench`, where results and the binaries' logs go.
pub fn bench_dir() -> PathBuf {
    let dir = homelab_test_support::bench::results_path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir).expect("target/bench");
    dir
}

/// The sum of the samples in an exposition whose line starts with `prefix`.
pub fn sum_samples(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
