//! Registering a plugin with the kubelet.

use std::path::Path;

use super::api::registration_client::RegistrationClient;
use super::api::{DevicePluginOptions, RegisterRequest};
use super::{API_VERSION, socket};
use crate::Error;

/// Tells the kubelet listening on `kubelet_socket` that `resource` is served on the
/// socket named `endpoint` in the same directory.
///
/// # Errors
/// [`Error::Connect`] when the kubelet does not answer, [`Error::Register`] when it
/// refuses.
pub async fn register(kubelet_socket: &Path, endpoint: &str, resource: &str) -> Result<(), Error> {
    let channel = socket::connect(kubelet_socket).await?;
    RegistrationClient::new(channel)
        .register(RegisterRequest {
            version: API_VERSION.to_owned(),
            endpoint: endpoint.to_owned(),
            resource_name: resource.to_owned(),
            options: Some(DevicePluginOptions {
                pre_start_required: false,
                get_preferred_allocation_available: true,
            }),
        })
        .await
        .map_err(|source| Error::Register {
            resource: resource.to_owned(),
            source,
        })?;
    Ok(())
}
