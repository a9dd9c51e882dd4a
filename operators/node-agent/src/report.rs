//! Writes this node's entry into a pin's `status.presence`, and only that.
//!
//! Server-side apply on the status subresource with a field manager of this node's
//! own (`node-agent/<node>`): the list is a map keyed by `node`, so each agent owns
//! its entry and applying an empty list removes only that entry.

use std::collections::HashMap;

use homelab_api::UsbDevicePin;
use homelab_api::usbdevicepin::DevicePresence;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::Error;
use crate::matching::reported;

/// The field manager of a node's agent.
pub fn field_manager(node: &str) -> String {
    format!("node-agent/{node}")
}

/// Reports one node's presence entries.
pub struct Reporter {
    client: Client,
    node: String,
    params: PatchParams,
    /// Per pin uid: what was last written, and the resourceVersion the cache had then,
    /// so a cache that has not caught up with our own write does not cause another.
    written: HashMap<String, (Option<DevicePresence>, Option<String>)>,
}

impl Reporter {
    /// A reporter for `node`.
    pub fn new(client: Client, node: impl Into<String>) -> Self {
        let node = node.into();
        Self {
            params: PatchParams::apply(&field_manager(&node)).force(),
            client,
            node,
            written: HashMap::new(),
        }
    }

    /// Makes this node's entry in `pin` (as cached) say `desired`. Returns whether it
    /// wrote.
    ///
    /// # Errors
    /// [`Error::Kube`] when the API server refuses the write.
    pub async fn sync(
        &mut self,
        pin: &UsbDevicePin,
        desired: Option<DevicePresence>,
    ) -> Result<bool, Error> {
        let current = reported(pin, &self.node);
        if current == desired.as_ref() {
            return Ok(false);
        }
        let uid = pin.uid().unwrap_or_default();
        let version = pin.resource_version();
        if let Some((last, seen_version)) = self.written.get(&uid)
            && *last == desired
            && *seen_version == version
        {
            return Ok(false);
        }
        let namespace = pin.namespace().unwrap_or_default();
        let name = pin.name_any();
        let api: Api<UsbDevicePin> = Api::namespaced(self.client.clone(), &namespace);
        let body = json!({
            "apiVersion": UsbDevicePin::api_version(&()),
            "kind": UsbDevicePin::kind(&()),
            "metadata": { "name": name },
            "status": { "presence": desired.iter().collect::<Vec<_>>() },
        });
        match api
            .patch_status(&name, &self.params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: nothing left to report into.
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
            Err(e) => {
                return Err(Error::kube(
                    format!("report presence of {namespace}/{name} on {}", self.node),
                    e,
                ));
            }
        }
        match &desired {
            Some(entry) => {
                tracing::info!(pin = %format!("{namespace}/{name}"), node = %self.node, dev_node = ?entry.dev_node, "reported device present")
            }
            None => {
                tracing::info!(pin = %format!("{namespace}/{name}"), node = %self.node, "reported device gone")
            }
        }
        self.written.insert(uid, (desired, version));
        Ok(true)
    }

    /// Forgets pins that no longer exist.
    pub fn retain(&mut self, uids: &[String]) {
        self.written.retain(|uid, _| uids.contains(uid));
    }
}
