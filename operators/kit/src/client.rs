//! The controllers' connection to the API server, with a client-side rate
//! limit: a token bucket of `HOMELAB_API_QPS` requests per second that lets a
//! burst of `HOMELAB_API_BURST` through at once.
//!
//! A controller that has gone wrong (a reconcile that always writes, a watch
//! that relists in a loop) must not take the API server of a Raspberry Pi
//! down with it; the bucket caps what any bug can send. In a steady state a
//! controller sends nothing, and a home's few dozen objects never wait.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use kube::Client;
use kube::client::ClientBuilder;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::Error;
use crate::settings::Settings;

/// Connects as the environment says (in-cluster, or `KUBECONFIG`), with the
/// rate limit of `settings` (none when `api_qps` is 0).
///
/// # Errors
/// [`Error::Kube`] when no configuration is found or the client cannot be
/// built.
pub async fn connect(settings: &Settings) -> Result<Client, Error> {
    let config = kube::Config::infer().await.map_err(|e| {
        Error::Connect(format!(
            "find the API server's address and credentials: {e}"
        ))
    })?;
    let builder = ClientBuilder::try_from(config)
        .map_err(|e| Error::kube("build the API server client", e))?;
    Ok(match Bucket::new(settings.api_qps, settings.api_burst) {
        Some(bucket) => builder.with_layer(&RateLimitLayer(bucket)).build(),
        None => builder.build(),
    })
}

/// Tokens refilled at `per_second`, at most `burst` held.
#[derive(Debug)]
pub struct Bucket {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A full bucket; `None` when `per_second` is 0 (no limit).
    #[must_use]
    pub fn new(per_second: u32, burst: u32) -> Option<Arc<Self>> {
        (per_second > 0).then(|| {
            let burst = f64::from(burst.max(1));
            Arc::new(Self {
                per_second: f64::from(per_second),
                burst,
                state: Mutex::new((burst, Instant::now())),
            })
        })
    }

    /// Takes a token at `now`, or says how long until one is there.
    fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = *state;
        let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.per_second)
            .min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }
}

/// Puts a [`Bucket`] in front of a service.
#[derive(Clone, Debug)]
struct RateLimitLayer(Arc<Bucket>);

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: self.0.clone(),
            holds_token: false,
            waiting: None,
        }
    }
}

/// A service that is ready only once it holds a token. kube drives it through
/// one buffer, so a request waits in `poll_ready`, never half sent.
struct RateLimited<S> {
    inner: S,
    bucket: Arc<Bucket>,
    holds_token: bool,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.holds_token {
            if let Some(sleep) = self.waiting.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.waiting = None;
            }
            match self.bucket.take(Instant::now()) {
                Ok(()) => self.holds_token = true,
                Err(wait) => self.waiting = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.holds_token = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_wait_their_share() {
        let bucket = Bucket::new(10, 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), Ok(()));
        }
        let wait = bucket.take(t0).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-6,
            "one token takes 100 ms at 10/s, not {wait:?}"
        );
        assert_eq!(bucket.take(t0 + Duration::from_millis(100)), Ok(()));
        // A long pause refills no more than the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(Bucket::new(0, 10).is_none());
    }

    #[tokio::test]
    async fn the_service_is_ready_only_with_a_token() {
        use tower::ServiceExt;
        let bucket = Bucket::new(20, 1).unwrap();
        let mut svc = RateLimitLayer(bucket).layer(tower::service_fn(|n: u32| async move {
            Ok::<_, std::convert::Infallible>(n)
        }));
        let t0 = Instant::now();
        assert_eq!(svc.ready().await.unwrap().call(1).await, Ok(1));
        assert_eq!(svc.ready().await.unwrap().call(2).await, Ok(2));
        assert!(
            t0.elapsed() >= Duration::from_millis(45),
            "the second request waited for its token"
        );
    }
}
