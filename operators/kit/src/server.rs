//! The one HTTP port of a binary: `/metrics`, `/healthz`, `/readyz`.
//!
//! - `/metrics`: OpenMetrics text from the binary's [`Metrics`].
//! - `/healthz`: 200, or 503 with the reason when a watch is dead
//!   ([`Health::liveness`]); for the livenessProbe.
//! - `/readyz`: 200 once every watch has synced, else 503
//!   ([`Health::readiness`]); for the readinessProbe. Standby replicas are
//!   ready too.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::Error;
use crate::health::Health;
use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

/// What the handlers read.
#[derive(Clone)]
struct AppState {
    /// Rendered on `/metrics`.
    metrics: Arc<Metrics>,
    /// Asked by `/healthz` and `/readyz`.
    health: Health,
}

/// A bound, not yet serving, HTTP port.
#[derive(Debug)]
pub struct Server {
    /// The bound socket.
    listener: TcpListener,
}

impl Server {
    /// Binds `addr` (e.g. `0.0.0.0:8080`); fails at once if it is taken.
    ///
    /// # Errors
    /// [`Error::Bind`].
    pub async fn bind(addr: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Self { listener })
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// [`Error::Serve`] if the socket has no address.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener.local_addr().map_err(Error::Serve)
    }

    /// Serves until `shutdown` completes.
    ///
    /// # Errors
    /// [`Error::Serve`].
    pub async fn run(
        self,
        metrics: Arc<Metrics>,
        health: Health,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        axum::serve(self.listener, router(metrics, health))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(Error::Serve)
    }
}

/// The routes, for embedding in another server.
pub fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode metrics\n",
        )
            .into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    probe(state.health.liveness())
}

async fn readyz(State(state): State<AppState>) -> Response {
    probe(state.health.readiness())
}

fn probe(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// A plain HTTP/1.1 GET, on a blocking thread (tokio's io-util is off).
    async fn get(addr: SocketAddr, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn serves_metrics_and_probes() {
        let mut metrics = Metrics::new();
        let m = metrics.controller("test");
        drop(m.reconcile_started());
        let health = Health::new(Duration::from_secs(60));
        let server = Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(Arc::new(metrics), health.clone(), async {
            let _ = stopped.await;
        }));

        let response = get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("application/openmetrics-text; version=1.0.0"),
            "{response}"
        );
        assert!(
            response.contains(r#"homelab_reconciles_total{controller="test"} 1"#),
            "{response}"
        );

        // No watch has synced yet: alive but not ready.
        let probe = health.watch("Thing");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let response = get(addr, "/readyz").await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.contains("Thing"), "{response}");
        probe.synced();
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));

        health.stopped("watch streams ended");
        let response = get(addr, "/healthz").await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn taken_port_is_reported() {
        let first = Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = first.local_addr().unwrap();
        let err = Server::bind(addr).await.unwrap_err();
        assert!(matches!(err, Error::Bind { .. }));
    }
}
