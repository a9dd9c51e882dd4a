//! Dereferences what a spec names in other objects: the Secrets holding broker
//! credentials and TLS material (read with `get`, one by one: the controller may
//! not list Secrets), and the UsbDevicePin of the radio.
//!
//! A missing Secret or key is a [`Problem`] (a person must act); an API error is
//! an [`Error`] (retried).

use std::collections::BTreeMap;

use homelab_api::references::SecretKeyRef;
use homelab_api::{SensorGateway, UsbDevicePin};
use homelab_kit::conditions::Outcome;
use homelab_kit::device_pin::{self, DevicePinError};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as SecretObject;
use kube::{Api, Client};

use crate::error::Error;
use crate::mqtt::{BrokerSpec, Credentials, Secret, TlsMaterial};
use crate::validate::{Plan, Problem};

/// Reason of a Secret that does not exist.
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// Reason of a Secret the controller's RBAC does not let it read.
pub const SECRET_FORBIDDEN: &str = "SecretForbidden";
/// Reason of a key missing from a Secret, or unusable.
pub const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";

/// What the spec's references resolved to.
#[derive(Debug)]
pub struct Resolved {
    /// How to reach the broker.
    pub broker: BrokerSpec,
    /// The radio's pin, when it names one.
    pub pin: Option<UsbDevicePin>,
}

/// Why references could not be resolved.
#[derive(Debug)]
pub enum Unresolved {
    /// A person must act.
    Problem(Problem),
    /// Something that may work next time (the outcome says so).
    Waiting(Outcome),
    /// The API server failed.
    Error(Error),
}

/// Reads the Secrets and the pin `sg` names.
///
/// # Errors
/// [`Unresolved`].
pub async fn resolve(
    client: &Client,
    namespace: &str,
    sg: &SensorGateway,
    plan: &Plan,
) -> Result<Resolved, Unresolved> {
    let mut secrets = Secrets {
        api: Api::namespaced(client.clone(), namespace),
        namespace,
        read: BTreeMap::new(),
    };
    let mqtt = &sg.spec.mqtt;
    let credentials = match &mqtt.username_secret_ref {
        None => None,
        Some(user) => Some(Credentials {
            username: secrets.value(user, "mqtt.usernameSecretRef").await?,
            password: match &mqtt.password_secret_ref {
                Some(p) => Some(secrets.value(p, "mqtt.passwordSecretRef").await?),
                None => None,
            },
        }),
    };
    let (host, port, tls) = plan.broker.clone();
    let tls = if tls {
        let settings = mqtt.tls.as_ref();
        let ca_pem = match settings.and_then(|t| t.ca_secret_ref.as_ref()) {
            Some(r) => Some(secrets.value(r, "mqtt.tls.caSecretRef").await?),
            None => None,
        };
        let client_cert = match settings.and_then(|t| t.client_certificate_secret_name.as_ref()) {
            Some(name) => {
                let field = "mqtt.tls.clientCertificateSecretName";
                let cert = SecretKeyRef::new(name.clone(), "tls.crt");
                let key = SecretKeyRef::new(name.clone(), "tls.key");
                Some((
                    secrets.value(&cert, field).await?,
                    secrets.value(&key, field).await?,
                ))
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
    let pin = match sg
        .spec
        .radio
        .as_ref()
        .and_then(|r| r.usb_device_pin.as_ref())
    {
        None => None,
        Some(reference) => match device_pin::resolve(client, namespace, reference).await {
            Ok(pin) => Some(pin),
            Err(e @ DevicePinError::NotFound { .. }) => {
                return Err(match e.outcome() {
                    Outcome::Stalled { message, .. } => Unresolved::Problem(Problem {
                        reason: homelab_api::conditions::reasons::REFERENCE_NOT_FOUND,
                        message,
                    }),
                    other => Unresolved::Waiting(other),
                });
            }
            Err(e) => return Err(Unresolved::Waiting(e.outcome())),
        },
    };
    Ok(Resolved {
        broker: BrokerSpec {
            host: crate::mqtt::broker::as_seen_from(&host, namespace, port).await,
            port,
            tls,
            credentials,
        },
        pin,
    })
}

/// Secrets read so far in this reconcile, so two keys of one Secret cost one read.
struct Secrets<'a> {
    api: Api<SecretObject>,
    namespace: &'a str,
    read: BTreeMap<String, Option<BTreeMap<String, ByteString>>>,
}

impl Secrets<'_> {
    async fn value(&mut self, r: &SecretKeyRef, field: &str) -> Result<Secret, Unresolved> {
        let ns = self.namespace;
        if !self.read.contains_key(&r.name) {
            let got = match self.api.get_opt(&r.name).await {
                Ok(got) => got,
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    return Err(Unresolved::Problem(Problem {
                        reason: SECRET_FORBIDDEN,
                        message: format!(
                            "the controller may not read Secrets in namespace {ns} ({field}): add {ns} to the chart value `namespaces`"
                        ),
                    }));
                }
                Err(e) => {
                    return Err(Unresolved::Error(Error::Read(homelab_kit::Error::kube(
                        format!("get Secret {ns}/{} ({field})", r.name),
                        e,
                    ))));
                }
            };
            self.read
                .insert(r.name.clone(), got.map(|s| s.data.unwrap_or_default()));
        }
        let Some(Some(data)) = self.read.get(&r.name) else {
            return Err(Unresolved::Problem(Problem {
                reason: SECRET_NOT_FOUND,
                message: format!(
                    "Secret {} not found in namespace {ns} ({field}): create it with the key {}, or fix {field}",
                    r.name, r.key
                ),
            }));
        };
        let Some(bytes) = data.get(&r.key) else {
            return Err(Unresolved::Problem(Problem {
                reason: SECRET_KEY_NOT_FOUND,
                message: format!(
                    "Secret {ns}/{} has no key {} ({field}): add it, or fix {field}",
                    r.name, r.key
                ),
            }));
        };
        String::from_utf8(bytes.0.clone())
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|_| {
                Unresolved::Problem(Problem {
                    reason: SECRET_KEY_NOT_FOUND,
                    message: format!(
                        "Secret {ns}/{} key {} ({field}) is not UTF-8 text",
                        r.name, r.key
                    ),
                })
            })
    }
}
