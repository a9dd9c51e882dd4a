//! How to reach one broker: address, TLS material and credentials, as read from
//! the spec and its Secrets. Secret values never appear in `Debug` output, in
//! the connection key, or in any message.

use std::fmt;
use std::sync::Arc;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

/// A secret value: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from a Secret.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// User name and password for the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (a Secret's value too: some homelabs consider it one).
    pub username: Secret,
    /// The password, if any.
    pub password: Option<Secret>,
}

/// TLS material, PEM-encoded, from Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// CA certificates to trust; the system's when unset.
    pub ca_pem: Option<Secret>,
    /// Client certificate and key, for brokers that authenticate by certificate.
    pub client: Option<(Secret, Secret)>,
}

/// Everything needed to connect to one broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSpec {
    /// Host name or address (without brackets for IPv6).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS, for mqtts:// URLs.
    pub tls: Option<TlsMaterial>,
    /// Credentials, if the broker wants them.
    pub credentials: Option<Credentials>,
}

/// A broker URL that is not `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BadUrl(String);

/// The host, port and whether TLS is wanted, from `mqtt://host[:port]` or
/// `mqtts://host[:port]` (IPv6 in brackets).
///
/// # Errors
/// [`BadUrl`] saying what is wrong.
pub fn parse_url(url: &str) -> Result<(String, u16, bool), BadUrl> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else {
        return Err(BadUrl(format!(
            "broker URL {url:?} must start with mqtt:// or mqtts://"
        )));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| BadUrl(format!("broker URL {url:?} has an unclosed [")))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(BadUrl(format!(
            "broker URL {url:?} needs a host name, such as mqtt://mosquitto.home.svc:1883"
        )));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| BadUrl(format!("broker URL {url:?} has an invalid port {p:?}")))?,
    };
    Ok((host.to_owned(), port, tls))
}

/// The name a pod in `namespace` would try first for `host`: a single-label
/// name such as `mosquitto` is that namespace's Service (`mosquitto.<namespace>.svc`,
/// the first entry of the pod's DNS search path). `None` for addresses,
/// `localhost` and names with a dot, which are used as written.
#[must_use]
pub fn service_name(host: &str, namespace: &str) -> Option<String> {
    let single_label = !host.contains(['.', ':']) && host != "localhost";
    (single_label && host.parse::<std::net::IpAddr>().is_err())
        .then(|| format!("{host}.{namespace}.svc"))
}

/// The host as the gateway's pod resolves it: the namespace's Service of that
/// name when there is one, else the name as written (a LAN name the node's
/// search domains complete). The controller runs in another namespace, so it
/// looks the Service up explicitly.
pub async fn as_seen_from(host: &str, namespace: &str, port: u16) -> String {
    if let Some(service) = service_name(host, namespace) {
        let found = tokio::net::lookup_host((service.as_str(), port))
            .await
            .is_ok_and(|mut addresses| addresses.next().is_some());
        if found {
            return service;
        }
    }
    host.to_owned()
}

impl BrokerSpec {
    /// `host:port`, for logs, metrics and status (no credentials).
    #[must_use]
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Identifies a connection: gateways whose specs give the same key share one.
    /// Secret values enter only as a hash.
    #[must_use]
    pub fn key(&self) -> String {
        let mut h = Fnv::default();
        if let Some(c) = &self.credentials {
            h.add(c.username.expose());
            h.add(c.password.as_ref().map_or("", Secret::expose));
        }
        if let Some(t) = &self.tls {
            h.add(t.ca_pem.as_ref().map_or("", Secret::expose));
            if let Some((cert, key)) = &t.client {
                h.add(cert.expose());
                h.add(key.expose());
            }
        }
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://{} {:016x}", self.address(), h.0)
    }

    /// Client options for rumqttc, with a client id unique to this process.
    ///
    /// # Errors
    /// A message for a person when the TLS material cannot be used.
    pub fn options(&self, client_id: &str) -> Result<MqttOptions, String> {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options.set_keep_alive(std::time::Duration::from_secs(15));
        options.set_clean_session(true);
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        if let Some(c) = &self.credentials {
            options.set_credentials(
                c.username.expose(),
                c.password.as_ref().map_or("", Secret::expose),
            );
        }
        if let Some(tls) = &self.tls {
            let config = client_config(tls)?;
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
        }
        Ok(options)
    }
}

/// A rustls client configuration on ring.
fn client_config(tls: &TlsMaterial) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.expose().as_bytes()) {
                let cert = cert.map_err(|e| format!("the broker CA is not PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the broker CA cannot be used: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the broker CA holds no certificate".to_owned());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // One unusable system certificate should not stop the others.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots);
    match &tls.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.expose().as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the client certificate is not PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                .map_err(|e| format!("the client key is not PEM: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate cannot be used: {e}"))
        }
    }
}

/// FNV-1a, for a stable, non-reversible fingerprint of secret material.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, s: &str) {
        for b in s.bytes().chain([0xff]) {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_name_is_the_gateways_namespaces() {
        assert_eq!(
            service_name("mosquitto", "home").as_deref(),
            Some("mosquitto.home.svc")
        );
        assert_eq!(service_name("mosquitto.mqtt", "home"), None);
        assert_eq!(service_name("mosquitto.home.svc.cluster.local", "x"), None);
        assert_eq!(service_name("localhost", "home"), None);
        assert_eq!(service_name("192.168.1.10", "home"), None);
        assert_eq!(service_name("fd00::10", "home"), None);
    }

    #[tokio::test]
    async fn a_name_with_no_service_behind_it_is_used_as_written() {
        // No cluster DNS answers here: the name stays as the user wrote it.
        let host = as_seen_from("no-such-broker-here", "home", 1883).await;
        assert_eq!(host, "no-such-broker-here");
        assert_eq!(as_seen_from("127.0.0.1", "home", 1883).await, "127.0.0.1");
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://mosquitto.home.svc:1883"),
            Ok(("mosquitto.home.svc".into(), 1883, false))
        );
        assert_eq!(
            parse_url("mqtts://broker/"),
            Ok(("broker".into(), 8883, true))
        );
        assert_eq!(parse_url("mqtt://b"), Ok(("b".into(), 1883, false)));
        assert_eq!(
            parse_url("mqtt://[fd00::1]:1884"),
            Ok(("fd00::1".into(), 1884, false))
        );
        assert!(parse_url("http://b:1883").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://b:0").is_err());
        assert!(parse_url("mqtt://b:99999").is_err());
        assert!(parse_url("mqtt://user:pw@b:1883").is_err());
    }

    fn spec(password: &str) -> BrokerSpec {
        BrokerSpec {
            host: "fd00::1".into(),
            port: 1883,
            tls: None,
            credentials: Some(Credentials {
                username: Secret::new("ha".into()),
                password: Some(Secret::new(password.into())),
            }),
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_and_key() {
        let s = spec("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s:?}").contains("\"ha\""));
        assert!(!s.key().contains("hunter2"));
        assert_eq!(s.address(), "[fd00::1]:1883");
    }

    #[test]
    fn different_credentials_do_not_share_a_connection() {
        assert_ne!(spec("a").key(), spec("b").key());
        assert_eq!(spec("a").key(), spec("a").key());
    }

    #[test]
    fn garbage_ca_is_refused_with_a_message() {
        let tls = TlsMaterial {
            ca_pem: Some(Secret::new("not a certificate".into())),
            client: None,
        };
        let err = client_config(&tls).err().unwrap_or_default();
        assert!(err.contains("no certificate"), "{err}");
    }
}
