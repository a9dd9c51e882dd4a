//! Dereferences what a spec names in other objects: the Secrets holding broker
//! credentials and TLS material, and the UsbDevicePin of the radio.
//!
//! Two halves. [`read`] is the observe step's part: it GETs each Secret the
//! spec names, one by one (the controller may only `get` Secrets: least
//! privilege, no list or watch, so there is no cache of them), takes the pin
//! from the runner's cache and looks up the broker's name as the gateway's pod
//! would. [`resolve`] is pure: what those reads mean, or the [`Problem`] a
//! person must fix.
//!
//! A missing Secret, key or pin is a [`Problem`]; an API error is an
//! [`Error`] (retried).

use std::collections::BTreeMap;

use homelab_api::conditions::Outcome;
use homelab_api::references::SecretKeyRef;
use homelab_api::{SensorGateway, UsbDevicePin};
use homelab_kit::device_pin::DevicePinError;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as SecretObject;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::error::Error;
use crate::mqtt::{BrokerSpec, Credentials, Secret, TlsMaterial, broker};
use crate::validate::{Plan, Problem};

/// Reason of a Secret that does not exist.
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// Reason of a Secret the controller's RBAC does not let it read.
pub const SECRET_FORBIDDEN: &str = "SecretForbidden";
/// Reason of a key missing from a Secret, or unusable.
pub const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";

/// A Secret as one GET found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRead {
    /// Its data.
    Found(BTreeMap<String, ByteString>),
    /// No Secret of that name.
    Missing,
    /// The controller may not read Secrets in that namespace.
    Forbidden,
}

/// What the references of a spec point at, as read.
#[derive(Clone, Debug, Default)]
pub struct Referenced {
    /// The Secrets the spec names, by name.
    pub secrets: BTreeMap<String, SecretRead>,
    /// The radio's pin, when the spec names one and it exists.
    pub pin: Option<UsbDevicePin>,
    /// The broker's host as the gateway's pod resolves it.
    pub broker_host: String,
}

/// What the spec's references resolved to.
#[derive(Debug)]
pub struct Resolved {
    /// How to reach the broker.
    pub broker: BrokerSpec,
    /// The radio's pin, when it names one.
    pub pin: Option<UsbDevicePin>,
}

/// The Secrets `sg` names, each with the field that first names it, in the
/// order [`resolve`] uses them: only those it will read (the password only
/// with a user name, TLS material only for a TLS broker).
fn named_secrets(sg: &SensorGateway, tls: bool) -> Vec<(String, &'static str)> {
    let mqtt = &sg.spec.mqtt;
    let mut named = Vec::new();
    if let Some(user) = &mqtt.username_secret_ref {
        named.push((user.name.clone(), "mqtt.usernameSecretRef"));
        if let Some(p) = &mqtt.password_secret_ref {
            named.push((p.name.clone(), "mqtt.passwordSecretRef"));
        }
    }
    if tls {
        let settings = mqtt.tls.as_ref();
        if let Some(r) = settings.and_then(|t| t.ca_secret_ref.as_ref()) {
            named.push((r.name.clone(), "mqtt.tls.caSecretRef"));
        }
        if let Some(name) = settings.and_then(|t| t.client_certificate_secret_name.as_ref()) {
            named.push((name.clone(), "mqtt.tls.clientCertificateSecretName"));
        }
    }
    named
}

/// Reads what `sg` names: its Secrets (GET, each once), its pin (from `pins`,
/// the runner's cache) and the broker's name as its pod sees it.
///
/// # Errors
/// [`Error::Read`] when the API server fails a Secret's GET (a refusal by
/// RBAC is not an error: it is remembered as [`SecretRead::Forbidden`]).
pub async fn read(
    client: &Client,
    sg: &SensorGateway,
    pins: &Store<UsbDevicePin>,
) -> Result<Referenced, Error> {
    let ns = sg.namespace().unwrap_or_default();
    // A URL that does not parse is refused by validation: nothing to read then.
    let Ok((host, port, tls)) = broker::parse_url(&sg.spec.mqtt.url) else {
        return Ok(Referenced::default());
    };
    let api: Api<SecretObject> = Api::namespaced(client.clone(), &ns);
    let mut secrets = BTreeMap::new();
    for (name, field) in named_secrets(sg, tls) {
        if secrets.contains_key(&name) {
            continue;
        }
        let read = match api.get_opt(&name).await {
            Ok(Some(s)) => SecretRead::Found(s.data.unwrap_or_default()),
            Ok(None) => SecretRead::Missing,
            Err(kube::Error::Api(s)) if s.code == 403 => SecretRead::Forbidden,
            Err(e) => {
                return Err(Error::Read(homelab_kit::Error::kube(
                    format!("get Secret {ns}/{name} ({field})"),
                    e,
                )));
            }
        };
        secrets.insert(name, read);
    }
    let pin = pin_ref(sg).and_then(|name| {
        pins.get(&ObjectRef::new(name).within(&ns))
            .map(|p| (*p).clone())
    });
    Ok(Referenced {
        secrets,
        pin,
        broker_host: broker::as_seen_from(&host, &ns, port).await,
    })
}

/// The name of the pin the radio uses, if it names one.
fn pin_ref(sg: &SensorGateway) -> Option<&str> {
    sg.spec
        .radio
        .as_ref()
        .and_then(|r| r.usb_device_pin.as_ref())
        .map(|r| r.name.as_str())
}

/// What `read` found means for `sg` with `plan`.
///
/// # Errors
/// A [`Problem`]: a Secret, key or pin that is missing or may not be read.
pub fn resolve(sg: &SensorGateway, plan: &Plan, read: &Referenced) -> Result<Resolved, Problem> {
    let ns = sg.namespace().unwrap_or_default();
    let secrets = Secrets {
        read: &read.secrets,
        namespace: &ns,
    };
    let mqtt = &sg.spec.mqtt;
    let credentials = match &mqtt.username_secret_ref {
        None => None,
        Some(user) => Some(Credentials {
            username: secrets.value(user, "mqtt.usernameSecretRef")?,
            password: match &mqtt.password_secret_ref {
                Some(p) => Some(secrets.value(p, "mqtt.passwordSecretRef")?),
                None => None,
            },
        }),
    };
    let (_, port, tls) = plan.broker.clone();
    let tls = if tls {
        let settings = mqtt.tls.as_ref();
        let ca_pem = match settings.and_then(|t| t.ca_secret_ref.as_ref()) {
            Some(r) => Some(secrets.value(r, "mqtt.tls.caSecretRef")?),
            None => None,
        };
        let client_cert = match settings.and_then(|t| t.client_certificate_secret_name.as_ref()) {
            Some(name) => {
                let field = "mqtt.tls.clientCertificateSecretName";
                let cert = SecretKeyRef::new(name.clone(), "tls.crt");
                let key = SecretKeyRef::new(name.clone(), "tls.key");
                Some((secrets.value(&cert, field)?, secrets.value(&key, field)?))
            }
            None => None,
        };
        Some(TlsMaterial {
            ca_pem,
            client: client_cert,
        })
    } else {
        None
    };
    let pin = match pin_ref(sg) {
        None => None,
        Some(name) => match &read.pin {
            Some(pin) => Some(pin.clone()),
            None => return Err(pin_not_found(&ns, name)),
        },
    };
    Ok(Resolved {
        broker: BrokerSpec {
            host: read.broker_host.clone(),
            port,
            tls,
            credentials,
        },
        pin,
    })
}

/// A pin that does not exist: the kit's words for it.
fn pin_not_found(namespace: &str, name: &str) -> Problem {
    let missing = DevicePinError::NotFound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let message = match missing.outcome() {
        Outcome::Stalled { message, .. } => message,
        _ => missing.to_string(),
    };
    Problem {
        reason: homelab_api::conditions::reasons::REFERENCE_NOT_FOUND,
        message,
    }
}

/// The Secrets read in the observe step, by name.
struct Secrets<'a> {
    read: &'a BTreeMap<String, SecretRead>,
    namespace: &'a str,
}

impl Secrets<'_> {
    fn value(&self, r: &SecretKeyRef, field: &str) -> Result<Secret, Problem> {
        let ns = self.namespace;
        let data = match self.read.get(&r.name) {
            Some(SecretRead::Found(data)) => data,
            Some(SecretRead::Forbidden) => {
                return Err(Problem {
                    reason: SECRET_FORBIDDEN,
                    message: format!(
                        "the controller may not read Secrets in namespace {ns} ({field}): add {ns} to the chart value `namespaces`"
                    ),
                });
            }
            Some(SecretRead::Missing) | None => {
                return Err(Problem {
                    reason: SECRET_NOT_FOUND,
                    message: format!(
                        "Secret {} not found in namespace {ns} ({field}): create it with the key {}, or fix {field}",
                        r.name, r.key
                    ),
                });
            }
        };
        let Some(bytes) = data.get(&r.key) else {
            return Err(Problem {
                reason: SECRET_KEY_NOT_FOUND,
                message: format!(
                    "Secret {ns}/{} has no key {} ({field}): add it, or fix {field}",
                    r.name, r.key
                ),
            });
        };
        String::from_utf8(bytes.0.clone())
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|_| Problem {
                reason: SECRET_KEY_NOT_FOUND,
                message: format!(
                    "Secret {ns}/{} key {} ({field}) is not UTF-8 text",
                    r.name, r.key
                ),
            })
    }
}
