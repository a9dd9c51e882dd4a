//! The DevicePlugin service of one pin: its devices, their health, and what a
//! container that was given one gets.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::api::device_plugin_server::DevicePlugin;
use super::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationResponse, Device, DevicePluginOptions, DeviceSpec, Empty,
    ListAndWatchResponse, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse,
};
use super::{HEALTHY, UNHEALTHY};

/// One device as the plugin offers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginDevice {
    /// Unique on this node for this resource, at most 63 characters.
    pub id: String,
    /// Whether the kubelet may hand it out.
    pub healthy: bool,
    /// The device node on the host, such as /dev/ttyUSB0.
    pub host_path: String,
}

/// Everything one plugin serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginState {
    /// Where the container sees the device (the pin's containerPath).
    pub container_path: String,
    /// The environment variable that tells the container that path.
    pub env_name: String,
    /// The devices, in a stable order.
    pub devices: Vec<PluginDevice>,
}

/// The DevicePlugin service, reading its state from a watch channel so the agent
/// can change it while the kubelet listens.
#[derive(Clone, Debug)]
pub struct DevicePluginService {
    state: watch::Receiver<PluginState>,
}

impl DevicePluginService {
    /// A service over `state`.
    pub fn new(state: watch::Receiver<PluginState>) -> Self {
        Self { state }
    }
}

fn to_proto(devices: &[PluginDevice]) -> Vec<Device> {
    devices
        .iter()
        .map(|d| Device {
            id: d.id.clone(),
            health: if d.healthy { HEALTHY } else { UNHEALTHY }.to_owned(),
            topology: None,
        })
        .collect()
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for DevicePluginService {
    type ListAndWatchStream = DeviceStream;

    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }))
    }

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut rx = self.state.clone();
        rx.mark_changed();
        // Sends the list now and again whenever it changes; ends when the plugin stops.
        let stream =
            futures::stream::unfold((rx, None::<Vec<Device>>), |(mut rx, last)| async move {
                loop {
                    rx.changed().await.ok()?;
                    let devices = to_proto(&rx.borrow_and_update().devices);
                    if last.as_ref() != Some(&devices) {
                        let response = ListAndWatchResponse {
                            devices: devices.clone(),
                        };
                        return Some((Ok(response), (rx, Some(devices))));
                    }
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| {
                let size = usize::try_from(r.allocation_size).unwrap_or(0);
                let mut ids = r.must_include_device_i_ds.clone();
                let mut rest = r.available_device_i_ds.clone();
                rest.sort();
                for id in rest {
                    if ids.len() >= size {
                        break;
                    }
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                ContainerPreferredAllocationResponse { device_i_ds: ids }
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let state = self.state.borrow().clone();
        let mut container_responses = Vec::new();
        for container in request.into_inner().container_requests {
            let mut response = ContainerAllocateResponse::default();
            for (index, id) in container.devices_ids.iter().enumerate() {
                let device = state
                    .devices
                    .iter()
                    .find(|d| &d.id == id)
                    .ok_or_else(|| Status::not_found(format!("no device {id} on this node")))?;
                if !device.healthy {
                    return Err(Status::unavailable(format!("device {id} is unhealthy")));
                }
                // One device per consumer is the rule; a second one gets a numbered path.
                let container_path = if index == 0 {
                    state.container_path.clone()
                } else {
                    format!("{}{index}", state.container_path)
                };
                response.devices.push(DeviceSpec {
                    container_path,
                    host_path: device.host_path.clone(),
                    permissions: "rw".to_owned(),
                });
            }
            response
                .envs
                .insert(state.env_name.clone(), state.container_path.clone());
            container_responses.push(response);
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
