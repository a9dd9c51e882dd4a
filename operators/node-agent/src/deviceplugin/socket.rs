//! gRPC over unix sockets: serving a plugin, and dialling a socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};

use super::api::device_plugin_server::DevicePluginServer;
use super::service::DevicePluginService;
use crate::Error;

/// Serves `service` on a new socket at `path` (a stale file there is removed) until
/// `stop` fires or is dropped.
///
/// # Errors
/// [`Error::Io`] when the socket cannot be created.
pub fn serve(
    path: &Path,
    service: DevicePluginService,
    stop: oneshot::Receiver<()>,
) -> Result<JoinHandle<()>, Error> {
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| Error::Io {
        action: "listen on",
        path: path.to_path_buf(),
        source,
    })?;
    let shown = path.display().to_string();
    Ok(tokio::spawn(async move {
        let served = Server::builder()
            .add_service(DevicePluginServer::new(service))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stop.await;
            })
            .await;
        if let Err(err) = served {
            tracing::warn!(socket = %shown, error = %err, "device plugin server stopped");
        }
    }))
}

fn remove_stale(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "remove stale socket",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A gRPC channel to the unix socket at `path`.
///
/// # Errors
/// [`Error::Connect`] when nothing listens there.
pub async fn connect(path: &Path) -> Result<Channel, Error> {
    let target: PathBuf = path.to_path_buf();
    // The URI is required by the API but never used: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://localhost");
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let target = target.clone();
            async move { UnixStream::connect(target).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| Error::Connect {
            path: path.to_path_buf(),
            source,
        })
}
