//! A real MQTT broker for the tests: Debian's mosquitto, on a free loopback
//! port, with a password file when credentials are given, and persistence (so
//! retained messages survive a restart, as on a real home broker). Stopped on
//! drop; `stop` and `start` let a test take the broker away and bring it back on
//! the same port.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mosquitto process and its directory.
pub struct Mosquitto {
    port: u16,
    tls: Option<(u16, String)>,
    dir: PathBuf,
    child: Option<Child>,
}

/// Why the broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MosquittoError {
    /// The binary is missing or failed to start.
    #[error("could not run {what} (install Debian's mosquitto package): {source}")]
    Spawn {
        /// What was run.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The broker did not listen in time, or a step failed.
    #[error("{0}")]
    Failed(String),
}

fn binary(name: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .map_or_else(|| name.to_owned(), |p| p.display().to_string())
}

impl Mosquitto {
    /// Starts a broker; with `credentials` it refuses anonymous clients.
    ///
    /// # Errors
    /// [`MosquittoError`] when mosquitto is missing or does not come up.
    pub fn start(credentials: Option<(&str, &str)>) -> Result<Self, MosquittoError> {
        Self::start_with(credentials, false)
    }

    /// As [`Mosquitto::start`], with a second listener speaking TLS, its server
    /// certificate (for 127.0.0.1) signed by a CA made for this broker.
    ///
    /// # Errors
    /// As [`Mosquitto::start`], or when openssl fails.
    pub fn start_tls(credentials: Option<(&str, &str)>) -> Result<Self, MosquittoError> {
        Self::start_with(credentials, true)
    }

    fn start_with(credentials: Option<(&str, &str)>, tls: bool) -> Result<Self, MosquittoError> {
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("homelab-mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| MosquittoError::Failed(format!("{}: {e}", dir.display())))?;
        let mut config = format!(
            "listener {port} 127.0.0.1\npersistence true\npersistence_location {}/\nlog_dest file {}/mosquitto.log\nlog_type all\n# Started as root it would switch to the mosquitto user, which cannot read this directory.\nuser root\n",
            dir.display(),
            dir.display()
        );
        let tls = if tls {
            let tls_port = free_port()?;
            let ca = make_certificates(&dir)?;
            config.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n",
                d = dir.display()
            ));
            Some((tls_port, ca))
        } else {
            None
        };
        // Settings from here on apply to every listener.
        config.insert_str(0, "per_listener_settings false\n");
        match credentials {
            Some((user, password)) => {
                let file = dir.join("passwd");
                let what = binary("mosquitto_passwd");
                let status = Command::new(&what)
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, password])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map_err(|source| MosquittoError::Spawn {
                        what: what.clone(),
                        source,
                    })?;
                if !status.success() {
                    return Err(MosquittoError::Failed(format!("{what} failed: {status}")));
                }
                config.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
            None => config.push_str("allow_anonymous true\n"),
        }
        std::fs::write(dir.join("mosquitto.conf"), config)
            .map_err(|e| MosquittoError::Failed(format!("write config: {e}")))?;
        let mut broker = Self {
            port,
            tls,
            dir,
            child: None,
        };
        broker.resume()?;
        Ok(broker)
    }

    /// `mqtt://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `mqtts://127.0.0.1:<port>` and the CA's PEM, with [`Mosquitto::start_tls`].
    #[must_use]
    pub fn tls(&self) -> Option<(String, String)> {
        self.tls
            .as_ref()
            .map(|(port, ca)| (format!("mqtts://127.0.0.1:{port}"), ca.clone()))
    }

    /// The broker's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the broker (SIGTERM: it saves its retained messages) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port.
    ///
    /// # Errors
    /// [`MosquittoError`] when it does not listen within 10 s.
    pub fn resume(&mut self) -> Result<(), MosquittoError> {
        let what = binary("mosquitto");
        let child = Command::new(&what)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| MosquittoError::Spawn { what, source })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log =
                    std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
                return Err(MosquittoError::Failed(format!(
                    "mosquitto exited ({status}): {log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(MosquittoError::Failed(format!(
            "mosquitto did not listen on {} within 10s",
            self.port
        )))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, MosquittoError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| MosquittoError::Failed(format!("no free port: {e}")))
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`; returns
/// the CA's PEM.
fn make_certificates(dir: &Path) -> Result<String, MosquittoError> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let d = |f: &str| dir.join(f).display().to_string();
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n")
        .map_err(|e| MosquittoError::Failed(format!("write server.ext: {e}")))?;
    let steps: Vec<Vec<String>> = vec![
        ["req", "-x509"]
            .iter()
            .chain(ec.iter())
            .map(|s| (*s).to_owned())
            .chain(
                [
                    "-keyout",
                    &d("ca.key"),
                    "-out",
                    &d("ca.crt"),
                    "-days",
                    "2",
                    "-subj",
                    "/CN=homelab test CA",
                ]
                .map(str::to_owned),
            )
            .collect(),
        ["req"]
            .iter()
            .chain(ec.iter())
            .map(|s| (*s).to_owned())
            .chain(
                [
                    "-keyout",
                    &d("server.key"),
                    "-out",
                    &d("server.csr"),
                    "-subj",
                    "/CN=127.0.0.1",
                ]
                .map(str::to_owned),
            )
            .collect(),
        [
            "x509",
            "-req",
            "-in",
            &d("server.csr"),
            "-CA",
            &d("ca.crt"),
            "-CAkey",
            &d("ca.key"),
            "-CAcreateserial",
            "-out",
            &d("server.crt"),
            "-days",
            "2",
            "-extfile",
            &d("server.ext"),
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .map_err(|source| MosquittoError::Spawn {
                what: "openssl".to_owned(),
                source,
            })?;
        if !out.status.success() {
            return Err(MosquittoError::Failed(format!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    // mosquitto reads the key as the user it runs as.
    std::fs::read_to_string(dir.join("ca.crt"))
        .map_err(|e| MosquittoError::Failed(format!("read ca.crt: {e}")))
}
