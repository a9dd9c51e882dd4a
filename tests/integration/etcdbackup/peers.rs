//! The real peers of the EtcdBackup tests: the cluster's own etcd (its port and
//! certificates), throwaway etcd servers started from the pinned binaries, a
//! versitygw S3 server, and the `etcd-backup` binary itself.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homelab_test_support::{Cluster, workspace_root};

/// Directories of the pinned tools (`e2e/cluster tools`).
pub struct Tools {
    pub etcd: PathBuf,
    pub versitygw: PathBuf,
}

pub fn tools() -> Tools {
    let out = Cluster::default().run(&["tools"]).unwrap();
    let dir = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("`e2e/cluster tools` printed no {name}: {out}"))
    };
    Tools {
        etcd: dir("etcd"),
        versitygw: dir("versitygw"),
    }
}

/// The cluster's etcd: client URL and the certificate files e2e/lib/pki.sh writes.
pub struct ClusterEtcd {
    pub endpoint: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn cluster_etcd() -> ClusterEtcd {
    let state = std::env::var_os("HOMELAB_E2E_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("e2e/.state"));
    let port = std::env::var("ETCD_PORT").unwrap_or_else(|_| "2379".into());
    let pki = state.join("pki");
    ClusterEtcd {
        endpoint: format!("https://127.0.0.1:{port}"),
        ca: pki.join("etcd-ca.crt"),
        cert: pki.join("etcd-healthcheck-client.crt"),
        key: pki.join("etcd-healthcheck-client.key"),
    }
}

impl ClusterEtcd {
    /// etcdctl against the cluster's etcd.
    pub fn etcdctl(&self, tools: &Tools, args: &[&str]) -> String {
        let tls = [
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.cert.display()),
            format!("--key={}", self.key.display()),
        ];
        etcdctl(tools, &self.endpoint, &tls, args)
    }
}

/// etcdctl against `endpoint`, with the `tls` flags it needs; its output.
fn etcdctl(tools: &Tools, endpoint: &str, tls: &[String], args: &[&str]) -> String {
    let out = Command::new(tools.etcd.join("etcdctl"))
        .arg(format!("--endpoints={endpoint}"))
        .args(tls)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `port` accepts connections; says what the process logged if it
/// exits or never listens.
pub fn wait_for_port(process: &mut Process, port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = process.0.try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not listen on {port} ({exited:?}): {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain-http etcd of its own, on free ports, over `data_dir` (fresh or restored).
pub struct Etcd {
    pub endpoint: String,
    _process: Process,
}

impl Etcd {
    pub fn start(tools: &Tools, data_dir: &Path, name: &str, peer_port: u16) -> Etcd {
        let client = free_port();
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(tools.etcd.join("etcd"))
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster={name}=http://127.0.0.1:{peer_port}"
            ))
            .arg("--listen-metrics-urls=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut process = Process(child);
        wait_for_port(&mut process, client, "etcd", &log_path);
        Etcd {
            endpoint: format!("http://127.0.0.1:{client}"),
            _process: process,
        }
    }

    pub fn etcdctl(&self, tools: &Tools, args: &[&str]) -> String {
        etcdctl(tools, &self.endpoint, &[], args)
    }
}

/// versitygw serving `root` (one directory per bucket) over S3 on a free port.
pub struct S3Server {
    pub endpoint: String,
    _process: Process,
}

pub const S3_ACCESS_KEY: &str = "homelab-test";
pub const S3_SECRET_KEY: &str = "homelab-test-secret";

impl S3Server {
    pub fn start(tools: &Tools, dir: &Path, buckets: &[&str]) -> S3Server {
        let root = dir.join("buckets");
        // Not named like the root: versitygw compares the two as string prefixes.
        let sidecar = dir.join("metadata");
        for b in buckets {
            std::fs::create_dir_all(root.join(b)).unwrap();
        }
        std::fs::create_dir_all(&sidecar).unwrap();
        let port = free_port();
        let log_path = dir.join("versitygw.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(tools.versitygw.join("versitygw"))
            .args(["--access", S3_ACCESS_KEY, "--secret", S3_SECRET_KEY])
            .arg("--port")
            .arg(format!("127.0.0.1:{port}"))
            .arg("posix")
            // Metadata beside the data instead of in xattrs, which not every
            // filesystem (overlayfs, tmpfs) offers.
            .arg("--sidecar")
            .arg(&sidecar)
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut process = Process(child);
        wait_for_port(&mut process, port, "versitygw", &log_path);
        S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            _process: process,
        }
    }
}

/// The `etcd-backup` binary, built once per test binary if needed (the tests run
/// the real command).
pub fn runner_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(build_runner).clone()
}

fn build_runner() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "-q",
            "-p",
            "homelab-etcdbackup",
            "--bin",
            "etcd-backup",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "cargo build of etcd-backup failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join("etcd-backup")
}

/// Decompresses a zstd backup into `out`.
pub fn unzstd(file: &Path, out: &Path) {
    let input = std::fs::File::open(file).unwrap();
    let mut output = std::fs::File::create(out).unwrap();
    zstd::stream::copy_decode(input, &mut output).unwrap();
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() + u128::from(free_port())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
