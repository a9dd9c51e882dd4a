//! The kubelet's side of the device-plugin API, for tests and for nodes without a
//! kubelet (kwok): serves Registration on `kubelet.sock`, and for each plugin that
//! registers, follows its ListAndWatch and can call Allocate — the real protocol,
//! over the real sockets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use tokio::net::UnixListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crate::Error;
use crate::deviceplugin::api::device_plugin_client::DevicePluginClient;
use crate::deviceplugin::api::registration_server::{Registration, RegistrationServer};
use crate::deviceplugin::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateRequest, Device, Empty, RegisterRequest,
};
use crate::deviceplugin::{API_VERSION, KUBELET_SOCKET, socket};

/// What the fake kubelet knows of one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Advertised {
    /// The plugin's socket file name, once registered.
    pub endpoint: Option<String>,
    /// The devices of the plugin's latest ListAndWatch answer; empty when its stream
    /// ended (the kubelet then stops counting them).
    pub devices: Vec<Device>,
}

impl Advertised {
    /// Healthy devices: what the kubelet would put into the node's allocatable.
    pub fn healthy(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.health == crate::deviceplugin::HEALTHY)
            .count()
    }
}

type Resources = Arc<Mutex<BTreeMap<String, watch::Sender<Advertised>>>>;

/// A running fake kubelet.
pub struct FakeKubelet {
    dir: PathBuf,
    resources: Resources,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeKubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKubelet")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct RegistrationService {
    dir: PathBuf,
    resources: Resources,
}

fn sender(resources: &Resources, resource: &str) -> watch::Sender<Advertised> {
    resources
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(resource.to_owned())
        .or_insert_with(|| watch::channel(Advertised::default()).0)
        .clone()
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        if request.version != API_VERSION {
            return Err(Status::invalid_argument(format!(
                "unsupported version {}",
                request.version
            )));
        }
        if request.endpoint.contains('/') {
            return Err(Status::invalid_argument(
                "endpoint must be a file name in the plugin directory",
            ));
        }
        let tx = sender(&self.resources, &request.resource_name);
        tx.send_modify(|a| a.endpoint = Some(request.endpoint.clone()));
        // As the kubelet does: dial the plugin and follow its device list.
        let path = self.dir.join(&request.endpoint);
        let channel = socket::connect(&path)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut stream = DevicePluginClient::new(channel)
            .list_and_watch(Empty {})
            .await?
            .into_inner();
        tokio::spawn(async move {
            while let Some(Ok(answer)) = stream.next().await {
                tx.send_modify(|a| a.devices = answer.devices);
            }
            tx.send_modify(|a| a.devices.clear());
        });
        Ok(Response::new(Empty {}))
    }
}

impl FakeKubelet {
    /// Serves Registration on `<dir>/kubelet.sock` (`dir` is created).
    ///
    /// # Errors
    /// [`Error::Io`] when the directory or socket cannot be made.
    pub fn start(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(KUBELET_SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|source| Error::Io {
            action: "listen on",
            path: path.clone(),
            source,
        })?;
        let resources = Resources::default();
        let service = RegistrationService {
            dir: dir.to_path_buf(),
            resources: resources.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(RegistrationServer::new(service))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            dir: dir.to_path_buf(),
            resources,
            stop: Some(stop),
            task,
        })
    }

    /// What the plugin of `resource` advertises, as it changes.
    pub fn watch(&self, resource: &str) -> watch::Receiver<Advertised> {
        sender(&self.resources, resource).subscribe()
    }

    /// Calls the plugin's Allocate for one container asking for `ids`, as the
    /// kubelet does when it creates the container.
    ///
    /// # Errors
    /// `Status::not_found` when no plugin registered `resource`; the plugin's own
    /// refusal otherwise.
    pub async fn allocate(&self, resource: &str, ids: &[&str]) -> Result<AllocateResponse, Status> {
        let endpoint = sender(&self.resources, resource)
            .borrow()
            .endpoint
            .clone()
            .ok_or_else(|| Status::not_found(format!("no plugin registered {resource}")))?;
        let channel = socket::connect(&self.dir.join(endpoint))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let request = AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            }],
        };
        Ok(DevicePluginClient::new(channel)
            .allocate(request)
            .await?
            .into_inner())
    }

    /// Stops serving and removes `kubelet.sock`.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let _ = std::fs::remove_file(self.dir.join(KUBELET_SOCKET));
    }
}
